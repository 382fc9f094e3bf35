"""The storage contract of the administration methods (``bot.py check`` / ``migrate`` / ``copy-db``, ``/readyz``,
``/metrics``), run on every engine: schema status, the data tables, row counts, and export → import round trips —
into a fresh database of the same engine and of the other engine (SQLite → PostgreSQL and back, when PostgreSQL
is reachable), compared row by row and through the store's own reads.

Uses the ``database_url`` / ``store`` fixtures of tests/conftest.py and tests/pg.throwaway_database().
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge import outbox
from bridge.model import (
    AuditAction,
    OutboxWrite,
    SendRequest,
    SlackReply,
)
from bridge.storage.engines import open_store
from bridge.storage.port import Store
from sw_api.models import InboundMessage, MessageStatus
from tests.pg import throwaway_database
from tests.seed_rows import seed_since_issue_11

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
OURS, THEIRS = "+15557770000", "+15551234567"
REQUEST = SendRequest(user_id="U1", channel_id="C1", to=THEIRS, from_=OURS, body="héllo 😀", team_id="T1",
                      media=("https://example.com/a.png",))
# Every table a store of migration 10 keeps data in (the bookkeeping of migrations is not data).
DATA_TABLES = {"meta", "outbound", "status_event", "conversation", "inbound", "opt_out", "slack_event",
               "reply_source", "slack_outbox", "audit", "counter", "parent_attempt", "slack_reply",
               "media", "blocked_number", "auto_reply",  # -- issue 11: outbound MMS, compliance (migrations 12, 13)
               "scheduled_send", "contact", "sms_template",  # -- issue 12 (migrations 14-16)
               "bulk_batch", "bulk_recipient", "send_pace"}  # -- issue 13 (migration 18)
PAGE = 3
PLAIN = (str, int, float, bytes, type(None), datetime)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def _seed(store: Store) -> None:
    """A little of everything: a row in every data table, leases and claims included."""
    await store.secret("callback")
    for n in range(5):
        await store.create_outbound(f"ref{n}", REQUEST, _at(n))
    await store.mark_submitting("ref0", _at(10))
    await store.mark_accepted("ref0", "SM-0", 2, _at(11))
    await store.set_parent("ref0", "1700.1", _at(11))
    await store.record_status("ref0", MessageStatus.SENT, None, None, _at(11), _at(12))
    await store.record_status("ref0", MessageStatus.UNDELIVERED, "30003", "Unreachable", None, _at(13))
    await store.announce_status("ref0", "sent", [OutboxWrite("C1", "post", "ref0", "C1", {"text": "sent"})], _at(14))
    await store.mark_rejected("ref1", "21211", "invalid To", _at(15))
    assert await store.claim_message("ref2", "owner-a", _at(16), _at(46))
    await store.create_retry_intent("retry1", replace(REQUEST, origin="retry", retry_of="ref1"), "U2", _at(17))
    await store.begin_parent_post("ref3", _at(18))
    await store.count("accepted", 3)
    await store.set_conversation(OURS, THEIRS, "C1", "1700.1", _at(19))
    await store.set_opt_out(OURS, "+15550001111", "STOP", _at(20))
    message = InboundMessage(message_id="SM-in", from_=THEIRS, to=OURS, body="hi")
    await store.record_inbound(message, opt_out=None, opt_in=False,
                               items=[outbox.post_item("C1", "C1", "hi", thread_of_inbound="SM-in")], now=_at(21))
    await store.inbound_posted("SM-in", "C1", "1700.1", "1700.2", _at(22))
    await store.claim_slack_event("C1:1700.3", _at(23))
    await store.set_reply_source("ref4", "1700.4")
    await store.record_reply(SlackReply("C1", "1700.1", "1700.5", "U1", "reply", "T1"), _at(24), _at(54))
    for n in range(4):
        await store.outbox_add("C9:1.0", "post", None, "C9", {"n": n}, _at(25 + n))
    [head] = [i for i in await store.outbox_due(_at(30), 10) if i.thread_key == "C9:1.0"]
    assert await store.outbox_claim(head.id, "owner-a", _at(30), _at(60))
    audit_id = await store.audit_add(at=_at(31), user_id="U1", channel_id="C1", action=AuditAction.SEND,
                                     to_number=THEIRS, from_number=OURS)
    await store.audit_link(audit_id, "ref0", "queued")
    await store.audit_add(at=_at(32), user_id="U1", channel_id="C1", action=AuditAction.REFUSED, reason="limit")
    # -- issues 11-13: the same rows as tests/test_copy_db.py (three more outbound rows, one more audit row)
    await seed_since_issue_11(store, REQUEST, _at(33))


async def _export(store: Store, table: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while page := await store.export_rows(table, len(rows), PAGE):
        assert len(page) <= PAGE
        rows.extend(page)
    return rows


async def _copy(source: Store, target: Store) -> None:
    for table in await source.table_names():
        rows = await _export(source, table)
        assert await target.import_rows(table, rows) == len(rows)


def _canonical(rows: list[dict[str, Any]]) -> list[str]:
    """Rows in an order-free, engine-free form (a ``datetime`` compares as its instant)."""
    def value(v: Any) -> Any:
        return v.astimezone(UTC).isoformat() if isinstance(v, datetime) else v
    return sorted(repr(sorted((k, value(v)) for k, v in row.items())) for row in rows)


@contextlib.asynccontextmanager
async def _fresh(engine: str, tmp_path: Path) -> AsyncIterator[Store]:
    """An empty store on ``engine`` ("sqlite" or "postgresql"), closed and dropped afterwards."""
    async with contextlib.AsyncExitStack() as stack:
        if engine == "sqlite":
            url = f"sqlite:///{tmp_path / 'copy-target.db'}"
        else:
            url = await stack.enter_async_context(throwaway_database())
        target = await open_store(url)
        stack.push_async_callback(target.close)
        yield target


def _engine(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgresql"


async def test_schema_status_is_current_and_names_the_engine(database_url: str, store: Store) -> None:
    status = await store.schema_status()
    assert status.engine == _engine(database_url)
    assert status.server_version and status.server_version[0].isdigit()
    assert status.schema_version == status.latest_version >= 10
    assert status.current


async def test_table_names_are_the_data_tables_parents_first(store: Store) -> None:
    names = await store.table_names()
    assert set(names) == DATA_TABLES
    assert len(names) == len(set(names))
    for child in ("status_event", "reply_source"):
        assert names.index("outbound") < names.index(child), f"{child} refers to outbound: copied after it"


async def test_row_counts_count_every_data_table(store: Store) -> None:
    empty = await store.row_counts()
    assert set(empty) == DATA_TABLES and set(empty.values()) == {0}
    await _seed(store)
    counts = await store.row_counts()
    assert set(counts) == DATA_TABLES
    assert {t: n for t, n in counts.items() if n == 0} == {}, "the seed writes every table"
    assert counts["outbound"] == 9 and counts["slack_outbox"] == 6 and counts["audit"] == 3
    for table in DATA_TABLES:
        assert len(await _export(store, table)) == counts[table]


async def test_export_pages_are_stable_and_hold_plain_values(store: Store) -> None:
    await _seed(store)
    for table in await store.table_names():
        everything = await store.export_rows(table, 0, 1000)
        assert await _export(store, table) == everything, f"{table}: pages in a stable order, none twice"
        for row in everything:
            for column, value in row.items():
                assert isinstance(value, PLAIN), f"{table}.{column}: {type(value).__name__}"
                if isinstance(value, datetime):
                    assert value.tzinfo is not None, f"{table}.{column} is a naive datetime"
    assert await store.export_rows("outbound", 1000, 10) == []
    assert await store.export_rows("outbound", 0, 0) == []


@pytest.mark.parametrize("target_engine", ["same", "other"])
async def test_copy_to_a_fresh_database_keeps_every_row(
    database_url: str, store: Store, tmp_path: Path, target_engine: str,
) -> None:
    source_engine = _engine(database_url)
    engine = source_engine if target_engine == "same" else {"sqlite": "postgresql", "postgresql": "sqlite"}[
        source_engine]
    await _seed(store)
    async with _fresh(engine, tmp_path) as target:
        await _copy(store, target)
        assert await target.row_counts() == await store.row_counts()
        for table in await store.table_names():
            assert _canonical(await _export(target, table)) == _canonical(await _export(store, table)), table
        # Read back through the store itself: the copy behaves as the original.
        assert await target.secret("callback") == await store.secret("callback")
        assert await target.bulk_get("bulk1") == await store.bulk_get("bulk1")
        assert await target.bulk_report("bulk1", -1, 10) == await store.bulk_report("bulk1", -1, 10)
        for ref in ("ref0", "ref1", "ref2", "retry1"):
            assert await target.get_outbound(ref) == await store.get_outbound(ref)
        assert await target.history("ref0") == await store.history("ref0")
        assert await target.unannounced("ref0") == await store.unannounced("ref0")
        assert await target.audit_list() == await store.audit_list()
        assert await target.counters() == {"accepted": 3}
        assert await target.get_conversation(OURS, THEIRS) == await store.get_conversation(OURS, THEIRS)
        assert await target.inbound_posted_at("SM-in") == await store.inbound_posted_at("SM-in")
        assert await target.outbox_due(_at(40), 100) == await store.outbox_due(_at(40), 100)
        assert await target.replies_to_resume(_at(100)) == await store.replies_to_resume(_at(100))
        # Claims and dedups came along: nothing acts twice after the move.
        assert not await target.claim_message("ref2", "owner-b", _at(20), _at(50))
        assert not await target.claim_slack_event("C1:1700.3", _at(40))
        assert not await target.claim_retry("ref1", "U3", _at(40))
        assert not await target.record_reply(SlackReply("C1", "1700.1", "1700.5", "U1", "reply"), _at(40), _at(70))
        # New rows continue after the copied ones.
        new_id = await target.outbox_add("C8:1.0", "post", None, "C8", {}, _at(40))
        assert new_id > max(row["id"] for row in await _export(store, "slack_outbox"))
        await target.create_outbound("after-copy", REQUEST, _at(41))
        assert (await target.row_counts())["outbound"] == 10


async def test_import_is_one_transaction(store: Store) -> None:
    await store.create_outbound("ref0", REQUEST, T0)
    [row] = await store.export_rows("outbound", 0, 10)
    fresh = {**row, "ref": "new", "sw_id": None}
    with pytest.raises(Exception):  # noqa: B017 - the duplicate key; whichever error the engine gives
        await store.import_rows("outbound", [fresh, row])
    assert await store.get_outbound("new") is None, "the first row was rolled back with the failing one"
    assert await store.import_rows("outbound", [fresh]) == 1
    assert await store.import_rows("outbound", []) == 0
