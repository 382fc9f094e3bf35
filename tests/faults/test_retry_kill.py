"""SIGKILL of the real bot right after it acknowledged a Retry click: the retry was claimed and stored before
the ack, so the restarted bot sends it — exactly once — instead of losing a click the user saw accepted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from demo.fake_slack import SlackMessage
from sw_api.models import MessageStatus
from sw_api.simulator import Outcome
from tests.faults.dbtools import locked_for
from tests.faults.procs import CHANNEL, World

TO = "+15551234567"


def _retry_value(message: SlackMessage) -> str | None:
    for block in message.blocks or []:
        for element in block.get("elements", []):
            if element.get("action_id") == "sms_retry":
                return str(element["value"])
    return None


def _failure_with_retry(world: World) -> SlackMessage | None:
    for parent in world.slack.messages(CHANNEL):
        for reply in world.slack.thread(CHANNEL, parent.ts):
            if _retry_value(reply) is not None:
                return reply
    return None


@pytest.mark.slow
async def test_sigkill_right_after_the_retry_ack_sends_the_retry_once(make_world: Any) -> None:
    async with asyncio.timeout(60), make_world() as world:
        world.simulator.script(TO, Outcome(MessageStatus.UNDELIVERED, "30003", "Unreachable destination handset"))
        await world.driver.slash_command(f"{TO} retry me after a crash")
        await world.wait_for(lambda: _failure_with_retry(world) is not None, what="failure with a Retry button")
        failure = _failure_with_retry(world)
        assert failure is not None
        world.simulator.script(TO, Outcome(MessageStatus.DELIVERED))
        # The database is briefly busy (a backup, a checkpoint): whatever the bot does before its ack waits, and
        # whatever it does after the ack is what a SIGKILL can cut off.
        # And SignalWire is slow, so the kill also lands before the retry's create has been answered.
        world.simulator.latency = 1.0
        holder = await locked_for(world, 0.5)
        click = await world.driver.block_action("sms_retry", _retry_value(failure), message=failure.as_dict())
        assert click.status == 200
        await world.bot.kill()
        await holder
        world.simulator.latency = 0.0
        await world.bot.start()
        await world.wait_for(lambda: world.simulator.created_count(TO) == 2, timeout=25,
                             what="the acknowledged Retry sent after the restart")
        await world.wait_for(lambda: any("Delivered" in p.text for p in world.slack.messages(CHANNEL)),
                             timeout=10, what="the retry delivered")
        await world.quiet(1.0)
        assert world.simulator.created_count(TO) == 2
        # A second click on the same button (say, after the restart) does not send a third.
        again = await world.driver.block_action("sms_retry", _retry_value(failure), message=failure.as_dict())
        assert again.status == 200
        await world.quiet(0.5)
        assert world.simulator.created_count(TO) == 2
        await world.wait_for(lambda: any("already pressed Retry" in e.get("text", "") for e in world.slack.ephemerals),
                             what="second click told")
