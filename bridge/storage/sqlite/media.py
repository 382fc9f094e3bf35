"""SQLite storage of outbound MMS pictures (issue 11, migration 12) and the files of a thread reply.

Owns: the ``media`` table (the bytes SignalWire fetches from ``/media/<token>/<name>``, with their expiry) and the
``files`` column migration 12 adds to ``slack_reply`` (the Slack file ids of a ``file_share`` reply, stored with
the reply so a crash cannot lose them; written by ``bridge.storage.sqlite.two_way``). Mixed into
``bridge.storage.sqlite.store.SqliteStore``, whose ``_one`` / ``_write`` it uses.
Must not import: aiohttp, Slack packages, ``handlers``, ``bridge.storage.sqlite.store`` (it is imported by it).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import aiosqlite

from bridge.model import MediaItem
from bridge.storage.sqlite.timefmt import db_time, py_time

MEDIA_MIGRATION = """
    ALTER TABLE slack_reply ADD COLUMN files TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE media (
        token TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        content_type TEXT NOT NULL,
        data BLOB NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE INDEX media_expires_at ON media (expires_at);
"""


class MediaSql:
    """Methods of ``Store`` for pictures; the host class provides ``_one`` and ``_write``."""

    async def _one(self, sql: str, params: Sequence[Any]) -> aiosqlite.Row | None:
        raise NotImplementedError

    async def _write(self, sql: str, params: Sequence[Any]) -> int:
        raise NotImplementedError

    async def media_put(self, item: MediaItem) -> None:
        await self._write(
            "INSERT INTO media (token, name, content_type, data, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            (item.token, item.name, item.content_type, item.data, db_time(item.created_at),
             db_time(item.expires_at)))

    async def media_get(self, token: str, now: datetime) -> MediaItem | None:
        row = await self._one("SELECT * FROM media WHERE token = ? AND expires_at > ?", (token, db_time(now)))
        if row is None:
            return None
        created, expires = py_time(row["created_at"]), py_time(row["expires_at"])
        assert created is not None and expires is not None
        return MediaItem(row["token"], row["name"], row["content_type"], bytes(row["data"]), created, expires)

    async def prune_media(self, before: datetime, limit: int) -> int:
        return await self._write(
            """DELETE FROM media WHERE rowid IN (
                   SELECT rowid FROM media WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)""",
            (db_time(before), max(0, int(limit))))
