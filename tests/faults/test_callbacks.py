"""Status callbacks as SignalWire really sends them (twice, out of order, before the create answer) and as an
attacker would (unsigned, wrong key, wrong token, wrong id): each receipt reaches the thread once, forgeries
change nothing."""

from __future__ import annotations

import json
from typing import Any

from sw_api.models import MessageStatus, StatusEvent
from sw_api.simulator import Fault
from sw_api.webhooks import SIGNATURE_HEADER, sign_json
from tests.faults.procs import (
    CHANNEL,
    Snapshot,
    World,
    assert_exactly_one_sms,
    assert_receipts_once,
    parent_for,
    thread_texts,
)

TO = "+15551234567"


def _final(world: World, count: int, label: str = "Delivered") -> bool:
    parents = world.slack.messages(CHANNEL)
    return len(parents) == count and all(label in p.text for p in parents)


async def test_duplicated_callbacks_post_each_receipt_once(world: World) -> None:
    world.simulator.duplicate_callbacks = True
    bodies = [f"duplicate {i}" for i in range(3)]
    for body in bodies:
        assert (await world.driver.slash_command(f"{TO} {body}")).status == 200
    await world.wait_for(lambda: _final(world, 3), what="three parents delivered")
    await world.quiet()
    for body in bodies:
        sms = assert_exactly_one_sms(world, TO, body)
        # The simulator really did send every status twice, and the bot accepted both copies.
        assert [e.status for e in sms.callbacks].count(MessageStatus.DELIVERED) == 2
        assert_receipts_once(world, sms, parent_for(world, body))


async def test_reordered_callbacks_end_at_the_final_status_once(world: World) -> None:
    world.simulator.reorder_callbacks = True
    bodies = [f"reordered {i}" for i in range(3)]
    for body in bodies:
        await world.driver.slash_command(f"{TO} {body}")
    await world.wait_for(lambda: _final(world, 3), what="three parents delivered")
    await world.quiet()
    for body in bodies:
        sms = assert_exactly_one_sms(world, TO, body)
        assert [e.status for e in sms.callbacks] != [MessageStatus.QUEUED, MessageStatus.SENT,
                                                     MessageStatus.DELIVERED]
        assert_receipts_once(world, sms, parent_for(world, body), in_order=False)


async def test_duplicated_and_reordered_together(world: World) -> None:
    world.simulator.duplicate_callbacks = True
    world.simulator.reorder_callbacks = True
    await world.driver.slash_command(f"{TO} chaos")
    await world.wait_for(lambda: _final(world, 1), what="delivered")
    await world.quiet()
    sms = assert_exactly_one_sms(world, TO, "chaos")
    assert_receipts_once(world, sms, parent_for(world, "chaos"), in_order=False)


async def test_callbacks_before_the_create_answer_are_applied_once(make_world: Any) -> None:
    # Every status is delivered while SignalWire still holds the create answer back (shorter than the bot's
    # client timeout, so the answer does arrive): the callbacks know an id the bot has not stored yet.
    async with make_world(step_delay=0.0) as world:
        world.simulator.add_fault(Fault(kind="hang", create=True, hang_seconds=1.5))
        await world.driver.slash_command(f"{TO} early bird")

        def delivered_callback_accepted() -> bool:
            return any(a.ok and a.event()["status"] == "delivered" for a in world.simulator.callback_log)

        # Within the hang: the bot answered the final callback before it had SignalWire's create answer.
        await world.wait_for(delivered_callback_accepted, timeout=1.3, what="final callback answered 2xx early")
        await world.wait_for(lambda: _final(world, 1), what="delivered")
        await world.quiet()
        sms = assert_exactly_one_sms(world, TO, "early bird")
        assert_receipts_once(world, sms, parent_for(world, "early bird"))


async def _post(world: World, url: str, event: dict[str, Any], *, key: str | None = "right") -> int:
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json"}
    if key is not None:
        signing_key = world.simulator.config.signing_key if key == "right" else key
        headers[SIGNATURE_HEADER] = sign_json(signing_key, url, body)
    async with world.session.post(url, data=body, headers=headers) as resp:
        await resp.read()
        return resp.status


def _forged(sw_id: str, status: str) -> dict[str, Any]:
    return StatusEvent(id=sw_id, status=MessageStatus(status), to=TO, from_="+15557770000", timestamp=None,
                       error_code="30008", error_message="forged").to_json()


async def test_forged_callbacks_have_no_effect(make_world: Any) -> None:
    # Slow steps so the forgeries land while the genuine message is still only queued: a forged final status
    # would visibly change where the thread ends.
    async with make_world(step_delay=0.8) as world:
        await world.driver.slash_command(f"{TO} genuine")
        await world.wait_for(lambda: any("Queued" in m.text for m in world.slack.messages(CHANNEL)),
                             what="parent queued")
        [sms] = world.simulator.messages.values()
        assert sms.status_callback is not None
        url = sms.status_callback
        base = url.partition("?")[0]
        tampered = url.replace("t=", "t=0")
        cases: list[tuple[str, dict[str, Any], str | None, int]] = [
            (url, _forged(sms.id, "failed"), None, 401),                   # unsigned
            (url, _forged(sms.id, "failed"), "PSKwrong-key", 401),         # signed with the wrong key
            (tampered, _forged(sms.id, "failed"), "right", 403),           # right key, tampered token
            (f"{base}?ref=nope&t={'0' * 32}", _forged(sms.id, "failed"), "right", 403),  # made-up ref
            (f"{base}?ref=x", _forged(sms.id, "failed"), "right", 401),    # no token at all
            (url, _forged("00000000-0000-4000-8000-000000000000", "delivered"), "right", 403),  # other id
        ]
        for target, event, key, expected in cases:
            assert await _post(world, target, event, key=key) == expected, (target, key)
        await world.wait_for(lambda: sms.status is MessageStatus.DELIVERED, timeout=10, what="real delivery")
        await world.wait_for(lambda: _final(world, 1), what="delivered")
        await world.quiet()
        parent = parent_for(world, "genuine")
        texts = thread_texts(world, parent)
        assert not any("30008" in t or "forged" in t or "Failed" in t for t in texts), texts
        assert "30008" not in parent.text and "Failed" not in parent.text
        assert_receipts_once(world, sms, parent)
        assert assert_exactly_one_sms(world, TO, "genuine").id == sms.id


async def test_forged_inbound_and_slack_requests_have_no_effect(world: World) -> None:
    before = Snapshot.take(world)
    inbound = json.dumps({"message": {"id": "forged", "from": TO, "to": "+15557770000", "body": "hi"}}).encode()
    url = world.bot_url + "/signalwire/inbound"
    async with world.session.post(url, data=inbound, headers={
            "Content-Type": "application/json", SIGNATURE_HEADER: sign_json("PSKwrong", url, inbound)}) as resp:
        assert resp.status == 401
    slash = f"command=/sms&text={TO}+forged&user_id=U0ALICE&channel_id={CHANNEL}".encode()
    response = await world.driver.raw(slash, "application/x-www-form-urlencoded", signature="v0=" + "0" * 64)
    assert response.status == 401
    await world.quiet(0.3)
    assert Snapshot.take(world) == before
    assert world.simulator.created_count() == 0
    assert not world.slack.calls
