"""Hostile input on every route of the real bot app over loopback: deeply nested JSON, non-ASCII and non-UTF-8
everywhere, lone surrogates. Each answer is a 4xx (never a 500), nothing is sent or posted, no traceback is logged,
and the bot keeps serving."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from bridge.logs import log_handler
from demo.harness import FROM_NUMBER, Harness, running_bridge
from sw_api.webhooks import SIGNATURE_HEADER, sign_json

DEEP = 20_000  # far beyond the interpreter's recursion limit; quoted as a form field still inside 256 KiB
NESTED_ARRAY = b"[" * DEEP + b"]" * DEEP
NESTED_OBJECT = b'{"a":' * (DEEP // 2) + b"1" + b"}" * (DEEP // 2)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    handler = log_handler(stream)
    saved = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bridge(tmp_path, env={"INBOUND_CHANNEL": "C0INBOUND"}) as h:
        yield h


async def _post(h: Harness, path_qs: str, body: bytes, content_type: str, *, sign: bool = True) -> int:
    url = h.bot_url + path_qs
    headers = {"Content-Type": content_type}
    if sign:
        headers[SIGNATURE_HEADER] = sign_json(h.simulator.config.signing_key, url, body)
    async with h.session.post(url, data=body, headers=headers) as response:
        await response.read()
        return response.status


async def _assert_clean(h: Harness, log: io.StringIO) -> None:
    async with h.session.get(h.bot_url + "/healthz") as response:
        assert response.status == 200
    await h.settle()
    assert h.simulator.created_count() == 0
    assert not h.slack.called("chat.postMessage")
    text = log.getvalue()
    assert "Traceback" not in text and "level=error" not in text, text[-3000:]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (NESTED_ARRAY, "application/json"),
        (NESTED_OBJECT, "application/json"),
        (b"payload=" + quote(NESTED_ARRAY.decode()).encode(), "application/x-www-form-urlencoded"),
        (b"payload=" + quote(NESTED_OBJECT.decode()).encode(), "application/x-www-form-urlencoded"),
    ],
    ids=["json-array", "json-object", "payload-array", "payload-object"],
)
async def test_deeply_nested_slack_bodies_are_400(bot: Harness, captured: io.StringIO, body: bytes,
                                                  content_type: str) -> None:
    signed = await bot.driver.raw(body, content_type)
    assert signed.status == 400
    forged = await bot.driver.raw(body, content_type, signature="v0=" + "0" * 64)
    assert forged.status in (400, 401)
    await _assert_clean(bot, captured)


@pytest.mark.parametrize("path", ["/signalwire/status?ref=abc&t=def", "/signalwire/inbound"])
@pytest.mark.parametrize("body", [NESTED_ARRAY, NESTED_OBJECT], ids=["array", "object"])
async def test_deeply_nested_signalwire_bodies_are_400(bot: Harness, captured: io.StringIO, path: str,
                                                       body: bytes) -> None:
    assert await _post(bot, path, body, "application/json") == 400
    await _assert_clean(bot, captured)


@pytest.mark.parametrize(
    "query",
    [{"ref": "abc", "t": "é"}, {"ref": "é", "t": "abc"}, {"ref": "ü" * 40, "t": "é" * 32},
     {"ref": "abc", "t": "\u2028"}, {"ref": "abc", "t": "\U0001f600" * 8}],
    ids=["token", "ref", "both", "line-separator", "emoji"],
)
async def test_non_ascii_callback_tokens_are_refused_not_500(bot: Harness, captured: io.StringIO,
                                                             query: dict[str, str]) -> None:
    body = json.dumps({"id": "SM1", "status": "delivered", "to": "+15551234567", "from": FROM_NUMBER}).encode()
    status = await _post(bot, "/signalwire/status?" + urlencode(query), body, "application/json")
    assert status in (401, 403, 404)
    # Raw bytes in the query that are not UTF-8 at all.
    status = await _post(bot, "/signalwire/status?ref=abc&t=%FF%FE", body, "application/json")
    assert status in (401, 403, 404)
    await _assert_clean(bot, captured)


async def test_non_ascii_and_lone_surrogates_in_webhook_fields_are_4xx(bot: Harness, captured: io.StringIO) -> None:
    # Escaped lone surrogates are valid JSON but not encodable text; real non-ASCII text is fine.
    for message_id in ("\ud800", "é\udfff"):
        inbound = json.dumps({"message": {"id": message_id, "from": "+15551234567", "to": FROM_NUMBER,
                                          "body": "hi"}}).encode()
        assert await _post(bot, "/signalwire/inbound", inbound, "application/json") == 400
        status = json.dumps({"id": message_id, "status": "delivered", "to": "+15551234567",
                             "from": FROM_NUMBER}).encode()
        assert await _post(bot, "/signalwire/status?ref=abc&t=def", status, "application/json") in (400, 401, 403)
    assert await _post(bot, "/signalwire/inbound", b"\xff\xfe{}", "application/json") == 400
    await _assert_clean(bot, captured)


async def test_lone_surrogates_in_a_slack_command_are_refused(bot: Harness, captured: io.StringIO) -> None:
    body = json.dumps({"type": "event_callback", "event": {"type": "message", "channel": "C0GENERAL",
                                                            "ts": "1.2\ud800", "text": "\udfff"}}).encode()
    response = await bot.driver.raw(body, "application/json")
    assert response.status in (200, 400)
    await _assert_clean(bot, captured)


@pytest.mark.parametrize("value", ["é" * 10, "v0=" + "é" * 64, "\u2028", "ÿ" * 44])
async def test_non_ascii_signature_headers_are_refused(bot: Harness, captured: io.StringIO, value: str) -> None:
    body = json.dumps({"id": "SM1", "status": "delivered", "to": "+15551234567", "from": FROM_NUMBER}).encode()
    encoded = value.encode("utf-8")
    for path in ("/signalwire/status?ref=abc&t=def", "/signalwire/inbound"):
        async with bot.session.post(bot.bot_url + path, data=body,
                                    headers={"Content-Type": "application/json",
                                             SIGNATURE_HEADER: encoded.decode("latin-1")}) as response:
            await response.read()
            assert response.status in (400, 401, 403), (path, response.status)
    slack = await bot.driver.raw(b"command=/sms&text=help", "application/x-www-form-urlencoded", signature=value)
    assert slack.status in (400, 401)
    stamped = await bot.driver.raw(b"command=/sms&text=help", "application/x-www-form-urlencoded",
                                   headers={"X-Slack-Request-Timestamp": encoded.decode("latin-1")})
    assert stamped.status in (400, 401)
    await _assert_clean(bot, captured)


@pytest.mark.parametrize("path", ["/slack/events", "/signalwire/status?ref=é&t=é", "/signalwire/inbound",
                                  "/signalwire/inbound?x=%FF%00"])
async def test_non_ascii_content_type_and_request_id_are_4xx(bot: Harness, captured: io.StringIO, path: str) -> None:
    for content_type in ("application/jsoné", "application/json; charset=é", "ü/ü", "text/plain; \u2028"):
        headers = {"Content-Type": content_type.encode().decode("latin-1"),
                   "X-Request-Id": "é\u2028x".encode().decode("latin-1")}
        async with bot.session.post(bot.bot_url + path, data=b"{}", headers=headers) as response:
            await response.read()
            assert 400 <= response.status < 500, (content_type, response.status)
    await _assert_clean(bot, captured)
