"""SQLite storage of issue 11's compliance slice: migration 13, auto-replies stored with their inbound text, the
team-wide block list.

Owns: the ``blocked_number`` and ``auto_reply`` tables, the audit table's wider action list (SQLite cannot alter a
CHECK, so migration 13 rebuilds ``audit`` keeping its rowids), ``insert_auto_reply`` (called inside
``record_inbound``'s transaction) and the block-list ``Store`` methods. Mixed into
``bridge.storage.sqlite.store.SqliteStore``, whose ``_one`` / ``_all`` / ``_write`` it uses.
Must not import: aiohttp, Slack packages, ``handlers``, ``bridge.storage.sqlite.store`` (it is imported by it).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import aiosqlite

from bridge.model import OPT_OUT_EXEMPT, AuditAction, AutoReply, BlockedNumber, OutboundSms, SendState
from bridge.storage.sqlite.outbox import insert_statements
from bridge.storage.sqlite.timefmt import db_time

T = TypeVar("T")

# Spelled out, not taken from ``AuditAction``: a released migration must never change.
_AUDIT_ACTIONS = "'send', 'refused', 'retry', 'reply', 'auto-reply', 'block', 'unblock'"

# 13: the block list (one row per blocked number, whichever of our numbers), the auto-reply of an inbound keyword
# text (its primary key is what makes "one auto-reply per keyword message" hold), and audit actions for both.
MIGRATION = f"""
    CREATE TABLE blocked_number (
        number TEXT PRIMARY KEY,
        reason TEXT NOT NULL DEFAULT '',
        blocked_by TEXT NOT NULL,
        blocked_at TEXT NOT NULL
    );
    CREATE INDEX blocked_number_at ON blocked_number (blocked_at);
    CREATE TABLE auto_reply (
        message_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        ref TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        PRIMARY KEY (message_id, kind)
    );
    CREATE TABLE audit_13 (
        id TEXT PRIMARY KEY,
        at TEXT NOT NULL,
        user_id TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ({_AUDIT_ACTIONS})),
        to_number TEXT NOT NULL DEFAULT '',
        from_number TEXT NOT NULL DEFAULT '',
        ref TEXT,
        reason TEXT,
        outcome TEXT
    );
    INSERT INTO audit_13 (rowid, id, at, user_id, channel_id, action, to_number, from_number, ref, reason, outcome)
        SELECT rowid, id, at, user_id, channel_id, action, to_number, from_number, ref, reason, outcome FROM audit;
    DROP TABLE audit;
    ALTER TABLE audit_13 RENAME TO audit;
    CREATE INDEX audit_user_at ON audit (user_id, at);
    CREATE INDEX audit_ref ON audit (ref);
    CREATE INDEX audit_at ON audit (at);
