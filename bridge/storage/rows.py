"""Rows → domain values where both storage adapters read them alike: ``outbound``, ``slack_outbox`` and issue 13's
``bulk_batch`` / ``bulk_recipient`` (with the report's status of a recipient).

Owns: the column ↔ field mapping of an outbound message, an outbox item, a bulk batch and a bulk recipient (same
column names on every engine; ``media``, ``payload`` and ``fields`` are JSON text everywhere), and the two bulk
reads both engines run alike (``BULK_PROGRESS_SQL``, ``BULK_REPORT_SQL``: templates for each engine's
placeholders). Each engine passes how it reads a time column (SQLite: ISO text; PostgreSQL: already a ``datetime``).
Must not import: anything in ``bridge`` but ``bridge.model`` and ``bridge.bulk_model``; drivers, aiohttp, Slack,
``handlers``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from bridge.bulk_model import BatchState, BulkBatch, BulkRecipientRow, BulkReportRow, RecipientState
from bridge.model import OutboundSms, OutboxItem, SendState
from sw_api.models import MessageStatus

TimeReader = Callable[[Any], datetime | None]


class Row(Protocol):
    """A row read by column name: ``sqlite3.Row`` and ``asyncpg.Record`` both are."""

    def __getitem__(self, key: str) -> Any: ...


def outbound_from_row(row: Row, as_time: TimeReader) -> OutboundSms:
    created, updated = as_time(row["created_at"]), as_time(row["updated_at"])
    assert created is not None and updated is not None
    return OutboundSms(
        ref=row["ref"],
        created_at=created,
        updated_at=updated,
        team_id=row["team_id"],
        channel_id=row["channel_id"],
        user_id=row["user_id"],
        to=row["to_number"],
        from_=row["from_number"],
        body=row["body"],
        media=tuple(json.loads(row["media"])),
        send_as_mms=bool(row["send_as_mms"]),
        origin=row["origin"],
        state=SendState(row["state"]),
        sw_id=row["sw_id"],
        status=None if row["status"] is None else MessageStatus(row["status"]),
        error_code=row["error_code"],
        error_message=row["error_message"],
        segments=row["segments"],
        parent_ts=row["parent_ts"],
        retry_of=row["retry_of"],
        submitted_at=as_time(row["submitted_at"]),
        attempts=row["attempts"],
        next_attempt_at=as_time(row["next_attempt_at"]),
        checked_at=as_time(row["checked_at"]),
    )


def outbox_item_from_row(row: Row) -> OutboxItem:
    return OutboxItem(
        id=int(row["id"]),
        thread_key=row["thread_key"],
        kind=row["kind"],
        ref=row["ref"],
        channel=row["channel"],
        payload=json.loads(row["payload"]),
        attempts=int(row["attempts"]),
        result=row["result"],
        last_error=row["last_error"],
        # A claim still set on a due item was cut off (crash, stop, expired lease); a counted attempt failed.
        uncertain=row["claimed_until"] is not None or int(row["attempts"]) > 0,
    )


# -- issue 13: bulk sends ---------------------------------------------------------------------------------------------

# Carrier statuses of a handed recipient's message, as the progress counters and the report group them.
BULK_DELIVERED = ("delivered", "read")
BULK_FAILED = ("failed", "undelivered")

# The live parent's counters in one read: a handed recipient is counted by its message's state and carrier status
# (delivered; failed = rejected, failed, undelivered, or an unknown POST outcome; sent = accepted otherwise;
# remaining while its POST has not been answered).
BULK_PROGRESS_SQL = """SELECT
    COUNT(*) FILTER (WHERE r.state = 'handed' AND o.status IN ('delivered', 'read')) AS delivered,
    COUNT(*) FILTER (WHERE r.state = 'handed' AND (o.status IS NULL OR o.status NOT IN ('delivered', 'read'))
                     AND (o.state IN ('rejected', 'unknown') OR o.status IN ('failed', 'undelivered'))) AS failed,
    COUNT(*) FILTER (WHERE r.state = 'handed' AND o.state = 'accepted'
                     AND (o.status IS NULL OR o.status NOT IN ('delivered', 'read', 'failed', 'undelivered'))) AS sent,
    COUNT(*) FILTER (WHERE r.state = 'skipped') AS skipped,
    COUNT(*) FILTER (WHERE r.state = 'cancelled') AS cancelled,
    COUNT(*) FILTER (WHERE r.state IN ('waiting', 'claimed')
                     OR (r.state = 'handed' AND (o.state IS NULL OR o.state IN ('pending', 'submitting'))))
        AS remaining,
    COUNT(*) FILTER (WHERE r.state = 'waiting' AND r.held_until > {now}) AS quiet_waiting
