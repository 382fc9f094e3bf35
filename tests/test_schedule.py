"""Scheduled sends end to end over real HTTP (issue 12): ``/sms schedule`` in every ``<when>`` form and in time
zones other than UTC (the fake Slack's ``users.info`` says each user's), refusals, the form's "Send at", the parent
with Cancel, Cancel by the scheduler / refused for others / by an admin / after the send, ``/sms scheduled``, a
schedule that comes due while the bot is stopped (within the grace → sent on start; beyond → missed), and opt-outs and
blocks checked again at send time. Due times are 1-2 s ahead; every wait is for a condition, with a timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge import schedule
from bridge.model import ScheduledSend, ScheduleOutcome, SendState
from demo.fake_slack import SlackMessage
from demo.harness import FROM_NUMBER, Harness, running_bridge

GENERAL = "C0GENERAL"
PHONE = "+15551234567"
SHOWN = "+1 555-123-4567"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    env = {"SMS_ALLOWED_USERS": "U0ALICE,U0BOB,U0CAROL", "SMS_ADMIN_USERS": "U0CAROL"}
    async with running_bridge(tmp_path, env=env) as harness:
        yield harness


async def until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def sent(h: Harness) -> list[str | None]:
    return [m.body for m in h.simulator.messages.values() if m.status.value != "received"]


async def scheduled_now(h: Harness, user: str = "U0ALICE") -> list[ScheduledSend]:
    return await h.bridge.store.scheduled_of_user(user)


async def command(h: Harness, text: str, user: str = "U0ALICE") -> str:
    answer = await h.driver.slash_command(text, user_id=user)
    assert answer.status == 200
    await h.settle()
    return answer.body


def parent_of(h: Harness, body: str) -> SlackMessage:
    found = [m for m in h.slack.messages(GENERAL) if body in m.text]
    assert len(found) == 1, [m.text for m in h.slack.messages(GENERAL)]
    return found[0]


def thread(h: Harness, parent: SlackMessage) -> list[str]:
    return [m.text for m in h.slack.thread(GENERAL, parent.ts)]


async def form_schedule(h: Harness, body: str, due: datetime, user: str = "U0ALICE") -> dict[str, Any]:
    """Submit the compose form with "Send at" (Slack sends a UTC epoch); the ack's JSON ({} when accepted)."""
    await h.driver.slash_command("", user_id=user)
    await h.settle()
    view = list(h.slack.views.values())[-1]
    assert any(b.get("block_id") == "send_at" and b["element"]["type"] == "datetimepicker" for b in view["blocks"])
    values = {
        "to": {"to": {"type": "plain_text_input", "value": "555 123 4567"}},
        "body": {"body": {"type": "plain_text_input", "value": body}},
        "send_at": {"send_at": {"type": "datetimepicker", "selected_date_time": int(due.timestamp())}},
        "channel": {"channel": {"type": "conversations_select", "selected_conversation": GENERAL}},
    }
    answer = await h.driver.view_submission(view, values, user_id=user)
    assert answer.status == 200
    await h.settle()
    return answer.json() if answer.body.strip() else {}


def soon(seconds: float = 2.0) -> datetime:
    # The form's picker has whole seconds: round up so the due time is never in the past.
    return datetime.fromtimestamp(int(time.time() + seconds) + 1, UTC)


async def test_offsets_in_kolkata_store_the_due_time_and_post_the_parent_with_cancel(h: Harness) -> None:
    h.slack.set_user_tz("U0ALICE", "Asia/Kolkata")
    before = datetime.now(UTC)
    told = await command(h, f"schedule +2h {PHONE} Two hours from now")
    assert "⏰ Scheduled for" in told and "(your time)" in told
    await command(h, f"schedule +45m {PHONE} Forty-five minutes from now")
    [first, second] = await scheduled_now(h)
    assert first.sms.body == "Forty-five minutes from now" and first.tz == "Asia/Kolkata"
    assert timedelta(minutes=45) <= first.due_at - before < timedelta(minutes=46)
    assert timedelta(hours=2) <= second.due_at - before < timedelta(hours=2, minutes=1)
    assert first.sms.state is SendState.SCHEDULED
    parent = parent_of(h, "Two hours from now")
    local = schedule.describe(second.due_at, schedule.zone("Asia/Kolkata"))
    assert parent.text.startswith(f"⏰ Scheduled for {local} (your time) · SMS to {SHOWN}")
    assert "sms_schedule_cancel" in str(parent.blocks)
    assert sent(h) == []


