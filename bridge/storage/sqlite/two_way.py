"""SQLite storage of two-way conversations: migrations 2, 8 and 9 and the ``Store`` methods ``bridge.two_way`` needs.

Owns: the conversation, inbound, opt_out, slack_event and reply_source tables, and the intents that must be
stored atomically with a claim: an inbound text with its opt-out change and outbox items (``record_inbound``), a
thread reply keyed by its Slack message (``create_reply_intent``, which also finishes the reply as received:
the slack_reply table of ``record_reply`` / ``claim_reply``, stored before Slack is answered) and a Retry
(``create_retry_intent``). Mixed into
``bridge.storage.sqlite.store.SqliteStore``, whose ``_one`` / ``_write`` / ``_db`` / ``_write_lock`` (serialised writes,
``StoreUnavailable``) it uses; kept in its own module so the two-way SQL does not tangle with the send/receipt SQL.
Must not import: aiohttp, Slack packages, ``handlers``, ``bridge.storage.sqlite.store`` (it is imported by it).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import aiosqlite

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
from bridge.storage.port import StoreUnavailable
from bridge.storage.sqlite.compliance import AUTO_REPLY_THREAD_SQL, insert_auto_reply
from bridge.storage.sqlite.outbox import insert_statements
from bridge.storage.sqlite.timefmt import db_time
from sw_api.models import InboundMessage

T = TypeVar("T")

MIGRATION = """
    CREATE TABLE conversation (
        our_number TEXT NOT NULL,
        their_number TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        thread_ts TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (our_number, their_number)
    );
    CREATE INDEX conversation_thread ON conversation (channel_id, thread_ts);
    CREATE TABLE inbound (message_id TEXT PRIMARY KEY, received_at TEXT NOT NULL);
    CREATE TABLE opt_out (
        our_number TEXT NOT NULL,
        their_number TEXT NOT NULL,
        opted_out_at TEXT NOT NULL,
        keyword TEXT NOT NULL,
        PRIMARY KEY (our_number, their_number)
    );
    CREATE TABLE slack_event (key TEXT PRIMARY KEY, seen_at TEXT NOT NULL);
    CREATE TABLE reply_source (ref TEXT PRIMARY KEY REFERENCES outbound (ref), source_ts TEXT NOT NULL);
"""


# 8: durable inbound texts and intents. An inbound row is the whole message plus where it was posted; rows of
# migration 2 (ids only) read as already handled. parent_attempt marks a parent post that was started, so a
# crash between Slack's answer and storing its ts makes the next attempt look before posting again.
DURABLE_MIGRATION = """
    ALTER TABLE inbound ADD COLUMN our_number TEXT;
    ALTER TABLE inbound ADD COLUMN their_number TEXT;
    ALTER TABLE inbound ADD COLUMN body TEXT;
    ALTER TABLE inbound ADD COLUMN media TEXT;
    ALTER TABLE inbound ADD COLUMN channel_id TEXT;
    ALTER TABLE inbound ADD COLUMN thread_ts TEXT;
    ALTER TABLE inbound ADD COLUMN ts TEXT;
    ALTER TABLE inbound ADD COLUMN posted_at TEXT;
    CREATE INDEX reply_source_ts ON reply_source (source_ts);
    CREATE TABLE parent_attempt (ref TEXT PRIMARY KEY, started_at TEXT NOT NULL);
"""

# 9: thread replies stored as Slack delivered them, before Slack is answered, keyed by their Slack message.
# claimed_until is the lease of the process turning one into an intent (or an explanation); done_at is set in the
# transaction that stores the intent (create_reply_intent) or by finish_reply.
REPLY_MIGRATION = """
    CREATE TABLE slack_reply (
        channel_id TEXT NOT NULL,
        ts TEXT NOT NULL,
        thread_ts TEXT NOT NULL,
        user_id TEXT NOT NULL,
        text TEXT NOT NULL,
        team_id TEXT NOT NULL DEFAULT '',
        subtype TEXT,
        received_at TEXT NOT NULL,
        claimed_until TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        done_at TEXT,
        outcome TEXT,
        PRIMARY KEY (channel_id, ts)
    );
    CREATE INDEX slack_reply_open ON slack_reply (claimed_until) WHERE done_at IS NULL;
    CREATE INDEX slack_reply_received_at ON slack_reply (received_at);
