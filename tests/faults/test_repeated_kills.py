"""Ten SIGKILLs of the single bot at random points of sends, restarting each time: at the end every parent and
every receipt is in Slack exactly once and every acknowledged send went out exactly once."""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import aiohttp
import pytest

from tests.faults.kill_points import kill_on, restart_after_kill
from tests.faults.procs import CHANNEL, World, assert_exactly_one_sms, assert_receipts_once, parent_for, sms_to

TO = "+15551234567"
SLACK_WRITES = frozenset({"chat.postMessage", "chat.update", "reactions.add", "reactions.remove"})
# (n-th Slack write of the send, kill after Slack took it?) — the first after-kill is the parent post itself,
# the window once seen to leave a parent posted twice; the rest are drawn at random.
ALWAYS = [(1, True), (1, False), (2, True)]


def _plan(rng: random.Random, kills: int) -> list[tuple[int, bool]]:
    plan = ALWAYS + [(rng.randint(1, 5), rng.random() < 0.7) for _ in range(kills - len(ALWAYS))]
    rng.shuffle(plan)
    return plan


def _delivered(world: World, body: str, *, required: bool) -> bool:
    """Its parent(s) and thread say Delivered; ``required=False``: or it has no parent (and no SMS) at all."""
    parents = [p for p in world.slack.messages(CHANNEL) if body in p.text]
    if not parents:
        return not required and not sms_to(world, TO, body)
    return all("Delivered" in p.text for p in parents) and any(
        "Delivered" in r.text for p in parents for r in world.slack.thread(CHANNEL, p.ts))


@pytest.mark.slow
async def test_ten_kills_at_random_points_leave_every_parent_and_receipt_once(make_world: Any) -> None:
    seed = int(os.environ.get("KILL_SEED", random.randrange(1_000_000)))
    rng = random.Random(seed)
    env = {"STUCK_AFTER_SECONDS": "2", "SWEEP_INTERVAL_SECONDS": "0.5"}
    async with asyncio.timeout(100), make_world(step_delay=0.2, env=env) as world:
        switch = kill_on(world, lambda method, payload: method in SLACK_WRITES)
        acked: list[str] = []
        unacked: list[str] = []  # the kill raced the ack: stored or not, but never sent twice
        for i, (nth, after) in enumerate(_plan(rng, 10)):
            body = f"kill point {i}"
            switch.arm(nth, after=after)
            try:
                answer = await world.driver.slash_command(f"{TO} {body}")
            except aiohttp.ClientError:
                unacked.append(body)
            else:
                assert answer.status == 200, (seed, answer)
                acked.append(body)
            # If the send makes fewer Slack writes than nth meanwhile, the bot is killed at a random moment.
            await restart_after_kill(world, timeout=rng.uniform(0.2, 1.5), switch=switch)
            # One send at a time: SignalWire's callbacks of this one are answered (or given up) before the next
            # kill, so a kill lands in this send's own steps rather than anywhere in another's.
            await world.simulator.settle(timeout=10)
        switch.arm(0)

        def doubled() -> bool:
            return any(len([p for p in world.slack.messages(CHANNEL) if b in p.text]) > 1 for b in acked + unacked)

        def finished() -> bool:
            if doubled():
                return True  # fail now, below, rather than wait for a thread that can never be right
            return all(_delivered(world, b, required=True) for b in acked) and all(
                _delivered(world, b, required=False) for b in unacked)

        try:
            await world.wait_for(finished, timeout=40, what=f"every send Delivered (seed {seed})")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nkills: {switch.fired}\n{world.slack.transcript(CHANNEL)}") from None
        await world.quiet(1.0)
        assert len(switch.fired) >= len(ALWAYS), switch.fired
        for body in acked + unacked:
            if body in unacked and not sms_to(world, TO, body):
                assert not [p for p in world.slack.messages(CHANNEL) if body in p.text]
                continue
            sms = assert_exactly_one_sms(world, TO, body)
            assert_receipts_once(world, sms, parent_for(world, body), in_order=False)
        assert world.bot.starts == 11
