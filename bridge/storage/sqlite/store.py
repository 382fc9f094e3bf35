"""SQLite implementation of ``bridge.storage.port.Store`` through aiosqlite, with a versioned schema.

Owns: the SQL, the migrations (``MIGRATIONS``; append, never edit a released one) and row ↔ value mapping.
Must not import: aiohttp, Slack packages, ``handlers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sqlite3
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from bridge.model import OutboundSms, OutboxWrite, SendRequest, SendState, StatusChange, StatusRecord
from bridge.storage.port import StoreUnavailable
from bridge.storage.rows import outbound_from_row
from bridge.storage.sqlite.admin import SqliteAdmin
from bridge.storage.sqlite.audit import AUDIT_MIGRATION, BULK_ACTIONS_MIGRATION, AuditSql
from bridge.storage.sqlite.batch import GroupCommit, Work
from bridge.storage.sqlite.bulk import MIGRATION as BULK_MIGRATION
from bridge.storage.sqlite.bulk import BulkSql
from bridge.storage.sqlite.compliance import MIGRATION as COMPLIANCE_MIGRATION
from bridge.storage.sqlite.compliance import ComplianceSql
from bridge.storage.sqlite.home import MIGRATION as HOME_MIGRATION
from bridge.storage.sqlite.home import HomeSql
from bridge.storage.sqlite.media import MEDIA_MIGRATION, MediaSql
from bridge.storage.sqlite.outbox import MIGRATION as OUTBOX_MIGRATION
from bridge.storage.sqlite.outbox import OutboxSql, insert_statements
from bridge.storage.sqlite.people import CONTACTS_MIGRATION, TEMPLATES_MIGRATION, PeopleSql
from bridge.storage.sqlite.schedule import MIGRATION as SCHEDULE_MIGRATION
from bridge.storage.sqlite.schedule import ScheduleSql
from bridge.storage.sqlite.timefmt import db_time, py_time
from bridge.storage.sqlite.two_way import DURABLE_MIGRATION, REPLY_MIGRATION, TwoWaySql
from bridge.storage.sqlite.two_way import MIGRATION as TWO_WAY_MIGRATION
from sw_api.models import MessageStatus

# version → script. Versions are applied in order, each exactly once (``schema_version`` lists the applied ones),
# so a version added by one branch never hides another's. Append; never edit a released script.
MIGRATIONS: Mapping[int, str] = {
    # 1: outbound messages, their status history, and process-wide secrets.
    1: """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE outbound (
        ref TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        team_id TEXT NOT NULL DEFAULT '',
        channel_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        to_number TEXT NOT NULL,
        from_number TEXT NOT NULL,
        body TEXT NOT NULL,
        media TEXT NOT NULL DEFAULT '[]',
        send_as_mms INTEGER NOT NULL DEFAULT 0,
        origin TEXT NOT NULL,
        state TEXT NOT NULL,
        sw_id TEXT UNIQUE,
        status TEXT,
        error_code TEXT,
        error_message TEXT,
        segments INTEGER,
        parent_ts TEXT,
        retry_of TEXT,
        retried_by TEXT
    );
    CREATE INDEX outbound_thread ON outbound (channel_id, parent_ts);
    CREATE TABLE status_event (
        ref TEXT NOT NULL REFERENCES outbound (ref),
        status TEXT NOT NULL,
        error_code TEXT,
        error_message TEXT,
        event_at TEXT,
        received_at TEXT NOT NULL,
        PRIMARY KEY (ref, status)
    );
    """,
    # 2: two-way conversations (bridge.storage.sqlite.two_way).
    2: TWO_WAY_MIGRATION,
    # 3: the durable Slack outbox (bridge.storage.sqlite.outbox).
    3: OUTBOX_MIGRATION,
    # 4: the audit trail of human send attempts and refusals (bridge.storage.sqlite.audit).
    4: AUDIT_MIGRATION,
    # 5: durable sending: when the last POST started, how many were made, when to look again; outcome counters.
    5: """
    ALTER TABLE outbound ADD COLUMN submitted_at TEXT;
    ALTER TABLE outbound ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE outbound ADD COLUMN next_attempt_at TEXT;
    ALTER TABLE outbound ADD COLUMN checked_at TEXT;
    CREATE INDEX outbound_state ON outbound (state, next_attempt_at);
    CREATE TABLE counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    """,
    # 6: retention (bridge.recovery prunes by age in small batches): the age columns it deletes by, indexed.
    6: """
    CREATE INDEX IF NOT EXISTS inbound_received_at ON inbound (received_at);
    CREATE INDEX IF NOT EXISTS slack_event_seen_at ON slack_event (seen_at);
    CREATE INDEX IF NOT EXISTS status_event_received_at ON status_event (received_at);
    """,
    # 7: when each recorded status's Slack announcement was queued (NULL: it advanced the message and is still
    # to be told, e.g. the process died between recording it and queuing the receipt). History is told already.
    7: """
    ALTER TABLE status_event ADD COLUMN announced_at TEXT;
    UPDATE status_event SET announced_at = received_at;
    CREATE INDEX status_event_unannounced ON status_event (ref) WHERE announced_at IS NULL;
    """,
    # 8: durable inbound texts, reply / retry intents stored with their claim (bridge.storage.sqlite.two_way).
    8: DURABLE_MIGRATION,
    # 9: thread replies stored as Slack delivered them, before Slack is answered (bridge.storage.sqlite.two_way).
    9: REPLY_MIGRATION,
    # 10: leases, so several replicas can share the database: who works on a message (sending, reconciling,
    # checking a receipt) and until when; and who holds an outbox item's claim (``claimed_until`` exists).
    10: """
    ALTER TABLE outbound ADD COLUMN claimed_by TEXT;
    ALTER TABLE outbound ADD COLUMN claimed_until TEXT;
    ALTER TABLE slack_outbox ADD COLUMN claimed_by TEXT;
    """,
    # -- issue 11: outbound MMS. 12: pictures served at /media/<token>/<name>, a thread reply's Slack file ids.
    12: MEDIA_MIGRATION,
    # -- issue 11: compliance
    # 13: the block list, auto-replies keyed by their inbound text and kind, audit actions for both
    # (bridge.storage.sqlite.compliance).
    13: COMPLIANCE_MIGRATION,
    # -- issue 12: contacts and templates (bridge.storage.sqlite.people). 14: the address book; 15: templates.
    14: CONTACTS_MIGRATION,
    15: TEMPLATES_MIGRATION,
    # -- issue 12: scheduled sends
    # 16: the ``scheduled_send`` table (bridge.storage.sqlite.schedule).
    16: SCHEDULE_MIGRATION,
    # -- issue 12: app home. 17: indexes for the Home tab's reads (bridge.storage.sqlite.home).
    17: HOME_MIGRATION,
    # -- issue 13: bulk sends. 18: batches, their recipients, the shared send pace, ``outbound.bulk_id``
    # (bridge.storage.sqlite.bulk).
    18: BULK_MIGRATION,
    # 19: the audit actions of bulk sends, ``bulk`` and ``bulk-send`` (bridge.storage.sqlite.audit).
    19: BULK_ACTIONS_MIGRATION,
}

# The database holds the callback HMAC secret and message bodies: owner-only, like a key file.
DB_FILE_MODE = 0o600
_DB_DIR_MODE = 0o700


def _private_files(path: str) -> None:
    """Create the database file owner-only if missing, and tighten it and its -wal/-shm if they are looser.

    SQLite gives -wal and -shm the main file's permissions when it creates them, so creating the main file 0600
    (before SQLite does, with the process umask) covers all three; chmod covers files an older version left."""
    main = Path(path)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(main, os.O_RDWR | os.O_CREAT | os.O_EXCL, DB_FILE_MODE))
    for file in (main, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
            if mode & ~DB_FILE_MODE:
                file.chmod(mode & DB_FILE_MODE)
        except FileNotFoundError:
            continue


# aiosqlite raises ValueError("no active connection") once closed; callers must see one error type.
_DB_ERRORS = (sqlite3.Error, ValueError)
T = TypeVar("T")


async def _retry_locked(db: aiosqlite.Connection, sql: str, budget_seconds: float) -> None:
    """Run ``sql``, retrying while another connection holds the lock.

    Switching the journal mode answers SQLITE_BUSY at once instead of waiting on ``busy_timeout``, so a second
    replica opening the file while the first migrates must wait here.
    """
    deadline = time.monotonic() + budget_seconds
    while True:
        try:
            await db.execute(sql)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.05)


def _row_to_sms(row: aiosqlite.Row) -> OutboundSms:
    return outbound_from_row(row, py_time)


def _row_to_record(row: aiosqlite.Row) -> StatusRecord:
    received = py_time(row["received_at"])
    assert received is not None
    return StatusRecord(
        ref=row["ref"],
        status=MessageStatus(row["status"]),
        error_code=row["error_code"],
        error_message=row["error_message"],
        event_at=py_time(row["event_at"]),
        received_at=received,
    )


class SqliteStore(SqliteAdmin, TwoWaySql, AuditSql, OutboxSql, MediaSql, ComplianceSql, PeopleSql, HomeSql,
                  ScheduleSql, BulkSql):
    """One aiosqlite connection (SQLite serialises writers anyway); WAL so readers never block the writer."""

    schema_latest = max(MIGRATIONS)

    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        self._db = db
        self._path = path
        # One connection is shared by every coroutine: a write issued while another coroutine holds an open
        # transaction would silently join it (and fail on BEGIN). Writers take turns.
        self._write_lock = asyncio.Lock()
        # Writes are group-committed: each runs whole on the connection thread, several to one COMMIT.
        self._group = GroupCommit(db, self._write_lock)
        self._closed = False

    @classmethod
    async def open(cls, path: str, *, busy_timeout_ms: int = 5000) -> SqliteStore:
        """``busy_timeout_ms``: how long a write waits for another connection's lock before ``StoreUnavailable``."""
        on_disk = path != ":memory:" and not path.startswith("file:")
        try:
            if on_disk:
                Path(path).parent.mkdir(mode=_DB_DIR_MODE, parents=True, exist_ok=True)
                _private_files(path)
            db = await aiosqlite.connect(path, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open SQLite database {path}: {exc}") from exc
        try:
            db.row_factory = aiosqlite.Row
            # busy_timeout first: switching to WAL itself needs a lock another process may hold.
            await db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            await _retry_locked(db, "PRAGMA journal_mode=WAL", busy_timeout_ms / 1000)
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA synchronous=NORMAL")
            store = cls(db, path)
            await store._migrate()
            if on_disk:
                _private_files(path)  # -wal and -shm exist now
        except BaseException as exc:
            # Nobody will get this connection: close it, or its thread keeps the process alive.
            await db.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreUnavailable(f"cannot open SQLite database {path}: {exc}") from exc
            raise
        return store

    async def _version(self) -> int:
        async with self._db.execute("SELECT MAX(version) FROM schema_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    async def _applied(self) -> set[int]:
        async with self._db.execute("SELECT version FROM schema_version") as cur:
            return {int(row[0]) for row in await cur.fetchall()}

    async def _migrate(self) -> None:
        await self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        for version, script in sorted(MIGRATIONS.items()):
            if version in await self._applied():
                continue
            # executescript commits implicitly, so the version bump rides in the same script.
            try:
                await self._db.executescript(
                    f"BEGIN IMMEDIATE;\n{script}\nINSERT INTO schema_version (version) VALUES ({version});\nCOMMIT;"
                )
            except sqlite3.Error:
                if self._db.in_transaction:
                    await self._db.execute("ROLLBACK")
                # A second replica starting at the same moment may have applied it between our version read
                # and our BEGIN IMMEDIATE (the check cannot run inside executescript).
                if version in await self._applied():
                    continue
                raise

    async def schema_version(self) -> int:
        self._check_open()
        try:
            return await self._version()
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"SQLite query failed: {exc}") from exc

    def _check_open(self) -> None:
        # aiosqlite raises a bare ValueError on a closed connection; callers only know StoreUnavailable.
        if self._closed:
            raise StoreUnavailable(f"SQLite store {self._path} is closed")

    async def _one(self, sql: str, params: Sequence[Any]) -> aiosqlite.Row | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _all(self, sql: str, params: Sequence[Any]) -> list[aiosqlite.Row]:
        # execute_fetchall runs the statement to completion in ONE call on the connection's thread: a statement
        # left half-read would hold a read snapshot on this connection, and a write another coroutine issued on it
        # meanwhile would then fail at once with "database is locked" (SQLITE_BUSY_SNAPSHOT, no busy wait) as
        # soon as another connection — a second replica on the same file — had committed.
        self._check_open()
        try:
            return list(await self._db.execute_fetchall(sql, params))
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"SQLite query failed: {exc}") from exc

    async def _write(self, sql: str, params: Sequence[Any]) -> int:
        self._check_open()
        return await self._group.run(lambda conn: conn.execute(sql, params).rowcount)

    async def _transaction(self, work: Work[T]) -> T:
        """Run ``work`` (synchronous, on the connection thread) as one write transaction, group-committed."""
        self._check_open()
        return await self._group.run(work)

    async def ping(self) -> None:
        await self._one("SELECT 1", ())

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._db.close()

    async def secret(self, name: str) -> bytes:
        key = f"secret:{name}"
        await self._write("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, secrets.token_hex(32)))
        row = await self._one("SELECT value FROM meta WHERE key = ?", (key,))
        assert row is not None
        return bytes.fromhex(row["value"])

    async def create_outbound(self, ref: str, request: SendRequest, now: datetime) -> OutboundSms:
        await self._write(
            """INSERT INTO outbound (ref, created_at, updated_at, team_id, channel_id, user_id, to_number,
                   from_number, body, media, send_as_mms, origin, state, parent_ts, retry_of)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                ref, db_time(now), db_time(now), request.team_id, request.channel_id, request.user_id, request.to,
                request.from_, request.body, json.dumps(list(request.media)), int(request.send_as_mms),
                request.origin, SendState.PENDING.value, request.thread_ts, request.retry_of,
            ),
        )
        return await self._require(ref)

    async def _require(self, ref: str) -> OutboundSms:
        sms = await self.get_outbound(ref)
        if sms is None:
            raise KeyError(f"no outbound message {ref}")
        return sms

    async def get_outbound(self, ref: str) -> OutboundSms | None:
        row = await self._one("SELECT * FROM outbound WHERE ref = ?", (ref,))
        return None if row is None else _row_to_sms(row)

    async def find_by_sw_id(self, sw_id: str) -> OutboundSms | None:
        row = await self._one("SELECT * FROM outbound WHERE sw_id = ?", (sw_id,))
        return None if row is None else _row_to_sms(row)

    async def set_parent(self, ref: str, parent_ts: str, now: datetime) -> OutboundSms:
        await self._write("UPDATE outbound SET parent_ts = ?, updated_at = ? WHERE ref = ?",
                          (parent_ts, db_time(now), ref))
        return await self._require(ref)

    async def mark_submitting(self, ref: str, now: datetime) -> OutboundSms:
        """The POST is about to start: from here until an answer, a crash leaves the outcome unknown."""
        await self._write(
            """UPDATE outbound SET state = ?, submitted_at = ?, attempts = attempts + 1, next_attempt_at = NULL,
                   updated_at = ? WHERE ref = ?""",
            (SendState.SUBMITTING.value, db_time(now), db_time(now), ref),
        )
        return await self._require(ref)

    async def mark_pending(self, ref: str, next_attempt_at: datetime | None, now: datetime) -> OutboundSms:
        """Back to waiting (e.g. SignalWire said 429): nothing was created, try again at ``next_attempt_at``."""
        await self._write(
            "UPDATE outbound SET state = ?, next_attempt_at = ?, updated_at = ? WHERE ref = ?",
            (SendState.PENDING.value, None if next_attempt_at is None else db_time(next_attempt_at), db_time(now), ref),
        )
        return await self._require(ref)

    async def schedule(self, ref: str, at: datetime | None, now: datetime) -> None:
        await self._write(
            "UPDATE outbound SET next_attempt_at = ?, updated_at = ? WHERE ref = ?",
            (None if at is None else db_time(at), db_time(now), ref),
        )

    async def due(self, states: Sequence[SendState], now: datetime, limit: int = 100) -> list[OutboundSms]:
        """Messages in one of ``states`` whose ``next_attempt_at`` is unset or has passed and that nobody holds a
        live lease on (``claim_message``), oldest first."""
        marks = ",".join("?" for _ in states)
        rows = await self._all(
            f"""SELECT * FROM outbound WHERE state IN ({marks}) AND checked_at IS NULL
                   AND (next_attempt_at IS NULL OR next_attempt_at <= ?)
                   AND (claimed_until IS NULL OR claimed_until <= ?) ORDER BY created_at LIMIT ?""",
            (*[s.value for s in states], db_time(now), db_time(now), limit),
        )
        return [_row_to_sms(r) for r in rows]

    async def unfinished(self, accepted_before: datetime, limit: int = 100) -> list[OutboundSms]:
        """Accepted messages without a final status, submitted before the cutoff, not yet looked up."""
        rows = await self._all(
            """SELECT * FROM outbound WHERE state = ? AND checked_at IS NULL AND submitted_at <= ?
                   AND (status IS NULL OR status NOT IN ('delivered', 'undelivered', 'failed', 'read'))
                   ORDER BY created_at LIMIT ?""",
            (SendState.ACCEPTED.value, db_time(accepted_before), limit),
        )
        return [_row_to_sms(r) for r in rows]

    async def mark_checked(self, ref: str, now: datetime) -> None:
        await self._write("UPDATE outbound SET checked_at = ?, updated_at = ? WHERE ref = ?",
                          (db_time(now), db_time(now), ref))

    async def count(self, name: str, by: int = 1) -> None:
        await self._write(
            "INSERT INTO counter (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + ?",
            (name, by, by),
        )

    async def counters(self) -> dict[str, int]:
        return {row["name"]: row["value"] for row in await self._all("SELECT name, value FROM counter", ())}

    async def mark_accepted(self, ref: str, sw_id: str, segments: int, now: datetime) -> OutboundSms:
        await self._write(
            "UPDATE outbound SET state = ?, sw_id = ?, segments = ?, updated_at = ? WHERE ref = ?",
            (SendState.ACCEPTED.value, sw_id, segments, db_time(now), ref),
        )
        return await self._require(ref)

    async def note_sw_id(self, ref: str, sw_id: str, now: datetime) -> None:
        """An early callback named SignalWire's id while our POST was still in flight: keep it, change nothing else."""
        await self._write(
            "UPDATE outbound SET sw_id = ?, updated_at = ? WHERE ref = ? AND sw_id IS NULL",
            (sw_id, db_time(now), ref),
        )

    async def claim_retry(self, ref: str, user_id: str, now: datetime) -> bool:
        count = await self._write(
            "UPDATE outbound SET retried_by = ?, updated_at = ? WHERE ref = ? AND retried_by IS NULL",
            (user_id, db_time(now), ref),
        )
        return count == 1

    async def mark_rejected(self, ref: str, error_code: str | None, error_message: str, now: datetime) -> OutboundSms:
        await self._write(
            "UPDATE outbound SET state = ?, error_code = ?, error_message = ?, updated_at = ? WHERE ref = ?",
            (SendState.REJECTED.value, error_code, error_message, db_time(now), ref),
        )
        return await self._require(ref)

    async def mark_unknown(self, ref: str, error_message: str, now: datetime) -> OutboundSms:
        await self._write(
            "UPDATE outbound SET state = ?, error_message = ?, updated_at = ? WHERE ref = ?",
            (SendState.UNKNOWN.value, error_message, db_time(now), ref),
        )
        return await self._require(ref)

    async def record_status(
        self,
        ref: str,
        status: MessageStatus,
        error_code: str | None,
        error_message: str | None,
        event_at: datetime | None,
        now: datetime,
    ) -> StatusChange:
        def work(conn: sqlite3.Connection) -> StatusChange:
            # Under BEGIN IMMEDIATE: read-compare-update is atomic across connections and processes.
            # Looked up first: for an unknown ref the INSERT would fail its foreign key and surface as
            # StoreUnavailable instead of the KeyError every other operation raises.
            row = conn.execute("SELECT * FROM outbound WHERE ref = ?", (ref,)).fetchone()
            if row is None:
                raise KeyError(f"no outbound message {ref}")
            sms = _row_to_sms(row)
            current = sms.status
            outranks = current is None or status.rank > current.rank
            # A status that does not advance the message is never announced: it is born "told".
            new = conn.execute(
                """INSERT OR IGNORE INTO status_event (ref, status, error_code, error_message, event_at,
                       received_at, announced_at) VALUES (?, ?, ?, ?, ?, ?, ?)""",
                (ref, status.value, error_code, error_message, None if event_at is None else db_time(event_at),
                 db_time(now), None if outranks else db_time(now)),
            ).rowcount == 1
            advanced = new and outranks
            if advanced:
                conn.execute(
                    """UPDATE outbound SET status = ?, error_code = ?, error_message = ?, updated_at = ?
                       WHERE ref = ?""",
                    (status.value, error_code, error_message, db_time(now), ref),
                )
                # As the row now reads (no second SELECT: nothing else can write it inside this transaction).
                sms = replace(sms, status=status, error_code=error_code, error_message=error_message,
                              updated_at=py_time(db_time(now)) or sms.updated_at)
            events = conn.execute(
                "SELECT rowid AS recorded, * FROM status_event WHERE ref = ? ORDER BY received_at, rowid",
                (ref,)).fetchall()
            return StatusChange(
                new=new, advanced=advanced, sms=sms, history=tuple(_row_to_record(e) for e in events),
                unannounced=tuple(MessageStatus(e["status"]) for e in sorted(events, key=lambda e: int(e["recorded"]))
                                  if e["announced_at"] is None),
            )

        return await self._transaction(work)

    async def unannounced(self, ref: str) -> list[MessageStatus]:
        rows = await self._all(
            "SELECT status FROM status_event WHERE ref = ? AND announced_at IS NULL ORDER BY rowid", (ref,))
        return [MessageStatus(r["status"]) for r in rows]

    async def refs_with_unannounced(self, limit: int = 100) -> list[str]:
        rows = await self._all(
            """SELECT DISTINCT e.ref FROM status_event e JOIN outbound o ON o.ref = e.ref
               WHERE e.announced_at IS NULL AND o.state = ? LIMIT ?""",
            (SendState.ACCEPTED.value, limit),
        )
        return [r["ref"] for r in rows]

    async def announce_status(self, ref: str, status: str, writes: Sequence[OutboxWrite], now: datetime) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            # Under BEGIN IMMEDIATE no other connection can record or announce meanwhile.
            waiting = {row["status"] for row in conn.execute(
                "SELECT status FROM status_event WHERE ref = ? AND announced_at IS NULL", (ref,))}
            if status not in waiting:
                return False  # announced already (a duplicate callback, another replica, the sweeper), or not ours
            rank = MessageStatus(status).rank
            if any(MessageStatus(other).rank < rank for other in waiting if other != status):
                return False  # an earlier receipt of this message is still to be queued: it goes first
            conn.execute(
                "UPDATE status_event SET announced_at = ? WHERE ref = ? AND status = ? AND announced_at IS NULL",
                (db_time(now), ref, status),
            )
            for write in writes:
                for statement in insert_statements(write, now):
                    conn.execute(*statement).fetchall()
            return True

        return await self._transaction(work)

    # -- leases on messages (migration 10) -------------------------------------------------------------------------

    async def claim_message(self, ref: str, owner: str, now: datetime, until: datetime) -> bool:
        count = await self._write(
            """UPDATE outbound SET claimed_by = ?, claimed_until = ?
               WHERE ref = ? AND (claimed_until IS NULL OR claimed_until <= ? OR claimed_by = ?)""",
            (owner, db_time(until), ref, db_time(now), owner),
        )
        return count == 1

    async def release_message(self, ref: str, owner: str) -> None:
        await self._write(
            "UPDATE outbound SET claimed_by = NULL, claimed_until = NULL WHERE ref = ? AND claimed_by = ?",
            (ref, owner),
        )

    async def prune_status_events(self, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` status-callback rows received before ``before`` (oldest first)."""
        return await self._write(
            """DELETE FROM status_event WHERE rowid IN (
                   SELECT rowid FROM status_event WHERE received_at < ? AND announced_at IS NOT NULL
                   ORDER BY received_at LIMIT ?)""",
            (db_time(before), max(0, int(limit))),
        )

    async def history(self, ref: str) -> list[StatusRecord]:
        rows = await self._all("SELECT * FROM status_event WHERE ref = ? ORDER BY received_at, rowid", (ref,))
        return [_row_to_record(r) for r in rows]

    async def thread_messages(self, channel_id: str, parent_ts: str) -> list[OutboundSms]:
        rows = await self._all(
            "SELECT * FROM outbound WHERE channel_id = ? AND parent_ts = ? ORDER BY created_at, rowid",
            (channel_id, parent_ts),
        )
        return [_row_to_sms(r) for r in rows]
