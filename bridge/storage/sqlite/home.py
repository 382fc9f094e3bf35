"""SQLite storage of issue 12's App Home: migration 17 (indexes only) and the two ``Store`` reads the Home tab makes.

Owns: ``MIGRATION`` (17: the indexes that keep ``recent_conversations`` and ``home_summary`` off full scans), the
``recent_conversations`` and ``home_summary`` SQL. Mixed into ``bridge.storage.sqlite.store.SqliteStore``, whose
``_all`` it uses.
Must not import: aiohttp, Slack packages, ``handlers``, ``bridge.storage.sqlite.store`` (it is imported by it).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import aiosqlite

from bridge.model import HomeSummary, RecentConversation
from bridge.storage.home_rows import (
    COUNTS_SQL,
    OUTBOX_ERROR_SQL,
    RECENT_SQL,
    SMS_ERROR_SQL,
    last_error,
    recent,
)
from bridge.storage.sqlite.timefmt import py_time

# 17: indexes only: the newest conversations, each one's newest text either way, and the newest failures are all
# read by index. Released: never edit (PostgreSQL's 17 has the same names and predicates).
MIGRATION = """
    CREATE INDEX conversation_updated_at ON conversation (updated_at);
    CREATE INDEX inbound_pair ON inbound (our_number, their_number, received_at);
    CREATE INDEX outbound_pair ON outbound (from_number, to_number, created_at);
    CREATE INDEX outbound_error_at ON outbound (updated_at)
        WHERE (state IN ('rejected', 'unknown') OR status IN ('failed', 'undelivered'));
    CREATE INDEX slack_outbox_failed_at ON slack_outbox (failed_at) WHERE failed_at IS NOT NULL;
"""

_RECENT = RECENT_SQL.format(limit="?")


def _sqlite_time(value: str | None) -> datetime | None:
    return py_time(value)


class HomeSql:
    """Methods of ``Store`` for the Home tab; the host provides ``_all``."""

    async def _all(self, sql: str, params: Sequence[Any]) -> list[aiosqlite.Row]:
        raise NotImplementedError

    async def recent_conversations(self, limit: int = 10) -> list[RecentConversation]:
        rows = await self._all(_RECENT, (max(0, int(limit)),))
        return [recent(r, _sqlite_time) for r in rows]

    async def home_summary(self) -> HomeSummary:
        [counts] = await self._all(COUNTS_SQL, ())
        outbox = await self._all(OUTBOX_ERROR_SQL, ())
        sms = await self._all(SMS_ERROR_SQL, ())
        return HomeSummary(
            opted_out=int(counts["opted_out"]), blocked=int(counts["blocked"]),
            outbox_pending=int(counts["outbox_pending"]), unsent=int(counts["unsent"]),
            last_error=last_error(outbox[0] if outbox else None, sms[0] if sms else None, _sqlite_time))
