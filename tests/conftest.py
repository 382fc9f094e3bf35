"""Fixtures shared by the whole suite: the storage engines every store test runs on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.storage.engines import open_store
from bridge.storage.port import Store
from tests.pg import throwaway_database

ENGINES = ["sqlite", "postgresql"]


@pytest.fixture(params=ENGINES)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database on each engine: a SQLite file in ``tmp_path``, or a throwaway PostgreSQL database
    (dropped afterwards). PostgreSQL skips with one line when unreachable, except under CI=true."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bridge.db'}"
        return
    async with throwaway_database() as url:
        yield url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A store opened (created and migrated) on ``database_url``, closed afterwards: one per engine."""
    opened = await open_store(database_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def store_pair(database_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores opened on the same database, as two replicas would: races between them must have one winner."""
    first = await open_store(database_url)
    try:
        second = await open_store(database_url)
    except BaseException:
        await first.close()
        raise
    try:
        yield first, second
    finally:
        await second.close()
        await first.close()
