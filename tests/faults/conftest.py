"""Fixtures of the fault suite: a running ``World`` per test, the bot's log attached to every failure report.

Owns: the ``world`` / ``make_world`` fixtures and the guarantee that no bot process outlives its test.
Must not import: ``bot.py``, ``handlers`` (the bot is a separate process).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from tests.faults.procs import World, open_world

WorldFactory = Callable[..., AbstractAsyncContextManager[World]]

# Real processes, restarts and compressed outages: more than the suite-wide 60 s, still a hard stop.
FAULT_TEST_TIMEOUT = 150


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "faults" in item.nodeid.split("/") and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(FAULT_TEST_TIMEOUT))


@pytest.fixture
async def make_world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[WorldFactory]:
    """``async with make_world(step_delay=..., env={...}, script=...) as w``; every bot started is killed at the end."""
    worlds: list[World] = []

    @asynccontextmanager
    async def factory(*, step_delay: float = 0.05, env: Mapping[str, str] | None = None,
                      start: bool = True, script: Path | None = None) -> AsyncIterator[World]:
        data = tmp_path / f"world{len(worlds)}"
        data.mkdir()
        async with open_world(data, step_delay=step_delay, env=env, start=start, script=script) as w:
            worlds.append(w)
            yield w

    try:
        yield factory
    finally:
        for w in worlds:
            await w.bot.kill()
            # pytest shows report sections only for failed tests: what the bot logged is usually the whole story.
            request.node.add_report_section("teardown", f"bot log {w.bot.log_path}", w.bot.log_tail(120))


@pytest.fixture
async def world(make_world: WorldFactory) -> AsyncIterator[World]:
    async with make_world() as w:
        yield w
