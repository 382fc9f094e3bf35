"""Durable sending over real HTTP: unknown outcomes reconciled through the logs, 429 back-off, missing receipts.

The invariant in every test: exactly one SMS per acknowledged request, and the thread ends telling the truth.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.model import SendState
from bridge.ports import utcnow
from demo.harness import Harness, running_bridge
from sw_api.models import MessageStatus
from sw_api.simulator import Fault
from tests.faults.procs import receipts_in

TO = "+15551234567"
CHANNEL = "C0GENERAL"
FAST = {
    "RECONCILE_GRACE_SECONDS": "1",
    "SWEEP_INTERVAL_SECONDS": "0.1",
    "SIGNALWIRE_TIMEOUT_SECONDS": "1",
    "STUCK_AFTER_SECONDS": "1",
}


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bridge(tmp_path, env=FAST) as harness:
        yield harness


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def parent_text(h: Harness) -> str:
    parents = h.slack.messages(CHANNEL)
    return parents[0].text if parents else ""


def thread(h: Harness) -> list[str]:
    [parent] = h.slack.messages(CHANNEL)
    return [m.text for m in h.slack.thread(CHANNEL, parent.ts)]


async def send_and_wait_delivered(h: Harness, text: str) -> None:
    response = await h.driver.slash_command(f"{TO} {text}")
    assert response.status == 200
    await until(lambda: "Delivered" in parent_text(h))
    await h.settle()


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="status", status=500, create=True),
        Fault(kind="hang", create=True, hang_seconds=3),
        Fault(kind="reset", create=True),
    ],
    ids=["5xx-after-create", "timeout-after-accept", "reset-after-create"],
)
async def test_created_despite_an_unclear_answer_is_never_sent_twice(h: Harness, fault: Fault) -> None:
    h.simulator.add_fault(fault)
    await send_and_wait_delivered(h, "one and only")
    assert h.simulator.created_count(TO) == 1
    texts = thread(h)
    assert texts.count(next(t for t in texts if "Delivered" in t)) == 1
    resolved: dict[str, int] = {}

    async def counted() -> bool:
        resolved.update(await h.bridge.store.counters())
        return resolved.get("reconciled_found", 0) + resolved.get("reconciled_by_callback", 0) == 1

    deadline = time.monotonic() + 10
    while not await counted():
        assert time.monotonic() < deadline, resolved
        await asyncio.sleep(0.05)
    await h.settle()
    assert h.simulator.created_count(TO) == 1


async def test_not_created_is_sent_once_more_after_the_grace_period(h: Harness) -> None:
    h.simulator.add_fault(Fault(kind="status", status=503, create=False))
    await send_and_wait_delivered(h, "second time lucky")
    assert h.simulator.created_count(TO) == 1
    counters = await h.bridge.store.counters()
    assert counters.get("reconciled_resent") == 1
    assert any("sending it once more" in t for t in thread(h))


async def test_rate_limited_message_waits_and_is_sent_once(h: Harness) -> None:
    # More 429s than the client retries on its own: the message goes back to pending and the sweeper resends.
    h.simulator.add_fault(Fault(kind="status", status=429, retry_after=0.2, count=6))
    await send_and_wait_delivered(h, "patience")
    assert h.simulator.created_count(TO) == 1
    assert (await h.bridge.store.counters()).get("rate_limited", 0) >= 1


async def test_early_callbacks_are_kept_and_posted_once(h: Harness) -> None:
    # SignalWire answers the create slower than it sends the first callbacks.
    h.simulator.latency = 0.3
    await send_and_wait_delivered(h, "fast callbacks")
    texts = thread(h)
    assert len(texts) == len(set(texts)), texts
    assert receipts_in(texts) == [MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED], texts
    assert h.simulator.created_count(TO) == 1


async def test_missing_receipt_is_looked_up_in_the_logs(h: Harness) -> None:
    h.simulator.drop_callbacks = True
    await h.driver.slash_command(f"{TO} nobody calls back")
    await until(lambda: "Delivered" in parent_text(h))
    await h.settle()
    assert (await h.bridge.store.counters()).get("receipts_from_logs") == 1
    assert any("Delivered" in t for t in thread(h))


async def test_mms_without_receipt_says_none_is_available(h: Harness) -> None:
    h.simulator.drop_callbacks = True
    await h.driver.slash_command("")
    await h.settle()  # the form opens after the ack
    [view] = h.slack.views.values()
    await h.driver.view_submission(view, {
        "to": {"to": {"type": "plain_text_input", "value": TO}},
        "body": {"body": {"type": "plain_text_input", "value": "picture"}},
        "channel": {"channel": {"type": "conversations_select", "selected_conversation": CHANNEL}},
        "media": {"media": {"type": "plain_text_input", "value": "https://example.com/a.jpg"}},
    })
    await until(lambda: any("No delivery receipt is available for MMS" in t for t in _safe_thread(h)))


def _safe_thread(h: Harness) -> list[str]:
    return thread(h) if h.slack.messages(CHANNEL) else []


async def test_pending_work_survives_a_restart(h: Harness) -> None:
    # A long 429 (beyond the client's own retry budget) keeps the message pending; the bot restarts; the new
    # process sends it, once. The number's shared pace (issue 13) honours the Retry-After across the restart too, so
    # the wait is the shortest that still outlasts the client's budget of 15 s.
    h.simulator.add_fault(Fault(kind="status", status=429, retry_after=16))
    await h.driver.slash_command(f"{TO} after the restart")
    await until(lambda: any("slow down" in t for t in _safe_thread(h)))
    await h.restart_bot()
    [pending] = await h.bridge.store.due([SendState.PENDING], utcnow() + timedelta(minutes=5))
    await h.bridge.store.schedule(pending.ref, utcnow(), utcnow())  # due now rather than in 16 s
    await until(lambda: "Delivered" in parent_text(h), timeout=30)
    assert h.simulator.created_count(TO) == 1
