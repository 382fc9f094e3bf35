"""SIGKILL of the real bot while an inbound text is being posted to Slack: SignalWire's redelivery must finish the
job (the text appears once, a STOP is honoured), never be dropped as a duplicate of work that was lost."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from demo.harness import FROM_NUMBER
from sw_api.simulator import InboundDelivery
from tests.faults.kill_points import kill_on, restart_after_kill
from tests.faults.procs import World

INBOUND = "C0INBOUND"
PHONE = "+15551234567"


async def text_in(world: World, body: str, message_id: str) -> InboundDelivery:
    return await world.simulator.inject_inbound(PHONE, FROM_NUMBER, body, url=world.bot_url + "/signalwire/inbound",
                                                message_id=message_id)


def posts_about(world: World, words: str) -> list[str]:
    top = [m.text for m in world.slack.messages(INBOUND)]
    replies = [r.text for m in world.slack.messages(INBOUND) for r in world.slack.thread(INBOUND, m.ts)]
    return [t for t in top + replies if words in t]


@pytest.mark.slow
@pytest.mark.parametrize("after", [True, False], ids=["slack-took-it", "slack-never-saw-it"])
async def test_sigkill_during_the_inbound_post_then_redelivery_posts_once_and_keeps_the_stop(
        make_world: Any, after: bool) -> None:
    async with asyncio.timeout(60), make_world(env={"INBOUND_CHANNEL": INBOUND}) as world:
        switch = kill_on(world, lambda method, p: method == "chat.postMessage" and p.get("channel") == INBOUND)
        switch.arm(1, after=after)
        first = await text_in(world, "STOP", "in-stop-1")
        assert await restart_after_kill(world), "the bot was not killed at the inbound post"
        assert switch.fired
        if first.status != 200:
            # SignalWire got no answer: it delivers the same message again.
            again = await text_in(world, "STOP", "in-stop-1")
            assert again.status == 200, again
        # A redelivery of a text already stored is a duplicate: it must not post a second copy.
        dup = await text_in(world, "STOP", "in-stop-1")
        assert dup.status == 200, dup
        await world.wait_for(lambda: bool(posts_about(world, "opted out")), timeout=15, what="opt-out notice")
        await world.quiet(1.0)
        [parent] = world.slack.messages(INBOUND)
        assert "STOP" in parent.text and "New conversation" in parent.text
        assert len(posts_about(world, "opted out")) == 1, world.slack.transcript(INBOUND)
        answer = await world.driver.slash_command(f"{PHONE} promo after STOP")
        assert "opted out" in answer.body, answer.body
        await world.quiet(0.5)
        # Issue 11: the STOP is confirmed exactly once (stored with the text), however the kill and redelivery fell.
        await world.wait_for(lambda: any(m.direction == "outbound" for m in world.simulator.messages.values()),
                             timeout=20, what="the STOP confirmation")
        await world.quiet(1.0)
        outbound = [m.body or "" for m in world.simulator.messages.values() if m.direction == "outbound"]
        assert len(outbound) == 1 and "You are unsubscribed" in outbound[0], outbound


@pytest.mark.slow
async def test_stop_is_recorded_and_answered_while_slack_is_down(make_world: Any) -> None:
    async with asyncio.timeout(60), make_world(env={"INBOUND_CHANNEL": INBOUND}) as world:
        world.slack.outage(4)
        delivery = await text_in(world, "stop", "in-stop-2")
        # Acknowledged although Slack is unreachable: the text is stored, the opt-out applied.
        assert delivery.status == 200, delivery
        answer = await world.driver.slash_command(f"{PHONE} promo during the outage")
        assert "opted out" in answer.body, answer.body
        # The text and the notice reach Slack once it is back.
        await world.wait_for(lambda: bool(posts_about(world, "opted out")), timeout=20, what="opt-out notice")
        await world.quiet(1.0)
        assert len(world.slack.messages(INBOUND)) == 1
        assert len(posts_about(world, "opted out")) == 1
