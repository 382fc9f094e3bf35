"""Rows → domain values where both storage adapters read them alike: ``outbound`` and ``slack_outbox``.

Owns: the column ↔ field mapping of an outbound message and of an outbox item (same column names on every
engine; ``media`` and ``payload`` are JSON text everywhere). Each engine passes how it reads a time column
(SQLite: ISO text; PostgreSQL: already a ``datetime``).
Must not import: anything in ``bridge`` but ``bridge.model``; drivers, aiohttp, Slack, ``handlers``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

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
