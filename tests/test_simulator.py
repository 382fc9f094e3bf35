"""Tests of the SignalWire simulator over real loopback HTTP: spec shapes, callbacks, faults, logs, inbound, CLI.

Every server listens on port 0 and is spoken to with a plain ``aiohttp.ClientSession``; callbacks and inbound
webhooks land on a small recording aiohttp app. Signatures are checked with ``hmac`` directly, from the
definition in FACTS.md, so these tests do not trust ``sw_api.webhooks`` to be right.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import sys
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import jsonschema
import pytest
import yaml
from aiohttp import web

from sw_api.models import MessageStatus
from sw_api.simulator import Fault, Outcome, Simulator, SimulatorConfig, create_app
from sw_api.webhooks import parse_inbound, parse_status_callback

SPEC_PATH = Path(__file__).parent / "schemas" / "signalwire-messaging.openapi.yaml"
ROOT = Path(__file__).resolve().parent.parent
CONFIG = SimulatorConfig(step_delay=0.01)
AUTH = {"Authorization": aiohttp.encode_basic_auth(CONFIG.project_id, CONFIG.api_token)}
TO = "+15551234567"
FROM = "+15550100000"
MESSAGES = "/api/messaging/messages"


# -- helpers -------------------------------------------------------------------------------------------


def _spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    return loaded


SPEC = _spec()


def validate_schema(instance: Any, name: str) -> None:
    """Validate against ``#/components/schemas/<name>``; refs resolve inside the vendored spec (OAS 3.1)."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": SPEC["components"]}
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(instance)


def hex_signature(url: str, body: bytes, key: str = CONFIG.signing_key) -> str:
    return hmac.new(key.encode(), url.encode() + body, hashlib.sha1).hexdigest()


def form_signature(url: str, params: dict[str, str], key: str = CONFIG.signing_key) -> str:
    text = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(key.encode(), text.encode(), hashlib.sha1).digest()).decode()


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@dataclass
class Received:
    url: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded


@dataclass
class Receiver:
    """Records every POST; answers the queued statuses first, then 200."""

    base: str = ""
    requests: list[Received] = field(default_factory=list)
    answers: deque[int] = field(default_factory=deque)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(Received(str(request.url), dict(request.headers), await request.read()))
        status = self.answers.popleft() if self.answers else 200
        return web.Response(status=status, text=f"answered {status}")

    def url(self, path: str = "/cb") -> str:
        return self.base + path

    def statuses(self) -> list[str]:
        """Statuses of the status callbacks received (inbound webhooks, which have none, left out)."""
        return [str(r.json()["status"]) for r in self.requests if "/in" not in r.url]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture
def sim() -> Simulator:
    return Simulator(CONFIG)


@pytest.fixture
async def base(sim: Simulator) -> AsyncIterator[str]:
    async with serve(create_app(sim)) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)
    async with serve(app) as url:
        rec.base = url
        yield rec


async def post_message(
    http: aiohttp.ClientSession, base: str, payload: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with http.post(base + MESSAGES, json=payload, headers=AUTH if headers is None else headers) as r:
        return r.status, await r.json(), dict(r.headers)


def sms(to: str = TO, **extra: Any) -> dict[str, Any]:
    return {"to": to, "from": FROM, "body": "Hello from the simulator", **extra}


# -- create: success -----------------------------------------------------------------------------------


async def test_create_answers_201_with_a_message_matching_the_spec(
    http: aiohttp.ClientSession, base: str, receiver: Receiver
) -> None:
    status, data, _ = await post_message(http, base, sms(status_callback=receiver.url()))
    assert status == 201
    validate_schema(data, "Message.Message")
    assert uuid.UUID(data["id"]).version == 4
    assert data["status"] == "queued"
    assert data["direction"] == "outbound"
    assert data["kind"] == "sms"
    assert data["number_of_segments"] == 1
    assert data["project_id"] == CONFIG.project_id
    assert data["message_uri"] == f"/api/messaging/logs/{data['id']}"
    assert data["status_callback_url"] == receiver.url()
    assert (data["to"], data["from"], data["body"]) == (TO, FROM, "Hello from the simulator")


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("{" * 80, 1),  # extension characters count double
        ("{" * 81, 2),
        ("你" * 70, 1),  # UCS-2
        ("你" * 71, 2),
        ("a" * 1600, 11),
    ],
)
async def test_segment_counts(http: aiohttp.ClientSession, base: str, body: str, segments: int) -> None:
    status, data, _ = await post_message(http, base, sms(body=body))
    assert status == 201
    assert data["number_of_segments"] == segments