FROM bulk_recipient r LEFT JOIN outbound o ON o.ref = r.ref WHERE r.batch_id = {batch}"""

# One page of the report: recipients in line order after ``{after}``, each with its message (if handed).
BULK_REPORT_SQL = """SELECT r.seq, r.number, r.name, r.state AS r_state, r.skip_reason, o.state AS o_state, o.status,
       o.error_code, o.error_message, o.submitted_at
FROM bulk_recipient r LEFT JOIN outbound o ON o.ref = r.ref
WHERE r.batch_id = {batch} AND r.seq > {after} ORDER BY r.seq LIMIT {limit}"""


def bulk_batch_from_row(row: Row, as_time: TimeReader) -> BulkBatch:
    created = as_time(row["created_at"])
    assert created is not None
    return BulkBatch(
        id=row["id"], user_id=row["user_id"], channel_id=row["channel_id"], from_=row["from_number"],
        body=row["body"], title=row["title"], state=BatchState(row["state"]), total=int(row["total"]),
        created_at=created, team_id=row["team_id"], parent_ts=row["parent_ts"],
        confirmed_at=as_time(row["confirmed_at"]), finished_at=as_time(row["finished_at"]),
        finished_by=row["finished_by"],
    )


def bulk_recipient_from_row(row: Row, as_time: TimeReader) -> BulkRecipientRow:
    """A ``bulk_recipient`` row; its quiet-hours hold is the column ``held_until`` (a time column by its name, so
    the administration tools carry it across engines as a time)."""
    return BulkRecipientRow(
        seq=int(row["seq"]), line=int(row["line"]), number=row["number"], name=row["name"],
        fields=json.loads(row["fields"] or "{}"), state=RecipientState(row["state"]), skip_reason=row["skip_reason"],
        not_before=as_time(row["held_until"]),
    )


def bulk_report_from_row(row: Row, as_time: TimeReader) -> BulkReportRow:
    """One report line from a recipient joined with its outbound message (columns ``r_state``, ``skip_reason``,
    ``o_state``, ``status``, ``error_code``, ``error_message``, ``submitted_at``; the message's may be NULL).

    status: ``skipped`` / ``cancelled`` / ``pending`` (not handed yet, or its POST not answered yet) / ``delivered``
    / ``failed`` (rejected, failed, undelivered) / ``unknown`` (the POST's outcome is unknown) / ``sent``."""
    state = RecipientState(row["r_state"])
    error_code, error_message = row["error_code"], row["error_message"]
    if state is RecipientState.SKIPPED:
        status, error_code, error_message = "skipped", None, row["skip_reason"]
    elif state is RecipientState.CANCELLED:
        status, error_code, error_message = "cancelled", None, None
    elif state is not RecipientState.HANDED or row["o_state"] in (None, SendState.PENDING, SendState.SUBMITTING):
        status = "pending"
    elif row["status"] in BULK_DELIVERED:
        status = "delivered"
    elif row["o_state"] == SendState.REJECTED or row["status"] in BULK_FAILED:
        status = "failed"
    elif row["o_state"] == SendState.UNKNOWN:
        status = "unknown"
    else:
        status = "sent"
    return BulkReportRow(number=row["number"], name=row["name"], status=status, error_code=error_code,
                         error_message=error_message,
                         sent_at=as_time(row["submitted_at"]) if state is RecipientState.HANDED else None)


HAND_OVER_NOT_OURS = "not ours"


def hand_over_check(row: Row | None, owner: str, to: str, batch_id: str, seq: int) -> RecipientState | str | None:
    """What ``bulk_hand_over`` finds in its locked recipient-and-batch row (``state``, ``claimed_by``, ``number``,
    ``b_state``): None — go on; ``HAND_OVER_NOT_OURS`` — write nothing; a ``RecipientState`` — put the recipient
    back there (the batch is paused or over). The same rule on both engines."""
    if row is None or row["state"] != RecipientState.CLAIMED or row["claimed_by"] != owner:
        return HAND_OVER_NOT_OURS
    if row["number"] != to:
        raise ValueError(f"recipient {seq} of batch {batch_id} is {row['number']}, not {to}")
    if row["b_state"] != BatchState.SENDING:
        return RecipientState.WAITING if row["b_state"] == BatchState.PAUSED else RecipientState.CANCELLED
    return None
