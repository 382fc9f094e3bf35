"""``PostgresStore``: the PostgreSQL implementation of ``bridge.storage.port.Store`` (asyncpg connection pool).

Owns: opening (pool, then migrations under the advisory lock) and closing; the SQL lives in the mixins
(``messages``, ``two_way``, ``outbox``, ``audit``, ``admin``), each built on ``connection.PgBase``.
Must not import: anything in ``bridge`` but ``bridge.model`` and ``bridge.storage``; aiohttp, Slack, ``handlers``.
"""

from __future__ import annotations

import asyncio

from bridge.storage.postgres.admin import AdminSql
from bridge.storage.postgres.audit import AuditSql
from bridge.storage.postgres.bulk import BulkSql
from bridge.storage.postgres.compliance import ComplianceSql
from bridge.storage.postgres.connection import ACQUIRE_TIMEOUT, COMMAND_TIMEOUT, DB_ERRORS, create_pool
from bridge.storage.postgres.home import HomeSql
from bridge.storage.postgres.media import MediaSql
from bridge.storage.postgres.messages import MessagesSql
from bridge.storage.postgres.migrations import current_version, migrate
from bridge.storage.postgres.outbox import OutboxSql
from bridge.storage.postgres.people import PeopleSql
from bridge.storage.postgres.schedule import ScheduleSql
from bridge.storage.postgres.two_way import TwoWaySql

CLOSE_TIMEOUT = 10.0  # seconds to let queries in flight finish before connections are cut


class PostgresStore(MessagesSql, TwoWaySql, OutboxSql, AuditSql, AdminSql, MediaSql, ComplianceSql, PeopleSql,
                    HomeSql, ScheduleSql, BulkSql):
    """A pool of connections to one PostgreSQL database; several replicas may open the same one."""

    @classmethod
    async def open(cls, url: str, *, command_timeout: float = COMMAND_TIMEOUT) -> PostgresStore:
        """Connect and apply missing migrations; ``StoreUnavailable`` if the server cannot be reached.
        ``command_timeout``: seconds a statement may run (or wait for a lock) before ``StoreUnavailable``."""
        pool = await create_pool(url, command_timeout=command_timeout)
        store = cls(pool, url)
        try:
            async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                await migrate(conn)
        except BaseException as exc:
            pool.terminate()
            if isinstance(exc, DB_ERRORS):
                raise store._unavailable("migration failed", exc) from exc
            raise
        return store

    async def schema_version(self) -> int:
        try:
            async with self._live_pool().acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                return await current_version(conn)
        except DB_ERRORS as exc:
            raise self._unavailable("query failed", exc) from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._pool.close()
        except DB_ERRORS:  # includes TimeoutError: a query that would not end
            self._pool.terminate()
