"""STOP / START / HELP auto-replies end to end over real HTTP (issue 11): the simulator texts the bot, the bot texts
back through the durable sending pipeline, the fake Slack shows the thread.

Covers: one STOP confirmation from the number texted, however often SignalWire delivers the webhook; HELP answered
while opted out; START confirmed and opted back in; COMPLIANCE_AUTO_REPLY=false; custom texts with {brand} and
{contact}; the thread's notice and receipts; the audit row; Retry of a failed message refused once they opted out;
the PostgreSQL engine; two bridges (replicas) on one PostgreSQL racing the same delivery send one auto-reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.compliance import DEFAULT_HELP_TEXT, DEFAULT_STOP_TEXT
from bridge.config import Config, ConfigError
from bridge.model import AUTO_REPLY_ORIGIN, AuditAction, AutoReplyKind
from demo.fake_slack import SlackMessage
from demo.harness import FROM_NUMBER, Harness, running_bridge
from sw_api.models import MessageStatus
from sw_api.simulator import Fault, InboundDelivery, Outcome
from sw_api.webhooks import SIGNATURE_HEADER, sign_json
from tests.pg import throwaway_database

INBOUND = "C0INBOUND"
GENERAL = "C0GENERAL"
PHONE = "+15551234567"

STOP_SMS = DEFAULT_STOP_TEXT.format(brand="sms-bridge")
START_PREFIX = "sms-bridge: You are resubscribed"
HELP_SMS = DEFAULT_HELP_TEXT.format(brand="sms-bridge", contact="reply to this message")


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bridge(tmp_path, env={"INBOUND_CHANNEL": INBOUND}) as harness:
        yield harness


async def text_in(h: Harness, body: str, *, from_: str = PHONE, message_id: str | None = None,
                  fmt: str = "json") -> InboundDelivery:
    delivery = await h.simulator.inject_inbound(from_, FROM_NUMBER, body, [], url=h.bot_url + "/signalwire/inbound",
                                                fmt=fmt, message_id=message_id)  # type: ignore[arg-type]
    assert delivery.status == 200, delivery.text
    await h.settle()
    return delivery


def sent(h: Harness) -> list[tuple[str, str, str | None]]:
    """(to, from, body) of every SMS the bot created at the simulator, in order."""
    return [(m.to, m.from_, m.body) for m in h.simulator.messages.values() if m.status.value != "received"]


def thread_texts(h: Harness, channel: str, parent: SlackMessage) -> list[str]:
    return [m.text for m in h.slack.thread(channel, parent.ts)]


async def test_stop_sends_one_confirmation_from_the_number_texted_even_when_redelivered(h: Harness) -> None:
    await text_in(h, "hello")
    [parent] = h.slack.messages(INBOUND)
    await text_in(h, "STOP", message_id="stop-1")
    assert sent(h) == [(PHONE, FROM_NUMBER, STOP_SMS)]
    # SignalWire delivers the same webhook again (a lost answer): nothing more is sent or posted.
    posts = h.slack.call_count("chat.postMessage")
    await text_in(h, "STOP", message_id="stop-1")
    await text_in(h, "STOP", message_id="stop-1", fmt="form")
    assert sent(h) == [(PHONE, FROM_NUMBER, STOP_SMS)]
    assert h.slack.call_count("chat.postMessage") == posts
    # The thread shows the opt-out, what the bridge texted back, and that text's receipt.
    texts = thread_texts(h, INBOUND, parent)
    assert any("opted out" in t for t in texts)
    [notice] = [t for t in texts if "Auto-reply" in t]
    assert "STOP confirmation" in notice and "You are unsubscribed" in notice
    assert any("Delivered" in t for t in texts[texts.index(notice):]), texts
    [row] = [a for a in await h.bridge.store.audit_list() if a.action is AuditAction.AUTO_REPLY]
    assert (row.to_number, row.from_number, row.reason, row.outcome) == (PHONE, FROM_NUMBER, "stop", "delivered")
    stored = await h.bridge.store.get_outbound(str(row.ref))
    assert stored is not None and stored.origin == AUTO_REPLY_ORIGIN and stored.parent_ts == parent.ts


async def test_a_first_text_that_is_stop_is_confirmed_in_its_new_thread(h: Harness) -> None:
    await text_in(h, "stop")
    [parent] = h.slack.messages(INBOUND)
    assert "stop" in parent.text.lower()
    assert sent(h) == [(PHONE, FROM_NUMBER, STOP_SMS)]
    assert any("Auto-reply" in t for t in thread_texts(h, INBOUND, parent))
    # The parent (the person's text) is never repainted as if it were an outbound message.
    assert not h.slack.called("chat.update")


async def test_help_is_answered_while_opted_out_and_nothing_else_is_sent(h: Harness) -> None:
    await text_in(h, "hello")
    [parent] = h.slack.messages(INBOUND)
    await text_in(h, "UNSUBSCRIBE")
    await text_in(h, "help")
    assert sent(h) == [(PHONE, FROM_NUMBER, STOP_SMS), (PHONE, FROM_NUMBER, HELP_SMS)]
    assert any("HELP answer" in t for t in thread_texts(h, INBOUND, parent))
    # Every other path is still refused: a thread reply, /sms and the form.
    event = h.slack.post_user_message(INBOUND, "U0ALICE", "are you sure?", thread_ts=parent.ts)
    assert (await h.driver.event(event)).status == 200
    answer = await h.driver.slash_command(f"{PHONE} promo")
    await h.settle()
    assert "opted out" in answer.body
    assert len(sent(h)) == 2


async def test_start_is_confirmed_and_opts_back_in(h: Harness) -> None:
    await text_in(h, "hello")
    [parent] = h.slack.messages(INBOUND)
    await text_in(h, "stop")
    await text_in(h, "Start")
    [stop, start] = sent(h)
    assert stop[2] == STOP_SMS and start[:2] == (PHONE, FROM_NUMBER) and (start[2] or "").startswith(START_PREFIX)
    assert await h.bridge.store.get_opt_out(FROM_NUMBER, PHONE) is None
    assert any("START confirmation" in t for t in thread_texts(h, INBOUND, parent))
    event = h.slack.post_user_message(INBOUND, "U0ALICE", "welcome back", thread_ts=parent.ts)
    await h.driver.event(event)
    await h.settle()
    assert sent(h)[-1] == (PHONE, FROM_NUMBER, "welcome back")


async def test_retry_of_a_failed_message_is_refused_once_they_opted_out(h: Harness) -> None:
    h.simulator.script(PHONE, Outcome(MessageStatus.UNDELIVERED, "30003", "Unreachable destination handset"))
    await h.driver.slash_command(f"{PHONE} are you there?")
    await h.settle()
    [parent] = h.slack.messages(GENERAL)
    failure = h.slack.thread(GENERAL, parent.ts)[-1]
    value = next(str(e["value"]) for b in failure.blocks or [] for e in b.get("elements", [])
                 if e.get("action_id") == "sms_retry")
    h.simulator.script(PHONE, Outcome(MessageStatus.DELIVERED))
    await text_in(h, "STOP")
    assert [s[2] for s in sent(h)] == ["are you there?", STOP_SMS]
    await h.driver.block_action("sms_retry", value, message=failure.as_dict())
    await h.settle()
    assert [s[2] for s in sent(h)] == ["are you there?", STOP_SMS]
    assert any("opted out" in str(e.get("text", "")) for e in h.slack.ephemerals)


async def test_no_auto_replies_when_turned_off(tmp_path: Path) -> None:
    env = {"INBOUND_CHANNEL": INBOUND, "COMPLIANCE_AUTO_REPLY": "false"}
    async with running_bridge(tmp_path, env=env) as h:
        for body in ("hello", "STOP", "HELP", "START"):
            await text_in(h, body)
        assert sent(h) == []
        [parent] = h.slack.messages(INBOUND)
        texts = thread_texts(h, INBOUND, parent)
        assert any("opted out" in t for t in texts) and not any("Auto-reply" in t for t in texts)
        assert not [a for a in await h.bridge.store.audit_list() if a.action is AuditAction.AUTO_REPLY]


async def test_custom_texts_fill_in_brand_and_contact(tmp_path: Path) -> None:
    env = {"INBOUND_CHANNEL": INBOUND, "BRAND_NAME": "Acme Bikes", "HELP_CONTACT": "acme.example/help",
           "HELP_REPLY_TEXT": "{brand} help: {contact}. Text STOP to opt out.",
           "STOP_REPLY_TEXT": "{brand}: unsubscribed. {{START}} to rejoin.",
           "START_REPLY_TEXT": "{brand}: welcome back"}
    async with running_bridge(tmp_path, env=env) as h:
        await text_in(h, "info")
        await text_in(h, "quit")
        await text_in(h, "unstop")
        assert [s[2] for s in sent(h)] == ["Acme Bikes help: acme.example/help. Text STOP to opt out.",
                                           "Acme Bikes: unsubscribed. {START} to rejoin.",
                                           "Acme Bikes: welcome back"]


async def _postgres_bridge(tmp_path: Path, url: str, name: str) -> contextlib.AbstractAsyncContextManager[Harness]:
    return running_bridge(tmp_path / name, env={"INBOUND_CHANNEL": INBOUND, "DATABASE_URL": url})


async def test_on_postgresql_two_replicas_racing_one_stop_send_one_confirmation(tmp_path: Path) -> None:
    async with throwaway_database() as url, contextlib.AsyncExitStack() as stack:
        one = await stack.enter_async_context(await _postgres_bridge(tmp_path, url, "one"))
        two = await stack.enter_async_context(await _postgres_bridge(tmp_path, url, "two"))
        await text_in(one, "hello", message_id="pg-hello")
        # The very same webhook (same message id, same signed body) at both replicas at once, three times over.
        for _ in range(3):
            answers = await asyncio.gather(*(
                h.session.post(h.bot_url + "/signalwire/inbound", data=body, headers=headers)
                for h, (body, headers) in ((h, _signed_inbound(h, "pg-stop", "STOP")) for h in (one, two))))
            assert [a.status for a in answers] == [200, 200]
            for answer in answers:
                answer.release()
        await one.settle()
        await two.settle()
        confirmations = [m for h in (one, two) for m in sent(h) if m[2] == STOP_SMS]
        assert confirmations == [(PHONE, FROM_NUMBER, STOP_SMS)]
        [row] = [a for a in await one.bridge.store.audit_list() if a.action is AuditAction.AUTO_REPLY]
        assert row.reason == "stop"
        # HELP while opted out is answered on this engine too.
        await text_in(two, "HELP", message_id="pg-help")
        assert [m[2] for h in (one, two) for m in sent(h) if m[2] == HELP_SMS] == [HELP_SMS]


def _signed_inbound(h: Harness, message_id: str, text: str) -> tuple[bytes, dict[str, Any]]:
    """The webhook SignalWire would send this replica (signed with its simulator's key, for its URL)."""
    payload = {"message": {"message_id": message_id, "from": PHONE, "to": FROM_NUMBER, "body": text,
                           "direction": "inbound", "type": "sms", "media": []}}
    body = json.dumps(payload).encode()
    url = h.bot_url + "/signalwire/inbound"
    return body, {"Content-Type": "application/json",
                  SIGNATURE_HEADER: sign_json(h.simulator.config.signing_key, url, body)}


# -- configuration (bridge.config): checked at start-up, naming the variable ----------------------------------------

BASE_ENV = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "SIGNALWIRE_SPACE_URL": "simulator"}


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("STOP_REPLY_TEXT", "{brand}: bye {name}", "unknown placeholder {name}"),
    ("START_REPLY_TEXT", "{0} is back", "unknown placeholder {0}"),
    ("HELP_REPLY_TEXT", "{brand: help", "not a valid template"),
    ("HELP_REPLY_TEXT", "x" * 1601, "at most 1600"),
    ("COMPLIANCE_AUTO_REPLY", "yes", "exactly true or false"),
    ("BRAND_NAME", " ", "must not be empty"),
])
def test_bad_compliance_settings_stop_start_up_naming_the_variable(name: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_env({**BASE_ENV, name: value})
    assert caught.value.name == name and problem in str(caught.value)


def test_compliance_settings_and_their_defaults() -> None:
    default = Config.from_env(BASE_ENV).compliance
    assert default.enabled and default.render(AutoReplyKind.STOP) == STOP_SMS
    assert default.render(AutoReplyKind.HELP) == HELP_SMS
    custom = Config.from_env({**BASE_ENV, "COMPLIANCE_AUTO_REPLY": "false", "BRAND_NAME": "Acme",
                              "HELP_CONTACT": "+1 555 0100", "HELP_REPLY_TEXT": "{brand} {{help}}: {contact}"})
    assert not custom.compliance.enabled
    assert custom.compliance.render(AutoReplyKind.HELP) == "Acme {help}: +1 555 0100"


# -- the durable sending pipeline applies to auto-replies ------------------------------------------------------------

FAST = {"INBOUND_CHANNEL": INBOUND, "RECONCILE_GRACE_SECONDS": "1", "SWEEP_INTERVAL_SECONDS": "0.1",
        "SIGNALWIRE_TIMEOUT_SECONDS": "1"}


async def _until_delivered_in_thread(h: Harness, parent: SlackMessage, timeout: float = 20.0) -> list[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        await h.settle()
        texts = thread_texts(h, INBOUND, parent)
        notice = next((i for i, t in enumerate(texts) if "Auto-reply" in t), None)
        if notice is not None and any("Delivered" in t for t in texts[notice:]):
            return texts
        assert loop.time() < deadline, texts
        await asyncio.sleep(0.1)


@pytest.mark.parametrize(("fault", "told"), [
    (Fault(kind="status", status=500, create=True), "Found it"),
    (Fault(kind="status", status=503, create=False), "sending it once more"),
], ids=["created-despite-a-500", "not-created-503"])
async def test_an_auto_reply_with_an_unclear_answer_is_reconciled_and_sent_once(
        tmp_path: Path, fault: Fault, told: str) -> None:
    async with running_bridge(tmp_path, env=FAST) as h:
        await text_in(h, "hello")
        [parent] = h.slack.messages(INBOUND)
        h.simulator.add_fault(fault)
        await text_in(h, "HELP")
        texts = await _until_delivered_in_thread(h, parent)
        assert h.simulator.created_count(PHONE) == 1, "never sent twice, never lost"
        assert sent(h) == [(PHONE, FROM_NUMBER, HELP_SMS)]
        assert any(told in t for t in texts), texts
        assert not h.slack.called("chat.update"), "the person's text (the thread's parent) is never repainted"
