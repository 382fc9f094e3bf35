"""The bulk-send engine (issue 13) over the real harness: ``bridge.bulk.BulkSends`` drafts, confirms, pauses, resumes
and cancels batches whose texts go through the simulator on loopback, paced by the shared send pace.

What must hold: every recipient is texted exactly once (also with two workers on one store) and no per-recipient
parent or thread appears in Slack; the preview counts invalid lines, duplicates, opted-out and blocked numbers,
segments and the time it takes, and nothing is sent before "Send to N"; Pause holds the position and Resume finishes;
nothing is created later than one second after Cancel returns; refusals (bulk disabled, user not allowed, not the
drafter / sender, too many recipients, unknown placeholders, nothing valid) are clear texts; at MPS=5 no one-second
window of creations holds more than 5 (ordinary /sms sends share the pace); a 429 slows the whole batch down; quiet
hours hold recipients until their window opens (a fixed clock). Every wait is for a condition, with a timeout; the
only fixed waits are the windows in which nothing may happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge import bulk
from bridge.bulk import BulkSends
from bridge.bulk_model import BatchState, BulkBatch, BulkDraft, BulkPreview, BulkProblem, BulkProgress, BulkRecipient
from bridge.ports import utcnow
from bridge.quiet_hours import parse_quiet_hours
from bridge.sending import PACE_MARGIN
from demo.harness import FROM_NUMBER, Harness, running_bridge
from handlers.server import BULK
from sw_api.simulator.config import Fault
from sw_api.text import segment_info
from tests.pg import ENGINES, throwaway_database

GENERAL = "C0GENERAL"
ALLOWED = "U0ALICE,U0BOB,U0CAROL"


def numbers(n: int, start: int = 1000) -> list[str]:
    # New York numbers (quiet hours know their zone); no suffix the simulator fails on (0003, 0007, 1610).
    return [f"+1212555{start + i:04d}" for i in range(n)]


async def stream(items: Iterable[BulkRecipient | BulkProblem]) -> AsyncIterator[BulkRecipient | BulkProblem]:
    for item in items:
        yield item


def recipients(nums: Iterable[str]) -> list[BulkRecipient | BulkProblem]:
    return [BulkRecipient(line=i + 1, number=n, name=f"Person {i}") for i, n in enumerate(nums)]


def draft_of(body: str = "Store closed today, {first_name}.", user: str = "U0ALICE") -> BulkDraft:
    return BulkDraft(user_id=user, channel_id=GENERAL, from_=FROM_NUMBER, body=body, title="Store closed")


def engine(h: Harness) -> BulkSends:
    """The bot's own engine. These tests drive it without the Slack side, which would post the parent: a batch
    is finished without waiting for one."""
    assert h._bot_runner is not None
    sends = h._bot_runner.app[BULK]
    sends.parent_grace = 0.0
    return sends


async def until(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def until_state(h: Harness, batch_id: str, state: BatchState, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        batch = await h.bridge.store.bulk_get(batch_id)
        assert batch is not None
        if batch.state is state:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"batch is {batch.state}, not {state}")
        await asyncio.sleep(0.05)


async def until_progress(sends: BulkSends, batch_id: str, done: Callable[[BulkProgress], bool],
                         timeout: float = 20.0) -> BulkProgress:
    deadline = time.monotonic() + timeout
    while True:
        progress = await sends.progress(batch_id)
        if done(progress):
            return progress
        if time.monotonic() > deadline:
            raise AssertionError(f"progress stuck at {progress}")
        await asyncio.sleep(0.05)


def created(h: Harness, to: str | None = None) -> int:
    return h.simulator.created_count(to)


async def preview_of(sends: BulkSends, items: list[BulkRecipient | BulkProblem], body: str | None = None,
                     user: str = "U0ALICE") -> BulkPreview:
    preview = await sends.draft(draft_of(body, user) if body else draft_of(user=user), stream(items))
    assert isinstance(preview, BulkPreview), preview
    return preview


@contextlib.asynccontextmanager
async def bridge_with(tmp_path: Path, mps: str = "50", *, users: str = ALLOWED, database: str | None = None,
                      **extra: str) -> AsyncIterator[Harness]:
    env = {"SMS_ALLOWED_USERS": "U0ALICE", "SMS_BULK_ALLOWED_USERS": users, "SMS_ADMIN_USERS": "U0CAROL",
           "QUIET_HOURS": "off", "SIGNALWIRE_MPS": mps, **extra}
    if not users:
        del env["SMS_BULK_ALLOWED_USERS"]
    if database is not None:
        env["DATABASE_URL"] = database
    async with running_bridge(tmp_path, env=env, step_delay=0.005) as harness:
        yield harness


# -- sending --------------------------------------------------------------------------------------------------------


async def test_batch_texts_each_recipient_once_without_threads(tmp_path: Path) -> None:
    async with bridge_with(tmp_path) as h:
        sends = engine(h)
        nums = numbers(30)
        preview = await preview_of(sends, recipients(nums))
        assert preview.will_send == 30 and preview.sample == "Store closed today, Person."
        await h.settle()
        assert created(h) == 0, "nothing is sent before Send to N"
        batch = await sends.confirm(preview.batch_id, "U0ALICE")
        assert not isinstance(batch, str) and batch.state is BatchState.SENDING and batch.total == 30
        await until_state(h, preview.batch_id, BatchState.DONE)
        await until(lambda: created(h) == 30, "30 texts")
        await h.settle()
        assert [created(h, n) for n in nums] == [1] * 30
        bodies = {m.body for m in h.simulator.messages.values()}
        assert bodies == {"Store closed today, Person."}
        progress = await sends.progress(preview.batch_id)
        assert progress.delivered == 30 and progress.remaining == 0 and progress.failed == 0
        # No parent per recipient, no receipt thread: the bridge posted nothing at all into Slack.
        assert h.slack.messages(GENERAL) == []
        assert h.slack.call_count("chat.postMessage") == 0
        # A second confirm changes nothing.
        assert await sends.confirm(preview.batch_id, "U0ALICE") == bulk.after_the_fact(
            await h.bridge.store.bulk_get(preview.batch_id))  # type: ignore[arg-type]
        await h.settle()
        assert created(h) == 30


@pytest.mark.parametrize("database", ENGINES)
async def test_two_workers_on_one_store_never_double_send(tmp_path: Path, database: str) -> None:
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(throwaway_database()) if database == "postgresql" else None
        h = await stack.enter_async_context(bridge_with(tmp_path, database=url))
        first = engine(h)
        second = BulkSends(h.bridge, mps=50, quiet=None, allowed=first.allowed, owner="second-replica",
                           parent_grace=0.0)
        second.start()
        stack.push_async_callback(second.stop)
        nums = numbers(40)
        preview = await preview_of(first, recipients(nums))
        assert not isinstance(await first.confirm(preview.batch_id, "U0ALICE"), str)
        second._wake.set()
        await until_state(h, preview.batch_id, BatchState.DONE, timeout=30)
        await until(lambda: created(h) >= 40, "40 texts")
        await h.settle()
        assert [created(h, n) for n in nums] == [1] * 40


# -- the preview ----------------------------------------------------------------------------------------------------


async def test_preview_counts(tmp_path: Path) -> None:
    async with bridge_with(tmp_path, mps="4") as h:
        sends = engine(h)
        store = h.bridge.store
        nums = numbers(8)
        await store.set_opt_out(FROM_NUMBER, nums[1], "STOP", utcnow())
        await store.block_number(nums[2], "spam", "U0CAROL", utcnow())
        items: list[BulkRecipient | BulkProblem] = [
            *recipients(nums),
            BulkProblem(9, "555", "too short"),
            BulkRecipient(10, nums[0], "Dup One"),
            BulkProblem(11, "hello", "not a number"),
            BulkRecipient(12, nums[3], "Dup Two"),
        ]
        body = "Hi {name}, " + "x" * 150  # two segments for every recipient
        preview = await preview_of(sends, items, body)
        assert preview.invalid_count == 2 and [p.line for p in preview.invalid] == [9, 11]
        assert preview.duplicates == 2
        assert preview.opted_out == 1 and preview.blocked == 1
        assert preview.will_send == 6
        expected = sum(segment_info(f"Hi Person {i}, " + "x" * 150).segments for i in (0, 3, 4, 5, 6, 7))
        assert expected == 12 and preview.segments == expected
        assert preview.seconds == pytest.approx(12 / 4)
        assert preview.quiet_waiting == 0 and preview.quiet_until is None
        batch = await store.bulk_get(preview.batch_id)
        assert batch is not None and batch.state is BatchState.DRAFT and batch.total == 6
        await h.settle()
        assert created(h) == 0
        # The preview's Cancel drops it: nothing is ever sent.
        assert "Only the person" in str(_state(await sends.discard(preview.batch_id, "U0BOB")))
        assert _state(await sends.discard(preview.batch_id, "U0ALICE")) is BatchState.DISCARDED
        assert isinstance(await sends.confirm(preview.batch_id, "U0ALICE"), str)
        await h.settle()
        assert created(h) == 0


async def test_preview_refusals(tmp_path: Path) -> None:
    async with bridge_with(tmp_path, BULK_MAX_RECIPIENTS="5") as h:
        sends = engine(h)
        too_many = await sends.draft(draft_of(), stream(recipients(numbers(6))))
        assert too_many == bulk.too_many(5)
        # Duplicates do not count against the limit.
        ok = await sends.draft(draft_of(), stream(recipients(numbers(5) + numbers(3))))
        assert isinstance(ok, BulkPreview) and ok.will_send == 5 and ok.duplicates == 3
        unknown = await sends.draft(draft_of("Hi {nickname}"), stream(recipients(numbers(2))))
        assert isinstance(unknown, str) and "{nickname}" in unknown
        column = await sends.draft(draft_of("Hi {shift}"), stream(
            [BulkRecipient(1, numbers(1)[0], "A", {"Shift": "night"})]))
        assert isinstance(column, BulkPreview) and column.sample == "Hi night"
        nothing = await sends.draft(draft_of(), stream([BulkProblem(1, "x", "not a number")]))
        assert nothing == bulk.NOTHING_VALID
        await h.settle()
        assert created(h) == 0


async def test_who_may(tmp_path: Path) -> None:
    async with bridge_with(tmp_path / "off", users="") as h:
        sends = engine(h)
        assert sends.refusal("U0ALICE") == bulk.DISABLED
        assert "SMS_BULK_ALLOWED_USERS" in bulk.DISABLED
        assert await sends.draft(draft_of(), stream(recipients(numbers(2)))) == bulk.DISABLED
    async with bridge_with(tmp_path / "on", mps="2", users="U0ALICE,U0BOB") as h:
        sends = engine(h)
        assert sends.refusal("U0ALICE") is None
        assert sends.refusal("U0DAVE") == bulk.NOT_ALLOWED
        assert await sends.draft(draft_of(user="U0DAVE"), stream(recipients(numbers(2)))) == bulk.NOT_ALLOWED
        preview = await preview_of(sends, recipients(numbers(10)))
        assert await sends.confirm(preview.batch_id, "U0BOB") == bulk.NOT_DRAFTER
        assert not isinstance(await sends.confirm(preview.batch_id, "U0ALICE"), str)
        assert await sends.pause(preview.batch_id, "U0BOB") == bulk.NOT_SENDER
        assert await sends.cancel(preview.batch_id, "U0DAVE") == bulk.NOT_SENDER
        # An admin (SMS_ADMIN_USERS) may stop anyone's batch.
        assert _state(await sends.cancel(preview.batch_id, "U0CAROL")) is BatchState.CANCELLED
        batch = await h.bridge.store.bulk_get(preview.batch_id)
        assert batch is not None and batch.state is BatchState.CANCELLED and batch.finished_by == "U0CAROL"
        assert "cancelled already by <@U0CAROL>" in str(_state(await sends.resume(preview.batch_id, "U0ALICE")))


# -- steering -------------------------------------------------------------------------------------------------------


async def test_pause_holds_the_position_and_resume_finishes(tmp_path: Path) -> None:
    async with bridge_with(tmp_path, mps="5") as h:
        sends = engine(h)
        nums = numbers(15)
        preview = await preview_of(sends, recipients(nums))
        await sends.confirm(preview.batch_id, "U0ALICE")
        await until(lambda: created(h) >= 3, "the first texts")
        assert _state(await sends.pause(preview.batch_id, "U0ALICE")) is BatchState.PAUSED
        assert await sends.pause(preview.batch_id, "U0ALICE") == "It is paused already."
        await asyncio.sleep(1.0)  # a hand-over already under way when Pause returned has gone out by now
        held = created(h)
        assert held < 15
        await asyncio.sleep(1.5)  # the window in which nothing may be sent
        assert created(h) == held
        progress = await sends.progress(preview.batch_id)
        assert progress.remaining == 15 - held
        # The texts that went out are the first ones, in order: the position is held.
        assert [created(h, n) for n in nums[:held]] == [1] * held
        assert _state(await sends.resume(preview.batch_id, "U0ALICE")) is BatchState.SENDING
        await until_state(h, preview.batch_id, BatchState.DONE)
        await until(lambda: created(h) == 15, "the rest")
        await h.settle()
        assert [created(h, n) for n in nums] == [1] * 15


async def test_cancel_stops_within_a_second(tmp_path: Path) -> None:
    async with bridge_with(tmp_path, mps="5") as h:
        sends = engine(h)
        nums = numbers(20)
        preview = await preview_of(sends, recipients(nums))
        await sends.confirm(preview.batch_id, "U0ALICE")
        await until(lambda: created(h) >= 2, "the first texts")
        assert _state(await sends.cancel(preview.batch_id, "U0ALICE")) is BatchState.CANCELLED
        cancelled_at = time.monotonic()
        await asyncio.sleep(1.0)
        stopped = created(h)
        await asyncio.sleep(1.5)
        assert created(h) == stopped, "nothing is created later than 1 s after Cancel returns"
        assert stopped < 20 and time.monotonic() - cancelled_at >= 2.5
        await until_state(h, preview.batch_id, BatchState.CANCELLED)
        progress = await until_progress(sends, preview.batch_id, lambda p: p.remaining == 0)
        assert progress.cancelled == 20 - stopped and progress.delivered + progress.sent == stopped
        assert "cancelled already" in str(_state(await sends.cancel(preview.batch_id, "U0ALICE")))


# -- pacing ---------------------------------------------------------------------------------------------------------


def busiest_window(times: list[datetime], seconds: float = 1.0) -> int:
    """The most of ``times`` within any window of ``seconds``."""
    times = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= timedelta(seconds=seconds):
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_pace_is_never_exceeded_and_shared_with_ordinary_sends(tmp_path: Path) -> None:
    async with bridge_with(tmp_path, mps="5") as h:
        sends = engine(h)
        preview = await preview_of(sends, recipients(numbers(15)))
        began = time.monotonic()
        await sends.confirm(preview.batch_id, "U0ALICE")
        await until(lambda: created(h) >= 3, "the first texts")
        for n in ("+12125559001", "+12125559002"):  # ordinary /sms traffic from the same number, meanwhile
            answer = await h.driver.slash_command(f"{n} ordinary text", user_id="U0ALICE", channel_id=GENERAL)
            assert answer.status == 200
        await until_state(h, preview.batch_id, BatchState.DONE)
        await until(lambda: created(h) == 17, "15 bulk and 2 ordinary texts")
        took = time.monotonic() - began
        times = [m.created_at for m in h.simulator.messages.values() if m.from_ == FROM_NUMBER]
        assert len(times) == 17
        # The simulator sees each POST a little after its slot, by however long this busy machine takes to carry it:
        # measured over 0.95 s, not 1 s, so that jitter of up to 50 ms is not mistaken for a burst (an unpaced batch
        # puts all 15 into a few milliseconds).
        assert busiest_window(times, 0.95) <= 5, sorted(times)
        # 17 one-segment texts at 5 × PACE_MARGIN per second: at least 3.3 s from the first to the last.
        assert took >= 16 / 5
        assert (max(times) - min(times)).total_seconds() >= 16 / (5 * PACE_MARGIN) - 0.2


async def test_a_429_slows_the_whole_batch(tmp_path: Path) -> None:
    async with bridge_with(tmp_path, mps="50", SWEEP_INTERVAL_SECONDS="0.2") as h:
        sends = engine(h)
        nums = numbers(10)
        h.simulator.add_fault(Fault(kind="status", status=429, retry_after=1.5, count=1))
        refused_at = utcnow()
        preview = await preview_of(sends, recipients(nums))
        await sends.confirm(preview.batch_id, "U0ALICE")
        await until_state(h, preview.batch_id, BatchState.DONE, timeout=30)
        await until(lambda: created(h) == 10, "every text, the refused one again later", timeout=30)
        await h.settle()
        assert [created(h, n) for n in nums] == [1] * 10
        times = sorted(m.created_at for m in h.simulator.messages.values())
        # Retry-After held the whole number back, not only the refused message: besides the one or two whose slot
        # was reserved before the 429 came back, nothing was created before it ran out.
        early = [t for t in times if (t - refused_at).total_seconds() < 1.4]
        assert len(early) <= 2, [(t - refused_at).total_seconds() for t in times]
        assert (times[-1] - refused_at).total_seconds() >= 1.5


# -- quiet hours ----------------------------------------------------------------------------------------------------


async def test_quiet_hours_hold_recipients_until_their_window(tmp_path: Path) -> None:
    async with bridge_with(tmp_path) as h:
        await engine(h).stop()  # this test's worker runs by a fixed clock instead
        night = datetime(2027, 1, 15, 7, 0, tzinfo=UTC)  # 02:00 in New York
        clock = [night]
        window = parse_quiet_hours("08:00-21:00")
        sends = BulkSends(h.bridge, mps=50, quiet=window, allowed=frozenset({"U0ALICE"}), owner="night-worker",
                          parent_grace=0.0,
                          clock=lambda: clock[0])
        sends.start()
        try:
            nums = numbers(4)
            preview = await preview_of(sends, recipients(nums))
            opening = datetime(2027, 1, 15, 13, 0, tzinfo=UTC)  # 08:00 EST
            assert preview.will_send == 4 and preview.quiet_waiting == 4 and preview.quiet_until == opening
            await sends.confirm(preview.batch_id, "U0ALICE")
            await asyncio.sleep(1.5)  # the window in which nothing may be sent
            assert created(h) == 0
            progress = await sends.progress(preview.batch_id)
            assert progress.quiet_waiting == 4 and progress.remaining == 4
            clock[0] = opening + timedelta(seconds=1)
            sends._wake.set()
            await until_state(h, preview.batch_id, BatchState.DONE)
            await until(lambda: created(h) == 4, "the texts once the window opened")
            assert [created(h, n) for n in nums] == [1] * 4
        finally:
            await sends.stop()


# -- restarts and dead replicas -------------------------------------------------------------------------------------


async def test_a_restart_mid_batch_resumes_it_and_sends_each_once(tmp_path: Path) -> None:
    async with bridge_with(tmp_path, mps="5") as h:
        nums = numbers(12)
        preview = await preview_of(engine(h), recipients(nums))
        await engine(h).confirm(preview.batch_id, "U0ALICE")
        await until(lambda: created(h) >= 3, "the first texts")
        before = await h.bridge.store.bulk_get(preview.batch_id)
        assert before is not None and before.state is BatchState.SENDING and created(h) < 12
        await h.restart_bot()  # its claims are given back on the way down; the new process resumes the batch
        engine(h)  # the new process's engine, driven without the Slack side too
        await until_state(h, preview.batch_id, BatchState.DONE)
        await until(lambda: created(h) == 12, "every text")
        await h.settle()
        assert [created(h, n) for n in nums] == [1] * 12


async def test_a_dead_replicas_claims_are_taken_over_once_they_run_out(tmp_path: Path) -> None:
    async with bridge_with(tmp_path) as h:
        sends = engine(h)
        await sends.stop()
        nums = numbers(10)
        preview = await preview_of(sends, recipients(nums))
        await sends.confirm(preview.batch_id, "U0ALICE")
        # A replica claims the first five and dies without a word: its lease runs out in 1.5 s.
        now = utcnow()
        dead = await h.bridge.store.bulk_claim("dead-replica", now, now + timedelta(seconds=1.5), 5)
        assert [row.number for _, row in dead] == nums[:5]
        sends.start()
        await until(lambda: all(created(h, n) == 1 for n in nums[5:]), "the unclaimed ones")
        assert all(created(h, n) == 0 for n in nums[:5]), "a live claim is left to its holder"
        await until_state(h, preview.batch_id, BatchState.DONE)
        await until(lambda: created(h) == 10, "the dead replica's ones too")
        await h.settle()
        assert [created(h, n) for n in nums] == [1] * 10
        first_taken_over = min(m.created_at for m in h.simulator.messages.values() if m.to in nums[:5])
        assert first_taken_over >= now + timedelta(seconds=1.5)


# -- what a bulk send does not share with one-to-one texts -----------------------------------------------------------


async def test_bulk_skips_the_per_user_rate_limit_and_opt_outs_since_the_preview(tmp_path: Path) -> None:
    async with bridge_with(tmp_path, mps="20", SMS_RATE_LIMIT_PER_USER="2") as h:
        sends = engine(h)
        nums = numbers(10)
        preview = await preview_of(sends, recipients(nums))
        assert preview.will_send == 10
        # The last one says STOP after the preview, before its turn: skipped at its hand-over, never texted.
        await h.bridge.store.set_opt_out(FROM_NUMBER, nums[-1], "STOP", utcnow())
        await sends.confirm(preview.batch_id, "U0ALICE")
        await until_state(h, preview.batch_id, BatchState.DONE)
        progress = await until_progress(sends, preview.batch_id, lambda p: p.delivered == 9)
        assert progress.skipped == 1 and progress.remaining == 0
        assert created(h, nums[-1]) == 0
        # Ten bulk texts did not use up the sender's 2 texts a minute: both of these go out.
        for n in ("+12125559001", "+12125559002"):
            answer = await h.driver.slash_command(f"{n} one to one", user_id="U0ALICE", channel_id=GENERAL)
            assert answer.status == 200 and "limit" not in answer.body
        await until(lambda: created(h, "+12125559001") == 1 and created(h, "+12125559002") == 1, "the /sms texts")
        third = await h.driver.slash_command("+12125559003 one too many", user_id="U0ALICE", channel_id=GENERAL)
        assert "limit of 2 texts per minute" in third.body, "the per-user limit itself still holds"


def _state(answer: BulkBatch | str) -> BatchState | str:
    """A steering answer: the batch's new state, or the refusal text as it is."""
    return answer if isinstance(answer, str) else answer.state
