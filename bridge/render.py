"""What the bridge shows in Slack: the parent message of an SMS, its thread receipts, and failure explanations.

Owns: wording, emoji, Block Kit JSON (as plain dicts) and the plain-language meaning of carrier error codes;
what the thread is told while an outcome is unknown (at once: what happened, that the bot is checking, when it
sends again; then what was found). Every message fits Slack's limits (``bridge.slack_blocks``) whatever the body
or SignalWire's words: a valid SMS is never refused because of how it is shown.
Must not import: aiohttp, Slack packages, storage, ``handlers``. Pure functions of ``OutboundSms`` values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.contacts import labelled
from bridge.media import is_published
from bridge.model import OutboundSms, ScheduleOutcome, SendState
from bridge.slack_blocks import (
    CONTEXT_TEXT,
    SECTION_TEXT,
    cut,
    fit_blocks,
    fit_text,
    pack,
    quote_chunks,
    sections,
    shown,
)
from bridge.slack_text import escape_mrkdwn
from sw_api.errors import OutcomeUnknown
from sw_api.models import MessageStatus
from sw_api.text import format_number, segment_info

RETRY_ACTION = "sms_retry"

SIMULATED_NOTE = "🧪 Simulator: no real SMS was sent."

# Plain-language meaning of the delivery error codes people actually meet (shared/signalwire/FACTS.md).
CARRIER_ERRORS: dict[str, str] = {
    "30003": "The phone is unreachable: switched off, out of coverage or not accepting texts. Try again later.",
    "30004": "The recipient's carrier or the recipient blocked this message.",
    "30005": "The number is unknown to the carrier: it may not exist or is no longer in service. Check it.",
    "30006": "The number is a landline or cannot receive SMS. Call instead, or use a mobile number.",
    "30007": "The carrier filtered the message as spam. Rephrase it (avoid link shorteners, all caps) "
    "and check the sender number's 10DLC campaign registration.",
    "30008": "The carrier reported an unknown error. Retrying once is reasonable.",
    "21610": "The recipient opted out by replying STOP. They must text START to this number before you can "
    "reach them again.",
    "21611": "SignalWire's queue for this sender is full. Wait a minute and retry.",
    "30022": "The sender number exceeded its 10DLC throughput limit. Slow down and retry shortly.",
    "30027": "The sender number reached its daily 10DLC limit. Retry tomorrow or use another number.",
    "unreachable_destination_handset": "The phone is unreachable. Try again later.",
    "carrier_violation": "The carrier refused the message under its content rules.",
    "message_filtered": "The carrier filtered the message as spam. Rephrase it.",
    "rate_limit_exceeded": "Too many messages too fast. Wait a moment and retry.",
}


@dataclass(frozen=True, slots=True)
class Badge:
    emoji: str
    label: str


def badge(sms: OutboundSms) -> Badge:
    """The one-glance status of an outbound message."""
    if sms.state is SendState.REJECTED:
        # -- issue 12: a scheduled send that never went (``ScheduleOutcome``, kept in ``error_code``)
        return SCHEDULE_BADGES.get(sms.error_code or "", Badge("⛔", "Not sent"))
    if sms.state is SendState.SCHEDULED:
        return Badge("⏰", "Scheduled")
    if sms.state is SendState.UNKNOWN and sms.status is None:
        # checked_at is set once the bridge stopped looking (ambiguous, or the logs stayed unreadable).
        return Badge("❓", "Outcome unknown" if sms.checked_at is not None else "Checking with SignalWire…")
    if sms.state in (SendState.PENDING, SendState.SUBMITTING) and sms.status is None:
        return Badge("⏳", "Sending…")
    status = sms.status or MessageStatus.QUEUED
    if status is MessageStatus.SENT and sms.is_mms:
        return Badge("📤", "Sent to carrier (MMS has no delivery receipt)")
    return STATUS_BADGES[status]


STATUS_BADGES: dict[MessageStatus, Badge] = {
    MessageStatus.QUEUED: Badge("🕓", "Queued at SignalWire"),
    MessageStatus.INITIATED: Badge("🕓", "Handed to the carrier"),
    MessageStatus.SENT: Badge("📤", "Sent to carrier"),
    MessageStatus.DELIVERED: Badge("✅", "Delivered"),
    MessageStatus.READ: Badge("👀", "Read"),
    MessageStatus.UNDELIVERED: Badge("❌", "Undelivered"),
    MessageStatus.FAILED: Badge("❌", "Failed"),
    MessageStatus.RECEIVED: Badge("📥", "Received"),
}


# -- issue 12: how a scheduled send that never went is shown (its ``error_code`` is the ``ScheduleOutcome``).
SCHEDULE_BADGES: dict[str, Badge] = {
    ScheduleOutcome.CANCELLED.value: Badge("🚫", "Cancelled (scheduled send)"),
    ScheduleOutcome.MISSED.value: Badge("⌛", "Missed (the bot was down at its time)"),
    ScheduleOutcome.REFUSED.value: Badge("⛔", "Not sent at its scheduled time"),
}


def explain(error_code: str | None) -> str | None:
    return CARRIER_ERRORS.get(error_code or "")


def can_retry(sms: OutboundSms) -> bool:
    """Failed, refused, or unknown — but an "unknown" send whose callbacks later arrived is known after all:
    offering Retry on one that was delivered would text the person twice."""
    if sms.status is not None:
        return sms.status.is_failure
    if sms.state is SendState.REJECTED and sms.error_code == ScheduleOutcome.CANCELLED.value:
        return False  # -- issue 12: someone decided it should not go
    return sms.state in (SendState.REJECTED, SendState.UNKNOWN)


def _retry_button(sms: OutboundSms) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": f"retry:{sms.ref}",
        "elements": [
            {
                "type": "button",
                "action_id": RETRY_ACTION,
                "text": {"type": "plain_text", "text": "Retry", "emoji": True},
                "value": sms.ref,
                "style": "primary",
            }
        ],
    }


def parent_text(sms: OutboundSms, name: str | None = None) -> str:
    """Notification/fallback text of the parent (also what screen readers get). ``name``: the recipient's contact
    name, if any (issue 12: ``bridge.contacts.labelled``)."""
    b = badge(sms)
    preview = sms.body if len(sms.body) <= 80 else sms.body[:79] + "…"
    said = f": “{escape_mrkdwn(preview)}”" if preview else ""
    return f"{b.emoji} {b.label} · {'MMS' if sms.is_mms else 'SMS'} to {labelled(sms.to, name)}{said}"


# How much of what we did not write ourselves is shown: a valid SMS body is shown whole (1600 characters
# escape to at most 8000, i.e. three sections); SignalWire's words and codes are cut, with "…".
MAX_ERROR_CODE = 60
MAX_SIGNALWIRE_TEXT = 500
MAX_MEDIA_URL = 500


def picture_blocks(media: Sequence[str]) -> list[dict[str, Any]]:
    """-- issue 11: the pictures this bridge published (``/media/<token>/<name>``, checked JPEG/PNG/GIF) shown
    inline, so the thread shows what was sent. Other URLs stay links: Slack refuses a whole message whose image
    block points at something that is not a picture."""
    return [{"type": "image", "image_url": url, "alt_text": f"Picture sent: {url.rsplit('/', 1)[-1]}"[:2000]}
            for url in media if is_published(url) and len(url) <= 3000]


def mms_reply_sent_text(sms: OutboundSms) -> str:
    """-- issue 11: a thread reply's MMS reached the carrier; with no delivery receipt to come, that is final."""
    count = len(sms.media)
    pictures = f" with {count} picture{'s' if count != 1 else ''}" if count else ""
    return f"📤 Sent to carrier as MMS{pictures}. MMS has no delivery receipt, so this is the final status."


