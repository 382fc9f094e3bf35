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
from collections.abc import Mapping, Sequence

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
