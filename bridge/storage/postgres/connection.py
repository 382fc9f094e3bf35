"""The asyncpg pool behind ``PostgresStore``: opening it, running statements, and turning every database, OS and
timeout error into ``StoreUnavailable`` with a short reason that never shows the password.

Owns: ``PgBase`` (the pool and the ``_read`` / ``_row`` / ``_execute`` / ``_tx`` helpers every mixin of
``bridge.storage.postgres`` uses), ``redact_url`` and the pool sizes and timeouts.
Must not import: anything in ``bridge`` but ``bridge.storage.port``; aiohttp, Slack packages, ``handlers``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bridge.storage.port import StoreUnavailable

POOL_MIN = 1
POOL_MAX = 10
CONNECT_TIMEOUT = 5.0   # seconds to establish one connection
COMMAND_TIMEOUT = 10.0  # seconds any one statement may run
ACQUIRE_TIMEOUT = 10.0  # seconds to wait for a free pooled connection

# What the driver, the socket or a timeout may raise; all of it means "the database is not answering as it should".
DB_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, TimeoutError,
)
# A pooled connection that died (server restart, pg_terminate_backend): a read may simply be tried again.
_LOST: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError, asyncpg.InterfaceError, ConnectionError, asyncpg.AdminShutdownError,
    asyncpg.CannotConnectNowError, asyncpg.InternalClientError,
)


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit((parts.scheme, f"{user}:***@{host}{port}", parts.path, parts.query, parts.fragment))
    except ValueError:
        return "postgresql://<unparseable url>"


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


class PgBase:
    """The pool and how every statement runs; the mixins of ``PostgresStore`` build on it."""

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        self._pool = pool
        self._url = url
        self._closed = False

    def _unavailable(self, what: str, exc: BaseException) -> StoreUnavailable:
        """A short reason naming the server (password redacted) and the error, never the password itself."""
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        secret = _password(self._url)
        if secret:
            detail = detail.replace(secret, "***")
        kind = type(exc).__name__
        return StoreUnavailable(f"PostgreSQL {what} ({redact_url(self._url)}): {kind}{': ' if detail else ''}"
                                f"{detail[:200]}")

    async def _failed(self, what: str, exc: BaseException) -> StoreUnavailable:
        """After a lost connection, replace every pooled one (they likely died together: a restart, a kill), so
        the next call works; then the short reason."""
        if isinstance(exc, _LOST) and not self._closed:
            await self._pool.expire_connections()
        return self._unavailable(what, exc)

    def _live_pool(self) -> asyncpg.Pool:
        if self._closed:
            raise StoreUnavailable(f"PostgreSQL store {redact_url(self._url)} is closed")
        return self._pool

    async def _read(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Rows of a read-only statement; tried once more on a fresh connection if the pooled one had died."""
        pool = self._live_pool()
        for attempt in (1, 2):
            try:
                async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                    return list(await conn.fetch(sql, *args))
            except _LOST as exc:
                failure = await self._failed("query failed", exc)
                if attempt == 2:
                    raise failure from exc
            except DB_ERRORS as exc:
                raise await self._failed("query failed", exc) from exc
        raise AssertionError("unreachable")

    async def _row(self, sql: str, *args: Any) -> asyncpg.Record | None:
        rows = await self._read(sql, *args)
        return rows[0] if rows else None

    async def _execute(self, sql: str, *args: Any) -> int:
        """Run one writing statement (its own transaction); returns the number of rows it touched."""
        pool = self._live_pool()
        try:
            async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                return rowcount(await conn.execute(sql, *args))
        except DB_ERRORS as exc:
            raise await self._failed("write failed", exc) from exc

    async def _fetch_write(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Rows of one writing statement with RETURNING (its own transaction); never retried."""
        pool = self._live_pool()
        try:
            async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                return list(await conn.fetch(sql, *args))
        except DB_ERRORS as exc:
            raise await self._failed("write failed", exc) from exc

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[asyncpg.Connection]:
        """One transaction on one pooled connection: committed if the block ends normally, else rolled back.
        Errors of the block that are not database errors (``KeyError``) pass through unchanged."""
        pool = self._live_pool()
        try:
            async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
                yield conn
        except DB_ERRORS as exc:
            raise await self._failed("transaction failed", exc) from exc


def rowcount(status: str) -> int:
    """Rows touched, from a command tag such as ``UPDATE 1`` or ``INSERT 0 1``."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


async def lock_key(conn: asyncpg.Connection, *parts: str) -> None:
    """Serialise, until the transaction ends, every transaction that locks the same ``parts`` (an advisory lock:
    used where a check-then-insert has no row to lock yet)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))", parts[0], "\x1f".join(parts[1:]))


async def _session_kept(conn: asyncpg.Connection) -> None:
    """Released connections skip asyncpg's default reset (``RESET ALL; UNLISTEN *; …``, a round trip on every
    release — an eighth of a status callback's time): our sessions keep no state to reset. Nothing SETs, LISTENs
    or holds a cursor, and the one session-level advisory lock (migrations) is released in a ``finally``; asyncpg
    still rolls back a transaction left open before this is called."""


async def create_pool(url: str, *, command_timeout: float = COMMAND_TIMEOUT) -> asyncpg.Pool:
    """A connected pool; ``StoreUnavailable`` (password redacted) if the server cannot be reached."""
    try:
        pool = await asyncpg.create_pool(
            url, min_size=POOL_MIN, max_size=POOL_MAX, timeout=CONNECT_TIMEOUT, command_timeout=command_timeout,
            reset=_session_kept,
        )
    except (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, TimeoutError,
            ValueError) as exc:
        secret = _password(url)
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if secret:
            detail = detail.replace(secret, "***")
        raise StoreUnavailable(
            f"cannot open PostgreSQL database {redact_url(url)}: {type(exc).__name__}: {detail[:200]}"
        ) from exc
    assert pool is not None
    return pool