def mms_reply_sent_blocks(sms: OutboundSms) -> list[dict[str, Any]]:
    return fit_blocks([*sections([mms_reply_sent_text(sms)]), *picture_blocks(sms.media)])


def parent_blocks(sms: OutboundSms, *, simulated: bool = False, name: str | None = None) -> list[dict[str, Any]]:
    """The parent: who, to whom, the body (split over as many sections as Slack's 3000-character limit needs),
    media, status. Whatever the body, it fits Slack's limits: a valid SMS is never refused for its rendering."""
    b = badge(sms)
    kind = "MMS" if sms.is_mms else "SMS"
    head = (
        f"{b.emoji} *{kind} to {labelled(sms.to, name)}* from {format_number(sms.from_)}"
        f" · sent by <@{sms.user_id}>"
    )
    blocks: list[dict[str, Any]] = sections([head])
    if sms.body:
        blocks += sections(quote_chunks(sms.body, SECTION_TEXT))
    if sms.media:
        blocks += sections(pack([f"📎 {shown(url, MAX_MEDIA_URL)}" for url in sms.media], SECTION_TEXT))
        blocks += picture_blocks(sms.media)
    info = segment_info(sms.body)
    detail = f"*{b.label}*"
    if sms.body:
        detail += f" · {info.characters} chars, {info.encoding}, {sms.segments or info.segments} segment(s)"
    if sms.error_code:
        detail += f" · error {shown(sms.error_code, MAX_ERROR_CODE)}"
    context: list[dict[str, Any]] = [{"type": "mrkdwn", "text": cut(detail, CONTEXT_TEXT)}]
    if simulated:
        context.append({"type": "mrkdwn", "text": SIMULATED_NOTE})
    blocks.append({"type": "context", "elements": context})
    if can_retry(sms):
        blocks.append(_retry_button(sms))
    return fit_blocks(blocks)


