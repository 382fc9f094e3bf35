"""SQLite storage of the durable Slack outbox: migration 3 and the ``Store`` methods ``bridge.outbox`` needs.

Owns: the ``slack_outbox`` table. Mixed into ``bridge.storage.sqlite.store.SqliteStore``, whose ``_one`` / ``_all`` /
``_write`` / ``_transaction`` (group-committed writes, ``StoreUnavailable``) it uses.
Must not import: aiohttp, Slack packages, ``handlers``, ``bridge.storage.sqlite.store`` (it is imported by it),
``bridge.service``.

Scheduling columns (``next_attempt_at``, ``claimed_until``) are REAL Unix seconds so "is it due" is a numeric
comparison; the audit columns are ISO text like the rest of the schema. ``claimed_by`` (migration 10, in
``store.py``) names the replica holding a claim; claims are leases that run out, never released wholesale.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiosqlite

from bridge.model import OutboxItem, OutboxWrite
from bridge.storage.rows import outbox_item_from_row
from bridge.storage.sqlite.timefmt import db_time

T = TypeVar("T")

MIGRATION = """
    CREATE TABLE slack_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        thread_key TEXT NOT NULL,
        kind TEXT NOT NULL,
        ref TEXT,
        channel TEXT,
        payload TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        claimed_until REAL,
        done_at TEXT,
        failed_at TEXT,
        last_error TEXT,
        result TEXT
    );
    -- Partial indexes: finished rows (almost all of them, until pruned) cost nothing to skip.
    CREATE INDEX slack_outbox_head ON slack_outbox (thread_key, id) WHERE done_at IS NULL AND failed_at IS NULL;
    CREATE INDEX slack_outbox_ref ON slack_outbox (ref, kind) WHERE done_at IS NULL AND failed_at IS NULL;
"""

_UNDONE = "done_at IS NULL AND failed_at IS NULL"
# The first undone item of every thread: only it may be delivered, so order within a thread holds.
_HEADS = f"SELECT MIN(id) FROM slack_outbox WHERE {_UNDONE} GROUP BY thread_key"


_INSERT = "INSERT INTO slack_outbox (thread_key, kind, ref, channel, payload, created_at, next_attempt_at)"


def _appendable() -> str:
    """Where-clause (params: ref, kind, kind) matching the item ``OutboxWrite.append`` extends: the newest undone
    item of the ref that shows in its thread, if it is of this kind and its delivery never began."""
    return (f"""id = (SELECT MAX(a.id) FROM slack_outbox a WHERE a.ref = ? AND a.kind IN (?, 'post')
                     AND a.done_at IS NULL AND a.failed_at IS NULL)
                AND kind = ? AND claimed_until IS NULL AND attempts = 0 AND {_UNDONE}""")


def insert_statements(write: OutboxWrite, now: datetime) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements that put one write into the outbox, run in order inside the caller's transaction; the last
    is an INSERT … RETURNING id, which returns no row when nothing was inserted (covered, or appended).

    With ``covered_by`` it inserts nothing if such an item is waiting; with ``append`` an UPDATE first extends the
    waiting item (if any) and the INSERT is conditional on the same clause. Each condition is part of its
    statement, so two concurrent callers cannot both see "nothing queued". An item whose delivery has started
    (live claim) may already have rendered older state, so it does not count.
    """
    values = (write.thread_key, write.kind, write.ref, write.channel, json.dumps(write.payload), db_time(now),
              now.timestamp() + write.delay)
    if write.append:
        key = write.append
        if not key.isidentifier():
            raise ValueError(f"append key {key!r} is not a plain name")
        entries = list(write.payload.get(key, []))
        where = _appendable()
        cond = (write.ref, write.kind, write.kind)
        setter = "json_insert(payload" + ", ?, json(?)" * len(entries) + ")"
        path = f"$.{key}[#]"
        update = (f"UPDATE slack_outbox SET payload = {setter} WHERE {where}",
                  (*[v for e in entries for v in (path, json.dumps(e))], *cond))
        insert = (f"""{_INSERT} SELECT ?, ?, ?, ?, ?, ?, ?
                      WHERE NOT EXISTS (SELECT 1 FROM slack_outbox WHERE {where}) RETURNING id""", (*values, *cond))
        return [update, insert]
    if not write.covered_by:
        return [(f"{_INSERT} VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id", values)]
    marks = ", ".join("?" * len(write.covered_by))
    return [(f"""{_INSERT} SELECT ?, ?, ?, ?, ?, ?, ?
                WHERE NOT EXISTS (
                    SELECT 1 FROM slack_outbox WHERE ref = ? AND kind IN ({marks}) AND {_UNDONE}
                        AND (claimed_until IS NULL OR claimed_until <= ?))
                RETURNING id""", (*values, write.ref, *write.covered_by, now.timestamp()))]


