"""The audit trail shared by every replica (migration 4), run on every engine: the rate limit counts the send
attempts made through any replica, in time order, and a link fills in what the handler did not know.

Uses the ``store`` / ``store_pair`` fixtures of tests/conftest.py (SQLite and PostgreSQL); the rest of the audit
contract is in tests/test_audit.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bridge.model import AuditAction, SendRequest
from bridge.storage.port import Store

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
TO, FROM = "+15551234567", "+15557770000"


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_the_rate_limit_sees_attempts_made_through_every_replica(store_pair: tuple[Store, Store]) -> None:
    one, two = store_pair
    ids = await asyncio.gather(*(
        (one if n % 2 else two).audit_add(at=_at(n), user_id="U1", channel_id="C1", action=AuditAction.SEND)
        for n in range(12)))
    assert len(set(ids)) == 12, "every row has its own id"
    assert await one.audit_recent_sends("U1", _at(-1)) == 12
    assert await two.audit_send_times("U1", _at(5)) == [_at(n) for n in range(6, 12)], "oldest first"


async def test_send_times_are_in_time_order_whatever_the_insert_order(store: Store) -> None:
    for n in (30, 10, 20):
        await store.audit_add(at=_at(n), user_id="U1", channel_id="C1", action=AuditAction.RETRY)
    await store.audit_add(at=_at(15), user_id="U1", channel_id="C1", action=AuditAction.REFUSED, reason="limit")
    assert await store.audit_send_times("U1", T0) == [_at(10), _at(20), _at(30)]
    assert await store.audit_send_times("U2", T0) == []


async def test_link_fills_in_the_numbers_a_retry_row_did_not_know(store: Store) -> None:
    request = SendRequest(user_id="U1", channel_id="C1", to=TO, from_=FROM, body="hi")
    await store.create_outbound("orig", request, T0)
    await store.create_retry_intent("retry1", replace(request, origin="retry", retry_of="orig"), "U1", _at(1))
    audit_id = await store.audit_add(at=_at(1), user_id="U1", channel_id="C1", action=AuditAction.RETRY)
    await store.audit_link(audit_id, "retry1", "queued")
    [entry] = await store.audit_list()
    assert (entry.id, entry.ref, entry.to_number, entry.from_number, entry.outcome) == (
        audit_id, "retry1", TO, FROM, "pending")
    assert await store.audit_outcome("retry1", "delivered")
    [entry] = await store.audit_list()
    assert entry.outcome == "delivered"
