"""Operator tools over any engine: ``bot.py migrate`` and the URL form safe to print.

Owns: ``redact_url`` (a ``DATABASE_URL`` without its password), ``peek_version`` (the schema version a database
has before a store is opened on it — opening migrates) and ``migrate``.
Must not import: ``handlers``, Slack packages, aiohttp. Engine drivers are imported lazily, only for their engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from bridge.model import SchemaStatus
from bridge.storage.engines import SQLITE_PREFIX, open_store
from bridge.storage.port import StoreUnavailable

PEEK_TIMEOUT_SECONDS = 5.0


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (user, host, port and database stay readable)."""
    if url.startswith(SQLITE_PREFIX):
        return url
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
    except ValueError:  # unparseable (a bad port): keep only what follows the credentials
        return f"{url.split(':', 1)[0]}://***@{url.rsplit('@', 1)[-1]}"


async def peek_version(url: str) -> int | None:
    """The newest migration applied to the database at ``url`` without migrating it; None when it has no schema."""
    if url.startswith(SQLITE_PREFIX):
        from bridge.storage.sqlite.admin import applied_version

        return applied_version(url.removeprefix(SQLITE_PREFIX))
    import asyncpg

    try:
        conn = await asyncpg.connect(url, timeout=PEEK_TIMEOUT_SECONDS)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise StoreUnavailable(f"cannot connect to {redact_url(url)}: {type(exc).__name__}") from exc
    try:
        if await conn.fetchval("SELECT to_regclass('schema_version')") is None:
            return None
        version = await conn.fetchval("SELECT MAX(version) FROM schema_version")
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise StoreUnavailable(f"cannot read the schema of {redact_url(url)}: {type(exc).__name__}") from exc
    finally:
        await conn.close(timeout=PEEK_TIMEOUT_SECONDS)
    return None if version is None else int(version)


@dataclass(frozen=True, slots=True)
class Migrated:
    before: int | None  # None: the database had no schema
    after: SchemaStatus


async def migrate(url: str) -> Migrated:
    """Bring the database at ``url`` to this code's schema (opening a store applies what is missing)."""
    before = await peek_version(url)
    store = await open_store(url)
    try:
        return Migrated(before, await store.schema_status())
    finally:
        await store.close()
