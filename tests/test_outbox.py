"""The durable Slack outbox over real HTTP: a real SqliteStore, the real ``SlackOut`` over slack_sdk, and the fake
Slack on a loopback port with its fault switches (429 bursts, 5xx, outages, permanent errors)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from bridge.model import SendRequest
from bridge.outbox import EPHEMERAL_ATTEMPTS, ParentView, SlackOutbox
from bridge.ports import SlackPortError, SlackTransientError, is_transient, retry_after
from bridge.storage.sqlite.store import SqliteStore
from demo.fake_slack import FakeSlack, SlackMessage, create_app
from handlers.slack_out import SlackOut, make_web_client

CHANNEL = "C0GENERAL"


@dataclass
class World:
    fake: FakeSlack
    slack: SlackOut
    store: SqliteStore
    db_path: Path
    texts: dict[str, str] = field(default_factory=dict)  # ref → what its parent should say right now
    recorded: list[tuple[str, str]] = field(default_factory=list)

    async def render(self, ref: str) -> ParentView | None:
        if ref not in self.texts:
            return None
        sms = await self.store.get_outbound(ref)
        assert sms is not None
        text = self.texts[ref]
        return ParentView(CHANNEL, sms.parent_ts, text, [{"type": "section", "text": {"type": "mrkdwn", "text": text}}])

    async def parent_posted(self, ref: str, ts: str) -> None:
        self.recorded.append((ref, ts))
        await self.store.set_parent(ref, ts, datetime.now(UTC))

    def outbox(self, *, owner: str | None = None, lease: float = 30.0) -> SlackOutbox:
        return SlackOutbox(self.store, self.slack, render_parent=self.render, on_parent_posted=self.parent_posted,
                           base_delay=0.05, poll_interval=0.2, owner=owner, lease=lease)

    async def new_sms(self, ref: str, text: str) -> None:
        request = SendRequest(user_id="U0ALICE", channel_id=CHANNEL, to="+15551234567", from_="+15557770000",
                              body="hello")
        await self.store.create_outbound(ref, request, datetime.now(UTC))
        self.texts[ref] = text

    async def parent(self, ref: str) -> SlackMessage:
        sms = await self.store.get_outbound(ref)
        assert sms is not None and sms.parent_ts is not None, f"parent of {ref} not posted"
        message = self.fake.message(CHANNEL, sms.parent_ts)
        assert message is not None
        return message

    async def thread_texts(self, ref: str) -> list[str]:
        parent = await self.parent(ref)
        return [m.text for m in self.fake.thread(CHANNEL, parent.ts)]

    def ok_calls(self, method: str) -> int:
        return sum(1 for c in self.fake.calls if c.method == method and c.status == 200)


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    fake = FakeSlack()
    runner, url = await _serve(create_app(fake))
    db_path = tmp_path / "bridge.db"
    store = await SqliteStore.open(str(db_path))
    w = World(fake, SlackOut(make_web_client(fake.bot_token, f"{url}/api/")), store, db_path)
    try:
        yield w
    finally:
        await w.store.close()
        await runner.cleanup()


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def enqueue_conversation(w: World, outbox: SlackOutbox, ref: str, key: str, replies: int = 3) -> None:
    """A parent and replies under it, queued before the parent's ts exists."""
    await w.new_sms(ref, f"SMS {ref}: sending")
    await outbox.post_parent(ref, key)
    for n in range(1, replies + 1):
        await outbox.post(key, CHANNEL, f"{ref} reply {n}", thread_of_ref=ref)


# --- order, faults, outages ---------------------------------------------------------------------------------


async def test_replies_queued_before_their_parent_exists_land_in_its_thread_in_order(world: World) -> None:
    outbox = world.outbox()
    await enqueue_conversation(world, outbox, "r1", "t1")
    sms = await world.store.get_outbound("r1")
    assert sms is not None and sms.parent_ts is None
    assert await outbox.pending() == 4
    assert await outbox.flush(5.0)
    await outbox.stop()
    parent = await world.parent("r1")
    assert parent.text == "SMS r1: sending"
    assert await world.thread_texts("r1") == ["r1 reply 1", "r1 reply 2", "r1 reply 3"]
    assert world.recorded == [("r1", parent.ts)]
    assert (outbox.delivered, outbox.failed, await outbox.pending()) == (4, 0, 0)