async def test_date_time_in_los_angeles_and_refusals(h: Harness) -> None:
    h.slack.set_user_tz("U0BOB", "America/Los_Angeles")
    la = schedule.zone("America/Los_Angeles")
    day = (datetime.now(la) + timedelta(days=30)).date()
    await command(h, f"schedule {day.isoformat()} 09:00 {PHONE} Merry", user="U0BOB")
    [item] = await scheduled_now(h, "U0BOB")
    assert item.due_at.astimezone(la).replace(tzinfo=None) == datetime(day.year, day.month, day.day, 9, 0)
    assert item.due_at == datetime(day.year, day.month, day.day, 9, 0, tzinfo=la).astimezone(UTC)

    past = (datetime.now(la) - timedelta(days=1)).date().isoformat()
    told = await command(h, f"schedule {past} 09:00 {PHONE} Too late", user="U0BOB")
    assert "in the past" in told and "Nothing was scheduled" in told
    far = (datetime.now(la) + timedelta(days=400)).date().isoformat()
    told = await command(h, f"schedule {far} 09:00 {PHONE} Too far", user="U0BOB")
    assert "more than a year ahead" in told
    told = await command(h, f"schedule soonish {PHONE} Nope", user="U0BOB")
    assert "is not a time" in told
    told = await command(h, "schedule +2h", user="U0BOB")
    assert "give the number and the text" in told
    assert len(await scheduled_now(h, "U0BOB")) == 1 and len(h.slack.messages(GENERAL)) == 1


async def test_clock_time_already_past_today_means_tomorrow(h: Harness) -> None:
    h.slack.set_user_tz("U0ALICE", "America/Los_Angeles")
    la = schedule.zone("America/Los_Angeles")
    clock = (datetime.now(la) - timedelta(minutes=2)).strftime("%H:%M")
    told = await command(h, f"schedule {clock} {PHONE} Tomorrow then")
    assert "tomorrow" in told
    [item] = await scheduled_now(h)
    now = datetime.now(UTC)
    assert timedelta(hours=22) < item.due_at - now <= timedelta(hours=24)
    assert item.due_at.astimezone(la).strftime("%H:%M") == clock
    assert schedule.describe(item.due_at, la) in parent_of(h, "Tomorrow then").text


async def test_form_send_at_fires_once_into_the_same_thread_and_cancel_after_send_is_harmless(h: Harness) -> None:
    assert await form_schedule(h, "From the form, later", soon()) == {}
    parent = parent_of(h, "From the form, later")
    assert parent.text.startswith("⏰ Scheduled for")
    assert sent(h) == []
    await until(lambda: sent(h) == ["From the form, later"], "the scheduled SMS")
    await h.settle()
    await until(lambda: any("Delivered" in t for t in thread(h, parent)), "the receipt in the same thread")
    assert parent_of(h, "From the form, later").ts == parent.ts
    assert "sms_schedule_cancel" not in str(h.slack.message(GENERAL, parent.ts).blocks)  # type: ignore[union-attr]
    [sms] = [s for s in await h.bridge.store.thread_messages(GENERAL, parent.ts)]
    assert sms.state is SendState.ACCEPTED

    await h.driver.block_action("sms_schedule_cancel", sms.ref, message=parent.as_dict(), user_id="U0ALICE")
    await h.settle()
    assert "already sent" in h.slack.ephemerals[-1]["text"]
    assert sent(h) == ["From the form, later"]


async def test_form_send_at_in_the_past_is_refused_inline(h: Harness) -> None:
    answer = await form_schedule(h, "Yesterday", datetime.now(UTC) - timedelta(days=1))
    assert answer["response_action"] == "errors" and "in the past" in answer["errors"]["send_at"]
    assert await scheduled_now(h) == [] and sent(h) == []


