"""Thread replies that must end in exactly one SMS or a visible explanation, over real HTTP: "also send to
channel" replies, users.info failing (5xx bursts, dropped connections), Slack's retries of an event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from demo.fake_slack import SlackMessage
from demo.harness import FROM_NUMBER, Harness, _serve, running_bridge

INBOUND = "C0INBOUND"
PHONE = "+15551234567"


@dataclass
class DroppingProxy:
    """Forwards Slack Web API calls to the fake, but drops the connection of ``drop`` methods (a transport error:
    what a proxy restart or a network blip looks like to slack_sdk)."""

    target: str = ""
    drop: set[str] = field(default_factory=set)
    dropped: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        if method in self.drop:
            self.dropped += 1
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "authorization")}
        async with aiohttp.ClientSession() as session, session.request(
                request.method, f"{self.target}/api/{method}", params=request.query, data=await request.read(),
                headers=headers) as answer:
            return web.Response(status=answer.status, body=await answer.read(), headers={
                k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "retry-after")})


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[tuple[Harness, DroppingProxy]]:
    proxy = DroppingProxy()
    app = web.Application()
    app.router.add_route("*", "/api/{method}", proxy.handle)
    runner, url = await _serve(app)
    try:
        async with running_bridge(tmp_path, env={"INBOUND_CHANNEL": INBOUND, "SLACK_API_URL": f"{url}/api/"}) as h:
            proxy.target = h.slack_url
            yield h, proxy
    finally:
        await runner.cleanup()


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bridge(tmp_path, env={"INBOUND_CHANNEL": INBOUND}) as harness:
        yield harness


async def conversation(h: Harness) -> SlackMessage:
    await h.simulator.inject_inbound(PHONE, FROM_NUMBER, "hello?", url=h.bot_url + "/signalwire/inbound")
    await h.settle()
    [parent] = h.slack.messages(INBOUND)
    return parent


async def reply(h: Harness, parent: SlackMessage, text: str, *, subtype: str | None = None,
                retries: int = 0) -> dict[str, Any]:
    event = h.slack.post_user_message(INBOUND, "U0ALICE", text, thread_ts=parent.ts)
    if subtype is not None:
        event["subtype"] = subtype
    for n in range(retries + 1):
        response = await h.driver.event(event, retry_num=n or None, event_id="Ev0000000002")
        assert response.status == 200
        await h.settle()
    return event


def sent(h: Harness) -> list[str | None]:
    return [m.body for m in h.simulator.messages.values() if m.direction == "outbound"]


async def test_also_send_to_channel_reply_is_texted(h: Harness) -> None:
    parent = await conversation(h)
    await reply(h, parent, "sent to the channel too", subtype="thread_broadcast")
    assert sent(h) == ["sent to the channel too"]


async def test_other_subtypes_still_text_nobody(h: Harness) -> None:
    parent = await conversation(h)
    for subtype in ("message_changed", "channel_join", "bot_message", "file_share"):
        await reply(h, parent, f"subtype {subtype}", subtype=subtype)
    assert sent(h) == []


async def test_users_info_connection_dropped_explains_in_the_thread_once(
        proxied: tuple[Harness, DroppingProxy]) -> None:
    h, proxy = proxied
    parent = await conversation(h)
    proxy.drop.add("users.info")
    event = await reply(h, parent, "<@U0BOB> will call you", retries=1)
    assert proxy.dropped >= 2
    assert sent(h) == []
    notes = [m.text for m in h.slack.thread(INBOUND, parent.ts) if "not texted" in m.text]
    assert len(notes) == 1, notes
    assert "<@U0BOB>" in notes[0] and "users.info" in notes[0] and "Nothing was sent" in notes[0]
    mine = h.slack.message(INBOUND, event["ts"])
    assert mine is not None and "x" in mine.reactions
    # Once Slack answers again, a new reply goes out with the name resolved.
    proxy.drop.clear()
    await reply(h, parent, "<@U0BOB> will call you")
    assert sent(h) == ["@bob will call you"]


async def test_users_info_5xx_burst_is_retried_and_the_reply_sent_once(h: Harness) -> None:
    parent = await conversation(h)
    # slack_sdk retries a 500 once itself; the third answer is the bridge's own retry.
    h.slack.add_response("users.info", status=500, count=3)
    await reply(h, parent, "<@U0BOB> is on it", retries=2)
    assert sent(h) == ["@bob is on it"]
    assert not [m for m in h.slack.thread(INBOUND, parent.ts) if "not texted" in m.text]


async def test_a_redelivered_reply_event_sends_once(h: Harness) -> None:
    parent = await conversation(h)
    await reply(h, parent, "just once", retries=3)
    assert sent(h) == ["just once"]
