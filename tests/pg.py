"""Throwaway PostgreSQL databases for tests (the PostgreSQL engine, the replica fault suite).

Owns: where the test server is (``TEST_POSTGRES_URL``, default ``postgresql://postgres@127.0.0.1:5432/test``: trust
auth, as on the development machine and in CI), whether it is reachable, and creating / dropping one uniquely named
database per use. Without a reachable server PostgreSQL tests skip with one line — except under CI (``CI=true``),
where they must run, so an unreachable server fails them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ENGINES = ["sqlite", "postgresql"]  # every store and fault test runs on each
_reachable: bool | None = None


async def _probe() -> str | None:
    """None if the server answers, else why not (one line)."""
    try:
        conn = await asyncpg.connect(ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


async def require_postgres() -> None:
    """Skip the calling test (fail it under CI) unless the test PostgreSQL answers."""
    global _reachable
    if _reachable is None:
        why = await _probe()
        _reachable = why is None
        if why is not None and os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {_safe(ADMIN_URL)} is required under CI=true and is not reachable: {why}")
    if not _reachable:
        pytest.skip(f"PostgreSQL not reachable at {_safe(ADMIN_URL)} (set TEST_POSTGRES_URL): skipping")


def _safe(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}:{parts.port or 5432}{parts.path}"


def url_for(database: str) -> str:
    parts = urlsplit(ADMIN_URL)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


@asynccontextmanager
async def throwaway_database() -> AsyncIterator[str]:
    """Create an empty database with a unique name, yield its URL, and drop it afterwards (even if still in use)."""
    await require_postgres()
    name = f"sms_bridge_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield url_for(name)
    finally:
        admin = await asyncpg.connect(ADMIN_URL, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
