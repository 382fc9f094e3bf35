"""A status callback's receipt survives SIGKILL at either side of the 204: once answered it is already queued; killed
before answering, the redelivery or the restarted sweeper queues it. Never twice, never out of order.

The bot runs through ``slow_outbox_bot.py`` (every outbox enqueue sleeps first), which holds the window between
"status recorded" and "receipt queued" open long enough to kill the process inside it. The test plays SignalWire
for the final callback itself (the simulator's own callbacks are dropped), so it knows exactly when it was answered.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sw_api.models import MessageStatus, StatusEvent
from sw_api.simulator import SimMessage
from sw_api.webhooks import SIGNATURE_HEADER, sign_json
from tests.faults.dbtools import status_recorded
from tests.faults.procs import (
    CHANNEL,
    RECEIPT_LABELS,
    World,
    assert_exactly_one_sms,
    parent_for,
    receipts_in,
    thread_texts,
)
from tests.faults.slow_outbox_bot import DELAY_VARIABLE

TO = "+15551234567"
SLOW_BOT = Path(__file__).with_name("slow_outbox_bot.py")
# Long enough to land a SIGKILL inside it reliably, short enough that the callback is still answered within the
# bot's 2 s (a 503 would make SignalWire retry and hide what is tested).
OUTBOX_DELAY = "0.6"


def _parent_says(world: World, label: str) -> bool:
    return any(label in m.text for m in world.slack.messages(CHANNEL))


def _told(world: World, body: str, status: MessageStatus) -> bool:
    """The parent shows ``status`` and its receipt is in the thread. Both, not just the parent: a killed bot may have
    repainted the parent and died before posting the receipt, which its successor posts once the lease runs out."""
    if not _parent_says(world, RECEIPT_LABELS[status]):
        return False
    return status in receipts_in(thread_texts(world, parent_for(world, body)))


async def _accepted_and_walked(world: World, body: str) -> SimMessage:
    """Send ``body``; return its SignalWire message once the bot showed it queued and SignalWire delivered it."""
    world.simulator.drop_callbacks = True
    assert (await world.driver.slash_command(f"{TO} {body}")).status == 200
    await world.wait_for(lambda: world.simulator.created_count(TO) == 1, what="SMS created")
    sms = assert_exactly_one_sms(world, TO, body)
    await world.wait_for(lambda: _parent_says(world, RECEIPT_LABELS[MessageStatus.QUEUED]), what="queued shown")
    await world.wait_for(lambda: sms.status is MessageStatus.DELIVERED, what="delivered at SignalWire")
    return sms


async def _callback(world: World, sms: SimMessage, status: MessageStatus) -> int | None:
    """POST the status callback exactly as SignalWire does (signed JSON); None when no answer came back."""
    assert sms.status_callback is not None
    event = StatusEvent(id=sms.id, status=status, to=sms.to, from_=sms.from_, timestamp=datetime.now(UTC),
                        project_id=world.simulator.config.project_id, body=sms.body,
                        number_of_segments=sms.segments)
    body = json.dumps(event.to_json()).encode()
    headers = {"Content-Type": "application/json",
               SIGNATURE_HEADER: sign_json(world.simulator.config.signing_key, sms.status_callback, body)}
    try:
        async with world.session.post(sms.status_callback, data=body, headers=headers,
                                      timeout=aiohttp.ClientTimeout(total=10)) as resp:
            await resp.read()
            return resp.status
    except (aiohttp.ClientError, TimeoutError):
        return None


def _assert_thread(world: World, body: str, expected: list[MessageStatus]) -> None:
    parent = parent_for(world, body)
    texts = thread_texts(world, parent)
    assert receipts_in(texts) == expected, texts
    assert RECEIPT_LABELS[expected[-1]] in parent.text, parent.text


@pytest.mark.slow
async def test_sigkill_right_after_the_204_keeps_the_receipt(make_world: Any) -> None:
    async with asyncio.timeout(60), make_world(env={DELAY_VARIABLE: OUTBOX_DELAY}, script=SLOW_BOT) as world:
        sms = await _accepted_and_walked(world, "answered then killed")
        assert await _callback(world, sms, MessageStatus.DELIVERED) == 204
        # SignalWire never retries a 204: whatever was not committed before it is gone with the process.
        await world.bot.kill()
        await world.bot.start()
        await world.wait_for(lambda: _told(world, "answered then killed", MessageStatus.DELIVERED), timeout=15,
                             what="receipt delivered by the restarted bot")
        await world.quiet()
        _assert_thread(world, "answered then killed", [MessageStatus.QUEUED, MessageStatus.DELIVERED])


@pytest.mark.slow
@pytest.mark.parametrize("redelivered", [True, False], ids=["signalwire-retries", "no-retry"])
async def test_sigkill_between_recording_and_queuing_the_receipt(make_world: Any, redelivered: bool) -> None:
    async with asyncio.timeout(60), make_world(env={DELAY_VARIABLE: OUTBOX_DELAY}, script=SLOW_BOT) as world:
        sms = await _accepted_and_walked(world, "killed mid-callback")
        answer = asyncio.create_task(_callback(world, sms, MessageStatus.DELIVERED))
        # The status is committed; its receipt is not queued yet (the enqueue is asleep): kill now.
        await world.wait_for(lambda: status_recorded(world, MessageStatus.DELIVERED), what="status recorded")
        await world.bot.kill()
        assert await answer is None, "the callback must not be answered before its receipt is queued"
        await world.bot.start()
        if redelivered:
            # SignalWire got no answer, so it tries again: the status is already recorded ("not advanced"), and
            # its receipt must still be told, once.
            assert await _callback(world, sms, MessageStatus.DELIVERED) == 204
        await world.wait_for(lambda: _told(world, "killed mid-callback", MessageStatus.DELIVERED), timeout=15,
                             what="receipt told after the restart")
        await world.quiet()
        _assert_thread(world, "killed mid-callback", [MessageStatus.QUEUED, MessageStatus.DELIVERED])
        if not redelivered:
            # A late duplicate from SignalWire changes nothing.
            assert await _callback(world, sms, MessageStatus.DELIVERED) == 204
            await world.quiet()
            _assert_thread(world, "killed mid-callback", [MessageStatus.QUEUED, MessageStatus.DELIVERED])
