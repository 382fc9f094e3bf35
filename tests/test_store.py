"""The storage contract of ``bridge.storage.port.Store`` for outbound messages, delivery status, Retry and secrets,
run against every engine.

The ``store`` and ``database_url`` fixtures (tests/conftest.py) are parametrised by engine (SQLite, PostgreSQL):
every test below runs unchanged on both. Tests that reach below the contract (SQLite files, locks, migrations) are
named ``test_sqlite_*``, say so in their docstring and use ``SqliteStore`` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sqlite3
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bridge.model import OutboundSms, SendRequest, SendState
from bridge.storage.engines import open_store
from bridge.storage.port import Store, StoreUnavailable
from bridge.storage.sqlite.store import MIGRATIONS, SqliteStore
from sw_api.models import MessageStatus
from tests.pg import throwaway_database

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)

REQUEST = SendRequest(
    user_id="U0USER",
    channel_id="C0CHAN",
    team_id="T0TEAM",
    to="+15551234567",
    from_="+15557770000",
    body="Running 10 min late — sorry! 😀",
    media=("https://example.com/a.png", "https://example.com/b.jpg"),
    send_as_mms=True,
    origin="modal",
    retry_of="0123abcd",
    thread_ts="1700000000.000100",
)


def _at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def _outbound(store: Store, ref: str = "ref1", request: SendRequest = REQUEST, at: int = 0) -> OutboundSms:
    return await store.create_outbound(ref, request, _at(at))


# --- outbound messages -----------------------------------------------------------------------------------


async def test_create_and_get_round_trip_every_field(store: Store) -> None:
    created = await _outbound(store)
    fetched = await store.get_outbound("ref1")
    assert fetched == created
    assert fetched == OutboundSms(
        ref="ref1",
        created_at=T0,
        updated_at=T0,
        user_id="U0USER",
        channel_id="C0CHAN",
        team_id="T0TEAM",
        to="+15551234567",
        from_="+15557770000",
        body="Running 10 min late — sorry! 😀",
        media=("https://example.com/a.png", "https://example.com/b.jpg"),
        send_as_mms=True,
        origin="modal",
        state=SendState.PENDING,
        sw_id=None,
        status=None,
        error_code=None,
        error_message=None,
        segments=None,
        parent_ts="1700000000.000100",
        retry_of="0123abcd",
    )
    assert fetched.created_at.tzinfo is not None


async def test_minimal_request_defaults(store: Store) -> None:
    request = SendRequest(user_id="U1", channel_id="C1", to="+15551234567", from_="12345", body="hi")
    sms = await store.create_outbound("r", request, T0)
    assert (sms.media, sms.send_as_mms, sms.team_id, sms.origin) == ((), False, "", "command")
    assert (sms.parent_ts, sms.retry_of, sms.is_mms) == (None, None, False)


async def test_timestamps_in_other_zones_come_back_as_the_same_instant(store: Store) -> None:
    plus_two = T0.astimezone(timezone(timedelta(hours=2)))
    sms = await store.create_outbound("r", REQUEST, plus_two)
    assert sms.created_at == T0
    assert sms.created_at.utcoffset() == timedelta(0)


async def test_unknown_ref(store: Store) -> None:
    assert await store.get_outbound("nope") is None
    assert await store.find_by_sw_id("SM-nope") is None
    with pytest.raises(KeyError):
        await store.set_parent("nope", "1.2", T0)
    with pytest.raises(KeyError):
        await store.record_status("nope", MessageStatus.SENT, None, None, None, T0)


async def test_set_parent(store: Store) -> None:
    request = SendRequest(user_id="U1", channel_id="C1", to="+15551234567", from_="+15557770000", body="hi")
    await store.create_outbound("r", request, T0)
    sms = await store.set_parent("r", "1700000001.000200", _at(5))
    assert sms.parent_ts == "1700000001.000200"
    assert sms.updated_at == _at(5)
    assert sms.created_at == T0
    assert (await store.get_outbound("r")) == sms


async def test_state_transitions_to_accepted(store: Store) -> None:
    await _outbound(store)
    sms = await store.mark_submitting("ref1", _at(1))
    assert sms.state is SendState.SUBMITTING
    assert sms.updated_at == _at(1)
    sms = await store.mark_accepted("ref1", "SM-abc", 3, _at(2))
    assert (sms.state, sms.sw_id, sms.segments, sms.updated_at) == (SendState.ACCEPTED, "SM-abc", 3, _at(2))
    # Accepting does not invent a delivery status: that only comes through record_status.
    assert sms.status is None
    assert await store.find_by_sw_id("SM-abc") == sms


async def test_mark_rejected_keeps_the_reason(store: Store) -> None:
    await _outbound(store)
    await store.mark_submitting("ref1", _at(1))
    sms = await store.mark_rejected("ref1", "21610", "Attempt to send to unsubscribed recipient", _at(2))
    assert sms.state is SendState.REJECTED
    assert (sms.error_code, sms.error_message) == ("21610", "Attempt to send to unsubscribed recipient")
    assert sms.sw_id is None
    sms = await store.mark_rejected("ref1", None, "could not post in the channel", _at(3))
    assert (sms.error_code, sms.error_message) == (None, "could not post in the channel")


async def test_mark_unknown(store: Store) -> None:
    await _outbound(store)
    sms = await store.mark_unknown("ref1", "no answer within 10 s", _at(4))
    assert sms.state is SendState.UNKNOWN
    assert sms.error_message == "no answer within 10 s"
    assert sms.updated_at == _at(4)


# --- delivery status ------------------------------------------------------------------------------------


async def _accepted(store: Store, ref: str = "ref1") -> None:
    await _outbound(store, ref)
    await store.mark_accepted(ref, f"SM-{ref}", 1, _at(1))


async def test_record_status_first_time_is_new_and_advances(store: Store) -> None:
    await _accepted(store)
    change = await store.record_status("ref1", MessageStatus.QUEUED, None, None, _at(1), _at(2))
    assert (change.new, change.advanced) == (True, True)
    assert change.sms.status is MessageStatus.QUEUED
    assert change.sms.updated_at == _at(2)
    assert [r.status for r in change.history] == [MessageStatus.QUEUED]
    assert change.history[0].event_at == _at(1)
    assert change.history[0].received_at == _at(2)


async def test_record_status_same_status_twice_is_a_duplicate(store: Store) -> None:
    await _accepted(store)
    first = await store.record_status("ref1", MessageStatus.SENT, None, None, None, _at(2))
    second = await store.record_status("ref1", MessageStatus.SENT, None, None, None, _at(3))
    assert (first.new, first.advanced) == (True, True)
    assert (second.new, second.advanced) == (False, False)
    assert len(await store.history("ref1")) == 1
    # The duplicate did not touch the message.
    assert second.sms.updated_at == _at(2)


async def test_record_status_never_moves_backwards(store: Store) -> None:
    await _accepted(store)
    await store.record_status("ref1", MessageStatus.DELIVERED, None, None, None, _at(2))
    late = await store.record_status("ref1", MessageStatus.SENT, None, None, None, _at(3))
    assert late.new is True
    assert late.advanced is False
    assert late.sms.status is MessageStatus.DELIVERED
    assert (await store.get_outbound("ref1")).status is MessageStatus.DELIVERED  # type: ignore[union-attr]
    assert [r.status for r in await store.history("ref1")] == [MessageStatus.DELIVERED, MessageStatus.SENT]


async def test_record_status_a_final_status_does_not_replace_another(store: Store) -> None:
    await _accepted(store)
    await store.record_status("ref1", MessageStatus.DELIVERED, None, None, None, _at(2))
    change = await store.record_status("ref1", MessageStatus.UNDELIVERED, "30003", "Unreachable", None, _at(3))
    assert change.advanced is False
    assert (change.sms.status, change.sms.error_code) == (MessageStatus.DELIVERED, None)


async def test_record_status_failure_sets_error_fields(store: Store) -> None:
    await _accepted(store)
    await store.record_status("ref1", MessageStatus.SENT, None, None, None, _at(2))
    change = await store.record_status(
        "ref1", MessageStatus.UNDELIVERED, "30007", "Message filtered by carrier", _at(3), _at(4)
    )
    assert change.advanced is True
    sms = change.sms
    assert (sms.status, sms.error_code, sms.error_message) == (
        MessageStatus.UNDELIVERED, "30007", "Message filtered by carrier",
    )
    record = change.history[-1]
    assert (record.error_code, record.error_message, record.event_at) == (
        "30007", "Message filtered by carrier", _at(3),
    )


async def test_history_is_per_message_in_arrival_order(store: Store) -> None:
    await _accepted(store, "a")
    await _accepted(store, "b")
    for i, status in enumerate((MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED)):
        await store.record_status("a", status, None, None, None, _at(10 + i))
    await store.record_status("b", MessageStatus.FAILED, "30005", "Unknown destination", None, _at(11))
    assert [r.status for r in await store.history("a")] == [
        MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED,
    ]
    assert [r.status for r in await store.history("b")] == [MessageStatus.FAILED]
    assert await store.history("unknown") == []


async def test_concurrent_callbacks_all_land(store: Store) -> None:
    """SignalWire fires queued/sent/delivered within milliseconds: concurrent recording must not fail."""
    refs = [f"r{i}" for i in range(6)]
    for ref in refs:
        await _accepted(store, ref)
    statuses = (MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.SENT)
    changes = await asyncio.gather(
        *(store.record_status(ref, s, None, None, None, _at(5)) for ref in refs for s in statuses)
    )
    assert sum(1 for c in changes if not c.new) == len(refs)  # the repeated "sent" of each message
    for ref in refs:
        sms = await store.get_outbound(ref)
        assert sms is not None and sms.status is MessageStatus.DELIVERED
        assert len(await store.history(ref)) == 3


# --- durable sending: attempts, the reconciliation window, counters ------------------------------------------


async def test_submitting_counts_attempts_and_remembers_when_the_post_started(store: Store) -> None:
    await _outbound(store)
    await store.mark_pending("ref1", _at(30), _at(1))
    sms = await store.mark_submitting("ref1", _at(31))
    assert (sms.attempts, sms.submitted_at, sms.next_attempt_at) == (1, _at(31), None)
    back = await store.mark_pending("ref1", None, _at(32))
    assert (back.state, back.next_attempt_at, back.attempts) == (SendState.PENDING, None, 1)
    sms = await store.mark_submitting("ref1", _at(40))
    assert (sms.attempts, sms.submitted_at) == (2, _at(40))


async def test_note_sw_id_keeps_the_first_id_and_changes_nothing_else(store: Store) -> None:
    await _outbound(store)
    await store.mark_submitting("ref1", _at(1))
    await store.note_sw_id("ref1", "SM-early", _at(2))
    sms = await store.get_outbound("ref1")
    assert sms is not None and (sms.sw_id, sms.state) == ("SM-early", SendState.SUBMITTING)
    assert await store.find_by_sw_id("SM-early") == sms
    await store.note_sw_id("ref1", "SM-other", _at(3))
    assert (await store.get_outbound("ref1")).sw_id == "SM-early"  # type: ignore[union-attr]


async def test_unfinished_lists_accepted_messages_without_a_final_status_until_checked(store: Store) -> None:
    for ref in ("old", "final", "young", "rejected"):
        await _outbound(store, ref)
    for ref, at in (("old", 10), ("final", 10), ("young", 100), ("rejected", 10)):
        await store.mark_submitting(ref, _at(at))
    for ref in ("old", "final", "young"):
        await store.mark_accepted(ref, f"SM-{ref}", 1, _at(101))
    await store.mark_rejected("rejected", "21211", "invalid", _at(11))
    await store.record_status("old", MessageStatus.SENT, None, None, None, _at(102))
    await store.record_status("final", MessageStatus.DELIVERED, None, None, None, _at(102))
    assert [s.ref for s in await store.unfinished(_at(50))] == ["old"]
    assert [s.ref for s in await store.unfinished(_at(100))] == ["old", "young"]
    assert [s.ref for s in await store.unfinished(_at(100), limit=1)] == ["old"]
    await store.mark_checked("old", _at(200))
    checked = await store.get_outbound("old")
    assert checked is not None and checked.checked_at == _at(200)
    assert [s.ref for s in await store.unfinished(_at(100))] == ["young"], "looked up once, never again"


async def test_counters_add_up(store: Store) -> None:
    assert await store.counters() == {}
    await store.count("accepted")
    await store.count("accepted", 2)
    await store.count("rejected")
    assert await store.counters() == {"accepted": 3, "rejected": 1}


async def test_concurrent_counting_across_replicas_loses_nothing(store_pair: tuple[Store, Store]) -> None:
    one, two = store_pair
    await asyncio.gather(*((one if i % 2 else two).count("accepted") for i in range(20)))
    assert (await two.counters())["accepted"] == 20


async def test_record_status_duplicates_across_replicas_are_new_once(store_pair: tuple[Store, Store]) -> None:
    one, two = store_pair
    await _accepted(one)
    changes = await asyncio.gather(*(
        (one if i % 2 else two).record_status("ref1", MessageStatus.DELIVERED, None, None, None, _at(5))
        for i in range(16)))
    assert sum(c.new for c in changes) == 1
    assert sum(c.advanced for c in changes) == 1
    assert len(await one.history("ref1")) == 1


# --- retry claim ----------------------------------------------------------------------------------------


async def test_claim_retry_exactly_once(store: Store) -> None:
    await _outbound(store)
    assert await store.claim_retry("ref1", "U1", _at(1)) is True
    assert await store.claim_retry("ref1", "U2", _at(2)) is False
    assert await store.claim_retry("ref1", "U1", _at(3)) is False
    assert await store.claim_retry("unknown", "U1", _at(3)) is False


async def test_claim_retry_under_concurrent_clicks(store: Store) -> None:
    await _outbound(store)
    results = await asyncio.gather(*(store.claim_retry("ref1", f"U{i}", _at(1)) for i in range(10)))
    assert results.count(True) == 1


# --- secrets, restart, threads --------------------------------------------------------------------------


async def test_secret_is_32_random_bytes_per_name(store: Store) -> None:
    a = await store.secret("callback")
    assert len(a) == 32
    assert await store.secret("callback") == a
    b = await store.secret("other")
    assert len(b) == 32 and b != a


async def test_secret_and_data_survive_restart(database_url: str) -> None:
    first = await open_store(database_url)
    secret = await first.secret("callback")
    await _accepted(first)
    await first.record_status("ref1", MessageStatus.SENT, None, None, None, _at(2))
    await first.claim_retry("ref1", "U1", _at(3))
    before = await first.get_outbound("ref1")
    await first.close()

    second = await open_store(database_url)
    try:
        assert await second.secret("callback") == secret
        assert await second.get_outbound("ref1") == before
        assert await second.find_by_sw_id("SM-ref1") == before
        assert [r.status for r in await second.history("ref1")] == [MessageStatus.SENT]
        assert await second.claim_retry("ref1", "U2", _at(4)) is False
        dup = await second.record_status("ref1", MessageStatus.SENT, None, None, None, _at(5))
        assert dup.new is False
    finally:
        await second.close()


async def test_different_databases_have_different_secrets(database_url: str, tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if database_url.startswith("sqlite"):
            other_url = f"sqlite:///{tmp_path / 'other.db'}"
        else:
            other_url = await stack.enter_async_context(throwaway_database())
        await _two_secrets_differ(database_url, other_url)


async def _two_secrets_differ(url_one: str, url_two: str) -> None:
    one = await open_store(url_one)
    two = await open_store(url_two)
    try:
        assert await one.secret("callback") != await two.secret("callback")
    finally:
        await one.close()
        await two.close()


async def test_thread_messages_oldest_first_and_only_that_thread(store: Store) -> None:
    base = SendRequest(user_id="U1", channel_id="C1", to="+15551234567", from_="+15557770000", body="x")
    await store.create_outbound("late", base, _at(30))
    await store.create_outbound("early", base, _at(10))
    await store.create_outbound("other-thread", base, _at(20))
    await store.create_outbound("other-channel", SendRequest(
        user_id="U1", channel_id="C2", to="+15551234567", from_="+15557770000", body="x"), _at(15))
    # A sub-second timestamp must still sort after the whole second before it.
    await store.create_outbound("fraction", base, _at(10) + timedelta(microseconds=500))
    for ref in ("late", "early", "fraction"):
        await store.set_parent(ref, "1700.1", _at(40))
    await store.set_parent("other-thread", "1700.2", _at(40))
    await store.set_parent("other-channel", "1700.1", _at(40))
    assert [s.ref for s in await store.thread_messages("C1", "1700.1")] == ["early", "fraction", "late"]
    assert [s.ref for s in await store.thread_messages("C2", "1700.1")] == ["other-channel"]
    assert await store.thread_messages("C1", "9999.9") == []


# --- availability ---------------------------------------------------------------------------------------


async def test_ping_answers_when_open(store: Store) -> None:
    await store.ping()


async def test_closed_store_is_unavailable(database_url: str) -> None:
    closed = await open_store(database_url)
    await closed.close()
    with pytest.raises(StoreUnavailable):
        await closed.ping()
    with pytest.raises(StoreUnavailable):
        await closed.get_outbound("ref1")
    with pytest.raises(StoreUnavailable):
        await closed.record_status("ref1", MessageStatus.SENT, None, None, None, T0)
    await closed.close()  # closing twice is harmless


async def test_unsupported_database_url() -> None:
    with pytest.raises(StoreUnavailable, match="mysql"):
        await open_store("mysql://localhost/db")


# --- SQLite specifics -----------------------------------------------------------------------------------


async def test_sqlite_file_that_is_not_a_database_is_unavailable(tmp_path: Path) -> None:
    """SQLite only: a file on disk that is not a database."""
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not an SQLite file " * 200)
    with pytest.raises(StoreUnavailable, match="not a database"):
        await open_store(f"sqlite:///{path}")


async def test_sqlite_migrations_are_idempotent(tmp_path: Path) -> None:
    """SQLite only: reopening a migrated file applies nothing twice (PostgreSQL: tests/test_postgres.py)."""
    path = str(tmp_path / "m.db")
    first = await SqliteStore.open(path)
    await first.create_outbound("r", REQUEST, T0)
    assert await first.schema_version() == max(MIGRATIONS)
    await first.close()
    second = await SqliteStore.open(path)
    try:
        assert await second.schema_version() == max(MIGRATIONS)
        assert (await second.get_outbound("r")) is not None
    finally:
        await second.close()
    with sqlite3.connect(path) as raw:
        rows = raw.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert rows == [(v,) for v in sorted(MIGRATIONS)]


async def test_sqlite_two_replicas_migrating_at_once(tmp_path: Path) -> None:
    """SQLite only: two connections opening one new file at once (the journal-mode switch answers busy at once)."""
    path = str(tmp_path / "race.db")
    a, b = await asyncio.gather(SqliteStore.open(path), SqliteStore.open(path))
    try:
        assert await a.schema_version() == await b.schema_version() == max(MIGRATIONS)
        assert await a.secret("callback") == await b.secret("callback")
    finally:
        await a.close()
        await b.close()


async def test_sqlite_locked_file_makes_writes_unavailable_within_busy_timeout(tmp_path: Path) -> None:
    """SQLite only: another connection holding the file's write lock (``busy_timeout``)."""
    path = str(tmp_path / "locked.db")
    store = await SqliteStore.open(path, busy_timeout_ms=200)
    await store.create_outbound("r", REQUEST, T0)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.mark_submitting("r", _at(1))
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.record_status("r", MessageStatus.SENT, None, None, None, _at(1))
        with pytest.raises(StoreUnavailable):
            await store.claim_retry("r", "U1", _at(1))
        elapsed = time.monotonic() - started
        assert 0.2 * 3 * 0.9 <= elapsed < 20.0  # bounded by busy_timeout, not hung
        other.execute("ROLLBACK")
        # Once the other connection lets go, the same store works again: nothing was left half-done.
        change = await store.record_status("r", MessageStatus.SENT, None, None, None, _at(2))
        assert change.advanced is True
        assert await store.claim_retry("r", "U1", _at(2)) is True
    finally:
        other.close()
        await store.close()


def test_sqlite_default_busy_timeout_is_5000_ms() -> None:
    """SQLite only: the default ``busy_timeout`` of ``SqliteStore.open``."""
    assert inspect.signature(SqliteStore.open).parameters["busy_timeout_ms"].default == 5000
