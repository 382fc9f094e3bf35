"""Tests of sw_api.webhooks: signature schemes against independent vectors, parsers on recorded payloads,
and property tests that no input makes a parser raise anything but MalformedWebhook.

Must not import: Slack packages, ``bridge``, ``handlers``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sw_api.errors import MalformedWebhook, SignatureMismatch
from sw_api.models import MessageStatus
from sw_api.webhooks import (
    CXML_EMPTY,
    SIGNATURE_HEADER,
    SWML_RECEIVE,
    TWILIO_SIGNATURE_HEADER,
    parse_inbound,
    parse_status_callback,
    require_signature,
    sign_form,
    sign_json,
    url_variants,
    verify_signature,
)

PAYLOADS = Path(__file__).parent / "payloads"
KEY = "PSK_test_signing_key"
URL = "https://bridge.example.org/sw/status?x=1"
BODY = b'{"id":"abc","status":"sent"}'
JSON_CT = "application/json"
FORM_CT = "application/x-www-form-urlencoded"

# Twilio's documentation example (https://www.twilio.com/docs/usage/security#validating-requests).
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_TOKEN = "12345"


def _twilio_params(number: str) -> dict[str, str]:
    return {"CallSid": "CA1234567890ABCDE", "Caller": number, "Digits": "1234", "From": number,
            "To": "+18005551212"}


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


# --- signing --------------------------------------------------------------------------------------------


def test_sign_json_known_answer() -> None:
    # Computed with `printf '%s' URL+BODY | openssl dgst -sha1 -hmac KEY`, outside this code base.
    assert sign_json(KEY, URL, BODY) == "ed3878ad5b77fb5cc01fd04a0158e3ea0e976fee"


def test_sign_json_matches_plain_hmac_over_url_then_raw_body() -> None:
    body = '{"a": "é",  "b": [1, 2]}'.encode()
    expected = hmac.new(KEY.encode(), URL.encode() + body, hashlib.sha1).hexdigest()
    assert sign_json(KEY, URL, body) == expected
    assert expected == expected.lower()


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        # The URL and parameters of Twilio's docs give this value (verified by hand with hmac/base64).
        ("+12349013030", "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
        # The widely quoted older docs value, same URL and token, with the +14158675309 numbers.
        ("+14158675309", "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
    ],
)
def test_sign_form_twilio_published_vectors(number: str, expected: str) -> None:
    assert sign_form(TWILIO_TOKEN, TWILIO_URL, _twilio_params(number)) == expected


def test_sign_form_matches_plain_hmac_and_sorts_by_name() -> None:
    params = [("To", "+15551230000"), ("Body", "hi there"), ("From", "+15558675309")]
    data = URL + "Bodyhi there" + "From+15558675309" + "To+15551230000"
    expected = base64.b64encode(hmac.new(KEY.encode(), data.encode(), hashlib.sha1).digest()).decode()
    assert sign_form(KEY, URL, params) == expected
    assert sign_form(KEY, URL, dict(params)) == expected


def test_sign_form_repeated_names_sorted_by_value() -> None:
    values = [f"v{i}" for i in range(12)]
    data = URL + "".join(f"M{v}" for v in sorted(values)) + "Zz"
    expected = base64.b64encode(hmac.new(KEY.encode(), data.encode(), hashlib.sha1).digest()).decode()
    given_order = [("Z", "z"), *[("M", v) for v in reversed(values)]]
    assert sign_form(KEY, URL, given_order) == expected
    # Twilio's validators also drop an exact repeat of a name/value pair.
    assert sign_form(KEY, URL, [*given_order, ("M", "v3")]) == expected


def test_sign_form_empty_params_signs_url_only() -> None:
    expected = base64.b64encode(hmac.new(KEY.encode(), URL.encode(), hashlib.sha1).digest()).decode()
    assert sign_form(KEY, URL, {}) == expected


# --- URL variants ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h.example/p?q=1", ["https://h.example/p?q=1", "https://h.example:443/p?q=1"]),
        ("https://h.example:443/p", ["https://h.example:443/p", "https://h.example/p"]),
        ("http://h.example/p", ["http://h.example/p", "http://h.example:80/p"]),
        ("http://h.example:80/p", ["http://h.example:80/p", "http://h.example/p"]),
        ("https://h.example:8443/p", ["https://h.example:8443/p"]),
        ("http://h.example:443/p", ["http://h.example:443/p"]),
        ("https://u:pw@h.example/p", ["https://u:pw@h.example/p", "https://u:pw@h.example:443/p"]),
        ("https://[::1]/p", ["https://[::1]/p", "https://[::1]:443/p"]),
        ("https://[::1/p", ["https://[::1/p"]),
        ("ftp://h.example/p", ["ftp://h.example/p"]),
        ("not a url", ["not a url"]),
    ],
)
def test_url_variants(url: str, expected: list[str]) -> None:
    assert url_variants(url) == expected


# --- verification ---------------------------------------------------------------------------------------


def test_verify_json_signature() -> None:
    assert verify_signature(KEY, URL, BODY, JSON_CT, sign_json(KEY, URL, BODY))


def test_verify_accepts_signature_made_with_or_without_default_port() -> None:
    with_port = "https://bridge.example.org:443/sw/status?x=1"
    assert verify_signature(KEY, URL, BODY, JSON_CT, sign_json(KEY, with_port, BODY))
    assert verify_signature(KEY, with_port, BODY, JSON_CT, sign_json(KEY, URL, BODY))


def test_verify_rejects_other_port_and_other_path() -> None:
    for other in ("https://bridge.example.org:8443/sw/status?x=1", "https://bridge.example.org/sw/status"):
        assert not verify_signature(KEY, URL, BODY, JSON_CT, sign_json(KEY, other, BODY))


def test_verify_rejects_tampered_body() -> None:
    signature = sign_json(KEY, URL, BODY)
    assert not verify_signature(KEY, URL, BODY.replace(b"sent", b"read"), JSON_CT, signature)


def test_verify_rejects_reserialised_json() -> None:
    # Same JSON value, different bytes: signatures cover the raw body only.
    signature = sign_json(KEY, URL, BODY)
    assert not verify_signature(KEY, URL, json.dumps(json.loads(BODY)).encode(), JSON_CT, signature)


def test_verify_rejects_wrong_key() -> None:
    assert not verify_signature(KEY, URL, BODY, JSON_CT, sign_json("another key", URL, BODY))


@pytest.mark.parametrize("signature", [None, "", "   "])
def test_verify_rejects_missing_signature(signature: str | None) -> None:
    assert not verify_signature(KEY, URL, BODY, JSON_CT, signature)


def test_verify_accepts_uppercase_hex() -> None:
    assert verify_signature(KEY, URL, BODY, JSON_CT, sign_json(KEY, URL, BODY).upper())


def test_verify_rejects_empty_key_even_with_matching_signature() -> None:
    assert not verify_signature("", URL, BODY, JSON_CT, sign_json("", URL, BODY))


def test_verify_rejects_non_ascii_signature() -> None:
    assert not verify_signature(KEY, URL, BODY, JSON_CT, "é" * 40)


def test_verify_form_signature() -> None:
    body = payload("inbound_cxml_mms.urlencoded")
    signature = sign_form(KEY, URL, parse_qsl(body.decode(), keep_blank_values=True))
    assert verify_signature(KEY, URL, body, FORM_CT, signature)
    assert verify_signature(KEY, URL, body, f"{FORM_CT}; charset=utf-8", signature)
    # Sniffed when the content type is missing.
    assert verify_signature(KEY, URL, body, None, signature)
    # A JSON content type never falls back to the form scheme.
    assert not verify_signature(KEY, URL, body, JSON_CT, signature)
    assert not verify_signature(KEY, URL, body.replace(b"damage", b"damages"), FORM_CT, signature)


def test_verify_form_signature_with_blank_values() -> None:
    params = [("MessageSid", "SM1"), ("Body", ""), ("From", "+15558675309")]
    body = urlencode(params).encode()
    assert verify_signature(KEY, URL, body, FORM_CT, sign_form(KEY, URL, params))


def test_verify_form_with_default_port_variant() -> None:
    params = _twilio_params("+12349013030")
    signature = sign_form(TWILIO_TOKEN, TWILIO_URL, params)
    with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    assert verify_signature(TWILIO_TOKEN, with_port, urlencode(params).encode(), FORM_CT, signature)


def test_verify_json_scheme_also_accepted_on_form_body() -> None:
    body = urlencode({"MessageSid": "SM1"}).encode()
    assert verify_signature(KEY, URL, body, FORM_CT, sign_json(KEY, URL, body))


def test_require_signature_reasons_never_leak_secrets() -> None:
    with pytest.raises(SignatureMismatch, match=SIGNATURE_HEADER):
        require_signature(KEY, URL, BODY, JSON_CT, None)
    wrong = sign_json("other", URL, BODY)
    secret_url = "https://user:hunter2@bridge.example.org/sw/status?token=s3cret"
    with pytest.raises(SignatureMismatch) as info:
        require_signature(KEY, secret_url, BODY, JSON_CT, wrong)
    text = str(info.value)
    assert "does not match" in text and "bridge.example.org/sw/status" in text
    for secret in (KEY, wrong, "hunter2", "s3cret"):
        assert secret not in text
    with pytest.raises(SignatureMismatch, match="signing key"):
        require_signature("", URL, BODY, JSON_CT, sign_json("", URL, BODY))
    require_signature(KEY, URL, BODY, JSON_CT, sign_json(KEY, URL, BODY))


# --- over real HTTP ---------------------------------------------------------------------------------------


async def _receiver(request: web.Request) -> web.Response:
    body = await request.read()
    signature = request.headers.get(SIGNATURE_HEADER) or request.headers.get(TWILIO_SIGNATURE_HEADER)
    try:
        require_signature(KEY, str(request.url), body, request.headers.get("Content-Type"), signature)
    except SignatureMismatch as exc:
        return web.Response(status=403, text=str(exc))
    if request.path == "/status":
        event = parse_status_callback(body)
        return web.json_response({"id": event.id, "status": event.status.value})
    message = parse_inbound(body, request.headers.get("Content-Type"))
    if message.source_format == "form":
        return web.Response(text=CXML_EMPTY, content_type="text/xml")
    return web.json_response(SWML_RECEIVE)


async def test_signed_webhooks_over_http(aiohttp_client: Any) -> None:
    app = web.Application()
    app.router.add_post("/status", _receiver)
    app.router.add_post("/inbound", _receiver)
    client: TestClient[web.Request, web.Application] = await aiohttp_client(app)

    status_body = payload("status_delivered.json")
    status_url = str(client.make_url("/status"))
    headers = {"Content-Type": JSON_CT, SIGNATURE_HEADER: sign_json(KEY, status_url, status_body)}
    response = await client.post("/status", data=status_body, headers=headers)
    assert response.status == 200
    assert (await response.json())["status"] == "delivered"

    response = await client.post("/status", data=status_body, headers={"Content-Type": JSON_CT})
    assert response.status == 403
    assert SIGNATURE_HEADER in await response.text()

    form_body = payload("inbound_cxml_sms.urlencoded")
    inbound_url = str(client.make_url("/inbound"))
    form_sig = sign_form(KEY, inbound_url, parse_qsl(form_body.decode(), keep_blank_values=True))
    response = await client.post(
        "/inbound", data=form_body, headers={"Content-Type": FORM_CT, TWILIO_SIGNATURE_HEADER: form_sig}
    )
    assert response.status == 200
    assert response.content_type == "text/xml"
    assert await response.text() == CXML_EMPTY

    json_body = payload("inbound_swml_sms.json")
    response = await client.post(
        "/inbound",
        data=json_body,
        headers={"Content-Type": JSON_CT, SIGNATURE_HEADER: sign_json(KEY, inbound_url, json_body)},
    )
    assert response.status == 200
    assert await response.json() == SWML_RECEIVE


def test_reply_documents() -> None:
    expected = {"version": "1.0.0", "sections": {"main": [{"receive": {}}]}}
    assert json.loads(json.dumps(SWML_RECEIVE)) == expected
    root = ET.fromstring(CXML_EMPTY.encode())
    assert root.tag == "Response" and len(root) == 0


# --- status callbacks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("status_queued.json", MessageStatus.QUEUED),
        ("status_sent.json", MessageStatus.SENT),
        ("status_delivered.json", MessageStatus.DELIVERED),
    ],
)
def test_status_progress_payloads(name: str, status: MessageStatus) -> None:
    event = parse_status_callback(payload(name))
    assert event.id == "8f4e2a71-3c9b-4d2e-a6f1-0b5c7e9d1a23"
    assert event.status is status
    assert (event.to, event.from_) == ("+15558675309", "+15551230000")
    assert event.project_id == "d2b7c1f4-6a1e-4c55-9a8b-3f0e2c7d9a10"
    assert event.number_of_segments == 1
    assert event.error_code is None and event.error_message is None
    assert event.timestamp is not None and event.timestamp.tzinfo is not None
    assert event.custom_variables == {"slack_channel": "C07ABCDEF12", "slack_ts": "1709391845.123456"}


def test_status_undelivered_30003() -> None:
    event = parse_status_callback(payload("status_undelivered_30003.json"))
    assert event.status is MessageStatus.UNDELIVERED and event.status.is_failure
    assert event.error_code == "30003"
    assert event.error_message == "Unreachable destination handset"
    assert event.timestamp == datetime(2026, 3, 2, 15, 10, 44, 2000, tzinfo=UTC)
    assert event.custom_variables == {}


def test_status_failed_with_numeric_error_code_and_extra_fields() -> None:
    event = parse_status_callback(payload("status_failed_numeric_code.json"))
    assert event.status is MessageStatus.FAILED
    assert event.error_code == "21610"
    assert event.number_of_segments == 2
    assert event.body is not None and "🚀" in event.body


def test_status_round_trips_through_to_json() -> None:
    for name in ("status_delivered.json", "status_undelivered_30003.json"):
        event = parse_status_callback(payload(name))
        assert parse_status_callback(json.dumps(event.to_json()).encode()) == event


def _status(**changes: Any) -> bytes:
    data: dict[str, Any] = json.loads(payload("status_sent.json"))
    for key, value in changes.items():
        if value is _DROP:
            data.pop(key.rstrip("_"), None)
        else:
            data[key.rstrip("_")] = value
    return json.dumps(data).encode()


_DROP = object()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "not valid JSON"),
        (b"\xff\xfe{", "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"id"', "JSON object"),
        (b"null", "JSON object"),
        (_status(id=_DROP), "'id'"),
        (_status(id=""), "'id'"),
        (_status(id=42), "'id'"),
        (_status(status=_DROP), "'status'"),
        (_status(status="bounced"), "'status'"),
        (_status(status="received"), "'status'"),
        (_status(to=_DROP), "'to'"),
        (_status(from_=None), "'from'"),
        (_status(from_=["+1555"]), "'from'"),
        (_status(number_of_segments="1"), "'number_of_segments'"),
        (_status(number_of_segments=True), "'number_of_segments'"),
        (_status(number_of_segments=-1), "'number_of_segments'"),
        (_status(timestamp="yesterday"), "'timestamp'"),
        (_status(timestamp={}), "'timestamp'"),
        (_status(error_code=True), "'error_code'"),
        (_status(error_code=[30003]), "'error_code'"),
        (_status(error_message=5), "'error_message'"),
        (_status(body=5), "'body'"),
        (_status(custom_variables=[]), "'custom_variables'"),
        (_status(custom_variables={"a": 1}), "'custom_variables'"),
    ],
)
def test_malformed_status_callbacks(body: bytes, needle: str) -> None:
    with pytest.raises(MalformedWebhook) as info:
        parse_status_callback(body)
    assert needle in str(info.value)


def test_status_minimal_and_lenient_fields() -> None:
    event = parse_status_callback(
        b'{"id": "m1", "status": "sent", "to": "+15558675309", "from": "+15551230000", "error_code": 30007.0,'
        b' "number_of_segments": 3.0, "timestamp": "2026-03-02T15:04:05"}'
    )
    assert event.error_code == "30007"
    assert event.number_of_segments == 3
    assert event.timestamp == datetime(2026, 3, 2, 15, 4, 5, tzinfo=UTC)
    assert event.project_id is None and event.body is None


# --- inbound messages -----------------------------------------------------------------------------------


def test_inbound_swml_sms() -> None:
    message = parse_inbound(payload("inbound_swml_sms.json"), JSON_CT)
    assert message.source_format == "json"
    assert message.kind == "sms"
    assert message.message_id == "a3f1c2d4-5b6e-4f70-8a91-b2c3d4e5f607"
    assert (message.from_, message.to) == ("+15558675309", "+15551230000")
    assert message.body == "Yes, 7pm works for me 👍"
    assert message.media == ()
    assert message.segments == 1
    assert message.project_id == "d2b7c1f4-6a1e-4c55-9a8b-3f0e2c7d9a10"
    assert message.timestamp == datetime(2026, 3, 2, 16, 20, 31, 245000, tzinfo=UTC)


def test_inbound_swml_mms() -> None:
    message = parse_inbound(payload("inbound_swml_mms.json"), "application/json; charset=utf-8")
    assert message.kind == "mms"
    assert message.body == "Here is the receipt"
    assert len(message.media) == 1
    item = message.media[0]
    assert item.url.endswith("receipt.jpg") and item.content_type == "image/jpeg" and item.size == 284113


def test_inbound_swml_media_only_has_no_body() -> None:
    message = parse_inbound(payload("inbound_swml_mms_media_only.json"), JSON_CT)
    assert message.body is None
    assert message.kind == "mms"
    assert [m.content_type for m in message.media] == ["image/png", "text/vcard"]


def test_inbound_swml_body_absent_and_media_as_bare_urls() -> None:
    body = json.dumps({"message": {"message_id": "m", "from": "+15558675309", "to": "+15551230000",
                                   "media": ["https://files.example/x.jpg"]}}).encode()
    message = parse_inbound(body, None)
    assert message.body is None and message.kind == "mms"
    assert message.media[0].url == "https://files.example/x.jpg" and message.media[0].content_type is None


def test_inbound_cxml_sms() -> None:
    message = parse_inbound(payload("inbound_cxml_sms.urlencoded"), FORM_CT)
    assert message.source_format == "form"
    assert message.kind == "sms"
    assert message.message_id == "SM0f9d3c1e-2b4a-4e6f-8a1c-3d5e7f9b1a2c"
    assert (message.from_, message.to) == ("+15558675309", "+15551230000")
    assert message.body == "Running 10 min late, sorry! & thanks"
    assert message.media == ()
    assert message.segments == 1
    assert message.project_id == "d2b7c1f4-6a1e-4c55-9a8b-3f0e2c7d9a10"


def test_inbound_cxml_mms_with_two_media_sniffed_without_content_type() -> None:
    for content_type in (FORM_CT, None, ""):
        message = parse_inbound(payload("inbound_cxml_mms.urlencoded"), content_type)
        assert message.source_format == "form"
        assert message.kind == "mms"
        assert [m.url.rsplit("-", 1)[-1] for m in message.media] == ["front.jpg", "side.jpg"]
        assert [m.content_type for m in message.media] == ["image/jpeg", "image/jpeg"]


def test_inbound_cxml_media_only_empty_body_is_none() -> None:
    body = urlencode({"MessageSid": "MM1", "From": "+15558675309", "To": "+15551230000", "Body": "",
                      "NumMedia": "1", "MediaUrl0": "https://files.example/a.gif"}).encode()
    message = parse_inbound(body, FORM_CT)
    assert message.body is None and message.kind == "mms" and message.media[0].content_type is None


def _swml(**changes: Any) -> bytes:
    data: dict[str, Any] = json.loads(payload("inbound_swml_mms.json"))
    for key, value in changes.items():
        if value is _DROP:
            data["message"].pop(key.rstrip("_"), None)
        else:
            data["message"][key.rstrip("_")] = value
    return json.dumps(data).encode()


def _cxml(**changes: str | None) -> bytes:
    fields = dict(
        MessageSid="MM1", AccountSid="p", From="+15558675309", To="+15551230000", Body="hi", NumMedia="1",
        MediaUrl0="https://files.example/a.jpg", MediaContentType0="image/jpeg",
    )
    for key, value in changes.items():
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
    return urlencode(fields).encode()


@pytest.mark.parametrize(
    ("body", "content_type", "needle"),
    [
        (b"{", JSON_CT, "not valid JSON"),
        (b"[]", JSON_CT, "JSON object"),
        (b"{}", JSON_CT, "'message'"),
        (b'{"message": "hi"}', JSON_CT, "'message'"),
        (_swml(message_id=_DROP), JSON_CT, "'message_id'"),
        (_swml(from_=7), JSON_CT, "'from'"),
        (_swml(to=""), JSON_CT, "'to'"),
        (_swml(body=["x"]), JSON_CT, "'body'"),
        (_swml(media={"url": "x"}), JSON_CT, "'media'"),
        (_swml(media=[{"content_type": "image/png"}]), JSON_CT, "media[0]"),
        (_swml(media=[{"url": "https://x", "size": "big"}]), JSON_CT, "'size'"),
        (_swml(media=[5]), JSON_CT, "media[0]"),
        (_swml(direction="outbound"), JSON_CT, "'direction'"),
        (_swml(segments=-2), JSON_CT, "'segments'"),
        (_swml(timestamp="not a time"), JSON_CT, "'timestamp'"),
        (_swml(timestamp=1e300), JSON_CT, "'timestamp'"),
        (b"\xff\xfe", FORM_CT, "UTF-8"),
        (_cxml(MessageSid=None), FORM_CT, "'MessageSid'"),
        (_cxml(From=""), FORM_CT, "'From'"),
        (_cxml(To=None), FORM_CT, "'To'"),
        (_cxml(NumMedia="two"), FORM_CT, "'NumMedia'"),
        (_cxml(NumMedia="-1"), FORM_CT, "'NumMedia'"),
        (_cxml(NumMedia="9" * 5000), FORM_CT, "'NumMedia'"),
        (_cxml(NumMedia="11"), FORM_CT, "'NumMedia'"),
        (_cxml(NumMedia="2"), FORM_CT, "'MediaUrl1'"),
        (_cxml(), "text/plain", "content type"),
        (_cxml(), "multipart/form-data; boundary=x", "content type"),
    ],
)
def test_malformed_inbound(body: bytes, content_type: str | None, needle: str) -> None:
    with pytest.raises(MalformedWebhook) as info:
        parse_inbound(body, content_type)
    assert needle in str(info.value)


def test_malformed_webhook_is_a_value_error() -> None:
    # Callers that only know ValueError still catch it.
    with pytest.raises(ValueError):
        parse_inbound(b"", FORM_CT)


# --- properties -----------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
content_types = st.sampled_from(
    [None, "", JSON_CT, "application/json; charset=utf-8", FORM_CT, f"{FORM_CT}; charset=utf-8", "text/plain"]
)
status_keys = ["id", "status", "to", "from", "timestamp", "project_id", "body", "number_of_segments",
               "error_code", "error_message", "custom_variables"]
message_keys = ["message_id", "from", "to", "body", "media", "type", "direction", "segments", "timestamp",
                "project_id"]
form_keys = ["MessageSid", "AccountSid", "From", "To", "Body", "NumMedia", "MediaUrl0", "MediaContentType0",
             "MediaUrl1", "NumSegments"]
fuzz = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _never_anything_but_malformed(call: Any) -> None:
    try:
        call()
    except MalformedWebhook as exc:
        assert str(exc)


@fuzz
@given(st.binary(max_size=200), content_types)
def test_arbitrary_bytes(body: bytes, content_type: str | None) -> None:
    _never_anything_but_malformed(lambda: parse_status_callback(body))
    _never_anything_but_malformed(lambda: parse_inbound(body, content_type))


@fuzz
@given(json_values, content_types)
def test_arbitrary_json_values(value: object, content_type: str | None) -> None:
    body = json.dumps(value).encode()
    _never_anything_but_malformed(lambda: parse_status_callback(body))
    _never_anything_but_malformed(lambda: parse_inbound(body, content_type))
    _never_anything_but_malformed(lambda: parse_inbound(json.dumps({"message": value}).encode(), JSON_CT))


@fuzz
@given(st.fixed_dictionaries({}, optional={k: json_values for k in status_keys}))
def test_status_shaped_objects(data: dict[str, Any]) -> None:
    _never_anything_but_malformed(lambda: parse_status_callback(json.dumps(data).encode()))


@fuzz
@given(st.fixed_dictionaries({}, optional={k: json_values for k in message_keys}))
def test_swml_shaped_objects(data: dict[str, Any]) -> None:
    _never_anything_but_malformed(lambda: parse_inbound(json.dumps({"message": data}).encode(), JSON_CT))


@fuzz
@given(st.dictionaries(st.sampled_from(form_keys), st.text(max_size=12)))
def test_form_shaped_bodies(fields: dict[str, str]) -> None:
    body = urlencode(fields).encode()
    _never_anything_but_malformed(lambda: parse_inbound(body, FORM_CT))
    _never_anything_but_malformed(lambda: parse_inbound(body, None))


@fuzz
@given(st.text(max_size=40), st.binary(max_size=80), st.text(max_size=12), content_types)
def test_signature_round_trip(url: str, body: bytes, key: str, content_type: str | None) -> None:
    signed = verify_signature(key, url, body, content_type, sign_json(key, url, body))
    assert signed is bool(key)
    assert not verify_signature(key, url, body + b"x", content_type, sign_json(key, url, body))


def test_json_inbound_keeps_ten_media_and_counts_the_rest() -> None:
    # The cXML form refuses NumMedia > 10; the JSON list has no count field, so it is capped, not refused: the
    # text still reaches Slack, items past the cap are not even read (a malformed one there loses nothing).
    media: list[Any] = [{"url": f"https://m.example/{i}.jpg", "content_type": "image/jpeg"} for i in range(1000)]
    media[500] = 42
    body = json.dumps({"message": {"message_id": "m1", "from": "+15551234567", "to": "+15557770000",
                                   "body": "hi", "direction": "inbound", "media": media}}).encode()
    message = parse_inbound(body, "application/json")
    assert [m.url for m in message.media] == [f"https://m.example/{i}.jpg" for i in range(10)]
    assert message.more_media == 990 and message.kind == "mms"