async def test_429_burst_delays_the_thread_honouring_retry_after_and_keeps_order(world: World) -> None:
    world.fake.add_response("chat.postMessage", status=429, headers={"Retry-After": "1"}, count=3)
    outbox = world.outbox()
    outbox.start()
    await enqueue_conversation(world, outbox, "r1", "t1", replies=2)
    assert await outbox.flush(10.0)
    await outbox.stop()
    assert await world.thread_texts("r1") == ["r1 reply 1", "r1 reply 2"]
    assert len(world.fake.messages(CHANNEL)) == 1  # the parent was posted once
    posts = [c for c in world.fake.calls if c.method == "chat.postMessage"]
    assert [c.status for c in posts] == [429, 429, 429, 200, 200, 200]
    # slack_sdk retried once itself (posts 0 → 1); the outbox then waited out Retry-After before its next attempt.
    assert posts[2].at - posts[1].at >= 0.95
    assert outbox.retried == 1  # attempt 1 met two 429s (slack_sdk retried once), attempt 2 one then success


async def test_5xx_bursts_are_retried_without_loss_or_duplicates(world: World) -> None:
    world.fake.add_response("chat.postMessage", status=502)  # slack_sdk does not retry 502: the outbox does
    world.fake.add_response("chat.postMessage", status=500, count=2)
    world.fake.add_response("reactions.add", status=504, count=2)
    outbox = world.outbox()
    outbox.start()
    await enqueue_conversation(world, outbox, "r1", "t1", replies=2)
    assert await outbox.flush(10.0)
    parent = await world.parent("r1")
    await outbox.react("t1", CHANNEL, parent.ts, "white_check_mark")
    assert await outbox.flush(10.0)
    await outbox.stop()
    assert len(world.fake.messages(CHANNEL)) == 1
    assert await world.thread_texts("r1") == ["r1 reply 1", "r1 reply 2"]
    assert (await world.parent("r1")).reactions == {"white_check_mark": ["UBOT"]}
    assert outbox.failed == 0 and outbox.retried == 4  # 502; 500+500 (slack_sdk retried once); 504; 504


async def test_an_outage_delays_everything_and_loses_nothing(world: World) -> None:
    world.fake.outage(3.0)
    outbox = world.outbox()
    outbox.start()
    back_at = time.monotonic() + 3.0
    await enqueue_conversation(world, outbox, "r1", "t1", replies=2)
    await enqueue_conversation(world, outbox, "r2", "t2", replies=1)
    await asyncio.sleep(0.3)
    assert await outbox.pending() == 5  # all failing, all kept
    assert await outbox.flush(10.0)
    await outbox.stop()
    assert await world.thread_texts("r1") == ["r1 reply 1", "r1 reply 2"]
    assert await world.thread_texts("r2") == ["r2 reply 1"]
    assert [m.text for m in world.fake.messages(CHANNEL)] in (
        ["SMS r1: sending", "SMS r2: sending"], ["SMS r2: sending", "SMS r1: sending"])
    assert min(c.at for c in world.fake.calls if c.status == 200) >= back_at - 0.05
    assert outbox.failed == 0


async def test_ten_updates_while_slack_is_down_become_one_update_showing_the_latest_state(world: World) -> None:
    outbox = world.outbox()
    await enqueue_conversation(world, outbox, "r1", "t1", replies=0)
    assert await outbox.flush(5.0)
    await outbox.stop(flush_timeout=0)  # the worker is idle while the burst is queued, so nothing is in flight
    world.fake.outage(1.0)
    for n in range(10):
        world.texts["r1"] = f"SMS r1: status {n}"
        await outbox.update_parent("r1", "t1")
    assert await outbox.pending() == 1
    assert outbox.coalesced == 9
    assert await outbox.flush(8.0)
    await outbox.stop()
    assert world.ok_calls("chat.update") == 1
    parent = await world.parent("r1")
    assert parent.text == "SMS r1: status 9" and parent.edited == 1
    assert world.fake.call_count("chat.update") > 1  # it did meet the outage


async def test_an_update_queued_behind_an_unsent_parent_post_is_absorbed_by_it(world: World) -> None:
    outbox = world.outbox()
    await world.new_sms("r1", "SMS r1: sending")
    await outbox.post_parent("r1", "t1")
    world.texts["r1"] = "SMS r1: delivered"
    await outbox.update_parent("r1", "t1")
    assert await outbox.pending() == 1
    assert await outbox.flush(5.0)
    await outbox.stop()
    assert (await world.parent("r1")).text == "SMS r1: delivered"
    assert not world.fake.called("chat.update")


