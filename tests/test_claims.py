"""``bridge.claims`` on both engines: a message lease is exclusive across owners, renewed while its work runs,
released at the end (also on cancellation), and taken over once a dead owner's lease has run out."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from bridge.claims import MessageClaims, new_owner_id
from bridge.model import SendRequest
from bridge.ports import utcnow
from bridge.storage.engines import open_store
from bridge.storage.port import Store

REF = "ref-claims-1"


@pytest.fixture
async def stores(database_url: str) -> AsyncIterator[tuple[Store, Store]]:
    one, two = await open_store(database_url), await open_store(database_url)
    request = SendRequest(user_id="U0ALICE", channel_id="C1", to="+15551234567", from_="+15557770000", body="x")
    await one.create_outbound(REF, request, utcnow())
    try:
        yield one, two
    finally:
        await one.close()
        await two.close()


def test_owner_ids_name_the_host_and_process_and_differ_per_instance() -> None:
    first, second = new_owner_id(), new_owner_id()
    assert first != second
    assert first.startswith(f"{socket.gethostname()}-{os.getpid()}-")


async def test_a_lease_is_exclusive_renewed_while_held_and_released_after(stores: tuple[Store, Store]) -> None:
    one, two = stores
    mine, theirs = MessageClaims(one, "replica-a", lease=0.3), MessageClaims(two, "replica-b", lease=0.3)
    async with mine.hold(REF) as held:
        assert held
        await asyncio.sleep(1.0)  # three leases: only the renewal keeps it ours
        async with theirs.hold(REF) as also:
            assert not also
        sms = await two.get_outbound(REF)
        assert sms is not None
    # Released at the end: the other replica gets it at once, long before a lease would have run out.
    now = utcnow()
    assert await two.claim_message(REF, "replica-b", now, now + timedelta(seconds=60))


async def test_a_cancelled_holder_releases_its_lease(stores: tuple[Store, Store]) -> None:
    one, two = stores
    mine = MessageClaims(one, "replica-a", lease=30.0)
    entered = asyncio.Event()

    async def work() -> None:
        async with mine.hold(REF) as held:
            assert held
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.get_running_loop().create_task(work())
    await entered.wait()
    now = utcnow()
    assert not await two.claim_message(REF, "replica-b", now, now + timedelta(seconds=60))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await two.claim_message(REF, "replica-b", now, now + timedelta(seconds=60))


async def test_a_dead_owners_lease_is_taken_over_once_it_runs_out(stores: tuple[Store, Store]) -> None:
    one, two = stores
    now = utcnow()
    assert await one.claim_message(REF, "dead-replica", now, now + timedelta(seconds=0.5))
    survivor = MessageClaims(two, "survivor", lease=30.0)
    async with survivor.hold(REF) as held:
        assert not held
    await asyncio.sleep(0.6)
    async with survivor.hold(REF) as held:
        assert held
    # A release by someone who does not hold the lease changes nothing.
    now = utcnow()
    assert await one.claim_message(REF, "replica-c", now, now + timedelta(seconds=60))
    await two.release_message(REF, "survivor")
    assert not await two.claim_message(REF, "survivor", utcnow(), utcnow() + timedelta(seconds=60))
