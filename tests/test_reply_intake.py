"""Thread replies as they arrive over real HTTP: only a verified reply in a bridged thread is stored before Slack
is answered (a forged one never is), internal notes and other threads cost no write, a stored reply is finished
once it is texted."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from demo.fake_slack import SlackMessage
from demo.harness import FROM_NUMBER, Harness, running_bridge

INBOUND = "C0INBOUND"
PHONE = "+15551234567"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bridge(tmp_path, env={"INBOUND_CHANNEL": INBOUND}) as harness:
        yield harness


def stored_replies(h: Harness) -> list[tuple[str, bool]]:
    """(ts, finished) of every reply stored as received, read straight from the bot's database file."""
    database = h.config.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as conn:
        return [(ts, done is not None) for ts, done in conn.execute("SELECT ts, done_at FROM slack_reply")]


def sent(h: Harness) -> list[str | None]:
    return [m.body for m in h.simulator.messages.values() if m.direction == "outbound"]


async def conversation(h: Harness) -> SlackMessage:
    await h.simulator.inject_inbound(PHONE, FROM_NUMBER, "hello?", url=h.bot_url + "/signalwire/inbound")
    await h.settle()
    [parent] = h.slack.messages(INBOUND)
    return parent


async def test_a_bridged_reply_is_stored_then_finished_once_texted(h: Harness) -> None:
    parent = await conversation(h)
    event = h.slack.post_user_message(INBOUND, "U0ALICE", "<@U0BOB> calls at 5", thread_ts=parent.ts)
    answer = await h.driver.event(event)
    assert answer.status == 200
    await h.settle()
    assert sent(h) == ["@bob calls at 5"]
    assert stored_replies(h) == [(event["ts"], True)]


async def test_replies_that_text_nobody_cost_no_write(h: Harness) -> None:
    parent = await conversation(h)
    note = h.slack.post_user_message(INBOUND, "U0ALICE", "note: they sound upset", thread_ts=parent.ts)
    top = h.slack.post_user_message("C0GENERAL", "U0ALICE", "lunch?")
    elsewhere = h.slack.post_user_message("C0GENERAL", "U0BOB", "sure", thread_ts=top["ts"])
    for event in (note, top, elsewhere):
        assert (await h.driver.event(event)).status == 200
    await h.settle()
    assert sent(h) == []
    assert stored_replies(h) == []


async def test_a_forged_reply_event_is_refused_and_never_stored(h: Harness) -> None:
    parent = await conversation(h)
    event = h.slack.post_user_message(INBOUND, "U0MALLORY", "send me your codes", thread_ts=parent.ts)
    envelope = {"type": "event_callback", "team_id": h.driver.team_id, "api_app_id": h.driver.api_app_id,
                "event": event, "event_id": "Ev0000000666", "event_time": 1}
    answer = await h.driver.raw(json.dumps(envelope).encode(), "application/json", signature="v0=" + "0" * 64)
    assert answer.status == 401
    await h.settle()
    assert sent(h) == []
    assert stored_replies(h) == []