"""

_DB_ERRORS = (sqlite3.Error, ValueError)


def _row_to_reply(row: aiosqlite.Row) -> SlackReply:
    return SlackReply(row["channel_id"], row["thread_ts"], row["ts"], row["user_id"], row["text"], row["team_id"],
                      row["subtype"], row["attempts"], tuple(json.loads(row["files"] or "[]")))

_INSERT_OUTBOUND = """INSERT INTO outbound (ref, created_at, updated_at, team_id, channel_id, user_id, to_number,
       from_number, body, media, send_as_mms, origin, state, parent_ts, retry_of)
   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""


def _outbound_params(ref: str, request: SendRequest, now: datetime) -> tuple[Any, ...]:
    return (ref, db_time(now), db_time(now), request.team_id, request.channel_id, request.user_id, request.to,
            request.from_, request.body, json.dumps(list(request.media)), int(request.send_as_mms), request.origin,
            SendState.PENDING.value, request.thread_ts, request.retry_of)


# The intent a Slack thread reply created (not a later Retry of it, which shares its source_ts).
_FIRST_REPLY = """SELECT o.ref FROM outbound o JOIN reply_source r ON r.ref = o.ref
   WHERE r.source_ts = ? AND o.channel_id = ? AND o.retry_of IS NULL ORDER BY o.created_at LIMIT 1"""

_SET_CONVERSATION = """INSERT INTO conversation (our_number, their_number, channel_id, thread_ts, updated_at)
   VALUES (?, ?, ?, ?, ?)
   ON CONFLICT (our_number, their_number) DO UPDATE SET channel_id = excluded.channel_id,
       thread_ts = excluded.thread_ts, updated_at = excluded.updated_at"""


def _row_to_conversation(row: aiosqlite.Row) -> Conversation:
    return Conversation(row["our_number"], row["their_number"], row["channel_id"], row["thread_ts"],
                        datetime.fromisoformat(row["updated_at"]))


