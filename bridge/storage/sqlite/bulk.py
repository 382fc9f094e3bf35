"""SQLite storage of issue 13's bulk sends and of the shared send pace: migration 18 and their SQL.

Owns: the ``bulk_batch`` table (one row per batch), ``bulk_recipient`` (one row per distinct number of a batch, in
line order ``seq``: a work queue claimed with a lease), ``send_pace`` (when the next POST from one of our numbers
may start, shared by every replica and by ordinary sends), ``outbound.bulk_id``, and the bulk ``Store`` methods.
Every move is a conditional UPDATE, and every multi-statement step runs inside one ``BEGIN IMMEDIATE`` transaction
(``_transaction``), so two replicas on one file never claim, hand over or finish the same row twice.
``send_pace.next_at`` is REAL Unix seconds (like the outbox's scheduling columns) so that "later of the two, plus
the duration" is plain arithmetic in one ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` statement.
A recipient's quiet-hours hold is the column ``held_until`` (``BulkRecipientRow.not_before``): the administration
tools treat a column as a time by its name (``*_at``, ``*_until``).
Mixed into ``bridge.storage.sqlite.store.SqliteStore``, whose ``_all`` / ``_transaction`` it uses.
Must not import: aiohttp, Slack packages, ``handlers``, ``bridge.storage.sqlite.store`` (it is imported by it).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiosqlite

from bridge.bulk_model import BatchState, BulkBatch, BulkProgress, BulkRecipientRow, BulkReportRow, RecipientState
from bridge.model import OutboundSms, SendRequest, SendState
from bridge.storage.rows import (
    BULK_PROGRESS_SQL,
    BULK_REPORT_SQL,
    HAND_OVER_NOT_OURS,
    bulk_batch_from_row,
    bulk_recipient_from_row,
    bulk_report_from_row,
    hand_over_check,
    outbound_from_row,
)
from bridge.storage.sqlite.timefmt import db_time, py_time

T = TypeVar("T")

# 18: bulk batches, their recipients (a leased work queue), the shared send pace, and the batch of an outbound SMS.
MIGRATION = """
    CREATE TABLE bulk_batch (
        id TEXT PRIMARY KEY,
        team_id TEXT NOT NULL DEFAULT '',
        channel_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        from_number TEXT NOT NULL,
        body TEXT NOT NULL,
        title TEXT NOT NULL,
        state TEXT NOT NULL,
        total INTEGER NOT NULL DEFAULT 0,
        parent_ts TEXT,
        created_at TEXT NOT NULL,
        confirmed_at TEXT,
        finished_at TEXT,
        finished_by TEXT
    );
    CREATE INDEX bulk_batch_state ON bulk_batch (state, created_at);
    CREATE TABLE bulk_recipient (
        batch_id TEXT NOT NULL REFERENCES bulk_batch (id),
        seq INTEGER NOT NULL,
        line INTEGER NOT NULL,
        number TEXT NOT NULL,
        name TEXT,
        fields TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL,
        skip_reason TEXT,
        held_until TEXT,
        claimed_by TEXT,
        claimed_until TEXT,
        ref TEXT UNIQUE REFERENCES outbound (ref),
        PRIMARY KEY (batch_id, seq),
        UNIQUE (batch_id, number)
    );
    CREATE INDEX bulk_recipient_claim ON bulk_recipient (batch_id, state, seq);
    CREATE TABLE send_pace (from_number TEXT PRIMARY KEY, next_at REAL NOT NULL);
    ALTER TABLE outbound ADD COLUMN bulk_id TEXT;
    CREATE INDEX outbound_bulk ON outbound (bulk_id);