# -- issue 12: how a receipt names the recipient when the number is a contact ("✅ Delivered to Dana Smith (…)").
RECEIPT_PREPOSITIONS: dict[MessageStatus, str] = {
    MessageStatus.QUEUED: "for",
    MessageStatus.INITIATED: "for",
    MessageStatus.SENT: "for",
    MessageStatus.DELIVERED: "to",
    MessageStatus.READ: "by",
}


def _to_whom(sms: OutboundSms, status: MessageStatus, name: str | None) -> str:
    """`` to Dana Smith (+1 555-123-4567)`` for a contact, else nothing: a number's receipt stays as it always was
    (the parent above already shows the number)."""
    if not name or not name.strip():
        return ""
    return f" {RECEIPT_PREPOSITIONS.get(status, 'to')} {labelled(sms.to, name)}"


def receipt_text(sms: OutboundSms, status: MessageStatus, *, name: str | None = None) -> str:
    """The short thread reply for a status change. ``name``: the recipient's contact name, if any (issue 12)."""
    whom = _to_whom(sms, status, name)
    if status is MessageStatus.SENT and sms.is_mms:
        return f"📤 Sent to carrier{whom}. MMS has no delivery receipt, so this is the final status."
    b = STATUS_BADGES[status]
    if status is MessageStatus.QUEUED and sms.segments:
        return f"{b.emoji} {b.label}{whom} ({sms.segments} segment{'s' if sms.segments != 1 else ''})"
    return f"{b.emoji} {b.label}{whom}"


def receipt_timeline(statuses: Sequence[MessageStatus], times: Mapping[MessageStatus, datetime]) -> str:
    """``queued 10:00:01 · sent 10:00:02 · delivered 10:00:03``, each time in the reader's own time zone: every
    status a coalesced receipt tells, in order, each written ``<status value> <!date^…>``."""
    return " · ".join(f"{s.value} {slack_time(times[s])}" if s in times else s.value for s in statuses)


def receipt_reply(sms: OutboundSms, statuses: Sequence[MessageStatus], times: Mapping[MessageStatus, datetime], *,
                  simulated: bool = False, name: str | None = None) -> tuple[str, list[dict[str, Any]] | None]:
    """The one thread reply for statuses received close together (text, blocks): the last one's headline and the
    timeline of all of them; a failure is the failure reply (code, SignalWire's words, meaning, Retry) with it.
    ``name``: the recipient's contact name, if any (issue 12): the headline then says who it is to."""
    last = statuses[-1]
    timeline = receipt_timeline(statuses, times)
    if last.is_failure:
        headline = delivery_failure_headline(sms, name=name)
        text = fit_text("\n".join([*_failure_lines(sms, headline), timeline]))
        blocks = failure_blocks(sms, headline, simulated=simulated)
        context = {"type": "context", "elements": [{"type": "mrkdwn", "text": cut(timeline, CONTEXT_TEXT)}]}
        return text, fit_blocks([*blocks[:-1], context, blocks[-1]])
    if last is MessageStatus.SENT and sms.is_mms:
        return fit_text(f"📤 Sent to carrier{_to_whom(sms, last, name)} · {timeline}\nMMS has no delivery receipt, "
                        "so this is the final status."), None
    return fit_text(f"{receipt_text(sms, last, name=name)} · {timeline}"), None


def failure_text(sms: OutboundSms, headline: str) -> str:
    """The failure reply as mrkdwn text: headline, code, SignalWire's own words, what it means."""
    return fit_text("\n".join(_failure_lines(sms, headline)))


def _failure_lines(sms: OutboundSms, headline: str) -> list[str]:
    lines = [headline]
    if sms.error_code:
        lines.append(f"Error code *{shown(sms.error_code, MAX_ERROR_CODE)}*")
    if sms.error_message:
        lines.append(f"SignalWire says: “{shown(sms.error_message, MAX_SIGNALWIRE_TEXT)}”")
    meaning = explain(sms.error_code)
    if meaning:
        lines.append(meaning)
    return lines


def failure_blocks(sms: OutboundSms, headline: str, *, simulated: bool = False) -> list[dict[str, Any]]:
    """A thread reply that says what failed, SignalWire's own words, what it means, and offers Retry."""
    blocks: list[dict[str, Any]] = sections(pack(_failure_lines(sms, headline), SECTION_TEXT))
    if simulated:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": SIMULATED_NOTE}]})
    blocks.append(_retry_button(sms))
    return fit_blocks(blocks)


def delivery_failure_headline(sms: OutboundSms, *, name: str | None = None) -> str:
    """``name``: the recipient's contact name, if any (issue 12); a number's headline is unchanged."""
    b = badge(sms)
    whom = f" to {labelled(sms.to, name)}" if name and name.strip() else ""
    return f"{b.emoji} *{b.label}*: the carrier did not deliver this message{whom}."