async def test_media_or_send_as_mms_makes_an_mms(http: aiohttp.ClientSession, base: str) -> None:
    status, data, _ = await post_message(
        http, base, {"to": TO, "from": FROM, "media": ["https://example.com/cat.jpg"]}
    )
    assert (status, data["kind"], data["body"], data["number_of_segments"]) == (201, "mms", "", 1)
    assert data["media"] == ["https://example.com/cat.jpg"]
    validate_schema(data, "Message.Message")
    status, data, _ = await post_message(http, base, sms(send_as_mms=True))
    assert (status, data["kind"]) == (201, "mms")


@pytest.mark.parametrize(("to", "from_"), [("988", FROM), ("+988", FROM), (TO, "12345"), (TO, "123456")])
async def test_passthrough_destinations_and_short_code_senders(
    http: aiohttp.ClientSession, base: str, to: str, from_: str
) -> None:
    status, data, _ = await post_message(http, base, {"to": to, "from": from_, "body": "hi"})
    assert status == 201, data


# -- create: errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": aiohttp.encode_basic_auth(CONFIG.project_id, "wrong-token")},
        {"Authorization": aiohttp.encode_basic_auth(str(uuid.uuid4()), CONFIG.api_token)},
        {"Authorization": "Bearer " + CONFIG.api_token},
        {"Authorization": "Basic not*base64"},
    ],
)
async def test_bad_credentials_answer_401(
    http: aiohttp.ClientSession, base: str, sim: Simulator, headers: dict[str, str]
) -> None:
    status, data, _ = await post_message(http, base, sms(), headers=headers)
    assert (status, data) == (401, {"error": "Unauthorized"})
    validate_schema(data, "Types.StatusCodes.StatusCode401")
    assert sim.created_count() == 0


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"text"', b"null", b"[" * 100_000])
async def test_unreadable_bodies_answer_400(
    http: aiohttp.ClientSession, base: str, raw: bytes
) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    async with http.post(base + MESSAGES, data=raw, headers=headers) as r:
        assert r.status == 400
        data = await r.json()
    assert data == {"error": "Bad Request"}
    validate_schema(data, "Types.StatusCodes.StatusCode400")


async def test_422_lists_every_error_with_its_attribute(http: aiohttp.ClientSession, base: str) -> None:
    payload = {
        "to": "5551234",
        "body": "x" * 1601,
        "media": ["ftp://example.com/a.png"] + ["https://example.com/b.png"] * 8,
        "send_as_mms": "yes",
        "status_callback": "not a url",
    }
    status, data, _ = await post_message(http, base, payload)
    assert status == 422
    validate_schema(data, "Message.MessagesCreateStatusCode422")
    attributes = [e["attribute"] for e in data["errors"]]
    assert sorted(set(attributes)) == sorted(["to", "from", "body", "media", "send_as_mms", "status_callback"])
    assert attributes.count("media") == 2  # too many items, and one item that is not http(s)
    assert all(e["type"] == "validation_error" and e["url"].startswith("https://") for e in data["errors"])


