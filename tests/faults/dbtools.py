"""What the fault suite does to (and reads from) the bots' database directly, on either engine.

Owns: ``locked_for`` (another connection holds a write lock on the whole database for a while: SQLite's
``BEGIN EXCLUSIVE``, PostgreSQL's ``LOCK TABLE … IN EXCLUSIVE MODE`` on every table — both still let readers
read, as WAL does), ``status_recorded`` (a synchronisation point: has a status event been committed?) and
``live_claims`` / ``assert_nothing_claimed`` (leases still held, outbox items left undone, once the work is done —
read through the storage port's administration methods, so whatever columns each engine names its leases).
Must not import: ``bot.py``, ``handlers``, ``bridge.service`` (the database is seen from outside, as another client;
only ``bridge.storage.engines`` to read it).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bridge.storage.engines import open_store
from sw_api.models import MessageStatus
from tests.faults.procs import World


def _hold_sqlite(path: Path, seconds: float, locked: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
    """In a thread: what a backup tool or a second writer does to the bot's database file."""
    conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        loop.call_soon_threadsafe(locked.set)
        time.sleep(seconds)
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def _hold_postgres(url: str, seconds: float, locked: asyncio.Event) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        async with conn.transaction():
            tables = [r["tablename"] for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")]
            if tables:
                await conn.execute(f"LOCK TABLE {', '.join(_quoted(t) for t in tables)} IN EXCLUSIVE MODE")
            locked.set()
            await asyncio.sleep(seconds)
            raise _Rollback
    except _Rollback:
        pass
    finally:
        await conn.close()


class _Rollback(Exception):
    """Leaves the lock's transaction without committing anything."""


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def locked_for(world: World, seconds: float) -> asyncio.Task[None]:
    """Start holding the lock; returns once it is held (await the task to know it was released)."""
    locked = asyncio.Event()
    if world.database is not None:
        task = asyncio.create_task(asyncio.to_thread(_hold_sqlite, world.database, seconds, locked,
                                                     asyncio.get_running_loop()))
    else:
        task = asyncio.create_task(_hold_postgres(world.database_url, seconds, locked))
    waiter = asyncio.create_task(locked.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if not locked.is_set():
        waiter.cancel()
        await task  # raises what went wrong
        raise AssertionError("the lock holder ended without taking the lock")
    return task


async def _fetch_one(world: World, sqlite_sql: str, pg_sql: str, *args: object) -> tuple[object, ...] | None:
    if world.database is not None:
        def query() -> tuple[object, ...] | None:
            with sqlite3.connect(f"file:{world.database}?mode=ro", uri=True) as db:
                row: tuple[object, ...] | None = db.execute(sqlite_sql, args).fetchone()
                return row
        return await asyncio.to_thread(query)
    conn = await asyncpg.connect(world.database_url, timeout=10)
    try:
        record = await conn.fetchrow(pg_sql, *args)
        return None if record is None else tuple(record.values())
    finally:
        await conn.close()


async def status_recorded(world: World, status: MessageStatus) -> bool:
    """Only a synchronisation point (when to pull the plug); what tests assert is what Slack shows."""
    row = await _fetch_one(world, "SELECT 1 FROM status_event WHERE status = ? LIMIT 1",
                           "SELECT 1 FROM status_event WHERE status = $1 LIMIT 1", status.value)
    return row is not None


def _is_lease_column(name: str) -> bool:
    lowered = name.lower()
    return lowered.endswith("_until") and ("claim" in lowered or "lease" in lowered)


def _live(value: Any, now: datetime) -> bool:
    if isinstance(value, datetime):
        return value > now
    if isinstance(value, int | float):
        return value > now.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value) > now
        except ValueError:
            return False
    return False


async def live_claims(world: World) -> tuple[list[str], int]:
    """Rows whose lease (a ``*claim*_until`` / ``*lease*_until`` column) is still running, as ``table: row``
    lines, and how many outbox items are undone."""
    store = await open_store(world.database_url)
    try:
        now = datetime.now(UTC)
        found: list[str] = []
        for table in await store.table_names():
            after = 0
            while rows := await store.export_rows(table, after, 500):
                after += len(rows)
                for row in rows:
                    if any(_is_lease_column(c) and _live(v, now) for c, v in row.items()):
                        leases = {c: v for c, v in row.items() if _is_lease_column(c) or "owner" in c.lower()}
                        found.append(f"{table}: {leases}")
        depth = (await store.outbox_stats(now)).depth
        return found, depth
    finally:
        await store.close()


async def assert_nothing_claimed(world: World) -> None:
    claims, depth = await live_claims(world)
    assert not claims, f"{len(claims)} lease(s) still held after the work was done: {claims[:10]}"
    assert depth == 0, f"{depth} Slack outbox item(s) left undone"


async def table_dump(world: World, tables: tuple[str, ...] = ("status_event", "slack_outbox", "outbound"),
                     limit: int = 60) -> str:
    """The rows of ``tables`` as text (for a failure message: what the store held when the test gave up)."""
    store = await open_store(world.database_url)
    try:
        lines: list[str] = []
        for table in tables:
            rows = await store.export_rows(table, 0, limit)
            lines.append(f"--- {table} ({len(rows)} row(s)) ---")
            lines.extend(str(row) for row in rows)
        return "\n".join(lines)
    finally:
        await store.close()
