"""Typed, immutable values of the SignalWire messaging API: messages, log records, status events, inbound messages.

Owns: the field-by-field mapping between SignalWire's JSON and Python values (``from_json`` / ``to_json``).
Must not import: aiohttp, Slack packages, anything from ``bridge`` or ``handlers``. Pure data, no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal


class MessageStatus(enum.StrEnum):
    """Delivery state of a message (``Message.MessageStatus`` in the spec, plus ``received`` from the logs)."""

    QUEUED = "queued"
    INITIATED = "initiated"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    READ = "read"
    # Only the logs API uses this one, for inbound messages.
    RECEIVED = "received"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES

    @property
    def is_failure(self) -> bool:
        return self in (MessageStatus.UNDELIVERED, MessageStatus.FAILED)

    @property
    def rank(self) -> int:
        """Progress order: a status never replaces one of a higher rank (callbacks arrive in any order)."""
        return _RANK[self]


FINAL_STATUSES = frozenset(
    {MessageStatus.DELIVERED, MessageStatus.UNDELIVERED, MessageStatus.FAILED, MessageStatus.READ}
)
_RANK = {
    MessageStatus.QUEUED: 0,
    MessageStatus.INITIATED: 1,
    MessageStatus.SENT: 2,
    MessageStatus.RECEIVED: 2,
    MessageStatus.UNDELIVERED: 3,
    MessageStatus.FAILED: 3,
    MessageStatus.DELIVERED: 3,
    MessageStatus.READ: 4,
}

Direction = Literal["inbound", "outbound"]
Kind = Literal["sms", "mms"]


def parse_timestamp(value: str) -> datetime:
    """ISO 8601 → aware datetime (UTC when the string has no offset). Accepts a trailing ``Z``."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_timestamp(value: datetime) -> str:
    """Aware datetime → ISO 8601 with ``Z``, millisecond precision, as SignalWire writes it."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages (``got number``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class ApiErrorItem:
    """One entry of a 422 answer's ``errors`` list (``Types.StatusCodes.RestApiErrorItem``)."""

    type: str
    code: str
    message: str
    url: str
    attribute: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApiErrorItem:
        return cls(
            type=str(data.get("type", "")),
            code=str(data.get("code", "")),
            message=str(data.get("message", "")),
            url=str(data.get("url", "")),
            attribute=_str_or_none(data.get("attribute")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "code": self.code,
            "message": self.message,
            "attribute": self.attribute,
            "url": self.url,
        }


@dataclass(frozen=True, slots=True)
class Message:
    """A message record as returned by ``POST /api/messaging/messages`` (``Message.Message``, every field)."""

    id: str
    from_: str
    to: str
    body: str
    status: MessageStatus
    direction: Direction
    kind: Kind
    media: tuple[str, ...]
    number_of_segments: int
    error_code: str | None
    error_message: str | None
    created_at: datetime
    project_id: str
    status_callback_url: str | None
    message_uri: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        """Build from the API's JSON; raises ``KeyError``/``ValueError``/``TypeError`` on a malformed record."""
        direction = data["direction"]
        kind = data["kind"]
        if direction not in ("inbound", "outbound"):
            raise ValueError(f"unknown direction {direction!r}")
        if kind not in ("sms", "mms"):
            raise ValueError(f"unknown kind {kind!r}")
        media = data["media"]
        if not isinstance(media, list):
            raise TypeError("media must be a list")
        return cls(
            id=str(data["id"]),
            from_=str(data["from"]),
            to=str(data["to"]),
            body=str(data["body"]),
            status=MessageStatus(data["status"]),
            direction=direction,
            kind=kind,
            media=tuple(str(m) for m in media),
            number_of_segments=int(data["number_of_segments"]),
            error_code=_str_or_none(data["error_code"]),
            error_message=_str_or_none(data["error_message"]),
            created_at=parse_timestamp(str(data["created_at"])),
            project_id=str(data["project_id"]),
            status_callback_url=_str_or_none(data["status_callback_url"]),
            message_uri=str(data["message_uri"]),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.from_,
            "to": self.to,
            "body": self.body,
            "status": self.status.value,
            "direction": self.direction,
            "kind": self.kind,
            "media": list(self.media),
            "number_of_segments": self.number_of_segments,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "created_at": format_timestamp(self.created_at),
            "project_id": self.project_id,
            "status_callback_url": self.status_callback_url,
            "message_uri": self.message_uri,
        }


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One record of ``GET /api/messaging/logs`` (no body: the logs API never returns it)."""

    id: str
    from_: str
    to: str
    status: MessageStatus
    direction: str
    kind: str | None
    source: str | None
    type: str | None
    url: str | None
    number_of_segments: int | None
    charge: float | None
    charge_details: Any
    created_at: datetime
    error_code: str | None
    error_message: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LogRecord:
        segments = data.get("number_of_segments")
        charge = data.get("charge")
        return cls(
            id=str(data["id"]),
            from_=str(data["from"]),
            to=str(data["to"]),
            status=MessageStatus(data["status"]),
            direction=str(data.get("direction", "outbound")),
            kind=_str_or_none(data.get("kind")),
            source=_str_or_none(data.get("source")),
            type=_str_or_none(data.get("type")),
            url=_str_or_none(data.get("url")),
            number_of_segments=None if segments is None else int(segments),
            charge=None if charge is None else float(charge),
            charge_details=data.get("charge_details"),
            created_at=parse_timestamp(str(data["created_at"])),
            error_code=_str_or_none(data.get("error_code")),
            error_message=_str_or_none(data.get("error_message")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.from_,
            "to": self.to,
            "status": self.status.value,
            "direction": self.direction,
            "kind": self.kind,
            "source": self.source,
            "type": self.type,
            "url": self.url,
            "number_of_segments": self.number_of_segments,
            "charge": self.charge,
            "charge_details": self.charge_details,
            "created_at": format_timestamp(self.created_at),
            "error_code": self.error_code,
            "error_message": self.error_message,
        }


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """One status callback (JSON body POSTed to ``status_callback``), see shared/signalwire/FACTS.md."""

    id: str
    status: MessageStatus
    to: str
    from_: str
    timestamp: datetime | None
    project_id: str | None = None
    body: str | None = None
    number_of_segments: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    custom_variables: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "project_id": self.project_id,
            "status": self.status.value,
            "to": self.to,
            "from": self.from_,
            "body": self.body,
            "number_of_segments": self.number_of_segments,
            "timestamp": None if self.timestamp is None else format_timestamp(self.timestamp),
            "error_code": self.error_code,
            "error_message": self.error_message,
        }
        if self.custom_variables:
            data["custom_variables"] = dict(self.custom_variables)
        return data


@dataclass(frozen=True, slots=True)
class MediaItem:
    """One attachment of an inbound MMS."""

    url: str
    content_type: str | None = None
    size: int | None = None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """Someone texted our number: one shape for both webhook formats (SWML JSON and cXML form)."""

    message_id: str
    from_: str
    to: str
    body: str | None
    media: tuple[MediaItem, ...] = ()
    project_id: str | None = None
    kind: Kind = "sms"
    segments: int | None = None
    timestamp: datetime | None = None
    source_format: Literal["json", "form"] = "json"
    more_media: int = 0  # attachments beyond the first ten, not kept (the JSON format has no NumMedia cap)