"""

# Refused for a new send (``create_outbound_unless_opted_out``, the ack path): appended to its opt-out check.
NOT_BLOCKED_SQL = "NOT EXISTS (SELECT 1 FROM blocked_number WHERE number = ?)"

# ``inbound_posted``: the text's auto-reply is shown (receipts) in the thread the text went into.
AUTO_REPLY_THREAD_SQL = """UPDATE outbound SET channel_id = ?, parent_ts = ?, updated_at = ?
   WHERE ref IN (SELECT ref FROM auto_reply WHERE message_id = ?) AND parent_ts IS NULL"""


def _row_to_block(row: aiosqlite.Row | sqlite3.Row) -> BlockedNumber:
    return BlockedNumber(row["number"], row["reason"], row["blocked_by"], datetime.fromisoformat(row["blocked_at"]))


async def insert_auto_reply(db: aiosqlite.Connection, message_id: str, auto_reply: AutoReply, now: datetime) -> bool:
    """Inside ``record_inbound``'s transaction (after its opt-out / opt-in): store the auto-reply's intent, its link
    to the text, its audit row and its outbox items; False (nothing stored) if the number may not be texted (opted
    out or blocked, and the kind is not exempt) or the text has one of this kind already."""
    request = auto_reply.request
    async with db.execute("SELECT 1 FROM auto_reply WHERE message_id = ? AND kind = ?",
                          (message_id, auto_reply.kind.value)) as cur:
        if await cur.fetchone() is not None:
            return False
    if auto_reply.kind not in OPT_OUT_EXEMPT:
        async with db.execute(
                "SELECT 1 FROM opt_out WHERE our_number = ? AND their_number = ? "
                "UNION ALL SELECT 1 FROM blocked_number WHERE number = ?",
                (request.from_, request.to, request.to)) as cur:
            if await cur.fetchone() is not None:
                return False
    await db.execute(
        """INSERT INTO outbound (ref, created_at, updated_at, team_id, channel_id, user_id, to_number, from_number,
               body, media, send_as_mms, origin, state, parent_ts, retry_of)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (auto_reply.ref, db_time(now), db_time(now), request.team_id, request.channel_id, request.user_id,
         request.to, request.from_, request.body, json.dumps(list(request.media)), int(request.send_as_mms),
         request.origin, SendState.PENDING.value, request.thread_ts, request.retry_of))
    # A plain INSERT: the primary key is the last word if anything ever got past the check above.
    await db.execute("INSERT INTO auto_reply (message_id, kind, ref, created_at) VALUES (?, ?, ?, ?)",
                     (message_id, auto_reply.kind.value, auto_reply.ref, db_time(now)))
    await db.execute(
        """INSERT INTO audit (id, at, user_id, channel_id, action, to_number, from_number, ref, reason, outcome)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (secrets.token_hex(8), db_time(now), request.user_id, request.channel_id, AuditAction.AUTO_REPLY.value,
         request.to, request.from_, auto_reply.ref, auto_reply.kind.value, SendState.PENDING.value))
    for item in auto_reply.items:
        for statement in insert_statements(item, now):
            async with db.execute(*statement) as insert:
                await insert.fetchall()
    return True


class ComplianceSql:
    """Methods of ``Store`` for the block list and auto-replies; the host provides ``_one``, ``_all``, ``_write``
    and ``get_outbound``."""

    async def _one(self, sql: str, params: Sequence[Any]) -> aiosqlite.Row | None:
        raise NotImplementedError

    async def _all(self, sql: str, params: Sequence[Any]) -> list[aiosqlite.Row]:
        raise NotImplementedError

    async def _write(self, sql: str, params: Sequence[Any]) -> int:
        raise NotImplementedError

    async def get_outbound(self, ref: str) -> OutboundSms | None:
        raise NotImplementedError

    async def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def auto_reply_for(self, message_id: str, kind: str) -> OutboundSms | None:
        row = await self._one("SELECT ref FROM auto_reply WHERE message_id = ? AND kind = ?", (message_id, kind))
        return None if row is None else await self.get_outbound(str(row["ref"]))

    async def get_block(self, number: str) -> BlockedNumber | None:
        row = await self._one("SELECT * FROM blocked_number WHERE number = ?", (number,))
        return None if row is None else _row_to_block(row)

    async def block_number(self, number: str, reason: str, blocked_by: str, now: datetime) -> bool:
        count = await self._write(
            "INSERT OR IGNORE INTO blocked_number (number, reason, blocked_by, blocked_at) VALUES (?, ?, ?, ?)",
            (number, reason, blocked_by, db_time(now)))
        return count == 1

    async def unblock_number(self, number: str) -> BlockedNumber | None:
        def work(conn: sqlite3.Connection) -> BlockedNumber | None:
            row = conn.execute("SELECT * FROM blocked_number WHERE number = ?", (number,)).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM blocked_number WHERE number = ?", (number,))
            return _row_to_block(row)

        return await self._transaction(work)

    async def blocked_numbers(self, limit: int = 100) -> list[BlockedNumber]:
        rows = await self._all("SELECT * FROM blocked_number ORDER BY blocked_at DESC, number LIMIT ?",
                               (max(0, int(limit)),))
        return [_row_to_block(r) for r in rows]
