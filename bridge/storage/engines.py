"""Choosing a storage engine from ``DATABASE_URL``.

Owns: ``open_store`` (open, creating and migrating if needed) and the URL schemes each engine answers to.
Must not import: ``handlers``, Slack packages, aiohttp. Adapters are imported lazily: only the chosen one loads.
"""

from __future__ import annotations

from bridge.storage.port import Store, StoreUnavailable

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


async def open_store(database_url: str) -> Store:
    """Open (creating and migrating if needed) the store named by ``DATABASE_URL``."""
    if database_url.startswith(SQLITE_PREFIX):
        from bridge.storage.sqlite.store import SqliteStore

        return await SqliteStore.open(database_url.removeprefix(SQLITE_PREFIX))
    if database_url.startswith(POSTGRES_SCHEMES):
        from bridge.storage.postgres.store import PostgresStore

        return await PostgresStore.open(database_url)
    raise StoreUnavailable(
        f"DATABASE_URL scheme not supported: {database_url.split(':', 1)[0]} "
        "(use sqlite:///path or postgresql://user:password@host/db)"
    )
