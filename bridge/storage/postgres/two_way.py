"""PostgreSQL storage of two-way conversations, thread replies and the intents stored with their claim.

Owns: the conversation, inbound, opt_out, slack_event, reply_source, parent_attempt and slack_reply SQL, and the
retention deletes of those tables. Dedups are unique keys with ``INSERT … ON CONFLICT DO NOTHING``; claims are
conditional ``UPDATE … RETURNING``; a reply intent (no unique key: a Retry shares its ``source_ts``) is checked and
inserted under an advisory lock on its Slack message.
Must not import: anything in ``bridge`` but ``bridge.model`` and ``bridge.storage``; aiohttp, Slack, ``handlers``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from bridge.model import (
    AutoReply,
    Conversation,
    InboundPlace,
    OptOut,
    OutboundSms,
    OutboxWrite,
    SendRequest,
    SendState,
    SlackReply,
)
from bridge.storage.postgres.compliance import AUTO_REPLY_THREAD_SQL, insert_auto_reply
from bridge.storage.postgres.connection import PgBase, lock_key, rowcount
from bridge.storage.postgres.outbox import insert_item
from bridge.storage.postgres.rows import INSERT_OUTBOUND, outbound_params, to_conversation, to_reply
from sw_api.models import InboundMessage

# The intent a Slack thread reply created (not a later Retry of it, which shares its source_ts).
_FIRST_REPLY = """SELECT o.ref FROM outbound o JOIN reply_source r ON r.ref = o.ref
   WHERE r.source_ts = $1 AND o.channel_id = $2 AND o.retry_of IS NULL ORDER BY o.created_at, o.rowid LIMIT 1"""

_SET_CONVERSATION = """INSERT INTO conversation (our_number, their_number, channel_id, thread_ts, updated_at)
   VALUES ($1, $2, $3, $4, $5)
   ON CONFLICT (our_number, their_number) DO UPDATE SET channel_id = EXCLUDED.channel_id,
       thread_ts = EXCLUDED.thread_ts, updated_at = EXCLUDED.updated_at"""


class TwoWaySql(PgBase):
    """Methods of ``Store`` for conversations, inbound texts, thread replies and Retry."""

    async def get_outbound(self, ref: str) -> OutboundSms | None:
        raise NotImplementedError

    # -- inbound ---------------------------------------------------------------------------------------------------

    async def record_inbound(
        self, message: InboundMessage, *, opt_out: str | None, opt_in: bool, items: Sequence[OutboxWrite],
        now: datetime, auto_reply: AutoReply | None = None,
    ) -> bool:
        media = json.dumps([[m.url, m.content_type] for m in message.media])
        async with self._tx() as conn:
            inserted = await conn.execute(
                """INSERT INTO inbound (message_id, received_at, our_number, their_number, body, media)
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (message_id) DO NOTHING""",
                message.message_id, now, message.to, message.from_, message.body, media)
            if rowcount(inserted) != 1:
                return False
            if opt_out is not None:
                await conn.execute(
                    """INSERT INTO opt_out (our_number, their_number, opted_out_at, keyword) VALUES ($1, $2, $3, $4)
                       ON CONFLICT (our_number, their_number) DO NOTHING""", message.to, message.from_, now, opt_out)
            if opt_in:
                await conn.execute("DELETE FROM opt_out WHERE our_number = $1 AND their_number = $2",
                                   message.to, message.from_)
            for item in items:
                await insert_item(conn, item, now)
            if auto_reply is not None:  # issue 11: after the opt-out / opt-in above, which it depends on
                await insert_auto_reply(conn, message.message_id, auto_reply, now)
            return True

    async def inbound_posted(self, message_id: str, channel_id: str, thread_ts: str, ts: str, now: datetime) -> None:
        async with self._tx() as conn:
            row = await conn.fetchrow(
                """UPDATE inbound SET channel_id = $2, thread_ts = $3, ts = $4, posted_at = $5 WHERE message_id = $1
                   RETURNING our_number, their_number""", message_id, channel_id, thread_ts, ts, now)
            if row is not None and row["our_number"] is not None:
                await conn.execute(_SET_CONVERSATION, row["our_number"], row["their_number"], channel_id, thread_ts,
                                   now)
            # issue 11: the text's auto-reply shows its receipts in the thread the text went into.
            await conn.execute(AUTO_REPLY_THREAD_SQL, channel_id, thread_ts, now, message_id)

    async def inbound_posted_at(self, message_id: str) -> InboundPlace | None:
        row = await self._row("SELECT channel_id, thread_ts, ts FROM inbound WHERE message_id = $1", message_id)
        if row is None or row["ts"] is None:
            return None
        return InboundPlace(row["channel_id"], row["thread_ts"], row["ts"])

    # -- intents stored together with their claim -----------------------------------------------------------------

    async def reply_intent(self, channel_id: str, source_ts: str) -> OutboundSms | None:
        row = await self._row(_FIRST_REPLY, source_ts, channel_id)
        return None if row is None else await self.get_outbound(str(row["ref"]))

    async def create_reply_intent(self, ref: str, request: SendRequest, now: datetime) -> tuple[OutboundSms, bool]:
        assert request.source_ts is not None
        async with self._tx() as conn:
            await lock_key(conn, "reply-intent", request.channel_id, request.source_ts)
            existing = await conn.fetchval(_FIRST_REPLY, request.source_ts, request.channel_id)
            if existing is not None:
                stored, created = str(existing), False
            else:
                await conn.execute(INSERT_OUTBOUND, *outbound_params(ref, request, now))
                await conn.execute("INSERT INTO reply_source (ref, source_ts) VALUES ($1, $2)", ref, request.source_ts)
                await conn.execute(
                    """UPDATE slack_reply SET done_at = $1, outcome = $2, claimed_until = NULL
                       WHERE channel_id = $3 AND ts = $4 AND done_at IS NULL""",
                    now, f"intent {ref}", request.channel_id, request.source_ts)
                stored, created = ref, True
        sms = await self.get_outbound(stored)
        assert sms is not None
        return sms, created

    async def create_retry_intent(self, ref: str, request: SendRequest, user_id: str, now: datetime) -> bool:
        assert request.retry_of is not None
        async with self._tx() as conn:
            claimed = await conn.execute(
                "UPDATE outbound SET retried_by = $2, updated_at = $3 WHERE ref = $1 AND retried_by IS NULL",
                request.retry_of, user_id, now)
            if rowcount(claimed) != 1:
                return False
            await conn.execute(INSERT_OUTBOUND, *outbound_params(ref, request, now))
            if request.source_ts is not None:
                await conn.execute("INSERT INTO reply_source (ref, source_ts) VALUES ($1, $2)", ref, request.source_ts)
            return True

    async def abandon_retry_intent(self, ref: str) -> bool:
        async with self._tx() as conn:
            row = await conn.fetchrow(
                "SELECT retry_of FROM outbound WHERE ref = $1 AND state = $2 AND attempts = 0 FOR UPDATE",
                ref, SendState.PENDING.value)
            if row is None or row["retry_of"] is None:
                return False
            await conn.execute("DELETE FROM reply_source WHERE ref = $1", ref)
            await conn.execute("DELETE FROM outbound WHERE ref = $1", ref)
            await conn.execute("UPDATE outbound SET retried_by = NULL WHERE ref = $1", row["retry_of"])
            return True

    async def begin_parent_post(self, ref: str, now: datetime) -> bool:
        count = await self._execute(
            "INSERT INTO parent_attempt (ref, started_at) VALUES ($1, $2) ON CONFLICT (ref) DO NOTHING", ref, now)
        return count == 0

    # -- thread replies stored as received (migration 9) ----------------------------------------------------------

    async def record_reply(self, reply: SlackReply, now: datetime, claimed_until: datetime) -> bool:
        count = await self._execute(
            """INSERT INTO slack_reply (channel_id, ts, thread_ts, user_id, text, team_id, subtype, received_at,
                   claimed_until, attempts, files) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10)
               ON CONFLICT (channel_id, ts) DO NOTHING""",
            reply.channel_id, reply.ts, reply.thread_ts, reply.user_id, reply.text, reply.team_id, reply.subtype,
            now, claimed_until, json.dumps(list(reply.files)))
        return count == 1

    async def claim_reply(self, channel_id: str, ts: str, now: datetime, until: datetime) -> SlackReply | None:
        rows = await self._fetch_write(
            """UPDATE slack_reply SET claimed_until = $4, attempts = attempts + 1
               WHERE channel_id = $1 AND ts = $2 AND done_at IS NULL AND (claimed_until IS NULL OR claimed_until <= $3)
               RETURNING *""", channel_id, ts, now, until)
        return to_reply(rows[0]) if rows else None

    async def release_reply(self, channel_id: str, ts: str) -> None:
        await self._execute("UPDATE slack_reply SET claimed_until = NULL WHERE channel_id = $1 AND ts = $2 "
                            "AND done_at IS NULL", channel_id, ts)

    async def finish_reply(self, channel_id: str, ts: str, outcome: str, now: datetime) -> bool:
        count = await self._execute(
            "UPDATE slack_reply SET done_at = $4, outcome = $3, claimed_until = NULL "
            "WHERE channel_id = $1 AND ts = $2 AND done_at IS NULL", channel_id, ts, outcome, now)
        return count == 1

    async def replies_to_resume(self, now: datetime, limit: int = 100) -> list[SlackReply]:
        rows = await self._read(
            """SELECT * FROM slack_reply WHERE done_at IS NULL AND (claimed_until IS NULL OR claimed_until <= $1)
               ORDER BY received_at, channel_id, ts LIMIT $2""", now, max(0, int(limit)))
        return [to_reply(r) for r in rows]

    # -- conversations, opt-outs, Slack events --------------------------------------------------------------------

    async def get_conversation(self, our_number: str, their_number: str) -> Conversation | None:
        row = await self._row("SELECT * FROM conversation WHERE our_number = $1 AND their_number = $2",
                              our_number, their_number)
        return None if row is None else to_conversation(row)

    async def set_conversation(
        self, our_number: str, their_number: str, channel_id: str, thread_ts: str, now: datetime
    ) -> None:
        await self._execute(_SET_CONVERSATION, our_number, their_number, channel_id, thread_ts, now)

    async def conversation_by_thread(self, channel_id: str, thread_ts: str) -> Conversation | None:
        row = await self._row(
            "SELECT * FROM conversation WHERE channel_id = $1 AND thread_ts = $2 ORDER BY updated_at DESC LIMIT 1",
            channel_id, thread_ts)
        return None if row is None else to_conversation(row)

    async def get_opt_out(self, our_number: str, their_number: str) -> OptOut | None:
        row = await self._row("SELECT * FROM opt_out WHERE our_number = $1 AND their_number = $2",
                              our_number, their_number)
        if row is None:
            return None
        return OptOut(row["our_number"], row["their_number"], row["opted_out_at"], row["keyword"])

    async def set_opt_out(self, our_number: str, their_number: str, keyword: str, now: datetime) -> None:
        await self._execute(
            """INSERT INTO opt_out (our_number, their_number, opted_out_at, keyword) VALUES ($1, $2, $3, $4)
               ON CONFLICT (our_number, their_number) DO NOTHING""", our_number, their_number, now, keyword)

    async def clear_opt_out(self, our_number: str, their_number: str) -> bool:
        count = await self._execute("DELETE FROM opt_out WHERE our_number = $1 AND their_number = $2",
                                    our_number, their_number)
        return count == 1

    async def claim_slack_event(self, key: str, now: datetime) -> bool:
        count = await self._execute(
            "INSERT INTO slack_event (key, seen_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", key, now)
        return count == 1

    async def set_reply_source(self, ref: str, source_ts: str) -> None:
        await self._execute(
            """INSERT INTO reply_source (ref, source_ts) VALUES ($1, $2)
               ON CONFLICT (ref) DO UPDATE SET source_ts = EXCLUDED.source_ts""", ref, source_ts)

    async def reply_source(self, ref: str) -> str | None:
        row = await self._row("SELECT source_ts FROM reply_source WHERE ref = $1", ref)
        return None if row is None else str(row["source_ts"])

    # -- retention (bridge.recovery, in small batches) -------------------------------------------------------------

    async def prune_inbound(self, before: datetime, limit: int) -> int:
        # Only once posted (or an ids-only row): a text still waiting for Slack is never pruned however old.
        return await self._execute(
            """DELETE FROM inbound WHERE message_id IN (
                   SELECT message_id FROM inbound
                   WHERE received_at < $1 AND (posted_at IS NOT NULL OR our_number IS NULL)
                   ORDER BY received_at LIMIT $2)""", before, max(0, int(limit)))

    async def prune_replies(self, before: datetime, limit: int) -> int:
        return await self._execute(
            """DELETE FROM slack_reply WHERE (channel_id, ts) IN (
                   SELECT channel_id, ts FROM slack_reply WHERE received_at < $1 AND done_at IS NOT NULL
                   ORDER BY received_at LIMIT $2)""", before, max(0, int(limit)))

    async def prune_slack_events(self, before: datetime, limit: int) -> int:
        return await self._execute(
            """DELETE FROM slack_event WHERE key IN (
                   SELECT key FROM slack_event WHERE seen_at < $1 ORDER BY seen_at LIMIT $2)""",
            before, max(0, int(limit)))
