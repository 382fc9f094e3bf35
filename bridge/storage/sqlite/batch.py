"""Group commit for the SQLite adapter: write transactions run whole on aiosqlite's connection thread, several to
one COMMIT.

Owns: ``GroupCommit`` — callers hand it a synchronous transaction body (``Work``: a function of the raw
``sqlite3.Connection``); bodies that queue up while a batch is running are run together as the next batch, in
one ``BEGIN IMMEDIATE`` … ``COMMIT``, in one hop to the connection thread. If a body raises, that transaction is
rolled back and every body runs again alone, so only its caller sees the error; the others commit. Every caller returns
only after the COMMIT that made its writes durable (or with the error that stopped it). A caller cancelled while
its body still waits for a batch takes the body with it: nothing it gave up on is written later.
Must not import: anything from bridge but the port's ``StoreUnavailable``.

Why by hand: aiosqlite runs each statement as its own round trip to its thread (and each autocommit statement as
its own commit); it has no batching, and no public way to run a function on its thread. A transaction of five
statements cost five thread hops, each waiting for the event loop and the GIL — most of a callback's time. Its
``Connection._execute`` is what every public aiosqlite method is built on; we use it for exactly that.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiosqlite

from bridge.storage.port import StoreUnavailable

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], T]
_Entry = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]

# Enough to amortise a COMMIT, few enough that one batch never holds the write lock for long.
MAX_BATCH = 128


class GroupCommit:
    def __init__(self, db: aiosqlite.Connection, write_lock: asyncio.Lock) -> None:
        self._db = db
        # Shared with the store's multi-statement transactions (``_atomic``): a batch never lands inside one.
        self._lock = write_lock
        self._pending: list[_Entry] = []
        self.batches = 0
        self.bodies = 0

    async def run(self, work: Work[T]) -> T:
        """Run ``work`` in a write transaction (possibly shared with others) and return its result once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        entry: _Entry = (work, future)
        self._pending.append(entry)
        try:
            await self._lead(future)
        except asyncio.CancelledError:
            # Cancelled before a batch took it: it never runs (a write its caller gave up on must not land later,
            # unseen). Once taken, the batch runs to its COMMIT regardless.
            if any(e is entry for e in self._pending):
                self._pending = [e for e in self._pending if e is not entry]
                future.cancel()
            raise
        try:
            return await future
        except (sqlite3.Error, ValueError) as exc:
            raise StoreUnavailable(f"SQLite write failed: {exc}") from exc

    async def _lead(self, future: asyncio.Future[Any]) -> None:
        """Wait for the write lock; whoever gets it first runs everything queued so far as one batch."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            if not future.done() and any(f is future for _, f in self._pending):
                # Whoever gets the lock first runs everything queued so far, ours included.
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                self.batches += 1
                self.bodies += len(batch)
                # The thread resolves every future itself (call_soon_threadsafe), so a cancelled leader never
                # strands the others; shield keeps the hop running to its COMMIT whatever happens to us.
                try:
                    await asyncio.shield(_on_thread(self._db, batch, loop))
                except (sqlite3.Error, ValueError) as exc:  # closed: the batch never reached the thread
                    for _, waiting in batch:
                        if not waiting.done():
                            waiting.set_exception(exc)


def _on_thread(db: aiosqlite.Connection, batch: list[_Entry], loop: asyncio.AbstractEventLoop,
               ) -> Awaitable[None]:
    """aiosqlite's own "run this on the connection thread" (untyped and private, see the module docstring)."""
    execute: Callable[..., Awaitable[None]] = db._execute
    return execute(_run_batch, db._conn, batch, loop)


def _run_batch(conn: sqlite3.Connection, batch: list[_Entry], loop: asyncio.AbstractEventLoop) -> None:
    """On the connection thread: all bodies in one transaction; then resolve the futures.

    Optimistic: the bodies run back to back without savepoints (two statements each saved). If one raises, the
    whole transaction is rolled back and each body runs again in a transaction of its own, so only that body's
    caller sees its error — bodies are functions of the connection alone, so running one again is safe."""
    outcomes = _together(conn, batch) if len(batch) > 1 else None
    if outcomes is None:
        outcomes = [_alone(conn, work) for work, _ in batch]
    for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
        loop.call_soon_threadsafe(_resolve, future, ok, value)


def _together(conn: sqlite3.Connection, batch: list[_Entry]) -> list[tuple[bool, Any]] | None:
    """Every body in one transaction: their results, or None (nothing committed) if any of them raised."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error:
        return None  # each body then meets (and reports) the same error alone
    try:
        results = [work(conn) for work, _ in batch]
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return None
    return [(True, result) for result in results]


def _alone(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], Any]) -> tuple[bool, Any]:
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except BaseException as exc:  # handed to this body's caller
        return False, exc
    return True, result


def _resolve(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
