"""PostgreSQL storage of outbound messages: intents, durable sending, delivery statuses, receipts, leases, counters.

Owns: the ``outbound``, ``status_event``, ``meta`` and ``counter`` SQL. ``record_status`` and ``announce_status``
lock the message's row (``SELECT … FOR UPDATE``) first, so replicas recording or announcing statuses of one
message take turns; leases (``claim_message``) are conditional updates, re-checked by PostgreSQL on the locked row.
Must not import: anything in ``bridge`` but ``bridge.model`` and ``bridge.storage``; aiohttp, Slack, ``handlers``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

from bridge.model import OutboundSms, OutboxWrite, SendRequest, SendState, StatusChange, StatusRecord
from bridge.storage.postgres.connection import PgBase, rowcount
from bridge.storage.postgres.outbox import insert_item
from bridge.storage.postgres.rows import INSERT_OUTBOUND, outbound_params, rank_sql, to_record, to_sms
from sw_api.models import MessageStatus

_FINAL = "('delivered', 'undelivered', 'failed', 'read')"


_HISTORY_COLUMNS = ("status", "error_code", "error_message", "event_at", "received_at", "announced_at", "rowid")
_RECORD_STATUS = f"""
    WITH cur AS (SELECT * FROM outbound WHERE ref = $1 FOR UPDATE),
    ins AS (
        INSERT INTO status_event (ref, status, error_code, error_message, event_at, received_at, announced_at)
        SELECT ref, $2::text, $3::text, $4::text, $5::timestamptz, $6::timestamptz,
               CASE WHEN status IS NULL OR {rank_sql('status')} < {rank_sql('$2::text')} THEN NULL
                    ELSE $6::timestamptz END
        FROM cur
        ON CONFLICT (ref, status) DO NOTHING
        RETURNING {", ".join(_HISTORY_COLUMNS)}, announced_at IS NULL AS advances),
    upd AS (
        UPDATE outbound SET status = $2::text, error_code = $3::text, error_message = $4::text,
            updated_at = $6::timestamptz
        WHERE ref = $1 AND EXISTS (SELECT 1 FROM ins WHERE advances)
        RETURNING *),
    -- The statement's snapshot does not show its own insert: the history is the rows before it, plus it.
    hist AS (
        SELECT {", ".join(_HISTORY_COLUMNS)} FROM status_event WHERE ref = $1
        UNION ALL SELECT {", ".join(_HISTORY_COLUMNS)} FROM ins)
    SELECT now_row.*, EXISTS (SELECT 1 FROM ins) AS recorded_new, EXISTS (SELECT 1 FROM upd) AS recorded_advanced,
        {", ".join(f"ARRAY(SELECT {c} FROM hist ORDER BY received_at, rowid) AS history_{c}"
                   for c in _HISTORY_COLUMNS)}
    FROM (SELECT * FROM upd UNION ALL SELECT * FROM cur WHERE NOT EXISTS (SELECT 1 FROM upd)) AS now_row"""


class MessagesSql(PgBase):
    """Methods of ``Store`` for outbound messages and their statuses."""

    async def ping(self) -> None:
        await self._read("SELECT 1")

    async def secret(self, name: str) -> bytes:
        key = f"secret:{name}"
        await self._execute("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                            key, secrets.token_hex(32))
        row = await self._row("SELECT value FROM meta WHERE key = $1", key)
        assert row is not None
        return bytes.fromhex(row["value"])

    async def create_outbound(self, ref: str, request: SendRequest, now: datetime) -> OutboundSms:
        await self._execute(INSERT_OUTBOUND, *outbound_params(ref, request, now))
        return await self._require(ref)

    async def _require(self, ref: str) -> OutboundSms:
        sms = await self.get_outbound(ref)
        if sms is None:
            raise KeyError(f"no outbound message {ref}")
        return sms

    async def get_outbound(self, ref: str) -> OutboundSms | None:
        row = await self._row("SELECT * FROM outbound WHERE ref = $1", ref)
        return None if row is None else to_sms(row)

    async def find_by_sw_id(self, sw_id: str) -> OutboundSms | None:
        row = await self._row("SELECT * FROM outbound WHERE sw_id = $1", sw_id)
        return None if row is None else to_sms(row)

    async def set_parent(self, ref: str, parent_ts: str, now: datetime) -> OutboundSms:
        await self._execute("UPDATE outbound SET parent_ts = $2, updated_at = $3 WHERE ref = $1", ref, parent_ts, now)
        return await self._require(ref)

    async def mark_submitting(self, ref: str, now: datetime) -> OutboundSms:
        await self._execute(
            """UPDATE outbound SET state = $2, submitted_at = $3, attempts = attempts + 1, next_attempt_at = NULL,
                   updated_at = $3 WHERE ref = $1""", ref, SendState.SUBMITTING.value, now)
        return await self._require(ref)

    async def mark_pending(self, ref: str, next_attempt_at: datetime | None, now: datetime) -> OutboundSms:
        await self._execute("UPDATE outbound SET state = $2, next_attempt_at = $3, updated_at = $4 WHERE ref = $1",
                            ref, SendState.PENDING.value, next_attempt_at, now)
        return await self._require(ref)

    async def schedule(self, ref: str, at: datetime | None, now: datetime) -> None:
        await self._execute("UPDATE outbound SET next_attempt_at = $2, updated_at = $3 WHERE ref = $1", ref, at, now)

    async def due(self, states: Sequence[SendState], now: datetime, limit: int = 100) -> list[OutboundSms]:
        rows = await self._read(
            """SELECT * FROM outbound WHERE state = ANY($1::text[]) AND checked_at IS NULL
                   AND (next_attempt_at IS NULL OR next_attempt_at <= $2)
                   AND (claimed_until IS NULL OR claimed_until <= $2)
               ORDER BY created_at, rowid LIMIT $3""",
            [s.value for s in states], now, max(0, int(limit)))
        return [to_sms(r) for r in rows]

    async def unfinished(self, accepted_before: datetime, limit: int = 100) -> list[OutboundSms]:
        rows = await self._read(
            f"""SELECT * FROM outbound WHERE state = $1 AND checked_at IS NULL AND submitted_at <= $2
                   AND (status IS NULL OR status NOT IN {_FINAL}) ORDER BY created_at, rowid LIMIT $3""",
            SendState.ACCEPTED.value, accepted_before, max(0, int(limit)))
        return [to_sms(r) for r in rows]

    async def mark_checked(self, ref: str, now: datetime) -> None:
        await self._execute("UPDATE outbound SET checked_at = $2, updated_at = $2 WHERE ref = $1", ref, now)

    async def count(self, name: str, by: int = 1) -> None:
        await self._execute(
            "INSERT INTO counter (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = counter.value "
            "+ EXCLUDED.value", name, by)

    async def counters(self) -> dict[str, int]:
        return {r["name"]: int(r["value"]) for r in await self._read("SELECT name, value FROM counter")}

    async def mark_accepted(self, ref: str, sw_id: str, segments: int, now: datetime) -> OutboundSms:
        await self._execute("UPDATE outbound SET state = $2, sw_id = $3, segments = $4, updated_at = $5 WHERE ref = $1",
                            ref, SendState.ACCEPTED.value, sw_id, segments, now)
        return await self._require(ref)

    async def note_sw_id(self, ref: str, sw_id: str, now: datetime) -> None:
        await self._execute("UPDATE outbound SET sw_id = $2, updated_at = $3 WHERE ref = $1 AND sw_id IS NULL",
                            ref, sw_id, now)

    async def claim_retry(self, ref: str, user_id: str, now: datetime) -> bool:
        count = await self._execute(
            "UPDATE outbound SET retried_by = $2, updated_at = $3 WHERE ref = $1 AND retried_by IS NULL",
            ref, user_id, now)
        return count == 1

    async def mark_rejected(self, ref: str, error_code: str | None, error_message: str, now: datetime) -> OutboundSms:
        await self._execute(
            "UPDATE outbound SET state = $2, error_code = $3, error_message = $4, updated_at = $5 WHERE ref = $1",
            ref, SendState.REJECTED.value, error_code, error_message, now)
        return await self._require(ref)

    async def mark_unknown(self, ref: str, error_message: str, now: datetime) -> OutboundSms:
        await self._execute("UPDATE outbound SET state = $2, error_message = $3, updated_at = $4 WHERE ref = $1",
                            ref, SendState.UNKNOWN.value, error_message, now)
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
        # One statement, so one round trip and its own transaction: the row lock (taken first; under READ COMMITTED
        # it sees the latest committed row) makes read-compare-update atomic across connections and replicas, and
        # ON CONFLICT sees a duplicate that committed while we waited for it. A status that does not advance the
        # message is never announced: it is born "told".
        rows = await self._fetch_write(_RECORD_STATUS, ref, status.value, error_code, error_message, event_at, now)
        if not rows:
            raise KeyError(f"no outbound message {ref}")
        row = rows[0]
        events = list(zip(*(row[f"history_{c}"] for c in _HISTORY_COLUMNS), strict=True))
        history = tuple(StatusRecord(ref=ref, status=MessageStatus(e[0]), error_code=e[1], error_message=e[2],
                                     event_at=e[3], received_at=e[4]) for e in events)
        return StatusChange(
            new=row["recorded_new"], advanced=row["recorded_advanced"], sms=to_sms(row), history=history,
            unannounced=tuple(MessageStatus(e[0]) for e in sorted(events, key=lambda e: int(e[6])) if e[5] is None),
        )

    async def history(self, ref: str) -> list[StatusRecord]:
        rows = await self._read("SELECT * FROM status_event WHERE ref = $1 ORDER BY received_at, rowid", ref)
        return [to_record(r) for r in rows]

    async def unannounced(self, ref: str) -> list[MessageStatus]:
        rows = await self._read(
            "SELECT status FROM status_event WHERE ref = $1 AND announced_at IS NULL ORDER BY rowid", ref)
        return [MessageStatus(r["status"]) for r in rows]

    async def refs_with_unannounced(self, limit: int = 100) -> list[str]:
        rows = await self._read(
            """SELECT DISTINCT e.ref FROM status_event e JOIN outbound o ON o.ref = e.ref
               WHERE e.announced_at IS NULL AND o.state = $1 LIMIT $2""",
            SendState.ACCEPTED.value, max(0, int(limit)))
        return [r["ref"] for r in rows]

    async def announce_status(self, ref: str, status: str, writes: Sequence[OutboxWrite], now: datetime) -> bool:
        async with self._tx() as conn:
            # Announcements of one message take turns, so receipts are queued in rank order whoever queues them.
            # The message's row lock makes announcements of one message take turns. One statement: a status of
            # lower rank can only be unannounced if it was recorded before this one (later it is born told), so
            # this statement's snapshot already shows it; a stale "unannounced" only refuses, and the caller
            # looks again.
            marked = await conn.execute(
                f"""WITH locked AS (SELECT 1 FROM outbound WHERE ref = $1 FOR UPDATE)
                    UPDATE status_event SET announced_at = $3
                    WHERE ref = $1 AND status = $2 AND announced_at IS NULL AND EXISTS (SELECT 1 FROM locked)
                        AND NOT EXISTS (SELECT 1 FROM status_event e WHERE e.ref = $1 AND e.announced_at IS NULL
                                            AND e.status <> $2 AND {rank_sql('e.status')} < {rank_sql('$2::text')})""",
                ref, status, now)
            if rowcount(marked) != 1:
                # Announced already (a duplicate callback, or the sweeper got there first), or a lower-rank status
                # of this message is still to be told first.
                return False
            for write in writes:
                await insert_item(conn, write, now, ref_serialised=True)
            return True

    async def prune_status_events(self, before: datetime, limit: int) -> int:
        return await self._execute(
            """DELETE FROM status_event WHERE rowid IN (
                   SELECT rowid FROM status_event WHERE received_at < $1 AND announced_at IS NOT NULL
                   ORDER BY received_at LIMIT $2)""", before, max(0, int(limit)))

    async def thread_messages(self, channel_id: str, parent_ts: str) -> list[OutboundSms]:
        rows = await self._read(
            "SELECT * FROM outbound WHERE channel_id = $1 AND parent_ts = $2 ORDER BY created_at, rowid",
            channel_id, parent_ts)
        return [to_sms(r) for r in rows]

    # -- leases (migration 10) ------------------------------------------------------------------------------------

    async def claim_message(self, ref: str, owner: str, now: datetime, until: datetime) -> bool:
        count = await self._execute(
            """UPDATE outbound SET claimed_by = $2, claimed_until = $4
               WHERE ref = $1 AND (claimed_until IS NULL OR claimed_until <= $3 OR claimed_by = $2)""",
            ref, owner, now, until)
        return count == 1

    async def release_message(self, ref: str, owner: str) -> None:
        await self._execute(
            "UPDATE outbound SET claimed_by = NULL, claimed_until = NULL WHERE ref = $1 AND claimed_by = $2",
            ref, owner)
