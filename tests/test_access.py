"""Access control and the per-user rate limit: the pure policy, the gate over a real store, the configuration, and
every human send path end to end (slash command, modal, Retry button, thread reply) through the real app."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.access import RATE_WINDOW, AccessGate, AccessPolicy, RefusalReason, log_open_access
from bridge.config import Config, ConfigError
from bridge.model import AuditAction
from bridge.storage.engines import open_store
from bridge.storage.port import Store
from bridge.storage.sqlite.store import SqliteStore
from demo.fake_slack import SlackMessage
from demo.harness import FROM_NUMBER, Harness, running_bridge
from sw_api.models import MessageStatus
from sw_api.simulator import Outcome

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


class Clock:
    """Time the gate reads, moved by the test (passed to the gate's constructor, not patched in)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


# --- the pure policy ------------------------------------------------------------------------------------------


def test_empty_lists_let_everyone_in_and_are_named_as_open() -> None:
    policy = AccessPolicy()
    assert policy.identity_refusal("U1", "C1") is None
    assert policy.open_parts() == ["SMS_ALLOWED_USERS", "SMS_ALLOWED_CHANNELS"]
    assert AccessPolicy.build(["U1"], ["C1"], 5).open_parts() == []


def test_user_not_on_the_list_is_refused_with_the_variable_to_change() -> None:
    policy = AccessPolicy.build(["U1"], [], 20)
    assert policy.identity_refusal("U1", "C9") is None
    refusal = policy.identity_refusal("U2", "C9")
    assert refusal is not None and refusal.reason is RefusalReason.USER_NOT_ALLOWED
    assert "You are not allowed to send SMS from sms-bridge; ask an admin to add you to SMS_ALLOWED_USERS" in (
        refusal.message)
    assert "Nothing was sent" in refusal.message


def test_channel_not_on_the_list_is_refused_naming_the_channel() -> None:
    policy = AccessPolicy.build([], ["C1"], 20)
    assert policy.identity_refusal("U9", "C1") is None
    refusal = policy.identity_refusal("U9", "C2")
    assert refusal is not None and refusal.reason is RefusalReason.CHANNEL_NOT_ALLOWED
    assert "<#C2>" in refusal.message and "SMS_ALLOWED_CHANNELS" in refusal.message


def test_rate_limit_allows_up_to_the_limit_then_says_how_long_to_wait() -> None:
    policy = AccessPolicy.build([], [], 3)
    sends = [T0 - timedelta(seconds=s) for s in (37, 20, 5)]
    assert policy.rate_refusal(sends[:2], T0) is None
    refusal = policy.rate_refusal(sends, T0)
    assert refusal is not None and refusal.reason is RefusalReason.RATE_LIMITED
    # The oldest of the three leaves the minute 60 - 37 = 23 s from now.
    assert refusal.retry_after == 23
    assert "try again in 23 s" in refusal.message and "3 texts per minute" in refusal.message


def test_rate_limit_ignores_sends_older_than_the_window_and_waits_at_least_a_second() -> None:
    policy = AccessPolicy.build([], [], 2)
    assert policy.rate_refusal([T0 - RATE_WINDOW, T0 - timedelta(seconds=61)], T0) is None
    refusal = policy.rate_refusal([T0 - timedelta(seconds=59.9), T0], T0)
    assert refusal is not None and refusal.retry_after == 1


def test_rate_limit_counts_from_the_send_that_reaches_the_limit() -> None:
    # Five sends, limit 2 (the limit was lowered): waiting for the oldest would not be enough.
    policy = AccessPolicy.build([], [], 2)
    sends = [T0 - timedelta(seconds=s) for s in (50, 40, 30, 20, 10)]
    refusal = policy.rate_refusal(sends, T0)
    assert refusal is not None and refusal.retry_after == 40  # when the send of 20 s ago leaves the window


def test_rate_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        AccessPolicy.build([], [], 0)


def test_start_up_warning_names_the_open_list(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bridge.access"):
        log_open_access(AccessPolicy.build(["U1"], [], 20))
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "SMS_ALLOWED_CHANNELS is empty" in record.getMessage()
    assert "SMS_ALLOWED_USERS" not in record.getMessage()


# --- the gate over a real store ---------------------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'access.db'}")
    yield opened
    await opened.close()


async def test_gate_admits_and_audits_each_send(store: Store) -> None:
    gate = AccessGate(AccessPolicy.build([], [], 20), store, clock=Clock())
    admission = await gate.admit(user_id="U1", channel_id="C1", action=AuditAction.SEND, to_number="+15551234567",
                                 from_number="+15557770000")
    assert admission.allowed and admission.audit is not None
    audit_id = await admission.audit
    [entry] = await store.audit_list()
    assert (entry.id, entry.action, entry.to_number) == (audit_id, AuditAction.SEND, "+15551234567")


async def test_gate_refusal_writes_an_audit_row_and_a_log_line(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    gate = AccessGate(AccessPolicy.build(["U1"], [], 20), store, clock=Clock())
    with caplog.at_level(logging.INFO, logger="bridge.access"):
        admission = await gate.admit(user_id="U2", channel_id="C1", action=AuditAction.REPLY,
                                     to_number="+15551234567")
    assert not admission.allowed and admission.audit is None
    await gate.drain()
    [entry] = await store.audit_list()
    assert (entry.user_id, entry.channel_id, entry.action) == ("U2", "C1", AuditAction.REFUSED)
    assert entry.reason == "reply: user not allowed"
    [line] = [r.getMessage() for r in caplog.records]
    assert "user=U2 channel=C1 action=reply" in line and "reason=user not allowed" in line
    assert "+15551234567" not in line and "+1555•••4567" in line
    # A refusal is not a send: it does not eat into the rate limit.
    assert await store.audit_recent_sends("U2", T0 - RATE_WINDOW) == 0


async def test_gate_rate_limit_slides_with_time(store: Store) -> None:
    clock = Clock()
    gate = AccessGate(AccessPolicy.build([], [], 2), store, clock=clock)

    async def send() -> Any:
        return await gate.admit(user_id="U1", channel_id="C1", action=AuditAction.SEND)

    assert (await send()).allowed
    clock.advance(30)
    assert (await send()).allowed
    clock.advance(10)
    refused = await send()
    assert refused.refusal is not None and refused.refusal.retry_after == 20
    other = await gate.admit(user_id="U2", channel_id="C1", action=AuditAction.SEND)
    assert other.allowed  # the limit is per user
    clock.advance(20.5)
    assert (await send()).allowed  # the first send has left the minute
    assert not (await send()).allowed


async def test_gate_concurrent_attempts_of_one_user_never_exceed_the_limit(store: Store) -> None:
    gate = AccessGate(AccessPolicy.build([], [], 5), store, clock=Clock())
    results = await asyncio.gather(*(gate.admit(user_id="U1", channel_id="C1", action=AuditAction.SEND)
                                     for _ in range(12)))
    assert sum(r.allowed for r in results) == 5
    await gate.drain()
    assert await store.audit_recent_sends("U1", T0 - RATE_WINDOW) == 5


async def test_gate_limit_is_shared_by_replicas_on_one_database(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    first, second = await SqliteStore.open(path), await SqliteStore.open(path)
    try:
        clock = Clock()
        policy = AccessPolicy.build([], [], 3)
        gates = [AccessGate(policy, first, clock=clock), AccessGate(policy, second, clock=clock)]
        outcomes = []
        for i in range(5):
            outcomes.append((await gates[i % 2].admit(user_id="U1", channel_id="C1", action=AuditAction.SEND)).allowed)
            await gates[i % 2].drain()  # its audit row is written: the other replica must see it
        assert outcomes == [True, True, True, False, False]
    finally:
        await first.close()
        await second.close()


async def test_gate_fails_closed_when_the_store_is_down(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'down.db'}")
    await store.close()
    gate = AccessGate(AccessPolicy.build([], [], 20), store, clock=Clock())
    with caplog.at_level(logging.ERROR, logger="bridge.access"):
        admission = await gate.admit(user_id="U1", channel_id="C1", action=AuditAction.SEND)
    assert admission.refusal is not None and admission.refusal.reason is RefusalReason.STORE_UNAVAILABLE
    assert "Nothing was sent" in admission.refusal.message
    assert any("store unavailable" in r.getMessage() for r in caplog.records)


async def test_gate_admits_at_once_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    # Another replica (or a backup) holds the write lock: the count is still readable (WAL), so the send is admitted
    # without waiting for the lock, and its audit row is written once the lock is released.
    import sqlite3

    path = tmp_path / "locked.db"
    store = await SqliteStore.open(str(path), busy_timeout_ms=30000)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        gate = AccessGate(AccessPolicy.build([], [], 20), store, timeout=0.5, clock=Clock())
        started = asyncio.get_running_loop().time()
        admission = await gate.admit(user_id="U1", channel_id="C1", action=AuditAction.SEND)
        assert asyncio.get_running_loop().time() - started < 15  # the gate's 0.5 s bound, not the 30 s lock wait
        assert admission.allowed and admission.audit is not None
        await asyncio.sleep(0.3)
        assert not admission.audit.done()  # waiting for the lock, not lost
        blocker.execute("ROLLBACK")
        assert await admission.audit is not None
        assert await store.audit_recent_sends("U1", T0 - RATE_WINDOW) == 1
    finally:
        if blocker.in_transaction:
            blocker.execute("ROLLBACK")
        blocker.close()
        await store.close()


async def test_sends_whose_audit_row_is_not_written_yet_still_count(store: Store) -> None:
    # Admissions in quick succession: each one's row is written in the background, the limit must hold regardless.
    gate = AccessGate(AccessPolicy.build([], [], 2), store, clock=Clock())
    results = [await gate.admit(user_id="U1", channel_id="C1", action=AuditAction.SEND) for _ in range(3)]
    assert [r.allowed for r in results] == [True, True, False]
    await gate.drain()
    assert await store.audit_recent_sends("U1", T0 - RATE_WINDOW) == 2


class SlowReader:
    """The rate-limit read of ``store`` on a connection the test steers: the read starts (``started``), takes its
    rows when ``take`` is set, and answers when ``answer`` is set."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.started, self.take, self.taken, self.answer = (asyncio.Event() for _ in range(4))

    def open(self) -> None:
        for event in (self.take, self.answer):
            event.set()

    def close(self) -> None:
        for event in (self.started, self.take, self.taken, self.answer):
            event.clear()

    async def audit_send_times(self, user_id: str, since: datetime) -> list[datetime]:
        self.started.set()
        await self.take.wait()
        rows = await self.store.audit_send_times(user_id, since)
        self.taken.set()
        await self.answer.wait()
        return rows


class HeldWrites:
    """A gate's ``spawn`` that starts each audit write only once ``go`` is set."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.tasks: list[asyncio.Task[Any]] = []

    def __call__(self, write: Any) -> asyncio.Task[Any]:
        async def held() -> Any:
            await self.go.wait()
            return await write

        task = asyncio.ensure_future(held())
        self.tasks.append(task)
        return task


async def test_a_send_committed_after_another_attempts_rows_were_read_still_counts(store: Store) -> None:
    # No lock around the read: attempt B reads while A's audit row is not written yet, and A's row is committed
    # before B decides. B's rows cannot show A, so the gate must count A itself.
    reader, writes = SlowReader(store), HeldWrites()
    gate = AccessGate(AccessPolicy.build([], [], 1), store, clock=Clock(), reader=reader,  # type: ignore[arg-type]
                      spawn=writes)
    reader.open()
    first = await gate.admit(user_id="U1", channel_id="C1", action=AuditAction.SEND)
    assert first.allowed and first.audit is not None
    reader.close()
    second = asyncio.ensure_future(gate.admit(user_id="U1", channel_id="C1", action=AuditAction.SEND))
    await reader.started.wait()
    reader.take.set()
    await reader.taken.wait()      # B's rows: without A
    writes.go.set()
    assert await first.audit is not None  # A committed while B's read is out
    reader.answer.set()
    refused = await second
    assert refused.refusal is not None and refused.refusal.reason is RefusalReason.RATE_LIMITED
    await asyncio.gather(*writes.tasks)
    assert await store.audit_recent_sends("U1", T0 - RATE_WINDOW) == 1


async def test_a_send_committed_before_another_attempts_rows_were_read_counts_once(store: Store) -> None:
    # B's read started before A's row was committed but took its rows after: A is in them, and not counted again.
    reader, writes = SlowReader(store), HeldWrites()
    gate = AccessGate(AccessPolicy.build([], [], 2), store, clock=Clock(), reader=reader,  # type: ignore[arg-type]
                      spawn=writes)
    reader.open()
    first = await gate.admit(user_id="U1", channel_id="C1", action=AuditAction.SEND)
    assert first.allowed and first.audit is not None
    reader.close()
    second = asyncio.ensure_future(gate.admit(user_id="U1", channel_id="C1", action=AuditAction.SEND))
    await reader.started.wait()
    writes.go.set()
    assert await first.audit is not None  # A committed after B's read started, before it took its rows
    reader.open()
    assert (await second).allowed         # one send in the minute, not two
    await asyncio.gather(*writes.tasks)
    third = await gate.admit(user_id="U1", channel_id="C1", action=AuditAction.SEND)
    assert third.refusal is not None and third.refusal.reason is RefusalReason.RATE_LIMITED
    await asyncio.gather(*writes.tasks)
    assert await store.audit_recent_sends("U1", T0 - RATE_WINDOW) == 2


async def test_overlapping_attempts_of_one_user_never_pass_the_limit(store: Store) -> None:
    reader = SlowReader(store)
    gate = AccessGate(AccessPolicy.build([], [], 2), store, clock=Clock(), reader=reader)  # type: ignore[arg-type]
    attempts = [asyncio.ensure_future(gate.admit(user_id="U1", channel_id="C1", action=AuditAction.SEND))
                for _ in range(3)]
    await reader.started.wait()
    reader.open()
    results = await asyncio.gather(*attempts)
    assert [r.allowed for r in results].count(True) == 2
    await gate.drain()
    assert not (await gate.admit(user_id="U1", channel_id="C1", action=AuditAction.SEND)).allowed
    await gate.drain()
    assert await store.audit_recent_sends("U1", T0 - RATE_WINDOW) == 2


# --- configuration ------------------------------------------------------------------------------------------------

BASE_ENV = {
    "SLACK_BOT_TOKEN": "xoxb-1-2-abc",
    "SLACK_SIGNING_SECRET": "secret-secret",
    "SIGNALWIRE_SPACE_URL": "simulator",
}


def test_config_defaults_are_open_with_twenty_per_minute() -> None:
    config = Config.from_env(BASE_ENV)
    assert (config.allowed_users, config.allowed_channels, config.rate_limit_per_user) == ((), (), 20)


def test_config_reads_and_deduplicates_the_lists() -> None:
    config = Config.from_env({**BASE_ENV, "SMS_ALLOWED_USERS": " U0ALICE, W0BOB ,U0ALICE,",
                              "SMS_ALLOWED_CHANNELS": "C0GENERAL,G0PRIVATE", "SMS_RATE_LIMIT_PER_USER": "5"})
    assert config.allowed_users == ("U0ALICE", "W0BOB")
    assert config.allowed_channels == ("C0GENERAL", "G0PRIVATE")
    assert config.rate_limit_per_user == 5


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("SMS_ALLOWED_USERS", "alice", "'alice' is not a Slack user id"),
        ("SMS_ALLOWED_USERS", "C0GENERAL", "is not a Slack user id"),
        ("SMS_ALLOWED_CHANNELS", "#general", "'#general' is not a Slack channel id"),
        ("SMS_RATE_LIMIT_PER_USER", "0", "must be a positive whole number"),
        ("SMS_RATE_LIMIT_PER_USER", "-3", "must be a positive whole number"),
        ("SMS_RATE_LIMIT_PER_USER", "2.5", "must be a positive whole number"),
        ("SMS_RATE_LIMIT_PER_USER", "lots", "must be a positive whole number"),
    ],
)
def test_config_rejects_bad_values_naming_the_variable(name: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env({**BASE_ENV, name: value})
    assert info.value.name == name
    assert problem in str(info.value) and f"(example: {name}=" in str(info.value)


# --- every human send path, end to end through the real app ---------------------------------------------------

TO = "+15551234567"
ALLOWED = {"SMS_ALLOWED_USERS": "U0ALICE,U0BOB", "SMS_ALLOWED_CHANNELS": "C0GENERAL"}


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bridge(tmp_path, env=ALLOWED) as harness:
        yield harness


def _failure_button(h: Harness) -> tuple[SlackMessage, str]:
    [parent] = h.slack.messages("C0GENERAL")
    failure = h.slack.thread("C0GENERAL", parent.ts)[-1]
    for block in failure.blocks or []:
        for element in block.get("elements", []):
            if element.get("action_id") == "sms_retry":
                return failure, str(element["value"])
    raise AssertionError("no Retry button")


def _ephemeral_texts(h: Harness, user: str) -> list[str]:
    """What chat.postEphemeral showed the user (not slash-command acks, which the driver mirrors in too)."""
    return [str(e.get("text", "")) for e in h.slack.ephemerals
            if e.get("user") == user and e.get("source") == "chat.postEphemeral"]


async def test_slash_command_from_a_user_not_on_the_list_is_refused(h: Harness) -> None:
    response = await h.driver.slash_command(f"{TO} hello", user_id="U0CAROL", user_name="carol")
    await h.settle()
    assert response.status == 200
    assert "You are not allowed to send SMS from sms-bridge; ask an admin to add you to SMS_ALLOWED_USERS" in (
        response.body)
    assert h.simulator.created_count() == 0
    assert not h.slack.called("chat.postMessage")
    [entry] = await h.bridge.store.audit_list()
    assert (entry.user_id, entry.channel_id, entry.action, entry.to_number) == (
        "U0CAROL", "C0GENERAL", AuditAction.REFUSED, TO)
    assert entry.reason == "send: user not allowed"


async def test_slash_command_from_a_channel_not_on_the_list_is_refused(h: Harness) -> None:
    response = await h.driver.slash_command(f"{TO} hello", channel_id="C0SUPPORT")
    await h.settle()
    assert "<#C0SUPPORT>" in response.body and "SMS_ALLOWED_CHANNELS" in response.body
    assert h.simulator.created_count() == 0 and not h.slack.called("chat.postMessage")
    [entry] = await h.bridge.store.audit_list()
    assert entry.reason == "send: channel not allowed"


async def test_help_is_open_to_everyone_but_the_form_is_not(h: Harness) -> None:
    assert "/sms +1 555 123 4567" in (await h.driver.slash_command("help", user_id="U0CAROL")).body
    refused = await h.driver.slash_command("", user_id="U0CAROL")
    assert "SMS_ALLOWED_USERS" in refused.body
    assert not h.slack.called("views.open")
    await h.driver.slash_command("", user_id="U0ALICE")
    await h.settle()  # the form opens after the ack
    assert h.slack.call_count("views.open") == 1


async def test_allowed_send_is_audited_with_its_ref_and_final_outcome(h: Harness) -> None:
    response = await h.driver.slash_command(f"{TO} hello")
    await h.settle()
    assert response.status == 200 and response.body == ""
    [sms] = h.simulator.messages.values()
    [entry] = await h.bridge.store.audit_list()
    stored = await h.bridge.store.find_by_sw_id(sms.id)
    assert stored is not None
    assert (entry.action, entry.user_id, entry.ref, entry.to_number, entry.from_number) == (
        AuditAction.SEND, "U0ALICE", stored.ref, TO, FROM_NUMBER)
    # Linked at accept time; the service records the final outcome through ``audit_outcome`` as the send ends.
    assert entry.outcome == "delivered", entry


async def test_a_carrier_failure_is_audited_with_its_code(h: Harness) -> None:
    await h.driver.slash_command("+15550100003 are you there?")  # the simulator's rule: …0003 → 30003
    await h.settle()
    [entry] = await h.bridge.store.audit_list()
    assert entry.outcome == "undelivered (30003)", entry


async def test_modal_refusals_come_back_inline_on_the_right_block(h: Harness) -> None:
    await h.driver.slash_command("", user_id="U0ALICE")
    await h.settle()  # the form opens after the ack
    [view] = h.slack.views.values()

    def values(channel: str) -> dict[str, Any]:
        return {
            "to": {"to": {"type": "plain_text_input", "value": TO}},
            "body": {"body": {"type": "plain_text_input", "value": "hi"}},
            "channel": {"channel": {"type": "conversations_select", "selected_conversation": channel}},
        }

    wrong_channel = (await h.driver.view_submission(view, values("C0SUPPORT"))).json()
    assert wrong_channel["response_action"] == "errors"
    assert set(wrong_channel["errors"]) == {"channel"} and "SMS_ALLOWED_CHANNELS" in wrong_channel["errors"]["channel"]
    # The form was opened by Alice; a submission by someone not allowed is refused too (checked on submit).
    wrong_user = (await h.driver.view_submission(view, values("C0GENERAL"), user_id="U0CAROL")).json()
    assert set(wrong_user["errors"]) == {"body"} and "SMS_ALLOWED_USERS" in wrong_user["errors"]["body"]
    await h.settle()
    assert h.simulator.created_count() == 0 and not h.slack.called("chat.postMessage")
    assert [e.reason for e in await h.bridge.store.audit_list()] == [
        "send: user not allowed", "send: channel not allowed"]
    ok = await h.driver.view_submission(view, values("C0GENERAL"))
    await h.settle()
    assert ok.status == 200 and h.simulator.created_count() == 1


async def test_retry_by_someone_not_allowed_is_refused_ephemerally(h: Harness) -> None:
    h.simulator.script(TO, Outcome(MessageStatus.UNDELIVERED, "30003", "Unreachable destination handset"))
    await h.driver.slash_command(f"{TO} are you there?")
    await h.settle()
    failure, value = _failure_button(h)
    h.simulator.script(TO, Outcome(MessageStatus.DELIVERED))
    response = await h.driver.block_action("sms_retry", value, message=failure.as_dict(), user_id="U0CAROL")
    await h.settle()
    assert response.status == 200
    assert h.simulator.created_count(TO) == 1
    assert any("SMS_ALLOWED_USERS" in t for t in _ephemeral_texts(h, "U0CAROL"))
    # Bob may: the Retry sends once more and its audit row learns the numbers from the message it created.
    await h.driver.block_action("sms_retry", value, message=failure.as_dict(), user_id="U0BOB")
    await h.settle()
    assert h.simulator.created_count(TO) == 2
    retry = next(e for e in await h.bridge.store.audit_list() if e.action is AuditAction.RETRY)
    assert (retry.user_id, retry.to_number, retry.from_number) == ("U0BOB", TO, FROM_NUMBER)
    assert retry.ref is not None and retry.outcome is not None


async def test_thread_reply_by_someone_not_allowed_is_refused_ephemerally(h: Harness) -> None:
    await h.driver.slash_command(f"{TO} first")
    await h.settle()
    [parent] = h.slack.messages("C0GENERAL")
    event = h.slack.post_user_message("C0GENERAL", "U0CAROL", "let me answer", thread_ts=parent.ts)
    assert (await h.driver.event(event)).status == 200
    await h.settle()
    assert h.simulator.created_count(TO) == 1
    assert any("SMS_ALLOWED_USERS" in t for t in _ephemeral_texts(h, "U0CAROL"))
    refused = next(e for e in await h.bridge.store.audit_list() if e.action is AuditAction.REFUSED)
    assert (refused.user_id, refused.reason) == ("U0CAROL", "reply: user not allowed")
    allowed = h.slack.post_user_message("C0GENERAL", "U0BOB", "on my way", thread_ts=parent.ts)
    await h.driver.event(allowed)
    await h.settle()
    assert h.simulator.created_count(TO) == 2
    reply = next(e for e in await h.bridge.store.audit_list() if e.action is AuditAction.REPLY)
    assert (reply.user_id, reply.to_number) == ("U0BOB", TO) and reply.ref is not None


async def test_rate_limit_refuses_the_excess_with_the_time_to_wait(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, env={"SMS_RATE_LIMIT_PER_USER": "2"}) as h:
        answers = [(await h.driver.slash_command(f"{TO} message {n}")).body for n in range(3)]
        other_user = await h.driver.slash_command(f"{TO} from bob", user_id="U0BOB")
        await h.settle()
        assert answers[:2] == ["", ""] and other_user.body == ""
        assert re.search(r"limit of 2 texts per minute\. Nothing was sent; try again in (\d+) s", answers[2])
        wait = int(re.search(r"try again in (\d+) s", answers[2]).group(1))  # type: ignore[union-attr]
        assert 55 <= wait <= 60
        assert [m.body for m in h.simulator.messages.values()] == ["message 0", "message 1", "from bob"]
        # A thread reply counts against the same limit (in the thread the conversation is bridged to now).
        latest = h.slack.messages("C0GENERAL")[-1]
        assert "from bob" in json.dumps(latest.blocks)
        event = h.slack.post_user_message("C0GENERAL", "U0ALICE", "one more", thread_ts=latest.ts)
        await h.driver.event(event)
        await h.settle()
        assert h.simulator.created_count() == 3
        assert any("try again in" in t for t in _ephemeral_texts(h, "U0ALICE"))
        actions = sorted(e.action.value for e in await h.bridge.store.audit_list())
        assert actions == ["refused", "refused", "send", "send", "send"]


async def test_open_lists_are_warned_about_at_start_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bridge.access"):
        async with running_bridge(tmp_path, env={"SMS_ALLOWED_USERS": "U0ALICE"}):
            pass
    warnings = [r.getMessage() for r in caplog.records if r.name == "bridge.access"]
    assert len(warnings) == 1 and warnings[0].startswith("SMS_ALLOWED_CHANNELS is empty")
