"""Webhook forgery, over real HTTP and a real process: no signing key means no start (unless explicitly accepted, and
then said at every start and in ``bot.py check``); an inbound text must be addressed to one of our numbers; replies
go only from our numbers; a status callback must match its message's id, to and from."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.config import Config, ConfigError
from demo.harness import FROM_NUMBER, SIGNING_SECRET, Harness, running_bridge
from handlers.check import run_check
from handlers.web import UNSIGNED_WEBHOOKS_WARNING
from sw_api.models import MessageStatus, StatusEvent
from sw_api.simulator import Fault, SimMessage
from sw_api.webhooks import CXML_EMPTY, SIGNATURE_HEADER, SWML_RECEIVE, sign_json

REPO = Path(__file__).resolve().parents[1]
PHONE = "+15551234567"
OTHER = "+15559990000"  # a number that is not in SIGNALWIRE_FROM_NUMBERS
SECOND = "+15557770001"
INBOUND = "C0INBOUND"
GENERAL = "C0GENERAL"
UNSIGNED = {"SIGNALWIRE_SIGNING_KEY": "", "SIGNALWIRE_ALLOW_UNSIGNED_WEBHOOKS": "true"}

REAL = {
    "SLACK_BOT_TOKEN": "xoxb-1111-2222-token",
    "SLACK_SIGNING_SECRET": SIGNING_SECRET,
    "SIGNALWIRE_SPACE_URL": "example.signalwire.com",
    "SIGNALWIRE_PROJECT_ID": "1f0e9c52-5d6f-4a3e-9a77-2b6c0d9e8f10",
    "SIGNALWIRE_API_TOKEN": "PTtoken",
    "SIGNALWIRE_FROM_NUMBERS": FROM_NUMBER,
    "PUBLIC_URL": "https://sms.example.com",
}


# --- configuration ----------------------------------------------------------------------------------------------


def test_no_signing_key_stops_start_up_naming_it_and_the_opt_in() -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env(REAL)
    message = str(info.value)
    assert info.value.name == "SIGNALWIRE_SIGNING_KEY"
    assert message.startswith("SIGNALWIRE_SIGNING_KEY is not set")
    assert "SIGNALWIRE_ALLOW_UNSIGNED_WEBHOOKS=true" in message
    assert "(example: SIGNALWIRE_SIGNING_KEY=" in message and "\n" not in message


@pytest.mark.parametrize("value", ["True", "yes", "1", "on", "ture"])
def test_the_opt_in_is_exactly_true(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env({**REAL, "SIGNALWIRE_ALLOW_UNSIGNED_WEBHOOKS": value})
    assert info.value.name == "SIGNALWIRE_ALLOW_UNSIGNED_WEBHOOKS"
    assert "(example: SIGNALWIRE_ALLOW_UNSIGNED_WEBHOOKS=true)" in str(info.value)


def test_false_still_requires_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env({**REAL, "SIGNALWIRE_ALLOW_UNSIGNED_WEBHOOKS": "false"})
    assert info.value.name == "SIGNALWIRE_SIGNING_KEY"


def test_opting_in_runs_unsigned_and_says_so() -> None:
    config = Config.from_env({**REAL, "SIGNALWIRE_ALLOW_UNSIGNED_WEBHOOKS": "true"})
    assert config.allow_unsigned_webhooks and config.signalwire_signing_key == ""
    assert "unsigned webhooks allowed" in repr(config)


def test_a_signing_key_wins_over_the_opt_in() -> None:
    config = Config.from_env({**REAL, "SIGNALWIRE_SIGNING_KEY": "PSKkey", "SIGNALWIRE_ALLOW_UNSIGNED_WEBHOOKS": "true"})
    assert not config.allow_unsigned_webhooks


def test_simulator_mode_needs_no_key_and_no_opt_in() -> None:
    config = Config.from_env({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s",
                              "SIGNALWIRE_SPACE_URL": "simulator"})
    assert config.simulated and not config.allow_unsigned_webhooks


def test_bot_process_without_a_signing_key_exits_with_one_line(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), **REAL, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    result = subprocess.run([sys.executable, str(REPO / "bot.py"), "serve"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "SIGNALWIRE_SIGNING_KEY is not set" in line and "SIGNALWIRE_ALLOW_UNSIGNED_WEBHOOKS=true" in line
    assert not (tmp_path / "x.db").exists()


async def test_unsigned_opt_in_warns_at_every_start_and_in_check(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="handlers.web")

    def warnings() -> int:
        return sum(1 for r in caplog.records if r.getMessage() == UNSIGNED_WEBHOOKS_WARNING)

    async with running_bridge(tmp_path, env=UNSIGNED) as h:
        assert h.config.allow_unsigned_webhooks and not h.config.simulated
        assert warnings() == 1
        await h.restart_bot()
        assert warnings() == 2
        lines: list[str] = []
        assert await run_check(h.config, lines) == 0  # accepted risk, not a failure
        [warn] = [line for line in lines if line.startswith("warn")]
        assert "SIGNALWIRE_ALLOW_UNSIGNED_WEBHOOKS=true" in warn and "SIGNALWIRE_SIGNING_KEY" in warn
        # Status callbacks still authenticate by their per-message token alone, as before.
        h.simulator.drop_callbacks = True
        await h.driver.slash_command(f"{PHONE} unsigned receipts")
        await h.settle()
        [sms] = [m for m in h.simulator.messages.values() if m.direction == "outbound"]
        assert await _callback(h, sms, MessageStatus.DELIVERED, key=None) == 204
        assert await _callback(h, sms, MessageStatus.FAILED, key=None, url=_tampered(sms)) == 403
        await h.settle()
        assert "Delivered" in h.slack.messages(GENERAL)[0].text


async def test_signed_mode_gives_no_unsigned_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="handlers.web")
    async with running_bridge(tmp_path) as h:
        lines: list[str] = []
        assert await run_check(h.config, lines) == 0
    assert not [line for line in lines if line.startswith("warn")]
    assert UNSIGNED_WEBHOOKS_WARNING not in caplog.text


# --- inbound: To must be ours -----------------------------------------------------------------------------------


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bridge(tmp_path, env={"INBOUND_CHANNEL": INBOUND}) as harness:
        yield harness


@pytest.mark.parametrize("fmt", ["json", "form"])
async def test_inbound_to_a_number_that_is_not_ours_changes_nothing(h: Harness, fmt: str,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    for body in ("Hello, this is your bank", "STOP", "START"):
        delivery = await h.simulator.inject_inbound(PHONE, OTHER, body, url=h.bot_url + "/signalwire/inbound",
                                                    fmt=fmt)  # type: ignore[arg-type]
        # Answered (SignalWire must not retry it) without effect.
        assert delivery.status == 200
        if fmt == "form":
            assert delivery.text == CXML_EMPTY
        else:
            assert json.loads(delivery.text) == SWML_RECEIVE
    await h.settle()
    assert not h.slack.called("chat.postMessage") and h.slack.messages(INBOUND) == []
    assert await h.bridge.store.get_opt_out(OTHER, PHONE) is None
    assert await h.bridge.store.get_conversation(OTHER, PHONE) is None
    assert "not one of SIGNALWIRE_FROM_NUMBERS" in caplog.text
    assert OTHER not in caplog.text and PHONE not in caplog.text  # masked in every log line


async def test_inbound_to_our_number_still_works(h: Harness) -> None:
    delivery = await h.simulator.inject_inbound(PHONE, FROM_NUMBER, "still here",
                                                url=h.bot_url + "/signalwire/inbound")
    await h.settle()
    assert delivery.status == 200
    [parent] = h.slack.messages(INBOUND)
    assert "still here" in parent.text


# --- replies only from our numbers ------------------------------------------------------------------------------


async def test_reply_in_a_conversation_with_a_removed_number_is_not_texted(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, env={"INBOUND_CHANNEL": INBOUND,
                                             "SIGNALWIRE_FROM_NUMBERS": f"{FROM_NUMBER},{SECOND}"}) as h:
        await h.simulator.inject_inbound(PHONE, SECOND, "texting your second number",
                                         url=h.bot_url + "/signalwire/inbound")
        await h.settle()
        [parent] = h.slack.messages(INBOUND)
        # The operator stops using the second number.
        h.config = replace(h.config, from_numbers=(FROM_NUMBER,))
        await h.restart_bot()
        event = h.slack.post_user_message(INBOUND, "U0ALICE", "Sure, see you at 5", thread_ts=parent.ts)
        assert (await h.driver.event(event)).status == 200
        await h.settle()
        assert [m for m in h.simulator.messages.values() if m.direction == "outbound"] == []
        notices = [m.text for m in h.slack.thread(INBOUND, parent.ts) if "Not texted" in m.text]
        assert len(notices) == 1, [m.text for m in h.slack.thread(INBOUND, parent.ts)]
        assert "+1 555-777-0001" in notices[0] and "SIGNALWIRE_FROM_NUMBERS" in notices[0]


# --- status callbacks must match their message ------------------------------------------------------------------


def _tampered(sms: SimMessage) -> str:
    assert sms.status_callback is not None
    return sms.status_callback.replace("t=", "t=0")


async def _callback(h: Harness, sms: SimMessage, status: MessageStatus, *, to: str | None = None,
                    from_: str | None = None, key: str | None = "right", url: str | None = None,
                    sw_id: str | None = None) -> int:
    target = url or sms.status_callback
    assert target is not None
    event = StatusEvent(id=sw_id or sms.id, status=status, to=to or sms.to, from_=from_ or sms.from_,
                        timestamp=datetime.now(UTC), error_code="30008" if status.is_failure else None,
                        error_message="forged" if status.is_failure else None)
    body = json.dumps(event.to_json()).encode()
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers[SIGNATURE_HEADER] = sign_json(h.simulator.config.signing_key, target, body)
    async with h.session.post(target, data=body, headers=headers) as resp:
        await resp.read()
        return resp.status


async def test_a_status_callback_for_another_to_or_from_is_refused(h: Harness) -> None:
    # A captured callback URL (right ref, right token, right id) replayed with another message's numbers.
    h.simulator.drop_callbacks = True
    await h.driver.slash_command(f"{PHONE} genuine")
    await h.settle()
    [sms] = [m for m in h.simulator.messages.values() if m.direction == "outbound"]
    before = [m.text for m in h.slack.thread(GENERAL, h.slack.messages(GENERAL)[0].ts)]
    assert await _callback(h, sms, MessageStatus.FAILED, to=OTHER) == 403
    assert await _callback(h, sms, MessageStatus.FAILED, from_=OTHER) == 403
    assert await _callback(h, sms, MessageStatus.DELIVERED, to=OTHER, from_=OTHER) == 403
    await h.settle()
    [parent] = h.slack.messages(GENERAL)
    assert [m.text for m in h.slack.thread(GENERAL, parent.ts)] == before
    # The parent still shows only the genuine history.
    assert "Queued" in parent.text and "30008" not in parent.text
    assert "Failed" not in parent.text and "Delivered" not in parent.text
    # The genuine callback (same id, to and from as the message) is applied.
    assert await _callback(h, sms, MessageStatus.DELIVERED) == 204
    await h.settle()
    assert "Delivered" in h.slack.messages(GENERAL)[0].text


async def test_an_early_callback_naming_another_messages_id_is_refused(h: Harness) -> None:
    # While our POST is in flight the id is not known yet: a callback must not make us adopt one that SignalWire
    # gave another of our messages.
    h.simulator.drop_callbacks = True
    await h.driver.slash_command(f"{PHONE} first")
    await h.settle()
    [first] = [m for m in h.simulator.messages.values() if m.direction == "outbound"]
    h.simulator.add_fault(Fault(kind="hang", create=True, hang_seconds=1.0))
    await h.driver.slash_command(f"{PHONE} second")
    for _ in range(200):
        pending = [m for m in h.simulator.messages.values() if m.direction == "outbound" and m.id != first.id]
        if pending:
            break
        await asyncio.sleep(0.01)
    [second] = pending  # created at SignalWire, its create answer still held back
    assert await _callback(h, second, MessageStatus.DELIVERED, sw_id=first.id) == 403
    await h.settle()
    first_parent, second_parent = h.slack.messages(GENERAL)
    assert "Queued" in first_parent.text, first_parent.text  # the other message's history is untouched
    owner_of_first = await h.bridge.store.find_by_sw_id(first.id)
    owner_of_second = await h.bridge.store.find_by_sw_id(second.id)  # the create answer's own id was adopted
    assert owner_of_first is not None and owner_of_second is not None and owner_of_first.ref != owner_of_second.ref
    assert "“second”" in second_parent.text
