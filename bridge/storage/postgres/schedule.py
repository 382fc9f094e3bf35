"""PostgreSQL storage of issue 12's scheduled sends: the ``scheduled_send`` SQL (the table is migration 16 in
``bridge.storage.postgres.migrations``).

Owns: the scheduled-send ``Store`` methods. Leaving ``scheduled`` is one conditional UPDATE
(``WHERE state = 'scheduled'``, row-locked by PostgreSQL) in the same transaction as the message's own state change,
so of several replicas (or a Cancel racing the due time) exactly one wins.
Must not import: anything in ``bridge`` but ``bridge.model`` and ``bridge.storage``; aiohttp, Slack, ``handlers``.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from bridge.model import OutboundSms, ScheduledSend, ScheduleOutcome, SendRequest, SendState
from bridge.storage.postgres.connection import PgBase, rowcount
from bridge.storage.postgres.rows import INSERT_OUTBOUND, outbound_params, to_sms

_SELECT = """SELECT o.*, s.due_at AS s_due_at, s.tz AS s_tz, s.state AS s_state, s.finished_at AS s_finished_at,
       s.finished_by AS s_finished_by FROM scheduled_send s JOIN outbound o ON o.ref = s.ref"""


def _to_scheduled(row: asyncpg.Record) -> ScheduledSend:
    return ScheduledSend(to_sms(row), row["s_due_at"], row["s_tz"], ScheduleOutcome(row["s_state"]),
                         row["s_finished_at"], row["s_finished_by"])


class ScheduleSql(PgBase):
    """Methods of ``Store`` for scheduled sends."""

    async def create_scheduled(self, ref: str, request: SendRequest, due_at: datetime, tz: str,
                               now: datetime) -> OutboundSms | None:
        async with self._tx() as conn:
            if await conn.fetchval(
                    """SELECT 1 FROM opt_out WHERE our_number = $1 AND their_number = $2
                       UNION ALL SELECT 1 FROM blocked_number WHERE number = $2 LIMIT 1""",
                    request.from_, request.to) is not None:
                return None
            params = list(outbound_params(ref, request, now))
            params[11] = SendState.SCHEDULED.value  # the state column of INSERT_OUTBOUND
            await conn.execute(INSERT_OUTBOUND, *params)
            await conn.execute(
                "INSERT INTO scheduled_send (ref, user_id, tz, due_at, created_at) VALUES ($1, $2, $3, $4, $5)",
                ref, request.user_id, tz, due_at, now)
            row = await conn.fetchrow("SELECT * FROM outbound WHERE ref = $1", ref)
            assert row is not None
            return to_sms(row)

    async def get_scheduled(self, ref: str) -> ScheduledSend | None:
        row = await self._row(f"{_SELECT} WHERE s.ref = $1", ref)
        return None if row is None else _to_scheduled(row)

    async def scheduled_of_user(self, user_id: str, limit: int = 50) -> list[ScheduledSend]:
        rows = await self._read(
            f"{_SELECT} WHERE s.user_id = $1 AND s.state = 'scheduled' ORDER BY s.due_at LIMIT $2",
            user_id, max(0, int(limit)))
        return [_to_scheduled(r) for r in rows]

    async def due_scheduled(self, now: datetime, limit: int = 50) -> list[ScheduledSend]:
        rows = await self._read(
            f"{_SELECT} WHERE s.state = 'scheduled' AND s.due_at <= $1 ORDER BY s.due_at LIMIT $2",
            now, max(0, int(limit)))
        return [_to_scheduled(r) for r in rows]

    async def finish_scheduled(self, ref: str, outcome: ScheduleOutcome, by: str | None, reason: str,
                               now: datetime) -> bool:
        if outcome is ScheduleOutcome.SCHEDULED:
            raise ValueError("finish_scheduled needs an outcome other than 'scheduled'")
        async with self._tx() as conn:
            won = rowcount(await conn.execute(
                """UPDATE scheduled_send SET state = $1, finished_at = $2, finished_by = $3
                   WHERE ref = $4 AND state = 'scheduled'""", outcome.value, now, by, ref))
            if not won:
                return False
            if outcome is ScheduleOutcome.RELEASED:
                await conn.execute("UPDATE outbound SET state = $1, updated_at = $2 WHERE ref = $3 AND state = $4",
                                   SendState.PENDING.value, now, ref, SendState.SCHEDULED.value)
            else:
                await conn.execute(
                    """UPDATE outbound SET state = $1, error_code = $2, error_message = $3, updated_at = $4
                       WHERE ref = $5 AND state = $6""",
                    SendState.REJECTED.value, outcome.value, reason, now, ref, SendState.SCHEDULED.value)
            return True
