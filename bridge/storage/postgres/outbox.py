"""PostgreSQL storage of the durable Slack outbox: the ``Store`` methods ``bridge.outbox`` needs.

Owns: the ``slack_outbox`` SQL: ordered heads of threads (the first undone item of each ``thread_key``), owner
leases (``outbox_claim`` / ``outbox_renew``, serialised per thread by an advisory transaction lock so two replicas
never post into one thread at once), and ``insert_item`` (one item, coalesced under a per-ref lock), which the
atomic operations of the other mixins call inside their own transactions.
Must not import: anything in ``bridge`` but ``bridge.model`` and ``bridge.storage``; aiohttp, Slack, ``handlers``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
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


async def insert_item(conn: asyncpg.Connection, write: OutboxWrite, now: datetime) -> int | None:
    """Add one item inside the caller's transaction; with ``covered_by``, nothing if an undone, unclaimed item of
    such a kind waits for the same ref (checked and inserted under a lock on the ref, so two concurrent callers
    cannot both see "nothing queued"). An item whose delivery has started (live claim) does not count."""
    values = (write.thread_key, write.kind, write.ref, write.channel, json.dumps(write.payload), now)
    if write.covered_by:
        await lock_key(conn, "outbox-ref", write.ref or "")
        waiting = await conn.fetchval(
            f"""SELECT 1 FROM slack_outbox WHERE ref = $1 AND kind = ANY($2::text[]) AND {_UNDONE}
                    AND (claimed_until IS NULL OR claimed_until <= $3) LIMIT 1""",
            write.ref, list(write.covered_by), now)
        if waiting is not None:
            return None
    item_id = await conn.fetchval(
        """INSERT INTO slack_outbox (thread_key, kind, ref, channel, payload, created_at, next_attempt_at)
           VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id""", *values)
    return int(item_id)


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
            # Every claim in this thread waits here: the checks below and the update are one step.
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

    async def outbox_prune(self, before: datetime) -> int:
        return await self._execute("DELETE FROM slack_outbox WHERE done_at < $1 OR failed_at < $1", before)
