"""PostgreSQL storage of the durable Slack outbox: the ``Store`` methods ``bridge.outbox`` needs.

Owns: the ``slack_outbox`` SQL: ordered heads of threads (the first undone item of each ``thread_key``), owner
leases (``outbox_claim`` / ``outbox_renew``, serialised per thread by an advisory transaction lock so two replicas
never post into one thread at once), and ``insert_item`` (one item, coalesced under a per-ref lock), which the
atomic operations of the other mixins call inside their own transactions.
Must not import: anything in ``bridge`` but ``bridge.model`` and ``bridge.storage``; aiohttp, Slack, ``handlers``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bridge.model import OutboxItem, OutboxWrite
from bridge.storage.postgres.connection import PgBase, lock_key, rowcount
from bridge.storage.postgres.rows import to_item

_UNDONE = "done_at IS NULL AND failed_at IS NULL"
# The first undone item of every thread: only it may be delivered, so order within a thread holds.
_HEADS = f"SELECT MIN(id) FROM slack_outbox WHERE {_UNDONE} GROUP BY thread_key"
# Released as an expired claim (not NULL): whether the cut-off attempt reached Slack is unknown.
EXPIRED = datetime.fromtimestamp(0, UTC)


def pace_row_id(thread_key: str) -> int:
    """``thread_key``'s posting bucket row: as ``bridge.storage.sqlite.outbox.pace_row_id`` (same id, same meaning:
    a finished ``pace`` row whose ``next_attempt_at`` is the bucket's theoretical arrival time)."""
    return -1 - int.from_bytes(hashlib.sha256(thread_key.encode()).digest()[:7], "big")


# The item ``OutboxWrite.append`` extends ($1 ref, $2 kind): the newest undone item of the ref that shows in its
# thread, if it is of this kind and its delivery never began. Re-checked by the UPDATE on the row it locks, so a
# claim committed meanwhile (READ COMMITTED) makes it miss and a new item is inserted instead.
_APPENDABLE = f"""id = (SELECT MAX(a.id) FROM slack_outbox a WHERE a.ref = $1 AND a.kind IN ($2, 'post')
                        AND a.done_at IS NULL AND a.failed_at IS NULL)
                  AND kind = $2 AND claimed_until IS NULL AND attempts = 0 AND {_UNDONE}"""


async def insert_item(conn: asyncpg.Connection, write: OutboxWrite, now: datetime, *,
                      ref_serialised: bool = False) -> int | None:
    """Add one item inside the caller's transaction; None if nothing was inserted.

    With ``covered_by``, nothing if an undone, unclaimed item of such a kind waits for the same ref; with
    ``append``, the waiting item's list is extended instead (a conditional UPDATE) and the INSERT is conditional
    on the same clause. Both are checked under a lock on the ref, so two concurrent callers cannot both see
    "nothing queued". An item whose delivery has started (live claim) does not count.
    """
    due = now + timedelta(seconds=write.delay)
    values = (write.thread_key, write.kind, write.ref, write.channel, json.dumps(write.payload), now, due)
    if write.append or write.covered_by:
        if not ref_serialised:
            await lock_key(conn, "outbox-ref", write.ref or "")
        return await _conditional_insert(conn, write, now, due)
    item_id = await conn.fetchval(
        """INSERT INTO slack_outbox (thread_key, kind, ref, channel, payload, created_at, next_attempt_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""", *values)
    return int(item_id)


