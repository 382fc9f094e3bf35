"""The store's part in telling each receipt exactly once (migration 7): which recorded statuses still need their
Slack announcement, and ``announce_status`` queuing a batch of outbox items atomically with that marker.

Run on every engine (the ``store`` fixture of tests/conftest.py) but the SQLite upgrade test.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bridge.model import OutboxWrite, SendRequest
from bridge.storage.port import Store
from bridge.storage.sqlite.store import MIGRATIONS, SqliteStore
from sw_api.models import MessageStatus

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
REQUEST = SendRequest(user_id="U0USER", channel_id="C0CHAN", to="+15551234567", from_="+15557770000", body="hi")
RECEIPT = OutboxWrite("C0CHAN", "post", None, "C0CHAN", {"text": "✅ Delivered", "blocks": None, "thread_ts": "1.2"})
REPAINT = OutboxWrite("C0CHAN", "update", "ref1", None, {}, ("update", "parent"))


def _at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def _accepted(store: Store, ref: str = "ref1") -> None:
    await store.create_outbound(ref, REQUEST, T0)
    await store.mark_accepted(ref, f"SM-{ref}", 1, _at(1))


async def test_an_advancing_status_waits_to_be_announced_in_recorded_order(store: Store) -> None:
    await _accepted(store)
    await store.record_status("ref1", MessageStatus.QUEUED, None, None, None, _at(2))
    await store.record_status("ref1", MessageStatus.SENT, None, None, None, _at(3))
    assert await store.unannounced("ref1") == [MessageStatus.QUEUED, MessageStatus.SENT]
    assert await store.refs_with_unannounced() == ["ref1"]


async def test_duplicates_and_stragglers_never_need_an_announcement(store: Store) -> None:
    await _accepted(store)
    await store.record_status("ref1", MessageStatus.DELIVERED, None, None, None, _at(2))
    assert await store.announce_status("ref1", "delivered", [], _at(3))
    await store.record_status("ref1", MessageStatus.DELIVERED, None, None, None, _at(4))  # duplicate
    await store.record_status("ref1", MessageStatus.SENT, None, None, None, _at(5))  # straggler
    await store.record_status("ref1", MessageStatus.UNDELIVERED, "30003", "x", None, _at(6))  # same rank
    assert await store.unannounced("ref1") == []
    assert not await store.announce_status("ref1", "sent", [RECEIPT], _at(7))
    assert await store.outbox_pending() == 0


async def test_announce_status_queues_its_batch_exactly_once(store: Store) -> None:
    await _accepted(store)
    await store.record_status("ref1", MessageStatus.DELIVERED, None, None, None, _at(2))
    assert await store.announce_status("ref1", "delivered", [REPAINT, RECEIPT], _at(3))
    assert await store.outbox_pending() == 2
    # A redelivered callback, the sweeper, a second replica: nothing more is queued.
    assert not await store.announce_status("ref1", "delivered", [REPAINT, RECEIPT], _at(4))
    assert await store.outbox_pending() == 2
    assert await store.unannounced("ref1") == [] and await store.refs_with_unannounced() == []


async def test_a_batch_repaint_still_coalesces_with_a_waiting_one(store: Store) -> None:
    await _accepted(store)
    assert await store.outbox_add_coalesced("C0CHAN", "update", "ref1", None, {}, ("update", "parent"), _at(1))
    await store.record_status("ref1", MessageStatus.SENT, None, None, None, _at(2))
    assert await store.announce_status("ref1", "sent", [REPAINT, RECEIPT], _at(3))
    assert await store.outbox_pending() == 2  # the waiting repaint covers the batch's


async def test_nothing_to_announce_for_a_status_never_recorded(store: Store) -> None:
    await _accepted(store)
    assert not await store.announce_status("ref1", "delivered", [RECEIPT], _at(1))
    assert await store.outbox_pending() == 0


async def test_only_accepted_messages_are_swept(store: Store) -> None:
    await store.create_outbound("early", REQUEST, T0)
    await store.mark_submitting("early", _at(1))
    # A callback faster than the create answer: its POST's owner announces it once the answer is stored.
    await store.record_status("early", MessageStatus.QUEUED, None, None, None, _at(2))
    assert await store.unannounced("early") == [MessageStatus.QUEUED]
    assert await store.refs_with_unannounced() == []


async def test_receipts_are_announced_in_rank_order_whoever_announces(store: Store) -> None:
    """A higher-rank status cannot be announced while a lower-rank one that advanced the message is untold: two
    replicas handling "sent" and "delivered" at once still queue the receipts in rank order."""
    await _accepted(store)
    await store.record_status("ref1", MessageStatus.QUEUED, None, None, None, _at(2))
    await store.record_status("ref1", MessageStatus.SENT, None, None, None, _at(3))
    await store.record_status("ref1", MessageStatus.DELIVERED, None, None, None, _at(4))
    assert not await store.announce_status("ref1", "delivered", [RECEIPT], _at(5))
    assert not await store.announce_status("ref1", "sent", [RECEIPT], _at(5))
    assert await store.outbox_pending() == 0, "a refused announcement added nothing"
    assert await store.unannounced("ref1") == [MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED]
    assert await store.announce_status("ref1", "queued", [RECEIPT], _at(6))
    assert not await store.announce_status("ref1", "delivered", [RECEIPT], _at(6))
    assert await store.announce_status("ref1", "sent", [RECEIPT], _at(7))
    assert await store.announce_status("ref1", "delivered", [RECEIPT], _at(8))
    assert await store.outbox_pending() == 3
    assert await store.unannounced("ref1") == []


async def test_concurrent_announcements_of_one_status_queue_one_batch(store_pair: tuple[Store, Store]) -> None:
    one, two = store_pair
    await _accepted(one)
    await one.record_status("ref1", MessageStatus.DELIVERED, None, None, None, _at(2))
    results = await asyncio.gather(*(
        (one if i % 2 else two).announce_status("ref1", "delivered", [REPAINT, RECEIPT], _at(3)) for i in range(12)))
    assert results.count(True) == 1
    assert await one.outbox_pending() == 2


async def test_sqlite_migration_7_counts_existing_history_as_told(tmp_path: Path) -> None:
    """SQLite only: upgrading a database an old release left (PostgreSQL starts at the baseline of migration 10)."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # a database as the previous release left it
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for version, script in sorted(MIGRATIONS.items()):
            if version < 7:
                db.executescript(script)
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        db.execute("""INSERT INTO outbound (ref, created_at, updated_at, channel_id, user_id, to_number, from_number,
                          body, origin, state, status) VALUES ('old', 'x', 'x', 'C', 'U', '+1', '+1', 'b', 'command',
                          'accepted', 'delivered')""")
        db.execute("INSERT INTO status_event (ref, status, received_at) VALUES ('old', 'delivered', 'x')")
    store = await SqliteStore.open(str(path))
    try:
        assert await store.schema_version() == max(MIGRATIONS)
        assert await store.unannounced("old") == [] and await store.refs_with_unannounced() == []
    finally:
        await store.close()


async def test_refs_with_unannounced_is_limited(store: Store) -> None:
    for ref in ("a", "b", "c"):
        await _accepted(store, ref)
        await store.record_status(ref, MessageStatus.SENT, None, None, None, _at(2))
    assert sorted(await store.refs_with_unannounced()) == ["a", "b", "c"]
    assert len(await store.refs_with_unannounced(limit=2)) == 2