@pytest.mark.parametrize(
    ("payload", "attribute"),
    [
        ({"from": FROM, "body": "hi"}, "to"),
        ({"to": 15551234567, "from": FROM, "body": "hi"}, "to"),
        ({"to": "+1234", "from": FROM, "body": "hi"}, "to"),
        ({"to": "+1" + "2" * 17, "from": FROM, "body": "hi"}, "to"),
        ({"to": TO + "\n", "from": FROM, "body": "hi"}, "to"),
        ({"to": TO, "body": "hi"}, "from"),
        ({"to": TO, "from": "1234", "body": "hi"}, "from"),
        ({"to": TO, "from": None, "body": "hi"}, "from"),
        ({"to": TO, "from": FROM}, "body"),
        ({"to": TO, "from": FROM, "body": ""}, "body"),
        ({"to": TO, "from": FROM, "body": "hi", "media": []}, None),
        ({"to": TO, "from": FROM, "body": ["hi"]}, "body"),
        ({"to": TO, "from": FROM, "body": "hi", "media": "https://example.com/a.png"}, "media"),
        ({"to": TO, "from": FROM, "body": "hi", "media": [1]}, "media"),
        ({"to": TO, "from": FROM, "body": "hi", "media": ["https:///no-host"]}, "media"),
        ({"to": TO, "from": FROM, "body": "hi", "send_as_mms": 1}, "send_as_mms"),
        ({"to": TO, "from": FROM, "body": "hi", "status_callback": "ftp://example.com/"}, "status_callback"),
        ({"to": TO, "from": FROM, "body": "hi", "status_callback": None}, "status_callback"),
    ],
)
async def test_each_validation_rule(
    http: aiohttp.ClientSession, base: str, payload: dict[str, Any], attribute: str | None
) -> None:
    status, data, _ = await post_message(http, base, payload)
    if attribute is None:
        assert status == 201, data
        return
    assert status == 422, data
    assert [e["attribute"] for e in data["errors"]] == [attribute]


async def test_owned_numbers_restrict_the_sender(http: aiohttp.ClientSession) -> None:
    sim = Simulator(SimulatorConfig(step_delay=0.01, owned_numbers=frozenset({FROM})))
    async with serve(create_app(sim)) as base:
        status, _, _ = await post_message(http, base, sms())
        assert status == 201
        status, data, _ = await post_message(http, base, {**sms(), "from": "+15550109999"})
        assert status == 422
        assert data["errors"][0]["attribute"] == "from"


async def test_unknown_routes_answer_json(http: aiohttp.ClientSession, base: str) -> None:
    async with http.get(base + "/api/nothing-here", headers=AUTH) as r:
        assert (r.status, await r.json()) == (404, {"error": "Not Found"})
    async with http.get(base + MESSAGES, headers=AUTH) as r:
        assert r.status == 405
        assert (await r.json())["error"] == "Method Not Allowed"
        assert "POST" in r.headers["Allow"]


# -- status callbacks ----------------------------------------------------------------------------------


async def test_sms_callbacks_are_signed_and_in_order(
    http: aiohttp.ClientSession, base: str, sim: Simulator, receiver: Receiver
) -> None:
    url = receiver.url("/status?team=T1")
    _, data, _ = await post_message(http, base, sms(status_callback=url))
    await sim.settle()
    assert receiver.statuses() == ["queued", "sent", "delivered"]
    for request in receiver.requests:
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["X-SignalWire-Signature"] == hex_signature(url, request.body)
        event = request.json()
        assert event["id"] == data["id"]
        assert (event["to"], event["from"], event["body"]) == (TO, FROM, "Hello from the simulator")
        assert event["project_id"] == CONFIG.project_id
        assert event["number_of_segments"] == 1
        assert event["error_code"] is None
        parsed = parse_status_callback(request.body)
        assert parsed.id == data["id"]
        assert parsed.timestamp is not None
    assert sim.messages[data["id"]].status is MessageStatus.DELIVERED
    assert [e.status for e in sim.messages[data["id"]].callbacks] == [
        MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED
    ]


async def test_mms_stops_at_sent(
    http: aiohttp.ClientSession, base: str, sim: Simulator, receiver: Receiver
) -> None:
    payload = {"to": TO, "from": FROM, "media": ["https://example.com/a.png"], "status_callback": receiver.url()}
    _, data, _ = await post_message(http, base, payload)
    await sim.settle()
    assert receiver.statuses() == ["queued", "sent"]
    assert sim.messages[data["id"]].status is MessageStatus.SENT


