"""Tests of sw_api.client over real loopback HTTP: against the SignalWire simulator, plus a few raw transports.

Every server listens on port 0. Nothing of ours is mocked: faults come from the simulator's own ``Fault``s.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from sw_api import sansio
from sw_api.client import NO_RETRY, RetryPolicy, SignalWireClient
from sw_api.errors import (
    BadRequest,
    ConnectError,
    ConnectionLost,
    InvalidResponse,
    NotFound,
    NotSent,
    OutcomeUnknown,
    RateLimited,
    ResponseTimeout,
    ServerError,
    Unauthorized,
    ValidationFailed,
)
from sw_api.models import MessageStatus
from sw_api.simulator import Fault, Simulator, SimulatorConfig, create_app

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]

TO = "+15551234567"
FROM = "+15550100000"
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, total=3.0)
TOKEN = SimulatorConfig().api_token


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def sim() -> Simulator:
    return Simulator(SimulatorConfig(step_delay=0.01))


@pytest.fixture
async def server(aiohttp_server: ServerFactory, sim: Simulator) -> TestServer:
    return await aiohttp_server(create_app(sim))


def client_for(
    session: aiohttp.ClientSession,
    server: TestServer | str,
    *,
    retry: RetryPolicy = NO_RETRY,
    timeout: aiohttp.ClientTimeout | None = None,
    token: str = TOKEN,
) -> SignalWireClient:
    base = server if isinstance(server, str) else str(server.make_url(""))
    kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    return SignalWireClient(
        session,
        space=base,
        project_id=SimulatorConfig().project_id,
        api_token=token,
        retry=retry,
        **kwargs,
    )


def client_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sw_api.client"]


# --- pure parts of the client ----------------------------------------------------------------------------


@given(
    attempt=st.integers(min_value=1, max_value=30),
    base=st.floats(min_value=0, max_value=5),
    cap=st.floats(min_value=0, max_value=10),
    r=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_backoff_is_full_jitter_within_the_cap(attempt: int, base: float, cap: float, r: float) -> None:
    policy = RetryPolicy(base_delay=base, max_delay=cap)
    delay = policy.backoff(attempt, rand=lambda: r)
    assert 0 <= delay <= min(cap, base * 2 ** (attempt - 1)) + 1e-9


def test_backoff_grows_exponentially_until_the_cap() -> None:
    policy = RetryPolicy(base_delay=0.25, max_delay=4.0)
    assert [policy.backoff(n, rand=lambda: 1.0) for n in range(1, 7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]


def test_retry_policy_validation_and_switch() -> None:
    assert RetryPolicy.NO_RETRY is NO_RETRY and not NO_RETRY.enabled
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(total=-1)


async def test_repr_masks_the_token_and_the_session_is_left_open(session: aiohttp.ClientSession) -> None:
    client = client_for(session, "example", token="PTverysecret")
    assert client.base_url == "https://example.signalwire.com"
    assert "PTverysecret" not in repr(client)
    assert "***" in repr(client)
    del client
    assert not session.closed


# --- against the simulator: sending ----------------------------------------------------------------------


async def test_send_201(session: aiohttp.ClientSession, server: TestServer, sim: Simulator) -> None:
    client = client_for(session, server)
    msg = await client.send_message(TO, FROM, "Hello from Slack!")
    assert msg.to == TO and msg.from_ == FROM and msg.body == "Hello from Slack!"
    assert msg.kind == "sms" and msg.direction == "outbound"
    assert msg.status is MessageStatus.QUEUED
    assert msg.number_of_segments == 1
    assert sim.created_count(TO) == 1
    assert not session.closed


async def test_send_mms(session: aiohttp.ClientSession, server: TestServer, sim: Simulator) -> None:
    client = client_for(session, server)
    msg = await client.send_message(TO, FROM, media=["https://files.example.org/cat.jpg"])
    assert msg.kind == "mms"
    assert msg.media == ("https://files.example.org/cat.jpg",)


async def test_400_for_malformed_json(session: aiohttp.ClientSession, server: TestServer) -> None:
    # The client cannot produce malformed JSON, so talk to the simulator one level down and parse its answer.
    headers = {
        "Authorization": sansio.basic_auth_header(SimulatorConfig().project_id, TOKEN),
        "Content-Type": "application/json",
    }
    url = str(server.make_url(sansio.SEND_PATH))
    async with session.post(url, data=b'{"to": "+1555', headers=headers) as resp:
        status, resp_headers, raw = resp.status, resp.headers, await resp.read()
    with pytest.raises(BadRequest) as info:
        sansio.parse_send_response(status, resp_headers, raw)
    assert info.value.status == 400


async def test_401_wrong_token(
    session: aiohttp.ClientSession, server: TestServer, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = client_for(session, server, token="PTwrong-token-value", retry=FAST)
    with pytest.raises(Unauthorized) as info:
        await client.send_message(TO, FROM, "hi")
    assert isinstance(info.value, NotSent)
    assert "PTwrong-token-value" not in str(info.value)
    assert sim.created_count() == 0
    assert len(client_lines(caplog)) == 1  # a 401 is not retried


async def test_422_carries_signalwires_explanation(
    session: aiohttp.ClientSession, server: TestServer, sim: Simulator
) -> None:
    client = client_for(session, server, retry=FAST)
    with pytest.raises(ValidationFailed) as info:
        await client.send_message("not-a-number", FROM, "hi")
    err = info.value
    assert err.status == 422
    assert err.errors, "SignalWire's error items must be reachable"
    assert any(e.attribute == "to" for e in err.errors)
    assert err.errors[0].message in str(err)
    assert sim.created_count() == 0


async def test_429_is_retried_after_retry_after_then_succeeds(
    session: aiohttp.ClientSession, server: TestServer, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sw_api.client")
    sim.add_fault(Fault(kind="status", status=429, retry_after=0.1))
    client = client_for(session, server, retry=FAST)
    started = time.monotonic()
    msg = await client.send_message(TO, FROM, "hi")
    assert time.monotonic() - started >= 0.1  # Retry-After honoured, not the 10 ms backoff
    assert msg.to == TO
    assert sim.created_count(TO) == 1
    lines = client_lines(caplog)
    assert "429 RateLimited" in lines[0] and "retrying in 0.10 s" in lines[0]
    assert "-> 201" in lines[1] and "attempt 2/3" in lines[1]


async def test_429_exhausted_reraises(
    session: aiohttp.ClientSession, server: TestServer, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sw_api.client")
    sim.add_fault(Fault(kind="status", status=429, retry_after=0.05, count=10))
    client = client_for(session, server, retry=FAST)
    with pytest.raises(RateLimited) as info:
        await client.send_message(TO, FROM, "hi")
    assert info.value.retry_after == pytest.approx(0.05)
    assert sim.created_count() == 0
    assert len(client_lines(caplog)) == FAST.attempts


async def test_429_whose_wait_exceeds_the_budget_gives_up_at_once(
    session: aiohttp.ClientSession, server: TestServer, sim: Simulator
) -> None:
    sim.add_fault(Fault(kind="status", status=429, retry_after=30, count=4))
    client = client_for(session, server, retry=RetryPolicy(attempts=4, total=2.0))
    with pytest.raises(RateLimited):
        async with asyncio.timeout(20):  # waiting the 30 s would trip this however loaded the machine is
            await client.send_message(TO, FROM, "hi")
    assert _faults_left(sim) == 3  # one attempt only


async def test_5xx_is_outcome_unknown_and_never_reposted(
    session: aiohttp.ClientSession, server: TestServer, sim: Simulator
) -> None:
    sim.add_fault(Fault(kind="status", status=500, create=True))
    client = client_for(session, server, retry=FAST)
    with pytest.raises(ServerError) as info:
        await client.send_message(TO, FROM, "hi")
    assert isinstance(info.value, OutcomeUnknown)
    assert info.value.status == 500
    assert sim.created_count(TO) == 1  # created once before failing; a re-POST would make it 2


async def test_503_without_creation_is_not_retried_either(
    session: aiohttp.ClientSession, server: TestServer, sim: Simulator
) -> None:
    # The client cannot tell this 503 from the one above, so it must not retry (the fault is one-shot:
    # a retry would succeed and this test would fail).
    sim.add_fault(Fault(kind="status", status=503))
    client = client_for(session, server, retry=FAST)
    with pytest.raises(ServerError):
        await client.send_message(TO, FROM, "hi")
    assert sim.created_count() == 0


async def test_hang_is_a_response_timeout(session: aiohttp.ClientSession, server: TestServer, sim: Simulator) -> None:
    sim.add_fault(Fault(kind="hang", create=True, hang_seconds=60))
    client = client_for(session, server, retry=FAST, timeout=aiohttp.ClientTimeout(total=0.3))
    with pytest.raises(ResponseTimeout) as info:
        async with asyncio.timeout(30):  # the client's own 0.3 s timeout fired, not the 60 s hang's end
            await client.send_message(TO, FROM, "hi")
    assert isinstance(info.value, OutcomeUnknown)
    assert sim.created_count(TO) == 1


async def test_sock_read_timeout_is_a_response_timeout_too(
    session: aiohttp.ClientSession, server: TestServer, sim: Simulator
) -> None:
    sim.add_fault(Fault(kind="hang", create=False, hang_seconds=5))
    timeout = aiohttp.ClientTimeout(total=5, sock_connect=1, sock_read=0.2)
    client = client_for(session, server, timeout=timeout)
    with pytest.raises(ResponseTimeout):
        await client.send_message(TO, FROM, "hi")


async def test_reset_is_connection_lost(session: aiohttp.ClientSession, server: TestServer, sim: Simulator) -> None:
    sim.add_fault(Fault(kind="reset", create=True))
    client = client_for(session, server, retry=FAST)
    with pytest.raises(ConnectionLost) as info:
        await client.send_message(TO, FROM, "hi")
    assert isinstance(info.value, OutcomeUnknown)
    assert sim.created_count(TO) == 1


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_connection_refused_is_retried_then_raises_connect_error(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sw_api.client")
    client = client_for(session, _closed_port(), retry=FAST)
    with pytest.raises(ConnectError) as info:
        await client.send_message(TO, FROM, "hi")
    assert isinstance(info.value, NotSent)
    assert "127.0.0.1" in str(info.value)
    lines = client_lines(caplog)
    assert [("attempt 1/3" in lines[0]), ("attempt 3/3" in lines[2])] == [True, True]
    assert len(lines) == 3
    # Numbers are masked in the log line.
    assert TO not in lines[0] and "+1555•••4567" in lines[0]


# --- against the simulator: logs -------------------------------------------------------------------------


async def test_get_message(session: aiohttp.ClientSession, server: TestServer) -> None:
    client = client_for(session, server)
    sent = await client.send_message(TO, FROM, "hi")
    record = await client.get_message(sent.id)
    assert record.id == sent.id
    assert (record.to, record.from_) == (TO, FROM)
    assert record.direction == "outbound"


async def test_get_unknown_message_is_not_found(session: aiohttp.ClientSession, server: TestServer) -> None:
    client = client_for(session, server)
    with pytest.raises(NotFound):
        await client.get_message("00000000-0000-4000-8000-000000000000")
    with pytest.raises(ValueError):
        await client.get_message("")


async def test_list_messages_follows_pagination(
    session: aiohttp.ClientSession, server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sw_api.client")
    client = client_for(session, server)
    sent = [await client.send_message(f"+1555123{n:04d}", FROM, f"m{n}") for n in range(5)]
    caplog.clear()
    listed = [r async for r in client.list_messages(page_size=2)]
    assert sorted(r.id for r in listed) == sorted(m.id for m in sent)
    gets = [line for line in client_lines(caplog) if line.startswith("GET ")]
    assert len(gets) == 3  # 2 + 2 + 1

    capped = [r async for r in client.list_messages(page_size=2, max_pages=2)]
    assert len(capped) == 4


# --- transports the simulator does not offer (tiny purpose-built apps) --------------------------------------


async def test_get_is_retried_after_a_5xx(aiohttp_server: ServerFactory, session: aiohttp.ClientSession) -> None:
    calls = 0
    record = (
        b'{"id": "m1", "from": "+15550100000", "to": "+15551234567", "status": "sent",'
        b' "created_at": "2026-03-02T14:05:09Z"}'
    )

    async def flaky(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.json_response({"error": "Internal Server Error"}, status=500)
        return web.Response(body=record, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/messaging/logs/{id}", flaky)
    server = await aiohttp_server(app)
    client = client_for(session, server, retry=FAST)
    assert (await client.get_message("m1")).status is MessageStatus.SENT
    assert calls == 2


async def test_next_link_to_another_host_is_not_followed(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.json_response({"links": {"next": "https://evil.example/api/messaging/logs"}, "data": []})

    app = web.Application()
    app.router.add_get("/api/messaging/logs", page)
    server = await aiohttp_server(app)
    client = client_for(session, server)
    with pytest.raises(InvalidResponse, match="outside"):
        [r async for r in client.list_messages()]


async def test_truncated_answer_is_connection_lost(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    async def short(request: web.Request) -> web.StreamResponse:
        # Promise more bytes than are sent, then close: the client sees a payload error.
        resp = web.StreamResponse(status=201, headers={"Content-Length": "500"})
        await resp.prepare(request)
        await resp.write(b'{"id": ')
        assert request.transport is not None
        request.transport.close()
        return resp

    app = web.Application()
    app.router.add_post(sansio.SEND_PATH, short)
    server = await aiohttp_server(app)
    client = client_for(session, server, retry=FAST)
    with pytest.raises(ConnectionLost):
        await client.send_message(TO, FROM, "hi")


# --- secrets ---------------------------------------------------------------------------------------------


async def test_token_never_in_exceptions_or_logs(
    session: aiohttp.ClientSession, server: TestServer, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_forms = {TOKEN, base64.b64encode(f"{SimulatorConfig().project_id}:{TOKEN}".encode()).decode()}
    client = client_for(session, server, retry=FAST, timeout=aiohttp.ClientTimeout(total=0.3))
    refused = client_for(session, _closed_port(), retry=FAST)
    errors: list[BaseException] = []
    sim.add_fault(Fault(kind="status", status=500, create=True))
    sim.add_fault(Fault(kind="hang", hang_seconds=2))
    sim.add_fault(Fault(kind="reset"))
    sim.add_fault(Fault(kind="status", status=429, retry_after=0.01, count=5))
    for _ in range(4):
        try:
            await client.send_message(TO, FROM, "hi")
        except (OutcomeUnknown, NotSent) as exc:
            errors.append(exc)
    for attempt in (refused.send_message(TO, FROM, "hi"), client.get_message("nope")):
        try:
            await attempt
        except (OutcomeUnknown, NotSent) as exc:
            errors.append(exc)
    assert len(errors) == 6
    texts = [str(e) + repr(e) + str(e.__cause__ or "") for e in errors]
    texts += [r.getMessage() for r in caplog.records] + [caplog.text, repr(client)]
    for secret in secret_forms:
        assert all(secret not in t for t in texts)


def _faults_left(sim: Simulator) -> int:
    return sum(uses for _, uses in sim._faults)


async def test_a_retry_after_beyond_the_total_budget_is_not_waited_for(
    session: aiohttp.ClientSession, server: TestServer, sim: Simulator
) -> None:
    sim.add_fault(Fault(kind="status", status=429, retry_after=30, count=10))
    client = client_for(session, server, retry=RetryPolicy(attempts=10, total=1.0))
    with pytest.raises(RateLimited) as raised:
        async with asyncio.timeout(20):  # waiting out the 30 s Retry-After would trip this, whatever the load
            await client.send_message(TO, FROM, "hi")
    assert raised.value.retry_after == 30
    assert _faults_left(sim) == 9  # one attempt: the wait it was asked for does not fit the budget


async def test_retry_after_waits_within_the_budget_count_every_attempt(
    session: aiohttp.ClientSession, server: TestServer, sim: Simulator
) -> None:
    sim.add_fault(Fault(kind="status", status=429, retry_after=0.05, count=10))
    client = client_for(session, server, retry=RetryPolicy(attempts=3, total=30.0))
    with pytest.raises(RateLimited):
        await client.send_message(TO, FROM, "hi")
    assert _faults_left(sim) == 7  # three attempts, as many as the policy allows, each after its Retry-After
