"""Three real ``bot.py`` replicas on one PostgreSQL database behind a round-robin front: Slack requests, status
callbacks and inbound webhooks are spread across them while replicas are SIGKILLed, restarted and rolled.

Invariants, read from what people see (the simulator's texts, the fake Slack's channels): every acknowledged send
ends in exactly one SMS or one clear refusal (an unacknowledged one in at most one SMS); every receipt reaches its
thread once and in order; every inbound text is posted once; nothing is left claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from demo.harness import FROM_NUMBER
from demo.slack_driver import DriverResponse
from sw_api.models import MessageStatus, StatusEvent
from sw_api.simulator import SimMessage
from sw_api.webhooks import SIGNATURE_HEADER, sign_json
from tests.faults.dbtools import assert_nothing_claimed
from tests.faults.kill_points import kill_on
from tests.faults.procs import (
    CHANNEL,
    RECEIPT_LABELS,
    World,
    assert_receipts_once,
    parent_for,
    receipts_in,
    sms_to,
    thread_texts,
)

INBOUND = "C0INBOUND"
REPLICAS = 3
# A reply or send left by a dead replica is picked up this soon by another one.
# Traffic is one user's: no per-user rate limit in the way.
ENV = {"INBOUND_CHANNEL": INBOUND, "REPLY_RESUME_SECONDS": "2", "SMS_RATE_LIMIT_PER_USER": "1000"}


@pytest.fixture
def engine() -> str:
    """Several replicas share one database: PostgreSQL only."""
    return "postgresql"


@dataclass
class Send:
    """One ``/sms`` a user typed, and what the front answered (None: still in flight)."""

    to: str
    body: str
    answer: DriverResponse | None = None
    error: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.answer is not None and self.answer.status == 200

    @property
    def refused(self) -> bool:
        return self.answer is not None and "not sent" in self.answer.body.lower()


async def send(world: World, item: Send) -> None:
    try:
        item.answer = await world.driver.slash_command(f"{item.to} {item.body}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        item.error = f"{type(exc).__name__}: {exc}"


def _parents_about(world: World, body: str) -> list[Any]:
    return [m for m in world.slack.messages(CHANNEL) if body in m.text]


def finished(world: World, item: Send) -> bool:
    """The send reached an end a person can see: delivered in its thread, or refused / failed, or nothing."""
    if item.answer is None and item.error is None:
        return False
    texts = sms_to(world, item.to, item.body)
    parents = _parents_about(world, item.body)
    if not texts:
        # Refused (in the ack or the thread), or never acknowledged and never stored: nothing is on its way.
        return item.refused or not item.acknowledged or any("not sent" in p.text.lower() for p in parents)
    return len(parents) == 1 and RECEIPT_LABELS[texts[0].status] in parents[0].text and texts[0].status.is_final


def describe(world: World, item: Send) -> str:
    texts = sms_to(world, item.to, item.body)
    parents = _parents_about(world, item.body)
    ack = f"{item.answer.status} {item.answer.body[:80]!r}" if item.answer else item.error or "in flight"
    return (f"{item.body!r}: ack {ack}; sms {[t.status.value for t in texts]}; "
            f"parents {[p.text[:80] for p in parents]}")


async def wait_finished(world: World, sends: list[Send], timeout: float) -> None:
    try:
        await world.wait_for(lambda: all(finished(world, s) for s in sends), timeout=timeout,
                             what="every send finished (delivered, refused or never taken)")
    except AssertionError as exc:
        left = [describe(world, s) for s in sends if not finished(world, s)]
        raise AssertionError(f"{len(left)} send(s) unfinished:\n" + "\n".join(left) + f"\n{exc}") from None


def check_send(world: World, item: Send) -> None:
    texts = sms_to(world, item.to, item.body)
    parents = _parents_about(world, item.body)
    where = f"{item.body!r} (ack {item.answer.status if item.answer else item.error}: " \
            f"{item.answer.body[:120] if item.answer else ''!r})"
    assert len(texts) <= 1, f"{where}: {len(texts)} SMS"
    if item.acknowledged and not item.refused:
        refused_in_thread = any("not sent" in p.text.lower() for p in parents)
        assert len(texts) == 1 or refused_in_thread, f"{where}: acknowledged, no SMS and no refusal: " \
                                                     f"{[p.text for p in parents]}"
    if item.refused:
        assert not texts, f"{where}: refused in the ack, but texted"
    if texts:
        assert len(parents) == 1, f"{where}: {len(parents)} parents for one SMS: {[p.text for p in parents]}"
        assert_receipts_once(world, texts[0], parents[0])


def spread(world: World, path_prefix: str) -> set[int]:
    """The replicas that answered requests under ``path_prefix``."""
    assert world.front is not None
    return {r.replica for r in world.front.routed if r.path.startswith(path_prefix) and r.replica is not None
            and r.status < 500}


async def text_in(world: World, phone: str, body: str, message_id: str, attempts: int = 6) -> None:
    """Someone texts the bridge; SignalWire redelivers (same id) until it gets a 2xx, as it does."""
    for attempt in range(attempts):
        delivery = await world.simulator.inject_inbound(phone, FROM_NUMBER, body,
                                                        url=world.bot_url + "/signalwire/inbound",
                                                        message_id=message_id)
        if delivery.status is not None and 200 <= delivery.status < 300:
            return
        await asyncio.sleep(0.3 * (attempt + 1))
    raise AssertionError(f"inbound {message_id} never accepted: {delivery}")


def posted(world: World, body: str) -> int:
    top = world.slack.messages(INBOUND)
    texts = [m.text for m in top] + [r.text for m in top for r in world.slack.thread(INBOUND, m.ts)]
    return sum(body in t for t in texts)


# ----- 50 sends, one replica SIGKILLed and restarted ----------------------------------------------------------

async def kill_mid_request(world: World, replica: int) -> None:
    """SIGKILL ``replica`` while it is handling a request, if one reaches it within a second."""
    assert world.front is not None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(1.0):
            await world.front.busy(replica).wait()
    await world.bots[replica].kill()


@pytest.mark.slow
async def test_fifty_sends_while_a_replica_is_killed_and_restarted(make_world: Any) -> None:
    async with asyncio.timeout(130), make_world(step_delay=0.2, env=ENV, replicas=REPLICAS) as world:
        sends = [Send(f"+15550{100 + i % 10}001", f"kill-run {i:02d}") for i in range(50)]
        async with asyncio.TaskGroup() as group:
            for i, item in enumerate(sends):
                group.create_task(send(world, item))
                await asyncio.sleep(0.04)
                if i == 15:
                    await kill_mid_request(world, 1)
                if i == 30:
                    group.create_task(world.bots[1].start())
        await wait_finished(world, sends, 60)
        await world.quiet(1.0, timeout=30)
        for item in sends:
            check_send(world, item)
        acknowledged = [s for s in sends if s.acknowledged]
        assert len(acknowledged) >= 40, [(s.body, s.answer.status if s.answer else s.error) for s in sends]
        assert len(spread(world, "/slack")) == REPLICAS, "the front did not spread the sends"
        assert len(spread(world, "/signalwire")) >= 2, "the callbacks were not spread"
        assert all(b.running for b in world.bots), "a replica exited"
        await assert_nothing_claimed(world)


# ----- rolling restart under traffic ----------------------------------------------------------------------------

@pytest.mark.slow
async def test_a_rolling_restart_under_traffic_loses_and_doubles_nothing(make_world: Any) -> None:
    async with asyncio.timeout(130), make_world(step_delay=0.2, env=ENV, replicas=REPLICAS) as world:
        sends: list[Send] = []
        inbound: list[str] = []
        stop = asyncio.Event()

        async def outbound_traffic() -> None:
            async with asyncio.TaskGroup() as group:
                while not stop.is_set():
                    item = Send(f"+15550{200 + len(sends) % 5}001", f"rolling {len(sends):03d}")
                    sends.append(item)
                    group.create_task(send(world, item))
                    await asyncio.sleep(0.15)

        async def inbound_traffic(phone: str) -> None:
            n = 0
            while not stop.is_set():
                body = f"in {phone[-4:]} #{n:03d}."  # never a prefix of another one
                inbound.append(body)
                # One phone's texts arrive one after another, as a person types them.
                await text_in(world, phone, body, f"in-{phone[-4:]}-{n}")
                n += 1
                await asyncio.sleep(0.2)

        codes: list[int] = []

        async def roll() -> None:
            await asyncio.sleep(1.0)
            for bot in world.bots:
                # The bot's own bound: requests in flight get 10 s, then each drain step its own cap.
                codes.append(await bot.terminate(timeout=45))
                await bot.start()
                await asyncio.sleep(0.5)
            stop.set()

        async with asyncio.TaskGroup() as group:
            group.create_task(outbound_traffic())
            group.create_task(inbound_traffic("+15550300001"))
            group.create_task(inbound_traffic("+15550300002"))
            group.create_task(roll())
        assert codes == [0] * REPLICAS, f"SIGTERM exit codes {codes}"
        await wait_finished(world, sends, 60)
        await world.wait_for(lambda: all(posted(world, b) >= 1 for b in inbound), timeout=30,
                             what="every inbound text posted")
        await world.quiet(1.0, timeout=30)
        for item in sends:
            check_send(world, item)
        doubled = {b: posted(world, b) for b in inbound if posted(world, b) != 1}
        assert not doubled, f"inbound texts posted other than once: {doubled}\n{world.slack.transcript(INBOUND)}"
        assert len(world.slack.messages(INBOUND)) == 2, "one conversation per phone"
        assert sum(s.acknowledged for s in sends) >= len(sends) - REPLICAS, \
            [(s.body, s.answer.status if s.answer else s.error) for s in sends if not s.acknowledged]
        await assert_nothing_claimed(world)


# ----- a Slack event retry on another replica -------------------------------------------------------------------

async def conversation(world: World, phone: str) -> Any:
    await text_in(world, phone, "hello?", f"hello-{phone[-4:]}")
    await world.wait_for(lambda: len(world.slack.messages(INBOUND)) == 1, what="the conversation's parent")
    return world.slack.messages(INBOUND)[0]


@pytest.mark.slow
@pytest.mark.parametrize("first_dies", [False, True], ids=["first-still-working", "first-killed"])
async def test_a_slack_event_retry_on_another_replica_texts_the_reply_once(make_world: Any, first_dies: bool) -> None:
    async with asyncio.timeout(90), make_world(env=ENV, replicas=REPLICAS) as world:
        phone = "+15550400001"
        parent = await conversation(world, phone)
        if first_dies:
            # Replica 0 acknowledges the event and dies resolving the mention, before the SMS.
            switch = kill_on(world, lambda method, _payload: method == "users.info")
            switch.arm(1, after=False)
        else:
            # Replica 0 is still waiting on SignalWire when Slack's retry reaches replica 1.
            world.simulator.latency = 1.5
        event = world.slack.post_user_message(INBOUND, "U0ALICE", "<@U0BOB> on it", thread_ts=parent.ts)
        first = await world.driver_for(0).event(event, event_id="Ev0000000901")
        assert first.status == 200, first.body
        for n, replica in ((1, 1), (2, 2)):
            retry = await world.driver_for(replica).event(event, retry_num=n, event_id="Ev0000000901")
            assert retry.status == 200, (replica, retry.status, retry.body)
        world.simulator.latency = 0.0
        await world.wait_for(lambda: len(sms_to(world, phone, "@bob on it")) == 1, timeout=30,
                             what="the reply texted")
        await world.quiet(1.5)
        assert len(sms_to(world, phone, "@bob on it")) == 1
        assert not [m.text for m in world.slack.thread(INBOUND, parent.ts) if "not texted" in m.text]
        if first_dies:
            assert not world.bots[0].running
            await world.bots[0].start()
        await world.quiet(1.0)
        assert len(sms_to(world, phone, "@bob on it")) == 1
        await assert_nothing_claimed(world)


# ----- the same status callback on two replicas at once ---------------------------------------------------------

async def deliver_to(world: World, replica: int, sms: SimMessage, status: MessageStatus) -> int | None:
    """Play SignalWire: one signed status callback for ``sms`` (signed for the public URL) straight to a replica."""
    assert sms.status_callback is not None
    event = StatusEvent(id=sms.id, status=status, to=sms.to, from_=sms.from_, timestamp=datetime.now(UTC),
                        project_id=world.simulator.config.project_id, body=sms.body,
                        number_of_segments=sms.segments)
    body = json.dumps(event.to_json()).encode()
    headers = {"Content-Type": "application/json",
               SIGNATURE_HEADER: sign_json(world.simulator.config.signing_key, sms.status_callback, body)}
    parts = urlsplit(sms.status_callback)
    url = world.bots[replica].url + parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        async with world.session.post(url, data=body, headers=headers,
                                      timeout=aiohttp.ClientTimeout(total=10)) as resp:
            await resp.read()
            return resp.status
    except (aiohttp.ClientError, TimeoutError):
        return None


async def deliver_twice_until_taken(world: World, sms: SimMessage, status: MessageStatus) -> None:
    """The same callback to replicas 0 and 1 at the same moment; what is not 2xx SignalWire sends again."""
    for attempt in range(5):
        answers = await asyncio.gather(deliver_to(world, 0, sms, status), deliver_to(world, 1, sms, status))
        if any(a is not None and 200 <= a < 300 for a in answers):
            return
        await asyncio.sleep(0.3 * (attempt + 1))
    raise AssertionError(f"callback {status.value} for {sms.id} never taken")


@pytest.mark.slow
async def test_the_same_status_callback_on_two_replicas_at_once_is_told_once(make_world: Any) -> None:
    async with asyncio.timeout(90), make_world(env=ENV, replicas=REPLICAS) as world:
        world.simulator.drop_callbacks = True  # the test plays SignalWire's callbacks itself
        bodies = [f"twice {i}" for i in range(6)]
        to = "+15550500001"
        for body in bodies:
            answer = await world.driver.slash_command(f"{to} {body}")
            assert answer.status == 200 and "not sent" not in answer.body.lower(), answer.body
        await world.wait_for(lambda: all(len(sms_to(world, to, b)) == 1 for b in bodies), what="all created")
        await world.wait_for(lambda: all(len(_parents_about(world, b)) == 1 for b in bodies), what="parents")
        for body in bodies:
            sms = sms_to(world, to, body)[0]
            for status in (MessageStatus.SENT, MessageStatus.DELIVERED):
                await deliver_twice_until_taken(world, sms, status)
        await world.wait_for(
            lambda: all(RECEIPT_LABELS[MessageStatus.DELIVERED] in parent_for(world, b).text for b in bodies),
            timeout=20, what="every parent delivered")
        await world.quiet(1.0)
        for body in bodies:
            texts = thread_texts(world, parent_for(world, body))
            shown = receipts_in(texts)
            assert len(shown) == len(set(shown)), f"{body}: a receipt told twice: {texts}"
            assert shown == sorted(shown, key=lambda s: s.rank), f"{body}: out of order: {texts}"
            assert MessageStatus.DELIVERED in shown, texts
        await assert_nothing_claimed(world)
