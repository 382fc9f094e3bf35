"""The database write-locked by another connection (SQLite ``BEGIN EXCLUSIVE``, PostgreSQL ``LOCK TABLE … IN
EXCLUSIVE MODE``) while sends and callbacks arrive: delayed, never half-done, never a 500; receipts still reach the
thread once."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.faults.dbtools import locked_for
from tests.faults.procs import CHANNEL, World, assert_exactly_one_sms, assert_receipts_once, parent_for, sms_to

TO = "+15551234567"


def all_delivered(world: World, count: int) -> bool:
    parents = world.slack.messages(CHANNEL)
    return len(parents) == count and all("Delivered" in p.text for p in parents)


async def test_short_lock_delays_sends_and_callbacks_without_loss(make_world: Any) -> None:
    async with asyncio.timeout(30), make_world(step_delay=0.3) as world:
        await world.driver.slash_command(f"{TO} before the lock")
        await world.wait_for(lambda: world.simulator.created_count() == 1, what="first SMS created")
        # Its "sent" and "delivered" callbacks, and a whole new send, arrive while the file is locked.
        holder = await locked_for(world, 2.0)
        response = await world.driver.slash_command(f"{TO} during the lock")
        assert response.status == 200 and response.elapsed_ms < 2500
        # The new request is either refused clearly in the ack (the store could not vouch for it) or sent.
        refused = "not sent" in response.body.lower()
        await holder
        expected = ["before the lock"] if refused else ["before the lock", "during the lock"]
        await world.wait_for(lambda: all_delivered(world, len(expected)), timeout=20, what="all delivered")
        await world.quiet()
        assert all(a.status is None or a.status < 500 or a.status == 503 for a in world.simulator.callback_log)
        for body in expected:
            sms = assert_exactly_one_sms(world, TO, body)
            assert_receipts_once(world, sms, parent_for(world, body))
        if refused:
            assert not sms_to(world, TO, "during the lock")
