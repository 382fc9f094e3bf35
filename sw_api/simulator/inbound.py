"""The two shapes of SignalWire's inbound-message webhook, built from a simulated text, and their signatures.

Owns: the SWML/JSON body (``{"message": {...}, "params": {}}``) and the cXML form fields (``MessageSid``,
``From``, ``MediaUrl0``...) for one inbound message, plus the headers SignalWire signs them with.
Must not import: aiohttp, Slack packages, ``bridge``, ``handlers``. Pure functions, no I/O.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime

from sw_api.models import format_timestamp
from sw_api.text import segment_info
from sw_api.webhooks import SIGNATURE_HEADER, TWILIO_SIGNATURE_HEADER, sign_form, sign_json


def space_id(project_id: str) -> str:
    """A stable fake space id: the same project always lives in the same space."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"signalwire-simulator:{project_id}"))


def inbound_segments(body: str | None, media: Sequence[tuple[str, str]]) -> int:
    # A media-only MMS still travels as one message.
    return max(1, segment_info(body or "").segments)


def json_payload(
    *,
    message_id: str,
    project_id: str,
    from_: str,
    to: str,
    body: str | None,
    media: Sequence[tuple[str, str]],
    timestamp: datetime,
) -> bytes:
    """The SWML-style JSON body; ``body`` stays null for a media-only MMS, as SignalWire sends it."""
    message = {
        "message_id": message_id,
        "project_id": project_id,
        "space_id": space_id(project_id),
        "direction": "inbound",
        "type": "mms" if media else "sms",
        "from": from_,
        "to": to,
        "body": body,
        # The size is unknown without fetching the file; SignalWire's field is informative only.
        "media": [{"url": url, "content_type": content_type, "size": None} for url, content_type in media],
        "segments": inbound_segments(body, media),
        "timestamp": format_timestamp(timestamp),
    }
    return json.dumps({"message": message, "params": {}}).encode("utf-8")


def form_params(
    *,
    message_id: str,
    project_id: str,
    from_: str,
    to: str,
    body: str | None,
    media: Sequence[tuple[str, str]],
) -> dict[str, str]:
    """The cXML (Twilio-compatible) form fields; a media-only MMS has an empty ``Body``."""
    params = {
        "MessageSid": message_id,
        "SmsMessageSid": message_id,
        "AccountSid": project_id,
        "From": from_,
        "To": to,
        "Body": body or "",
        "NumMedia": str(len(media)),
        "NumSegments": str(inbound_segments(body, media)),
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }
    for index, (url, content_type) in enumerate(media):
        params[f"MediaUrl{index}"] = url
        params[f"MediaContentType{index}"] = content_type
    return params


def json_headers(signing_key: str, url: str, payload: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", SIGNATURE_HEADER: sign_json(signing_key, url, payload)}


def form_headers(signing_key: str, url: str, params: dict[str, str]) -> dict[str, str]:
    signature = sign_form(signing_key, url, params)
    # cXML webhooks carry the same signature under both names; older receivers only read Twilio's.
    return {SIGNATURE_HEADER: signature, TWILIO_SIGNATURE_HEADER: signature}
