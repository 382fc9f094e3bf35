"""The storage contract of issue 12's scheduled sends (migration 16), on every engine: a scheduled message is stored
with its due time unless the number opted out or is blocked, waits untouched by the send paths, is listed per user
and when due, and leaves ``scheduled`` exactly once — even when two replicas (or a Cancel and the due loop) race.

Uses the ``store`` / ``store_pair`` fixtures of tests/conftest.py (SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bridge.model import SCHEDULE_ORIGIN, ScheduleOutcome, SendRequest, SendState
from bridge.storage.port import Store

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
OURS, THEIRS, OTHER = "+15557770000", "+15551234567", "+15559990000"


def _request(body: str, user: str = "U0ALICE", to: str = THEIRS) -> SendRequest:
    return SendRequest(user_id=user, channel_id="C0GENERAL", to=to, from_=OURS, body=body, origin=SCHEDULE_ORIGIN)


async def test_scheduled_is_stored_waits_and_is_listed(store: Store) -> None:
    sms = await store.create_scheduled("s1", _request("later"), T0 + timedelta(hours=2), "Asia/Kolkata", T0)
    assert sms is not None and sms.state is SendState.SCHEDULED and sms.body == "later"
    await store.create_scheduled("s2", _request("sooner"), T0 + timedelta(hours=1), "Asia/Kolkata", T0)
    await store.create_scheduled("s3", _request("bob's", user="U0BOB"), T0 + timedelta(minutes=5), "UTC", T0)
    assert [i.sms.ref for i in await store.scheduled_of_user("U0ALICE")] == ["s2", "s1"]
    got = await store.get_scheduled("s1")
    assert got is not None and got.due_at == T0 + timedelta(hours=2) and got.tz == "Asia/Kolkata"
    assert got.state is ScheduleOutcome.SCHEDULED and got.finished_at is None
    assert await store.get_scheduled("nope") is None
    # Nothing else picks it up: not pending, so neither the sweeper nor the send paths see it.
    assert await store.due([SendState.PENDING], T0 + timedelta(days=1)) == []
    assert [i.sms.ref for i in await store.due_scheduled(T0 + timedelta(hours=1))] == ["s3", "s2"]
    assert await store.due_scheduled(T0) == []


async def test_opted_out_or_blocked_is_not_scheduled(store: Store) -> None:
    await store.set_opt_out(OURS, THEIRS, "STOP", T0)
    assert await store.create_scheduled("s1", _request("no"), T0 + timedelta(hours=1), "UTC", T0) is None
    await store.block_number(OTHER, "spam", "U0BOB", T0)
    assert await store.create_scheduled("s2", _request("no", to=OTHER), T0 + timedelta(hours=1), "UTC", T0) is None
    assert await store.get_outbound("s1") is None and await store.get_scheduled("s2") is None


async def test_finish_moves_the_message_once(store: Store) -> None:
    await store.create_scheduled("s1", _request("go"), T0, "UTC", T0)
    await store.create_scheduled("s2", _request("stop"), T0, "UTC", T0)
    assert await store.finish_scheduled("s1", ScheduleOutcome.RELEASED, None, "", T0)
    assert not await store.finish_scheduled("s1", ScheduleOutcome.CANCELLED, "U0ALICE", "cancelled", T0)
    released = await store.get_outbound("s1")
    assert released is not None and released.state is SendState.PENDING
    assert await store.finish_scheduled("s2", ScheduleOutcome.CANCELLED, "U0ALICE", "Cancelled by U0ALICE", T0)
    cancelled = await store.get_outbound("s2")
    assert cancelled is not None and cancelled.state is SendState.REJECTED and cancelled.error_code == "cancelled"
    item = await store.get_scheduled("s2")
    assert item is not None and item.state is ScheduleOutcome.CANCELLED and item.finished_by == "U0ALICE"
    assert await store.scheduled_of_user("U0ALICE") == [] and await store.due_scheduled(T0) == []


async def test_two_replicas_racing_one_due_send_have_one_winner(store_pair: tuple[Store, Store]) -> None:
    one, two = store_pair
    for n in range(10):
        await one.create_scheduled(f"r{n}", _request(f"race {n}"), T0, "UTC", T0)
    for n in range(10):
        outcomes = (ScheduleOutcome.RELEASED, ScheduleOutcome.CANCELLED if n % 2 else ScheduleOutcome.RELEASED)
        wins = await asyncio.gather(one.finish_scheduled(f"r{n}", outcomes[0], None, "", T0),
                                    two.finish_scheduled(f"r{n}", outcomes[1], "U0ALICE", "cancelled", T0))
        assert sorted(wins) == [False, True]
        item = await two.get_scheduled(f"r{n}")
        sms = await one.get_outbound(f"r{n}")
        assert item is not None and sms is not None
        assert (item.state is ScheduleOutcome.RELEASED) == (sms.state is SendState.PENDING)
