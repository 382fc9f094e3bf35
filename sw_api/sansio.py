"""The SignalWire messaging API without I/O: URLs, headers, bodies, and answers → values or typed errors.

Owns: the space → base URL rule, Basic auth, the send body (the spec's field names exactly), the status-code →
exception mapping of ``sw_api.errors`` (incl. ``Retry-After``), and the parsing of send answers and log pages.
Every function is pure, so ``tests/test_sansio.py`` drives it with recorded bodies, no server needed.
Must not import: aiohttp (or any I/O), Slack packages, ``bridge``, ``handlers``.
"""

from __future__ import annotations

import base64
import email.utils
import http
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

from sw_api.errors import (
    BadRequest,
    ClientError,
    InvalidResponse,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
    ValidationFailed,
)
from sw_api.models import ApiErrorItem, LogRecord, Message, format_timestamp

SEND_PATH = "/api/messaging/messages"
LOGS_PATH = "/api/messaging/logs"

# A space name is a DNS label: the part before ``.signalwire.com``.
_SPACE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$", re.IGNORECASE)
_SPACE_HOST = re.compile(r"^([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)\.signalwire\.com$", re.IGNORECASE)
# Bodies kept on exceptions are for debugging; a runaway HTML error page must not bloat logs.
_MAX_KEPT_BODY = 2000


def base_url_for_space(space: str) -> str:
    """``example`` / ``example.signalwire.com`` → ``https://example.signalwire.com``; full URLs kept as given.

    Full URLs (``http://127.0.0.1:8080``) exist for the simulator and proxies. Raises ``ValueError`` naming an
    accepted form for anything else, including URLs with credentials in them (they would end up in logs).
    """
    text = space.strip().rstrip("/")
    example = "expected a space name such as `example`, `example.signalwire.com` or `https://example.signalwire.com`"
    if not text:
        raise ValueError(f"the SignalWire space is empty: {example}")
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"`{text}` is not an http(s) URL: {example}")
        if parts.username is not None or parts.password is not None:
            # Never echo the URL here: it holds the credentials.
            raise ValueError(f"the SignalWire space URL must not contain credentials: {example}")
        if parts.query or parts.fragment or parts.path not in ("", "/"):
            raise ValueError(f"`{text}` has a path or query; give only scheme, host and port: {example}")
        try:
            parts.port  # noqa: B018 -- property access validates the port
        except ValueError as exc:
            raise ValueError(f"`{text}` has an invalid port: {example}") from exc
        return text
    if _SPACE_NAME.match(text):
        return f"https://{text.lower()}.signalwire.com"
    if _SPACE_HOST.match(text):
        return f"https://{text.lower()}"
    raise ValueError(f"`{text}` is not a SignalWire space: {example}")


def basic_auth_header(project_id: str, token: str) -> str:
    """``Authorization`` value: ``Basic base64(project_id:token)`` as the spec's security scheme says."""
    if not project_id or not token:
        raise ValueError("both the project id and the API token are required")
    if ":" in project_id:
        # Basic auth splits on the first colon: such an id could never authenticate.
        raise ValueError("the project id must not contain ':'")
    raw = f"{project_id}:{token}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def build_send_body(
    to: str,
    from_: str,
    body: str | None = None,
    media: Sequence[str] = (),
    send_as_mms: bool = False,
    status_callback: str | None = None,
) -> dict[str, Any]:
    """The JSON object for ``POST /api/messaging/messages``; what is not given is left out (not null)."""
    payload: dict[str, Any] = {"to": to, "from": from_}
    if body is not None:
        payload["body"] = body
    if media:
        payload["media"] = list(media)
    if send_as_mms:
        payload["send_as_mms"] = True
    if status_callback is not None:
        payload["status_callback"] = status_callback
    return payload


def build_log_query(
    *,
    created_after: datetime | date | None = None,
    created_before: datetime | date | None = None,
    page_size: int = 50,
) -> dict[str, str]:
    """Query parameters of ``GET /api/messaging/logs`` (page_size 1–1000 as documented)."""
    if not 1 <= page_size <= 1000:
        raise ValueError(f"page_size must be between 1 and 1000, not {page_size}")
    query = {"page_size": str(page_size)}
    if created_after is not None:
        query["created_after"] = _format_bound(created_after)
    if created_before is not None:
        query["created_before"] = _format_bound(created_before)
    return query


