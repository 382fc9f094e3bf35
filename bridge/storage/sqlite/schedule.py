"""SQLite storage of issue 12's scheduled sends: migration 16 and the ``scheduled_send`` SQL.

Owns: the ``scheduled_send`` table (one row per scheduled message, keyed by its ref) and the scheduled-send ``Store``
methods. Leaving ``scheduled`` is one conditional UPDATE (``WHERE state = 'scheduled'``) in the same transaction as
the message's own state change, so of several replicas (or a Cancel racing the due time) exactly one wins.
Mixed into ``bridge.storage.sqlite.store.SqliteStore``, whose ``_all`` / ``_transaction`` it uses.
Must not import: aiohttp, Slack packages, ``handlers``, ``bridge.storage.sqlite.store`` (it is imported by it).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import aiosqlite

from bridge.model import OutboundSms, ScheduledSend, ScheduleOutcome, SendRequest, SendState
from bridge.storage.rows import outbound_from_row
from bridge.storage.sqlite.timefmt import db_time, py_time

T = TypeVar("T")

# 16: one row per scheduled send; its message waits in outbound with state 'scheduled'.
MIGRATION = """
    CREATE TABLE scheduled_send (
        ref TEXT PRIMARY KEY REFERENCES outbound (ref),
        user_id TEXT NOT NULL,
        tz TEXT NOT NULL,
        due_at TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'scheduled',
        created_at TEXT NOT NULL,
        finished_at TEXT,
        finished_by TEXT
    );
    CREATE INDEX scheduled_send_due ON scheduled_send (state, due_at);
    CREATE INDEX scheduled_send_user ON scheduled_send (user_id, state, due_at);
"""

_SELECT = """SELECT o.*, s.due_at AS s_due_at, s.tz AS s_tz, s.state AS s_state, s.finished_at AS s_finished_at,
       s.finished_by AS s_finished_by FROM scheduled_send s JOIN outbound o ON o.ref = s.ref"""


def _to_scheduled(row: aiosqlite.Row | sqlite3.Row) -> ScheduledSend:
    due = py_time(row["s_due_at"])
    assert due is not None
    return ScheduledSend(outbound_from_row(row, py_time), due, row["s_tz"], ScheduleOutcome(row["s_state"]),
                         py_time(row["s_finished_at"]), row["s_finished_by"])


class ScheduleSql:
    """Methods of ``Store`` for scheduled sends; the host provides ``_all`` and ``_transaction``."""

    async def _all(self, sql: str, params: Sequence[Any]) -> list[aiosqlite.Row]:
        raise NotImplementedError

    async def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def create_scheduled(self, ref: str, request: SendRequest, due_at: datetime, tz: str,
                               now: datetime) -> OutboundSms | None:
        def work(conn: sqlite3.Connection) -> OutboundSms | None:
            refused = conn.execute(
                "SELECT 1 FROM opt_out WHERE our_number = ? AND their_number = ? "
                "UNION ALL SELECT 1 FROM blocked_number WHERE number = ?",
                (request.from_, request.to, request.to)).fetchone()
            if refused is not None:
                return None
            conn.execute(
                """INSERT INTO outbound (ref, created_at, updated_at, team_id, channel_id, user_id, to_number,
                       from_number, body, media, send_as_mms, origin, state, parent_ts, retry_of)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (ref, db_time(now), db_time(now), request.team_id, request.channel_id, request.user_id, request.to,
                 request.from_, request.body, json.dumps(list(request.media)), int(request.send_as_mms),
                 request.origin, SendState.SCHEDULED.value, request.thread_ts, request.retry_of))
            conn.execute(
                "INSERT INTO scheduled_send (ref, user_id, tz, due_at, created_at) VALUES (?, ?, ?, ?, ?)",
                (ref, request.user_id, tz, db_time(due_at), db_time(now)))
            return outbound_from_row(conn.execute("SELECT * FROM outbound WHERE ref = ?", (ref,)).fetchone(),
                                     py_time)

        return await self._transaction(work)

    async def get_scheduled(self, ref: str) -> ScheduledSend | None:
        rows = await self._all(f"{_SELECT} WHERE s.ref = ?", (ref,))
        return _to_scheduled(rows[0]) if rows else None

    async def scheduled_of_user(self, user_id: str, limit: int = 50) -> list[ScheduledSend]:
        rows = await self._all(f"{_SELECT} WHERE s.user_id = ? AND s.state = 'scheduled' ORDER BY s.due_at LIMIT ?",
                               (user_id, max(0, int(limit))))
        return [_to_scheduled(r) for r in rows]

    async def due_scheduled(self, now: datetime, limit: int = 50) -> list[ScheduledSend]:
        rows = await self._all(f"{_SELECT} WHERE s.state = 'scheduled' AND s.due_at <= ? ORDER BY s.due_at LIMIT ?",
                               (db_time(now), max(0, int(limit))))
        return [_to_scheduled(r) for r in rows]

    async def finish_scheduled(self, ref: str, outcome: ScheduleOutcome, by: str | None, reason: str,
                               now: datetime) -> bool:
        if outcome is ScheduleOutcome.SCHEDULED:
            raise ValueError("finish_scheduled needs an outcome other than 'scheduled'")

        def work(conn: sqlite3.Connection) -> bool:
            won = conn.execute(
                """UPDATE scheduled_send SET state = ?, finished_at = ?, finished_by = ?
                   WHERE ref = ? AND state = 'scheduled'""", (outcome.value, db_time(now), by, ref)).rowcount
            if not won:
                return False
            if outcome is ScheduleOutcome.RELEASED:
                conn.execute("UPDATE outbound SET state = ?, updated_at = ? WHERE ref = ? AND state = ?",
                             (SendState.PENDING.value, db_time(now), ref, SendState.SCHEDULED.value))
            else:
                conn.execute(
                    """UPDATE outbound SET state = ?, error_code = ?, error_message = ?, updated_at = ?
                       WHERE ref = ? AND state = ?""",
                    (SendState.REJECTED.value, outcome.value, reason, db_time(now), ref, SendState.SCHEDULED.value))
            return True

        return await self._transaction(work)
