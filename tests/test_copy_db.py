"""``bot.py copy-db`` as an operator runs it (a real process): a populated SQLite installation into an empty
database of each engine (``database_url``: SQLite, PostgreSQL), counts printed and verified, every row identical,
a target holding data refused untouched, a schema-only target accepted, no password ever printed."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bridge.model import (
    AuditAction,
    OutboxWrite,
    SendRequest,
    SlackReply,
)
from bridge.storage.engines import open_store
from bridge.storage.port import Store
from sw_api.models import InboundMessage, MessageStatus
from tests.seed_rows import seed_since_issue_11

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
OURS, THEIRS = "+15557770000", "+15551234567"


async def populate(store: Store) -> None:
    """At least one row in every data table, written through the port as the bridge writes them."""
    request = SendRequest(user_id="U0ALICE", channel_id="C0GENERAL", to=THEIRS, from_=OURS, body="Running late ✓",
                          media=("https://example.com/a.png",), team_id="T0001")
    for n in range(3):
        ref = f"ref{n}"
        await store.create_outbound(ref, request, T0 + timedelta(seconds=n))
        await store.mark_submitting(ref, T0 + timedelta(seconds=n, milliseconds=1))
        await store.mark_accepted(ref, f"sw-{n}", 1, T0 + timedelta(seconds=n, milliseconds=2))
        await store.record_status(ref, MessageStatus.DELIVERED, None, None, T0, T0 + timedelta(seconds=n + 1))
        await store.set_parent(ref, f"1700000000.00000{n}", T0)
    await store.set_reply_source("ref1", "1700000001.000001")
    await store.begin_parent_post("ref2", T0)
    await store.secret("callback")
    await store.count("accepted", 3)
    await store.set_conversation(OURS, THEIRS, "C0GENERAL", "1700000000.000000", T0)
    await store.set_opt_out(OURS, "+15550001111", "STOP", T0)
    await store.claim_slack_event("C0GENERAL:1700000002.000001", T0)
    await store.record_reply(SlackReply("C0GENERAL", "1700000000.000000", "1700000003.000001", "U0ALICE", "hi"),
                             T0, T0 + timedelta(seconds=30))
    await store.record_inbound(
        InboundMessage(message_id="in-1", from_=THEIRS, to=OURS, body="hello back"), opt_out=None, opt_in=False,
        items=[OutboxWrite("conv:1", "inbound", None, "C0GENERAL", {"text": "hello back"})], now=T0)
    await store.outbox_add("thread:ref0", "update", "ref0", "C0GENERAL", {"n": 1}, T0)
    await store.audit_add(at=T0, user_id="U0ALICE", channel_id="C0GENERAL", action=AuditAction.SEND, to_number=THEIRS,
                          from_number=OURS, ref="ref0")
    # -- issue 11: a thread reply's Slack file ids
    await store.record_reply(SlackReply("C0GENERAL", "1700000000.000000", "1700000004.000001", "U0ALICE", "pic",
                                        subtype="file_share", files=("F1",)), T0, T0 + timedelta(seconds=30))
    # -- issues 11-13: the same rows as tests/test_store_admin.py
    await seed_since_issue_11(store, request, T0)


async def _bot(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(REPO / "bot.py"), *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _dump(url: str) -> dict[str, list[dict[str, object]]]:
    store = await open_store(url)
    try:
        return {table: await store.export_rows(table, 0, 10_000) for table in await store.table_names()}
    finally:
        await store.close()


def _printed_counts(stdout: str) -> dict[str, tuple[int, int]]:
    counts = {}
    for line in stdout.splitlines()[2:]:
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            counts[parts[0]] = (int(parts[1]), int(parts[2]))
    return counts


async def _source(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'source.db'}"
    store = await open_store(url)
    try:
        await populate(store)
    finally:
        await store.close()
    return url


async def test_copy_db_moves_every_row_and_prints_verified_counts(tmp_path: Path, database_url: str) -> None:
    source = await _source(tmp_path)
    code, out, err = await _bot("copy-db", "--from", source, "--to", database_url)
    assert code == 0, err
    before = await _dump(source)
    assert all(before.values()), {t: len(r) for t, r in before.items()}  # every table had something to copy
    assert _printed_counts(out) == {table: (len(rows), len(rows)) for table, rows in before.items()}
    assert f"ok: {sum(map(len, before.values()))} rows in {len(before)} tables copied and verified" in out
    assert await _dump(database_url) == before

    # The copy is a working installation: same messages, history, secret, conversation, outbox.
    old, new = await open_store(source), await open_store(database_url)
    try:
        assert await new.get_outbound("ref1") == await old.get_outbound("ref1")
        assert await new.history("ref1") == await old.history("ref1")
        assert await new.secret("callback") == await old.secret("callback")
        assert await new.conversation_by_thread("C0GENERAL", "1700000000.000000") is not None
        assert await new.outbox_pending() == await old.outbox_pending() == 2
        added = await new.outbox_add("thread:ref9", "update", None, None, {}, T0)
        assert added > max(item.id for item in await old.outbox_due(T0 + timedelta(days=1), 10))
        assert await new.claim_slack_event("C0GENERAL:1700000002.000001", T0) is False  # dedup carried over
    finally:
        await old.close()
        await new.close()


async def test_copy_db_refuses_a_target_that_holds_data_and_leaves_it_alone(tmp_path: Path,
                                                                            database_url: str) -> None:
    source = await _source(tmp_path)
    target = await open_store(database_url)
    try:
        await target.count("accepted")
    finally:
        await target.close()
    code, _, err = await _bot("copy-db", "--from", source, "--to", database_url)
    assert code == 1
    assert "copy-db refused" in err and "already holds data: counter (1)" in err
    dumped = await _dump(database_url)
    assert {table: len(rows) for table, rows in dumped.items() if rows} == {"counter": 1}


async def test_copy_db_accepts_a_target_holding_only_the_schema(tmp_path: Path, database_url: str) -> None:
    source = await _source(tmp_path)
    await (await open_store(database_url)).close()  # creates the schema, no rows
    code, out, err = await _bot("copy-db", "--from", source, "--to", database_url)
    assert code == 0, err
    assert "copied and verified" in out


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return url
    netloc = f"{parts.username or 'postgres'}:{password}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc))


async def test_copy_db_never_prints_a_password(tmp_path: Path, database_url: str) -> None:
    source = await _source(tmp_path)
    # The test server trusts local connections, so the password is ignored by it but must still never be shown.
    code, out, err = await _bot("copy-db", "--from", source, "--to", _with_password(database_url, "pw-s3cret"))
    assert code == 0, err
    assert "pw-s3cret" not in out + err
    code, out, err = await _bot("copy-db", "--from", source, "--to", "postgresql://bob:pw-s3cret@127.0.0.1:1/none")
    assert code == 1
    assert "pw-s3cret" not in out + err and "bob:***@127.0.0.1:1" in out
