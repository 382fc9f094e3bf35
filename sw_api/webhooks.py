"""Webhook security and parsing: signatures on SignalWire's webhooks, and the bodies of status callbacks
and inbound messages.

Owns: the two signature schemes (JSON: hex HMAC-SHA1 of URL + raw body; form: base64 HMAC-SHA1 of URL +
sorted name/value pairs, Twilio-compatible), their verification, turning callback / inbound bodies into
``StatusEvent`` / ``InboundMessage``, and the "accept, no reply" answers (``SWML_RECEIVE``, ``CXML_EMPTY``).
Must not import: aiohttp, Slack packages, ``bridge``, ``handlers``. Pure functions, no I/O.

Signing is hand-written on ``hmac``/``hashlib``: neither ``signalwire-sdk`` nor ``twilio`` is a dependency,
and each would pull a large client (and ``requests``) in for about twenty lines. The algorithm mirrors the
official ``signalwire-sdk`` ``webhook_validator`` and Twilio's ``RequestValidator``; tests pin it with known
vectors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from sw_api.errors import MalformedWebhook, SignatureMismatch
from sw_api.models import InboundMessage, MediaItem, MessageStatus, StatusEvent, json_type, parse_timestamp

SIGNATURE_HEADER = "X-SignalWire-Signature"
TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"


def _hmac_sha1(key: str, message: bytes) -> bytes:
    return hmac.new(key.encode("utf-8"), message, hashlib.sha1).digest()


def sign_json(key: str, url: str, body: bytes) -> str:
    """Signature of a JSON webhook: lowercase hex HMAC-SHA1(key, URL + raw body), nothing in between."""
    return _hmac_sha1(key, url.encode("utf-8") + body).hex()


def _pairs(params: Mapping[str, str] | Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    if isinstance(params, Mapping):
        return [(str(k), str(v)) for k, v in params.items()]
    return [(str(k), str(v)) for k, v in params]


def form_signing_string(url: str, params: Mapping[str, str] | Sequence[tuple[str, str]]) -> str:
    """What the form scheme hashes: URL + name+value for each parameter sorted by name.

    A repeated name contributes each of its distinct values in sorted order: Twilio's validators (python
    ``sorted(set(values))``, node ``Array.from(new Set(v)).sort()``) do exactly this, so we match them.
    """
    grouped: dict[str, set[str]] = {}
    for name, value in _pairs(params):
        grouped.setdefault(name, set()).add(value)
    parts = [url]
    for name in sorted(grouped):
        for value in sorted(grouped[name]):
            parts.append(name + value)
    return "".join(parts)


def sign_form(key: str, url: str, params: Mapping[str, str] | Sequence[tuple[str, str]]) -> str:
    """Signature of a form-encoded (cXML) webhook: base64 HMAC-SHA1(key, ``form_signing_string``)."""
    digest = _hmac_sha1(key, form_signing_string(url, params).encode("utf-8"))
    return base64.b64encode(digest).decode("ascii")


def url_variants(url: str) -> list[str]:
    """The URL as given, then the same URL with the scheme's default port added or removed.

    Proxies and load balancers disagree on whether ``:443``/``:80`` is part of the URL; the official
    validators accept either, so do we. Anything else (other ports, unparsable URLs) has one variant.
    """
    variants = [url]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return variants
    default = _DEFAULT_PORTS.get(parts.scheme.lower())
    if default is None or not parts.netloc:
        return variants
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if port == default:
        hostport = hostport[: -len(f":{default}")]
    elif port is None and not hostport.endswith(":"):
        hostport = f"{hostport}:{default}"
    else:
        return variants
    other = urlunsplit(parts._replace(netloc=f"{userinfo}{at}{hostport}"))
    if other != url:
        variants.append(other)
    return variants


_DEFAULT_PORTS = {"https": 443, "http": 80}


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _is_form(content_type: str | None, body: bytes) -> bool:
    media_type = _media_type(content_type)
    if media_type:
        return media_type == "application/x-www-form-urlencoded"
    # No content type: anything that does not look like JSON may be a form post.
    return body.lstrip()[:1] not in (b"{", b"[")


def _form_pairs(body: bytes) -> list[tuple[str, str]] | None:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return parse_qsl(text, keep_blank_values=True)


def _equal(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii"))


def verify_signature(
    key: str, url: str, body: bytes, content_type: str | None, signature: str | None
) -> bool:
    """Whether ``signature`` (the ``X-SignalWire-Signature`` / ``X-Twilio-Signature`` value) is valid.

    Tries the JSON scheme over every URL variant first, then (when the body is form-encoded, or has no
    content type and does not look like JSON) the form scheme, as the official SDK does. Comparisons are
    constant-time. A missing or empty signature, or an empty key, is never valid: an empty signing key
    would let anyone sign, so it fails closed rather than trusting a misconfiguration.
    """
    if not key or not signature:
        return False
    given = signature.strip()
    # compare_digest refuses non-ASCII str; such a header can never match a hex or base64 digest anyway.
    if not given or not given.isascii():
        return False
    variants = url_variants(url)
    # Hex is case-insensitive: an uppercase digest is the same bytes, so it is accepted.
    given_hex = given.lower()
    matched = False
    for candidate in variants:
        # No early exit: every candidate is compared, so timing does not reveal which variant matched.
        matched |= _equal(sign_json(key, candidate, body), given_hex)
    if matched:
        return True
    if not _is_form(content_type, body):
        return False
    pairs = _form_pairs(body)
    if pairs is None:
        return False
    for candidate in variants:
        matched |= _equal(sign_form(key, candidate, pairs), given)
    return matched


def require_signature(
    key: str, url: str, body: bytes, content_type: str | None, signature: str | None
) -> None:
    """Like ``verify_signature`` but raises ``SignatureMismatch`` saying why.

    The message never echoes the key or the signature, and shows the URL without credentials or query.
    """
    if not key:
        raise SignatureMismatch("no signing key is configured, so no webhook can be verified")
    if not signature or not signature.strip():
        raise SignatureMismatch(f"missing {SIGNATURE_HEADER} (or {TWILIO_SIGNATURE_HEADER}) header")
    if not verify_signature(key, url, body, content_type, signature):
        schemes = "JSON and form schemes" if _is_form(content_type, body) else "JSON scheme"
        raise SignatureMismatch(
            f"{SIGNATURE_HEADER} does not match the body for {_describe_url(url)} (tried the {schemes}, "
            "with and without the default port; check the signing key and that the URL is the public one "
            "SignalWire calls)"
        )


def _describe_url(url: str) -> str:
    # Userinfo and query strings sometimes carry secrets; scheme, host and path are enough to debug.
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


# --- "accept, no reply" answers --------------------------------------------------------------------

SWML_RECEIVE: dict[str, Any] = {"version": "1.0.0", "sections": {"main": [{"receive": {}}]}}
CXML_EMPTY: str = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


# --- parsing -------------------------------------------------------------------------------------------
# Every parser below turns any input bytes into either a value or ``MalformedWebhook`` naming what is wrong;
# the reader helpers are where every type check lives, so no other exception type can escape.

# The statuses a status callback can carry (``received`` exists only in the logs API).
_CALLBACK_STATUSES = frozenset(MessageStatus) - {MessageStatus.RECEIVED}
_FORM_TYPE = "application/x-www-form-urlencoded"


def _load_json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    # ValueError covers bad JSON, bad UTF-8 and over-long integers; RecursionError very deep nesting.
    except (ValueError, RecursionError) as exc:
        raise MalformedWebhook(f"{what}: body is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise MalformedWebhook(f"{what}: body must be a JSON object, got {json_type(data)}")
    return data


def _required_str(data: Mapping[str, Any], name: str, what: str) -> str:
    if name not in data or data[name] is None:
        raise MalformedWebhook(f"{what}: missing required field {name!r}")
    value = data[name]
    if not isinstance(value, str):
        raise MalformedWebhook(f"{what}: field {name!r} must be a string, got {json_type(value)}")
    if not value.strip():
        raise MalformedWebhook(f"{what}: field {name!r} must not be empty")
    return value


def _optional_str(data: Mapping[str, Any], name: str, what: str) -> str | None:
    value = data.get(name)
    if value is None or isinstance(value, str):
        return value
    raise MalformedWebhook(f"{what}: field {name!r} must be a string or null, got {json_type(value)}")


def _optional_int(data: Mapping[str, Any], name: str, what: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    # bool is an int subclass in Python but never a count in JSON.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    raise MalformedWebhook(f"{what}: field {name!r} must be a whole number >= 0 or null, got {value!r:.30}")


def _error_code(data: Mapping[str, Any], what: str) -> str | None:
    value = data.get("error_code")
    if value is None or isinstance(value, str):
        return value
    # Carrier codes such as 30003 sometimes arrive as JSON numbers.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    raise MalformedWebhook(f"{what}: field 'error_code' must be a string, number or null, got {value!r:.40}")


def _timestamp(value: object, name: str, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        if isinstance(value, str):
            return parse_timestamp(value)
        # Epoch seconds: not documented, but unambiguous, so accepted rather than dropping a message.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
    except (ValueError, OverflowError, OSError):
        raise MalformedWebhook(f"{what}: field {name!r} is not an ISO 8601 time: {value!r:.40}") from None
    raise MalformedWebhook(f"{what}: field {name!r} must be an ISO 8601 string, got {json_type(value)}")


def parse_status_callback(body: bytes) -> StatusEvent:
    """A status callback's raw JSON body → ``StatusEvent``; ``MalformedWebhook`` for anything else.

    Required: ``id``, ``status``, ``to``, ``from``. Extra fields are ignored; ``error_code`` may be a number.
    """
    what = "status callback"
    data = _load_json_object(body, what)
    message_id = _required_str(data, "id", what)
    status_text = _required_str(data, "status", what)
    if status_text not in _CALLBACK_STATUSES:
        raise MalformedWebhook(f"{what}: field 'status' has unknown value {status_text!r:.40}")
    custom = data.get("custom_variables")
    if custom is None:
        custom = {}
    elif not isinstance(custom, dict) or not all(isinstance(v, str) for v in custom.values()):
        raise MalformedWebhook(f"{what}: field 'custom_variables' must be an object of strings")
    return StatusEvent(
        id=message_id,
        status=MessageStatus(status_text),
        to=_required_str(data, "to", what),
        from_=_required_str(data, "from", what),
        timestamp=_timestamp(data.get("timestamp"), "timestamp", what),
        project_id=_optional_str(data, "project_id", what),
        body=_optional_str(data, "body", what),
        number_of_segments=_optional_int(data, "number_of_segments", what),
        error_code=_error_code(data, what),
        error_message=_optional_str(data, "error_message", what),
        custom_variables=dict(custom),
    )


# Inbound MMS carry at most 10 attachments (Twilio's limit, which SignalWire's cXML mirrors); a larger
# NumMedia is a forged or broken request, not something to loop over. The
# JSON format keeps the first 10 and counts the rest (``InboundMessage.more_media``).
_MAX_INBOUND_MEDIA = 10


def parse_inbound(body: bytes, content_type: str | None) -> InboundMessage:
    """An inbound-message webhook → ``InboundMessage``; ``MalformedWebhook`` for anything else.

    ``application/json`` is the SWML format, ``application/x-www-form-urlencoded`` the cXML one; without a
    content type the body is sniffed (a JSON object starts with ``{``).
    """
    media_type = _media_type(content_type)
    if media_type == "application/json" or media_type.endswith("+json"):
        return _parse_inbound_json(body)
    if media_type == _FORM_TYPE:
        return _parse_inbound_form(body)
    if media_type:
        raise MalformedWebhook(f"inbound message: unsupported content type {media_type!r:.60}")
    if body.lstrip()[:1] == b"{":
        return _parse_inbound_json(body)
    return _parse_inbound_form(body)


def _media_item(item: object, index: int, what: str) -> MediaItem:
    name = f"message.media[{index}]"
    # The REST API lists media as bare URLs; accept that shape here too rather than lose the message.
    if isinstance(item, str):
        item = {"url": item}
    if not isinstance(item, dict):
        raise MalformedWebhook(f"{what}: {name} must be an object, got {json_type(item)}")
    return MediaItem(
        url=_required_str(item, "url", f"{what}: {name}"),
        content_type=_optional_str(item, "content_type", f"{what}: {name}"),
        size=_optional_int(item, "size", f"{what}: {name}"),
    )


def _parse_inbound_json(body: bytes) -> InboundMessage:
    what = "inbound message (SWML JSON)"
    data = _load_json_object(body, what)
    message = data.get("message")
    if message is None:
        raise MalformedWebhook(f"{what}: missing required field 'message'")
    if not isinstance(message, dict):
        raise MalformedWebhook(f"{what}: field 'message' must be an object, got {json_type(message)}")
    where = f"{what}: message"
    direction = _optional_str(message, "direction", where)
    if direction is not None and direction != "inbound":
        raise MalformedWebhook(f"{where}: field 'direction' must be 'inbound', got {direction!r:.40}")
    raw_media = message.get("media")
    if raw_media is None:
        raw_media = []
    if not isinstance(raw_media, list):
        raise MalformedWebhook(f"{where}: field 'media' must be an array, got {json_type(raw_media)}")
    # The same cap as the cXML format's NumMedia, but a longer list is kept as "N more" rather than refused:
    # the text still reaches Slack (items past the cap are not even read, so one malformed item there is moot).
    media = tuple(_media_item(item, i, what) for i, item in enumerate(raw_media[:_MAX_INBOUND_MEDIA]))
    # An unknown ``type`` is not fatal: the media list decides, so a new message type is not dropped.
    message_type = _optional_str(message, "type", where)
    return InboundMessage(
        message_id=_required_str(message, "message_id", where),
        from_=_required_str(message, "from", where),
        to=_required_str(message, "to", where),
        body=_optional_str(message, "body", where),
        media=media,
        project_id=_optional_str(message, "project_id", where),
        kind="mms" if media or message_type == "mms" else "sms",
        segments=_optional_int(message, "segments", where),
        timestamp=_timestamp(message.get("timestamp"), "timestamp", where),
        source_format="json",
        more_media=max(0, len(raw_media) - _MAX_INBOUND_MEDIA),
    )




def _is_small_count(text: str) -> bool:
    # isascii excludes digits like "²" that isdigit accepts and int() refuses; the length cap keeps int()
    # away from its 4300-digit limit.
    return text.isascii() and text.isdigit() and len(text) <= 6


def _parse_inbound_form(body: bytes) -> InboundMessage:
    what = "inbound message (cXML form)"
    pairs = _form_pairs(body)
    if pairs is None:
        raise MalformedWebhook(f"{what}: body is not UTF-8")
    fields: dict[str, str] = {}
    for name, value in pairs:
        # First value wins: a repeated field is never legitimately different in SignalWire's posts.
        fields.setdefault(name, value)
    num_text = fields.get("NumMedia", "0").strip() or "0"
    if not _is_small_count(num_text) or int(num_text) > _MAX_INBOUND_MEDIA:
        raise MalformedWebhook(
            f"{what}: field 'NumMedia' must be a whole number 0-{_MAX_INBOUND_MEDIA}, got {num_text!r:.40}"
        )
    media = []
    for i in range(int(num_text)):
        url = fields.get(f"MediaUrl{i}", "")
        if not url.strip():
            raise MalformedWebhook(f"{what}: NumMedia is {num_text} but field 'MediaUrl{i}' is missing")
        media.append(MediaItem(url=url, content_type=fields.get(f"MediaContentType{i}") or None))
    text = fields.get("Body")
    # cXML sends an empty Body for a media-only MMS; the JSON format sends null. One shape for both.
    if text == "" and media:
        text = None
    segments_text = fields.get("NumSegments", "")
    return InboundMessage(
        message_id=_required_str(fields, "MessageSid", what),
        from_=_required_str(fields, "From", what),
        to=_required_str(fields, "To", what),
        body=text,
        media=tuple(media),
        project_id=fields.get("AccountSid") or None,
        kind="mms" if media else "sms",
        segments=int(segments_text) if _is_small_count(segments_text) else None,
        timestamp=None,
        source_format="form",
    )
