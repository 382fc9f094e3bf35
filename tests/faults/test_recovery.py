"""Fault scenarios of recovery: unknown outcomes reconciled, crashes mid-send, receipts the bot missed,
Slack failing (bursts and an outage), SIGTERM with work in flight, unreadable Slack bodies, a long database lock.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sw_api.models import MessageStatus
from sw_api.simulator import Fault
from tests.faults.procs import (
    CHANNEL,
    World,
    assert_exactly_one_sms,
    assert_receipts_once,
    parent_for,
    sms_to,
    thread_texts,
)

TO = "+15551234567"



def delivered(world: World, count: int = 1) -> bool:
    parents = world.slack.messages(CHANNEL)
    return len(parents) == count and all("Delivered" in p.text for p in parents)


async def ends_delivered_once(world: World, body: str, *, timeout: float = 20, in_order: bool = False) -> None:
    def told() -> bool:
        parents = [p for p in world.slack.messages(CHANNEL) if body in p.text and "Delivered" in p.text]
        return bool(parents) and any("Delivered" in t for t in thread_texts(world, parents[0]))

    # The parent and its thread are separate Slack calls, retried separately: wait for both, then for calm.
    await world.wait_for(told, timeout=timeout, what=f"“{body}” Delivered in the parent and the thread")
    await world.quiet(1.0)
    sms = assert_exactly_one_sms(world, TO, body)
    assert_receipts_once(world, sms, parent_for(world, body), in_order=in_order)


# ----- SignalWire: outcome unknown, nothing created --------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Fault(kind="status", status=500), Fault(kind="hang", hang_seconds=4), Fault(kind="reset")],
    ids=["500-not-created", "timeout-not-created", "reset-not-created"],
)
async def test_unknown_outcome_without_a_message_is_sent_once_more(world: World, fault: Fault) -> None:
    async with asyncio.timeout(30):
        world.simulator.add_fault(fault)
        body = f"resend after {fault.kind}"
        await world.driver.slash_command(f"{TO} {body}")
        await ends_delivered_once(world, body)
        # Told at once what happened and what would follow, then what did: the notice precedes the re-send.
        texts = thread_texts(world, parent_for(world, body))
        told = next(i for i, t in enumerate(texts) if "not yet known whether the message went out" in t)
        assert told < next(i for i, t in enumerate(texts) if "sending it once more" in t), texts


async def test_500_after_create_with_no_callbacks_is_adopted_from_the_logs(world: World) -> None:
    # No callback will ever tell the bot: only the logs API can show that the message exists and was delivered.
    async with asyncio.timeout(30):
        world.simulator.drop_callbacks = True
        world.simulator.add_fault(Fault(kind="status", status=500, create=True))
        await world.driver.slash_command(f"{TO} adopt me")
        await world.wait_for(lambda: delivered(world), timeout=20, what="Delivered found through the logs")
        await world.quiet()
        sms = assert_exactly_one_sms(world, TO, "adopt me")
        assert sms.status is MessageStatus.DELIVERED
        assert not sms.callbacks


# ----- SIGKILL during a send -------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_sigkill_while_the_create_is_in_flight_sends_exactly_once(make_world: Any) -> None:
    async with asyncio.timeout(30), make_world() as world:
        # SignalWire takes 2 s to answer; the bot dies 0.5 s into it, so the create is abandoned unanswered.
        world.simulator.latency = 2.0
        await world.driver.slash_command(f"{TO} killed mid-send")
        await world.wait_for(lambda: world.slack.called("chat.postMessage"), what="parent posted")
        await asyncio.sleep(0.5)
        await world.bot.kill()
        world.simulator.latency = 0.0
        await world.bot.start()
        await ends_delivered_once(world, "killed mid-send", timeout=20)
        # The restarted bot said at once that the outcome was unknown, before the thread settled it.
        texts = thread_texts(world, parent_for(world, "killed mid-send"))
        notice = next(i for i, t in enumerate(texts) if "restarted while SignalWire" in t)
        assert notice < next(i for i, t in enumerate(texts) if "Delivered" in t), texts


@pytest.mark.slow
async def test_sigkill_after_create_before_the_answer_adopts_instead_of_resending(make_world: Any) -> None:
    async with asyncio.timeout(30), make_world() as world:
        world.simulator.add_fault(Fault(kind="hang", create=True, hang_seconds=10))
        await world.driver.slash_command(f"{TO} created then killed")
        await world.wait_for(lambda: world.simulator.created_count(TO) == 1, what="SMS created")
        await world.bot.kill()
        await world.bot.start()
        await ends_delivered_once(world, "created then killed", timeout=20)


@pytest.mark.slow
async def test_receipts_sent_while_the_bot_was_down_reach_the_thread(make_world: Any) -> None:
    # SignalWire gave up on its callbacks while the bot was down: the missing receipt is looked up in the logs.
    async with asyncio.timeout(30), make_world(step_delay=0.3, env={"STUCK_AFTER_SECONDS": "2"}) as world:
        await world.driver.slash_command(f"{TO} down for the receipts")
        await world.wait_for(lambda: any("Queued" in m.text for m in world.slack.messages(CHANNEL)),
                             what="accepted")
        await world.bot.kill()
        sms = assert_exactly_one_sms(world, TO, "down for the receipts")
        # Every callback attempt fails against the dead process; SignalWire gives up after three.
        await world.wait_for(lambda: sms.status is MessageStatus.DELIVERED, what="delivered at SignalWire")
        await world.simulator.settle()
        await world.bot.start()
        await world.wait_for(lambda: delivered(world), timeout=20, what="thread told after restart")
        await world.quiet()
        texts = thread_texts(world, parent_for(world, "down for the receipts"))
        assert sum("Delivered" in t for t in texts) == 1, texts


@pytest.mark.slow
async def test_sigterm_flushes_then_a_restart_finishes_the_thread(make_world: Any) -> None:
    # Callbacks that hit the stopped bot are lost after SignalWire's three attempts: the logs fill the gap.
    async with asyncio.timeout(30), make_world(step_delay=0.05, env={"STUCK_AFTER_SECONDS": "2"}) as world:
        world.simulator.latency = 1.0
        world.slack.outage(1.5)
        await world.driver.slash_command(f"{TO} flushed on exit")
        await asyncio.sleep(0.3)
        assert await world.bot.terminate() == 0
        # Finished before exiting, or stored and resumed after the restart: never two.
        assert len(sms_to(world, TO, "flushed on exit")) <= 1
        await world.bot.start()
        await ends_delivered_once(world, "flushed on exit", timeout=20)


# ----- Slack failing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_slack_bursts_delay_receipts_but_keep_them_once_and_in_order(world: World, status: int) -> None:
    async with asyncio.timeout(30):
        for method in ("chat.postMessage", "chat.update"):
            world.slack.add_response(method, status=status, count=4)
        await world.driver.slash_command(f"{TO} through a Slack {status} burst")
        await ends_delivered_once(world, f"through a Slack {status} burst", in_order=True)


@pytest.mark.slow
async def test_a_slack_outage_loses_no_parent_and_no_receipt(make_world: Any) -> None:
    # Minutes compressed into 8 s: messages are sent and delivered while Slack answers 503 to everything.
    async with asyncio.timeout(45), make_world(step_delay=0.5) as world:
        await world.driver.slash_command(f"{TO} before the outage")
        await world.wait_for(lambda: any("Queued" in m.text for m in world.slack.messages(CHANNEL)), what="queued")
        world.slack.outage(8)
        for i in range(3):
            await world.driver.slash_command(f"{TO} during the outage {i}")
        await world.wait_for(lambda: world.simulator.created_count() == 4, timeout=15, what="all four sent")
        await world.wait_for(lambda: delivered(world, 4), timeout=30, what="all four parents delivered")
        await world.quiet()
        for body in ("before the outage", *(f"during the outage {i}" for i in range(3))):
            sms = assert_exactly_one_sms(world, TO, body)
            assert_receipts_once(world, sms, parent_for(world, body))


# ----- bodies and the database -----------------------------------------------------------------------------------


async def test_slack_payloads_bolt_cannot_parse_are_400(world: World) -> None:
    for body in (b"payload=%7Bnot+json", b"payload=%5B%5D", b"\xff\xfe\x00"):
        response = await world.driver.raw(body, "application/x-www-form-urlencoded")
        assert response.status == 400, (body, response.status)
    await world.quiet(0.3)
    assert world.simulator.created_count() == 0
    assert not world.slack.called("chat.postMessage")


@pytest.mark.slow
async def test_long_lock_refuses_clearly_and_answers_callbacks_503(make_world: Any) -> None:
    from tests.faults.dbtools import locked_for, table_dump

    async with asyncio.timeout(80), make_world(step_delay=0.3) as world:
        await world.driver.slash_command(f"{TO} receipts during a long lock")
        await world.wait_for(lambda: world.simulator.created_count() == 1, what="created")
        holder = await locked_for(world, 7.0)
        answer = await world.driver.slash_command(f"{TO} sent during a long lock")
        assert answer.status == 200 and answer.elapsed_ms < 3000, (answer.status, answer.elapsed_ms)
        refused = "not sent" in answer.body.lower()
        await holder
        await world.quiet(1.0, timeout=30)
        assert all(a.status != 500 for a in world.simulator.callback_log)
        assert any(a.status == 503 for a in world.simulator.callback_log), "no callback was answered 503"
        try:
            await ends_delivered_once(world, "receipts during a long lock")
        except AssertionError as exc:
            # Seen once in CI and never reproduced: keep what the store held, and what Slack was told, for next time.
            calls = [(c.method, c.status, str(c.payload.get("text", ""))[:80]) for c in world.slack.calls]
            raise AssertionError(f"{exc}\n{await table_dump(world)}\n--- Slack calls ---\n{calls}") from None
        # Either the person was told in the ack that nothing was sent (and nothing is), or it was accepted and
        # goes out exactly once — possibly only when the sweeper picks it up after the lock.
        if refused:
            await world.quiet(2.0)
            assert not sms_to(world, TO, "sent during a long lock")
        else:
            await world.wait_for(lambda: delivered(world, 2), timeout=30, what="accepted send delivered")
            await world.quiet(1.0)
            assert_exactly_one_sms(world, TO, "sent during a long lock")
