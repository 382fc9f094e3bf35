"""Tests of sw_api.sansio: pure functions driven by recorded bodies (tests/payloads/sw_*.json)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from sw_api import sansio
from sw_api.errors import (
    BadRequest,
    ClientError,
    InvalidResponse,
    NotFound,
    NotSent,
    OutcomeUnknown,
    RateLimited,
    ServerError,
    Unauthorized,
    ValidationFailed,
)
from sw_api.models import MessageStatus

PAYLOADS = Path(__file__).parent / "payloads"
SPEC = Path(__file__).parent / "schemas" / "signalwire-messaging.openapi.yaml"
JSON = {"Content-Type": "application/json"}


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    return loaded


def validate(spec: dict[str, Any], ref: str, instance: Any) -> None:
    schema = {"$ref": f"#/components/schemas/{ref}", "components": spec["components"]}
    jsonschema.Draft202012Validator(schema).validate(instance)


# --- the recorded samples themselves follow the contract -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ref"),
    [
        ("sw_send_201.json", "Message.Message"),
        ("sw_send_201_mms.json", "Message.Message"),
        ("sw_400.json", "Types.StatusCodes.StatusCode400"),
        ("sw_401.json", "Types.StatusCodes.StatusCode401"),
        ("sw_422.json", "Message.MessagesCreateStatusCode422"),
        ("sw_500.json", "Types.StatusCodes.StatusCode500"),
    ],
)
def test_recorded_samples_match_the_spec(spec: dict[str, Any], name: str, ref: str) -> None:
    validate(spec, ref, json.loads(payload(name)))


def test_the_schema_check_is_not_vacuous(spec: dict[str, Any]) -> None:
    broken = json.loads(payload("sw_send_201.json"))
    del broken["message_uri"]
    with pytest.raises(jsonschema.ValidationError):
        validate(spec, "Message.Message", broken)


# --- base_url_for_space ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        ("example", "https://example.signalwire.com"),
        ("Example", "https://example.signalwire.com"),
        ("my-space", "https://my-space.signalwire.com"),
        ("example.signalwire.com", "https://example.signalwire.com"),
        ("example.signalwire.com/", "https://example.signalwire.com"),
        ("https://example.signalwire.com", "https://example.signalwire.com"),
        ("https://example.signalwire.com/", "https://example.signalwire.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("  example  ", "https://example.signalwire.com"),
    ],
)
def test_base_url_for_space(space: str, expected: str) -> None:
    assert sansio.base_url_for_space(space) == expected


@pytest.mark.parametrize(
    "space",
    [
        "",
        "   ",
        "exa mple",
        "example.twilio.com",
        "-bad",
        "ftp://example.com",
        "http://",
        "https://x.com/api",
    ],
)
def test_base_url_for_space_rejects_with_an_example(space: str) -> None:
    with pytest.raises(ValueError, match=r"example\.signalwire\.com"):
        sansio.base_url_for_space(space)


def test_base_url_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(ValueError, match="credentials") as info:
        sansio.base_url_for_space("https://proj:PTsecret@example.signalwire.com")
    assert "PTsecret" not in str(info.value)


# --- auth and bodies -------------------------------------------------------------------------------------


def test_basic_auth_header_round_trips() -> None:
    value = sansio.basic_auth_header("proj-id", "PT:with:colons")
    scheme, _, encoded = value.partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded).decode() == "proj-id:PT:with:colons"


@pytest.mark.parametrize(("project", "token"), [("", "PTsecret42"), ("p", ""), ("a:b", "PTsecret42")])
def test_basic_auth_header_rejects_unusable_credentials(project: str, token: str) -> None:
    with pytest.raises(ValueError, match="project id") as info:
        sansio.basic_auth_header(project, token)
    assert "PTsecret42" not in str(info.value)


def test_send_body_minimal_omits_everything_not_given() -> None:
    assert sansio.build_send_body("+15551234567", "+15550100000") == {
        "to": "+15551234567",
        "from": "+15550100000",
    }


def test_send_body_full_uses_the_spec_field_names(spec: dict[str, Any]) -> None:
    body = sansio.build_send_body(
        "+15551234567",
        "+15550100000",
        body="hi",
        media=("https://x.example/a.png",),
        send_as_mms=True,
        status_callback="https://bridge.example/cb",
    )
    assert body == {
        "to": "+15551234567",
        "from": "+15550100000",
        "body": "hi",
        "media": ["https://x.example/a.png"],
        "send_as_mms": True,
        "status_callback": "https://bridge.example/cb",
    }
    props = spec["components"]["schemas"]["Message.CreateMessageRequest"]["properties"]
    assert set(body) == set(props)
    validate(spec, "Message.CreateMessageRequest", body)


def test_send_body_keeps_an_empty_body_string() -> None:
    # "" is a body the caller chose (e.g. media-only with caption cleared); only None means "not given".
    assert sansio.build_send_body("+1", "+2", body="", media=["https://m"])["body"] == ""


def test_log_query() -> None:
    query = sansio.build_log_query(
        created_after=datetime(2026, 3, 2, 14, 0, tzinfo=UTC), created_before=date(2026, 3, 3), page_size=10
    )
    assert query == {
        "page_size": "10",
        "created_after": "2026-03-02T14:00:00.000Z",
        "created_before": "2026-03-03",
    }
    naive = sansio.build_log_query(created_after=datetime(2026, 3, 2, 14, 0))
    assert naive["created_after"] == "2026-03-02T14:00:00.000Z"


@pytest.mark.parametrize("size", [0, 1001, -5])
def test_log_query_page_size_bounds(size: int) -> None:
    with pytest.raises(ValueError, match="between 1 and 1000"):
        sansio.build_log_query(page_size=size)


# --- Retry-After -----------------------------------------------------------------------------------------

NOW = datetime(2026, 3, 2, 14, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        ("0.5", 0.5),
        (" 120 ", 120.0),
        ("-4", 0.0),
        ("Mon, 02 Mar 2026 14:00:30 GMT", 30.0),
        ("Mon, 02 Mar 2026 13:59:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert sansio.parse_retry_after(value, NOW) == expected


@given(st.integers(min_value=0, max_value=10**6))
def test_retry_after_seconds_round_trip(seconds: int) -> None:
    assert sansio.parse_retry_after(str(seconds), NOW) == seconds


@given(st.integers(min_value=0, max_value=86400))
def test_retry_after_http_date_round_trip(seconds: int) -> None:
    from email.utils import format_datetime

    when = format_datetime(NOW + timedelta(seconds=seconds), usegmt=True)
    assert sansio.parse_retry_after(when, NOW) == seconds


def test_header_lookup_is_case_insensitive_on_plain_dicts() -> None:
    assert sansio.header({"retry-after": "2"}, "Retry-After") == "2"
    assert sansio.header({"X": "1"}, "Retry-After") is None


# --- parse_send_response ---------------------------------------------------------------------------------


def test_201_parses_every_field() -> None:
    msg = sansio.parse_send_response(201, JSON, payload("sw_send_201.json"))
    assert msg.id == "6f1c2b7e-3d4a-4e8b-9c1d-2a3b4c5d6e7f"
    assert (msg.from_, msg.to, msg.body) == ("+15550100000", "+15551234567", "Hello from Slack!")
    assert msg.status is MessageStatus.QUEUED
    assert (msg.direction, msg.kind, msg.media) == ("outbound", "sms", ())
    assert msg.number_of_segments == 1
    assert msg.created_at == datetime(2026, 3, 2, 14, 5, 9, 123000, tzinfo=UTC)
    assert msg.status_callback_url == "https://bridge.example.org/signalwire/status"
    assert msg.message_uri.endswith(msg.id)


def test_201_mms() -> None:
    msg = sansio.parse_send_response(201, JSON, payload("sw_send_201_mms.json"))
    assert msg.kind == "mms"
    assert msg.media == ("https://files.example.org/cat.jpg", "https://files.example.org/dog.png")
    assert msg.status_callback_url is None


def test_400() -> None:
    with pytest.raises(BadRequest) as info:
        sansio.parse_send_response(400, JSON, payload("sw_400.json"))
    assert info.value.status == 400
    assert info.value.detail == "Bad Request"
    assert isinstance(info.value, NotSent)


def test_401() -> None:
    with pytest.raises(Unauthorized) as info:
        sansio.parse_send_response(401, JSON, payload("sw_401.json"))
    assert str(info.value) == "HTTP 401: Unauthorized"


def test_404_without_body_uses_the_reason_phrase() -> None:
    with pytest.raises(NotFound, match="Not Found"):
        sansio.parse_send_response(404, {}, b"")


def test_422_carries_every_error_item() -> None:
    with pytest.raises(ValidationFailed) as info:
        sansio.parse_send_response(422, JSON, payload("sw_422.json"))
    err = info.value
    assert [e.attribute for e in err.errors] == ["to", None]
    assert err.errors[0].code == "invalid_parameter"
    assert err.errors[1].message == "Either body or media is required."
    assert "The 'to' number is not a valid E.164 phone number." in str(err)
    assert "invalid_parameter" in err.body


def test_422_with_unreadable_body_still_is_validation_failed() -> None:
    with pytest.raises(ValidationFailed) as info:
        sansio.parse_send_response(422, {}, b"<html>oops</html>")
    assert info.value.errors == ()
    assert info.value.body == "<html>oops</html>"


def test_429_with_retry_after_seconds() -> None:
    with pytest.raises(RateLimited) as info:
        sansio.parse_send_response(429, {"retry-after": "2"}, b"")
    assert info.value.retry_after == 2.0
    assert isinstance(info.value, NotSent)


def test_429_with_retry_after_date() -> None:
    with pytest.raises(RateLimited) as info:
        sansio.parse_send_response(429, {"Retry-After": "Mon, 02 Mar 2026 14:00:05 GMT"}, b"", now=NOW)
    assert info.value.retry_after == 5.0


def test_429_without_retry_after() -> None:
    with pytest.raises(RateLimited) as info:
        sansio.parse_send_response(429, {}, b'{"error": "Too Many Requests"}')
    assert info.value.retry_after is None


@pytest.mark.parametrize("status", [403, 405, 409, 413, 418])
def test_other_4xx_are_client_errors(status: int) -> None:
    with pytest.raises(ClientError) as info:
        sansio.parse_send_response(status, JSON, b'{"error": "Nope from SignalWire"}')
    assert type(info.value) is ClientError
    assert info.value.status == status
    assert "Nope from SignalWire" in str(info.value)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_are_server_errors_and_outcome_unknown(status: int) -> None:
    with pytest.raises(ServerError) as info:
        sansio.parse_send_response(status, JSON, payload("sw_500.json"))
    assert info.value.status == status
    assert isinstance(info.value, OutcomeUnknown)
    assert not isinstance(info.value, NotSent)


def test_error_body_kept_is_bounded() -> None:
    with pytest.raises(ServerError) as info:
        sansio.parse_send_response(502, {}, b"x" * 100_000)
    assert len(info.value.body) == 2000


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b'{"id": "x"}', b"\xff\xfe", json.dumps({"status": "teleported"}).encode()],
)
def test_2xx_with_unparseable_body_is_invalid_response(body: bytes) -> None:
    with pytest.raises(InvalidResponse) as info:
        sansio.parse_send_response(201, JSON, body)
    assert isinstance(info.value, OutcomeUnknown)


def test_2xx_with_a_bad_field_names_it() -> None:
    data = json.loads(payload("sw_send_201.json"))
    del data["created_at"]
    with pytest.raises(InvalidResponse, match="created_at"):
        sansio.parse_send_response(201, JSON, json.dumps(data).encode())


@pytest.mark.parametrize("status", [301, 302, 100])
def test_undocumented_statuses_are_invalid_responses(status: int) -> None:
    with pytest.raises(InvalidResponse, match=str(status)):
        sansio.parse_send_response(status, {}, b"")


# --- logs ------------------------------------------------------------------------------------------------


def test_parse_log_record() -> None:
    record = sansio.parse_log_record(payload("sw_log_record.json"))
    assert record.id == "6f1c2b7e-3d4a-4e8b-9c1d-2a3b4c5d6e7f"
    assert record.status is MessageStatus.DELIVERED
    assert record.charge == pytest.approx(0.00415)
    assert record.number_of_segments == 1


def test_parse_log_record_malformed() -> None:
    with pytest.raises(InvalidResponse, match="'to'"):
        sansio.parse_log_record(b'{"id": "x", "from": "+1", "status": "sent", "created_at": "2026-01-01"}')
    with pytest.raises(InvalidResponse):
        sansio.parse_log_record(b"[1, 2]")


def test_parse_log_pages() -> None:
    records, next_url = sansio.parse_log_page(payload("sw_log_page_1.json"))
    assert [r.status for r in records] == [MessageStatus.DELIVERED, MessageStatus.RECEIVED]
    assert records[1].direction == "inbound"
    assert next_url == "https://example.signalwire.com/api/messaging/logs?page_size=2&page_token=PAbc123"
    records, next_url = sansio.parse_log_page(payload("sw_log_page_2.json"))
    assert [r.error_code for r in records] == ["30003"]
    assert next_url is None


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"data": {}}',
        b'{"data": [1]}',
        b'{"data": [], "links": {"next": 5}}',
        b'{"data": [{"id": "x"}]}',
    ],
)
def test_parse_log_page_malformed(body: bytes) -> None:
    with pytest.raises(InvalidResponse):
        sansio.parse_log_page(body)


def test_parse_log_page_empty_next_is_last_page() -> None:
    assert sansio.parse_log_page(b'{"data": [], "links": {"next": ""}}') == ([], None)