@pytest.mark.parametrize(
    ("to", "statuses", "code"),
    [
        ("+15550000003", ["queued", "sent", "undelivered"], "30003"),
        ("+15550000007", ["queued", "sent", "undelivered"], "30007"),
        ("+15550001610", ["queued", "failed"], "21610"),
        ("+15550001234", ["queued", "sent", "delivered"], None),
    ],
)
async def test_built_in_outcome_rules(
    http: aiohttp.ClientSession,
    base: str,
    sim: Simulator,
    receiver: Receiver,
    to: str,
    statuses: list[str],
    code: str | None,
) -> None:
    _, data, _ = await post_message(http, base, sms(to=to, status_callback=receiver.url()))
    await sim.settle()
    assert receiver.statuses() == statuses
    last = receiver.requests[-1].json()
    assert last["error_code"] == code
    assert (last["error_message"] is None) == (code is None)
    assert sim.messages[data["id"]].error_code == code


async def test_script_overrides_the_rules(
    http: aiohttp.ClientSession, base: str, sim: Simulator, receiver: Receiver
) -> None:
    sim.script("+15550000003", Outcome(MessageStatus.DELIVERED))
    sim.script(TO, Outcome(MessageStatus.UNDELIVERED, "30005", "Unknown destination handset"))
    sim.script("+15550004444", Outcome(MessageStatus.SENT))
    for to in ("+15550000003", TO, "+15550004444"):
        await post_message(http, base, sms(to=to, status_callback=receiver.url(f"/{to}")))
    await sim.settle()
    by_to: dict[str, list[dict[str, Any]]] = {}
    for request in receiver.requests:
        by_to.setdefault(request.json()["to"], []).append(request.json())
    assert [e["status"] for e in by_to["+15550000003"]] == ["queued", "sent", "delivered"]
    assert by_to[TO][-1]["status"] == "undelivered"
    assert by_to[TO][-1]["error_code"] == "30005"
    assert by_to[TO][-1]["error_message"] == "Unknown destination handset"
    assert [e["status"] for e in by_to["+15550004444"]] == ["queued", "sent"]


async def test_duplicate_callbacks(
    http: aiohttp.ClientSession, base: str, sim: Simulator, receiver: Receiver
) -> None:
    sim.duplicate_callbacks = True
    await post_message(http, base, sms(status_callback=receiver.url()))
    await sim.settle()
    assert receiver.statuses() == ["queued", "queued", "sent", "sent", "delivered", "delivered"]


async def test_reordered_callbacks(
    http: aiohttp.ClientSession, base: str, sim: Simulator, receiver: Receiver
) -> None:
    sim.reorder_callbacks = True
    _, data, _ = await post_message(http, base, sms(status_callback=receiver.url()))
    await sim.settle()
    assert sorted(receiver.statuses()) == ["delivered", "queued", "sent"]
    assert receiver.statuses() != ["queued", "sent", "delivered"]
    assert sim.messages[data["id"]].status is MessageStatus.DELIVERED


async def test_dropped_callbacks_still_move_the_logged_status(
    http: aiohttp.ClientSession, base: str, sim: Simulator, receiver: Receiver
) -> None:
    sim.drop_callbacks = True
    _, data, _ = await post_message(http, base, sms(status_callback=receiver.url()))
    await sim.settle()
    assert receiver.requests == []
    async with http.get(f"{base}/api/messaging/logs/{data['id']}", headers=AUTH) as r:
        assert (await r.json())["status"] == "delivered"


async def test_callback_is_retried_after_a_500(
    http: aiohttp.ClientSession, base: str, sim: Simulator, receiver: Receiver
) -> None:
    receiver.answers.extend([500, 503])
    await post_message(http, base, sms(status_callback=receiver.url()))
    await sim.settle()
    # The first event took three attempts; the others went through at once, still in order.
    assert receiver.statuses() == ["queued", "queued", "queued", "sent", "delivered"]
    assert [(a.attempt, a.status) for a in sim.callback_log] == [(1, 500), (2, 503), (3, 200), (1, 200), (1, 200)]
    assert receiver.requests[0].body == receiver.requests[2].body


async def test_unreachable_callback_is_tried_three_times(
    http: aiohttp.ClientSession, base: str, sim: Simulator
) -> None:
    url = f"http://127.0.0.1:{free_port()}/cb"
    _, data, _ = await post_message(http, base, sms(status_callback=url))
    await sim.settle()
    queued = [a for a in sim.callback_log if a.event()["status"] == "queued"]
    assert [a.attempt for a in queued] == [1, 2, 3]
    assert all(a.status is None and a.error for a in queued)
    assert sim.messages[data["id"]].status is MessageStatus.DELIVERED


