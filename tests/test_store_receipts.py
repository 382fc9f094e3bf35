"""The storage contract of coalesced receipts and per-thread post pacing, run on every engine (tests/conftest.py's
``store`` / ``store_pair``): an appending write (``OutboxWrite.append``) extends the waiting receipt of its ref in
the announcement's transaction, never one whose delivery began (claimed, attempted, done) nor one a later reply of
that ref follows; ``outbox_get`` re-reads an item; ``outbox_defer`` hands a claim back unattempted; the posting
bucket (``outbox_take_post`` / ``outbox_post_finished``) is a token bucket shared by every store on the database.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bridge.model import OutboxWrite, SendRequest
from bridge.storage.port import Store
from sw_api.models import MessageStatus

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
REQUEST = SendRequest(user_id="U0USER", channel_id="C0CHAN", to="+15551234567", from_="+15557770000", body="hi")
WINDOW = 1.0


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def receipt(status: str, ref: str = "ref1") -> OutboxWrite:
    return OutboxWrite("C0CHAN", "receipt", ref, "C0CHAN", {"statuses": [status]}, append="statuses", delay=WINDOW)


def repaint(ref: str = "ref1") -> OutboxWrite:
    return OutboxWrite("C0CHAN", "update", ref, None, {}, ("update", "parent"))


async def _accepted(store: Store, ref: str = "ref1") -> None:
    await store.create_outbound(ref, REQUEST, T0)
    await store.mark_accepted(ref, f"SM-{ref}", 1, _at(1))


async def _announce(store: Store, status: MessageStatus, at: float, ref: str = "ref1") -> bool:
    await store.record_status(ref, status, None, None, None, _at(at))
    return await store.announce_status(ref, status.value, [receipt(status.value, ref), repaint(ref)], _at(at))


async def _receipts(store: Store, at: float = 100) -> list[list[str]]:
    """The statuses of each undone receipt, thread order (only the head of a thread is handed out: walk it)."""
    found: list[list[str]] = []
    while items := await store.outbox_due(_at(at), 10):
        for item in items:
            if item.kind == "receipt":
                found.append(item.payload["statuses"])
            await store.outbox_done(item.id, None, _at(at))
    return found


async def test_statuses_announced_within_the_window_become_one_receipt_and_one_repaint(store: Store) -> None:
    await _accepted(store)
    assert await _announce(store, MessageStatus.QUEUED, 2)
    assert await _announce(store, MessageStatus.SENT, 2.3)
    assert await _announce(store, MessageStatus.DELIVERED, 2.6)
    assert await store.outbox_pending() == 2, "one receipt and one repaint"
    assert await store.outbox_due(_at(2.9), 10) == [], "the receipt waits out its window"
    [head] = await store.outbox_due(_at(3.0), 10)
    assert (head.kind, head.payload) == ("receipt", {"statuses": ["queued", "sent", "delivered"]})
    assert not head.uncertain
    assert await _receipts(store) == [["queued", "sent", "delivered"]]


async def test_a_claimed_receipt_is_never_changed_and_the_next_status_gets_its_own(store: Store) -> None:
    await _accepted(store)
    await _announce(store, MessageStatus.QUEUED, 2)
    [head] = await store.outbox_due(_at(3), 10)
    assert await store.outbox_claim(head.id, "a", _at(3), _at(3) + LEASE)
    assert await _announce(store, MessageStatus.SENT, 3.1)
    again = await store.outbox_get(head.id)
    assert again is not None and again.payload == {"statuses": ["queued"]}, "what is being posted stays as it is"
    await store.outbox_done(head.id, "1.5", _at(3.2))
    assert await _announce(store, MessageStatus.DELIVERED, 3.3)
    assert await _receipts(store) == [["sent", "delivered"]]


async def test_an_attempted_or_handed_back_receipt_is_never_appended_to(store: Store) -> None:
    await _accepted(store)
    await _announce(store, MessageStatus.QUEUED, 2)
    [head] = await store.outbox_due(_at(3), 10)
    assert await store.outbox_claim(head.id, "a", _at(3), _at(3) + LEASE)
    await store.outbox_retry(head.id, "timeout", _at(4), None)  # it may have reached Slack
    await _announce(store, MessageStatus.SENT, 4.1)
    assert await _receipts(store) == [["queued"], ["sent"]]


async def test_a_deferred_receipt_is_unclaimed_and_unattempted_so_it_still_takes_statuses(store: Store) -> None:
    await _accepted(store)
    await _announce(store, MessageStatus.QUEUED, 2)
    [head] = await store.outbox_due(_at(3), 10)
    assert await store.outbox_claim(head.id, "a", _at(3), _at(3) + LEASE)
    assert not await store.outbox_defer(head.id, "b", _at(10)), "only the claim's owner hands it back"
    assert await store.outbox_defer(head.id, "a", _at(10))
    assert await store.outbox_due(_at(9), 10) == [], "due when the bucket has a token"
    await _announce(store, MessageStatus.SENT, 5)
    [due] = await store.outbox_due(_at(10), 10)
    assert (due.id, due.payload, due.attempts, due.uncertain) == (head.id, {"statuses": ["queued", "sent"]}, 0, False)


async def test_a_reply_of_the_same_message_queued_after_a_waiting_receipt_is_never_overtaken(store: Store) -> None:
    await _accepted(store)
    await _announce(store, MessageStatus.QUEUED, 2)
    note = OutboxWrite("C0CHAN", "post", "ref1", "C0CHAN", {"text": "ℹ️ a note", "thread_ts": "1.1"})
    await store.record_status("ref1", MessageStatus.SENT, None, None, None, _at(2.1))
    assert await store.announce_status("ref1", "sent", [note, repaint()], _at(2.1))
    await _announce(store, MessageStatus.DELIVERED, 2.2)
    assert await _receipts(store) == [["queued"], ["delivered"]]


async def test_receipts_of_different_messages_in_one_channel_stay_apart(store: Store) -> None:
    await _accepted(store, "ref1")
    await _accepted(store, "ref2")
    await _announce(store, MessageStatus.QUEUED, 2, "ref1")
    await _announce(store, MessageStatus.QUEUED, 2, "ref2")
    await _announce(store, MessageStatus.SENT, 2.1, "ref1")
    await _announce(store, MessageStatus.SENT, 2.1, "ref2")
    assert await _receipts(store) == [["queued", "sent"], ["queued", "sent"]]


async def test_concurrent_announcements_on_two_stores_tell_each_status_once(store_pair: tuple[Store, Store]) -> None:
    one, two = store_pair
    await _accepted(one)
    await one.record_status("ref1", MessageStatus.QUEUED, None, None, None, _at(2))
    await one.record_status("ref1", MessageStatus.SENT, None, None, None, _at(2))
    await one.record_status("ref1", MessageStatus.DELIVERED, None, None, None, _at(2))
    for status in ("queued", "sent", "delivered"):
        results = await asyncio.gather(*(s.announce_status("ref1", status, [receipt(status), repaint()], _at(2))
                                         for s in (one, two)))
        assert sorted(results) == [False, True]
    assert await _receipts(one) == [["queued", "sent", "delivered"]]


async def test_outbox_get_reads_one_item_or_none(store: Store) -> None:
    item_id = await store.outbox_add("C1", "post", None, "C1", {"text": "x"}, T0)
    item = await store.outbox_get(item_id)
    assert item is not None and (item.id, item.payload) == (item_id, {"text": "x"})
    assert await store.outbox_get(item_id + 1000) is None


async def test_the_post_bucket_allows_a_burst_then_one_per_interval(store: Store) -> None:
    interval, burst = 1.0, 3
    assert [await store.outbox_take_post("C1", T0, interval, burst) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = await store.outbox_take_post("C1", T0, interval, burst)
    assert 0.9 <= wait <= 1.0, wait
    assert await store.outbox_take_post("C1", _at(1), interval, burst) == 0.0
    assert await store.outbox_take_post("C1", _at(1.5), interval, burst) > 0
    assert await store.outbox_take_post("C2", T0, interval, burst) == 0.0, "every thread has its own bucket"
    # A slow post counts from when it returned: the next token is an interval after that.
    await store.outbox_post_finished("C1", _at(5), interval)
    assert await store.outbox_take_post("C1", _at(4), interval, burst) == 0.0, "bursts are still allowed"
    assert await store.outbox_pending() == 0, "buckets are not items"
    assert await store.outbox_due(_at(100), 10) == []


async def test_the_post_bucket_never_exceeds_its_rate_however_many_take_at_once(
    store_pair: tuple[Store, Store],
) -> None:
    one, two = store_pair
    interval, burst = 0.5, 4
    taken: list[float] = []
    for step in range(40):  # 10 seconds in steps of a quarter second, two stores each trying three times a step
        at = _at(step * 0.25)
        results = await asyncio.gather(*(s.outbox_take_post("C1", at, interval, burst)
                                         for s in (one, two, one, two, one, two)))
        taken += [step * 0.25] * sum(1 for r in results if r == 0.0)
    # A token bucket: never more than burst + rate × span in any span.
    for i, start in enumerate(taken):
        for j in range(i, len(taken)):
            assert j - i + 1 <= burst + (taken[j] - start) / interval + 1e-9, (taken[i], taken[j], j - i + 1)
    assert len(taken) >= burst + int(9.75 / interval), "and it gives what the rate allows"


async def test_pruning_keeps_a_busy_bucket_and_drops_an_idle_one(store: Store) -> None:
    await store.outbox_take_post("C1", T0, 1.0, 1)
    await store.outbox_prune(_at(-1))
    assert await store.outbox_take_post("C1", T0, 1.0, 1) > 0, "still there"
    await store.outbox_prune(_at(1))
    assert await store.outbox_take_post("C1", _at(0.1), 1.0, 1) == 0.0, "pruned once idle, then a fresh bucket"
