"""PostgreSQL storage of issue 13's bulk sends and of the shared send pace (the tables are migration 18 in
``bridge.storage.postgres.migrations``).

Owns: the bulk ``Store`` methods and ``pace_reserve`` / ``pace_push``. Recipients are a work queue: claimed with
``FOR UPDATE SKIP LOCKED`` in a CTE and one ``UPDATE … RETURNING`` (two replicas never claim the same row); every
other move is one conditional UPDATE or one transaction that locks the recipient (and shares the batch's row, so a
Cancel waits for a hand-over in flight). The pace is one ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` (row-locked).
Must not import: anything in ``bridge`` but ``bridge.model``, ``bridge.bulk_model`` and ``bridge.storage``; aiohttp,
Slack, ``handlers``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import asyncpg

from bridge.bulk_model import BatchState, BulkBatch, BulkProgress, BulkRecipientRow, BulkReportRow, RecipientState
from bridge.model import OutboundSms, SendRequest
from bridge.storage.postgres.connection import PgBase, rowcount
from bridge.storage.postgres.rows import outbound_params, to_sms
from bridge.storage.rows import (
    BULK_PROGRESS_SQL,
    BULK_REPORT_SQL,
    HAND_OVER_NOT_OURS,
    bulk_batch_from_row,
    bulk_recipient_from_row,
    bulk_report_from_row,
    hand_over_check,
)

_FINAL = (BatchState.DONE, BatchState.CANCELLED, BatchState.DISCARDED)

_INSERT_OUTBOUND = """INSERT INTO outbound (ref, created_at, updated_at, team_id, channel_id, user_id, to_number,
       from_number, body, media, send_as_mms, origin, state, parent_ts, retry_of, bulk_id)
   VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"""


def _as_time(value: datetime | None) -> datetime | None:
    return value


def _batch(row: asyncpg.Record) -> BulkBatch:
    return bulk_batch_from_row(row, _as_time)


class BulkSql(PgBase):
    """Methods of ``Store`` for bulk sends and the send pace."""

    async def bulk_create(self, batch: BulkBatch, now: datetime) -> None:
        await self._execute(
            """INSERT INTO bulk_batch (id, team_id, channel_id, user_id, from_number, body, title, state, total,
                   parent_ts, created_at, confirmed_at, finished_at, finished_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)""",
            batch.id, batch.team_id, batch.channel_id, batch.user_id, batch.from_, batch.body, batch.title,
            batch.state.value, batch.total, batch.parent_ts, now, batch.confirmed_at, batch.finished_at,
            batch.finished_by)

    async def bulk_add_recipients(self, batch_id: str, rows: Sequence[BulkRecipientRow]) -> int:
        if not rows:
            return 0
        # One statement for the chunk; a number met again (in the batch or earlier in this chunk) is skipped.
        return await self._execute(
            """INSERT INTO bulk_recipient (batch_id, seq, line, number, name, fields, state, skip_reason, held_until)
               SELECT $1, u.seq, u.line, u.number, u.name, u.fields, u.state, u.skip_reason, u.held_until
               FROM unnest($2::int[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                           $9::timestamptz[]) WITH ORDINALITY
                    AS u(seq, line, number, name, fields, state, skip_reason, held_until, n)
               ORDER BY u.n
               ON CONFLICT (batch_id, number) DO NOTHING""",
            batch_id, [r.seq for r in rows], [r.line for r in rows], [r.number for r in rows],
            [r.name for r in rows], [json.dumps(dict(r.fields), ensure_ascii=False) for r in rows],
            [r.state.value for r in rows], [r.skip_reason for r in rows], [r.not_before for r in rows])

    async def bulk_get(self, batch_id: str) -> BulkBatch | None:
        row = await self._row("SELECT * FROM bulk_batch WHERE id = $1", batch_id)
        return None if row is None else _batch(row)

    async def bulk_set_total(self, batch_id: str, total: int) -> None:
        await self._execute("UPDATE bulk_batch SET total = $1 WHERE id = $2", int(total), batch_id)

    async def bulk_set_parent(self, batch_id: str, ts: str) -> None:
        await self._execute("UPDATE bulk_batch SET parent_ts = $1 WHERE id = $2", ts, batch_id)

    async def bulk_move(self, batch_id: str, from_states: Sequence[BatchState], to: BatchState, now: datetime,
                        by: str | None = None) -> bool:
        if not from_states:
            return False
        async with self._tx() as conn:
            won = rowcount(await conn.execute(
                """UPDATE bulk_batch SET state = $1,
                       confirmed_at = CASE WHEN $1 = 'sending' THEN COALESCE(confirmed_at, $2) ELSE confirmed_at END,
                       finished_at = CASE WHEN $3 THEN $2 ELSE finished_at END,
                       finished_by = CASE WHEN $1 = 'cancelled' THEN $4 ELSE finished_by END
                   WHERE id = $5 AND state = ANY($6::text[])""",
                to.value, now, to in _FINAL, by, batch_id, [s.value for s in from_states])) == 1
            if won and to is BatchState.CANCELLED:
                # A live lease is left to its holder: bulk_hand_over sees the batch cancelled and cancels its row.
                await conn.execute(
                    """UPDATE bulk_recipient SET state = 'cancelled', claimed_by = NULL, claimed_until = NULL
                       WHERE batch_id = $1 AND (state = 'waiting' OR (state = 'claimed' AND claimed_until <= $2))""",
                    batch_id, now)
            return won

    async def bulk_claim(self, owner: str, now: datetime, until: datetime,
                         limit: int) -> list[tuple[str, BulkRecipientRow]]:
        rows = await self._fetch_write(
            """WITH picked AS (
                   SELECT r.batch_id, r.seq, b.created_at AS b_created FROM bulk_recipient r
                   JOIN bulk_batch b ON b.id = r.batch_id
                   WHERE b.state = 'sending'
                     AND (r.state = 'waiting' OR (r.state = 'claimed' AND r.claimed_until <= $1))
                     AND (r.held_until IS NULL OR r.held_until <= $1)
                   ORDER BY b.created_at, b.id, r.seq LIMIT $4
                   FOR UPDATE OF r SKIP LOCKED),
               claimed AS (
                   UPDATE bulk_recipient r SET state = 'claimed', claimed_by = $2, claimed_until = $3
                   FROM picked WHERE r.batch_id = picked.batch_id AND r.seq = picked.seq
                   RETURNING r.*, picked.b_created)
               SELECT * FROM claimed ORDER BY b_created, batch_id, seq""",
            now, owner, until, max(0, int(limit)))
        return [(str(r["batch_id"]), replace(bulk_recipient_from_row(r, _as_time), state=RecipientState.CLAIMED))
                for r in rows]

    async def bulk_hand_over(self, batch_id: str, seq: int, owner: str, ref: str, request: SendRequest,
                             now: datetime) -> OutboundSms | None:
        async with self._tx() as conn:
            row = await conn.fetchrow(
                """SELECT r.state, r.claimed_by, r.number, b.state AS b_state FROM bulk_recipient r
                   JOIN bulk_batch b ON b.id = r.batch_id WHERE r.batch_id = $1 AND r.seq = $2
                   FOR UPDATE OF r FOR SHARE OF b""", batch_id, seq)
            verdict = hand_over_check(row, owner, request.to, batch_id, seq)
            if verdict == HAND_OVER_NOT_OURS:
                return None
            if isinstance(verdict, RecipientState):
                await _release(conn, batch_id, seq, verdict, None)
                return None
            refused = await conn.fetchval(
                """SELECT 'opted out' FROM opt_out WHERE our_number = $1 AND their_number = $2
                   UNION ALL SELECT 'blocked' FROM blocked_number WHERE number = $2 LIMIT 1""",
                request.from_, request.to)
            if refused is not None:
                await _release(conn, batch_id, seq, RecipientState.SKIPPED, str(refused))
                return None
            await conn.execute(_INSERT_OUTBOUND, *outbound_params(ref, request, now), batch_id)
            await conn.execute(
                """UPDATE bulk_recipient SET state = 'handed', ref = $1, claimed_by = NULL, claimed_until = NULL
                   WHERE batch_id = $2 AND seq = $3""", ref, batch_id, seq)
            sms = await conn.fetchrow("SELECT * FROM outbound WHERE ref = $1", ref)
            assert sms is not None
            return to_sms(sms)

    async def bulk_defer(self, batch_id: str, seq: int, owner: str, not_before: datetime) -> bool:
        return await self._execute(
            """UPDATE bulk_recipient SET state = 'waiting', held_until = $1, claimed_by = NULL, claimed_until = NULL
               WHERE batch_id = $2 AND seq = $3 AND state = 'claimed' AND claimed_by = $4""",
            not_before, batch_id, seq, owner) == 1

    async def bulk_skip(self, batch_id: str, seq: int, owner: str, reason: str) -> bool:
        return await self._execute(
            """UPDATE bulk_recipient SET state = 'skipped', skip_reason = $1, claimed_by = NULL, claimed_until = NULL
               WHERE batch_id = $2 AND seq = $3 AND state = 'claimed' AND claimed_by = $4""",
            reason, batch_id, seq, owner) == 1

    async def bulk_progress(self, batch_id: str, now: datetime) -> BulkProgress:
        row = await self._row(BULK_PROGRESS_SQL.format(now="$1", batch="$2"), now, batch_id)
        assert row is not None
        return BulkProgress(sent=int(row["sent"]), delivered=int(row["delivered"]), failed=int(row["failed"]),
                            skipped=int(row["skipped"]), remaining=int(row["remaining"]),
                            quiet_waiting=int(row["quiet_waiting"]), cancelled=int(row["cancelled"]))

    async def bulk_report(self, batch_id: str, after_seq: int, limit: int) -> list[tuple[int, BulkReportRow]]:
        rows = await self._read(BULK_REPORT_SQL.format(batch="$1", after="$2", limit="$3"),
                                batch_id, int(after_seq), max(0, int(limit)))
        return [(int(r["seq"]), bulk_report_from_row(r, _as_time)) for r in rows]

    async def bulk_unfinished(self, limit: int = 100) -> list[BulkBatch]:
        rows = await self._read(
            "SELECT * FROM bulk_batch WHERE state IN ('sending', 'paused') ORDER BY created_at, id LIMIT $1",
            max(0, int(limit)))
        return [_batch(r) for r in rows]

    async def bulk_finished_if_done(self, batch_id: str, now: datetime) -> bool:
        return await self._execute(
            """UPDATE bulk_batch SET state = 'done', finished_at = $1
               WHERE id = $2 AND state = 'sending' AND NOT EXISTS (
                   SELECT 1 FROM bulk_recipient WHERE batch_id = $2 AND state IN ('waiting', 'claimed'))""",
            now, batch_id) == 1

    async def pace_reserve(self, from_number: str, segments: int, seconds_per_segment: float,
                           now: datetime) -> datetime:
        length = timedelta(seconds=max(0, int(segments)) * max(0.0, float(seconds_per_segment)))
        rows = await self._fetch_write(
            """INSERT INTO send_pace (from_number, next_at) VALUES ($1, $2::timestamptz + $3::interval)
               ON CONFLICT (from_number) DO UPDATE SET next_at = GREATEST(send_pace.next_at, $2) + $3::interval
               RETURNING next_at""", from_number, now, length)
        next_at: datetime = rows[0]["next_at"]
        return next_at - length

    async def pace_push(self, from_number: str, until: datetime) -> None:
        await self._execute(
            """INSERT INTO send_pace (from_number, next_at) VALUES ($1, $2)
               ON CONFLICT (from_number) DO UPDATE SET next_at = GREATEST(send_pace.next_at, excluded.next_at)""",
            from_number, until)

    async def bulk_latest_to(self, our_number: str, their_number: str) -> tuple[str, datetime] | None:
        # One index read (``outbound_pair``, migration 17): the newest message of the pair, bulk or not.
        row = await self._row(
            """SELECT bulk_id, created_at FROM outbound WHERE from_number = $1 AND to_number = $2
               ORDER BY created_at DESC, rowid DESC LIMIT 1""", our_number, their_number)
        if row is None or row["bulk_id"] is None:
            return None
        return str(row["bulk_id"]), row["created_at"]


async def _release(conn: asyncpg.Connection, batch_id: str, seq: int, state: RecipientState,
                   reason: str | None) -> None:
    await conn.execute(
        """UPDATE bulk_recipient SET state = $1, skip_reason = COALESCE($2, skip_reason), claimed_by = NULL,
               claimed_until = NULL WHERE batch_id = $3 AND seq = $4""", state.value, reason, batch_id, seq)
