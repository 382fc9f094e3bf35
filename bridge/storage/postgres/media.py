"""PostgreSQL storage of outbound MMS pictures (issue 11, migration 12).

Owns: the ``media`` SQL (the bytes SignalWire fetches from ``/media/<token>/<name>``, BYTEA, with their expiry).
The table, and ``slack_reply.files`` (a thread reply's Slack file ids, JSON text, written by
``bridge.storage.postgres.two_way``), are migration 12 in ``bridge.storage.postgres.migrations``.
Must not import: anything in ``bridge`` but ``bridge.model`` and ``bridge.storage``; aiohttp, Slack, ``handlers``.
"""

from __future__ import annotations

from datetime import datetime

from bridge.model import MediaItem
from bridge.storage.postgres.connection import PgBase


class MediaSql(PgBase):
    """Methods of ``Store`` for pictures."""

    async def media_put(self, item: MediaItem) -> None:
        await self._execute(
            """INSERT INTO media (token, name, content_type, data, created_at, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            item.token, item.name, item.content_type, item.data, item.created_at, item.expires_at)

    async def media_get(self, token: str, now: datetime) -> MediaItem | None:
        row = await self._row("SELECT * FROM media WHERE token = $1 AND expires_at > $2", token, now)
        if row is None:
            return None
        return MediaItem(row["token"], row["name"], row["content_type"], bytes(row["data"]), row["created_at"],
                         row["expires_at"])

    async def prune_media(self, before: datetime, limit: int) -> int:
        return await self._execute(
            """DELETE FROM media WHERE token IN (
                   SELECT token FROM media WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)""",
            before, max(0, int(limit)))
