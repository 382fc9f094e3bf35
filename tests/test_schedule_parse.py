"""``bridge.schedule``, the pure part of scheduled sends (issue 12): every ``<when>`` form in several time zones,
DST gaps and folds, past / too-far refusals, the ``/sms schedule`` split, and the list's Block Kit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge import schedule
from bridge.model import OutboundSms, ScheduledSend, SendState
from bridge.slack_blocks import fit_blocks

LA = schedule.zone("America/Los_Angeles")
KOLKATA = schedule.zone("Asia/Kolkata")
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)  # 05:00 in Los Angeles (PDT), 17:30 in Kolkata


def item(ref: str, due: datetime, body: str = "hi", tz: str = "America/Los_Angeles") -> ScheduledSend:
    sms = OutboundSms(ref=ref, created_at=NOW, updated_at=NOW, user_id="U0ALICE", channel_id="C0GENERAL",
                      to="+15551234567", from_="+15550001111", body=body, state=SendState.SCHEDULED, origin="schedule")
    return ScheduledSend(sms, due, tz)


def test_offsets_are_durations_from_now() -> None:
    assert schedule.parse_when("+2h", NOW, LA).due == NOW + timedelta(hours=2)
    assert schedule.parse_when("+45m", NOW, KOLKATA).due == NOW + timedelta(minutes=45)
    assert schedule.parse_when("+90M", NOW, LA).due == NOW + timedelta(minutes=90)


def test_a_clock_time_is_today_in_the_senders_zone_or_tomorrow_if_past() -> None:
    later = schedule.parse_when("17:30", NOW, LA)  # 05:00 there: 17:30 is still ahead today
    assert later.due == datetime(2026, 6, 16, 0, 30, tzinfo=UTC) and not later.next_day
    passed = schedule.parse_when("17:30", NOW, KOLKATA)  # exactly 17:30 there now: not ahead, so tomorrow
    assert passed.next_day and passed.due == datetime(2026, 6, 16, 12, 0, tzinfo=UTC)
    early = schedule.parse_when("9:05", NOW, KOLKATA)
    assert early.next_day and early.due.astimezone(KOLKATA).strftime("%d %H:%M") == "16 09:05"


def test_a_date_and_time_is_read_in_the_senders_zone() -> None:
    assert schedule.parse_when("2026-12-24 09:00", NOW, LA).due == datetime(2026, 12, 24, 17, 0, tzinfo=UTC)
    assert schedule.parse_when("2026-12-24 09:00", NOW, KOLKATA).due == datetime(2026, 12, 24, 3, 30, tzinfo=UTC)


def test_dst_gap_is_refused_and_a_fold_means_the_first() -> None:
    with pytest.raises(schedule.ScheduleError, match="does not exist in America/Los_Angeles"):
        schedule.parse_when("2027-03-14 02:30", NOW, LA)
    first = schedule.parse_when("2026-11-01 01:30", NOW, LA).due  # 01:30 happens twice; PDT (UTC-7) is first
    assert first == datetime(2026, 11, 1, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize("text", ["tomorrow", "25:00", "17:60", "2026-13-01 09:00", "2026-02-30 09:00", "+0m",
                                  "+2d", "12:00 pm", ""])
def test_bad_when_is_a_clear_error(text: str) -> None:
    with pytest.raises(schedule.ScheduleError) as info:
        schedule.parse_when(text, NOW, LA)
    assert info.value.message


def test_past_and_more_than_a_year_ahead_are_refused() -> None:
    past = schedule.parse_when("2026-06-01 09:00", NOW, LA).due
    problem = schedule.check_due(past, NOW, LA)
    assert problem is not None and "in the past" in problem
    far = schedule.parse_when("2027-07-01 09:00", NOW, LA).due
    problem = schedule.check_due(far, NOW, LA)
    assert problem is not None and "more than a year ahead" in problem
    assert schedule.check_due(NOW + timedelta(days=364), NOW, LA) is None
    with pytest.raises(schedule.ScheduleError, match="more than a year"):
        schedule.parse_when("+9000h", NOW, LA)


def test_split_takes_one_or_two_words_of_when() -> None:
    assert schedule.split_schedule("17:30 +1 555 123 4567 Running late") == schedule.ScheduleInput(
        "17:30", "+1 555 123 4567 Running late")
    assert schedule.split_schedule("2026-12-24 09:00 5551234567 Merry") == schedule.ScheduleInput(
        "2026-12-24 09:00", "5551234567 Merry")
    assert schedule.split_schedule("+2h") == schedule.ScheduleInput("+2h", "")
    with pytest.raises(schedule.ScheduleError):
        schedule.split_schedule("   ")


def test_describe_names_the_day_in_the_zone() -> None:
    due = datetime(2026, 12, 24, 17, 0, tzinfo=UTC)
    assert schedule.describe(due, LA).startswith("Thu 24 Dec") and schedule.describe(due, LA).endswith("09:00")
    assert schedule.describe(due, KOLKATA).endswith("22:30")


def test_scheduled_blocks_list_soonest_first_each_with_cancel() -> None:
    items = [item("b" * 24, NOW + timedelta(hours=3), "second"), item("a" * 24, NOW + timedelta(minutes=30), "first")]
    blocks = schedule.scheduled_blocks(items, NOW, LA)
    assert blocks == fit_blocks(blocks)
    rows = [b for b in blocks if b.get("accessory")]
    assert [r["accessory"]["value"] for r in rows] == ["a" * 24, "b" * 24]
    assert all(r["accessory"]["action_id"] == schedule.CANCEL_ACTION for r in rows)
    assert "in 30 min" in rows[0]["text"]["text"] and "“first”" in rows[0]["text"]["text"]
    assert "No scheduled sends" in schedule.scheduled_blocks([], NOW, LA)[0]["text"]["text"]


def test_parent_shows_when_in_the_schedulers_zone_and_cancel() -> None:
    scheduled = item("c" * 24, datetime(2026, 12, 24, 17, 0, tzinfo=UTC))
    text = schedule.parent_text(scheduled)
    assert text.startswith("⏰ Scheduled for Thu 24 Dec") and "09:00 (your time) · SMS to +1 555-123-4567" in text
    [button] = [e for b in schedule.parent_blocks(scheduled) if b["type"] == "actions" for e in b["elements"]]
    assert button["action_id"] == schedule.CANCEL_ACTION and button["value"] == "c" * 24
    utc = item("d" * 24, datetime(2026, 12, 24, 17, 0, tzinfo=UTC), tz="")
    assert "17:00 (UTC)" in schedule.parent_text(utc)
