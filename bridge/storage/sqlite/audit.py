"""SQLite storage of the audit trail: migrations 4 and 19 (issue 13: the bulk actions) and the ``Store`` methods
``bridge.access`` needs.

Owns: the ``audit`` table (one row per human send attempt or refusal) and its indexes. Mixed into
``bridge.storage.sqlite.store.SqliteStore``, whose ``_one`` / ``_all`` / ``_write`` (serialised writes,
``StoreUnavailable``) it uses. Must not import: aiohttp, Slack packages, ``handlers``,
``bridge.storage.sqlite.store`` (it is imported by it).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import aiosqlite

from bridge.model import SEND_ACTIONS, AuditAction, AuditEntry, OutboundSms, SendRequest, SendState
from bridge.storage.rows import outbound_from_row
from bridge.storage.sqlite.compliance import NOT_BLOCKED_SQL
from bridge.storage.sqlite.timefmt import db_time, py_time

AUDIT_MIGRATION = """
    CREATE TABLE audit (
        id TEXT PRIMARY KEY,
        at TEXT NOT NULL,
        user_id TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('send', 'refused', 'retry', 'reply')),
        to_number TEXT NOT NULL DEFAULT '',
        from_number TEXT NOT NULL DEFAULT '',
        ref TEXT,
        reason TEXT,
        outcome TEXT
    );
    -- The rate limit counts one user's rows of the last minute on every send: keep that a range scan.
    CREATE INDEX audit_user_at ON audit (user_id, at);
    CREATE INDEX audit_ref ON audit (ref);
    CREATE INDEX audit_at ON audit (at);
"""

# 19 (issue 13): the bulk actions. SQLite cannot alter a CHECK: the table is rebuilt keeping its rowids (as in 13).
# Spelled out, not taken from ``AuditAction``: a released migration must never change.
_ACTIONS_19 = "'send', 'refused', 'retry', 'reply', 'auto-reply', 'block', 'unblock', 'bulk', 'bulk-send'"
BULK_ACTIONS_MIGRATION = f"""
    CREATE TABLE audit_19 (
        id TEXT PRIMARY KEY,
        at TEXT NOT NULL,
        user_id TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ({_ACTIONS_19})),
        to_number TEXT NOT NULL DEFAULT '',
        from_number TEXT NOT NULL DEFAULT '',
        ref TEXT,
        reason TEXT,
        outcome TEXT
    );
    INSERT INTO audit_19 (rowid, id, at, user_id, channel_id, action, to_number, from_number, ref, reason, outcome)
        SELECT rowid, id, at, user_id, channel_id, action, to_number, from_number, ref, reason, outcome FROM audit;
    DROP TABLE audit;
    ALTER TABLE audit_19 RENAME TO audit;
    CREATE INDEX audit_user_at ON audit (user_id, at);
    CREATE INDEX audit_ref ON audit (ref);
    CREATE INDEX audit_at ON audit (at);
