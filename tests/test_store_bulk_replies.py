"""The storage contract of issue 13's bulk replies, on every engine: ``bulk_latest_to`` names the batch of the newest
outbound text of a pair only while that text is a bulk one (an ordinary text sent after it, or another pair's, does
not count), and the audit trail takes the bulk actions (migration 19) and reads them back.

Uses the ``store`` fixture of tests/conftest.py (SQLite and PostgreSQL).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.bulk_model import BULK_ORIGIN, BatchState, BulkBatch, BulkRecipientRow
from bridge.model import AuditAction, SendRequest, bulk_reason
from bridge.storage.port import Store

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
OURS = "+15557770000"
OTHER_OURS = "+15557770001"
DANA = "+15551234567"


def _request(to: str, origin: str = "command", from_: str = OURS) -> SendRequest:
    return SendRequest(user_id="U0ALICE", channel_id="C0GENERAL", to=to, from_=from_, body="hi", origin=origin)


async def _bulk_to(store: Store, batch_id: str, number: str, at: datetime) -> str:
    await store.bulk_create(BulkBatch(batch_id, "U0ALICE", "C0GENERAL", OURS, "hi", "Closed", BatchState.DRAFT, 0,
                                      at), at)
    await store.bulk_add_recipients(batch_id, [BulkRecipientRow(0, 1, number, None, {"number": number})])
    assert await store.bulk_move(batch_id, [BatchState.DRAFT], BatchState.SENDING, at, "U0ALICE")
    [(_, row)] = await store.bulk_claim("w", at, at + timedelta(seconds=30), 10)
    sms = await store.bulk_hand_over(batch_id, row.seq, "w", f"ref-{batch_id}", _request(number, BULK_ORIGIN), at)
    assert sms is not None
    return sms.ref


async def test_the_latest_outbound_of_a_pair_names_its_batch_only_while_it_is_a_bulk_text(store: Store) -> None:
    assert await store.bulk_latest_to(OURS, DANA) is None
    await store.create_outbound("r-old", _request(DANA), T0)
    assert await store.bulk_latest_to(OURS, DANA) is None, "an ordinary text is not a bulk one"
    await _bulk_to(store, "b1", DANA, T0 + timedelta(seconds=1))
    assert await store.bulk_latest_to(OURS, DANA) == ("b1", T0 + timedelta(seconds=1))
    # Another of our numbers, or another person, has its own latest text.
    await store.create_outbound("r-other", _request(DANA, from_=OTHER_OURS), T0 + timedelta(seconds=2))
    await store.create_outbound("r-else", _request("+15559990000"), T0 + timedelta(seconds=2))
    assert await store.bulk_latest_to(OURS, DANA) == ("b1", T0 + timedelta(seconds=1))
    assert await store.bulk_latest_to(OTHER_OURS, DANA) is None
    # An ordinary text after the bulk one: the next reply answers that, not the batch.
    await store.create_outbound("r-new", _request(DANA), T0 + timedelta(seconds=3))
    assert await store.bulk_latest_to(OURS, DANA) is None


async def test_the_audit_trail_takes_the_bulk_actions(store: Store) -> None:
    ref = await _bulk_to(store, "b2", DANA, T0)
    await store.audit_add(at=T0, user_id="U0ALICE", channel_id="C0GENERAL", action=AuditAction.BULK,
                          from_number=OURS, reason=bulk_reason("b2", 1))
    row_id = await store.audit_add(at=T0 + timedelta(seconds=1), user_id="U0ALICE", channel_id="C0GENERAL",
                                   action=AuditAction.BULK_SEND, to_number=DANA, from_number=OURS, ref=ref,
                                   reason=bulk_reason("b2"))
    await store.audit_link(row_id, ref, "pending")
    send, batch = await store.audit_list()
    assert (batch.action, batch.reason, batch.from_number) == (AuditAction.BULK, "batch b2: 1 recipient", OURS)
    assert (send.action, send.to_number, send.ref, send.reason) == (AuditAction.BULK_SEND, DANA, ref, "batch b2")
    assert send.outcome == "pending"  # the message's own state, read by the link
    # Bulk texts are not a person's sends one at a time: they never count towards the per-user rate limit.
    assert await store.audit_recent_sends("U0ALICE", T0 - timedelta(seconds=1)) == 0