def insert_statement(write: OutboxWrite, now: datetime) -> tuple[str, tuple[Any, ...]]:
    """The single INSERT … RETURNING id of a write without ``append`` (for callers that need the id)."""
    statements = insert_statements(write, now)
    if len(statements) != 1:
        raise ValueError("an appending write takes several statements: use insert_statements")
    return statements[0]


def pace_row_id(thread_key: str) -> int:
    """The id of ``thread_key``'s posting bucket: a finished row (kind ``pace``, never delivered, pruned like any
    finished item once idle) whose ``next_attempt_at`` holds the bucket's theoretical arrival time (GCRA). A negative
    id from a hash of the key: found by primary key, never a real item's (ids count up from 1). The same in both
    engines (``bridge.storage.postgres.outbox``); a collision would only make two keys share one bucket."""
    return -1 - int.from_bytes(hashlib.sha256(thread_key.encode()).digest()[:7], "big")


def _row_to_item(row: aiosqlite.Row) -> OutboxItem:
    return outbox_item_from_row(row)


class OutboxSql:
    """Methods of ``Store`` for the Slack outbox; the host class provides ``_all``, ``_write`` and ``_transaction``."""


    async def _all(self, sql: str, params: Sequence[Any]) -> list[aiosqlite.Row]:
        raise NotImplementedError

    async def _write(self, sql: str, params: Sequence[Any]) -> int:
        raise NotImplementedError

    async def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _insert(self, sql: str, params: Sequence[Any]) -> int | None:
        # A write like any other: group-committed on the connection thread. RETURNING gives the id in the same
        # statement; fetchall runs it to completion.
        rows = await self._transaction(lambda conn: conn.execute(sql, params).fetchall())
        return int(rows[0][0]) if rows else None

    async def outbox_add(
        self, thread_key: str, kind: str, ref: str | None, channel: str | None, payload: dict[str, Any],
        now: datetime,
    ) -> int:
        item_id = await self._insert(*insert_statement(OutboxWrite(thread_key, kind, ref, channel, payload), now))
        assert item_id is not None
        return item_id

    async def outbox_add_coalesced(
        self, thread_key: str, kind: str, ref: str, channel: str | None, payload: dict[str, Any],
        covered_by: Sequence[str], now: datetime,
    ) -> int | None:
        return await self._insert(
            *insert_statement(OutboxWrite(thread_key, kind, ref, channel, payload, tuple(covered_by)), now))

    async def outbox_due(self, now: datetime, limit: int) -> list[OutboxItem]:
        rows = await self._all(
            f"""SELECT * FROM slack_outbox WHERE id IN ({_HEADS})
                    AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until <= ?)
                ORDER BY next_attempt_at, id LIMIT ?""",
            (now.timestamp(), now.timestamp(), limit),
        )
        return [_row_to_item(r) for r in rows]

    async def outbox_next_due(self) -> datetime | None:
        rows = await self._all(
            f"SELECT MIN(MAX(next_attempt_at, COALESCE(claimed_until, 0))) FROM slack_outbox WHERE id IN ({_HEADS})",
            (),
        )
        value = rows[0][0] if rows else None
        return None if value is None else datetime.fromtimestamp(float(value), UTC)

    async def outbox_claim(self, item_id: int, owner: str, now: datetime, until: datetime) -> bool:
        # One statement, so the checks and the claim are atomic: the item is undone, it is its thread's head, and no
        # other owner holds a live claim anywhere in that thread (two replicas never post into one thread at once).
        # A claim without an owner (left by a version before migration 10) counts as another owner's.
        count = await self._write(
            f"""UPDATE slack_outbox SET claimed_until = ?, claimed_by = ?
                WHERE id = ? AND {_UNDONE}
                    AND id = (SELECT MIN(h.id) FROM slack_outbox h
                              WHERE h.thread_key = slack_outbox.thread_key AND h.done_at IS NULL
                                  AND h.failed_at IS NULL)
                    AND NOT EXISTS (
                        SELECT 1 FROM slack_outbox o WHERE o.thread_key = slack_outbox.thread_key
                            AND o.done_at IS NULL AND o.failed_at IS NULL
                            AND o.claimed_until > ? AND (o.claimed_by IS NULL OR o.claimed_by <> ?))""",
            (until.timestamp(), owner, item_id, now.timestamp(), owner),
        )
        return count == 1

    async def outbox_renew(self, item_id: int, owner: str, until: datetime) -> bool:
        count = await self._write(
            f"UPDATE slack_outbox SET claimed_until = ? WHERE id = ? AND claimed_by = ? AND {_UNDONE}",
            (until.timestamp(), item_id, owner),
        )
        return count == 1

    async def outbox_release(self, item_id: int) -> None:
        # Released as an expired claim (0), not NULL: whether the cut-off attempt reached Slack is unknown.
        await self._write("UPDATE slack_outbox SET claimed_until = 0, claimed_by = NULL WHERE id = ?", (item_id,))

    async def outbox_done(self, item_id: int, result: str | None, now: datetime) -> None:
        await self._write(
            """UPDATE slack_outbox SET done_at = ?, result = ?, claimed_until = NULL, claimed_by = NULL,
                   attempts = attempts + 1 WHERE id = ?""",
            (db_time(now), result, item_id),
        )

    async def outbox_retry(self, item_id: int, error: str, next_attempt_at: datetime, result: str | None) -> None:
        await self._write(
            """UPDATE slack_outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, result = ?,
                   claimed_until = NULL, claimed_by = NULL WHERE id = ?""",
            (error, next_attempt_at.timestamp(), result, item_id),
        )

    async def outbox_fail(self, item_id: int, error: str, now: datetime) -> None:
        await self._write(
            """UPDATE slack_outbox SET failed_at = ?, last_error = ?, claimed_until = NULL, claimed_by = NULL,
                   attempts = attempts + 1 WHERE id = ?""",
            (db_time(now), error, item_id),
        )

    async def outbox_pending(self) -> int:
        rows = await self._all(f"SELECT COUNT(*) FROM slack_outbox WHERE {_UNDONE}", ())
        return int(rows[0][0])

    async def outbox_failed(self, limit: int = 100) -> list[OutboxItem]:
        rows = await self._all(
            "SELECT * FROM slack_outbox WHERE failed_at IS NOT NULL ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [_row_to_item(r) for r in rows]

    async def outbox_get(self, item_id: int) -> OutboxItem | None:
        rows = await self._all("SELECT * FROM slack_outbox WHERE id = ?", (item_id,))
        return _row_to_item(rows[0]) if rows else None

    async def outbox_defer(self, item_id: int, owner: str, until: datetime) -> bool:
        count = await self._write(
            f"""UPDATE slack_outbox SET next_attempt_at = ?, claimed_until = NULL, claimed_by = NULL
                WHERE id = ? AND claimed_by = ? AND {_UNDONE}""",
            (until.timestamp(), item_id, owner),
        )
        return count == 1

    async def outbox_take_post(self, thread_key: str, now: datetime, interval: float, burst: int) -> float:
        # GCRA: a post conforms while the theoretical arrival time (TAT) is at most (burst - 1) intervals ahead;
        # taking one moves the TAT an interval on. One upsert, so the check and the take are atomic.
        row_id, at = pace_row_id(thread_key), now.timestamp()
        tolerance = (max(1, burst) - 1) * interval
        taken = await self._insert(
            """INSERT INTO slack_outbox (id, thread_key, kind, payload, created_at, next_attempt_at, done_at)
               VALUES (?, ?, 'pace', '{}', ?, ? + ?, ?)
               ON CONFLICT (id) DO UPDATE SET next_attempt_at = MAX(next_attempt_at, ?) + ?, done_at = excluded.done_at
                   WHERE next_attempt_at - ? <= ?
               RETURNING id""",
            (row_id, thread_key, db_time(now), at, interval, db_time(now), at, interval, tolerance, at),
        )
        if taken is not None:
            return 0.0
        rows = await self._all("SELECT next_attempt_at FROM slack_outbox WHERE id = ?", (row_id,))
        tat = float(rows[0][0]) if rows else at
        return max(0.001, tat - tolerance - at)

    async def outbox_post_finished(self, thread_key: str, at: datetime, interval: float) -> None:
        await self._write(
            "UPDATE slack_outbox SET next_attempt_at = MAX(next_attempt_at, ?) WHERE id = ?",
            (at.timestamp() + interval, pace_row_id(thread_key)),
        )

    async def outbox_prune(self, before: datetime) -> int:
        cutoff = db_time(before)
        return await self._write(
            "DELETE FROM slack_outbox WHERE done_at < ? OR failed_at < ?", (cutoff, cutoff)
        )

    # -- issue 11: mms-in

    async def outbox_note_result(self, item_id: int, owner: str, result: str) -> bool:
        count = await self._write(
            f"UPDATE slack_outbox SET result = ? WHERE id = ? AND claimed_by = ? AND {_UNDONE}",
            (result, item_id, owner),
        )
        return count == 1
