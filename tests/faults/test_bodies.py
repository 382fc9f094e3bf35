"""Oversized and malformed bodies on every route of a real bot process: refused (413 / 400), never a 500,
nothing sent, nothing posted, and the bot keeps serving."""

from __future__ import annotations

import json

from sw_api.webhooks import SIGNATURE_HEADER, sign_json
from tests.faults.procs import Snapshot, World

TO = "+15551234567"
OVERSIZED = 256 * 1024 + 1


async def _post(world: World, path: str, body: bytes, content_type: str, *, sign: bool = True) -> int:
    url = world.bot_url + path
    headers = {"Content-Type": content_type}
    if sign:
        headers[SIGNATURE_HEADER] = sign_json(world.simulator.config.signing_key, url, body)
    async with world.session.post(url, data=body, headers=headers) as resp:
        await resp.read()
        return resp.status


async def _healthy(world: World) -> bool:
    async with world.session.get(f"{world.bot_url}/healthz") as resp:
        return resp.status == 200


async def test_oversized_bodies_are_413_without_side_effects(world: World) -> None:
    before = Snapshot.take(world)
    # Correctly signed, so only the size can be the reason for refusing it.
    slack_body = f"command=/sms&text={TO}+".encode() + b"x" * OVERSIZED
    response = await world.driver.raw(slack_body, "application/x-www-form-urlencoded")
    assert response.status == 413
    webhook_body = json.dumps({"id": "x", "pad": "x" * OVERSIZED}).encode()
    for path in ("/signalwire/status?ref=x&t=y", "/signalwire/inbound"):
        assert await _post(world, path, webhook_body, "application/json") == 413, path
    await world.quiet(0.3)
    assert Snapshot.take(world) == before
    assert not world.slack.calls
    assert world.simulator.created_count() == 0
    assert await _healthy(world)


MALFORMED_WEBHOOKS = [
    (b"{not json", "application/json"),
    (b"[1, 2, 3]", "application/json"),
    (b'{"status": "delivered"}', "application/json"),
    (b'{"id": 7, "status": "teleported"}', "application/json"),
    (b"\xff\xfe\x00garbage", "application/json"),
    (b"", "application/json"),
    (b"MessageSid=&From=%ZZ", "application/x-www-form-urlencoded"),
]


async def test_malformed_signed_webhooks_are_400_without_side_effects(world: World) -> None:
    await world.driver.slash_command(f"{TO} a real message first")
    await world.wait_for(lambda: any("Delivered" in m.text for m in world.slack.messages("C0GENERAL")),
                         what="the real message delivered")
    await world.quiet(0.3)
    [sms] = world.simulator.messages.values()
    assert sms.status_callback is not None
    callback_path = sms.status_callback.removeprefix(world.bot_url)
    before = Snapshot.take(world)
    calls = len(world.slack.calls)
    for body, content_type in MALFORMED_WEBHOOKS:
        # Signed with the right key and, for callbacks, a genuine ref and token: only the body is wrong.
        assert await _post(world, callback_path, body, content_type) == 400, body
        assert await _post(world, "/signalwire/inbound", body, content_type) == 400, body
    await world.quiet(0.3)
    assert Snapshot.take(world) == before
    assert len(world.slack.calls) == calls
    assert await _healthy(world)


async def test_malformed_signed_slack_bodies_bolt_can_read_send_nothing(world: World) -> None:
    for body in (b"command=/sms", b"command=/sms&text=%ZZ%ZZ", b'{"type": "event_callback"}'):
        response = await world.driver.raw(body, "application/x-www-form-urlencoded")
        assert response.status < 500, (body, response.status, response.body)
    await world.quiet(0.3)
    assert world.simulator.created_count() == 0
    assert not world.slack.called("chat.postMessage")
    assert await _healthy(world)