"""

T = TypeVar("T")

_SEND_ACTIONS_SQL = ", ".join(f"'{a.value}'" for a in SEND_ACTIONS)


def _row_to_entry(row: aiosqlite.Row) -> AuditEntry:
    return AuditEntry(
        id=row["id"], at=datetime.fromisoformat(row["at"]), user_id=row["user_id"], channel_id=row["channel_id"],
        action=AuditAction(row["action"]), to_number=row["to_number"], from_number=row["from_number"],
        ref=row["ref"], reason=row["reason"], outcome=row["outcome"],
    )


class AuditSql:
    """Methods of ``Store`` for the audit trail; the host class provides ``_one``, ``_all`` and ``_write``."""

    async def _one(self, sql: str, params: Sequence[Any]) -> aiosqlite.Row | None:
        raise NotImplementedError

    async def _all(self, sql: str, params: Sequence[Any]) -> list[aiosqlite.Row]:
        raise NotImplementedError

    async def _write(self, sql: str, params: Sequence[Any]) -> int:
        raise NotImplementedError

    async def audit_add(
        self,
        *,
        at: datetime,
        user_id: str,
        channel_id: str,
        action: AuditAction,
        to_number: str = "",
        from_number: str = "",
        ref: str | None = None,
        reason: str | None = None,
    ) -> str:
        # The id is made here rather than by AUTOINCREMENT: ``_write`` reports a row count, not the new rowid.
        audit_id = secrets.token_hex(8)
        await self._write(
            """INSERT INTO audit (id, at, user_id, channel_id, action, to_number, from_number, ref, reason)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (audit_id, db_time(at), user_id, channel_id, AuditAction(action).value, to_number, from_number, ref,
             reason),
        )
        return audit_id

    async def audit_recent_sends(self, user_id: str, since: datetime) -> int:
        row = await self._one(
            f"SELECT COUNT(*) FROM audit WHERE user_id = ? AND at > ? AND action IN ({_SEND_ACTIONS_SQL})",
            (user_id, db_time(since)),
        )
        return 0 if row is None else int(row[0])

    async def audit_send_times(self, user_id: str, since: datetime) -> list[datetime]:
        rows = await self._all(
            f"""SELECT at FROM audit WHERE user_id = ? AND at > ? AND action IN ({_SEND_ACTIONS_SQL})
                ORDER BY at""",
            (user_id, db_time(since)),
        )
        return [datetime.fromisoformat(r["at"]) for r in rows]

    async def audit_link(self, audit_id: str, ref: str | None, outcome: str) -> None:
        # The message's own row is read in the same statement: a receipt that arrived between the send returning
        # and this link (``audit_outcome`` found no row then) is not lost. ``outcome`` is for when there is none.
        # Retry and thread-reply rows learn their numbers here (the handler did not know them).
        await self._write(
            """UPDATE audit SET ref = ?, outcome = COALESCE(
                   (SELECT COALESCE(status, state)
                           || CASE WHEN error_code IS NULL THEN '' ELSE ' (' || error_code || ')' END
                    FROM outbound WHERE ref = ?), ?),
                   to_number = COALESCE(NULLIF(to_number, ''), (SELECT to_number FROM outbound WHERE ref = ?), ''),
                   from_number = COALESCE(NULLIF(from_number, ''), (SELECT from_number FROM outbound WHERE ref = ?),
                                          '')
               WHERE id = ?""",
            (ref, ref, outcome, ref, ref, audit_id),
        )

    async def audit_outcome(self, ref: str, outcome: str) -> bool:
        return await self._write("UPDATE audit SET outcome = ? WHERE ref = ?", (outcome, ref)) > 0

    async def audit_list(self, limit: int = 100) -> list[AuditEntry]:
        rows = await self._all("SELECT * FROM audit ORDER BY at DESC, rowid DESC LIMIT ?", (max(0, int(limit)),))
        return [_row_to_entry(r) for r in rows]

    async def audit_prune(self, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` audit rows older than ``before`` (oldest first); returns how many."""
        return await self._write(
            "DELETE FROM audit WHERE rowid IN (SELECT rowid FROM audit WHERE at < ? ORDER BY at LIMIT ?)",
            (db_time(before), max(0, int(limit))),
        )

    # -- ack path (issue 10): here because it is what the audit's rate-limit read is followed by before the ack

    async def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def create_outbound_unless_opted_out(self, ref: str, request: SendRequest,
                                               now: datetime) -> OutboundSms | None:
        def work(conn: sqlite3.Connection) -> OutboundSms | None:
            # One hop to the connection thread: the opt-out check, the insert and the row read back.
            inserted = conn.execute(
                """INSERT INTO outbound (ref, created_at, updated_at, team_id, channel_id, user_id, to_number,
                       from_number, body, media, send_as_mms, origin, state, parent_ts, retry_of)
                   SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
                   WHERE NOT EXISTS (SELECT 1 FROM opt_out WHERE our_number = ? AND their_number = ?)
                     AND """ + NOT_BLOCKED_SQL,  # issue 11: the block list is refused in the same statement
                (
                    ref, db_time(now), db_time(now), request.team_id, request.channel_id, request.user_id,
                    request.to, request.from_, request.body, json.dumps(list(request.media)),
                    int(request.send_as_mms), request.origin, SendState.PENDING.value, request.thread_ts,
                    request.retry_of, request.from_, request.to, request.to,
                ),
            ).rowcount
            if not inserted:
                return None
            return outbound_from_row(conn.execute("SELECT * FROM outbound WHERE ref = ?", (ref,)).fetchone(),
                                     py_time)

        return await self._transaction(work)