# -- faults --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("create", [False, True])
async def test_status_fault_500(
    http: aiohttp.ClientSession, base: str, sim: Simulator, receiver: Receiver, create: bool
) -> None:
    sim.add_fault(Fault("status", 500, create=create))
    status, data, _ = await post_message(http, base, sms(status_callback=receiver.url()))
    assert (status, data) == (500, {"error": "Internal Server Error"})
    validate_schema(data, "Types.StatusCodes.StatusCode500")
    await sim.settle()
    assert sim.created_count(TO) == int(create)
    assert receiver.statuses() == (["queued", "sent", "delivered"] if create else [])
    # One-shot: the next request succeeds.
    status, _, _ = await post_message(http, base, sms())
    assert status == 201


async def test_429_carries_retry_after_and_count_applies(
    http: aiohttp.ClientSession, base: str, sim: Simulator
) -> None:
    sim.add_fault(Fault("status", 429, retry_after=2, count=2))
    for _ in range(2):
        status, data, headers = await post_message(http, base, sms())
        assert (status, data, headers["Retry-After"]) == (429, {"error": "Too Many Requests"}, "2")
    status, _, _ = await post_message(http, base, sms())
    assert status == 201
    assert sim.created_count() == 1


@pytest.mark.parametrize(("code", "text"), [(502, "Bad Gateway"), (503, "Service Unavailable")])
async def test_gateway_faults_answer_json(
    http: aiohttp.ClientSession, base: str, sim: Simulator, code: int, text: str
) -> None:
    sim.add_fault(Fault("status", code))
    status, data, headers = await post_message(http, base, sms())
    assert (status, data) == (code, {"error": text})
    assert "Retry-After" not in headers


async def test_faults_skip_invalid_requests(http: aiohttp.ClientSession, base: str, sim: Simulator) -> None:
    sim.add_fault(Fault("status", 500))
    status, _, _ = await post_message(http, base, {"to": "nope", "from": FROM, "body": "x"})
    assert status == 422
    status, _, _ = await post_message(http, base, sms())
    assert status == 500


@pytest.mark.parametrize("create", [False, True])
async def test_hang_fault_times_the_client_out(
    http: aiohttp.ClientSession, base: str, sim: Simulator, create: bool
) -> None:
    sim.add_fault(Fault("hang", create=create, hang_seconds=30))
    with pytest.raises(TimeoutError):
        async with http.post(
            base + MESSAGES, json=sms(), headers=AUTH, timeout=aiohttp.ClientTimeout(total=0.3)
        ):
            pass
    assert sim.created_count() == int(create)


@asynccontextmanager
async def _ticker(seconds: float) -> AsyncIterator[asyncio.Event]:
    """An event set by a timer on the same loop: ordering, not elapsed wall-clock time, shows a delay happened
    (one loop, so a shorter timer always fires before a longer sleep in the in-process simulator ends)."""
    ticked = asyncio.Event()
    handle = asyncio.get_running_loop().call_later(seconds, ticked.set)
    try:
        yield ticked
    finally:
        handle.cancel()


async def test_short_hang_then_answers(http: aiohttp.ClientSession, base: str, sim: Simulator) -> None:
    sim.add_fault(Fault("hang", create=True, hang_seconds=0.2))
    async with _ticker(0.1) as ticked:
        status, data, _ = await post_message(http, base, sms())
    assert status == 201
    assert ticked.is_set()  # the answer was held: a 0.1 s timer started with the request fired first
    assert data["id"] in sim.messages


@pytest.mark.parametrize("create", [False, True])
async def test_reset_fault_drops_the_connection(
    http: aiohttp.ClientSession, base: str, sim: Simulator, create: bool
) -> None:
    sim.add_fault(Fault("reset", create=create))
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await post_message(http, base, sms())
    assert sim.created_count() == int(create)


async def test_latency_delays_each_create(http: aiohttp.ClientSession, base: str, sim: Simulator) -> None:
    sim.latency = 0.2
    async with _ticker(0.1) as ticked:
        status, _, _ = await post_message(http, base, sms())
    assert status == 201
    assert ticked.is_set()


