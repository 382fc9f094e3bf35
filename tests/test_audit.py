"""The audit trail in the store (migration 4, ``bridge.storage.sqlite.audit``): rows, the rate-limit count, outcomes.

Run on every engine (the ``store`` fixture of tests/conftest.py) but the SQLite migration and closed-file tests."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bridge.model import AuditAction, SendRequest
from bridge.storage.engines import open_store
from bridge.storage.port import Store, StoreUnavailable
from bridge.storage.sqlite.store import MIGRATIONS, SqliteStore
from sw_api.models import MessageStatus

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
TO, FROM = "+15551234567", "+15557770000"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def add(store: Store, seconds: float, action: AuditAction = AuditAction.SEND, user: str = "U1",
              **extra: str) -> str:
    return await store.audit_add(at=at(seconds), user_id=user, channel_id="C1", action=action, to_number=TO,
                                 from_number=FROM, **extra)


async def test_migration_4_is_registered_and_applied(tmp_path: Path) -> None:
    assert 4 in MIGRATIONS
    store = await SqliteStore.open(str(tmp_path / "m.db"))
    await store.close()
    with sqlite3.connect(tmp_path / "m.db") as raw:
        versions = {v for (v,) in raw.execute("SELECT version FROM schema_version")}
        indexes = {n for (n,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        plan = " ".join(str(r) for r in raw.execute(
            "EXPLAIN QUERY PLAN SELECT at FROM audit WHERE user_id = 'U1' AND at > '2025' "
            "AND action IN ('send', 'retry', 'reply')"))
    assert 4 in versions
    assert {"audit_user_at", "audit_ref"} <= indexes
    # The per-send rate check must be an index range scan, not a scan of the whole trail.
    assert "audit_user_at" in plan and "SCAN audit" not in plan


async def test_add_and_list_round_trip_every_field(store: Store) -> None:
    audit_id = await add(store, 0, AuditAction.REFUSED, reason="send: user not allowed")
    [entry] = await store.audit_list()
    assert entry.id == audit_id
    assert entry.at == T0
    assert (entry.user_id, entry.channel_id, entry.action) == ("U1", "C1", AuditAction.REFUSED)
    assert (entry.to_number, entry.from_number) == (TO, FROM)
    assert entry.reason == "send: user not allowed"
    assert entry.ref is None and entry.outcome is None


async def test_list_is_newest_first_and_limited(store: Store) -> None:
    ids = [await add(store, s) for s in (0, 2, 1)]
    listed = await store.audit_list(limit=2)
    assert [e.id for e in listed] == [ids[1], ids[2]]
    assert await store.audit_list(limit=0) == []


async def test_only_send_attempts_in_the_window_are_counted(store: Store) -> None:
    await add(store, 0)                           # too old for a window starting at 10 s
    await add(store, 10)                          # exactly at ``since``: not after it
    await add(store, 20, AuditAction.RETRY)
    await add(store, 30, AuditAction.REPLY)
    await add(store, 40, AuditAction.REFUSED)     # refusals never count
    await add(store, 50, user="U2")               # someone else
    assert await store.audit_recent_sends("U1", at(10)) == 2
    assert await store.audit_send_times("U1", at(10)) == [at(20), at(30)]
    assert await store.audit_recent_sends("U1", at(-1)) == 4
    assert await store.audit_recent_sends("U9", at(-1)) == 0


async def test_timestamps_in_other_zones_and_whole_seconds_order_correctly(store: Store) -> None:
    # Text comparison must still be time comparison: same instant in another zone, with and without microseconds.
    zone = datetime(2025, 3, 1, 13, 0, 0, 500000, tzinfo=UTC).astimezone(timezone(timedelta(hours=5)))
    await store.audit_add(at=zone, user_id="U1", channel_id="C1", action=AuditAction.SEND)
    assert await store.audit_recent_sends("U1", datetime(2025, 3, 1, 13, 0, 0, tzinfo=UTC)) == 1
    assert await store.audit_recent_sends("U1", datetime(2025, 3, 1, 13, 0, 1, tzinfo=UTC)) == 0


async def test_link_takes_the_messages_current_status(store: Store) -> None:
    audit_id = await add(store, 0)
    request = SendRequest(user_id="U1", channel_id="C1", to=TO, from_=FROM, body="hi")
    await store.create_outbound("ref1", request, T0)
    await store.mark_accepted("ref1", "sw-1", 1, T0)
    # A receipt arrived before the handler linked its row: the link must not go back to an older outcome.
    await store.record_status("ref1", MessageStatus.DELIVERED, None, None, None, at(1))
    await store.audit_link(audit_id, "ref1", "queued")
    [entry] = await store.audit_list()
    assert (entry.ref, entry.outcome) == ("ref1", "delivered")


async def test_link_names_the_error_code_and_falls_back_to_the_callers_outcome(store: Store) -> None:
    first, second = await add(store, 0), await add(store, 1)
    request = SendRequest(user_id="U1", channel_id="C1", to=TO, from_=FROM, body="hi")
    await store.create_outbound("ref1", request, T0)
    await store.mark_rejected("ref1", "21211", "invalid To", T0)
    await store.audit_link(first, "ref1", "ignored")
    await store.audit_link(second, None, "not sent: opted out")
    by_id = {e.id: e for e in await store.audit_list()}
    assert by_id[first].outcome == "rejected (21211)"
    assert (by_id[second].ref, by_id[second].outcome) == (None, "not sent: opted out")


async def test_outcome_updates_every_row_of_that_ref_only(store: Store) -> None:
    mine, other = await add(store, 0), await add(store, 1)
    await store.audit_link(mine, "ref1", "queued")
    await store.audit_link(other, "ref2", "queued")
    assert await store.audit_outcome("ref1", "failed (30003)") is True
    assert await store.audit_outcome("nope", "delivered") is False
    by_id = {e.id: e for e in await store.audit_list()}
    assert by_id[mine].outcome == "failed (30003)"
    assert by_id[other].outcome == "queued"


async def test_unknown_action_is_refused_by_the_schema(store: Store) -> None:
    with pytest.raises((StoreUnavailable, ValueError)):
        await store.audit_add(at=T0, user_id="U1", channel_id="C1", action="delete")  # type: ignore[arg-type]


async def test_closed_store_raises_store_unavailable(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'c.db'}")
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.audit_recent_sends("U1", T0)
    with pytest.raises(StoreUnavailable):
        await add(store, 0)
