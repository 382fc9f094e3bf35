"""Validation of a ``POST /api/messaging/messages`` body, the way SignalWire answers it (422, every error).

Owns: turning a decoded JSON object into a ``CreateRequest`` or the full list of ``ApiErrorItem``s.
Must not import: aiohttp, Slack packages, ``bridge``, ``handlers``. Pure functions, no I/O.

Hand-written rather than a JSON Schema validator: the spec's schema only says "string" for ``to``/``from``
and says nothing of the body/media dependency or the limits, and SignalWire's answer names one attribute
per error with its own codes, which a generic validator's messages would not give.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sw_api.models import ApiErrorItem, Kind, json_type
from sw_api.text import MAX_BODY_CHARS, MAX_MEDIA, is_e164, is_passthrough, is_short_code

ERROR_DOCS = "https://developer.signalwire.com/rest/overview/error-codes"
MISSING = "missing_required_parameter"
INVALID = "invalid_parameter"
TOO_LONG = "parameter_too_long"
NOT_OWNED = "from_number_not_owned"


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A create request that passed validation."""

    to: str
    from_: str
    body: str
    media: tuple[str, ...]
    send_as_mms: bool
    status_callback: str | None

    @property
    def kind(self) -> Kind:
        return "mms" if self.media or self.send_as_mms else "sms"


def error(attribute: str | None, code: str, message: str) -> ApiErrorItem:
    return ApiErrorItem(
        type="validation_error", code=code, message=message, attribute=attribute, url=f"{ERROR_DOCS}#{code}"
    )


def _single_line(value: str) -> bool:
    # SignalWire's numbers are single-line tokens; a stray newline is a client bug worth a 422.
    return "\n" not in value


def is_http_url(value: str) -> bool:
    """An absolute http(s) URL with a host, no whitespace or control characters, and a valid port."""
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in value):
        return False
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError on a port out of range or not numeric
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def validate_create(
    data: Mapping[str, Any], owned_numbers: frozenset[str] = frozenset()
) -> CreateRequest | list[ApiErrorItem]:
    """Check every attribute and return the request, or every error found (not just the first)."""
    errors: list[ApiErrorItem] = []

    to: Any = data.get("to")
    if "to" not in data:
        errors.append(error("to", MISSING, "is required"))
    elif not isinstance(to, str):
        errors.append(error("to", INVALID, f"must be a string, got {json_type(to)}"))
    elif not (_single_line(to) and (is_e164(to) or is_passthrough(to))):
        errors.append(
            error("to", INVALID, "must be in E.164 format (+ and 5 to 17 digits) or a passthrough number (988)")
        )

    from_: Any = data.get("from")
    if "from" not in data:
        errors.append(error("from", MISSING, "is required"))
    elif not isinstance(from_, str):
        errors.append(error("from", INVALID, f"must be a string, got {json_type(from_)}"))
    elif not (_single_line(from_) and (is_e164(from_) or is_short_code(from_))):
        errors.append(error("from", INVALID, "must be in E.164 format or a short code (5 or 6 digits)"))
    elif owned_numbers and from_ not in owned_numbers:
        errors.append(error("from", NOT_OWNED, "is not a phone number purchased on this project"))

    media: list[str] = []
    raw_media = data.get("media")
    if "media" in data:
        if not isinstance(raw_media, list):
            errors.append(error("media", INVALID, f"must be an array of URLs, got {json_type(raw_media)}"))
        else:
            if len(raw_media) > MAX_MEDIA:
                errors.append(error("media", TOO_LONG, f"has {len(raw_media)} items (maximum is {MAX_MEDIA})"))
            for index, item in enumerate(raw_media):
                if not isinstance(item, str) or not is_http_url(item):
                    errors.append(error("media", INVALID, f"item {index} must be an http or https URL"))
                else:
                    media.append(item)

    body = data.get("body")
    if "body" in data:
        if not isinstance(body, str):
            errors.append(error("body", INVALID, f"must be a string, got {json_type(body)}"))
        elif len(body) > MAX_BODY_CHARS:
            errors.append(error("body", TOO_LONG, f"is too long (maximum is {MAX_BODY_CHARS} characters)"))
        elif not body and not raw_media:
            errors.append(error("body", MISSING, "can't be blank when no media is given"))
    elif not raw_media:
        errors.append(error("body", MISSING, "is required when no media is given"))

    send_as_mms = data.get("send_as_mms", False)
    if not isinstance(send_as_mms, bool):
        errors.append(error("send_as_mms", INVALID, f"must be a boolean, got {json_type(send_as_mms)}"))

    callback = data.get("status_callback")
    if "status_callback" in data and not (isinstance(callback, str) and is_http_url(callback)):
        errors.append(error("status_callback", INVALID, "must be an http or https URL"))

    if errors:
        return errors
    return CreateRequest(
        to=to,
        from_=from_,
        body=body if isinstance(body, str) else "",
        media=tuple(media),
        send_as_mms=bool(send_as_mms),
        status_callback=callback if isinstance(callback, str) else None,
    )
