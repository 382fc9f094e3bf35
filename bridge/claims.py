"""Leases on work that more than one replica could pick up: who this replica is, and holding a message's lease.

Owns: ``new_owner_id`` (this replica's name in every claim: host, pid and a random part, so a restarted process is
a new owner and never mistakes a live replica's lease for its own), the lease lengths, and ``MessageClaims.hold``,
the context manager under which a message is sent, reconciled or checked: it claims the message's lease in the
database (a conditional update, so of several replicas exactly one gets it), renews it in a background task every
third of the lease while the body runs, and releases it at the end — bounded, also on cancellation. A replica that
dies stops renewing, so its lease runs out and another replica takes the work over within one lease.
A process-local lock per message (``MessageClaims.lock``) keeps two coroutines of one process from both entering:
they share an owner id, so the database lease cannot tell them apart. It is an optimisation for the lease of
other replicas, never the guarantee across them.
Must not import: aiohttp, Slack packages, ``handlers``, ``bridge.service`` (which imports this module).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

from bridge.ports import utcnow
from bridge.storage.port import Store, StoreUnavailable

log = logging.getLogger("bridge.claims")

MESSAGE_LEASE = 30.0   # seconds; renewed every third of it, so a dead replica's message is taken over in < 60 s
OUTBOX_LEASE = 30.0    # the outbox's item claims, renewed likewise while a delivery runs
RELEASE_SECONDS = 5.0  # releasing a lease at the end is bounded: a stuck store lets it expire instead


def new_owner_id() -> str:
    """A name unique to this process (and Bridge): ``host-pid-random``. Logged, so it holds nothing secret."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


class MessageClaims:
    """Hold message leases for one owner. One instance per ``Bridge``."""

    def __init__(self, store: Store, owner: str, *, lease: float = MESSAGE_LEASE) -> None:
        self.store = store
        self.owner = owner
        self.lease = lease
        # Weak: a lock nobody holds or waits for is dropped, so a long-running bridge keeps none per message.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def lock(self, key: str) -> asyncio.Lock:
        """A process-wide lock by name: serialises this process's own coroutines (an optimisation, not a claim)."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    @contextlib.asynccontextmanager
    async def hold(self, ref: str) -> AsyncIterator[bool]:
        """``async with claims.hold(ref) as held``: ``held`` is False if another replica holds a live lease on
        ``ref`` (the body must then leave the message alone). While the body runs the lease is renewed; at the end
        it is released. A store failure while claiming propagates (``StoreUnavailable``): nothing was started."""
        async with self.lock(ref):
            if not await self._claim(ref):
                yield False
                return
            try:
                async with renewed(lambda: self._claim(ref), every=self.lease / 3, what=f"lease on ref={ref}"):
                    yield True
            finally:
                try:
                    async with asyncio.timeout(RELEASE_SECONDS):
                        await self.store.release_message(ref, self.owner)
                except (TimeoutError, StoreUnavailable) as exc:
                    log.warning("lease on ref=%s not released (%s); it expires within %.0f s", ref, exc, self.lease)

    async def _claim(self, ref: str) -> bool:
        now = utcnow()
        return await self.store.claim_message(ref, self.owner, now, now + timedelta(seconds=self.lease))


@contextlib.asynccontextmanager
async def renewed(renew: Callable[[], Awaitable[bool]], *, every: float, what: str) -> AsyncIterator[None]:
    """Call ``renew`` every ``every`` seconds while the body runs, in a task owned here (cancelled and waited for,
    bounded, at the end). ``renew`` returning False means the lease was lost to another owner: logged, and renewing
    stops (the body is not interrupted: what it does next is guarded by the store's conditional writes)."""
    task = asyncio.get_running_loop().create_task(_renew_loop(renew, every, what), name=f"renew {what}")
    try:
        yield
    finally:
        task.cancel()
        # asyncio.wait never raises and never cancels: it only bounds how long the renewer is waited on.
        await asyncio.wait({task}, timeout=RELEASE_SECONDS)


async def _renew_loop(renew: Callable[[], Awaitable[bool]], every: float, what: str) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            if not await renew():
                log.error("%s lost to another replica while the work was still running", what)
                return
        except StoreUnavailable as exc:
            log.warning("%s not renewed (%s); trying again", what, exc)
