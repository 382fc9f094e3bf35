"""SQLite storage of two-way conversations: migration 2 and the ``Store`` methods ``bridge.two_way`` needs.

Owns: the conversation, inbound, opt_out, slack_event and reply_source tables. Mixed into
``bridge.sqlite_store.SqliteStore``, whose ``_one`` / ``_write`` (serialised writes, ``StoreUnavailable``) it uses;
kept in its own module so the two-way SQL does not tangle with the send/receipt SQL.
Must not import: aiohttp, Slack packages, ``handlers``, ``bridge.sqlite_store`` (it is imported by it).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import aiosqlite

from bridge.model import Conversation, OptOut
from bridge.sqlite_time import db_time

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


def _row_to_conversation(row: aiosqlite.Row) -> Conversation:
    return Conversation(row["our_number"], row["their_number"], row["channel_id"], row["thread_ts"],
                        datetime.fromisoformat(row["updated_at"]))


class TwoWaySql:
    """Methods of ``Store`` for conversations; the host class provides ``_one`` and ``_write``."""

    async def _one(self, sql: str, params: Sequence[Any]) -> aiosqlite.Row | None:
        raise NotImplementedError

    async def _write(self, sql: str, params: Sequence[Any]) -> int:
        raise NotImplementedError

    async def get_conversation(self, our_number: str, their_number: str) -> Conversation | None:
        row = await self._one(
            "SELECT * FROM conversation WHERE our_number = ? AND their_number = ?", (our_number, their_number)
        )
        return None if row is None else _row_to_conversation(row)

    async def set_conversation(
        self, our_number: str, their_number: str, channel_id: str, thread_ts: str, now: datetime
    ) -> None:
        await self._write(
            """INSERT INTO conversation (our_number, their_number, channel_id, thread_ts, updated_at)
               VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (our_number, their_number) DO UPDATE SET channel_id = excluded.channel_id,
                   thread_ts = excluded.thread_ts, updated_at = excluded.updated_at""",
            (our_number, their_number, channel_id, thread_ts, db_time(now)),
        )

    async def conversation_by_thread(self, channel_id: str, thread_ts: str) -> Conversation | None:
        row = await self._one(
            "SELECT * FROM conversation WHERE channel_id = ? AND thread_ts = ? ORDER BY updated_at DESC LIMIT 1",
            (channel_id, thread_ts),
        )
        return None if row is None else _row_to_conversation(row)

    async def claim_inbound(self, message_id: str, now: datetime) -> bool:
        count = await self._write(
            "INSERT OR IGNORE INTO inbound (message_id, received_at) VALUES (?, ?)", (message_id, db_time(now))
        )
        return count == 1

    async def release_inbound(self, message_id: str) -> None:
        await self._write("DELETE FROM inbound WHERE message_id = ?", (message_id,))

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
        # Pruned by age alone. If inbound rows carry a delivery state (a message stored before its Slack post),
        # add that condition to the inner WHERE (e.g. "AND state = 'posted'"): an undelivered message is never
        # pruned, however old.
        return await self._write(
            """DELETE FROM inbound WHERE rowid IN (
                   SELECT rowid FROM inbound WHERE received_at < ? ORDER BY received_at LIMIT ?)""",
            (db_time(before), max(0, int(limit))),
        )

    async def prune_slack_events(self, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` Slack event ids first seen before ``before`` (Slack retries for minutes only)."""
        return await self._write(
            """DELETE FROM slack_event WHERE rowid IN (
                   SELECT rowid FROM slack_event WHERE seen_at < ? ORDER BY seen_at LIMIT ?)""",
            (db_time(before), max(0, int(limit))),
        )
