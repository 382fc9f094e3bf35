"""Engine-neutral parts of issue 12's App Home reads: the SQL both engines run and turning its rows into values.

Owns: the predicate of "an SMS that went wrong" (migration 17 indexes it on both engines), the queries of
``recent_conversations`` (a conversation's last message: the last text that actually went out or came in, never a
scheduled send that has not gone) and ``home_summary`` (``{limit}`` is the engine's placeholder), and ``recent`` /
``last_error`` (rows → ``bridge.model`` values).
Used by ``bridge.storage.sqlite.home`` and ``bridge.storage.postgres.home``.
Must not import: anything in ``bridge`` but ``bridge.model``; drivers, aiohttp, Slack packages.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from bridge.model import LastError, RecentConversation

When = Callable[[Any], datetime | None]

# Spelled out in the index and in the query alike: SQLite uses a partial index only for a WHERE that implies its
# own. Migration 17 (both engines) spells it out again, frozen: changing it here needs a new index.
ERROR_ROWS = "(state IN ('rejected', 'unknown') OR status IN ('failed', 'undelivered'))"

# A conversation's last message is the last text that went out or came in. A scheduled send counts only once it was
# released at its time (``scheduled_send.state = 'released'``), and at that time, not when it was scheduled: one
# still waiting, cancelled, missed or refused at its time never went out. (A scheduled parent does not move the
# conversation either: ``bridge.display.Parents.parent_posted``.)
OUT_AT = "COALESCE({s}.finished_at, {o}.created_at)"
RECENT_SQL = f"""
SELECT c.our_number, c.their_number, c.channel_id, c.thread_ts, c.updated_at,
       i.body AS in_body, i.media AS in_media, i.received_at AS in_at,
       o.body AS out_body, o.media AS out_media, {OUT_AT.format(s="os", o="o")} AS out_at
FROM (SELECT * FROM conversation ORDER BY updated_at DESC, our_number, their_number LIMIT {{limit}}) c
LEFT JOIN inbound i ON i.message_id = (
    SELECT message_id FROM inbound WHERE our_number = c.our_number AND their_number = c.their_number
    ORDER BY received_at DESC LIMIT 1)
LEFT JOIN outbound o ON o.ref = (
    SELECT x.ref FROM outbound x LEFT JOIN scheduled_send xs ON xs.ref = x.ref
    WHERE x.from_number = c.our_number AND x.to_number = c.their_number AND x.state <> 'scheduled'
      AND (xs.ref IS NULL OR xs.state = 'released')
    ORDER BY {OUT_AT.format(s="xs", o="x")} DESC, x.created_at DESC LIMIT 1)
LEFT JOIN scheduled_send os ON os.ref = o.ref
ORDER BY c.updated_at DESC, c.our_number, c.their_number
"""

COUNTS_SQL = """
SELECT (SELECT COUNT(DISTINCT their_number) FROM opt_out) AS opted_out,
       (SELECT COUNT(*) FROM blocked_number) AS blocked,
       (SELECT COUNT(*) FROM slack_outbox WHERE done_at IS NULL AND failed_at IS NULL) AS outbox_pending,
       (SELECT COUNT(*) FROM outbound WHERE state IN ('pending', 'submitting')) AS unsent
"""

OUTBOX_ERROR_SQL = """SELECT kind, last_error, failed_at FROM slack_outbox WHERE failed_at IS NOT NULL
   ORDER BY failed_at DESC LIMIT 1"""

SMS_ERROR_SQL = f"""SELECT state, status, error_code, error_message, updated_at FROM outbound WHERE {ERROR_ROWS}
   ORDER BY updated_at DESC LIMIT 1"""


def has_media(value: Any) -> bool:
    """A stored media column (JSON list, or NULL on old rows) that names at least one picture."""
    return isinstance(value, str) and value.strip() not in ("", "[]", "null")


def recent(row: Any, when: When) -> RecentConversation:
    """One ``RECENT_SQL`` row (either engine: ``when`` turns its time values into ``datetime``)."""
    in_at, out_at = when(row["in_at"]), when(row["out_at"])
    inbound = in_at is not None and (out_at is None or in_at >= out_at)
    if inbound:
        text, at, media = row["in_body"], in_at, has_media(row["in_media"])
    elif out_at is not None:
        text, at, media = row["out_body"], out_at, has_media(row["out_media"])
    else:
        text, at, media = None, None, False
    return RecentConversation(
        our_number=row["our_number"], their_number=row["their_number"], channel_id=row["channel_id"],
        thread_ts=row["thread_ts"], updated_at=_required(when(row["updated_at"])), last_text=text, last_at=at,
        last_inbound=inbound, last_has_media=media)


def last_error(outbox: Any, sms: Any, when: When) -> LastError | None:
    """The newer of the newest failed outbox item and the newest failed SMS (rows of the two error queries)."""
    found: list[LastError] = []
    if outbox is not None:
        found.append(LastError(_required(when(outbox["failed_at"])), "slack", str(outbox["kind"]),
                               str(outbox["last_error"] or "")))
    if sms is not None:
        what = str(sms["status"] if sms["status"] in ("failed", "undelivered") else sms["state"])
        detail = " ".join(str(p) for p in (sms["error_code"], sms["error_message"]) if p)
        found.append(LastError(_required(when(sms["updated_at"])), "sms", what, detail))
    return max(found, key=lambda e: e.at) if found else None


def _required(value: datetime | None) -> datetime:
    if value is None:
        raise ValueError("a NOT NULL time column read as NULL")
    return value
