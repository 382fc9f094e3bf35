"""Inbound texts are stored (with their STOP/START) before SignalWire is answered and reach Slack through the
durable outbox, over real HTTP: dead threads, Slack outages, texts that follow a parent still on its way, no
inbound channel, duplicates."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from demo.fake_slack import SlackMessage
from demo.harness import FROM_NUMBER, Harness, running_bridge
from sw_api.simulator import InboundDelivery
from sw_api.webhooks import SWML_RECEIVE

INBOUND = "C0INBOUND"
PHONE = "+15551234567"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bridge(tmp_path, env={"INBOUND_CHANNEL": INBOUND}) as harness:
        yield harness


async def text_in(h: Harness, body: str | None, *, message_id: str | None = None, settle: bool = True
                  ) -> InboundDelivery:
    delivery = await h.simulator.inject_inbound(PHONE, FROM_NUMBER, body, url=h.bot_url + "/signalwire/inbound",
                                                message_id=message_id)
    if settle:
        await h.settle()
    return delivery


def texts(h: Harness, parent: SlackMessage) -> list[str]:
    return [m.text for m in h.slack.thread(INBOUND, parent.ts)]


async def delete(h: Harness, message: SlackMessage) -> None:
    async with h.session.post(f"{h.slack_url}/api/chat.delete", data={"channel": message.channel, "ts": message.ts},
                              headers={"Authorization": "Bearer xoxb-fake"}) as resp:
        assert (await resp.json())["ok"]


async def test_a_deleted_thread_gets_a_new_parent_that_later_texts_follow(h: Harness) -> None:
    await text_in(h, "first")
    [old] = h.slack.messages(INBOUND)
    await delete(h, old)
    await text_in(h, "after the delete")
    [new] = h.slack.messages(INBOUND)
    assert "New conversation" in new.text and "after the delete" in new.text
    await text_in(h, "and then")
    assert any("and then" in t for t in texts(h, new))
    assert "incoming_envelope" in new.reactions
    assert len(h.slack.messages(INBOUND)) == 1


async def test_texts_sent_while_slack_is_down_share_one_new_thread_in_order(h: Harness) -> None:
    h.slack.outage(1.5)
    for body in ("one", "two", "STOP"):
        delivery = await text_in(h, body, settle=False)
        assert delivery.status == 200 and json.loads(delivery.text) == SWML_RECEIVE
    await h.driver.slash_command(f"{PHONE} promo")  # refused at once: the STOP is already recorded
    await h.settle(timeout=20)
    [parent] = h.slack.messages(INBOUND)
    assert "one" in parent.text
    thread = texts(h, parent)
    assert [i for i, t in enumerate(thread) if "two" in t or "opted out" in t or "STOP" in t] == [0, 1, 2, 3], thread
    assert "Auto-reply" in thread[3], "the STOP confirmation (issue 11) follows, in the same thread"
    # The promo was refused; only the STOP confirmation went out, at once, although Slack was down.
    outbound = [m.body or "" for m in h.simulator.messages.values() if m.direction == "outbound"]
    assert len(outbound) == 1 and "You are unsubscribed" in outbound[0]


async def test_duplicate_deliveries_post_once_even_before_the_first_is_posted(h: Harness) -> None:
    h.slack.outage(1.0)
    first = await text_in(h, "once", message_id="dup-x", settle=False)
    second = await text_in(h, "once", message_id="dup-x", settle=False)
    assert first.status == second.status == 200
    await h.settle(timeout=20)
    assert len(h.slack.messages(INBOUND)) == 1
    assert len([c for c in h.slack.calls if c.method == "chat.postMessage" and c.status == 200]) == 1


async def test_without_an_inbound_channel_a_stop_is_still_kept(tmp_path: Path) -> None:
    async with running_bridge(tmp_path) as h:
        delivery = await text_in(h, "STOP")
        # Stored and acknowledged: a 503 would only make SignalWire repeat a text nobody can post.
        assert delivery.status == 200
        assert not h.slack.called("chat.postMessage")
        answer = await h.driver.slash_command(f"{PHONE} hello?")
        assert "opted out" in answer.body
