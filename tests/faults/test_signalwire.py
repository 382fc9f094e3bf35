"""SignalWire failing on create: 5xx, timeout and connection reset after the message was created, 429 with
Retry-After. Each ends in exactly one SMS and a thread that ends at the truth (Delivered), receipts once."""

from __future__ import annotations

import asyncio

import pytest

from sw_api.simulator import Fault
from tests.faults.procs import CHANNEL, World, assert_exactly_one_sms, assert_receipts_once, parent_for

TO = "+15551234567"


async def _ends_delivered_once(world: World, body: str, timeout: float = 20) -> None:
    await world.wait_for(lambda: any("Delivered" in m.text for m in world.slack.messages(CHANNEL)),
                         timeout=timeout, what="parent says Delivered")
    await world.quiet()
    sms = assert_exactly_one_sms(world, TO, body)
    assert_receipts_once(world, sms, parent_for(world, body), in_order=False)


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="status", status=500, create=True),
        Fault(kind="status", status=503, create=True),
        # Longer than the bot's SIGNALWIRE_TIMEOUT_SECONDS (2 s in this suite): the answer never reaches it.
        Fault(kind="hang", create=True, hang_seconds=4),
        Fault(kind="reset", create=True),
        Fault(kind="status", status=429, retry_after=1),
    ],
    ids=["500-created", "503-created", "timeout-after-accept", "reset-after-create", "429-retry-after"],
)
async def test_create_fault_ends_in_exactly_one_sms(world: World, fault: Fault) -> None:
    async with asyncio.timeout(30):
        world.simulator.add_fault(fault)
        body = f"through a {fault.kind} {fault.status}"
        assert (await world.driver.slash_command(f"{TO} {body}")).status == 200
        await _ends_delivered_once(world, body)
