"""The SQLite adapter's group commit (bridge.storage.sqlite.batch) on a real database file: bodies share a COMMIT,
one failing body fails only its caller, and a caller cancelled before its batch began writes nothing later."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiosqlite
import pytest

from bridge.storage.port import StoreUnavailable
from bridge.storage.sqlite.batch import GroupCommit


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    conn = await aiosqlite.connect(tmp_path / "g.db", isolation_level=None)
    await conn.execute("CREATE TABLE t (v INTEGER UNIQUE)")
    try:
        yield conn
    finally:
        await conn.close()


def _insert(value: int) -> Callable[[sqlite3.Connection], int]:
    return lambda conn: conn.execute("INSERT INTO t (v) VALUES (?)", (value,)).rowcount


async def _values(db: aiosqlite.Connection) -> list[int]:
    return sorted(int(r[0]) for r in await db.execute_fetchall("SELECT v FROM t", ()))


async def test_concurrent_bodies_share_commits_and_a_failing_one_fails_alone(db: aiosqlite.Connection) -> None:
    group = GroupCommit(db, asyncio.Lock())
    await group.run(_insert(0))
    results = await asyncio.gather(*(group.run(_insert(v)) for v in (1, 2, 0, 3)),
                                   return_exceptions=True)
    assert isinstance(results[2], StoreUnavailable) and "UNIQUE" in str(results[2])
    assert [r for i, r in enumerate(results) if i != 2] == [1, 1, 1]
    assert await _values(db) == [0, 1, 2, 3]
    assert group.bodies == 5 and group.batches < 5


async def test_a_caller_cancelled_before_its_batch_began_writes_nothing_later(db: aiosqlite.Connection) -> None:
    lock = asyncio.Lock()
    group = GroupCommit(db, lock)
    await lock.acquire()  # a batch (or a multi-statement transaction) is running: the next writers wait
    given_up = asyncio.create_task(group.run(_insert(7)))
    kept = asyncio.create_task(group.run(_insert(8)))
    await asyncio.sleep(0.05)
    given_up.cancel()
    with pytest.raises(asyncio.CancelledError):
        await given_up
    lock.release()
    assert await kept == 1
    await group.run(_insert(9))
    assert await _values(db) == [8, 9]


async def test_a_closed_connection_is_store_unavailable(tmp_path: Path) -> None:
    conn = await aiosqlite.connect(tmp_path / "c.db", isolation_level=None)
    await conn.close()
    with pytest.raises((StoreUnavailable, ValueError, sqlite3.Error)):
        await GroupCommit(conn, asyncio.Lock()).run(_insert(1))
