"""The storage contract of the durable Slack outbox (migrations 3 and 10), run on every engine: per-thread order
(only the head of a thread is handed out), leases with an owner (another owner's live lease blocks the whole
thread, the owner renews, an expired lease is taken over), retries, failures, pruning and the /metrics numbers.

Uses the ``store`` / ``store_pair`` fixtures of tests/conftest.py (SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bridge.storage.port import Store

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
A, B = "replica-a", "replica-b"


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def _add(store: Store, thread: str, text: str, at: float = 0, ref: str | None = None) -> int:
    return await store.outbox_add(thread, "post", ref, "C1", {"text": text, "n": [1, 2]}, _at(at))


async def test_items_round_trip_and_ids_grow_in_enqueue_order(store: Store) -> None:
    first = await store.outbox_add("C1:1.0", "post", "ref1", "C1", {"text": "héllo 😀", "blocks": None}, T0)
    second = await store.outbox_add("C2:2.0", "update", None, None, {}, T0)
    assert second > first
    [one, two] = sorted(await store.outbox_due(T0, 10), key=lambda item: item.id)
    assert (one.id, one.thread_key, one.kind, one.ref, one.channel) == (first, "C1:1.0", "post", "ref1", "C1")
    assert one.payload == {"text": "héllo 😀", "blocks": None}
    assert (one.attempts, one.result, one.last_error, one.uncertain) == (0, None, None, False)
    assert (two.id, two.ref, two.channel, two.payload) == (second, None, None, {})
    assert await store.outbox_pending() == 2


async def test_due_gives_only_the_head_of_each_thread_earliest_first(store: Store) -> None:
    a1 = await _add(store, "A", "a1", at=2)
    await _add(store, "A", "a2", at=2)
    b1 = await _add(store, "B", "b1", at=1)
    assert [i.id for i in await store.outbox_due(_at(5), 10)] == [b1, a1]
    assert [i.id for i in await store.outbox_due(_at(5), 1)] == [b1]
    assert await store.outbox_due(_at(0), 10) == [], "not due before it was added"


async def test_only_the_head_of_a_thread_can_be_claimed(store: Store) -> None:
    head = await _add(store, "A", "1")
    second = await _add(store, "A", "2")
    assert not await store.outbox_claim(second, A, T0, T0 + LEASE)
    assert await store.outbox_claim(head, A, T0, T0 + LEASE)
    await store.outbox_done(head, "1.1", _at(1))
    assert await store.outbox_claim(second, A, _at(1), _at(1) + LEASE)


async def test_a_live_lease_is_one_owners_and_the_owner_renews_by_claiming_again(store: Store) -> None:
    head = await _add(store, "A", "1")
    assert await store.outbox_claim(head, A, T0, T0 + LEASE)
    assert not await store.outbox_claim(head, B, _at(1), _at(1) + LEASE)
    assert await store.outbox_claim(head, A, _at(10), _at(10) + LEASE), "the same owner again: a renewal"
    # The renewal moved the expiry: at the first lease's end B still cannot take it.
    assert not await store.outbox_claim(head, B, T0 + LEASE, T0 + 2 * LEASE)
    assert await store.outbox_due(T0 + LEASE, 10) == [], "a leased head is not due"


async def test_another_owners_live_lease_blocks_the_whole_thread(store: Store) -> None:
    head = await _add(store, "A", "1")
    second = await _add(store, "A", "2")
    other_thread = await _add(store, "B", "1")
    assert await store.outbox_claim(head, A, T0, T0 + LEASE)
    assert not await store.outbox_claim(second, B, _at(1), _at(1) + LEASE)
    assert await store.outbox_claim(other_thread, B, _at(1), _at(1) + LEASE), "other threads are independent"
    await store.outbox_done(head, "1.1", _at(2))
    assert await store.outbox_claim(second, B, _at(2), _at(2) + LEASE)
    assert not await store.outbox_claim(second, A, _at(3), _at(3) + LEASE)


async def test_an_expired_lease_is_taken_over_and_its_item_is_uncertain(store: Store) -> None:
    head = await _add(store, "A", "1")
    assert await store.outbox_claim(head, A, T0, T0 + LEASE)
    assert await store.outbox_due(T0 + LEASE - timedelta(seconds=1), 10) == []
    [item] = await store.outbox_due(T0 + LEASE, 10)  # A died: its lease ran out
    assert item.id == head and item.uncertain, "the dead owner may have posted it: look before posting again"
    assert await store.outbox_claim(head, B, T0 + LEASE, T0 + 2 * LEASE)
    assert not await store.outbox_renew(head, A, T0 + 3 * LEASE), "A no longer holds it"
    assert not await store.outbox_claim(head, A, T0 + LEASE, T0 + 2 * LEASE)


async def test_renew_extends_only_the_owners_lease_on_an_undone_item(store: Store) -> None:
    head = await _add(store, "A", "1")
    assert not await store.outbox_renew(head, A, T0 + LEASE), "never claimed"
    assert await store.outbox_claim(head, A, T0, T0 + LEASE)
    assert not await store.outbox_renew(head, B, T0 + 2 * LEASE)
    assert await store.outbox_renew(head, A, T0 + 2 * LEASE)
    assert not await store.outbox_claim(head, B, T0 + LEASE, T0 + 3 * LEASE), "renewed past the first lease"
    assert await store.outbox_claim(head, B, T0 + 2 * LEASE, T0 + 3 * LEASE), "and no further"
    assert await store.outbox_renew(head, B, T0 + 4 * LEASE)
    await store.outbox_done(head, "1.1", T0 + 2 * LEASE)
    assert not await store.outbox_renew(head, B, T0 + 5 * LEASE), "done: nothing to renew"
    assert not await store.outbox_renew(987654, A, T0 + LEASE), "no such item"


async def test_release_hands_the_item_back_at_once(store: Store) -> None:
    head = await _add(store, "A", "1")
    assert await store.outbox_claim(head, A, T0, T0 + LEASE)
    await store.outbox_release(head)
    [item] = await store.outbox_due(_at(1), 10)
    assert item.id == head and item.uncertain
    assert not await store.outbox_renew(head, A, T0 + 2 * LEASE), "released: A holds nothing"
    assert await store.outbox_claim(head, B, _at(1), _at(1) + LEASE)


async def test_done_items_leave_and_the_next_item_becomes_the_head(store: Store) -> None:
    head = await _add(store, "A", "1")
    second = await _add(store, "A", "2")
    assert await store.outbox_claim(head, A, T0, T0 + LEASE)
    await store.outbox_done(head, "1700.1", _at(1))
    assert await store.outbox_pending() == 1
    [item] = await store.outbox_due(_at(1), 10)
    assert item.id == second
    assert not await store.outbox_claim(head, A, _at(1), _at(1) + LEASE), "a done item is never handed out"


async def test_retry_counts_the_attempt_releases_and_waits_until_the_given_time(store: Store) -> None:
    head = await _add(store, "A", "1")
    second = await _add(store, "A", "2")
    assert await store.outbox_claim(head, A, T0, T0 + LEASE)
    await store.outbox_retry(head, "ratelimited", _at(60), "1700.5")
    assert await store.outbox_due(_at(59), 10) == [], "the thread waits for its head: order holds"
    assert await store.outbox_next_due() == _at(60)
    [item] = await store.outbox_due(_at(60), 10)
    assert (item.id, item.attempts, item.last_error, item.result, item.uncertain) == (
        head, 1, "ratelimited", "1700.5", True)
    assert not await store.outbox_claim(second, B, _at(60), _at(60) + LEASE)
    assert await store.outbox_claim(head, B, _at(60), _at(60) + LEASE), "the retry released A's lease"


async def test_a_failed_item_is_listed_and_its_thread_moves_on(store: Store) -> None:
    first = await _add(store, "A", "1")
    second = await _add(store, "A", "2")
    other = await _add(store, "B", "1")
    assert await store.outbox_claim(first, A, T0, T0 + LEASE)
    await store.outbox_fail(first, "channel_not_found", _at(1))
    assert await store.outbox_claim(other, A, _at(1), _at(1) + LEASE)
    await store.outbox_fail(other, "not_in_channel", _at(2))
    assert await store.outbox_pending() == 1
    assert [i.id for i in await store.outbox_due(_at(2), 10)] == [second]
    failed = await store.outbox_failed()
    assert [(i.id, i.last_error, i.attempts) for i in failed] == [
        (other, "not_in_channel", 1), (first, "channel_not_found", 1)]
    assert [i.id for i in await store.outbox_failed(limit=1)] == [other]
    assert not await store.outbox_claim(first, A, _at(3), _at(3) + LEASE), "a failed item is never handed out"


async def test_next_due_follows_heads_and_their_leases(store: Store) -> None:
    assert await store.outbox_next_due() is None
    head = await _add(store, "A", "1", at=5)
    await _add(store, "A", "2", at=1)  # not a head: its time does not count
    assert await store.outbox_next_due() == _at(5)
    assert await store.outbox_claim(head, A, _at(5), _at(5) + LEASE)
    assert await store.outbox_next_due() == _at(5) + LEASE, "a leased head is due again when its lease runs out"
    late = await _add(store, "B", "1", at=100)
    assert await store.outbox_next_due() == _at(5) + LEASE
    await store.outbox_done(head, None, _at(6))
    assert await store.outbox_next_due() == _at(1)
    assert late > head


async def test_coalesced_add_is_covered_by_a_waiting_item_only(store: Store) -> None:
    waiting = await store.outbox_add_coalesced("A", "update", "ref1", None, {}, ("update", "parent"), T0)
    assert waiting is not None
    assert await store.outbox_add_coalesced("A", "update", "ref1", None, {}, ("update", "parent"), _at(1)) is None
    assert await store.outbox_add_coalesced("A", "update", "ref2", None, {}, ("update", "parent"), _at(1)), \
        "another message's item does not cover it"
    assert await store.outbox_add_coalesced("A", "reply", "ref1", None, {}, ("reply",), _at(1)), \
        "an item of another kind does not cover it"
    # Once the waiting item's delivery started (a live lease), it may render older state: add the new one.
    assert await store.outbox_claim(waiting, A, _at(2), _at(2) + LEASE)
    assert await store.outbox_add_coalesced("A", "update", "ref1", None, {}, ("update", "parent"), _at(3))
    assert await store.outbox_pending() == 4


async def test_concurrent_coalesced_adds_store_one(store_pair: tuple[Store, Store]) -> None:
    one, two = store_pair
    results = await asyncio.gather(*(
        (one if i % 2 else two).outbox_add_coalesced("A", "update", "ref1", None, {}, ("update",), T0)
        for i in range(12)))
    assert sum(r is not None for r in results) == 1
    assert await one.outbox_pending() == 1


async def test_prune_deletes_only_items_finished_before_the_cutoff(store: Store) -> None:
    done_old = await _add(store, "A", "1")
    failed_old = await _add(store, "B", "1")
    done_new = await _add(store, "C", "1")
    waiting = await _add(store, "D", "1")
    await store.outbox_done(done_old, None, _at(10))
    await store.outbox_fail(failed_old, "x", _at(10))
    await store.outbox_done(done_new, None, _at(100))
    assert await store.outbox_prune(_at(50)) == 2
    assert await store.outbox_failed() == []
    assert await store.outbox_prune(_at(50)) == 0
    assert await store.outbox_prune(_at(10_000)) == 1
    assert [i.id for i in await store.outbox_due(_at(10_000), 10)] == [waiting], "undone items are never pruned"


async def test_stats_count_undone_items_and_the_age_of_the_oldest(store: Store) -> None:
    empty = await store.outbox_stats(T0)
    assert (empty.depth, empty.oldest_age) == (0, None)
    first = await _add(store, "A", "1", at=0)
    await _add(store, "A", "2", at=10)
    await _add(store, "B", "1", at=20)
    stats = await store.outbox_stats(_at(70))
    assert stats.depth == 3
    assert stats.oldest_age == pytest.approx(70.0, abs=0.01)
    await store.outbox_done(first, None, _at(71))
    stats = await store.outbox_stats(_at(70))
    assert stats.depth == 2 and stats.oldest_age == pytest.approx(60.0, abs=0.01)
