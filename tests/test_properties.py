"""Property-based tests (hypothesis): whatever arrives, the bridge never answers 5xx and invalid input sends nothing.

Over real HTTP to the real app (``demo.harness.running_bridge``: the bot, the SignalWire simulator and the fake
Slack on loopback), with correctly signed requests so that the parsers, not the signature checks, are what is
exercised. One harness per test; hypothesis runs its examples against it (hence the suppressed
``function_scoped_fixture`` health check). Plus the pure property of ``bridge.compose.parse_slash_text``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.compose import ComposeError, parse_slash_text
from demo.harness import FROM_NUMBER, Harness, running_bridge
from sw_api.webhooks import SIGNATURE_HEADER, TWILIO_SIGNATURE_HEADER, sign_form, sign_json

HTTP = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TO = "+15551234567"

# Numbers-ish fragments, so that a good share of the generated text gets past the first word.
phone_like = st.one_of(
    st.just(TO),
    st.just("+1 555 123 4567"),
    st.from_regex(r"\+?[0-9 ()\-.]{1,20}", fullmatch=True),
    st.sampled_from(["555-1234", "+999999999999999", "tel:+15551234567", "<tel:+15551234567|555>", "0", "+"]),
)
slash_text = st.one_of(
    st.text(max_size=200),
    st.builds(lambda number, rest: f"{number} {rest}", phone_like, st.text(max_size=200)),
    st.builds(lambda word, rest: f"{word} {rest}", st.sampled_from(["help", "HELP", "modal", "to", "-"]),
              st.text(max_size=50)),
)

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                         st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)), max_leaves=8)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    # A generous limit: the rate limit is not under test here and must not turn valid sends into refusals.
    async with running_bridge(tmp_path, env={"SMS_RATE_LIMIT_PER_USER": "100000",
                                             "INBOUND_CHANNEL": "C0GENERAL"}) as harness:
        yield harness


async def _post(h: Harness, path: str, body: bytes, headers: dict[str, str]) -> int:
    async with h.session.post(h.bot_url + path, data=body, headers=headers) as response:
        await response.read()
        return response.status


@pytest.fixture
async def sent_callback(h: Harness) -> tuple[str, str]:
    """(callback path with its genuine ref and token, SignalWire id) of one real, delivered message."""
    response = await h.driver.slash_command(f"{TO} a real message first")
    assert response.status == 200
    await h.settle()
    [sms] = h.simulator.messages.values()
    assert sms.status == "delivered"
    assert sms.status_callback is not None and sms.status_callback.startswith(h.bot_url)
    return sms.status_callback.removeprefix(h.bot_url), sms.id


# --- slash command -------------------------------------------------------------------------------------------


@pytest.mark.slow
@HTTP
@given(text=slash_text)
async def test_any_slash_text_is_answered_without_5xx_and_refusals_send_nothing(h: Harness, text: str) -> None:
    await h.settle()  # an earlier example's valid send must finish before this one is counted
    created, posts = h.simulator.created_count(), h.slack.call_count("chat.postMessage")
    response = await h.driver.slash_command(text)
    assert response.status == 200, (text, response.status, response.body)
    if "Nothing was sent" in response.body:
        await h.settle()
        assert h.simulator.created_count() == created, text
        assert h.slack.call_count("chat.postMessage") == posts, text


# --- status callbacks --------------------------------------------------------------------------------------------

STATUSES = ["queued", "sent", "delivered", "undelivered", "failed", "initiated", "received", "read", "teleported"]


def _callback_bodies(real_id: str) -> st.SearchStrategy[bytes]:
    field = st.one_of(json_values, st.sampled_from([real_id, TO, FROM_NUMBER, "2025-03-01T12:00:00Z", *STATUSES]))
    shaped = st.fixed_dictionaries(
        {},
        optional={
            "id": st.one_of(st.just(real_id), field),
            "status": st.one_of(st.sampled_from(STATUSES), field),
            "to": st.one_of(st.just(TO), field),
            "from": st.one_of(st.just(FROM_NUMBER), field),
            "timestamp": field,
            "error_code": field,
            "error_message": field,
            "number_of_segments": field,
            "custom_variables": field,
            "project_id": field,
        },
    ).map(lambda d: json.dumps(d).encode())
    return st.one_of(shaped, json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200))


@pytest.mark.slow
@HTTP
@given(data=st.data())
async def test_any_signed_status_callback_is_answered_without_5xx_and_sends_nothing(
    h: Harness, sent_callback: tuple[str, str], data: st.DataObject
) -> None:
    path, real_id = sent_callback
    body = data.draw(_callback_bodies(real_id), label="body")
    await h.settle()
    created, posts = h.simulator.created_count(), len(h.slack.calls)
    url = h.bot_url + path
    status = await _post(h, path, body, {
        "Content-Type": "application/json", SIGNATURE_HEADER: sign_json(h.simulator.config.signing_key, url, body)})
    await h.settle()
    assert status < 500, (body, status)
    assert status in (204, 400, 403, 404), (body, status)
    assert h.simulator.created_count() == created
    if status != 204:
        assert len(h.slack.calls) == posts, (body, status)


# --- inbound messages --------------------------------------------------------------------------------------------

number_field = st.one_of(st.sampled_from([TO, FROM_NUMBER, "+447911123456", "12345", "", "+"]), st.text(max_size=20))


def _inbound_json() -> st.SearchStrategy[bytes]:
    message = st.fixed_dictionaries(
        {},
        optional={
            "message_id": st.one_of(st.uuids().map(str), json_values),
            "from": st.one_of(number_field, json_values),
            "to": st.one_of(st.just(FROM_NUMBER), json_values),
            "body": st.one_of(st.text(max_size=100), st.sampled_from(["STOP", "START", "HELP"]), json_values),
            "media": st.one_of(st.lists(st.one_of(st.text(max_size=30), json_values), max_size=3), json_values),
            "segments": json_values,
            "timestamp": json_values,
            "direction": json_values,
            "type": st.one_of(st.sampled_from(["sms", "mms"]), json_values),
        },
    )
    return st.one_of(
        st.fixed_dictionaries({"message": message, "params": st.just({})}).map(lambda d: json.dumps(d).encode()),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=200),
    )


def _inbound_form() -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "MessageSid": st.one_of(st.uuids().map(str), st.text(max_size=20)),
            "From": number_field,
            "To": st.one_of(st.just(FROM_NUMBER), number_field),
            "Body": st.one_of(st.text(max_size=100), st.sampled_from(["STOP", "START", "HELP"])),
            "NumMedia": st.one_of(st.sampled_from(["0", "1", "2", "-1", "99"]), st.text(max_size=5)),
            "MediaUrl0": st.one_of(st.just("https://example.com/a.png"), st.text(max_size=30)),
            "MediaContentType0": st.text(max_size=20),
            "NumSegments": st.text(max_size=5),
        },
    )


@pytest.mark.slow
@HTTP
@given(body=_inbound_json())
async def test_any_signed_json_inbound_is_answered_without_5xx_and_sends_nothing(h: Harness, body: bytes) -> None:
    created = h.simulator.created_count()
    url = h.bot_url + "/signalwire/inbound"
    status = await _post(h, "/signalwire/inbound", body, {
        "Content-Type": "application/json", SIGNATURE_HEADER: sign_json(h.simulator.config.signing_key, url, body)})
    await h.settle()
    assert status in (200, 400), (body, status)
    assert h.simulator.created_count() == created


@pytest.mark.slow
@HTTP
@given(params=_inbound_form())
async def test_any_signed_form_inbound_is_answered_without_5xx_and_sends_nothing(
    h: Harness, params: dict[str, str]
) -> None:
    created = h.simulator.created_count()
    url = h.bot_url + "/signalwire/inbound"
    signature = sign_form(h.simulator.config.signing_key, url, params)
    status = await _post(h, "/signalwire/inbound", urlencode(params).encode(), {
        "Content-Type": "application/x-www-form-urlencoded", SIGNATURE_HEADER: signature,
        TWILIO_SIGNATURE_HEADER: signature})
    await h.settle()
    assert status in (200, 400), (params, status)
    assert h.simulator.created_count() == created


# --- pure: the slash-text parser ---------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(text=slash_text, region=st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)))
def test_parse_slash_text_raises_nothing_but_compose_error(text: str, region: str) -> None:
    try:
        parsed = parse_slash_text(text, region)
    except ComposeError as exc:
        assert exc.message  # every refusal explains itself
        return
    assert parsed.kind in ("send", "help", "modal")
    if parsed.kind == "send":
        assert parsed.number.strip()
