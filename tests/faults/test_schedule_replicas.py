"""Scheduled sends across real ``bot.py`` replicas (issue 12): two replicas on one database race for the same due
messages, and exactly one SMS goes out for each, its parent posted once and turned into the receipt thread.
Also: a replica SIGKILLed while messages are due leaves them to the other one.

Read from what people see (the simulator's texts, the fake Slack's channels). Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from tests.faults.conftest import WorldFactory
from tests.faults.procs import CHANNEL, World, assert_exactly_one_sms, parent_for, sms_to, thread_texts

PHONE = "+15551234567"
COUNT = 6
ENV = {"SMS_RATE_LIMIT_PER_USER": "1000"}


async def schedule_in_form(world: World, body: str, due_epoch: int) -> None:
    """Open the compose form through the front and submit it with "Send at" = ``due_epoch``."""
    assert (await world.driver.slash_command("")).status == 200
    await world.wait_for(lambda: len(world.slack.views) > 0, what="the form")
    view = list(world.slack.views.values())[-1]
    values: dict[str, Any] = {
        "to": {"to": {"type": "plain_text_input", "value": PHONE}},
        "body": {"body": {"type": "plain_text_input", "value": body}},
        "send_at": {"send_at": {"type": "datetimepicker", "selected_date_time": due_epoch}},
        "channel": {"channel": {"type": "conversations_select", "selected_conversation": CHANNEL}},
    }
    answer = await world.driver.view_submission(view, values)
    assert answer.status == 200 and not answer.body.strip(), answer.body


async def test_two_replicas_racing_due_messages_send_each_exactly_once(make_world: WorldFactory) -> None:
    async with make_world(replicas=2, env=ENV) as world:
        due = int(time.time()) + 3
        bodies = [f"scheduled race {i}" for i in range(COUNT)]
        for body in bodies:
            await schedule_in_form(world, body, due)
        await world.wait_for(lambda: all(any(b in m.text for m in world.slack.messages(CHANNEL)) for b in bodies),
                             timeout=20, what="every scheduled parent")
        assert all(not sms_to(world, PHONE, b) for b in bodies), "nothing goes before its time"
        await world.wait_for(lambda: all(sms_to(world, PHONE, b) for b in bodies), timeout=20, what="every SMS")
        assert datetime.now(UTC).timestamp() < due + 10 + 5
        await world.quiet(seconds=1.0, timeout=30)
        for body in bodies:
            assert_exactly_one_sms(world, PHONE, body)
            parent = parent_for(world, body)
            assert not parent.text.startswith("⏰ Scheduled"), parent.text
            texts = thread_texts(world, parent)
            assert sum("Delivered" in t for t in texts) == 1, texts


async def test_a_replica_killed_at_the_due_time_leaves_the_sends_to_the_other(make_world: WorldFactory) -> None:
    async with make_world(replicas=2, env=ENV) as world:
        due = int(time.time()) + 3
        bodies = [f"survives a kill {i}" for i in range(3)]
        for body in bodies:
            await schedule_in_form(world, body, due)
        await world.wait_for(lambda: all(any(b in m.text for m in world.slack.messages(CHANNEL)) for b in bodies),
                             timeout=20, what="every scheduled parent")
        await world.wait_for(lambda: time.time() >= due, timeout=10, what="the due time")
        await world.bots[0].kill()
        await world.wait_for(lambda: all(sms_to(world, PHONE, b) for b in bodies), timeout=30, what="every SMS")
        await world.quiet(seconds=1.0, timeout=30)
        for body in bodies:
            assert_exactly_one_sms(world, PHONE, body)