async def test_an_update_while_the_previous_one_is_in_flight_is_queued_not_dropped(world: World) -> None:
    outbox = world.outbox()
    await enqueue_conversation(world, outbox, "r1", "t1", replies=0)
    assert await outbox.flush(5.0)
    await outbox.stop(flush_timeout=0)
    await outbox.update_parent("r1", "t1")
    [head] = await world.store.outbox_due(datetime.now(UTC), limit=10)
    # Another worker (a replica) holds the update: it may have rendered the old text already.
    assert await world.store.outbox_claim(head.id, "replica-b", datetime.now(UTC),
                                          datetime.fromtimestamp(time.time() + 60, UTC))
    world.texts["r1"] = "SMS r1: delivered"
    await outbox.update_parent("r1", "t1")
    assert await outbox.pending() == 2 and outbox.coalesced == 0


# --- permanent errors, independence, restart ----------------------------------------------------------------


async def test_a_permanent_error_fails_one_item_and_the_thread_continues(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.fake.add_response("chat.postMessage", body={"ok": False, "error": "channel_not_found"})
    outbox = world.outbox()
    for n in range(1, 4):
        await outbox.post("t1", CHANNEL, f"note {n}")
    with caplog.at_level(logging.WARNING, logger="bridge.outbox"):
        assert await outbox.flush(5.0)
    await outbox.stop()
    assert [m.text for m in world.fake.messages(CHANNEL)] == ["note 2", "note 3"]
    assert (outbox.delivered, outbox.failed, outbox.retried) == (2, 1, 0)
    [failed] = await world.store.outbox_failed()
    assert (failed.payload["text"], failed.last_error) == ("note 1", "channel_not_found")
    assert any("failed for good: channel_not_found" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)


async def test_a_reply_whose_parent_was_never_posted_fails_instead_of_landing_outside_the_thread(
    world: World,
) -> None:
    world.fake.add_response("chat.postMessage", body={"ok": False, "error": "invalid_blocks"})
    outbox = world.outbox()
    await enqueue_conversation(world, outbox, "r1", "t1", replies=1)
    await outbox.post("t1", CHANNEL, "after")
    assert await outbox.flush(5.0)
    await outbox.stop()
    assert [m.text for m in world.fake.messages(CHANNEL)] == ["after"]
    assert outbox.failed == 2
    assert [f.last_error for f in await world.store.outbox_failed()] == [
        "parent_not_posted (ref r1)", "invalid_blocks"]


async def test_reactions_are_idempotent_and_removable(world: World) -> None:
    outbox = world.outbox()
    await outbox.post("t1", CHANNEL, "hi")
    assert await outbox.flush(5.0)
    ts = world.fake.messages(CHANNEL)[0].ts
    await outbox.react("t1", CHANNEL, ts, "eyes")
    await outbox.react("t1", CHANNEL, ts, "eyes")  # already_reacted: an earlier attempt got through
    await outbox.react("t1", CHANNEL, ts, "tada")
    await outbox.react("t1", CHANNEL, ts, "tada", add=False)
    await outbox.react("t1", CHANNEL, ts, "tada", add=False)  # no_reaction: likewise
    assert await outbox.flush(5.0)
    await outbox.stop()
    assert world.fake.messages(CHANNEL)[0].reactions == {"eyes": ["UBOT"]}
    assert (outbox.delivered, outbox.failed) == (6, 0)


async def test_a_blocked_thread_does_not_block_another(world: World) -> None:
    outbox = world.outbox()
    await enqueue_conversation(world, outbox, "r1", "t1", replies=0)
    assert await outbox.flush(5.0)
    world.fake.add_response("chat.update", status=502, count=5)  # five failed attempts: t1 is stuck for ≥ 0.75 s
    world.texts["r1"] = "SMS r1: delivered"
    await outbox.update_parent("r1", "t1")
    await outbox.post("t1", CHANNEL, "r1 reply", thread_of_ref="r1")
    for n in range(3):
        await outbox.post("t2", CHANNEL, f"other {n}")
    await until(lambda: len(world.fake.messages(CHANNEL)) == 4, timeout=1.0)
    assert await world.thread_texts("r1") == []  # still waiting behind its update
    assert (await world.parent("r1")).text == "SMS r1: sending"
    assert await outbox.flush(8.0)
    await outbox.stop()
    assert (await world.parent("r1")).text == "SMS r1: delivered"
    assert await world.thread_texts("r1") == ["r1 reply"]
    reply_call = next(c for c in world.fake.calls if c.payload.get("text") == "r1 reply")
    update_call = next(c for c in world.fake.calls if c.method == "chat.update" and c.status == 200)
    assert update_call.at < reply_call.at


async def test_a_new_outbox_on_the_same_database_delivers_what_the_old_one_left(world: World) -> None:
    world.fake.outage(60.0)
    first = world.outbox()
    first.start()
    await enqueue_conversation(world, first, "r1", "t1", replies=2)
    await outbox_ephemeral_and_note(first)
    await until(lambda: world.fake.call_count("chat.postMessage") >= 2)
    await first.stop(flush_timeout=0.1)  # gives up with everything still pending, as a killed bot would
    await world.store.close()
    world.fake.clear_faults()
    assert world.ok_calls("chat.postMessage") == 0

    world.store = await SqliteStore.open(str(world.db_path))
    second = world.outbox()
    assert await second.pending() == 5
    second.start()
    assert await second.flush(5.0)
    await second.stop()
    assert await world.thread_texts("r1") == ["r1 reply 1", "r1 reply 2"]
    assert sorted(m.text for m in world.fake.messages(CHANNEL)) == ["SMS r1: sending", "note"]  # 2 threads
    assert [e["text"] for e in world.fake.ephemerals] == ["only you"]


async def outbox_ephemeral_and_note(outbox: SlackOutbox) -> None:
    await outbox.ephemeral(CHANNEL, "U0ALICE", "only you")
    await outbox.post("t2", CHANNEL, "note")


async def test_a_restarted_process_does_not_steal_a_live_claim(world: World) -> None:
    outbox = world.outbox()
    await outbox.post("t1", CHANNEL, "claimed by a live replica")
    await outbox.post("t2", CHANNEL, "another thread")
    [head, _] = await world.store.outbox_due(datetime.now(UTC), limit=10)
    assert await world.store.outbox_claim(head.id, "replica-b", datetime.now(UTC),
                                          datetime.now(UTC) + timedelta(minutes=5))
    outbox.start()
    await until(lambda: [m.text for m in world.fake.messages(CHANNEL)] == ["another thread"], timeout=10.0)
    await outbox.stop(flush_timeout=0)
    # The live claim is the other replica's to finish: nothing was posted for it, and it is still held.
    assert [m.text for m in world.fake.messages(CHANNEL)] == ["another thread"]
    assert not await world.store.outbox_claim(head.id, outbox.owner, datetime.now(UTC),
                                              datetime.now(UTC) + timedelta(minutes=5))
    assert await world.store.outbox_renew(head.id, "replica-b", datetime.now(UTC) + timedelta(minutes=5))


async def test_an_expired_claim_of_a_crashed_process_is_taken_over(world: World) -> None:
    outbox = world.outbox()
    await outbox.post("t1", CHANNEL, "first")
    await outbox.post("t1", CHANNEL, "second")
    [head] = await world.store.outbox_due(datetime.now(UTC), limit=10)
    until_ts = datetime.fromtimestamp(time.time() + 0.5, UTC)
    assert await world.store.outbox_claim(head.id, "dead-replica", datetime.now(UTC), until_ts)  # then it died
    started = time.monotonic()
    assert await outbox.flush(5.0)
    await outbox.stop()
    assert time.monotonic() - started >= 0.4
    assert [m.text for m in world.fake.messages(CHANNEL)] == ["first", "second"]


async def test_ephemerals_are_best_effort(world: World) -> None:
    world.fake.outage(30.0, status=502)  # 502: slack_sdk does not retry it itself, so the test stays fast
    outbox = world.outbox()
    await outbox.ephemeral(CHANNEL, "U0ALICE", "lost in the outage")
    assert await outbox.flush(8.0)  # gives up after a few attempts rather than holding on
    await outbox.stop()
    assert outbox.failed == 1 and world.fake.ephemerals == []
    assert world.fake.call_count("chat.postEphemeral") == EPHEMERAL_ATTEMPTS


# --- error classification in handlers.slack_out -------------------------------------------------------------


async def test_slack_out_marks_rate_limits_with_their_retry_after(world: World) -> None:
    world.fake.add_response("chat.update", status=429, headers={"Retry-After": "7"})
    # Without slack_sdk's own retry (it would sleep the 7 s): what the outbox sees once that retry is spent.
    bare = SlackOut(AsyncWebClient(token=world.fake.bot_token, base_url=world.slack.client.base_url,
                                   retry_handlers=[]))
    with pytest.raises(SlackTransientError) as caught:
        await bare.update(CHANNEL, "1700042401.000000", "x", [])
    assert str(caught.value) == "ratelimited"
    assert is_transient(caught.value) and retry_after(caught.value) == 7.0


async def test_slack_out_marks_permanent_errors_and_unreachable_slack(world: World) -> None:
    with pytest.raises(SlackPortError) as caught:
        await world.slack.update(CHANNEL, "1700042401.000000", "x", [])
    assert str(caught.value) == "message_not_found"
    assert not is_transient(caught.value) and retry_after(caught.value) is None

    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        dead = SlackOut(make_web_client("xoxb-fake", f"http://127.0.0.1:{closed.getsockname()[1]}/api/"))
        with pytest.raises(SlackTransientError) as unreachable:
            await dead.post(CHANNEL, "x")
    assert str(unreachable.value).startswith("Slack unreachable: ")
    assert retry_after(unreachable.value) is None


async def test_a_post_cut_off_before_it_was_marked_done_is_not_posted_again(world: World) -> None:
    # The process that claimed the item got Slack's "ok" and died before recording it; its lease ran out.
    outbox = world.outbox()
    await outbox.post("t1", CHANNEL, "🕓 Queued at SignalWire")
    await outbox.post("t1", CHANNEL, "📤 Sent to carrier")
    now = datetime.now(UTC)
    [head] = await world.store.outbox_due(now, limit=10)
    assert await world.store.outbox_claim(head.id, "dead-replica", now, now + timedelta(seconds=0.3))
    await world.slack.post(CHANNEL, "🕓 Queued at SignalWire", None, None, key=f"outbox-{head.id}")
    outbox.start()  # the restarted process
    await until(lambda: len(world.fake.messages(CHANNEL)) >= 2, timeout=5.0)
    assert await outbox.flush(5.0)
    await outbox.stop()
    assert [m.text for m in world.fake.messages(CHANNEL)] == ["🕓 Queued at SignalWire", "📤 Sent to carrier"]
    assert world.fake.called("conversations.history")


# --- shutdown is bounded -------------------------------------------------------------------------------------


class _StubbornSlack:
    """A Slack port whose post ignores cancellation until released (a stuck driver, or 3.11's lost cancel)."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def post(self, channel: str, text: str, blocks: object = None, thread_ts: str | None = None,
                   *, key: str | None = None) -> str:
        self.entered.set()
        while not self.release.is_set():
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                continue  # swallowed: exactly what must not make stop() hang
        return "1.0"

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, object]]) -> None:
        raise AssertionError("not used")

    async def react(self, channel: str, ts: str, name: str, *, add: bool = True) -> None:
        raise AssertionError("not used")

    async def upload(self, channel: str, thread_ts: str | None, filename: str, content: bytes, *, title: str,
                     comment: str) -> None:
        raise AssertionError("no uploads here")

    async def direct(self, user: str, text: str) -> None:
        raise AssertionError("not used")


async def test_stop_returns_even_when_a_delivery_swallows_its_cancellation(world: World) -> None:
    slack = _StubbornSlack()
    outbox = SlackOutbox(world.store, slack, render_parent=world.render, on_parent_posted=world.parent_posted,
                         poll_interval=0.05)
    outbox.start()
    await outbox.post("t1", CHANNEL, "stuck")
    async with asyncio.timeout(5):
        await slack.entered.wait()
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(10):  # without a bound, stop() would wait here forever
        await outbox.stop(flush_timeout=0.2)
    assert loop.time() - started < 10
    assert await outbox.pending() == 1  # not delivered, still stored for the next start
    slack.release.set()
    await asyncio.sleep(0.05)  # let the abandoned task finish before the loop closes


async def test_stop_during_the_idle_wait_never_hangs_thirty_times(world: World) -> None:
    # The worker spends its idle time waiting on its wake-up event; stop() cancels it there. With wait_for on
    # Python 3.11 that cancellation could be lost when the wait timed out at the same moment.
    for n in range(30):
        outbox = SlackOutbox(world.store, world.slack, render_parent=world.render,
                             on_parent_posted=world.parent_posted, poll_interval=0.001 * (n % 5 + 1))
        outbox.start()
        await asyncio.sleep(0.001 * (n % 7))
        async with asyncio.timeout(10):
            await outbox.stop(flush_timeout=0)