async def test_cancel_by_others_is_refused_by_scheduler_or_admin_works(h: Harness) -> None:
    await command(h, f"schedule +2h {PHONE} Cancel me")
    await command(h, f"schedule +3h {PHONE} Admin cancels me")
    parent = parent_of(h, "Cancel me")
    [mine, other] = await scheduled_now(h)
    await h.driver.block_action("sms_schedule_cancel", mine.sms.ref, message=parent.as_dict(), user_id="U0BOB")
    await h.settle()
    assert "Only the person who scheduled" in h.slack.ephemerals[-1]["text"]
    assert (await h.bridge.store.get_scheduled(mine.sms.ref)).state is ScheduleOutcome.SCHEDULED  # type: ignore[union-attr]

    await h.driver.block_action("sms_schedule_cancel", mine.sms.ref, message=parent.as_dict(), user_id="U0ALICE")
    await h.settle()
    assert "Cancelled" in h.slack.ephemerals[-1]["text"]
    assert any("Cancelled by <@U0ALICE>" in t for t in thread(h, parent))
    assert "Cancelled" in h.slack.message(GENERAL, parent.ts).text  # type: ignore[union-attr]
    await h.driver.block_action("sms_schedule_cancel", mine.sms.ref, message=parent.as_dict(), user_id="U0ALICE")
    await h.settle()
    assert "already cancelled" in h.slack.ephemerals[-1]["text"]

    await h.driver.block_action("sms_schedule_cancel", other.sms.ref, user_id="U0CAROL")
    await h.settle()
    assert "Cancelled" in h.slack.ephemerals[-1]["text"]
    cancelled = await h.bridge.store.get_scheduled(other.sms.ref)
    assert cancelled is not None and cancelled.finished_by == "U0CAROL"
    assert await scheduled_now(h) == [] and sent(h) == []


async def test_scheduled_lists_your_pending_sends_privately_with_cancel(h: Harness) -> None:
    await command(h, f"schedule +3h {PHONE} Later one")
    await command(h, f"schedule +1h {PHONE} Sooner one")
    await command(h, f"schedule +1h {PHONE} Bob's own", user="U0BOB")
    before = len(h.slack.responses)
    assert (await h.driver.slash_command("scheduled", user_id="U0ALICE")).status == 200
    await h.settle()
    [listing] = h.slack.responses[before:]
    assert listing["response_type"] == "ephemeral"
    rows = [b for b in listing["blocks"] if b.get("accessory")]
    assert ["Sooner one" in rows[0]["text"]["text"], "Later one" in rows[1]["text"]["text"]] == [True, True]
    assert len(rows) == 2 and all(r["accessory"]["action_id"] == "sms_schedule_cancel" for r in rows)


async def test_due_while_stopped_within_grace_is_sent_on_start(h: Harness) -> None:
    assert await form_schedule(h, "Sent on start", soon(1.5)) == {}
    [item] = await scheduled_now(h)
    await h.stop_bot()
    await until(lambda: datetime.now(UTC) > item.due_at + timedelta(seconds=1), "the due time to pass")
    await h.start_bot()
    await until(lambda: sent(h) == ["Sent on start"], "the late SMS")
    assert (await h.bridge.store.get_scheduled(item.sms.ref)).state is ScheduleOutcome.RELEASED  # type: ignore[union-attr]


async def test_due_while_stopped_beyond_grace_is_marked_missed(h: Harness) -> None:
    assert await form_schedule(h, "Too late now", soon(1.5)) == {}
    [item] = await scheduled_now(h)
    parent = parent_of(h, "Too late now")
    await h.stop_bot()
    await until(lambda: datetime.now(UTC) > item.due_at + timedelta(seconds=1), "the due time to pass")
    h.config = dataclasses.replace(h.config, schedule_grace_minutes=0)
    await h.start_bot()
    await until(lambda: any("marked missed" in t for t in thread(h, parent)), "the missed note")
    assert sent(h) == []
    assert "Missed" in h.slack.message(GENERAL, parent.ts).text  # type: ignore[union-attr]
    sms = await h.bridge.store.get_outbound(item.sms.ref)
    assert sms is not None and sms.state is SendState.REJECTED and sms.error_code == "missed"


async def test_blocked_at_send_time_is_refused_in_the_thread(h: Harness) -> None:
    assert await form_schedule(h, "Blocked meanwhile", soon()) == {}
    parent = parent_of(h, "Blocked meanwhile")
    await command(h, f"block {PHONE} asked us to stop", user="U0BOB")
    told = await command(h, f"schedule +1h {PHONE} Not even stored")
    assert "asked us to stop" in told  # refused when scheduling, too: nothing stored
    assert all(i.sms.body != "Not even stored" for i in await scheduled_now(h))
    await until(lambda: any("Not sent at its scheduled time" in t and "asked us to stop" in t
                            for t in thread(h, parent)), "the refusal in the thread")
    assert sent(h) == []


