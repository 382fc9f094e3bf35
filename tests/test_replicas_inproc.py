"""Two replicas in one process: two ``Bridge`` instances (own store connection, own outbox, own owner id) on one
database — SQLite and PostgreSQL through ``database_url`` — with the SignalWire simulator and the fake Slack on
loopback. Status callbacks reach a router that hands every one to BOTH replicas at once (a redelivery landing
on the other replica), so dedup and receipt order are exercised across them.

What must hold: one SMS per message whichever replicas process it; one thread's outbox items never delivered by
two replicas at the same time and always in order; a restarted replica never steals a live claim; a dead
replica's claims are taken over once they run out; receipts stay in rank order; one conversation per pair.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.model import SendRequest, SendState
from bridge.outbox import ParentView, SlackOutbox
from bridge.ports import SlackPort, utcnow
from bridge.recovery import Recovery
from bridge.service import Bridge, CallbackRefused, CallbackTokens, SendSettings
from bridge.storage.engines import open_store
from bridge.storage.port import Store
from bridge.two_way import TwoWay
from demo.fake_slack import FakeSlack
from demo.fake_slack import create_app as create_fake_slack_app
from handlers.slack_out import SlackOut, make_web_client
from sw_api.client import SignalWireClient
from sw_api.models import InboundMessage, MessageStatus
from sw_api.simulator import Simulator, SimulatorConfig
from sw_api.simulator import create_app as create_simulator_app
from sw_api.webhooks import parse_status_callback
from tests.faults.procs import receipts_in

CHANNEL = "C0GENERAL"
INBOUND = "C0INBOUND"
TO = "+15551234567"
FROM = "+15557770000"


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


class Timed:
    """A SlackPort that logs when each post starts and ends (shared by both replicas), and may hold posts."""

    def __init__(self, inner: SlackPort, log: list[tuple[float, float, str]], *, hold: float = 0.0) -> None:
        self.inner = inner
        self.log = log
        self.hold = hold
        self.gate = asyncio.Event()
        self.gate.set()
        self.started = 0

    async def post(self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None,
                   thread_ts: str | None = None, *, key: str | None = None) -> str:
        start = time.monotonic()
        self.started += 1
        await self.gate.wait()
        await asyncio.sleep(self.hold)
        ts = await self.inner.post(channel, text, blocks, thread_ts, key=key)
        self.log.append((start, time.monotonic(), text))
        return ts

    async def find_posted(self, channel: str, key: str, thread_ts: str | None = None) -> str | None:
        found: str | None = await self.inner.find_posted(channel, key, thread_ts)  # type: ignore[attr-defined]
        return found

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        await self.inner.update(channel, ts, text, blocks)

    async def react(self, channel: str, ts: str, name: str, *, add: bool = True) -> None:
        await self.inner.react(channel, ts, name, add=add)

    async def upload(self, channel: str, thread_ts: str | None, filename: str, content: bytes, *, title: str,
                     comment: str) -> None:
        raise AssertionError("no uploads here")

    async def direct(self, user: str, text: str) -> None:
        await self.inner.direct(user, text)


@dataclass
class Cluster:
    sim: Simulator
    fake: FakeSlack
    slack_url: str
    database_url: str
    session: aiohttp.ClientSession
    router_url: str = ""
    bridges: list[Bridge] = field(default_factory=list)
    stores: list[Store] = field(default_factory=list)
    outboxes: list[SlackOutbox] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)

    def slack_port(self) -> SlackOut:
        return SlackOut(make_web_client("xoxb-fake", f"{self.slack_url}/api/"))

    async def store(self) -> Store:
        store = await open_store(self.database_url)
        self.stores.append(store)
        return store

    async def bridge(self, *, lease: float = 30.0) -> Bridge:
        store = await self.store()
        signalwire = SignalWireClient(self.session, space=self.sim_url, project_id=self.sim.config.project_id,
                                      api_token=self.sim.config.api_token)
        bridge = Bridge(
            store=store, signalwire=signalwire, slack=self.slack_port(),
            tokens=CallbackTokens(await store.secret("callback"), self.router_url),
            settings=SendSettings(reconcile_first_check=0.5, reconcile_grace=1.0, sweep_interval=0.1,
                                  message_lease=lease),
            # Receipts wait a little, so statuses recorded by either replica are appended to a waiting one.
            outbox_options={"base_delay": 0.05, "poll_interval": 0.1, "receipt_window": 0.3},
        )
        self.bridges.append(bridge)
        self.outboxes.append(bridge.outbox)
        bridge.outbox.start()
        return bridge

    async def outbox(self, slack: SlackPort, *, lease: float = 30.0, owner: str | None = None) -> SlackOutbox:
        store = await self.store()

        async def render(ref: str) -> ParentView | None:
            return None

        async def posted(ref: str, ts: str) -> None:
            return None

        outbox = SlackOutbox(store, slack, render_parent=render, on_parent_posted=posted, base_delay=0.05,
                             poll_interval=0.1, lease=lease, owner=owner)
        self.outboxes.append(outbox)
        return outbox

    sim_url: str = ""

    async def settle(self) -> None:
        await self.sim.settle(timeout=10.0)
        for bridge in self.bridges:
            await bridge.drain(timeout=10.0)
        for outbox in self.outboxes:
            assert await outbox.flush(10.0)


@pytest.fixture
async def cluster(database_url: str) -> AsyncIterator[Cluster]:
    sim = Simulator(SimulatorConfig(step_delay=0.02))
    sim_runner, sim_url = await _serve(create_simulator_app(sim))
    fake = FakeSlack(bot_token="xoxb-fake")
    slack_runner, slack_url = await _serve(create_fake_slack_app(fake))
    fake.base_url = slack_url
    async with aiohttp.ClientSession() as session:
        world = Cluster(sim=sim, fake=fake, slack_url=slack_url, database_url=database_url, session=session,
                        sim_url=sim_url)

        async def status(request: web.Request) -> web.Response:
            # Every callback lands on both replicas at once: one records it, the other sees a duplicate.
            event = parse_status_callback(await request.read())
            ref, token = request.query.get("ref", ""), request.query.get("t", "")
            results = await asyncio.gather(*(b.apply_status(ref, token, event) for b in world.bridges),
                                           return_exceptions=True)
            for result in results:
                if isinstance(result, CallbackRefused):
                    world.refused.append(result.status)
                elif isinstance(result, BaseException):
                    raise result
            return web.Response(status=204)

        router = web.Application()
        router.router.add_post("/signalwire/status", status)
        router_runner, world.router_url = await _serve(router)
        try:
            yield world
        finally:
            for outbox in world.outboxes:
                await outbox.stop(flush_timeout=0)
            for bridge in world.bridges:
                await bridge.drain(timeout=2.0)
            for store in world.stores:
                await store.close()
            for runner in (router_runner, slack_runner, sim_runner):
                await runner.cleanup()


def request(body: str) -> SendRequest:
    return SendRequest(user_id="U0ALICE", channel_id=CHANNEL, to=TO, from_=FROM, body=body)


def thread_texts(cluster: Cluster) -> list[str]:
    [parent] = cluster.fake.messages(CHANNEL)
    return [m.text for m in cluster.fake.thread(CHANNEL, parent.ts)]


async def test_one_pending_message_processed_by_both_replicas_is_sent_once(cluster: Cluster) -> None:
    one, two = await cluster.bridge(), await cluster.bridge()
    assert one.owner != two.owner
    accepted = await one.accept(request("exactly once"))
    assert not isinstance(accepted, str)
    await asyncio.gather(one.process(accepted.ref), two.process(accepted.ref), one.process(accepted.ref))
    await until(lambda: cluster.sim.created_count(TO) >= 1)
    await cluster.settle()
    assert cluster.sim.created_count(TO) == 1
    assert len(cluster.fake.messages(CHANNEL)) == 1  # one parent
    sms = await one.store.get_outbound(accepted.ref)
    assert sms is not None and sms.state is SendState.ACCEPTED
    # Receipts recorded on both replicas (every callback reached both) are told once each, in rank order.
    texts = thread_texts(cluster)
    assert receipts_in(texts) == [MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED], texts
    assert cluster.refused == []


async def test_many_messages_on_two_replicas_keep_each_receipt_once_and_in_order(cluster: Cluster) -> None:
    one, two = await cluster.bridge(), await cluster.bridge()
    refs = []
    for n in range(6):
        accepted = await (one if n % 2 else two).accept(request(f"message {n}"))
        assert not isinstance(accepted, str)
        refs.append(accepted.ref)
    await asyncio.gather(*(b.process(ref) for ref in refs for b in (one, two)))
    await until(lambda: cluster.sim.created_count(TO) >= len(refs))
    await cluster.settle()
    assert cluster.sim.created_count(TO) == len(refs)
    parents = cluster.fake.messages(CHANNEL)
    assert len(parents) == len(refs)
    for parent in parents:
        texts = [m.text for m in cluster.fake.thread(CHANNEL, parent.ts)]
        assert receipts_in(texts) == [MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED], texts


async def test_one_threads_items_on_two_outboxes_never_overlap_and_keep_their_order(cluster: Cluster) -> None:
    log: list[tuple[float, float, str]] = []
    # Each post takes longer than the lease: only the renewal keeps the other outbox out of the thread.
    slow_a, slow_b = Timed(cluster.slack_port(), log, hold=0.5), Timed(cluster.slack_port(), log, hold=0.5)
    a = await cluster.outbox(slow_a, lease=0.3)
    b = await cluster.outbox(slow_b, lease=0.3)
    texts = [f"item {n}" for n in range(6)]
    for n, text in enumerate(texts):
        await (a if n % 2 else b).post("thread-1", CHANNEL, text)
    a.start()
    b.start()
    await until(lambda: len(log) == len(texts))
    assert await a.flush(10.0) and await b.flush(10.0)
    assert [m.text for m in cluster.fake.messages(CHANNEL)] == texts  # each once, in enqueue order
    spans = sorted(log)
    assert [text for _, _, text in spans] == texts
    for (_, end, _), (start, _, _) in itertools.pairwise(spans):
        assert start >= end, "two replicas posted into one thread at the same time"
    assert slow_a.started + slow_b.started == len(texts)
    assert a.delivered + b.delivered == len(texts)


async def test_a_restarted_outbox_does_not_steal_a_live_claim(cluster: Cluster) -> None:
    log: list[tuple[float, float, str]] = []
    stuck = Timed(cluster.slack_port(), log)
    stuck.gate.clear()  # replica A is alive but its post takes long (renewing its lease all along)
    a = await cluster.outbox(stuck, lease=0.3, owner="replica-a")
    await a.post("thread-1", CHANNEL, "first")
    await a.post("thread-1", CHANNEL, "second")
    a.start()
    await until(lambda: stuck.started == 1)
    fresh = Timed(cluster.slack_port(), log)
    b = await cluster.outbox(fresh, lease=0.3, owner="replica-b-restarted")
    b.start()
    await asyncio.sleep(1.5)  # five leases: a claim that were not renewed would have been taken over
    assert fresh.started == 0 and cluster.fake.messages(CHANNEL) == []
    stuck.gate.set()
    await until(lambda: len(log) == 2)
    assert await a.flush(10.0) and await b.flush(10.0)
    assert [m.text for m in cluster.fake.messages(CHANNEL)] == ["first", "second"]


async def test_a_dead_outboxs_expired_claim_is_taken_over(cluster: Cluster) -> None:
    log: list[tuple[float, float, str]] = []
    survivor = await cluster.outbox(Timed(cluster.slack_port(), log), owner="survivor")
    await survivor.post("thread-1", CHANNEL, "claimed by the dead")
    await survivor.post("thread-1", CHANNEL, "after it")
    [head] = await survivor.store.outbox_due(utcnow(), limit=10)
    now = utcnow()
    assert await survivor.store.outbox_claim(head.id, "dead-replica", now, now + timedelta(seconds=0.5))
    survivor.start()
    await until(lambda: len(log) == 2)
    assert await survivor.flush(10.0)
    assert [m.text for m in cluster.fake.messages(CHANNEL)] == ["claimed by the dead", "after it"]
    # The item was cut off mid-delivery: the survivor looked for an earlier post before posting.
    assert cluster.fake.called("conversations.history")


async def test_a_dead_replicas_message_lease_is_taken_over_once_it_runs_out(cluster: Cluster) -> None:
    survivor = await cluster.bridge()
    accepted = await survivor.accept(request("the dead replica never sent this"))
    assert not isinstance(accepted, str)
    now = utcnow()
    assert await survivor.store.claim_message(accepted.ref, "dead-replica", now, now + timedelta(seconds=1.0))
    left = await survivor.process(accepted.ref)  # the lease is live: the survivor leaves it alone
    assert left is not None and left.state is SendState.PENDING and cluster.sim.created_count(TO) == 0
    assert await survivor.store.due([SendState.PENDING], utcnow()) == []
    await until(lambda: utcnow() > now + timedelta(seconds=1.0))
    await survivor.process(accepted.ref)
    await until(lambda: cluster.sim.created_count(TO) == 1)
    await cluster.settle()
    assert cluster.sim.created_count(TO) == 1


async def test_a_post_in_flight_on_a_dead_replica_becomes_unknown_only_after_its_lease(cluster: Cluster) -> None:
    survivor = await cluster.bridge()
    accepted = await survivor.accept(request("cut off mid-POST"))
    assert not isinstance(accepted, str)
    now = utcnow()
    assert await survivor.store.claim_message(accepted.ref, "dead-replica", now, now + timedelta(seconds=1.0))
    await survivor.store.mark_submitting(accepted.ref, now)
    recovery = Recovery(survivor, survivor.signalwire)
    await recovery.resume()  # a restart while the other replica's POST may still be running: hands off
    sms = await survivor.store.get_outbound(accepted.ref)
    assert sms is not None and sms.state is SendState.SUBMITTING
    await until(lambda: utcnow() > now + timedelta(seconds=1.0))
    await recovery.sweep()  # now it is orphaned: unknown, looked up in the logs (absent), sent once more
    assert (await survivor.store.counters()).get("interrupted") == 1
    await until(lambda: cluster.sim.created_count(TO) == 1)
    await cluster.settle()
    sms = await survivor.store.get_outbound(accepted.ref)
    assert sms is not None and sms.state is SendState.ACCEPTED and cluster.sim.created_count(TO) == 1


async def test_one_conversation_when_its_first_two_texts_land_on_two_replicas(cluster: Cluster) -> None:
    one, two = await cluster.bridge(), await cluster.bridge()
    surfaces = [TwoWay(b, inbound_channel=INBOUND, number_channels={}, from_numbers=(FROM,)) for b in (one, two)]
    texts = [InboundMessage(message_id=f"SM-{n}", from_=TO, to=FROM, body=f"hello {n}") for n in range(2)]
    assert all(await asyncio.gather(*(s.receive(m) for s, m in zip(surfaces, texts, strict=True))))
    await cluster.settle()
    [parent] = cluster.fake.messages(INBOUND)  # one new conversation, not two
    replies = cluster.fake.thread(INBOUND, parent.ts)
    assert len(replies) == 1
    conversation = await one.store.get_conversation(FROM, TO)
    assert conversation is not None and conversation.thread_ts == parent.ts
