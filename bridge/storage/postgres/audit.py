"""PostgreSQL storage of the audit trail (one row per human send attempt or refusal).

Owns: the ``audit`` SQL. Must not import: anything in ``bridge`` but ``bridge.model`` and ``bridge.storage``;
aiohttp, Slack packages, ``handlers``.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from bridge.model import SEND_ACTIONS, AuditAction, AuditEntry, OutboundSms, SendRequest
from bridge.storage.postgres.compliance import NOT_BLOCKED_SQL
from bridge.storage.postgres.connection import PgBase
from bridge.storage.postgres.rows import outbound_params, to_entry, to_sms

_SEND_ACTIONS = [a.value for a in SEND_ACTIONS]

# ``rows.INSERT_OUTBOUND`` (same parameters), guarded by the opt-out in the same statement. The casts: parameters
# in a SELECT list get no type from the target columns.
_INSERT_UNLESS_OPTED_OUT = """INSERT INTO outbound (ref, created_at, updated_at, team_id, channel_id, user_id,
       to_number, from_number, body, media, send_as_mms, origin, state, parent_ts, retry_of)
   SELECT $1::text, $2::timestamptz, $2::timestamptz, $3::text, $4::text, $5::text, $6::text, $7::text, $8::text,
          $9::text, $10::integer, $11::text, $12::text, $13::text, $14::text
   WHERE NOT EXISTS (SELECT 1 FROM opt_out WHERE our_number = $7::text AND their_number = $6::text)
     AND """ + NOT_BLOCKED_SQL + """
   RETURNING *"""  # issue 11: the block list is refused in the same statement


class AuditSql(PgBase):
    """Methods of ``Store`` for the audit trail."""

    async def audit_add(
        self,
        *,
        at: datetime,
        user_id: str,
        channel_id: str,
        action: AuditAction,
        to_number: str = "",
        from_number: str = "",
        ref: str | None = None,
        reason: str | None = None,
    ) -> str:
        audit_id = secrets.token_hex(8)
        await self._execute(
            """INSERT INTO audit (id, at, user_id, channel_id, action, to_number, from_number, ref, reason)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            audit_id, at, user_id, channel_id, AuditAction(action).value, to_number, from_number, ref, reason)
        return audit_id

    async def audit_recent_sends(self, user_id: str, since: datetime) -> int:
        row = await self._row(
            "SELECT COUNT(*) AS n FROM audit WHERE user_id = $1 AND at > $2 AND action = ANY($3::text[])",
            user_id, since, _SEND_ACTIONS)
        return 0 if row is None else int(row["n"])

    async def audit_send_times(self, user_id: str, since: datetime) -> list[datetime]:
        rows = await self._read(
            "SELECT at FROM audit WHERE user_id = $1 AND at > $2 AND action = ANY($3::text[]) ORDER BY at, rowid",
            user_id, since, _SEND_ACTIONS)
        return [r["at"] for r in rows]

    async def audit_link(self, audit_id: str, ref: str | None, outcome: str) -> None:
        # The message's own row is read in the same statement: a receipt that arrived between the send returning
        # and this link is not lost. ``outcome`` is for when there is none.
        await self._execute(
            """UPDATE audit SET ref = $2, outcome = COALESCE(
                   (SELECT COALESCE(status, state)
                           || CASE WHEN error_code IS NULL THEN '' ELSE ' (' || error_code || ')' END
                    FROM outbound WHERE ref = $2), $3),
                   to_number = COALESCE(NULLIF(to_number, ''), (SELECT to_number FROM outbound WHERE ref = $2), ''),
                   from_number = COALESCE(NULLIF(from_number, ''), (SELECT from_number FROM outbound WHERE ref = $2),
                                          '')
               WHERE id = $1""", audit_id, ref, outcome)

    async def audit_outcome(self, ref: str, outcome: str) -> bool:
        return await self._execute("UPDATE audit SET outcome = $2 WHERE ref = $1", ref, outcome) > 0

    async def audit_list(self, limit: int = 100) -> list[AuditEntry]:
        rows = await self._read("SELECT * FROM audit ORDER BY at DESC, rowid DESC LIMIT $1", max(0, int(limit)))
        return [to_entry(r) for r in rows]

    async def audit_prune(self, before: datetime, limit: int) -> int:
        return await self._execute(
            "DELETE FROM audit WHERE rowid IN (SELECT rowid FROM audit WHERE at < $1 ORDER BY at, rowid LIMIT $2)",
            before, max(0, int(limit)))

    # -- ack path (issue 10): here because it is what the audit's rate-limit read is followed by before the ack

    async def create_outbound_unless_opted_out(self, ref: str, request: SendRequest,
                                               now: datetime) -> OutboundSms | None:
        rows = await self._fetch_write(_INSERT_UNLESS_OPTED_OUT, *outbound_params(ref, request, now))
        return to_sms(rows[0]) if rows else None
