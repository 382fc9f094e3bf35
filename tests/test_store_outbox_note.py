"""The storage contract of ``outbox_note_result`` (issue 11, mms-in): an attempt records a value (an upload's file id)
on its claimed outbox item before it finishes, so a retry after a crash can resume instead of starting over.

Uses the ``store`` fixture of tests/conftest.py (SQLite and PostgreSQL).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.storage.port import Store

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
A, B = "host-1-a", "host-2-b"


async def _item(store: Store) -> int:
    await store.outbox_add("C1", "media", None, "C1", {"message_id": "m1", "position": 1}, T0)
    [item] = await store.outbox_due(T0, limit=10)
    return item.id


async def test_the_claim_holder_records_a_result_that_a_retry_reads(store: Store) -> None:
    item_id = await _item(store)
    assert await store.outbox_claim(item_id, A, T0, T0 + LEASE)
    assert await store.outbox_note_result(item_id, A, "file:F1")
    stored = await store.outbox_get(item_id)
    assert stored is not None and stored.result == "file:F1"
    # A crash: the claim runs out, another replica claims the item and sees the recorded file id.
    assert await store.outbox_claim(item_id, B, T0 + LEASE, T0 + 2 * LEASE)
    [again] = await store.outbox_due(T0 + 2 * LEASE + timedelta(seconds=1), limit=10)
    assert again.id == item_id and again.result == "file:F1"


async def test_only_the_claim_holder_of_an_undone_item_records(store: Store) -> None:
    item_id = await _item(store)
    assert not await store.outbox_note_result(item_id, A, "file:F1"), "nobody holds the claim"
    assert await store.outbox_claim(item_id, A, T0, T0 + LEASE)
    assert not await store.outbox_note_result(item_id, B, "file:F2"), "B does not hold it"
    await store.outbox_done(item_id, "file:F1", T0)
    assert not await store.outbox_note_result(item_id, A, "file:F3"), "done items are not changed"
    stored = await store.outbox_get(item_id)
    assert stored is not None and stored.result == "file:F1"
    assert not await store.outbox_note_result(999_999, A, "file:F4")
