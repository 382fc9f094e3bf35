"""Retention and the database file's privacy: owner-only files, bounded pruning, and the real bot's sweeper pruning
old inbound claims, Slack event ids, status history and audit rows while keeping everything younger.

The pruning contract runs on every engine (the ``store`` fixture of tests/conftest.py); the file-permission tests
and the bot's sweeper over its default SQLite file are SQLite-only."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.config import Config, ConfigError
from bridge.model import AuditAction, SendRequest
from bridge.storage.port import Store
from bridge.storage.sqlite.store import SqliteStore
from demo.harness import running_bridge
from sw_api.models import InboundMessage, MessageStatus

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=100)      # past RETENTION_DAYS=90
ANCIENT = NOW - timedelta(days=400)  # past AUDIT_RETENTION_DAYS=365
RECENT = NOW - timedelta(days=1)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The common default umask: without care, SQLite would create world-readable files."""
    saved = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(saved)


async def _inbound(store: Store, message_id: str, at: datetime) -> bool:
    """An inbound text stored and posted at ``at`` (only posted texts are pruned); False if already stored."""
    message = InboundMessage(message_id=message_id, from_="+15551234567", to="+15557770000", body="hi")
    stored = await store.record_inbound(message, opt_out=None, opt_in=False, items=[], now=at)
    if stored:
        await store.inbound_posted(message_id, "C1", "1.0", "1.0", at)
    return stored


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_database_and_its_wal_and_shm_are_created_owner_only(tmp_path: Path, loose_umask: None) -> None:
    """SQLite only: the database file and its -wal/-shm are owner-only (PostgreSQL: the server's own files)."""
    path = tmp_path / "data" / "bridge.db"
    store = await SqliteStore.open(str(path))
    try:
        await store.secret("callback")
        await _inbound(store, "SM1", NOW)
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: oct(_mode(f)) for f in files} == {f.name: "0o600" for f in files}
        assert _mode(path.parent) == 0o700
    finally:
        await store.close()


async def test_an_existing_readable_database_is_tightened(tmp_path: Path, loose_umask: None) -> None:
    """SQLite only: a file an older release left world-readable is tightened at open."""
    path = tmp_path / "bridge.db"
    store = await SqliteStore.open(str(path))
    await store.close()
    path.chmod(0o644)
    store = await SqliteStore.open(str(path))
    try:
        assert _mode(path) == 0o600 and _mode(Path(f"{path}-wal")) == 0o600
    finally:
        await store.close()


async def test_prune_deletes_in_bounded_batches_oldest_first_and_keeps_younger_rows(store: Store) -> None:
    for n in range(1200):
        await _inbound(store, f"old{n}", OLD + timedelta(seconds=n))
    await _inbound(store, "recent", RECENT)
    cutoff = NOW - timedelta(days=90)
    assert [await store.prune_inbound(cutoff, 500) for _ in range(4)] == [500, 500, 200, 0]
    assert not await _inbound(store, "recent", NOW), "a younger row was pruned"
    assert await _inbound(store, "old1199", NOW), "an old row survived"


async def test_prune_inbound_is_oldest_first_and_keeps_texts_not_yet_in_slack(store: Store) -> None:
    message = InboundMessage(message_id="waiting", from_="+15551234567", to="+15557770000", body="hi")
    assert await store.record_inbound(message, opt_out=None, opt_in=False, items=[], now=ANCIENT)
    for n in range(3):
        await _inbound(store, f"old{n}", OLD + timedelta(seconds=n))
    assert await store.prune_inbound(NOW, 1) == 1
    assert await _inbound(store, "old0", NOW), "the oldest posted row goes first"
    assert not await _inbound(store, "old1", NOW) and not await _inbound(store, "old2", NOW)
    assert await store.prune_inbound(NOW, 10) == 2
    assert await store.prune_inbound(NOW + timedelta(days=1), 10) == 1  # old0, re-stored at NOW
    assert await store.prune_inbound(NOW + timedelta(days=1), 10) == 0
    # Never posted (still to be delivered to Slack): kept however old.
    assert not await store.record_inbound(message, opt_out=None, opt_in=False, items=[], now=NOW)


