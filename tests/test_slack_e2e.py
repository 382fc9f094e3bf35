"""End to end over real HTTP: signed Slack requests → the real bot app → the simulator → callbacks → fake Slack."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from demo.fake_slack import SlackMessage
from demo.harness import FROM_NUMBER, Harness, running_bridge
from sw_api.models import MessageStatus, StatusEvent
from sw_api.simulator import Outcome
from sw_api.webhooks import sign_json
from tests.faults.procs import receipts_in

CHANNEL = "C0GENERAL"
TO = "+15551234567"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bridge(tmp_path) as harness:
        yield harness


def parents(h: Harness, channel: str = CHANNEL) -> list[SlackMessage]:
    return h.slack.messages(channel)


def replies(h: Harness, parent: SlackMessage, channel: str = CHANNEL) -> list[str]:
    return [m.text for m in h.slack.thread(channel, parent.ts)]


def blocks_text(blocks: list[dict[str, Any]] | None) -> str:
    return json.dumps(blocks or [], ensure_ascii=False)


async def test_quick_send_is_delivered_with_receipts_in_thread(h: Harness) -> None:
    response = await h.driver.slash_command("+1 555 123 4567 Running 10 min late")
    assert response.status == 200
    await h.settle()

    [sms] = h.simulator.messages.values()
    assert (sms.to, sms.from_, sms.body) == (TO, FROM_NUMBER, "Running 10 min late")
    [parent] = parents(h)
    assert "Delivered" in parent.text and "+1 555-123-4567" in parent.text
    assert "Running 10 min late" in blocks_text(parent.blocks)
    assert "<@U0ALICE>" in blocks_text(parent.blocks)
    # Statuses received within RECEIPT_COALESCE_SECONDS share a reply: each is told once, in order.
    assert receipts_in(replies(h, parent)) == [MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED]
    post = h.slack.get_payload("chat.postMessage", 0)
    assert str(post.get("unfurl_links")).lower() == "false" and str(post.get("unfurl_media")).lower() == "false"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12 hello", "not a valid phone number"),
        ("+15551234567", "message is empty"),
        ("hello there", "is not a phone number"),
        ("+15551234567 " + "x" * 1601, "at most 1600"),
    ],
)
async def test_bad_slash_input_is_explained_and_nothing_is_sent(h: Harness, text: str, expected: str) -> None:
    response = await h.driver.slash_command(text)
    await h.settle()
    assert response.status == 200
    assert expected in response.body
    assert "Nothing was sent" in response.body
    assert h.simulator.created_count() == 0
    assert not h.slack.called("chat.postMessage")


async def test_help_explains_usage(h: Harness) -> None:
    response = await h.driver.slash_command("help")
    assert response.status == 200 and "/sms +1 555 123 4567" in response.body


async def test_slack_tel_link_and_national_number_forms(h: Harness) -> None:
    await h.driver.slash_command("<tel:+15551234567|+1 555 123 4567> first")
    await h.driver.slash_command("(555) 123-4567 second")
    await h.settle()
    bodies = sorted((m.to, m.body) for m in h.simulator.messages.values())
    assert bodies == [(TO, "first"), (TO, "second")]


async def test_ack_is_fast_while_signalwire_is_slow(h: Harness) -> None:
    h.simulator.latency = 2.0
    response = await h.driver.slash_command(f"{TO} hello")
    assert response.status == 200
    # Order, not milliseconds: SignalWire holds the create for 2 s, and the ack came back before it was made.
    assert h.simulator.created_count(TO) == 0
    await h.settle(timeout=15)
    assert h.simulator.created_count(TO) == 1


async def test_modal_opens_counts_and_sends(h: Harness) -> None:
    response = await h.driver.slash_command("")
    assert response.status == 200
    await h.settle()  # the form opens after the ack
    assert h.slack.call_count("views.open") == 1
    [view] = h.slack.views.values()
    assert view["callback_id"] == "sms_compose"
    block_ids = [b.get("block_id") for b in view["blocks"]]
    assert {"to", "body", "counter", "channel", "media", "mms"} <= set(block_ids)
    assert "from" not in block_ids  # only one sender number configured

    typed = {"body": {"body": {"type": "plain_text_input", "value": "Héllo €"}}}
    await h.driver.block_action("body", None, block_id="body", view={**view, "state": {"values": typed}},
                                action_type="plain_text_input")
    await h.settle()
    assert h.slack.call_count("views.update") == 1
    counter = next(b for b in h.slack.views[view["id"]]["blocks"] if b.get("block_id") == "counter")
    assert "7 / 1600 characters · GSM-7 · 1 segment" in blocks_text([counter])

    values = {
        "to": {"to": {"type": "plain_text_input", "value": "(555) 123-4567"}},
        "body": {"body": {"type": "plain_text_input", "value": "From the modal"}},
        "channel": {"channel": {"type": "conversations_select", "selected_conversation": "C0SUPPORT"}},
        "media": {"media": {"type": "plain_text_input", "value": None}},
        "mms": {"mms": {"type": "checkboxes", "selected_options": []}},
    }
    response = await h.driver.view_submission(h.slack.views[view["id"]], values)
    assert response.status == 200 and response.body in ("", "{}")
    await h.settle()
    [sms] = h.simulator.messages.values()
    assert (sms.to, sms.body) == (TO, "From the modal")
    [parent] = parents(h, "C0SUPPORT")
    assert "Delivered" in parent.text


async def test_modal_errors_come_back_inline_and_nothing_is_sent(h: Harness) -> None:
    await h.driver.slash_command("")
    await h.settle()  # the form opens after the ack
    [view] = h.slack.views.values()
    values = {
        "to": {"to": {"type": "plain_text_input", "value": "12"}},
        "body": {"body": {"type": "plain_text_input", "value": ""}},
        "channel": {"channel": {"type": "conversations_select", "selected_conversation": CHANNEL}},
    }
    response = await h.driver.view_submission(view, values)
    answer = response.json()
    assert answer["response_action"] == "errors"
    assert set(answer["errors"]) == {"to", "body"}
    assert "not a valid phone number" in answer["errors"]["to"]
    values["media"] = {"media": {"type": "plain_text_input", "value": "ftp://x.example/a.png"}}
    answer = (await h.driver.view_submission(view, values)).json()
    assert set(answer["errors"]) == {"to", "media"}
    assert "ftp://x.example/a.png" in answer["errors"]["media"]
    await h.settle()
    assert h.simulator.created_count() == 0


async def test_modal_mms_says_there_is_no_delivery_receipt(h: Harness) -> None:
    await h.driver.slash_command("")
    await h.settle()  # the form opens after the ack
    [view] = h.slack.views.values()
    values = {
        "to": {"to": {"type": "plain_text_input", "value": TO}},
        "body": {"body": {"type": "plain_text_input", "value": "Photo"}},
        "channel": {"channel": {"type": "conversations_select", "selected_conversation": CHANNEL}},
        "media": {"media": {"type": "plain_text_input", "value": "https://example.com/a.jpg"}},
    }
    await h.driver.view_submission(view, values)
    await h.settle()
    [sms] = h.simulator.messages.values()
    assert sms.kind == "mms" and sms.media == ("https://example.com/a.jpg",)
    [parent] = parents(h)
    assert "MMS has no delivery receipt" in replies(h, parent)[-1]
    assert "no delivery receipt" in parent.text


async def test_carrier_failure_is_explained_and_retry_sends_once(h: Harness) -> None:
    h.simulator.script(TO, Outcome(MessageStatus.UNDELIVERED, "30003", "Unreachable destination handset"))
    await h.driver.slash_command(f"{TO} are you there?")
    await h.settle()
    [parent] = parents(h)
    assert "Undelivered" in parent.text
    failure = h.slack.thread(CHANNEL, parent.ts)[-1]
    text = blocks_text(failure.blocks)
    assert "30003" in text and "Unreachable destination handset" in text and "unreachable" in text
    assert "sms_retry" in text

    h.simulator.script(TO, Outcome(MessageStatus.DELIVERED))
    first = await h.driver.block_action("sms_retry", _retry_value(failure), message=failure.as_dict())
    second = await h.driver.block_action("sms_retry", _retry_value(failure), message=failure.as_dict())
    assert first.status == second.status == 200
    await h.settle()
    assert h.simulator.created_count(TO) == 2
    [parent] = parents(h)
    assert "Delivered" in parent.text
    assert any("already pressed Retry" in e.get("text", "") for e in h.slack.ephemerals)


def _retry_value(message: SlackMessage) -> str:
    for block in message.blocks or []:
        for element in block.get("elements", []):
            if element.get("action_id") == "sms_retry":
                return str(element["value"])
    raise AssertionError("no Retry button")


async def test_signalwire_422_reaches_the_thread_verbatim(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, owned_numbers=frozenset({"+15550001111"})) as h:
        await h.driver.slash_command(f"{TO} hello")
        await h.settle()
        assert h.simulator.created_count() == 0
        [parent] = parents(h)
        assert "Not sent" in parent.text
        failure = h.slack.thread(CHANNEL, parent.ts)[-1]
        assert "SignalWire says" in blocks_text(failure.blocks)
        assert "from" in blocks_text(failure.blocks).lower()


async def test_restart_between_accept_and_callbacks_loses_nothing(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, step_delay=0.4) as h:
        await h.driver.slash_command(f"{TO} survive a restart")
        await _wait_for(lambda: h.simulator.created_count(TO) == 1)
        await h.bridge.drain()
        await h.restart_bot()
        await h.settle(timeout=15)
        [parent] = parents(h)
        assert "Delivered" in parent.text
        assert receipts_in(replies(h, parent)) == [MessageStatus.QUEUED, MessageStatus.SENT,
                                                   MessageStatus.DELIVERED]


async def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    import asyncio

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


async def test_duplicate_and_reordered_callbacks_post_each_receipt_once(h: Harness) -> None:
    h.simulator.duplicate_callbacks = True
    h.simulator.reorder_callbacks = True
    for i in range(3):
        await h.driver.slash_command(f"{TO} message {i}")
    await h.settle()
    assert len(parents(h)) == 3
    for parent in parents(h):
        thread = replies(h, parent)
        assert len(thread) == len(set(thread)), thread
        assert "Delivered" in parent.text, parent.text


@pytest.mark.parametrize("case", ["bad_signature", "stale_timestamp"])
async def test_forged_slack_requests_are_refused(h: Harness, case: str) -> None:
    body = f"command=/sms&text={TO}+hi&user_id=U0ALICE&channel_id={CHANNEL}".encode()
    if case == "bad_signature":
        response = await h.driver.raw(body, "application/x-www-form-urlencoded", signature="v0=" + "0" * 64)
    else:
        response = await h.driver.raw(body, "application/x-www-form-urlencoded", timestamp=int(time.time()) - 600)
    assert response.status == 401
    await h.settle()
    assert h.simulator.created_count() == 0
    assert not h.slack.called("chat.postMessage")


async def _sent_message(h: Harness) -> tuple[str, str]:
    await h.driver.slash_command(f"{TO} hello")
    await h.settle()
    [sms] = h.simulator.messages.values()
    assert sms.status_callback is not None
    return sms.id, sms.status_callback


async def _post_callback(h: Harness, url: str, event: dict[str, Any], *, sign: bool = True,
                         key: str | None = None) -> int:
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json"}
    if sign:
        headers["X-SignalWire-Signature"] = sign_json(key or h.config.signalwire_signing_key, url, body)
    async with h.session.post(url, data=body, headers=headers) as resp:
        return resp.status


def _event(sw_id: str, status: str = "failed") -> dict[str, Any]:
    return StatusEvent(id=sw_id, status=MessageStatus(status), to=TO, from_=FROM_NUMBER, timestamp=None,
                       error_code="30008", error_message="forged").to_json()


async def test_forged_callbacks_change_nothing(h: Harness) -> None:
    sw_id, url = await _sent_message(h)
    [parent] = parents(h)
    before = (parent.text, len(replies(h, parent)))
    base = url.split("?")[0]
    good_token_other_ref = f"{base}?ref=nope&t={h.bridge.tokens.token('nope')}"
    cases: list[tuple[str, dict[str, Any], int]] = [
        (url, {"sign": False}, 401),                                    # no signature
        (url, {"key": "wrong-key"}, 401),                               # wrong signing key
        (url.replace("t=", "t=0"), {}, 403),                            # tampered token
        (f"{base}?ref=x", {}, 401),                                     # no token at all
        (good_token_other_ref, {}, 404),                                # unknown message
    ]
    for target, kwargs, expected in cases:
        assert await _post_callback(h, target, _event(sw_id), **kwargs) == expected, target
    assert await _post_callback(h, url, _event("00000000-0000-4000-8000-000000000000")) == 403  # id mismatch
    async with h.session.post(url, data=b"{not json", headers={
            "X-SignalWire-Signature": sign_json(h.config.signalwire_signing_key, url, b"{not json")}) as resp:
        assert resp.status == 400
    await h.settle()
    [parent] = parents(h)
    assert (parent.text, len(replies(h, parent))) == before
    assert "Delivered" in parent.text


async def test_callback_never_moves_a_delivered_message_backwards(h: Harness) -> None:
    sw_id, url = await _sent_message(h)
    [parent] = parents(h)
    before = replies(h, parent)
    assert await _post_callback(h, url, _event(sw_id, "sent")) == 204
    await h.settle()
    [parent] = parents(h)
    assert "Delivered" in parent.text
    assert replies(h, parent) == before
    assert receipts_in(before) == [MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED]


async def test_user_text_is_escaped_for_slack(h: Harness) -> None:
    await h.driver.slash_command(f"{TO} <!channel> & <https://evil.example|your bank>")
    await h.settle()
    [sms] = h.simulator.messages.values()
    assert sms.body == "<!channel> & <https://evil.example|your bank>"
    [parent] = parents(h)
    text = blocks_text(parent.blocks)
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|your bank&gt;" in text
    assert "<!channel>" not in text


async def test_healthz(h: Harness) -> None:
    async with h.session.get(f"{h.bot_url}/healthz") as resp:
        assert resp.status == 200
        assert (await resp.json())["ok"] is True


async def test_parent_post_failure_sends_nothing_and_says_why(h: Harness) -> None:
    h.slack.add_response("chat.postMessage", body={"ok": False, "error": "not_in_channel"})
    await h.driver.slash_command(f"{TO} hello")
    await h.settle()
    assert h.simulator.created_count() == 0
    assert any("not_in_channel" in r.get("text", "") for r in h.slack.responses)


async def test_modal_offers_a_sender_choice_when_several_numbers_are_configured(tmp_path: Path) -> None:
    second = "+15557770001"
    async with running_bridge(tmp_path, env={"SIGNALWIRE_FROM_NUMBERS": f"{FROM_NUMBER},{second}"}) as h:
        await h.driver.slash_command("")
        await h.settle()  # the form opens after the ack
        [view] = h.slack.views.values()
        [select] = [b for b in view["blocks"] if b.get("block_id") == "from"]
        assert [o["value"] for o in select["element"]["options"]] == [FROM_NUMBER, second]
        values = {
            "to": {"to": {"type": "plain_text_input", "value": TO}},
            "body": {"body": {"type": "plain_text_input", "value": "from the second number"}},
            "from": {"from": {"type": "static_select", "selected_option": {"value": second}}},
            "channel": {"channel": {"type": "conversations_select", "selected_conversation": CHANNEL}},
        }
        await h.driver.view_submission(view, values)
        await h.settle()
        [sms] = h.simulator.messages.values()
        assert (sms.from_, sms.body) == (second, "from the second number")
