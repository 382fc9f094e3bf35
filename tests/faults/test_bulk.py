"""Bulk sends under faults with real ``bot.py`` processes (issue 13): a SIGKILL mid-batch then a restart, two
replicas sharing one batch and one pace, Cancel from the live parent, and a storm of SignalWire 429s.

Read from what people see: the simulator's texts (how many to each number, and when each was created) and the fake
Slack's channel (the live parent and the report in its thread). Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sw_api.simulator import Fault
from tests.faults.conftest import WorldFactory
from tests.faults.procs import CHANNEL, World

pytestmark = pytest.mark.slow

MPS = 10
COUNT = 40  # at MPS a batch takes about four seconds: long enough to hit it mid-way
NUMBERS = [f"+1212555{n:04d}" for n in range(110, 110 + COUNT)]  # none ends like a simulator failure rule
ENV = {"SMS_BULK_ALLOWED_USERS": "U0ALICE", "QUIET_HOURS": "off", "SIGNALWIRE_MPS": str(MPS)}
TEST_SECONDS = 45.0


def _button_value(blocks: list[dict[str, Any]], action_id: str) -> str:
    for block in blocks:
        for element in block.get("elements") or []:
            if element.get("action_id") == action_id:
                return str(element["value"])
    raise AssertionError(f"no {action_id} button in {blocks}")


def _created(world: World) -> list[datetime]:
    return sorted(m.created_at for m in world.simulator.messages.values() if m.direction == "outbound")


def _per_number(world: World) -> Counter[str]:
    return Counter(m.to for m in world.simulator.messages.values() if m.direction == "outbound")


# The pace runs 4 % under SIGNALWIRE_MPS (bridge.sending.PACE_MARGIN): that absorbs about 40 ms of lateness of one
# POST against the next. Between a slot and SignalWire's arrival lie a hand-over, a lease and a status write; on a
# busy 2-core box with two replicas and PostgreSQL one of them is sometimes 50 ms late. The windows are shortened by
# that much, which still tells a pace shared through the database (MPS) from one per replica (2 × MPS).
POST_JITTER = timedelta(milliseconds=50)


def busiest_second(times: list[datetime], jitter: timedelta = POST_JITTER) -> list[datetime]:
    """The creations in the busiest one-second window [t, t + 1 s − ``jitter``)."""
    windows = ([u for u in times[i:] if u - t < timedelta(seconds=1) - jitter] for i, t in enumerate(times))
    return max(windows, key=len, default=[])


def offsets(times: list[datetime]) -> str:
    return ", ".join(f"{(t - times[0]).total_seconds():.3f}" for t in times)


async def start_batch(world: World, body: str, numbers: list[str] = NUMBERS) -> str:
    """``/sms bulk`` → the form → the private preview → "Send to N"; the batch id (the preview's button value)."""
    before = set(world.slack.views)
    assert (await world.driver.slash_command("bulk")).status == 200
    await world.wait_for(lambda: bool(set(world.slack.views) - before), what="the bulk form")
    [view] = [v for k, v in world.slack.views.items() if k not in before]
    values = {
        "recipients": {"bulk_recipients": {"type": "plain_text_input", "value": "\n".join(numbers)}},
        "csv": {"bulk_csv": {"type": "file_input", "files": []}},
        "body": {"bulk_body": {"type": "plain_text_input", "value": body}},
        "channel": {"bulk_channel": {"type": "conversations_select", "selected_conversation": CHANNEL}},
    }
    answer = await world.driver.view_submission(view, values)
    assert answer.status == 200 and not answer.body.strip(), answer.body
    await world.wait_for(lambda: any(e.get("channel") == CHANNEL for e in world.slack.ephemerals), timeout=15,
                         what="the preview")
    [preview] = [e for e in world.slack.ephemerals if e.get("channel") == CHANNEL]
    assert f"Send to {len(numbers)}" in str(preview), preview
    assert not world.simulator.messages, "nothing is sent before “Send to N”"
    batch_id = _button_value(preview.get("blocks") or [], "bulk_send")
    assert (await world.driver.block_action("bulk_send", batch_id, channel_id=CHANNEL)).status == 200
    return batch_id


def parent_text(world: World, body: str) -> str:
    found = [m for m in world.slack.messages(CHANNEL) if body[:20] in m.text]
    return found[0].text if len(found) == 1 else ""


async def wait_done(world: World, body: str, timeout: float = 30.0) -> None:
    """The parent says done and the CSV report is in its thread, with one line per recipient."""
    await world.wait_for(lambda: "done" in parent_text(world, body), timeout=timeout, what="the parent says done")
    [parent] = [m for m in world.slack.messages(CHANNEL) if body[:20] in m.text]
    await world.wait_for(lambda: bool(world.slack.uploads.shared_in(CHANNEL, parent.ts)), timeout=10,
                         what="the report in the parent's thread")
    [report] = world.slack.uploads.shared_in(CHANNEL, parent.ts)
    assert report.data is not None
    lines = report.data.decode().splitlines()[1:]
    assert sorted(line.split(",")[0] for line in lines) == NUMBERS, lines


def assert_each_once(world: World) -> None:
    per = _per_number(world)
    twice = {n: c for n, c in per.items() if c > 1}
    missing = [n for n in NUMBERS if n not in per]
    assert not twice and not missing, f"texted more than once: {twice}; never texted: {missing}"
    assert set(per) == set(NUMBERS), f"texted outside the batch: {set(per) - set(NUMBERS)}"


async def test_sigkill_mid_batch_then_restart_texts_everyone_exactly_once(make_world: WorldFactory) -> None:
    async with asyncio.timeout(TEST_SECONDS), make_world(env=ENV) as world:
        body = "Store closed today (kill test)"
        await start_batch(world, body)
        await world.wait_for(lambda: world.simulator.created_count() >= COUNT // 4, timeout=15,
                             what="a quarter of the batch sent")
        await world.bot.kill()
        sent_before = world.simulator.created_count()
        assert sent_before < COUNT, "the batch was over before the kill: nothing was tested"
        await world.bot.start()
        await world.wait_for(lambda: world.simulator.created_count() >= COUNT, timeout=25,
                             what="every recipient texted after the restart")
        await wait_done(world, body)
        await world.quiet(seconds=1.0, timeout=15)
        assert_each_once(world)


async def test_two_replicas_share_one_batch_and_one_pace(make_world: WorldFactory) -> None:
    async with asyncio.timeout(TEST_SECONDS), make_world(replicas=2, env=ENV) as world:
        body = "Shift change at 7 (replicas test)"
        await start_batch(world, body)
        await wait_done(world, body, timeout=30)
        await world.quiet(seconds=1.0, timeout=15)
        assert_each_once(world)
        busiest = busiest_second(_created(world))
        assert len(busiest) <= MPS, f"{len(busiest)} texts within one second (s after the first): {offsets(busiest)}"
        logs = [bot.log_text() for bot in world.bots]
        handed = [log.count("handed over") for log in logs]
        assert sum(handed) == COUNT, handed
        assert all(handed), f"one replica did all the work: {handed}"


async def test_cancel_from_the_parent_stops_within_a_second(make_world: WorldFactory) -> None:
    async with asyncio.timeout(TEST_SECONDS), make_world(env=ENV) as world:
        body = "Cancel me half way (cancel test)"
        batch_id = await start_batch(world, body)
        await world.wait_for(lambda: world.simulator.created_count() >= COUNT // 4, timeout=15,
                             what="a quarter of the batch sent")
        [parent] = [m for m in world.slack.messages(CHANNEL) if body[:20] in m.text]
        assert _button_value(parent.blocks, "bulk_cancel") == batch_id
        message = {"ts": parent.ts, "text": parent.text, "blocks": parent.blocks}
        answer = await world.driver.block_action("bulk_cancel", batch_id, message=message, channel_id=CHANNEL)
        answered = datetime.now(UTC)
        assert answer.status == 200
        await world.wait_for(lambda: "cancelled" in parent_text(world, body), timeout=10,
                             what="the parent says cancelled")
        # Anything still on its way would have been created by now (a POST takes milliseconds here).
        await world.quiet(seconds=1.5, timeout=15)
        late = [t for t in _created(world) if t > answered + timedelta(seconds=1)]
        assert not late, f"{len(late)} text(s) created more than 1 s after Cancel was answered"
        per = _per_number(world)
        assert all(c == 1 for c in per.values()), per
        assert 0 < len(per) < COUNT, f"{len(per)} of {COUNT} texted: Cancel stopped nothing or came too late"
        assert "not sent" in parent_text(world, body), parent_text(world, body)


async def test_a_429_storm_slows_the_whole_number_and_loses_no_one(make_world: WorldFactory) -> None:
    retry_after = 1.0
    async with asyncio.timeout(TEST_SECONDS), make_world(env=ENV) as world:
        refused: list[datetime] = []
        take_fault = world.simulator.take_fault

        def recording_take_fault() -> Fault | None:
            fault = take_fault()
            if fault is not None:
                refused.append(datetime.now(UTC))
            return fault

        world.simulator.take_fault = recording_take_fault  # type: ignore[method-assign]
        body = "Storm warning tonight (429 test)"
        await start_batch(world, body)
        await world.wait_for(lambda: world.simulator.created_count() >= 5, timeout=15, what="the batch under way")
        world.simulator.add_fault(Fault(kind="status", status=429, retry_after=retry_after, count=5))
        await wait_done(world, body, timeout=35)
        await world.quiet(seconds=1.0, timeout=15)
        assert len(refused) == 5, refused
        assert_each_once(world)
        # A 429 holds back every POST from the number for Retry-After. A POST already on its way when the 429 was
        # answered cannot be recalled: one slot (1 / MPS) of slack at the start, a little for clocks at the end.
        start, end = timedelta(seconds=1 / MPS), timedelta(milliseconds=60)
        created = _created(world)
        inside = [(t, r) for r in refused for t in created
                  if r + start < t < r + timedelta(seconds=retry_after) - end]
        assert not inside, "created during a Retry-After window: " + ", ".join(
            f"{(t - r).total_seconds():.2f} s after a 429" for t, r in inside)