async def test_opted_out_at_send_time_is_refused_in_the_thread(h: Harness) -> None:
    assert await form_schedule(h, "Opted out meanwhile", soon()) == {}
    parent = parent_of(h, "Opted out meanwhile")
    delivery = await h.simulator.inject_inbound(PHONE, FROM_NUMBER, "STOP", [], url=h.bot_url + "/signalwire/inbound")
    assert delivery.status == 200
    await until(lambda: any("Not sent at its scheduled time" in t for t in thread(h, parent)), "the refusal")
    assert "Opted out meanwhile" not in sent(h)


async def test_access_lost_before_the_due_time_is_refused_in_the_thread(h: Harness) -> None:
    assert await form_schedule(h, "Alice may no longer send", soon(3)) == {}
    parent = parent_of(h, "Alice may no longer send")
    await h.stop_bot()
    h.config = dataclasses.replace(h.config, allowed_users=("U0BOB",))
    await h.start_bot()
    await until(lambda: any("Not sent at its scheduled time" in t for t in thread(h, parent)), "the refusal")
    assert sent(h) == []


async def test_a_contacts_name_shows_on_the_scheduled_parent_and_in_the_list(h: Harness) -> None:
    # -- issue 12: scheduled sends read like every other message: "Dana Smith (+1 555-123-4567)".
    await command(h, f"contact add Dana Smith {PHONE}")
    await command(h, f"schedule +2h {PHONE} Named later")
    parent = parent_of(h, "Named later")
    assert f"SMS to Dana Smith ({SHOWN})" in parent.text
    assert f"Dana Smith ({SHOWN})" in str(parent.blocks)
    before = len(h.slack.responses)
    assert (await h.driver.slash_command("scheduled", user_id="U0ALICE")).status == 200
    await h.settle()
    [listing] = h.slack.responses[before:]
    assert f"to Dana Smith ({SHOWN})" in listing["text"]
    assert f"SMS to Dana Smith ({SHOWN})" in str(listing["blocks"])


async def test_schedule_by_a_contacts_name_and_clear_refusals_for_unknown_or_ambiguous_names(h: Harness) -> None:
    await command(h, f"contact add Dana Smith {PHONE}")
    await command(h, "contact add Dana Jones +15559876543")
    told = await command(h, "schedule +2h \"Dana Smith\" See you at nine")
    assert "⏰ Scheduled for" in told
    [item] = await scheduled_now(h)
    assert (item.sms.to, item.sms.body) == (PHONE, "See you at nine")
    assert f"SMS to Dana Smith ({SHOWN})" in parent_of(h, "See you at nine").text
    told = await command(h, "schedule +2h Zed Nobody Hello")
    assert "Nothing was scheduled" in told and "Nothing was sent" not in told
    # The closing sentence is asked for, not patched in: the first line ends with it, the suggestion line follows.
    told = await command(h, "schedule 17:30 Nobody hello")
    first, _, hint = told.partition("\n")
    assert first == "⚠️ No contact is named *Nobody*, and it is not a phone number. Nothing was scheduled."
    assert hint.startswith("Start with the number") and "Nothing was sent" not in told
    told = await command(h, "schedule 17:30 Dama hello")
    assert told.endswith("Nothing was scheduled.\nDid you mean: Dana Jones (+1 555-987-6543), "
                         "Dana Smith (+1 555-123-4567)?")
    told = await command(h, "schedule +2h Dana Hello both")
    assert "could be 2 contacts" in told and "Nothing was scheduled" in told
    assert len(await scheduled_now(h)) == 1 and sent(h) == []


async def test_a_scheduled_send_whose_parent_slack_refuses_for_good_is_never_sent(h: Harness) -> None:
    # -- issue 12: like an ordinary send, no SMS without its thread: refused at once, the scheduler told directly.
    h.slack.add_response("chat.postMessage", body={"ok": False, "error": "channel_not_found"})
    told = await command(h, f"schedule +1m {PHONE} Threadless")
    assert "⏰ Scheduled for" in told
    await until(lambda: any("will not be sent" in m.text for m in h.slack.messages("DU0ALICE")), "the direct message")
    [note] = [m.text for m in h.slack.messages("DU0ALICE") if "will not be sent" in m.text]
    assert "channel_not_found" in note and SHOWN in note
    [failed] = await h.bridge.store.outbox_failed()
    assert failed.ref is not None
    item = await h.bridge.store.get_scheduled(failed.ref)
    assert item is not None and item.state is ScheduleOutcome.REFUSED
    assert await scheduled_now(h) == [] and sent(h) == []