# -- logs ----------------------------------------------------------------------------------------------


async def test_log_record_follows_the_status(http: aiohttp.ClientSession, base: str, sim: Simulator) -> None:
    _, data, _ = await post_message(http, base, sms(to="+15550000003"))
    url = f"{base}/api/messaging/logs/{data['id']}"
    await sim.settle()
    async with http.get(url, headers=AUTH) as r:
        assert r.status == 200
        record = await r.json()
    assert record["id"] == data["id"]
    assert (record["status"], record["error_code"], record["direction"]) == ("undelivered", "30003", "outbound")
    assert "body" not in record
    for name in ("from", "to", "kind", "source", "type", "url", "number_of_segments", "charge", "created_at"):
        assert name in record
    async with http.get(url) as r:
        assert r.status == 401
    async with http.get(f"{base}/api/messaging/logs/{uuid.uuid4()}", headers=AUTH) as r:
        assert (r.status, await r.json()) == (404, {"error": "Not Found"})


async def test_logs_paginate_newest_first(
    http: aiohttp.ClientSession, base: str, sim: Simulator, receiver: Receiver
) -> None:
    ids = []
    for i in range(5):
        _, data, _ = await post_message(http, base, sms(to=f"+1555000{i:04d}"))
        ids.append(data["id"])
    delivery = await sim.inject_inbound("+15557770000", FROM, "hi back", url=receiver.url())
    ids.append(delivery.message_id)

    seen: list[dict[str, Any]] = []
    path: str | None = "/api/messaging/logs?page_size=2"
    pages = 0
    while path is not None:
        async with http.get(base + path, headers=AUTH) as r:
            assert r.status == 200
            page = await r.json()
        pages += 1
        assert page["links"]["self"] == path
        assert page["links"]["first"] == "/api/messaging/logs?page_size=2"
        assert len(page["data"]) <= 2
        seen.extend(page["data"])
        path = page["links"].get("next")
        assert path is None or path.startswith("/api/messaging/logs?")
    assert pages == 3
    assert [r["id"] for r in seen] == ids[::-1]
    assert (seen[0]["status"], seen[0]["direction"]) == ("received", "inbound")


async def test_logs_filter_by_creation_time(http: aiohttp.ClientSession, base: str, sim: Simulator) -> None:
    _, first, _ = await post_message(http, base, sms())
    await asyncio.sleep(0.01)
    _, second, _ = await post_message(http, base, sms())
    url = base + "/api/messaging/logs"
    async with http.get(url, params={"created_after": second["created_at"]}, headers=AUTH) as r:
        assert [m["id"] for m in (await r.json())["data"]] == [second["id"]]
    async with http.get(url, params={"created_before": second["created_at"]}, headers=AUTH) as r:
        assert [m["id"] for m in (await r.json())["data"]] == [first["id"]]
    async with http.get(url, params={"created_on": second["created_at"][:10]}, headers=AUTH) as r:
        assert len((await r.json())["data"]) == 2


@pytest.mark.parametrize(
    "params",
    [{"page_size": "0"}, {"page_size": "1001"}, {"page_size": "x"}, {"page_token": "garbage"},
     {"created_after": "yesterday"}],
)
async def test_logs_reject_bad_queries(
    http: aiohttp.ClientSession, base: str, params: dict[str, str]
) -> None:
    async with http.get(base + "/api/messaging/logs", params=params, headers=AUTH) as r:
        assert r.status == 422
        data = await r.json()
    assert data["errors"][0]["attribute"] == next(iter(params))


async def test_logs_need_auth(http: aiohttp.ClientSession, base: str) -> None:
    async with http.get(base + "/api/messaging/logs") as r:
        assert (r.status, await r.json()) == (401, {"error": "Unauthorized"})


# -- inbound -------------------------------------------------------------------------------------------