async def _conditional_insert(conn: asyncpg.Connection, write: OutboxWrite, now: datetime,
                              due: datetime) -> int | None:
    """``insert_item`` with ``append`` or ``covered_by``, once every writer of this ref's items is serialised
    (the advisory lock, or ``announce_status``'s row lock on the message): one statement each. The append and the
    insert share one statement, the insert conditional only on the append having found nothing — not on a second
    look at the snapshot, which could still show an item that a worker's claim (committed meanwhile) made
    unappendable."""
    payload = json.dumps(write.payload)
    if write.append:
        entries = json.dumps(list(write.payload.get(write.append, [])))
        item_id = await conn.fetchval(
            f"""WITH appended AS (
                    UPDATE slack_outbox SET payload = jsonb_set(
                        payload::jsonb, ARRAY[$3::text], COALESCE(payload::jsonb -> $3::text, '[]'::jsonb) || $4::jsonb
                    )::text
                    WHERE {_APPENDABLE} RETURNING id)
                INSERT INTO slack_outbox (thread_key, kind, ref, channel, payload, created_at, next_attempt_at)
                SELECT $5, $2, $1, $6, $7, $8, $9 WHERE NOT EXISTS (SELECT 1 FROM appended) RETURNING id""",
            write.ref, write.kind, write.append, entries, write.thread_key, write.channel, payload, now, due)
        return None if item_id is None else int(item_id)
    item_id = await conn.fetchval(
        f"""INSERT INTO slack_outbox (thread_key, kind, ref, channel, payload, created_at, next_attempt_at)
            SELECT $1, $2, $3, $4, $5, $6, $7
            WHERE NOT EXISTS (SELECT 1 FROM slack_outbox WHERE ref = $3 AND kind = ANY($8::text[]) AND {_UNDONE}
                                  AND (claimed_until IS NULL OR claimed_until <= $6))
            RETURNING id""",
        write.thread_key, write.kind, write.ref, write.channel, payload, now, due, list(write.covered_by))
    return None if item_id is None else int(item_id)