"""

# Moving a batch into one of these ends it: ``finished_at`` is set.
_FINAL = (BatchState.DONE, BatchState.CANCELLED, BatchState.DISCARDED)

def _unix(value: datetime) -> float:
    return value.timestamp()


def _from_unix(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _batch(row: aiosqlite.Row | sqlite3.Row) -> BulkBatch:
    return bulk_batch_from_row(row, py_time)


def _recipient(row: aiosqlite.Row | sqlite3.Row) -> BulkRecipientRow:
    return bulk_recipient_from_row(row, py_time)


class BulkSql:
    """Methods of ``Store`` for bulk sends and the send pace; the host provides ``_all`` and ``_transaction``."""

    async def _all(self, sql: str, params: Sequence[Any]) -> list[aiosqlite.Row]:
        raise NotImplementedError

    async def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _write(self, sql: str, params: Sequence[Any]) -> int:
        raise NotImplementedError

    async def bulk_create(self, batch: BulkBatch, now: datetime) -> None:
        await self._write(
            """INSERT INTO bulk_batch (id, team_id, channel_id, user_id, from_number, body, title, state, total,
                   parent_ts, created_at, confirmed_at, finished_at, finished_by)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (batch.id, batch.team_id, batch.channel_id, batch.user_id, batch.from_, batch.body, batch.title,
             batch.state.value, batch.total, batch.parent_ts, db_time(now),
             None if batch.confirmed_at is None else db_time(batch.confirmed_at),
             None if batch.finished_at is None else db_time(batch.finished_at), batch.finished_by))

    async def bulk_add_recipients(self, batch_id: str, rows: Sequence[BulkRecipientRow]) -> int:
        if not rows:
            return 0
        values = [(batch_id, r.seq, r.line, r.number, r.name, json.dumps(dict(r.fields), ensure_ascii=False),
                   r.state.value, r.skip_reason, None if r.not_before is None else db_time(r.not_before))
                  for r in rows]

        def work(conn: sqlite3.Connection) -> int:
            inserted = 0
            for value in values:
                inserted += conn.execute(
                    """INSERT INTO bulk_recipient (batch_id, seq, line, number, name, fields, state, skip_reason,
                           held_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (batch_id, number) DO NOTHING""", value).rowcount
            return inserted

        return await self._transaction(work)

    async def bulk_get(self, batch_id: str) -> BulkBatch | None:
        rows = await self._all("SELECT * FROM bulk_batch WHERE id = ?", (batch_id,))
        return _batch(rows[0]) if rows else None

    async def bulk_set_total(self, batch_id: str, total: int) -> None:
        await self._write("UPDATE bulk_batch SET total = ? WHERE id = ?", (int(total), batch_id))

    async def bulk_set_parent(self, batch_id: str, ts: str) -> None:
        await self._write("UPDATE bulk_batch SET parent_ts = ? WHERE id = ?", (ts, batch_id))

    async def bulk_move(self, batch_id: str, from_states: Sequence[BatchState], to: BatchState, now: datetime,
                        by: str | None = None) -> bool:
        if not from_states:
            return False
        marks = ",".join("?" for _ in from_states)
        at = db_time(now)

        def work(conn: sqlite3.Connection) -> bool:
            won = conn.execute(
                f"""UPDATE bulk_batch SET state = ?,
                        confirmed_at = CASE WHEN ? = 'sending' THEN COALESCE(confirmed_at, ?) ELSE confirmed_at END,
                        finished_at = CASE WHEN ? THEN ? ELSE finished_at END,
                        finished_by = CASE WHEN ? = 'cancelled' THEN ? ELSE finished_by END
                    WHERE id = ? AND state IN ({marks})""",
                (to.value, to.value, at, int(to in _FINAL), at, to.value, by, batch_id,
                 *[s.value for s in from_states])).rowcount == 1
            if won and to is BatchState.CANCELLED:
                # A live lease is left to its holder: bulk_hand_over sees the batch cancelled and cancels its row.
                conn.execute(
                    """UPDATE bulk_recipient SET state = 'cancelled', claimed_by = NULL, claimed_until = NULL
                       WHERE batch_id = ? AND (state = 'waiting' OR (state = 'claimed' AND claimed_until <= ?))""",
                    (batch_id, at))
            return won

        return await self._transaction(work)

    async def bulk_claim(self, owner: str, now: datetime, until: datetime,
                         limit: int) -> list[tuple[str, BulkRecipientRow]]:
        at = db_time(now)

        def work(conn: sqlite3.Connection) -> list[tuple[str, BulkRecipientRow]]:
            # Under BEGIN IMMEDIATE: no other connection writes between this read and the updates.
            rows = conn.execute(
                """SELECT r.* FROM bulk_recipient r JOIN bulk_batch b ON b.id = r.batch_id
                   WHERE b.state = 'sending'
                     AND (r.state = 'waiting' OR (r.state = 'claimed' AND r.claimed_until <= ?))
                     AND (r.held_until IS NULL OR r.held_until <= ?)
                   ORDER BY b.created_at, b.id, r.seq LIMIT ?""", (at, at, max(0, int(limit)))).fetchall()
            claimed = []
            for row in rows:
                conn.execute(
                    """UPDATE bulk_recipient SET state = 'claimed', claimed_by = ?, claimed_until = ?
                       WHERE batch_id = ? AND seq = ?""", (owner, db_time(until), row["batch_id"], row["seq"]))
                claimed.append((str(row["batch_id"]), _recipient(row)))
            return [(batch, _claimed(r)) for batch, r in claimed]

        return await self._transaction(work)

    async def bulk_hand_over(self, batch_id: str, seq: int, owner: str, ref: str, request: SendRequest,
                             now: datetime) -> OutboundSms | None:
        at = db_time(now)

        def work(conn: sqlite3.Connection) -> OutboundSms | None:
            row = conn.execute(
                """SELECT r.state, r.claimed_by, r.number, b.state AS b_state FROM bulk_recipient r
                   JOIN bulk_batch b ON b.id = r.batch_id WHERE r.batch_id = ? AND r.seq = ?""",
                (batch_id, seq)).fetchone()
            verdict = hand_over_check(row, owner, request.to, batch_id, seq)
            if verdict == HAND_OVER_NOT_OURS:
                return None
            if isinstance(verdict, RecipientState):
                _release(conn, batch_id, seq, verdict, None)
                return None
            refused = conn.execute(
                "SELECT 'opted out' FROM opt_out WHERE our_number = ? AND their_number = ? "
                "UNION ALL SELECT 'blocked' FROM blocked_number WHERE number = ?",
                (request.from_, request.to, request.to)).fetchone()
            if refused is not None:
                _release(conn, batch_id, seq, RecipientState.SKIPPED, str(refused[0]))
                return None
            conn.execute(
                """INSERT INTO outbound (ref, created_at, updated_at, team_id, channel_id, user_id, to_number,
                       from_number, body, media, send_as_mms, origin, state, parent_ts, retry_of, bulk_id)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (ref, at, at, request.team_id, request.channel_id, request.user_id, request.to, request.from_,
                 request.body, json.dumps(list(request.media)), int(request.send_as_mms), request.origin,
                 SendState.PENDING.value, request.thread_ts, request.retry_of, batch_id))
            conn.execute(
                """UPDATE bulk_recipient SET state = 'handed', ref = ?, claimed_by = NULL, claimed_until = NULL
                   WHERE batch_id = ? AND seq = ?""", (ref, batch_id, seq))
            return outbound_from_row(conn.execute("SELECT * FROM outbound WHERE ref = ?", (ref,)).fetchone(),
                                     py_time)

        return await self._transaction(work)

    async def bulk_defer(self, batch_id: str, seq: int, owner: str, not_before: datetime) -> bool:
        return await self._write(
            """UPDATE bulk_recipient SET state = 'waiting', held_until = ?, claimed_by = NULL, claimed_until = NULL
               WHERE batch_id = ? AND seq = ? AND state = 'claimed' AND claimed_by = ?""",
            (db_time(not_before), batch_id, seq, owner)) == 1

    async def bulk_skip(self, batch_id: str, seq: int, owner: str, reason: str) -> bool:
        return await self._write(
            """UPDATE bulk_recipient SET state = 'skipped', skip_reason = ?, claimed_by = NULL, claimed_until = NULL
               WHERE batch_id = ? AND seq = ? AND state = 'claimed' AND claimed_by = ?""",
            (reason, batch_id, seq, owner)) == 1

    async def bulk_progress(self, batch_id: str, now: datetime) -> BulkProgress:
        [row] = await self._all(BULK_PROGRESS_SQL.format(now="?", batch="?"), (db_time(now), batch_id))
        return BulkProgress(sent=int(row["sent"]), delivered=int(row["delivered"]), failed=int(row["failed"]),
                            skipped=int(row["skipped"]), remaining=int(row["remaining"]),
                            quiet_waiting=int(row["quiet_waiting"]), cancelled=int(row["cancelled"]))

    async def bulk_report(self, batch_id: str, after_seq: int, limit: int) -> list[tuple[int, BulkReportRow]]:
        rows = await self._all(BULK_REPORT_SQL.format(batch="?", after="?", limit="?"),
                               (batch_id, int(after_seq), max(0, int(limit))))
        return [(int(r["seq"]), bulk_report_from_row(r, py_time)) for r in rows]

    async def bulk_unfinished(self, limit: int = 100) -> list[BulkBatch]:
        rows = await self._all(
            "SELECT * FROM bulk_batch WHERE state IN ('sending', 'paused') ORDER BY created_at, id LIMIT ?",
            (max(0, int(limit)),))
        return [_batch(r) for r in rows]

    async def bulk_finished_if_done(self, batch_id: str, now: datetime) -> bool:
        return await self._write(
            """UPDATE bulk_batch SET state = 'done', finished_at = ?
               WHERE id = ? AND state = 'sending' AND NOT EXISTS (
                   SELECT 1 FROM bulk_recipient WHERE batch_id = ? AND state IN ('waiting', 'claimed'))""",
            (db_time(now), batch_id, batch_id)) == 1

    # -- the send pace ------------------------------------------------------------------------------------------------

    async def pace_reserve(self, from_number: str, segments: int, seconds_per_segment: float,
                           now: datetime) -> datetime:
        length = max(0, int(segments)) * max(0.0, float(seconds_per_segment))
        start = _unix(now)
        [row] = await self._transaction(lambda conn: conn.execute(
            """INSERT INTO send_pace (from_number, next_at) VALUES (?, ?)
               ON CONFLICT (from_number) DO UPDATE SET next_at = MAX(send_pace.next_at, ?) + ?
               RETURNING next_at""", (from_number, start + length, start, length)).fetchall())
        return _from_unix(float(row[0]) - length)

    async def pace_push(self, from_number: str, until: datetime) -> None:
        await self._write(
            """INSERT INTO send_pace (from_number, next_at) VALUES (?, ?)
               ON CONFLICT (from_number) DO UPDATE SET next_at = MAX(send_pace.next_at, excluded.next_at)""",
            (from_number, _unix(until)))

    async def bulk_latest_to(self, our_number: str, their_number: str) -> tuple[str, datetime] | None:
        # One index read (``outbound_pair``, migration 17): the newest message of the pair, bulk or not.
        rows = await self._all(
            """SELECT bulk_id, created_at FROM outbound WHERE from_number = ? AND to_number = ?
               ORDER BY created_at DESC, rowid DESC LIMIT 1""", (our_number, their_number))
        if not rows or rows[0]["bulk_id"] is None:
            return None
        return str(rows[0]["bulk_id"]), datetime.fromisoformat(rows[0]["created_at"])


def _claimed(row: BulkRecipientRow) -> BulkRecipientRow:
    """As the row reads after the claim (the SELECT saw it before the UPDATE)."""
    return replace(row, state=RecipientState.CLAIMED)


def _release(conn: sqlite3.Connection, batch_id: str, seq: int, state: RecipientState, reason: str | None) -> None:
    conn.execute(
        """UPDATE bulk_recipient SET state = ?, skip_reason = COALESCE(?, skip_reason), claimed_by = NULL,
               claimed_until = NULL WHERE batch_id = ? AND seq = ?""", (state.value, reason, batch_id, seq))

