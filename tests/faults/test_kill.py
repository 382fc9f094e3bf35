"""SIGKILL and SIGTERM of the real bot process while messages are on their way."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sw_api.models import MessageStatus
from tests.faults.procs import (
    CHANNEL,
    World,
    assert_exactly_one_sms,
    assert_receipts_once,
    parent_for,
    receipts_in,
    thread_texts,
)

TO = "+15551234567"


def _parent_says(world: World, label: str) -> bool:
    return any(label in m.text for m in world.slack.messages(CHANNEL))


@pytest.mark.slow
async def test_sigkill_between_accept_and_callbacks_loses_no_receipt(make_world: Any) -> None:
    # Receipts 2.5 s apart: the bot is killed once SignalWire accepted the message and is back before the
    # "sent" callback, which must then land in the thread of the message the dead process accepted.
    async with asyncio.timeout(30), make_world(step_delay=2.5) as world:
        await world.driver.slash_command(f"{TO} survive a kill")
        await world.wait_for(lambda: world.simulator.created_count(TO) == 1, what="SMS created")
        await world.wait_for(lambda: _parent_says(world, "Queued"), what="accept stored and shown")
        await world.bot.kill()
        await world.bot.start()
        sms = assert_exactly_one_sms(world, TO, "survive a kill")
        await world.wait_for(lambda: sms.status is MessageStatus.DELIVERED, timeout=10, what="delivered")
        # The parent, then its receipt (queued after the repaint in the same thread): wait for both.
        await world.wait_for(lambda: _parent_says(world, "Delivered") and MessageStatus.DELIVERED in receipts_in(
            thread_texts(world, parent_for(world, "survive a kill"))), what="thread told")
        await world.quiet()
        assert_receipts_once(world, sms, parent_for(world, "survive a kill"))
        assert world.bot.starts == 2


@pytest.mark.slow
async def test_sigterm_with_a_send_in_flight_exits_0_and_finishes_it(make_world: Any) -> None:
    async with asyncio.timeout(30), make_world(step_delay=0.05) as world:
        world.simulator.latency = 1.0
        response = await world.driver.slash_command(f"{TO} finish before exit")
        assert response.status == 200
        # The create request is in flight (SignalWire answers after 1 s) when the signal arrives.
        await world.wait_for(lambda: world.slack.called("chat.postMessage"), what="parent posted")
        assert await world.bot.terminate() == 0
        sms = assert_exactly_one_sms(world, TO, "finish before exit")
        parent = parent_for(world, "finish before exit")
        # What the thread says must be true: SignalWire took it, so it must not say "Sending…" or "unknown".
        assert "Sending" not in parent.text and "unknown" not in parent.text.lower(), parent.text
        assert sms.status is not None