def rejected_headline() -> str:
    return "⛔ *Not sent*: SignalWire refused the message."


def unknown_headline() -> str:
    return (
        "❓ *Outcome unknown*: SignalWire did not answer clearly, so the message may or may not have been sent. "
        "Check with the recipient before pressing Retry."
    )


# Slack errors that mean the bot cannot post in that channel (rather than a message Slack would not take).
CHANNEL_ERRORS = frozenset({"not_in_channel", "channel_not_found", "is_archived", "restricted_action",
                            "restricted_action_read_only_channel", "team_access_not_granted", "ekm_access_denied"})


def parent_refusal(channel_id: str, code: str) -> str:
    """Why nothing was sent when Slack refused the parent (completes "⛔ Nothing was sent: I …")."""
    if code in CHANNEL_ERRORS:
        return f"could not post in <#{channel_id}> ({code}); invite the bot or pick another channel"
    return (f"could not post in <#{channel_id}>: Slack refused the message ({shown(code, MAX_ERROR_CODE)}). "
            "This is a problem in sms-bridge, not in your message; tell whoever runs it")


def unknown_failure_headline(why: str) -> str:
    """The give-up reply's headline; ``why`` may quote SignalWire (an error text), so it is escaped and cut."""
    return f"{unknown_headline()} ({shown(why, MAX_SIGNALWIRE_TEXT)})"


# -- an unknown outcome, told at once and then settled ----------------------------------------------------------


def duration(seconds: float) -> str:
    """``45 s``, ``2 min``, ``1 h 30 min``: how long until something happens, for people."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def slack_time(at: datetime, *, with_date: bool = False) -> str:
    """A moment Slack shows in each reader's own time zone (``<!date^…>``), UTC in the fallback."""
    if with_date:
        return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{at:%Y-%m-%d %H:%M} UTC>"
    return f"<!date^{int(at.timestamp())}^{{time_secs}}|{at:%H:%M:%S} UTC>"


def unknown_cause(exc: OutcomeUnknown) -> str:
    """What SignalWire did instead of answering the create, in one clause."""
    status = exc.http_status
    if exc.kind == "server_error" and status is not None:
        return f"SignalWire answered *{status}* (a server error on its side) instead of confirming the message"
    if exc.kind == "timeout":
        return "SignalWire did not answer in time (the request timed out)"
    if exc.kind == "connection_lost":
        return "The connection to SignalWire dropped before it answered"
    if exc.kind == "invalid_response":
        return "SignalWire's answer could not be read"
    return "SignalWire did not answer clearly"


# A process killed (or stopped past its drain) while its create request was in flight.
INTERRUPTED_CAUSE = "sms-bridge restarted while SignalWire was being asked to send this"


def unknown_notice(exc: OutcomeUnknown, *, resend_at: datetime | None, resend_in: float) -> str:
    """The thread reply posted the moment a create's outcome becomes unknown: what happened, what the bridge does
    about it, and when it will send again (``resend_at`` None: it will not, this was already the re-send)."""
    return checking_notice(unknown_cause(exc), resend_at=resend_at, resend_in=resend_in)


def checking_notice(cause: str, *, resend_at: datetime | None, resend_in: float) -> str:
    """``unknown_notice`` for any ``cause`` (one clause, e.g. ``INTERRUPTED_CAUSE`` after a restart)."""
    lines = [
        f"⚠️ {cause}, so it is not yet known whether the message went out.",
        "❓ Checking SignalWire's message logs now; nothing is sent twice.",
    ]
    if resend_at is not None:
        when = slack_time(resend_at, with_date=resend_in >= 6 * 3600)
        lines.append(f"If SignalWire has no record of it, it will be sent once more at {when} "
                     f"(in {duration(resend_in)}). Either way, this thread will say what was found.")
    else:
        lines.append("This was already the second attempt, so it will not be sent again automatically: "
                     "if the logs do not settle it, this thread will offer Retry.")
    return "\n".join(lines)


def found_text(via: str, status: MessageStatus | None = None) -> str:
    """An unknown outcome settled: SignalWire has the message (``via`` is "logs" or "callback")."""
    how = "SignalWire's message logs show it" if via == "logs" else "SignalWire's status callback confirms it"
    said = f" (status “{status.value}”)" if status is not None else ""
    return f"✅ Found it: {how}{said}. It went out once and will not be sent again."


def resend_text() -> str:
    return "🔁 SignalWire has no record of this message, so it was never sent: sending it once more."


def lookup_failed_text(retry_in: float) -> str:
    return (f"⏳ SignalWire's message logs could not be read just now; looking again in {duration(retry_in)}. "
            "Nothing is sent until they settle it.")
