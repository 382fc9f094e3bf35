"""Scheduled sends (issue 12), the pure part: reading ``<when>``, the ``/sms schedule`` grammar, and how a scheduled
message is shown (its parent while it waits, the ``/sms scheduled`` list, the App Home's list).

Owns: ``parse_when`` (``17:30``, ``2026-12-24 09:00``, ``+2h``, ``+45m`` in the sender's IANA time zone, DST-correct
through ``zoneinfo``), ``split_schedule`` (``<when> <recipient> <text>``), ``check_due`` (not in the past, at most
``MAX_AHEAD`` ahead), the wording, ``scheduled_blocks`` (Block Kit with Cancel buttons) and the action id
``CANCEL_ACTION``.
Time-zone rules: a local time that does not exist (the hour skipped when clocks go forward) is refused with a clear
error; a local time that exists twice (clocks go back) means the first of the two (``fold=0``). ``+2h`` / ``+45m`` are
durations from now, whatever the clocks do.
Must not import: aiohttp, Slack packages, storage, ``handlers``. Pure functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.contacts import labelled
from bridge.model import OutboundSms, ScheduledSend
from bridge.slack_blocks import SECTION_TEXT, cut, fit_blocks, quote_chunks, sections
from bridge.slack_text import escape_mrkdwn
from sw_api.text import format_number

CANCEL_ACTION = "sms_schedule_cancel"
MAX_AHEAD = timedelta(days=365)
MAX_LISTED = 20  # pending sends listed by ``/sms scheduled`` (each with its Cancel button)


_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_OFFSET = re.compile(r"^\+(\d{1,5})([hm])$", re.IGNORECASE)


class ScheduleError(ValueError):
    """``<when>`` (or the rest of ``/sms schedule``) cannot become a due time; ``message`` says why and how."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class When:
    """A due time (UTC) and how it was read: ``next_day`` when a bare clock time had passed today."""

    due: datetime
    next_day: bool = False


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (Slack's ``tz``), UTC for an empty or unknown one."""
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _local(naive: datetime, tz: ZoneInfo) -> datetime:
    """``naive`` wall-clock time in ``tz`` as UTC; ScheduleError if that wall-clock time does not exist there."""
    aware = naive.replace(tzinfo=tz, fold=0)
    utc = aware.astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) != naive:
        raise ScheduleError(
            f"{naive:%Y-%m-%d %H:%M} does not exist in {tz.key}: the clocks skip that hour. Pick another time.")
    return utc


def parse_when(text: str, now: datetime, tz: ZoneInfo) -> When:
    """Read ``<when>``: ``HH:MM`` (today in ``tz``, tomorrow if already past), ``YYYY-MM-DD HH:MM`` (in ``tz``),
    ``+Nh`` / ``+Nm`` (from ``now``). Not checked against past / too far: that is ``check_due``."""
    text = " ".join(text.split())
    offset = _OFFSET.match(text)
    if offset:
        amount = int(offset.group(1))
        step = timedelta(hours=amount) if offset.group(2).lower() == "h" else timedelta(minutes=amount)
        if amount == 0:
            raise ScheduleError(f"`{text}` is now; give a time ahead, e.g. `+45m` or `+2h`.")
        if step > MAX_AHEAD + timedelta(days=1):
            raise ScheduleError(f"`{text}` is more than a year ahead; the latest is a year from now.")
        return When(now.astimezone(UTC) + step)
    parts = text.split(" ")
    clock = _CLOCK.match(parts[-1]) if 1 <= len(parts) <= 2 else None
    if clock is None:
        raise ScheduleError(f"`{text}` is not a time. Use `17:30`, `2026-12-24 09:00`, `+2h` or `+45m`.")
    hour, minute = int(clock.group(1)), int(clock.group(2))
    today = now.astimezone(tz)
    if len(parts) == 2:
        date = _DATE.match(parts[0])
        if date is None:
            raise ScheduleError(f"`{parts[0]}` is not a date. Write it as `2026-12-24`.")
        try:
            naive = datetime(int(date.group(1)), int(date.group(2)), int(date.group(3)), hour, minute)
        except ValueError as exc:
            raise ScheduleError(f"`{parts[0]}` is not a date ({exc}).") from exc
        return When(_local(naive, tz))
    naive = today.replace(tzinfo=None, hour=hour, minute=minute, second=0, microsecond=0)
    due = _local(naive, tz)
    if due > now:
        return When(due)
    tomorrow = (today + timedelta(days=1)).replace(tzinfo=None, hour=hour, minute=minute, second=0, microsecond=0)
    return When(_local(tomorrow, tz), next_day=True)


