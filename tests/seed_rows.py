"""Rows both administration tests (tests/test_store_admin.py, tests/test_copy_db.py) seed alike, written through
the port as the bridge writes them: issue 13's bulk tables (a batch, recipients — one handed, one quiet-held, one
skipped — an outbound message with ``bulk_id``, and a send pace)."""

from __future__ import annotations

from datetime import datetime, timedelta

from bridge.bulk_model import BULK_ORIGIN, BatchState, BulkBatch, BulkRecipientRow, RecipientState
from bridge.model import SendRequest
from bridge.storage.port import Store


async def seed_bulk(store: Store, ours: str, at: datetime) -> None:
    """One sending batch from ``ours`` with three recipients; adds one outbound row (``bulk1-0``)."""
    await store.bulk_create(BulkBatch("bulk1", "U1", "C1", ours, "Closed today, {name}", "Closed today",
                                      BatchState.DRAFT, 0, at, team_id="T1"), at)
    await store.bulk_add_recipients("bulk1", [
        BulkRecipientRow(0, 1, "+15553330000", "Ann", {"number": "+15553330000", "name": "Ann"}),
        BulkRecipientRow(1, 2, "+15553330001", None, {}, not_before=at + timedelta(hours=9)),
        BulkRecipientRow(2, 3, "+15553330002", None, {}, RecipientState.SKIPPED, "opted out"),
    ])
    await store.bulk_set_total("bulk1", 2)
    assert await store.bulk_move("bulk1", [BatchState.DRAFT], BatchState.SENDING, at)
    [(batch_id, row)] = await store.bulk_claim("owner-a", at, at + timedelta(seconds=30), 1)
    request = SendRequest(user_id="U1", channel_id="C1", to=row.number, from_=ours, body="Closed today, Ann",
                          team_id="T1", origin=BULK_ORIGIN)
    assert await store.bulk_hand_over(batch_id, row.seq, "owner-a", "bulk1-0", request, at) is not None
    await store.pace_reserve(ours, 1, 1.0, at)