async def test_prune_slack_events_oldest_first_within_the_limit(store: Store) -> None:
    for n in range(5):
        assert await store.claim_slack_event(f"C1:{n}.0", OLD + timedelta(seconds=n))
    assert await store.claim_slack_event("C1:young", RECENT)
    cutoff = NOW - timedelta(days=90)
    assert await store.prune_slack_events(cutoff, 2) == 2
    assert await store.claim_slack_event("C1:0.0", NOW) and await store.claim_slack_event("C1:1.0", NOW)
    assert not await store.claim_slack_event("C1:2.0", NOW), "only the oldest two went"
    assert await store.prune_slack_events(cutoff, 10) == 3
    assert await store.prune_slack_events(cutoff, 10) == 0
    assert not await store.claim_slack_event("C1:young", NOW), "a younger event id was pruned"


async def test_prune_status_events_oldest_first_within_the_limit(store: Store) -> None:
    request = SendRequest(user_id="U1", channel_id="C1", to="+15551234567", from_="+15557770000", body="hi")
    await store.create_outbound("ref1", request, OLD)
    await store.mark_accepted("ref1", "SM1", 1, OLD)
    await store.record_status("ref1", MessageStatus.QUEUED, None, None, None, OLD)
    await store.record_status("ref1", MessageStatus.SENT, None, None, None, OLD + timedelta(seconds=1))
    await store.record_status("ref1", MessageStatus.DELIVERED, None, None, None, RECENT)
    for status in ("queued", "sent", "delivered"):  # told in Slack: nothing is left to resume from them
        assert await store.announce_status("ref1", status, [], RECENT)
    cutoff = NOW - timedelta(days=90)
    assert await store.prune_status_events(cutoff, 1) == 1
    assert [r.status for r in await store.history("ref1")] == [MessageStatus.SENT, MessageStatus.DELIVERED]
    assert await store.prune_status_events(cutoff, 10) == 1
    assert await store.prune_status_events(cutoff, 10) == 0
    assert [r.status for r in await store.history("ref1")] == [MessageStatus.DELIVERED]
    sms = await store.get_outbound("ref1")
    assert sms is not None and sms.status is MessageStatus.DELIVERED, "messages themselves are not pruned"


async def test_audit_prune_oldest_first_within_the_limit(store: Store) -> None:
    for n, user in enumerate(("U0", "U1", "U2")):
        await store.audit_add(at=ANCIENT + timedelta(seconds=n), user_id=user, channel_id="C1",
                              action=AuditAction.SEND)
    await store.audit_add(at=RECENT, user_id="URECENT", channel_id="C1", action=AuditAction.SEND)
    cutoff = NOW - timedelta(days=365)
    assert await store.audit_prune(cutoff, 2) == 2
    assert [e.user_id for e in await store.audit_list()] == ["URECENT", "U2"]
    assert await store.audit_prune(cutoff, 10) == 1
    assert await store.audit_prune(cutoff, 10) == 0
    assert [e.user_id for e in await store.audit_list()] == ["URECENT"]


async def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"{what}: not within {timeout:g} s"
        await asyncio.sleep(0.02)


def _count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


async def _seed(db: Path, inbound_old: int) -> None:
    store = await SqliteStore.open(str(db))
    try:
        for n in range(inbound_old):
            await _inbound(store, f"old{n}", OLD)
        await _inbound(store, "recent", RECENT)
        await store.claim_slack_event("C1:1.0", OLD)
        await store.claim_slack_event("C1:2.0", RECENT)
        request = SendRequest(user_id="U1", channel_id="C1", to="+15551234567", from_="+15557770000", body="hi")
        await store.create_outbound("ref1", request, OLD)
        await store.mark_accepted("ref1", "SM1", 1, OLD)
        await store.record_status("ref1", MessageStatus.SENT, None, None, None, OLD)
        await store.record_status("ref1", MessageStatus.DELIVERED, None, None, None, RECENT)
        for at, user in ((ANCIENT, "UANCIENT"), (OLD, "UOLD"), (RECENT, "URECENT")):
            await store.audit_add(at=at, user_id=user, channel_id="C1", action=AuditAction.SEND)
    finally:
        await store.close()