def check_due(due: datetime, now: datetime, tz: ZoneInfo) -> str | None:
    """Why ``due`` cannot be a send time (in the past, or more than a year ahead), or None."""
    if due <= now:
        return f"{describe(due, tz)} (your time) is in the past. Pick a time ahead."
    if due - now > MAX_AHEAD:
        return f"{describe(due, tz)} is more than a year ahead; the latest is {describe(now + MAX_AHEAD, tz)}."
    return None


@dataclass(frozen=True, slots=True)
class ScheduleInput:
    """``/sms schedule <when> <rest>``: the ``<when>`` text and the rest (recipient and message, as typed)."""

    when: str
    rest: str


def split_schedule(text: str) -> ScheduleInput:
    """Split what follows ``schedule``: ``<when>`` is one word, or two for a date and a time."""
    words = text.split(None, 2)
    if not words:
        raise ScheduleError("Say when, whom and what: `/sms schedule 17:30 +1 555 123 4567 Running late`.")
    if _DATE.match(words[0]) and len(words) >= 2 and _CLOCK.match(words[1]):
        rest = text.split(None, 2)[2] if len(words) == 3 else ""
        return ScheduleInput(f"{words[0]} {words[1]}", rest)
    rest = text.split(None, 1)[1] if len(text.split(None, 1)) == 2 else ""
    return ScheduleInput(words[0], rest)


# -- wording --------------------------------------------------------------------------------------------------

def describe(due: datetime, tz: ZoneInfo) -> str:
    """``Thu 24 Dec 09:00`` in ``tz`` (the year too when it is not this one's)."""
    local = due.astimezone(tz)
    year = f" {local.year}" if local.year != datetime.now(UTC).astimezone(tz).year else ""
    return f"{local:%a} {local.day} {local:%b}{year} {local:%H:%M}"


def _zone_label(tz: ZoneInfo) -> str:
    return "UTC" if tz.key == "UTC" else "your time"


def scheduled_line(item: ScheduledSend, tz: ZoneInfo, *, next_day: bool = False, name: str | None = None) -> str:
    """``⏰ Scheduled for Thu 24 Dec 09:00 (your time) · SMS to Dana Smith (+1 555-123-4567)`` (the contact book's
    ``name``, if any, as ``bridge.contacts.labelled`` shows it everywhere)."""
    kind = "MMS" if item.sms.is_mms else "SMS"
    day = " — tomorrow, as that time had passed today" if next_day else ""
    when = f"{describe(item.due_at, tz)} ({_zone_label(tz)}){day}"
    return f"⏰ Scheduled for {when} · {kind} to {labelled(item.sms.to, name)}"


def _cancel_button(ref: str) -> dict[str, Any]:
    return {"type": "button", "action_id": CANCEL_ACTION, "value": ref, "style": "danger",
            "text": {"type": "plain_text", "text": "Cancel", "emoji": True}}


def parent_text(item: ScheduledSend, name: str | None = None) -> str:
    line = scheduled_line(item, zone(item.tz), name=name)
    preview = item.sms.body if len(item.sms.body) <= 80 else item.sms.body[:79] + "…"
    return f"{line}: “{escape_mrkdwn(preview)}”" if preview else line


