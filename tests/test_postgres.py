"""What only the PostgreSQL engine has to prove (the shared contract is in tests/test_store*.py): migrations applied
exactly once when replicas start together, a pool that recovers after its connections are killed, an unreachable
server or a bad database reported as ``StoreUnavailable`` without the password, and races between two stores
(two replicas' pools) with exactly one winner.

Uses tests/pg.throwaway_database() (a real PostgreSQL; skips with one line when unreachable, fails under CI=true).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from bridge.model import OutboxWrite, SendRequest
from bridge.storage.engines import open_store
from bridge.storage.port import Store, StoreUnavailable
from bridge.storage.postgres.connection import redact_url
from bridge.storage.postgres.migrations import LATEST
from bridge.storage.postgres.store import PostgresStore
from sw_api.models import MessageStatus
from tests.pg import throwaway_database

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
CALLS = 20
PASSWORD = "hunter2-Secret"
REQUEST = SendRequest(user_id="U1", channel_id="C1", to="+15551234567", from_="+15557770000", body="hi")


def _with_password(url: str, password: str = PASSWORD) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username or 'postgres'}:{password}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def _two_stores() -> AsyncIterator[tuple[Store, Store]]:
    async with throwaway_database() as url, contextlib.AsyncExitStack() as stack:
        first = await PostgresStore.open(url)
        stack.push_async_callback(first.close)
        second = await PostgresStore.open(url)
        stack.push_async_callback(second.close)
        yield first, second


async def test_replicas_opening_one_fresh_database_at_once_apply_each_migration_once() -> None:
    async with throwaway_database() as url:
        stores = await asyncio.gather(*(open_store(url) for _ in range(5)))
        try:
            for store in stores:
                status = await store.schema_status()
                assert (status.engine, status.schema_version, status.current) == ("postgresql", LATEST, True)
            conn = await asyncpg.connect(url, timeout=5)
            try:
                versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_version")]
            finally:
                await conn.close()
            assert sorted(versions) == sorted(set(versions)) and versions and max(versions) == LATEST
            assert min(versions) == 10, "the baseline is migration 10: the same number means the same schema"
        finally:
            for store in stores:
                await store.close()
        again = await open_store(url)  # reopening applies nothing
        try:
            assert (await again.schema_status()).schema_version == LATEST
        finally:
            await again.close()


async def test_the_pool_recovers_after_its_connections_are_killed() -> None:
    async with throwaway_database() as url:
        store = await PostgresStore.open(url)
        try:
            await store.create_outbound("r1", REQUEST, T0)
            await asyncio.gather(*(store.get_outbound("r1") for _ in range(8)))  # several pooled connections
            admin = await asyncpg.connect(url, timeout=5)
            try:
                killed = await admin.fetchval(
                    """SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
                       WHERE datname = current_database() AND pid <> pg_backend_pid()""")
            finally:
                await admin.close()
            assert killed >= 1
            sms = await store.get_outbound("r1")  # a read tries once more on a fresh connection
            assert sms is not None and sms.ref == "r1"
            await store.ping()
            await store.create_outbound("r2", REQUEST, T0)
            assert await store.claim_message("r2", "a", T0, T0 + LEASE)
        finally:
            await store.close()


async def test_a_killed_connection_inside_a_write_is_unavailable_and_the_next_call_works() -> None:
    async with throwaway_database() as url:
        store = await PostgresStore.open(url)
        try:
            await store.create_outbound("r1", REQUEST, T0)
            admin = await asyncpg.connect(url, timeout=5)
            try:
                await admin.execute(
                    """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                       WHERE datname = current_database() AND pid <> pg_backend_pid()""")
            finally:
                await admin.close()
            # Whether this write meets the dead connection depends on timing: either outcome, never a crash.
            with contextlib.suppress(StoreUnavailable):
                await store.mark_checked("r1", T0)
            await store.mark_checked("r1", T0)
            sms = await store.get_outbound("r1")
            assert sms is not None and sms.checked_at == T0
        finally:
            await store.close()


async def test_an_unreachable_server_is_unavailable_and_the_password_is_not_shown() -> None:
    url = f"postgresql://bridge:{PASSWORD}@127.0.0.1:{_closed_port()}/bridge"
    with pytest.raises(StoreUnavailable) as failure:
        await open_store(url)
    message = str(failure.value)
    assert PASSWORD not in message and "***" in message and "127.0.0.1" in message
    with pytest.raises(StoreUnavailable) as failure:
        await open_store(url.replace("postgresql://", "postgres://"))
    assert PASSWORD not in str(failure.value)


async def test_a_missing_database_is_unavailable_and_the_password_is_not_shown() -> None:
    async with throwaway_database() as url:
        missing = _with_password(url.rsplit("/", 1)[0] + "/sms_bridge_no_such_database")
        with pytest.raises(StoreUnavailable) as failure:
            await open_store(missing)
        assert PASSWORD not in str(failure.value) and "***" in str(failure.value)


async def test_errors_of_an_open_store_never_show_the_password() -> None:
    async with throwaway_database() as url:
        store = await open_store(_with_password(url))  # trust auth: the password is accepted and ignored
        try:
            await store.create_outbound("r1", REQUEST, T0)
            with pytest.raises(StoreUnavailable) as duplicate:
                await store.create_outbound("r1", REQUEST, T0)
            assert PASSWORD not in str(duplicate.value) and "***" in str(duplicate.value)
        finally:
            await store.close()
        with pytest.raises(StoreUnavailable) as closed:
            await store.ping()
        assert PASSWORD not in str(closed.value)


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("postgresql://bob:pw@db.example:6543/bridge?sslmode=require") == \
        "postgresql://bob:***@db.example:6543/bridge?sslmode=require"
    assert redact_url("postgresql://bob@db/bridge") == "postgresql://bob@db/bridge"


async def test_an_unknown_scheme_is_unavailable() -> None:
    with pytest.raises(StoreUnavailable):
        await open_store("mysql://root:pw@localhost/db")


async def test_one_of_many_owners_across_two_stores_leases_a_message() -> None:
    async with _two_stores() as pair:
        await pair[0].create_outbound("r1", REQUEST, T0)
        results = await asyncio.gather(
            *(pair[i % 2].claim_message("r1", f"owner-{i}", T0, T0 + LEASE) for i in range(CALLS)))
        assert results.count(True) == 1


async def test_one_of_many_owners_across_two_stores_claims_an_outbox_head() -> None:
    async with _two_stores() as pair:
        head = await pair[0].outbox_add("C1:1.0", "post", None, "C1", {}, T0)
        await pair[1].outbox_add("C1:1.0", "post", None, "C1", {}, T0)
        results = await asyncio.gather(
            *(pair[i % 2].outbox_claim(head, f"owner-{i}", T0, T0 + LEASE) for i in range(CALLS)))
        assert results.count(True) == 1


async def test_duplicate_status_callbacks_across_two_stores_are_new_once() -> None:
    async with _two_stores() as pair:
        await pair[0].create_outbound("r1", REQUEST, T0)
        changes = await asyncio.gather(
            *(pair[i % 2].record_status("r1", MessageStatus.DELIVERED, None, None, None, T0) for i in range(CALLS)))
        assert [c.new for c in changes].count(True) == 1
        assert [c.advanced for c in changes].count(True) == 1
        assert len(await pair[1].history("r1")) == 1


async def test_concurrent_announcements_across_two_stores_queue_one_receipt() -> None:
    async with _two_stores() as pair:
        await pair[0].create_outbound("r1", REQUEST, T0)
        await pair[0].record_status("r1", MessageStatus.SENT, None, None, None, T0)
        write = OutboxWrite("C1:1.0", "update", "r1", "C1", {"status": "sent"})
        results = await asyncio.gather(
            *(pair[i % 2].announce_status("r1", "sent", [write], T0) for i in range(CALLS)))
        assert results.count(True) == 1
        assert await pair[1].outbox_pending() == 1


async def test_coalesced_adds_across_two_stores_queue_one_item() -> None:
    async with _two_stores() as pair:
        ids = await asyncio.gather(*(
            pair[i % 2].outbox_add_coalesced("C1:1.0", "update", "r1", "C1", {"n": i}, ["update"], T0)
            for i in range(CALLS)))
        assert len([i for i in ids if i is not None]) == 1
        assert await pair[0].outbox_pending() == 1


async def test_reply_intents_across_two_stores_create_one_message() -> None:
    async with _two_stores() as pair:
        request = SendRequest(user_id="U1", channel_id="C1", to="+15551234567", from_="+15557770000", body="hi",
                              origin="reply", thread_ts="1700.1", source_ts="1700.2")
        results = await asyncio.gather(
            *(pair[i % 2].create_reply_intent(f"ref{i}", request, T0) for i in range(CALLS)))
        assert [created for _, created in results].count(True) == 1
        assert len({sms.ref for sms, _ in results}) == 1


async def test_import_takes_times_as_aware_datetimes_iso_text_or_unix_seconds_and_refuses_naive_ones() -> None:
    async with throwaway_database() as url:
        store = await PostgresStore.open(url)
        try:
            row = {"thread_key": "C1:1.0", "kind": "post", "ref": None, "channel": "C1", "payload": "{}",
                   "created_at": "2025-03-01T12:00:00.000000+00:00", "attempts": 0,
                   "next_attempt_at": T0.timestamp(), "claimed_until": None, "done_at": None, "failed_at": None,
                   "last_error": None, "result": None, "claimed_by": None, "id": 7}
            assert await store.import_rows("slack_outbox", [row]) == 1
            [exported] = await store.export_rows("slack_outbox", 0, 10)
            assert exported["created_at"] == T0 and exported["next_attempt_at"] == T0 and exported["id"] == 7
            assert await store.outbox_add("C2:1.0", "post", None, "C2", {}, T0) == 8, "new ids follow imported ones"
            with pytest.raises(ValueError):
                await store.import_rows("slack_outbox", [{**row, "id": 9, "created_at": T0.replace(tzinfo=None)}])
            with pytest.raises(ValueError):
                await store.import_rows("schema_version", [{"version": 99}])
        finally:
            await store.close()


async def test_a_statement_stuck_behind_a_lock_is_unavailable_after_the_command_timeout() -> None:
    async with throwaway_database() as url:
        # Migrated first with the normal timeout: on a loaded machine the migrations alone can outlast 0.5 s.
        await (await PostgresStore.open(url)).close()
        store = await PostgresStore.open(url, command_timeout=0.5)
        try:
            await store.create_outbound("r1", REQUEST, T0)
            holder = await asyncpg.connect(url, timeout=5)
            try:
                async with holder.transaction():
                    await holder.execute("SELECT 1 FROM outbound WHERE ref = 'r1' FOR UPDATE")
                    with pytest.raises(StoreUnavailable, match="Timeout"):
                        await store.record_status("r1", MessageStatus.SENT, None, None, None, T0)
            finally:
                await holder.close()
            change = await store.record_status("r1", MessageStatus.SENT, None, None, None, T0)
            assert change.new and change.advanced, "the timed-out attempt left nothing behind"
        finally:
            await store.close()
