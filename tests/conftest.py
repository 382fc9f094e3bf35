"""Fixtures shared by the whole suite: the storage engines every store test runs on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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
