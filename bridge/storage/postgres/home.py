"""PostgreSQL storage of issue 12's App Home: the two ``Store`` reads the Home tab makes (migration 17 is indexes
only, ``bridge.storage.home_rows.INDEXES_17``, listed in ``bridge.storage.postgres.migrations``).

Owns: running ``recent_conversations`` and ``home_summary`` (the SQL is ``bridge.storage.home_rows``'s).
Must not import: anything in ``bridge`` but ``bridge.model`` and ``bridge.storage``; aiohttp, Slack, ``handlers``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bridge.model import HomeSummary, RecentConversation
from bridge.storage.home_rows import COUNTS_SQL, OUTBOX_ERROR_SQL, RECENT_SQL, SMS_ERROR_SQL, last_error, recent
from bridge.storage.postgres.connection import PgBase

_RECENT = RECENT_SQL.format(limit="$1")


def _pg_time(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None


class HomeSql(PgBase):
    """Methods of ``Store`` for the Home tab."""

    async def recent_conversations(self, limit: int = 10) -> list[RecentConversation]:
        rows = await self._read(_RECENT, max(0, int(limit)))
        return [recent(r, _pg_time) for r in rows]

    async def home_summary(self) -> HomeSummary:
        counts = await self._row(COUNTS_SQL)
        assert counts is not None
        outbox = await self._row(OUTBOX_ERROR_SQL)
        sms = await self._row(SMS_ERROR_SQL)
        return HomeSummary(
            opted_out=int(counts["opted_out"]), blocked=int(counts["blocked"]),
            outbox_pending=int(counts["outbox_pending"]), unsent=int(counts["unsent"]),
            last_error=last_error(outbox, sms, _pg_time))