async def test_inbound_json_is_signed_swml_style(
    base: str, sim: Simulator, receiver: Receiver
) -> None:
    url = receiver.url("/sms/inbound")
    delivery = await sim.inject_inbound(
        "+15557770000", FROM, None, [("https://media.example.com/1", "image/png")], url=url
    )
    assert (delivery.status, delivery.text, delivery.error) == (200, "answered 200", None)
    [request] = receiver.requests
    assert request.headers["X-SignalWire-Signature"] == hex_signature(url, request.body)
    assert request.headers["Content-Type"] == "application/json"
    payload = request.json()
    assert payload["params"] == {}
    message = payload["message"]
    assert message["message_id"] == delivery.message_id
    assert (message["direction"], message["type"], message["body"]) == ("inbound", "mms", None)
    assert (message["from"], message["to"], message["project_id"]) == ("+15557770000", FROM, CONFIG.project_id)
    assert message["media"][0]["url"] == "https://media.example.com/1"
    assert message["media"][0]["content_type"] == "image/png"
    assert uuid.UUID(message["space_id"])
    parsed = parse_inbound(request.body, "application/json")
    assert (parsed.kind, parsed.segments) == ("mms", 1)
    assert sim.messages[delivery.message_id].status is MessageStatus.RECEIVED
    assert sim.created_count() == 0


async def test_inbound_form_is_signed_cxml_style(base: str, sim: Simulator, receiver: Receiver) -> None:
    url = receiver.url("/sms/inbound?x=1")
    delivery = await sim.inject_inbound(
        "+15557770000",
        FROM,
        "Photo attached",
        [("https://media.example.com/1", "image/png"), ("https://media.example.com/2", "image/gif")],
        url=url,
        fmt="form",
        message_id="SM-fixed-id",
    )
    assert (delivery.message_id, delivery.status) == ("SM-fixed-id", 200)
    [request] = receiver.requests
    params = dict(parse_qsl(request.body.decode()))
    assert params["MessageSid"] == "SM-fixed-id"
    assert (params["From"], params["To"], params["Body"]) == ("+15557770000", FROM, "Photo attached")
    assert params["AccountSid"] == CONFIG.project_id
    assert params["NumMedia"] == "2"
    assert (params["MediaUrl1"], params["MediaContentType1"]) == ("https://media.example.com/2", "image/gif")
    expected = form_signature(url, params)
    assert request.headers["X-SignalWire-Signature"] == expected
    assert request.headers["X-Twilio-Signature"] == expected
    parsed = parse_inbound(request.body, request.headers["Content-Type"])
    assert (parsed.body, len(parsed.media)) == ("Photo attached", 2)


async def test_inbound_reports_an_unreachable_receiver(base: str, sim: Simulator) -> None:
    delivery = await sim.inject_inbound("+15557770000", FROM, "hi", url=f"http://127.0.0.1:{free_port()}/")
    assert delivery.status is None
    assert delivery.error
    assert sim.messages[delivery.message_id].direction == "inbound"


async def test_inbound_needs_a_url(base: str, sim: Simulator) -> None:
    with pytest.raises(ValueError, match="inbound URL"):
        await sim.inject_inbound("+15557770000", FROM, "hi")


# -- control routes ------------------------------------------------------------------------------------


async def test_control_routes_drive_the_simulator(
    http: aiohttp.ClientSession, base: str, sim: Simulator, receiver: Receiver
) -> None:
    async def control(path: str, payload: dict[str, Any]) -> dict[str, Any]:
        async with http.post(base + "/_sim/" + path, json=payload) as r:
            assert r.status == 200, await r.text()
            data: dict[str, Any] = await r.json()
            return data

    await control("settings", {"step_delay": 0.005, "duplicate_callbacks": True, "inbound_url": receiver.url("/in")})
    await control("script", {"to": TO, "status": "failed", "error_code": "30004", "error_message": "Blocked"})
    await control("faults", {"kind": "status", "status": 503, "count": 1})
    status, _, _ = await post_message(http, base, sms(status_callback=receiver.url()))
    assert status == 503
    status, created, _ = await post_message(http, base, sms(status_callback=receiver.url()))
    assert status == 201
    answer = await control("inbound", {"from": "+15557770000", "to": FROM, "body": "yo", "format": "form"})
    assert answer["status"] == 200
    await sim.settle()
    assert receiver.statuses()[:4] == ["queued", "queued", "failed", "failed"]
    assert sum(r.url.endswith("/in") for r in receiver.requests) == 1
    async with http.get(base + "/_sim/messages") as r:
        listed = (await r.json())["messages"]
    assert [(m["id"], m["status"], m["body"]) for m in listed] == [
        (created["id"], "failed", "Hello from the simulator"),
        (answer["message_id"], "received", "yo"),
    ]
    async with http.get(base + "/_sim/callbacks") as r:
        assert len((await r.json())["callbacks"]) == 4
    await control("reset", {})
    assert sim.messages == {}
    assert sim.config == CONFIG


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("script", {"to": TO, "status": "exploded"}),
        ("faults", {"kind": "meteor"}),
        ("faults", {"kind": "status", "status": 200}),
        ("settings", {"latency": "slow"}),
        ("inbound", {"from": "+15557770000", "to": FROM, "body": "no url configured"}),
    ],
)
async def test_control_routes_reject_bad_input(
    http: aiohttp.ClientSession, base: str, path: str, payload: dict[str, Any]
) -> None:
    async with http.post(base + "/_sim/" + path, json=payload) as r:
        assert r.status == 400
        assert (await r.json())["error"]


