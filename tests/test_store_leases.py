"""The storage contract of leases on outbound messages (migration 10: ``claim_message`` / ``release_message``) and
the durable-sending queries they gate (``due`` skips a message under a live lease), run on every engine.

Uses the ``store`` fixture of tests/conftest.py (SQLite and PostgreSQL).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.model import SendRequest, SendState
from bridge.storage.port import Store

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
A, B = "host-1-a", "host-2-b"
REQUEST = SendRequest(user_id="U1", channel_id="C1", to="+15551234567", from_="+15557770000", body="hi")


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_a_message_is_leased_to_one_owner_while_the_lease_lives(store: Store) -> None:
    await store.create_outbound("r1", REQUEST, T0)
    assert await store.claim_message("r1", A, T0, T0 + LEASE)
    assert not await store.claim_message("r1", B, _at(1), _at(1) + LEASE)
    assert not await store.claim_message("r1", B, T0 + LEASE - timedelta(microseconds=1), _at(100))


async def test_the_owner_renews_by_claiming_again(store: Store) -> None:
    await store.create_outbound("r1", REQUEST, T0)
    assert await store.claim_message("r1", A, T0, T0 + LEASE)
    assert await store.claim_message("r1", A, _at(20), _at(20) + LEASE)
    assert not await store.claim_message("r1", B, T0 + LEASE, T0 + 2 * LEASE), "the renewal moved the expiry"
    assert await store.claim_message("r1", B, _at(20) + LEASE, _at(20) + 2 * LEASE)


async def test_an_expired_lease_is_taken_over_and_the_old_owner_loses_it(store: Store) -> None:
    await store.create_outbound("r1", REQUEST, T0)
    assert await store.claim_message("r1", A, T0, T0 + LEASE)
    assert await store.claim_message("r1", B, T0 + LEASE, T0 + 2 * LEASE), "A died: its lease ran out"
    assert not await store.claim_message("r1", A, T0 + LEASE + timedelta(seconds=1), T0 + 3 * LEASE)


async def test_release_frees_the_message_only_for_its_owner(store: Store) -> None:
    await store.create_outbound("r1", REQUEST, T0)
    assert await store.claim_message("r1", A, T0, T0 + LEASE)
    await store.release_message("r1", B)  # not B's: nothing happens
    assert not await store.claim_message("r1", B, _at(1), _at(1) + LEASE)
    await store.release_message("r1", A)
    assert await store.claim_message("r1", B, _at(1), _at(1) + LEASE), "released: free at once"
    await store.release_message("r1", A)  # A no longer holds it: B keeps its lease
    assert not await store.claim_message("r1", A, _at(2), _at(2) + LEASE)


async def test_an_unknown_message_cannot_be_leased(store: Store) -> None:
    assert not await store.claim_message("nope", A, T0, T0 + LEASE)
    await store.release_message("nope", A)


async def test_leases_are_per_message(store: Store) -> None:
    await store.create_outbound("r1", REQUEST, T0)
    await store.create_outbound("r2", REQUEST, T0)
    assert await store.claim_message("r1", A, T0, T0 + LEASE)
    assert await store.claim_message("r2", B, T0, T0 + LEASE)


async def test_due_skips_messages_under_a_live_lease(store: Store) -> None:
    await store.create_outbound("free", REQUEST, T0)
    await store.create_outbound("leased", REQUEST, _at(1))
    assert [s.ref for s in await store.due([SendState.PENDING], _at(2))] == ["free", "leased"]
    assert await store.claim_message("leased", A, _at(2), _at(2) + LEASE)
    assert [s.ref for s in await store.due([SendState.PENDING], _at(3))] == ["free"]
    assert [s.ref for s in await store.due([SendState.PENDING], _at(2) + LEASE)] == ["free", "leased"], \
        "a dead owner's message is due again once its lease runs out"
    await store.release_message("leased", A)
    assert [s.ref for s in await store.due([SendState.PENDING], _at(3))] == ["free", "leased"]


async def test_due_by_state_and_time_oldest_first_within_the_limit(store: Store) -> None:
    for n, ref in enumerate(("p1", "p2", "s1", "u1", "later")):
        await store.create_outbound(ref, REQUEST, _at(n))
    await store.mark_submitting("s1", _at(10))
    await store.mark_unknown("u1", "timeout", _at(10))
    await store.mark_pending("later", _at(100), _at(10))  # SignalWire said 429: not before _at(100)
    assert [s.ref for s in await store.due([SendState.PENDING], _at(20))] == ["p1", "p2"]
    assert [s.ref for s in await store.due([SendState.PENDING], _at(100))] == ["p1", "p2", "later"]
    assert [s.ref for s in await store.due([SendState.PENDING], _at(100), limit=1)] == ["p1"]
    assert [s.ref for s in await store.due([SendState.SUBMITTING, SendState.UNKNOWN], _at(20))] == ["s1", "u1"]
    await store.schedule("p2", _at(50), _at(20))
    assert [s.ref for s in await store.due([SendState.PENDING], _at(49))] == ["p1"]
    await store.schedule("p2", None, _at(21))
    assert [s.ref for s in await store.due([SendState.PENDING], _at(49))] == ["p1", "p2"]
    sms = await store.get_outbound("later")
    assert sms is not None and (sms.state, sms.next_attempt_at) == (SendState.PENDING, _at(100))
