"""The team-wide block list end to end over real HTTP (issue 11): ``/sms block``, ``/sms unblock``, ``/sms blocked``.

Covers: a blocked number refused on /sms, the form and a thread reply, with the reason and who blocked it; unblock
lets it through again; its inbound texts still appear, marked; its HELP and STOP are still answered, its START
confirmation is not; every change is audited; the list is private; who may not send may not block; bad input.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.model import AuditAction, SendState
from demo.harness import FROM_NUMBER, Harness, running_bridge
from sw_api.simulator import Fault, InboundDelivery

INBOUND = "C0INBOUND"
GENERAL = "C0GENERAL"
PHONE = "+15551234567"
SHOWN = "+1 555-123-4567"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    env = {"INBOUND_CHANNEL": INBOUND, "SMS_ALLOWED_USERS": "U0ALICE,U0BOB"}
    async with running_bridge(tmp_path, env=env) as harness:
        yield harness


async def text_in(h: Harness, body: str, *, from_: str = PHONE) -> InboundDelivery:
    delivery = await h.simulator.inject_inbound(from_, FROM_NUMBER, body, [], url=h.bot_url + "/signalwire/inbound")
    assert delivery.status == 200
    await h.settle()
    return delivery


def sent(h: Harness) -> list[str | None]:
    return [m.body for m in h.simulator.messages.values() if m.status.value != "received"]


async def command(h: Harness, text: str, user: str = "U0ALICE") -> str:
    """Run ``/sms <text>``; what the user was told (the ack, else the private response that followed)."""
    before = len(h.slack.responses)
    answer = await h.driver.slash_command(text, user_id=user)
    await h.settle()
    assert answer.status == 200
    if answer.body.strip():
        return answer.body
    new = h.slack.responses[before:]
    assert len(new) == 1, new
    assert new[0].get("response_type") == "ephemeral", new[0]
    return str(new[0]["text"])


def modal_values(to: str, body: str) -> dict[str, Any]:
    return {
        "to": {"to": {"type": "plain_text_input", "value": to}},
        "body": {"body": {"type": "plain_text_input", "value": body}},
        "channel": {"channel": {"type": "conversations_select", "selected_conversation": GENERAL}},
    }


async def test_block_refuses_every_send_path_with_the_reason_and_who_then_unblock_allows(h: Harness) -> None:
    await text_in(h, "hello")
    [parent] = h.slack.messages(INBOUND)
    told = await command(h, "block +1 (555) 123-4567 sends spam")
    assert "<@U0ALICE> blocked" in told and SHOWN in told and "sends spam" in told
    refusal = f"<@U0ALICE> blocked {SHOWN}: sends spam"

    # /sms: refused in the ack, nothing stored or sent.
    answer = await h.driver.slash_command(f"{PHONE} hi there", user_id="U0BOB")
    await h.settle()
    assert refusal in answer.body
    # The form: refused inline.
    await h.driver.slash_command("", user_id="U0BOB")
    await h.settle()
    [view] = h.slack.views.values()
    inline = (await h.driver.view_submission(view, modal_values("555 123 4567", "from the form"),
                                             user_id="U0BOB")).json()
    assert inline["response_action"] == "errors" and refusal in inline["errors"]["body"]
    # A thread reply in the conversation: not texted, the person told privately.
    event = h.slack.post_user_message(INBOUND, "U0BOB", "reply in the thread", thread_ts=parent.ts)
    assert (await h.driver.event(event)).status == 200
    await h.settle()
    assert any(refusal in str(e.get("text", "")) and e.get("user") == "U0BOB" for e in h.slack.ephemerals)
    assert sent(h) == []

    told = await command(h, f"unblock {PHONE}", user="U0BOB")
    assert "<@U0BOB> unblocked" in told and "sends spam" in told
    await h.driver.slash_command(f"{PHONE} you are unblocked")
    await h.settle()
    assert sent(h) == ["you are unblocked"]
    actions = [(a.action, a.user_id, a.to_number) for a in await h.bridge.store.audit_list()
               if a.action in (AuditAction.BLOCK, AuditAction.UNBLOCK)]
    assert actions == [(AuditAction.UNBLOCK, "U0BOB", PHONE), (AuditAction.BLOCK, "U0ALICE", PHONE)]


async def test_inbound_texts_from_a_blocked_number_appear_marked_and_get_only_required_answers(h: Harness) -> None:
    await command(h, f"block {PHONE} abusive")
    await text_in(h, "let me in")
    [parent] = h.slack.messages(INBOUND)
    assert "🚫" in parent.text and "blocked number" in parent.text and "let me in" in parent.text
    await text_in(h, "START")
    assert sent(h) == [], "a blocked number gets no START confirmation"
    await text_in(h, "HELP")
    await text_in(h, "STOP")
    [help_sms, stop_sms] = sent(h)
    assert help_sms is not None and "Reply STOP" in help_sms
    assert stop_sms is not None and "unsubscribed" in stop_sms
    replies = [m.text for m in h.slack.thread(INBOUND, parent.ts)]
    assert all("blocked number" in t for t in replies if t.startswith(("🚫 *blocked", "📥")))
    await command(h, f"unblock {PHONE}")
    await text_in(h, "hello again")
    assert "blocked number" not in h.slack.thread(INBOUND, parent.ts)[-1].text


async def test_the_block_list_is_private_and_lists_reason_and_who(h: Harness) -> None:
    assert "No number is blocked" in await command(h, "blocked")
    await command(h, "block +15551234567 spam")
    await command(h, "block +15559876543", user="U0BOB")
    again = await command(h, "block 5551234567 another reason", user="U0BOB")
    assert "blocked already" in again and "<@U0ALICE>" in again and "spam" in again
    listing = await command(h, "blocked", user="U0BOB")
    assert "+1 555-987-6543: <@U0BOB> blocked it: no reason given" in listing
    assert f"{SHOWN}: <@U0ALICE> blocked it: spam" in listing
    assert not h.slack.called("chat.postMessage"), "nothing about the block list is posted in a channel"
    assert "is not blocked" in await command(h, "unblock +1 555 000 1234")
    # Only one BLOCK row per change: the refused second block and the no-op unblock changed nothing.
    assert [a.action for a in await h.bridge.store.audit_list()].count(AuditAction.BLOCK) == 2
    assert AuditAction.UNBLOCK not in [a.action for a in await h.bridge.store.audit_list()]


async def test_only_people_who_may_send_may_block(h: Harness) -> None:
    told = await command(h, f"block {PHONE} nope", user="U0CAROL")
    assert "SMS_ALLOWED_USERS" in told
    assert "SMS_ALLOWED_USERS" in await command(h, "blocked", user="U0CAROL")
    assert await h.bridge.store.get_block(PHONE) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("block", "Give the number to block"),
    ("block hello", "Give the number to block"),
    ("block 12 spam", "not a valid phone number"),
    (f"unblock {PHONE} extra words", "takes only the number"),
    ("blocked everything", "takes nothing after it"),
])
async def test_bad_block_commands_are_explained_and_change_nothing(h: Harness, text: str, expected: str) -> None:
    told = await command(h, text)
    assert expected in told and "Nothing was sent" in told
    assert await h.bridge.store.blocked_numbers() == []


async def test_help_text_mentions_the_block_commands(h: Harness) -> None:
    usage = await command(h, "help")
    assert "/sms block +1 555 123 4567" in usage and "/sms unblock" in usage and "/sms blocked" in usage


async def test_a_message_waiting_out_a_429_is_not_sent_once_its_number_is_blocked(tmp_path: Path) -> None:
    env = {"INBOUND_CHANNEL": INBOUND, "SWEEP_INTERVAL_SECONDS": "0.1"}
    async with running_bridge(tmp_path, env=env) as h:
        # SignalWire keeps answering 429: the message stays pending and is tried again after each Retry-After.
        h.simulator.add_fault(Fault(kind="status", status=429, retry_after=0.2, count=100_000))
        answer = await h.driver.slash_command(f"{PHONE} sent before the block")
        assert answer.status == 200 and answer.body == ""
        await command(h, f"block {PHONE} asked us to stop by phone")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while True:
            replies = [m.text for parent in h.slack.messages(GENERAL) for m in h.slack.thread(GENERAL, parent.ts)]
            if any("<@U0ALICE> blocked +1 555-123-4567: asked us to stop by phone" in t for t in replies):
                break
            assert loop.time() < deadline, replies
            await asyncio.sleep(0.1)
        await h.settle()
        assert h.simulator.created_count(PHONE) == 0
        [stored] = await h.bridge.store.due([SendState.REJECTED], datetime.now(UTC))
        assert stored.body == "sent before the block" and stored.state is SendState.REJECTED
