"""The storage contract of issue 13's bulk sends and the shared send pace (migration 18), on every engine: duplicates
merged, recipients claimed by exactly one replica with a lease, hand-over refused unless still ours and the batch
still sending, opt-outs skipped, Cancel marks the waiting rows, progress and report read back, a batch finishes once,
and the pace gives two replicas non-overlapping slots.

Uses the ``store`` / ``store_pair`` fixtures of tests/conftest.py (SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

from bridge.bulk_model import BULK_ORIGIN, BatchState, BulkBatch, BulkProgress, BulkRecipientRow, RecipientState
from bridge.model import SendRequest
from bridge.storage.port import Store
from sw_api.models import MessageStatus

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
OURS = "+15557770000"
LEASE = timedelta(seconds=30)


def _number(n: int) -> str:
    return f"+1555100{n:04d}"


def _rows(numbers: list[str], start: int = 0) -> list[BulkRecipientRow]:
    return [BulkRecipientRow(start + i, start + i + 1, n, f"N{i}", {"number": n}) for i, n in enumerate(numbers)]


def _request(to: str) -> SendRequest:
    return SendRequest(user_id="U0ALICE", channel_id="C0GENERAL", to=to, from_=OURS, body="hi", origin=BULK_ORIGIN)


async def _batch(store: Store, batch_id: str, count: int, *, send: bool = True, at: datetime = T0) -> None:
    await store.bulk_create(BulkBatch(batch_id, "U0ALICE", "C0GENERAL", OURS, "hi {name}", "Closed",
                                      BatchState.DRAFT, 0, at), at)
    assert await store.bulk_add_recipients(batch_id, _rows([_number(n) for n in range(count)])) == count
    if send:
        assert await store.bulk_move(batch_id, [BatchState.DRAFT], BatchState.SENDING, at)


async def test_a_draft_is_stored_duplicates_merged_and_nothing_is_claimed_before_confirm(store: Store) -> None:
    await _batch(store, "b1", 3, send=False)
    again = _rows([_number(1), _number(7), _number(7)], start=10)
    assert await store.bulk_add_recipients("b1", again) == 1, "numbers already in the batch are merged"
    assert await store.bulk_add_recipients("b1", []) == 0
    assert await store.bulk_claim("w1", T0, T0 + LEASE, 10) == []
    await store.bulk_set_total("b1", 4)
    await store.bulk_set_parent("b1", "1700.1")
    got = await store.bulk_get("b1")
    assert got is not None and got.state is BatchState.DRAFT and got.total == 4 and got.parent_ts == "1700.1"
    assert got.created_at == T0 and got.confirmed_at is None and await store.bulk_get("nope") is None
    assert await store.bulk_unfinished() == []
    assert await store.bulk_move("b1", [BatchState.DRAFT], BatchState.SENDING, T0)
    assert not await store.bulk_move("b1", [BatchState.DRAFT], BatchState.SENDING, T0), "one winner"
    assert [b.id for b in await store.bulk_unfinished()] == ["b1"]
    claimed = await store.bulk_claim("w1", T0, T0 + LEASE, 10)
    assert [(b, r.seq, r.state) for b, r in claimed] == [("b1", s, RecipientState.CLAIMED) for s in (0, 1, 2, 11)]
    assert claimed[0][1].fields == {"number": _number(0)} and claimed[0][1].name == "N0"


async def test_two_replicas_claiming_at_once_never_share_a_recipient(store_pair: tuple[Store, Store]) -> None:
    one, two = store_pair
    await _batch(one, "b1", 60)

    async def drain(store: Store, owner: str) -> list[int]:
        seqs: list[int] = []
        while got := await store.bulk_claim(owner, T0, T0 + LEASE, 7):
            seqs += [r.seq for _, r in got]
        return seqs

    first, second = await asyncio.gather(drain(one, "w1"), drain(two, "w2"))
    assert not set(first) & set(second)
    assert sorted(first + second) == list(range(60))


async def test_an_expired_lease_is_claimed_again_and_the_old_owner_cannot_hand_over(store: Store) -> None:
    await _batch(store, "b1", 1)
    [(_, row)] = await store.bulk_claim("w1", T0, T0 + LEASE, 5)
    assert await store.bulk_claim("w2", T0 + LEASE / 2, T0 + LEASE, 5) == []
    [(_, again)] = await store.bulk_claim("w2", T0 + LEASE, T0 + 2 * LEASE, 5)
    assert again.seq == row.seq
    assert await store.bulk_hand_over("b1", row.seq, "w1", "r1", _request(row.number), T0) is None
    assert await store.get_outbound("r1") is None
    assert not await store.bulk_defer("b1", row.seq, "w1", T0) and not await store.bulk_skip("b1", row.seq, "w1", "x")
    sms = await store.bulk_hand_over("b1", row.seq, "w2", "r1", _request(row.number), T0)
    assert sms is not None and sms.origin == BULK_ORIGIN and sms.to == row.number
    assert await store.bulk_hand_over("b1", row.seq, "w2", "r2", _request(row.number), T0) is None, "handed once"


async def test_pause_puts_a_claim_back_and_cancel_marks_the_rest(store: Store) -> None:
    await _batch(store, "b1", 4)
    [(_, a), (_, b)] = await store.bulk_claim("w1", T0, T0 + LEASE, 2)
    assert await store.bulk_move("b1", [BatchState.SENDING], BatchState.PAUSED, T0)
    assert await store.bulk_hand_over("b1", a.seq, "w1", "r1", _request(a.number), T0) is None
    assert await store.bulk_claim("w1", T0, T0 + LEASE, 10) == [], "paused: nothing is claimed"
    assert await store.bulk_move("b1", [BatchState.PAUSED], BatchState.SENDING, T0)
    assert [r.seq for _, r in await store.bulk_claim("w2", T0, T0 + LEASE, 1)] == [a.seq], "position held"
    assert await store.bulk_move("b1", [BatchState.SENDING, BatchState.PAUSED], BatchState.CANCELLED, T0, "U0BOB")
    assert await store.bulk_hand_over("b1", b.seq, "w1", "r2", _request(b.number), T0) is None
    done = await store.bulk_get("b1")
    assert done is not None and done.finished_by == "U0BOB" and done.finished_at == T0
    progress = await store.bulk_progress("b1", T0)
    assert progress.cancelled == 3 and progress.remaining == 1, "the live lease of w2 is left to w2"
    assert not await store.bulk_finished_if_done("b1", T0)


async def test_opted_out_or_blocked_at_send_time_is_skipped(store: Store) -> None:
    await _batch(store, "b1", 2)
    await store.set_opt_out(OURS, _number(0), "STOP", T0)
    await store.block_number(_number(1), "spam", "U0BOB", T0)
    for _, row in await store.bulk_claim("w1", T0, T0 + LEASE, 5):
        assert await store.bulk_hand_over("b1", row.seq, "w1", f"r{row.seq}", _request(row.number), T0) is None
    report = await store.bulk_report("b1", -1, 10)
    assert [(s, r.status, r.error_message) for s, r in report] == [(0, "skipped", "opted out"),
                                                                   (1, "skipped", "blocked")]
    assert await store.bulk_finished_if_done("b1", T0)
    assert not await store.bulk_finished_if_done("b1", T0), "finished once"
    got = await store.bulk_get("b1")
    assert got is not None and got.state is BatchState.DONE


async def test_progress_and_report_follow_each_message(store: Store) -> None:
    await _batch(store, "b1", 6)
    claimed = await store.bulk_claim("w1", T0, T0 + LEASE, 6)
    refs = {}
    for _, row in claimed[:4]:
        refs[row.seq] = f"r{row.seq}"
        assert await store.bulk_hand_over("b1", row.seq, "w1", refs[row.seq], _request(row.number), T0)
    for seq in (0, 1, 2):
        await store.mark_submitting(refs[seq], T0 + timedelta(seconds=seq))
    await store.mark_accepted(refs[0], "sw0", 1, T0)
    await store.record_status(refs[0], MessageStatus.DELIVERED, None, None, T0, T0)
    await store.mark_accepted(refs[1], "sw1", 1, T0)
    await store.mark_rejected(refs[2], "21211", "invalid To", T0)
    assert await store.bulk_skip("b1", 4, "w1", "blocked")
    assert await store.bulk_defer("b1", 5, "w1", T0 + timedelta(hours=8))
    assert await store.bulk_progress("b1", T0) == BulkProgress(sent=1, delivered=1, failed=1, skipped=1,
                                                               remaining=2, quiet_waiting=1, cancelled=0)
    assert await store.bulk_claim("w1", T0, T0 + LEASE, 5) == [], "held by quiet hours"
    assert [r.seq for _, r in await store.bulk_claim("w1", T0 + timedelta(hours=8), T0 + LEASE, 5)] == [5]
    first = await store.bulk_report("b1", -1, 4)
    rest = await store.bulk_report("b1", first[-1][0], 4)
    assert [s for s, _ in first + rest] == list(range(6))
    rows = dict(first + rest)
    assert rows[0].status == "delivered" and rows[0].sent_at == T0 and rows[0].name == "N0"
    assert rows[1].status == "sent" and rows[2].status == "failed" and rows[2].error_code == "21211"
    assert rows[3].status == "pending" and rows[4].status == "skipped" and rows[5].status == "pending"


async def test_the_pace_gives_two_replicas_slots_that_never_overlap(store_pair: tuple[Store, Store]) -> None:
    one, two = store_pair
    slots = await asyncio.gather(*[(one if n % 2 else two).pace_reserve(OURS, 2, 0.5, T0) for n in range(20)])
    ordered = sorted(slots)
    assert ordered[0] == T0
    for earlier, later in itertools.pairwise(ordered):
        assert abs((later - earlier).total_seconds() - 1.0) < 1e-3, "each slot is segments × seconds after the last"
    # A 429's Retry-After pushes the next slot out, never back.
    await one.pace_push(OURS, T0 + timedelta(seconds=100))
    await two.pace_push(OURS, T0 + timedelta(seconds=50))
    slot = await two.pace_reserve(OURS, 1, 1.0, T0)
    assert abs((slot - (T0 + timedelta(seconds=100))).total_seconds()) < 1e-3
    later = T0 + timedelta(seconds=500)
    assert abs((await one.pace_reserve(OURS, 1, 1.0, later) - later).total_seconds()) < 1e-3, "idle: now"
    await one.pace_push("+15550000000", T0)
    assert abs((await one.pace_reserve("+15550000000", 1, 1.0, T0) - T0).total_seconds()) < 1e-3
