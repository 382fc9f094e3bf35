"""Tell the truth at once, over real HTTP (SignalWire simulator, fake Slack enforcing Slack's limits, real bot app).

* A create whose outcome is unknown (5xx, timeout, dropped connection) is explained in the thread immediately —
  long before the grace period ends — and the parent says "Checking with SignalWire…", not "Sending…"; then the
  thread says what reconciliation found (adopted from the logs, or sent once more).
* A valid SMS is never refused because of how it is rendered (1600 characters of ``&<>`` escape past a section).
* An inbound text is always one postable Slack message, however many media items or characters it carries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bridge.model import SendState
from demo.harness import FROM_NUMBER, Harness, running_bridge
from sw_api.simulator import Fault

TO = "+15551234567"
CHANNEL = "C0GENERAL"
INBOUND = "C0SUPPORT"
PHONE = "+15552220199"
LONG_GRACE = {
    # The grace period cannot end during a test: anything the thread says about it was said at once.
    "RECONCILE_GRACE_SECONDS": "3600",
    "SWEEP_INTERVAL_SECONDS": "0.1",
    "SIGNALWIRE_TIMEOUT_SECONDS": "1",
    "INBOUND_CHANNEL": INBOUND,
}


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bridge(tmp_path, env=LONG_GRACE) as harness:
        yield harness


async def until(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not reached: {what}"
        await asyncio.sleep(0.05)


def parent_text(h: Harness) -> str:
    parents = h.slack.messages(CHANNEL)
    return parents[0].text if parents else ""


def thread(h: Harness) -> list[str]:
    parents = h.slack.messages(CHANNEL)
    return [m.text for m in h.slack.thread(CHANNEL, parents[0].ts)] if parents else []


def index_of(texts: list[str], needle: str) -> int:
    return next(i for i, t in enumerate(texts) if needle in t)


# -- 1. an unknown outcome is told at once -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        (Fault(kind="status", status=500, create=False), "SignalWire answered *500*"),
        (Fault(kind="hang", create=False, hang_seconds=3), "did not answer in time"),
        (Fault(kind="reset", create=False), "connection to SignalWire dropped"),
    ],
    ids=["500", "timeout", "reset"],
)
async def test_unknown_outcome_is_told_at_once_then_sent_once_more(h: Harness, fault: Fault, cause: str) -> None:
    h.simulator.add_fault(fault)
    assert (await h.driver.slash_command(f"{TO} are you there")).status == 200
    await until(lambda: any(cause in t for t in thread(h)), "the thread explains the unclear answer")
    notice = next(t for t in thread(h) if cause in t)
    assert "Checking SignalWire's message logs" in notice
    assert "sent once more at <!date^" in notice and "(in 60 min)" in notice, notice
    # Still unknown (the hour-long grace period is far from over), and the parent no longer says "Sending…".
    [sms] = await h.bridge.store.thread_messages(CHANNEL, h.slack.messages(CHANNEL)[0].ts)
    assert sms.state is SendState.UNKNOWN
    assert h.simulator.created_count(TO) == 0
    await until(lambda: "Checking with SignalWire" in parent_text(h), "the parent shows the check")
    assert "Sending" not in parent_text(h)

    # The follow-up: the same bot with a grace period that is over finds nothing in the logs and sends once more.
    h.config = dataclasses.replace(h.config, reconcile_grace=0.5)
    await h.restart_bot()
    await until(lambda: "Delivered" in parent_text(h), "delivered after the re-send")
    await h.settle()
    texts = thread(h)
    assert index_of(texts, cause) < index_of(texts, "sending it once more") < index_of(texts, "Delivered")
    assert h.simulator.created_count(TO) == 1


async def test_created_despite_a_500_is_found_in_the_logs_and_said_so(h: Harness) -> None:
    h.simulator.drop_callbacks = True  # only the logs can settle it
    h.simulator.add_fault(Fault(kind="status", status=503, create=True))
    assert (await h.driver.slash_command(f"{TO} did it go")).status == 200
    await until(lambda: any("Found it" in t for t in thread(h)), "the thread says what the logs showed")
    await h.settle()
    texts = thread(h)
    assert index_of(texts, "SignalWire answered *503*") < index_of(texts, "SignalWire's message logs show it")
    assert not any("once more" in t and "sending" in t for t in texts), texts
    assert h.simulator.created_count(TO) == 1
    counters = await h.bridge.store.counters()
    assert counters.get("reconciled_found") == 1 and counters.get("unknown") == 1
    assert "Checking" not in parent_text(h) and "Sending" not in parent_text(h)


# -- 2. a valid SMS is never refused because of how it is rendered ----------------------------------------------


def blocks_of_parent(h: Harness) -> list[dict[str, object]]:
    return h.slack.messages(CHANNEL)[0].blocks


async def test_1600_characters_of_escapes_are_sent_and_shown_whole(h: Harness) -> None:
    body = ("&<>" * 534)[:1600]
    assert (await h.driver.slash_command(f"{TO} {body}")).status == 200
    await until(lambda: "Delivered" in parent_text(h), "delivered")
    await h.settle()
    [sent] = [m for m in h.simulator.messages.values() if m.to == TO]
    assert sent.body == body
    # The body is split over several sections (the fake Slack refuses any over 3000), and shown whole.
    quoted = [b["text"]["text"] for b in blocks_of_parent(h)[1:] if b["type"] == "section"]  # type: ignore[index]
    assert len(quoted) >= 3 and all(len(t) <= 3000 for t in quoted)
    shown = "".join(t.replace("\n", "").replace(">", "") for t in quoted)
    assert shown.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">") == body
    assert not any("invite the bot" in m.text for m in h.slack.messages(CHANNEL))


# -- 3. an inbound text is always one post Slack accepts ---------------------------------------------------------


async def text_in(h: Harness, body: str | None, media: list[tuple[str, str]], fmt: str = "json") -> int | None:
    delivery = await h.simulator.inject_inbound(
        PHONE, FROM_NUMBER, body, media, url=h.bot_url + "/signalwire/inbound", fmt=fmt,  # type: ignore[arg-type]
    )
    await h.settle()
    return delivery.status


async def test_inbound_with_1000_media_items_is_one_post_with_the_rest_counted(h: Harness) -> None:
    media = [(f"https://media.example/{i}.jpg", "image/jpeg") for i in range(1000)]
    assert await text_in(h, "look at all these", media) == 200
    [parent] = h.slack.messages(INBOUND)
    # The text, then (issue 11) one "not shown here" reply per kept attachment: media.example is no media host.
    assert h.slack.call_count("chat.postMessage") == 1 + 10
    assert len(h.slack.thread(INBOUND, parent.ts)) == 10
    assert "look at all these" in parent.text
    assert "attachment 10 (image/jpeg)" in parent.text and "attachment 11 " not in parent.text
    assert "+990 more attachments not shown" in parent.text
    assert any("+990 more attachments not shown" in b["text"]["text"] for b in parent.blocks)


@pytest.mark.parametrize("char", ["x", "&", "\n"], ids=["letters", "escapes", "newlines"])
async def test_inbound_45000_characters_is_one_post_with_the_rest_counted(h: Harness, char: str) -> None:
    body = "start " + char * 44_988 + " end"
    assert len(body) == 44_998
    assert await text_in(h, body, []) == 200
    [parent] = h.slack.messages(INBOUND)
    assert h.slack.call_count("chat.postMessage") == 1
    assert "start" in parent.text and " end" not in parent.text
    assert f"…({len(body) - 4000} more characters not shown)" in parent.text
    assert 2 <= len(parent.blocks) <= 50
    assert all(len(b["text"]["text"]) <= 3000 for b in parent.blocks)


async def test_inbound_url_too_long_for_a_link_is_shown_cut(h: Harness) -> None:
    url = "https://media.example/" + "a" * 5000 + ".jpg"
    assert await text_in(h, None, [(url, "image/jpeg")], fmt="form") == 200
    [parent] = h.slack.messages(INBOUND)
    assert "📎 attachment 1 (image/jpeg): https://media.example/aaa" in parent.text
    assert url not in parent.text and "…" in parent.text
