"""Slack calls per SMS, over real HTTP (the real bot app, the simulator, fake Slack): receipts received close together
are one thread reply and one parent update, a duplicate callback costs nothing, a failure is one reply with its
timeline and Retry, statuses further apart than ``RECEIPT_COALESCE_SECONDS`` are separate replies, and a burst of
sends into one channel stays within ``SLACK_CHANNEL_POSTS_PER_SECOND`` / ``SLACK_CHANNEL_POST_BURST``.

Counts and order only: the pacing test checks the recorded post times against the bucket's own rule (posts can only
come later than allowed, never earlier, so a slow machine cannot make it fail).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

from demo.fake_slack import SlackMessage
from demo.harness import Harness, running_bridge
from sw_api.models import MessageStatus, StatusEvent
from sw_api.simulator import Outcome
from sw_api.webhooks import sign_json
from tests.faults.procs import receipts_in

CHANNEL = "C0GENERAL"
TO = "+15551234567"
# Wide enough that the simulator's three callbacks always land inside it, however loaded the machine.
WIDE = {"RECEIPT_COALESCE_SECONDS": "5"}
QUEUED_SENT_DELIVERED = [MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED]


def calls_since(h: Harness, start: int) -> Counter[str]:
    # auth.test is Bolt checking its token, once per process, not a cost of any SMS.
    return Counter(c.method for c in h.slack.calls[start:] if c.method != "auth.test")


def thread(h: Harness, parent: SlackMessage) -> list[SlackMessage]:
    return h.slack.thread(CHANNEL, parent.ts)


async def callback(h: Harness, status: MessageStatus) -> int:
    [sms] = h.simulator.messages.values()
    assert sms.status_callback is not None
    event = StatusEvent(id=sms.id, status=status, to=sms.to, from_=sms.from_, timestamp=None).to_json()
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json",
               "X-SignalWire-Signature": sign_json(h.config.signalwire_signing_key, sms.status_callback, body)}
    async with h.session.post(sms.status_callback, data=body, headers=headers) as resp:
        return resp.status


def blocks_text(blocks: list[dict[str, Any]] | None) -> str:
    return json.dumps(blocks or [], ensure_ascii=False)


async def test_an_isolated_sms_is_at_most_four_slack_calls_and_one_reply_telling_every_status(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, env=WIDE) as h:
        start = len(h.slack.calls)
        await h.driver.slash_command(f"{TO} Running 10 min late")
        await h.settle(timeout=30)
        [parent] = h.slack.messages(CHANNEL)
        assert "Delivered" in parent.text
        [reply] = thread(h, parent)
        assert receipts_in([reply.text]) == QUEUED_SENT_DELIVERED
        assert reply.text.startswith("✅ Delivered · queued <!date^"), reply.text
        assert "{time_secs}|" in reply.text and " UTC>" in reply.text
        # The parent post, the one receipt reply, and one repaint at once plus one more behind the waiting receipt
        # (just one when the later statuses beat the first): at most 5, as issue 10 asks.
        calls = calls_since(h, start)
        assert calls["chat.postMessage"] == 2 and 1 <= calls["chat.update"] <= 2, calls
        assert sum(calls.values()) == calls["chat.postMessage"] + calls["chat.update"] <= 4, calls

        # A duplicate callback (SignalWire retries) is answered and costs no Slack call at all.
        before = len(h.slack.calls)
        assert await callback(h, MessageStatus.DELIVERED) == 204
        await h.settle(timeout=30)
        assert len(h.slack.calls) == before
        assert [m.text for m in thread(h, parent)] == [reply.text]


async def test_a_failure_is_one_reply_with_the_timeline_the_explanation_and_retry(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, env=WIDE) as h:
        h.simulator.script(TO, Outcome(MessageStatus.UNDELIVERED, "30003", "Unreachable destination handset"))
        await h.driver.slash_command(f"{TO} are you there?")
        await h.settle(timeout=30)
        [parent] = h.slack.messages(CHANNEL)
        assert "Undelivered" in parent.text
        [reply] = thread(h, parent)
        assert receipts_in([reply.text]) == [MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.UNDELIVERED]
        shown = blocks_text(reply.blocks)
        assert "30003" in shown and "Unreachable destination handset" in shown and "unreachable" in shown
        assert "sms_retry" in shown
        assert "queued <!date^" in shown and "undelivered <!date^" in shown, "the timeline is in the blocks too"


async def test_statuses_further_apart_than_the_window_are_separate_replies(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, env={"RECEIPT_COALESCE_SECONDS": "0.3"}) as h:
        h.simulator.script(TO, Outcome(MessageStatus.SENT))  # the carrier sends no receipt of its own
        start = len(h.slack.calls)
        await h.driver.slash_command(f"{TO} hello")
        await h.settle(timeout=30)
        [parent] = h.slack.messages(CHANNEL)
        first = [m.text for m in thread(h, parent)]
        assert receipts_in(first) == [MessageStatus.QUEUED, MessageStatus.SENT]
        # The receipt is posted (settle waited for it): a later status starts a reply of its own.
        assert await callback(h, MessageStatus.DELIVERED) == 204
        await h.settle(timeout=30)
        texts = [m.text for m in thread(h, parent)]
        assert texts[:-1] == first and texts[-1].startswith("✅ Delivered · delivered <!date^"), texts
        assert receipts_in(texts) == QUEUED_SENT_DELIVERED
        assert "Delivered" in h.slack.messages(CHANNEL)[0].text
        calls = calls_since(h, start)
        assert calls["chat.postMessage"] == 1 + len(texts)


async def test_a_burst_of_sends_into_one_channel_stays_within_the_posting_rate(tmp_path: Path) -> None:
    rate, burst, sends = 4.0, 2, 16
    env = {"SLACK_CHANNEL_POSTS_PER_SECOND": str(rate), "SLACK_CHANNEL_POST_BURST": str(burst),
           "RECEIPT_COALESCE_SECONDS": "0.2"}
    async with running_bridge(tmp_path, env=env) as h:
        start = len(h.slack.calls)
        responses = await asyncio.gather(*(h.driver.slash_command(f"{TO} burst {n}") for n in range(sends)))
        assert all(r.status == 200 for r in responses)
        await h.settle(timeout=90)
        parents = h.slack.messages(CHANNEL)
        assert len(parents) == sends and all("Delivered" in p.text for p in parents)
        for parent in parents:
            # However the pacing grouped them, each status is told once, in order.
            assert receipts_in([m.text for m in thread(h, parent)]) == QUEUED_SENT_DELIVERED
        posts = [c.at for c in h.slack.calls[start:] if c.method == "chat.postMessage" and c.status == 200]
        assert len(posts) >= 2 * sends
        # The token bucket's rule on what Slack received: never more than burst + rate × span posts in a span.
        # One post of slack: a parent posted at once takes its token just before its request, so two requests
        # in flight together can reach Slack a few milliseconds closer than their tokens were.
        worst = max(j - i + 1 - rate * (posts[j] - posts[i]) for i in range(len(posts)) for j in range(i, len(posts)))
        assert worst <= burst + 1, f"{worst:.2f} posts beyond the rate in some span (burst {burst})"