class OutboxSql(PgBase):
    """Methods of ``Store`` for the Slack outbox."""

    async def outbox_add(
        self, thread_key: str, kind: str, ref: str | None, channel: str | None, payload: dict[str, Any],
        now: datetime,
    ) -> int:
        async with self._tx() as conn:
            item_id = await insert_item(conn, OutboxWrite(thread_key, kind, ref, channel, payload), now)
        assert item_id is not None
        return item_id

    async def outbox_add_coalesced(
        self, thread_key: str, kind: str, ref: str, channel: str | None, payload: dict[str, Any],
        covered_by: Sequence[str], now: datetime,
    ) -> int | None:
        async with self._tx() as conn:
            return await insert_item(conn, OutboxWrite(thread_key, kind, ref, channel, payload, tuple(covered_by)),
                                     now)

    async def outbox_due(self, now: datetime, limit: int) -> list[OutboxItem]:
        rows = await self._read(
            f"""SELECT * FROM slack_outbox WHERE id IN ({_HEADS})
                    AND next_attempt_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1)
                ORDER BY next_attempt_at, id LIMIT $2""",
            now, max(0, int(limit)),
        )
        return [to_item(r) for r in rows]

    async def outbox_next_due(self) -> datetime | None:
        value = await self._row(
            f"SELECT MIN(GREATEST(next_attempt_at, claimed_until)) AS at FROM slack_outbox WHERE id IN ({_HEADS})")
        return None if value is None or value["at"] is None else value["at"]

    async def outbox_claim(self, item_id: int, owner: str, now: datetime, until: datetime) -> bool:
        async with self._tx() as conn:
            thread_key = await conn.fetchval(f"SELECT thread_key FROM slack_outbox WHERE id = $1 AND {_UNDONE}",
                                             item_id)
            if thread_key is None:
                return False
            # Every claim in this thread waits here: the checks below and the update are one step. A claim without
            # an owner counts as another owner's (IS DISTINCT FROM), as in SQLite.
            await lock_key(conn, "outbox-thread", thread_key)
            status = await conn.execute(
                f"""UPDATE slack_outbox SET claimed_by = $2, claimed_until = $4
                    WHERE id = $1 AND {_UNDONE}
                      AND id = (SELECT MIN(id) FROM slack_outbox WHERE thread_key = $5 AND {_UNDONE})
                      AND NOT EXISTS (
                          SELECT 1 FROM slack_outbox WHERE thread_key = $5 AND {_UNDONE}
                              AND claimed_until > $3 AND claimed_by IS DISTINCT FROM $2)""",
                item_id, owner, now, until, thread_key)
            return rowcount(status) == 1

    async def outbox_renew(self, item_id: int, owner: str, until: datetime) -> bool:
        count = await self._execute(
            f"UPDATE slack_outbox SET claimed_until = $3 WHERE id = $1 AND claimed_by = $2 AND {_UNDONE}",
            item_id, owner, until)
        return count == 1

    async def outbox_release(self, item_id: int) -> None:
        await self._execute("UPDATE slack_outbox SET claimed_until = $2, claimed_by = NULL WHERE id = $1",
                            item_id, EXPIRED)

    async def outbox_done(self, item_id: int, result: str | None, now: datetime) -> None:
        await self._execute(
            """UPDATE slack_outbox SET done_at = $3, result = $2, claimed_until = NULL, claimed_by = NULL,
                   attempts = attempts + 1 WHERE id = $1""", item_id, result, now)

    async def outbox_retry(self, item_id: int, error: str, next_attempt_at: datetime, result: str | None) -> None:
        await self._execute(
            """UPDATE slack_outbox SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3, result = $4,
                   claimed_until = NULL, claimed_by = NULL WHERE id = $1""", item_id, error, next_attempt_at, result)

    async def outbox_fail(self, item_id: int, error: str, now: datetime) -> None:
        await self._execute(
            """UPDATE slack_outbox SET failed_at = $3, last_error = $2, claimed_until = NULL, claimed_by = NULL,
                   attempts = attempts + 1 WHERE id = $1""", item_id, error, now)

    async def outbox_pending(self) -> int:
        row = await self._row(f"SELECT COUNT(*) AS n FROM slack_outbox WHERE {_UNDONE}")
        return 0 if row is None else int(row["n"])

    async def outbox_failed(self, limit: int = 100) -> list[OutboxItem]:
        rows = await self._read(
            "SELECT * FROM slack_outbox WHERE failed_at IS NOT NULL ORDER BY id DESC LIMIT $1", max(0, int(limit)))
        return [to_item(r) for r in rows]

    async def outbox_get(self, item_id: int) -> OutboxItem | None:
        rows = await self._read("SELECT * FROM slack_outbox WHERE id = $1", item_id)
        return to_item(rows[0]) if rows else None

    async def outbox_defer(self, item_id: int, owner: str, until: datetime) -> bool:
        count = await self._execute(
            f"""UPDATE slack_outbox SET next_attempt_at = $3, claimed_until = NULL, claimed_by = NULL
                WHERE id = $1 AND claimed_by = $2 AND {_UNDONE}""", item_id, owner, until)
        return count == 1

    async def outbox_take_post(self, thread_key: str, now: datetime, interval: float, burst: int) -> float:
        # GCRA, as in SQLite: one upsert checks and takes atomically (the conflicting row is locked and re-checked).
        row_id, step = pace_row_id(thread_key), timedelta(seconds=interval)
        tolerance = timedelta(seconds=(max(1, burst) - 1) * interval)
        async with self._tx() as conn:
            taken = await conn.fetchval(
                """INSERT INTO slack_outbox (id, thread_key, kind, payload, created_at, next_attempt_at, done_at)
                   VALUES ($1, $2, 'pace', '{}', $3::timestamptz, $3::timestamptz + $4::interval, $3::timestamptz)
                   ON CONFLICT (id) DO UPDATE
                       SET next_attempt_at = GREATEST(slack_outbox.next_attempt_at, $3::timestamptz) + $4::interval,
                           done_at = $3::timestamptz
                       WHERE slack_outbox.next_attempt_at - $5::interval <= $3::timestamptz
                   RETURNING id""", row_id, thread_key, now, step, tolerance)
            if taken is not None:
                return 0.0
            tat = await conn.fetchval("SELECT next_attempt_at FROM slack_outbox WHERE id = $1", row_id)
        if tat is None:
            return 0.001
        return max(0.001, float((tat - tolerance - now).total_seconds()))

    async def outbox_post_finished(self, thread_key: str, at: datetime, interval: float) -> None:
        await self._execute(
            "UPDATE slack_outbox SET next_attempt_at = GREATEST(next_attempt_at, $2) WHERE id = $1",
            pace_row_id(thread_key), at + timedelta(seconds=interval))

    async def outbox_prune(self, before: datetime) -> int:
        return await self._execute("DELETE FROM slack_outbox WHERE done_at < $1 OR failed_at < $1", before)

    # -- issue 11: mms-in

    async def outbox_note_result(self, item_id: int, owner: str, result: str) -> bool:
        count = await self._execute(
            f"UPDATE slack_outbox SET result = $3 WHERE id = $1 AND claimed_by = $2 AND {_UNDONE}",
            item_id, owner, result)
        return count == 1
