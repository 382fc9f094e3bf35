"""PostgreSQL storage of issue 11's compliance slice: auto-replies stored with their inbound text, the block list.

Owns: the ``blocked_number`` and ``auto_reply`` SQL (the tables are migration 13 in
``bridge.storage.postgres.migrations``), ``insert_auto_reply`` (called inside ``record_inbound``'s transaction; the
``auto_reply`` primary key (message id, kind) is the last word, so two replicas never both store one) and the
block-list ``Store`` methods.
Must not import: anything in ``bridge`` but ``bridge.model`` and ``bridge.storage``; aiohttp, Slack, ``handlers``.
"""

from __future__ import annotations

import secrets
from datetime import datetime

import asyncpg

from bridge.model import OPT_OUT_EXEMPT, AuditAction, AutoReply, BlockedNumber, OutboundSms, SendState
from bridge.storage.postgres.connection import PgBase
from bridge.storage.postgres.outbox import insert_item
from bridge.storage.postgres.rows import INSERT_OUTBOUND, outbound_params

# Refused for a new send (``create_outbound_unless_opted_out``, the ack path): $6 is the recipient there.
NOT_BLOCKED_SQL = "NOT EXISTS (SELECT 1 FROM blocked_number WHERE number = $6::text)"

# ``inbound_posted``: the text's auto-reply is shown (receipts) in the thread the text went into.
AUTO_REPLY_THREAD_SQL = """UPDATE outbound SET channel_id = $1, parent_ts = $2, updated_at = $3
   WHERE ref IN (SELECT ref FROM auto_reply WHERE message_id = $4) AND parent_ts IS NULL"""


def _to_block(row: asyncpg.Record) -> BlockedNumber:
    return BlockedNumber(row["number"], row["reason"], row["blocked_by"], row["blocked_at"])


async def insert_auto_reply(conn: asyncpg.Connection, message_id: str, auto_reply: AutoReply, now: datetime) -> bool:
    """Inside ``record_inbound``'s transaction (after its opt-out / opt-in): store the auto-reply's intent, its link
    to the text, its audit row and its outbox items; False (nothing stored) if the number may not be texted (opted
    out or blocked, and the kind is not exempt) or the text has one of this kind already."""
    request = auto_reply.request
    if await conn.fetchval("SELECT 1 FROM auto_reply WHERE message_id = $1 AND kind = $2",
                           message_id, auto_reply.kind.value) is not None:
        return False
    if auto_reply.kind not in OPT_OUT_EXEMPT and await conn.fetchval(
            """SELECT 1 FROM opt_out WHERE our_number = $1 AND their_number = $2
               UNION ALL SELECT 1 FROM blocked_number WHERE number = $2 LIMIT 1""",
            request.from_, request.to) is not None:
        return False
    await conn.execute(INSERT_OUTBOUND, *outbound_params(auto_reply.ref, request, now))
    # A plain INSERT: the primary key is the last word if a concurrent transaction got past the check above.
    await conn.execute("INSERT INTO auto_reply (message_id, kind, ref, created_at) VALUES ($1, $2, $3, $4)",
                       message_id, auto_reply.kind.value, auto_reply.ref, now)
    await conn.execute(
        """INSERT INTO audit (id, at, user_id, channel_id, action, to_number, from_number, ref, reason, outcome)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        secrets.token_hex(8), now, request.user_id, request.channel_id, AuditAction.AUTO_REPLY.value, request.to,
        request.from_, auto_reply.ref, auto_reply.kind.value, SendState.PENDING.value)
    for item in auto_reply.items:
        await insert_item(conn, item, now)
    return True


class ComplianceSql(PgBase):
    """Methods of ``Store`` for the block list and auto-replies."""

    async def get_outbound(self, ref: str) -> OutboundSms | None:
        raise NotImplementedError

    async def auto_reply_for(self, message_id: str, kind: str) -> OutboundSms | None:
        row = await self._row("SELECT ref FROM auto_reply WHERE message_id = $1 AND kind = $2", message_id, kind)
        return None if row is None else await self.get_outbound(str(row["ref"]))

    async def get_block(self, number: str) -> BlockedNumber | None:
        row = await self._row("SELECT * FROM blocked_number WHERE number = $1", number)
        return None if row is None else _to_block(row)

    async def block_number(self, number: str, reason: str, blocked_by: str, now: datetime) -> bool:
        count = await self._execute(
            """INSERT INTO blocked_number (number, reason, blocked_by, blocked_at) VALUES ($1, $2, $3, $4)
               ON CONFLICT (number) DO NOTHING""", number, reason, blocked_by, now)
        return count == 1

    async def unblock_number(self, number: str) -> BlockedNumber | None:
        rows = await self._fetch_write("DELETE FROM blocked_number WHERE number = $1 RETURNING *", number)
        return _to_block(rows[0]) if rows else None

    async def blocked_numbers(self, limit: int = 100) -> list[BlockedNumber]:
        rows = await self._read("SELECT * FROM blocked_number ORDER BY blocked_at DESC, number LIMIT $1",
                                max(0, int(limit)))
        return [_to_block(r) for r in rows]