def _format_bound(value: datetime | date) -> str:
    # datetime is a subclass of date: test it first.
    if isinstance(value, datetime):
        return format_timestamp(value if value.tzinfo else value.replace(tzinfo=UTC))
    return value.isoformat()


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup that also works on a plain ``dict`` (recorded samples)."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, val in headers.items():
        if key.lower() == lowered:
            return val
    return None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP-date (RFC 9110 §10.2.3); None if absent/bad."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        # float() accepts "nan"/"inf": neither is a wait anyone can honour.
        if seconds != seconds or seconds in (float("inf"), float("-inf")):
            return None
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


def _decode_text(body: bytes) -> str:
    return body[:_MAX_KEPT_BODY].decode("utf-8", errors="replace")


def _loads(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _error_text(status: int, data: Any) -> str:
    """SignalWire's own words from an error body, falling back to the standard reason phrase."""
    if isinstance(data, Mapping):
        error = data.get("error")
        if isinstance(error, str) and error:
            return error
        message = data.get("message")
        if isinstance(message, str) and message:
            return message
        errors = data.get("errors")
        if isinstance(errors, list):
            texts = [str(e.get("message")) for e in errors if isinstance(e, Mapping) and e.get("message")]
            if texts:
                return "; ".join(texts)
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "error"


def raise_for_status(
    status: int, headers: Mapping[str, str], body: bytes, *, now: datetime | None = None
) -> None:
    """Raise the typed error for a 4xx/5xx (or undocumented non-2xx) answer; return quietly on 2xx."""
    if 200 <= status < 300:
        return
    text = _decode_text(body)
    data = _loads(body)
    kept_headers = dict(headers.items())
    if status == 422:
        items: list[ApiErrorItem] = []
        if isinstance(data, Mapping) and isinstance(data.get("errors"), list):
            items = [ApiErrorItem.from_json(e) for e in data["errors"] if isinstance(e, Mapping)]
        raise ValidationFailed(items, headers=kept_headers, body=text)
    if status == 429:
        raise RateLimited(
            parse_retry_after(header(headers, "Retry-After"), now), headers=kept_headers, body=text
        )
    message = _error_text(status, data)
    if 400 <= status < 500:
        cls: type[ClientError] = {400: BadRequest, 401: Unauthorized, 404: NotFound}.get(status, ClientError)
        raise cls(status, message, headers=kept_headers, body=text)
    if 500 <= status < 600:
        raise ServerError(status, message, headers=kept_headers, body=text)
    # 1xx/3xx are not in the contract; whether anything was created cannot be told, so OutcomeUnknown.
    raise InvalidResponse(f"HTTP {status}: unexpected status ({message})")


def _json_object(status: int, body: bytes, what: str) -> Mapping[str, Any]:
    data = _loads(body)
    if not isinstance(data, Mapping):
        shown = "empty body" if not body.strip() else "body is not a JSON object"
        raise InvalidResponse(f"HTTP {status}: expected {what}, got {shown}")
    return data


def parse_send_response(
    status: int, headers: Mapping[str, str], body: bytes, *, now: datetime | None = None
) -> Message:
    """An answer of ``POST /api/messaging/messages`` → the created ``Message``, or the typed error."""
    raise_for_status(status, headers, body, now=now)
    data = _json_object(status, body, "a message record")
    try:
        return Message.from_json(data)
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidResponse(f"HTTP {status}: the message record is malformed ({_describe(exc)})") from exc


def parse_log_record(body: bytes, *, status: int = 200) -> LogRecord:
    """The body of ``GET /api/messaging/logs/{id}`` (after ``raise_for_status``) → ``LogRecord``."""
    data = _json_object(status, body, "a log record")
    return _log_record(data, status)


def _log_record(data: Mapping[str, Any], status: int) -> LogRecord:
    try:
        return LogRecord.from_json(data)
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidResponse(f"HTTP {status}: a log record is malformed ({_describe(exc)})") from exc


def parse_log_page(body: bytes, *, status: int = 200) -> tuple[list[LogRecord], str | None]:
    """A page of ``GET /api/messaging/logs`` → its records and ``links.next`` (None on the last page)."""
    data = _json_object(status, body, "a page of log records")
    records = data.get("data")
    if not isinstance(records, list):
        raise InvalidResponse(f"HTTP {status}: the log page has no `data` list")
    parsed = []
    for item in records:
        if not isinstance(item, Mapping):
            raise InvalidResponse(f"HTTP {status}: a log record is not an object")
        parsed.append(_log_record(item, status))
    links = data.get("links")
    next_url = links.get("next") if isinstance(links, Mapping) else None
    if next_url is not None and not isinstance(next_url, str):
        raise InvalidResponse(f"HTTP {status}: links.next is not a string")
    return parsed, (next_url or None)


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return str(exc)
