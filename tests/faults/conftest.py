"""Fixtures of the fault suite: a running ``World`` per test on each storage engine, every bot's log attached to
every failure report.

Owns: the ``engine`` fixture (every fault test runs on SQLite and on PostgreSQL; a module narrows it by defining
its own ``engine`` fixture), the ``world`` / ``make_world`` fixtures, and the guarantee that no bot process and no
throwaway PostgreSQL database outlives its test.
Must not import: ``bot.py``, ``handlers`` (the bot is a separate process).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest

from tests.faults.procs import World, open_world
from tests.pg import throwaway_database

# The engines tests/conftest.py's ``database_url`` runs store tests on (conftest modules are not imported).
ENGINES = ["sqlite", "postgresql"]

WorldFactory = Callable[..., AbstractAsyncContextManager[World]]

# Real processes, restarts and compressed outages: more than the suite-wide 60 s, still a hard stop.
FAULT_TEST_TIMEOUT = 150


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "faults" in item.nodeid.split("/") and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(FAULT_TEST_TIMEOUT))


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """The storage engine the bots of this test use."""
    param: str = request.param
    return param


@pytest.fixture
async def make_world(request: pytest.FixtureRequest, tmp_path: Path, engine: str) -> AsyncIterator[WorldFactory]:
    """``async with make_world(step_delay=..., env={...}, script=..., replicas=N, database_url=...) as w``.

    The bots use a fresh database on ``engine`` (a SQLite file, or a throwaway PostgreSQL database dropped at
    the end) unless ``database_url`` names one (say, through a TCP proxy); every bot started is killed at the end.
    """
    worlds: list[World] = []
    async with AsyncExitStack() as stack:

        @asynccontextmanager
        async def factory(*, step_delay: float = 0.05, env: Mapping[str, str] | None = None,
                          start: bool = True, script: Path | None = None, replicas: int = 1,
                          database_url: str | None = None) -> AsyncIterator[World]:
            data = tmp_path / f"world{len(worlds)}"
            data.mkdir()
            if database_url is None and engine == "postgresql":
                database_url = await stack.enter_async_context(throwaway_database())
            async with open_world(data, step_delay=step_delay, env=env, start=start, script=script,
                                  replicas=replicas, database_url=database_url) as w:
                worlds.append(w)
                yield w

        try:
            yield factory
        finally:
            for w in worlds:
                for index, bot in enumerate(w.bots):
                    await bot.kill()
                    # pytest shows report sections only for failed tests: what the bots logged is usually the story.
                    name = f"bot log {bot.log_path}" if len(w.bots) == 1 else f"replica {index} log {bot.log_path}"
                    request.node.add_report_section("teardown", name, bot.log_tail(120))


@pytest.fixture
async def world(make_world: WorldFactory) -> AsyncIterator[World]:
    async with make_world() as w:
        yield w