async def test_the_bots_sweeper_prunes_old_rows_in_rounds(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "bridge.db"
    await _seed(db, inbound_old=2500)  # more than one round's 4 × 500: the backlog continues the next round
    caplog.set_level(logging.INFO, logger="bridge.recovery")
    async with running_bridge(tmp_path, env={"SWEEP_INTERVAL_SECONDS": "0.05"}):
        await _wait_for(lambda: _count(db, "SELECT COUNT(*) FROM inbound") == 1, "old inbound rows pruned")
        await _wait_for(lambda: _count(db, "SELECT COUNT(*) FROM audit") == 2, "ancient audit rows pruned")
        # The sweeper logs a round once its delete has returned, a moment after the commit the test saw above.
        await _wait_for(lambda: sum(" inbound rows " in r.getMessage() for r in caplog.records) >= 2,
                        "both rounds logged")
    assert _count(db, "SELECT COUNT(*) FROM inbound WHERE message_id = 'recent'") == 1
    with sqlite3.connect(db) as conn:
        assert [r[0] for r in conn.execute("SELECT key FROM slack_event")] == ["C1:2.0"]
        assert [r[0] for r in conn.execute("SELECT status FROM status_event")] == ["delivered"]
        assert sorted(r[0] for r in conn.execute("SELECT user_id FROM audit")) == ["UOLD", "URECENT"]
        assert [r[0] for r in conn.execute("SELECT ref FROM outbound")] == ["ref1"]  # messages are not pruned
    deleted = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retention: deleted")]
    inbound = [m for m in deleted if " inbound " in m]
    # The bot's cutoff is its own "now" less 90 days: a run crossing midnight UTC may name the next day.
    days = {(at - timedelta(days=90)).date() for at in (NOW, datetime.now(UTC))}
    assert any(inbound[:2] == [f"retention: deleted 2000 inbound rows from before {day}",
                               f"retention: deleted 500 inbound rows from before {day}"] for day in days), inbound[:2]


async def test_zero_days_keeps_rows_forever(tmp_path: Path) -> None:
    db = tmp_path / "bridge.db"
    await _seed(db, inbound_old=3)
    async with running_bridge(tmp_path, env={"SWEEP_INTERVAL_SECONDS": "0.05", "RETENTION_DAYS": "0"}):
        # The audit trail's own retention still runs: once it has, the round that skipped the rest is over.
        await _wait_for(lambda: _count(db, "SELECT COUNT(*) FROM audit") == 2, "ancient audit rows pruned")
    assert _count(db, "SELECT COUNT(*) FROM inbound") == 4
    assert _count(db, "SELECT COUNT(*) FROM slack_event") == 2
    assert _count(db, "SELECT COUNT(*) FROM status_event") == 2


BASE = {
    "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s" * 32, "SIGNALWIRE_SPACE_URL": "simulator",
}


def test_retention_and_limits_config() -> None:
    config = Config.from_env(BASE)
    assert (config.retention_days, config.audit_retention_days) == (90, 365)
    assert (config.request_read_timeout, config.max_connections) == (10.0, 500)
    config = Config.from_env({**BASE, "RETENTION_DAYS": "30", "AUDIT_RETENTION_DAYS": "0",
                              "REQUEST_READ_TIMEOUT_SECONDS": "2.5", "MAX_CONNECTIONS": "64"})
    assert (config.retention_days, config.audit_retention_days) == (30, 0)
    assert (config.request_read_timeout, config.max_connections) == (2.5, 64)


@pytest.mark.parametrize(
    ("name", "value"),
    [("RETENTION_DAYS", "-1"), ("RETENTION_DAYS", "ninety"), ("AUDIT_RETENTION_DAYS", "1.5"),
     ("REQUEST_READ_TIMEOUT_SECONDS", "0"), ("REQUEST_READ_TIMEOUT_SECONDS", "nan"), ("MAX_CONNECTIONS", "0")],
)
def test_bad_retention_and_limits_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env({**BASE, name: value})
    assert info.value.name == name and f"(example: {name}=" in str(info.value)
