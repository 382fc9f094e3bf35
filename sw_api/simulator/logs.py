"""The message-logs listing: query parameters, filtering and opaque-token pagination, newest first.

Owns: reading ``created_after`` / ``created_before`` / ``created_on`` / ``page_size`` / ``page_token`` and
cutting one page out of the simulator's messages.
Must not import: aiohttp, Slack packages, ``bridge``, ``handlers``. Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from sw_api.models import ApiErrorItem, parse_timestamp
from sw_api.simulator.validation import INVALID, error

if TYPE_CHECKING:
    from sw_api.simulator.engine import SimMessage

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class LogQuery:
    created_after: datetime | None = None
    created_before: datetime | None = None
    created_on: date | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    # Messages with a creation sequence number below this one (the last one of the previous page).
    before_seq: int | None = None


def encode_token(seq: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": seq}).encode()).decode().rstrip("=")


def decode_token(token: str) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)["before"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _datetime(text: str) -> datetime | None:
    try:
        return parse_timestamp(text)
    except ValueError:
        return None


def parse_query(query: Mapping[str, str]) -> LogQuery | list[ApiErrorItem]:
    """Read the listing's query string; every bad parameter becomes an error naming it."""
    errors: list[ApiErrorItem] = []
    after = before = None
    on = None
    if "created_after" in query and (after := _datetime(query["created_after"])) is None:
        errors.append(error("created_after", INVALID, "must be an ISO 8601 date or date-time"))
    if "created_before" in query and (before := _datetime(query["created_before"])) is None:
        errors.append(error("created_before", INVALID, "must be an ISO 8601 date or date-time"))
    if "created_on" in query:
        try:
            on = date.fromisoformat(query["created_on"])
        except ValueError:
            errors.append(error("created_on", INVALID, "must be an ISO 8601 date (YYYY-MM-DD)"))
    size = DEFAULT_PAGE_SIZE
    if "page_size" in query:
        text = query["page_size"]
        size = int(text) if text.isascii() and text.isdigit() and len(text) <= 4 else 0
        if not 1 <= size <= MAX_PAGE_SIZE:
            errors.append(error("page_size", INVALID, f"must be a whole number from 1 to {MAX_PAGE_SIZE}"))
    before_seq = None
    if "page_token" in query and (before_seq := decode_token(query["page_token"])) is None:
        errors.append(error("page_token", INVALID, "is not a page token this API returned"))
    if errors:
        return errors
    return LogQuery(after, before, on, size, before_seq)


def select(newest_first: Sequence[SimMessage], query: LogQuery) -> tuple[list[SimMessage], int | None]:
    """One page of matching messages and the token position of the next page (None: this is the last)."""
    matching = [m for m in newest_first if _matches(m, query)]
    page = matching[: query.page_size]
    has_more = len(matching) > query.page_size
    return page, (page[-1].seq if has_more and page else None)


def _matches(message: SimMessage, query: LogQuery) -> bool:
    created = message.created_at
    if query.before_seq is not None and message.seq >= query.before_seq:
        return False
    # Inclusive lower bound: a client reconciling a lost answer asks "after I sent" and must find it.
    if query.created_after is not None and created < query.created_after:
        return False
    if query.created_before is not None and created >= query.created_before:
        return False
    if query.created_on is not None:
        start = datetime(query.created_on.year, query.created_on.month, query.created_on.day, tzinfo=UTC)
        if not start <= created < start + timedelta(days=1):
            return False
    return True