async def test_reset_cancels_pending_callbacks(
    http: aiohttp.ClientSession, base: str, sim: Simulator, receiver: Receiver
) -> None:
    sim.config = SimulatorConfig(step_delay=0.2)
    await post_message(http, base, sms(status_callback=receiver.url()))
    sim.reset()
    await sim.settle()
    assert receiver.requests == []
    assert sim.callback_log == []


# -- config and CLI ------------------------------------------------------------------------------------


def test_config_repr_masks_secrets() -> None:
    config = SimulatorConfig(api_token="PTverysecretvalue", signing_key="PSKalsoverysecret")
    text = repr(config)
    assert "verysecret" not in text
    assert config.project_id in text


def test_config_from_env() -> None:
    project = str(uuid.uuid4())
    config = SimulatorConfig.from_env(
        {"SIGNALWIRE_PROJECT_ID": project, "SIGNALWIRE_API_TOKEN": "PTx", "SIGNALWIRE_SIGNING_KEY": ""}
    )
    assert (config.project_id, config.api_token) == (project, "PTx")
    assert config.signing_key == SimulatorConfig().signing_key
    with pytest.raises(ValueError, match="SIGNALWIRE_PROJECT_ID"):
        SimulatorConfig.from_env({"SIGNALWIRE_PROJECT_ID": "my-project"})


async def test_cli_serves_on_a_free_port(http: aiohttp.ClientSession) -> None:
    env = {**os.environ, "SIGNALWIRE_API_TOKEN": "PTfrom-env-secret", "PYTHONUNBUFFERED": "1"}
    env.pop("SIGNALWIRE_PROJECT_ID", None)
    env.pop("SIGNALWIRE_SIGNING_KEY", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sw_api.simulator", "--port", "0", "--step-delay", "0.01",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    try:
        banner: list[str] = []
        async with asyncio.timeout(10):
            while not any("Control routes" in line for line in banner):
                line = (await proc.stdout.readline()).decode()
                assert line, "simulator exited early: " + "".join(banner)
                banner.append(line)
        text = "".join(banner)
        match = re.search(r"listening on (http://127\.0\.0\.1:(\d+))", text)
        assert match and int(match.group(2)) > 0
        assert "PTfrom-env-secret" not in text
        assert CONFIG.signing_key in text  # defaults are printed in full: users copy them
        assert "1610" in text and "30003" in text
        headers = {"Authorization": aiohttp.encode_basic_auth(CONFIG.project_id, "PTfrom-env-secret")}
        async with http.post(match.group(1) + MESSAGES, json=sms(), headers=headers) as r:
            assert r.status == 201
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0


def test_cli_refuses_a_bad_project_id() -> None:
    env = {**os.environ, "SIGNALWIRE_PROJECT_ID": "not-a-uuid"}
    result = subprocess.run(
        [sys.executable, "-m", "sw_api.simulator", "--port", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=20, check=False,
    )
    assert result.returncode == 2
    assert "SIGNALWIRE_PROJECT_ID" in result.stderr
