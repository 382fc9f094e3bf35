"""SIGKILL of the real bot after Slack's event request for a thread reply was answered but before the reply's SMS
went out (at the users.info call that resolves a mentioned name): the reply was stored as Slack delivered it
before the answer, so the restarted bot texts it — exactly once — instead of losing an event Slack will not send
again. And a reply the store could not take in time is answered 5xx, so Slack's retry sends it, once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from demo.fake_slack import SlackMessage
from demo.harness import FROM_NUMBER
from tests.faults.dbtools import locked_for
from tests.faults.kill_points import kill_on, restart_after_kill
from tests.faults.procs import World, sms_to

INBOUND = "C0INBOUND"
PHONE = "+15551234567"
# A reply left unfinished (its process died) is picked up this long after it was stored.
ENV = {"INBOUND_CHANNEL": INBOUND, "REPLY_RESUME_SECONDS": "2"}


async def conversation(world: World) -> SlackMessage:
    await world.simulator.inject_inbound(PHONE, FROM_NUMBER, "hello?", url=world.bot_url + "/signalwire/inbound")
    await world.wait_for(lambda: len(world.slack.messages(INBOUND)) == 1, what="the conversation's parent")
    return world.slack.messages(INBOUND)[0]


def replies_texted(world: World, body: str) -> int:
    return len(sms_to(world, PHONE, body))


@pytest.mark.slow
@pytest.mark.parametrize("after", [True, False], ids=["users-info-answered", "users-info-never-seen"])
async def test_sigkill_after_the_event_ack_texts_the_reply_once_after_restart(make_world: Any, after: bool) -> None:
    async with asyncio.timeout(90), make_world(env=ENV) as world:
        parent = await conversation(world)
        switch = kill_on(world, lambda method, _payload: method == "users.info")
        switch.arm(1, after=after)
        event = world.slack.post_user_message(INBOUND, "U0ALICE", "<@U0BOB> will call you", thread_ts=parent.ts)
        answer = await world.driver.event(event, event_id="Ev0000000101")
        # Slack got its answer: it will not deliver this event again.
        assert answer.status == 200, answer.body
        assert await restart_after_kill(world, switch=switch), "the bot was not killed at users.info"
        assert switch.fired
        await world.wait_for(lambda: replies_texted(world, "@bob will call you") == 1, timeout=30,
                             what="the acknowledged reply texted after the restart")
        await world.quiet(1.0)
        assert replies_texted(world, "@bob will call you") == 1
        # A late retry of that event from Slack (X-Slack-Retry-Num) does not text it again.
        again = await world.driver.event(event, retry_num=1, event_id="Ev0000000101")
        assert again.status == 200
        await world.quiet(1.0)
        assert replies_texted(world, "@bob will call you") == 1
        assert not [m.text for m in world.slack.thread(INBOUND, parent.ts) if "not texted" in m.text]


@pytest.mark.slow
async def test_a_reply_the_store_cannot_take_gets_a_5xx_and_slacks_retry_sends_once(make_world: Any) -> None:
    async with asyncio.timeout(90), make_world(env=ENV) as world:
        parent = await conversation(world)
        event = world.slack.post_user_message(INBOUND, "U0ALICE", "text me back", thread_ts=parent.ts)
        # The database is locked (a backup, another replica) for longer than an ack may wait.
        holder = await locked_for(world, 2.5)
        refused = await world.driver.event(event, event_id="Ev0000000102")
        assert refused.status >= 500, (refused.status, refused.body)
        await holder
        # Slack retries an event it got no 2xx for.
        retried = await world.driver.event(event, retry_num=1, retry_reason="http_error", event_id="Ev0000000102")
        assert retried.status == 200, retried.body
        await world.wait_for(lambda: replies_texted(world, "text me back") == 1, timeout=20,
                             what="the retried reply texted")
        # And its later retries are duplicates.
        for n in (2, 3):
            dup = await world.driver.event(event, retry_num=n, retry_reason="http_error", event_id="Ev0000000102")
            assert dup.status == 200
        await world.quiet(1.5)
        assert replies_texted(world, "text me back") == 1
        assert not [m.text for m in world.slack.thread(INBOUND, parent.ts) if "not texted" in m.text]


@pytest.mark.slow
async def test_slacks_retry_while_the_killed_reply_is_still_claimed_does_not_double_it(make_world: Any) -> None:
    async with asyncio.timeout(90), make_world(env=ENV) as world:
        parent = await conversation(world)
        switch = kill_on(world, lambda method, _payload: method == "users.info")
        switch.arm(1, after=False)
        event = world.slack.post_user_message(INBOUND, "U0ALICE", "<@U0CAROL> has it", thread_ts=parent.ts)
        assert (await world.driver.event(event, event_id="Ev0000000103")).status == 200
        assert await restart_after_kill(world, switch=switch), "the bot was not killed at users.info"
        # Slack's retries (say, our answer was slow) reach the new process while the dead one's claim still runs,
        # and after: each finds the stored reply; the sweeper finishes it once the claim has run out.
        for n in (1, 2):
            retry = await world.driver.event(event, retry_num=n, event_id="Ev0000000103")
            assert retry.status == 200
        await world.wait_for(lambda: replies_texted(world, "@carol has it") == 1, timeout=30,
                             what="the reply texted once after the restart")
        retry = await world.driver.event(event, retry_num=3, event_id="Ev0000000103")
        assert retry.status == 200
        await world.quiet(1.5)
        assert replies_texted(world, "@carol has it") == 1
