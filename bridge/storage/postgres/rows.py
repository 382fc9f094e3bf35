"""Rows of the PostgreSQL store ↔ the values of ``bridge.model``.

Owns: the mapping of ``asyncpg.Record`` rows to ``OutboundSms``, ``StatusRecord``, ``Conversation``, ``SlackReply``,
``OutboxItem`` and ``AuditEntry``, the column list of an outbound INSERT, and ``RANK_SQL`` (``MessageStatus.rank``
as a SQL expression). Must not import: anything in ``bridge`` but ``bridge.model``; aiohttp, Slack, ``handlers``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from bridge.model import (
    AuditAction,
    AuditEntry,
    Conversation,
    OutboundSms,
    OutboxItem,
    SendRequest,
    SendState,
    SlackReply,
    StatusRecord,
)
from bridge.storage.rows import outbound_from_row, outbox_item_from_row
from sw_api.models import MessageStatus


def rank_sql(column: str) -> str:
    """``MessageStatus.rank`` of a status column, as SQL (unknown text ranks lowest)."""
    cases = " ".join(f"WHEN '{s.value}' THEN {s.rank}" for s in MessageStatus)
    return f"(CASE {column} {cases} ELSE -1 END)"


INSERT_OUTBOUND = """INSERT INTO outbound (ref, created_at, updated_at, team_id, channel_id, user_id, to_number,
       from_number, body, media, send_as_mms, origin, state, parent_ts, retry_of)
   VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"""


def outbound_params(ref: str, request: SendRequest, now: datetime) -> tuple[Any, ...]:
    return (ref, now, request.team_id, request.channel_id, request.user_id, request.to, request.from_, request.body,
            json.dumps(list(request.media)), int(request.send_as_mms), request.origin, SendState.PENDING.value,
            request.thread_ts, request.retry_of)


def to_sms(row: asyncpg.Record) -> OutboundSms:
    return outbound_from_row(row, _as_time)


def _as_time(value: datetime | None) -> datetime | None:
    return value  # TIMESTAMPTZ columns arrive as aware datetimes

def to_record(row: asyncpg.Record) -> StatusRecord:
    return StatusRecord(
        ref=row["ref"],
        status=MessageStatus(row["status"]),
        error_code=row["error_code"],
        error_message=row["error_message"],
        event_at=row["event_at"],
        received_at=row["received_at"],
    )


def to_conversation(row: asyncpg.Record) -> Conversation:
    return Conversation(row["our_number"], row["their_number"], row["channel_id"], row["thread_ts"],
                        row["updated_at"])


def to_reply(row: asyncpg.Record) -> SlackReply:
    return SlackReply(row["channel_id"], row["thread_ts"], row["ts"], row["user_id"], row["text"], row["team_id"],
                      row["subtype"], row["attempts"], tuple(json.loads(row["files"] or "[]")))


def to_item(row: asyncpg.Record) -> OutboxItem:
    return outbox_item_from_row(row)


def to_entry(row: asyncpg.Record) -> AuditEntry:
    return AuditEntry(
        id=row["id"], at=row["at"], user_id=row["user_id"], channel_id=row["channel_id"],
        action=AuditAction(row["action"]), to_number=row["to_number"], from_number=row["from_number"],
        ref=row["ref"], reason=row["reason"], outcome=row["outcome"],
    )