class TwoWaySql:
    """Methods of ``Store`` for conversations; the host class provides ``_one``, ``_all``, ``_write``, ``_db``,
    ``_write_lock``, ``_check_open`` and ``get_outbound``."""

    _db: aiosqlite.Connection
    _write_lock: asyncio.Lock

    async def _one(self, sql: str, params: Sequence[Any]) -> aiosqlite.Row | None:
        raise NotImplementedError

    async def _all(self, sql: str, params: Sequence[Any]) -> list[aiosqlite.Row]:
        raise NotImplementedError

    async def _write(self, sql: str, params: Sequence[Any]) -> int:
        raise NotImplementedError

    def _check_open(self) -> None:
        raise NotImplementedError

    async def get_outbound(self, ref: str) -> OutboundSms | None:
        raise NotImplementedError

    async def _atomic(self, work: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run ``work`` in one ``BEGIN IMMEDIATE`` transaction: all of its writes commit, or none do."""
        self._check_open()
        try:
            async with self._write_lock:
                await self._db.execute("BEGIN IMMEDIATE")
                try:
                    result = await work(self._db)
                    await self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        await self._db.execute("ROLLBACK")
                    raise
                return result
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"SQLite write failed: {exc}") from exc

    # -- inbound (durable: stored with its opt-out change and its Slack posts in one transaction) ---------------

    async def record_inbound(
        self, message: InboundMessage, *, opt_out: str | None, opt_in: bool, items: Sequence[OutboxWrite],
        now: datetime, auto_reply: AutoReply | None = None,
    ) -> bool:
        async def work(db: aiosqlite.Connection) -> bool:
            media = json.dumps([[m.url, m.content_type] for m in message.media])
            cur = await db.execute(
                """INSERT OR IGNORE INTO inbound (message_id, received_at, our_number, their_number, body, media)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                (message.message_id, db_time(now), message.to, message.from_, message.body, media),
            )
            if cur.rowcount != 1:
                return False
            if opt_out is not None:
                await db.execute(
                    """INSERT OR IGNORE INTO opt_out (our_number, their_number, opted_out_at, keyword)
                       VALUES (?, ?, ?, ?)""", (message.to, message.from_, db_time(now), opt_out))
            if opt_in:
                await db.execute("DELETE FROM opt_out WHERE our_number = ? AND their_number = ?",
                                 (message.to, message.from_))
            for item in items:
                for statement in insert_statements(item, now):
                    async with db.execute(*statement) as insert:
                        await insert.fetchall()
            if auto_reply is not None:  # issue 11: after the opt-out / opt-in above, which it depends on
                await insert_auto_reply(db, message.message_id, auto_reply, now)
            return True

        return await self._atomic(work)

    async def inbound_posted(self, message_id: str, channel_id: str, thread_ts: str, ts: str, now: datetime) -> None:
        async def work(db: aiosqlite.Connection) -> None:
            await db.execute("UPDATE inbound SET channel_id = ?, thread_ts = ?, ts = ?, posted_at = ? "
                             "WHERE message_id = ?", (channel_id, thread_ts, ts, db_time(now), message_id))
            async with db.execute("SELECT our_number, their_number FROM inbound WHERE message_id = ?",
                                  (message_id,)) as cur:
                row = await cur.fetchone()
            if row is not None and row["our_number"] is not None:
                await db.execute(_SET_CONVERSATION,
                                 (row["our_number"], row["their_number"], channel_id, thread_ts, db_time(now)))
            # issue 11: the text's auto-reply shows its receipts in the thread the text went into.
            await db.execute(AUTO_REPLY_THREAD_SQL, (channel_id, thread_ts, db_time(now), message_id))

        await self._atomic(work)

    async def inbound_posted_at(self, message_id: str) -> InboundPlace | None:
        row = await self._one("SELECT channel_id, thread_ts, ts FROM inbound WHERE message_id = ?", (message_id,))
        if row is None or row["ts"] is None:
            return None
        return InboundPlace(row["channel_id"], row["thread_ts"], row["ts"])

    # -- intents stored together with their claim -------------------------------------------------------------

    async def reply_intent(self, channel_id: str, source_ts: str) -> OutboundSms | None:
        row = await self._one(_FIRST_REPLY, (source_ts, channel_id))
        return None if row is None else await self.get_outbound(str(row["ref"]))

    async def create_reply_intent(self, ref: str, request: SendRequest, now: datetime) -> tuple[OutboundSms, bool]:
        assert request.source_ts is not None

        async def work(db: aiosqlite.Connection) -> tuple[str, bool]:
            async with db.execute(_FIRST_REPLY, (request.source_ts, request.channel_id)) as cur:
                row = await cur.fetchone()
            if row is not None:
                return str(row["ref"]), False
            await db.execute(_INSERT_OUTBOUND, _outbound_params(ref, request, now))
            await db.execute("INSERT INTO reply_source (ref, source_ts) VALUES (?, ?)", (ref, request.source_ts))
            await db.execute(
                "UPDATE slack_reply SET done_at = ?, outcome = ?, claimed_until = NULL "
                "WHERE channel_id = ? AND ts = ? AND done_at IS NULL",
                (db_time(now), f"intent {ref}", request.channel_id, request.source_ts))
            return ref, True

        stored, created = await self._atomic(work)
        sms = await self.get_outbound(stored)
        assert sms is not None
        return sms, created

    # -- thread replies stored as received (migration 9) --------------------------------------------------------

    async def record_reply(self, reply: SlackReply, now: datetime, claimed_until: datetime) -> bool:
        count = await self._write(
            """INSERT OR IGNORE INTO slack_reply (channel_id, ts, thread_ts, user_id, text, team_id, subtype,
                   received_at, claimed_until, attempts, files)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)""",
            (reply.channel_id, reply.ts, reply.thread_ts, reply.user_id, reply.text, reply.team_id, reply.subtype,
             db_time(now), db_time(claimed_until), json.dumps(list(reply.files))),
        )
        return count == 1

    async def claim_reply(self, channel_id: str, ts: str, now: datetime, until: datetime) -> SlackReply | None:
        async def work(db: aiosqlite.Connection) -> SlackReply | None:
            cur = await db.execute(
                """UPDATE slack_reply SET claimed_until = ?, attempts = attempts + 1
                   WHERE channel_id = ? AND ts = ? AND done_at IS NULL
                     AND (claimed_until IS NULL OR claimed_until <= ?)""",
                (db_time(until), channel_id, ts, db_time(now)))
            if cur.rowcount != 1:
                return None
            async with db.execute("SELECT * FROM slack_reply WHERE channel_id = ? AND ts = ?",
                                  (channel_id, ts)) as rows:
                row = await rows.fetchone()
            return None if row is None else _row_to_reply(row)

        return await self._atomic(work)

    async def release_reply(self, channel_id: str, ts: str) -> None:
        await self._write("UPDATE slack_reply SET claimed_until = NULL WHERE channel_id = ? AND ts = ? "
                          "AND done_at IS NULL", (channel_id, ts))

    async def finish_reply(self, channel_id: str, ts: str, outcome: str, now: datetime) -> bool:
        count = await self._write(
            "UPDATE slack_reply SET done_at = ?, outcome = ?, claimed_until = NULL "
            "WHERE channel_id = ? AND ts = ? AND done_at IS NULL", (db_time(now), outcome, channel_id, ts))
        return count == 1

    async def replies_to_resume(self, now: datetime, limit: int = 100) -> list[SlackReply]:
        rows = await self._all(
            """SELECT * FROM slack_reply WHERE done_at IS NULL AND (claimed_until IS NULL OR claimed_until <= ?)
               ORDER BY received_at LIMIT ?""", (db_time(now), max(0, int(limit))))
        return [_row_to_reply(row) for row in rows]

    async def create_retry_intent(self, ref: str, request: SendRequest, user_id: str, now: datetime) -> bool:
        assert request.retry_of is not None
        retry_of = request.retry_of

        async def work(db: aiosqlite.Connection) -> bool:
            cur = await db.execute(
                "UPDATE outbound SET retried_by = ?, updated_at = ? WHERE ref = ? AND retried_by IS NULL",
                (user_id, db_time(now), retry_of))
            if cur.rowcount != 1:
                return False
            await db.execute(_INSERT_OUTBOUND, _outbound_params(ref, request, now))
            if request.source_ts is not None:
                await db.execute("INSERT INTO reply_source (ref, source_ts) VALUES (?, ?)", (ref, request.source_ts))
            return True

        return await self._atomic(work)

    async def abandon_retry_intent(self, ref: str) -> bool:
        async def work(db: aiosqlite.Connection) -> bool:
            async with db.execute("SELECT retry_of FROM outbound WHERE ref = ? AND state = ? AND attempts = 0",
                                  (ref, SendState.PENDING.value)) as cur:
                row = await cur.fetchone()
            if row is None or row["retry_of"] is None:
                return False
            await db.execute("DELETE FROM reply_source WHERE ref = ?", (ref,))
            await db.execute("DELETE FROM outbound WHERE ref = ?", (ref,))
            await db.execute("UPDATE outbound SET retried_by = NULL WHERE ref = ?", (row["retry_of"],))
            return True

        return await self._atomic(work)

    async def begin_parent_post(self, ref: str, now: datetime) -> bool:
        count = await self._write("INSERT OR IGNORE INTO parent_attempt (ref, started_at) VALUES (?, ?)",
                                  (ref, db_time(now)))
        return count == 0

    async def get_conversation(self, our_number: str, their_number: str) -> Conversation | None:
        row = await self._one(
            "SELECT * FROM conversation WHERE our_number = ? AND their_number = ?", (our_number, their_number)
        )
        return None if row is None else _row_to_conversation(row)

    async def set_conversation(
        self, our_number: str, their_number: str, channel_id: str, thread_ts: str, now: datetime
    ) -> None:
        await self._write(_SET_CONVERSATION, (our_number, their_number, channel_id, thread_ts, db_time(now)))

    async def conversation_by_thread(self, channel_id: str, thread_ts: str) -> Conversation | None:
        row = await self._one(
            "SELECT * FROM conversation WHERE channel_id = ? AND thread_ts = ? ORDER BY updated_at DESC LIMIT 1",
            (channel_id, thread_ts),
        )
        return None if row is None else _row_to_conversation(row)

    async def get_opt_out(self, our_number: str, their_number: str) -> OptOut | None:
        row = await self._one(
            "SELECT * FROM opt_out WHERE our_number = ? AND their_number = ?", (our_number, their_number)
        )
        if row is None:
            return None
        return OptOut(row["our_number"], row["their_number"], datetime.fromisoformat(row["opted_out_at"]),
                      row["keyword"])

    async def set_opt_out(self, our_number: str, their_number: str, keyword: str, now: datetime) -> None:
        await self._write(
            "INSERT OR IGNORE INTO opt_out (our_number, their_number, opted_out_at, keyword) VALUES (?, ?, ?, ?)",
            (our_number, their_number, db_time(now), keyword),
        )

    async def clear_opt_out(self, our_number: str, their_number: str) -> bool:
        count = await self._write(
            "DELETE FROM opt_out WHERE our_number = ? AND their_number = ?", (our_number, their_number)
        )
        return count == 1

    async def claim_slack_event(self, key: str, now: datetime) -> bool:
        count = await self._write("INSERT OR IGNORE INTO slack_event (key, seen_at) VALUES (?, ?)", (key, db_time(now)))
        return count == 1

    async def set_reply_source(self, ref: str, source_ts: str) -> None:
        await self._write("INSERT OR REPLACE INTO reply_source (ref, source_ts) VALUES (?, ?)", (ref, source_ts))

    async def reply_source(self, ref: str) -> str | None:
        row = await self._one("SELECT source_ts FROM reply_source WHERE ref = ?", (ref,))
        return None if row is None else str(row["source_ts"])

    # -- retention (bridge.recovery; migration 6 indexes the age columns) ----------------------------------------

    async def prune_inbound(self, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` inbound rows received before ``before`` (oldest first); returns how many."""
        # By age, and only once posted (or a migration-2 row, ids only): a text still waiting for Slack, or never
        # postable (no inbound channel), is never pruned however old — its outbox items still refer to it.
        return await self._write(
            """DELETE FROM inbound WHERE rowid IN (
                   SELECT rowid FROM inbound WHERE received_at < ? AND (posted_at IS NOT NULL OR our_number IS NULL)
                   ORDER BY received_at LIMIT ?)""",
            (db_time(before), max(0, int(limit))),
        )

    async def prune_replies(self, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` finished thread replies received before ``before``; an unfinished one is kept."""
        return await self._write(
            """DELETE FROM slack_reply WHERE rowid IN (
                   SELECT rowid FROM slack_reply WHERE received_at < ? AND done_at IS NOT NULL
                   ORDER BY received_at LIMIT ?)""",
            (db_time(before), max(0, int(limit))),
        )

    async def prune_slack_events(self, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` Slack event ids first seen before ``before`` (Slack retries for minutes only)."""
        return await self._write(
            """DELETE FROM slack_event WHERE rowid IN (
                   SELECT rowid FROM slack_event WHERE seen_at < ? ORDER BY seen_at LIMIT ?)""",
            (db_time(before), max(0, int(limit))),
        )