def parent_blocks(item: ScheduledSend, *, simulated: bool = False, name: str | None = None) -> list[dict[str, Any]]:
    """The parent while the message waits: when (the scheduler's time), to whom, from which number, by whom, the
    body, and Cancel (only the scheduler or an admin may press it: ``bridge.scheduler``)."""
    sms = item.sms
    head = (f"{scheduled_line(item, zone(item.tz), name=name)} from {format_number(sms.from_)}"
            f" · scheduled by <@{sms.user_id}>")
    blocks: list[dict[str, Any]] = sections([head])
    if sms.body:
        blocks += sections(quote_chunks(sms.body, SECTION_TEXT))
    if sms.media:
        blocks += sections([cut("📎 " + " ".join(sms.media), SECTION_TEXT)])
    context = [{"type": "mrkdwn", "text": "*Scheduled* · sent at its time, then receipts appear in this thread"}]
    if simulated:
        context.append({"type": "mrkdwn", "text": "🧪 Simulator: no real SMS will be sent."})
    blocks.append({"type": "context", "elements": context})
    blocks.append({"type": "actions", "block_id": f"schedule:{sms.ref}", "elements": [_cancel_button(sms.ref)]})
    return fit_blocks(blocks)


def scheduled_blocks(items: Sequence[ScheduledSend], now: datetime, tz: ZoneInfo | str,
                     names: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Block Kit listing pending scheduled sends (soonest first), each with its Cancel button (``/sms scheduled``
    and the App Home: ``Store.scheduled_of_user`` gives ``items``). ``now`` gives "in 2 h"; ``tz`` is the reader's
    zone (a ``ZoneInfo`` or Slack's ``tz`` name); ``names`` the contact book's names by number."""
    names = names or {}
    tz = zone(tz) if isinstance(tz, str) else tz
    if not items:
        return sections(["⏰ No scheduled sends. `/sms schedule 17:30 +1 555 123 4567 Running late` makes one."])
    blocks: list[dict[str, Any]] = sections([f"⏰ *Scheduled sends* ({len(items)})"])
    for item in sorted(items, key=lambda i: i.due_at)[:MAX_LISTED]:
        preview = item.sms.body if len(item.sms.body) <= 120 else item.sms.body[:119] + "…"
        text = (f"*{describe(item.due_at, tz)}* ({_zone_label(tz)}, {_from_now(item.due_at - now)}) · "
                f"{'MMS' if item.sms.is_mms else 'SMS'} to {labelled(item.sms.to, names.get(item.sms.to))}"
                f"\n“{escape_mrkdwn(preview)}”")
        blocks.append({"type": "section", "block_id": f"scheduled:{item.sms.ref}",
                       "text": {"type": "mrkdwn", "text": cut(text, SECTION_TEXT)},
                       "accessory": _cancel_button(item.sms.ref)})
    if len(items) > MAX_LISTED:
        blocks += sections([f"…and {len(items) - MAX_LISTED} more."])
    return fit_blocks(blocks)


def listing_text(items: Sequence[ScheduledSend], tz: ZoneInfo, names: Mapping[str, str] | None = None) -> str:
    """Plain-text fallback of ``scheduled_blocks``."""
    names = names or {}
    if not items:
        return "⏰ No scheduled sends."
    ordered = sorted(items, key=lambda i: i.due_at)
    lines = [f"• {describe(i.due_at, tz)} · to {labelled(i.sms.to, names.get(i.sms.to))}" for i in ordered]
    return "⏰ Scheduled sends:\n" + "\n".join(lines[:MAX_LISTED])


def _from_now(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 60:
        return f"in {minutes} min"
    if minutes < 48 * 60:
        return f"in {minutes // 60} h {minutes % 60:02d} min"
    return f"in {minutes // (24 * 60)} days"


def missed_text(item: ScheduledSend, grace_minutes: int) -> str:
    return (f"⌛ Not sent: sms-bridge was not running at {describe(item.due_at, zone(item.tz))} "
            f"({_zone_label(zone(item.tz))}) and came back more than {grace_minutes} min late, so this message was "
            "marked missed. Send it again if it still matters.")


def cancelled_text(user_id: str) -> str:
    return f"🚫 Cancelled by <@{user_id}>: this scheduled message will not be sent."


def refused_text(reason: str) -> str:
    """``reason``: the send paths' own refusal (access policy, opt-out, block list), without its leading emoji."""
    return f"⛔ Not sent at its scheduled time: {reason.removeprefix('⛔ ').removeprefix('⚠️ ')}"


def released_text(sms: OutboundSms) -> str:
    return f"⏰ Sending now, as scheduled by <@{sms.user_id}>…"
