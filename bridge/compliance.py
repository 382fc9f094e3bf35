"""Compliance (issue 11): the STOP / START / HELP auto-replies and the team-wide block list, as pure rules and words.

Owns: ``ComplianceTexts`` (the configured texts, their ``{brand}`` / ``{contact}`` placeholders and their check at
start-up), which keyword asks for which auto-reply (the keyword families themselves are ``bridge.conversations``'),
the ``SendRequest`` of an auto-reply and its notice in the thread, the ``/sms block|unblock|blocked`` grammar, and
what Slack users are told about blocked numbers (refusals, the list, the mark on an inbound text).
Must not import: aiohttp, Slack packages, storage, ``handlers``. Pure functions.

Blocked numbers and auto-replies: a block is the team's choice not to text someone, not the person's; carriers
still expect STOP to be confirmed and HELP to be answered, so a blocked number gets exactly what an opted-out one
gets — the STOP confirmation and the HELP text, never the START confirmation nor anything a person sends. The
store enforces it (``OPT_OUT_EXEMPT`` in ``bridge.model``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge import conversations as conv
from bridge.model import AUTO_REPLY_ORIGIN, AutoReplyKind, BlockedNumber, SendRequest
from bridge.slack_blocks import fit_blocks
from bridge.slack_text import escape_mrkdwn
from sw_api.text import MAX_BODY_CHARS, InvalidNumber, format_number, normalize_number

DEFAULT_BRAND = "sms-bridge"
DEFAULT_CONTACT = "reply to this message"
DEFAULT_STOP_TEXT = "{brand}: You are unsubscribed and will receive no more messages. Reply START to resubscribe."
DEFAULT_START_TEXT = "{brand}: You are resubscribed and will receive messages again. Reply STOP to unsubscribe."
DEFAULT_HELP_TEXT = "{brand}: Reply STOP to unsubscribe. Msg & data rates may apply. Help: {contact}"

PLACEHOLDERS = ("brand", "contact")

# The user id an auto-reply is stored and audited under: the bridge itself, not a person.
AUTO_REPLY_USER = "sms-bridge"

MAX_REASON_CHARS = 200
MAX_LISTED = 100

_KIND_OF = {conv.Keyword.OPT_OUT: AutoReplyKind.STOP, conv.Keyword.OPT_IN: AutoReplyKind.START,
            conv.Keyword.HELP: AutoReplyKind.HELP}
_KIND_LABEL = {AutoReplyKind.STOP: "STOP confirmation", AutoReplyKind.START: "START confirmation",
               AutoReplyKind.HELP: "HELP answer"}


class TextError(ValueError):
    """A configured text that cannot be used; the message says why (``bridge.config`` names the variable)."""


def placeholder_error(text: str) -> str | None:
    """Why ``text`` is not a usable template (an unknown ``{x}``, a stray brace), or None."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        return f"is not a valid template ({exc}; write a literal brace as {{{{ or }}}})"
    for name in fields:
        if name not in PLACEHOLDERS:
            shown = "{" + name + "}" if name else "{}"
            return f"has an unknown placeholder {shown} (known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})"
    return None


@dataclass(frozen=True, slots=True)
class ComplianceTexts:
    """The auto-replies as configured (``bridge.config``); ``enabled`` False: none is sent (the carrier replies)."""

    enabled: bool = True
    brand: str = DEFAULT_BRAND
    contact: str = DEFAULT_CONTACT
    stop_text: str = DEFAULT_STOP_TEXT
    start_text: str = DEFAULT_START_TEXT
    help_text: str = DEFAULT_HELP_TEXT

    def template(self, kind: AutoReplyKind) -> str:
        return {AutoReplyKind.STOP: self.stop_text, AutoReplyKind.START: self.start_text,
                AutoReplyKind.HELP: self.help_text}[kind]

    def render(self, kind: AutoReplyKind) -> str:
        """The SMS text of ``kind``; ``TextError`` if it is unusable (``check`` finds that at start-up)."""
        template = self.template(kind)
        problem = placeholder_error(template)
        if problem is not None:
            raise TextError(problem)
        text = template.format(brand=self.brand, contact=self.contact).strip()
        if not text:
            raise TextError("is empty once its placeholders are filled in")
        if len(text) > MAX_BODY_CHARS:
            raise TextError(f"is {len(text)} characters once filled in; an SMS allows at most {MAX_BODY_CHARS}")
        return text

    def problems(self) -> dict[AutoReplyKind, str]:
        """Every text that cannot be sent, by kind (empty: all are fine)."""
        found: dict[AutoReplyKind, str] = {}
        for kind in AutoReplyKind:
            try:
                self.render(kind)
            except TextError as exc:
                found[kind] = str(exc)
        return found


def auto_reply_kind(keyword: conv.Keyword | None) -> AutoReplyKind | None:
    return None if keyword is None else _KIND_OF[keyword]


def auto_reply_request(kind: AutoReplyKind, texts: ComplianceTexts, *, our_number: str, their_number: str,
                       channel_id: str) -> SendRequest:
    """The text answering a keyword, from the number it was sent to; ``channel_id`` is where its thread is."""
    return SendRequest(user_id=AUTO_REPLY_USER, channel_id=channel_id, to=their_number, from_=our_number,
                       body=texts.render(kind), origin=AUTO_REPLY_ORIGIN)


def auto_reply_notice(kind: AutoReplyKind, body: str, their: str) -> str:
    """The thread's note that the bridge answered a keyword by itself (its receipts follow in the thread)."""
    quoted = "\n".join(">" + escape_mrkdwn(line) for line in body.splitlines() or [""])
    return f"🤖 *Auto-reply* ({_KIND_LABEL[kind]}) texted to {format_number(their)}:\n{quoted}"


# -- the block list --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlockCommand:
    """``/sms block NUMBER [reason]``, ``/sms unblock NUMBER`` or ``/sms blocked``, parsed and normalised."""

    action: str  # "block" | "unblock" | "blocked"
    number: str = ""
    reason: str = ""


class BlockCommandError(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_NUMBER_WORD = re.compile(r"^[+(]?[0-9][0-9().\-]*$|^\+$")

BLOCK_WORDS = ("block", "unblock", "blocked")


def block_command(words: str, text: str, default_region: str) -> BlockCommand | None:
    """``text`` as a block-list command (``words``: its first word), or None if it is not one.

    The number is read like ``/sms``'s (the longest leading run of number-like words that is a number, in
    ``default_region``); the rest is the reason. ``BlockCommandError`` says what is wrong."""
    action = words.lower()
    if action not in BLOCK_WORDS:
        return None
    rest = text[len(words):].strip()
    if action == "blocked":
        if rest:
            raise BlockCommandError("`/sms blocked` takes nothing after it: it lists the blocked numbers.")
        return BlockCommand("blocked")
    example = f"`/sms {action} +1 555 123 4567{' spam' if action == 'block' else ''}`"
    tokens = list(re.finditer(r"\S+", rest))
    run = 0
    while run < len(tokens) and _NUMBER_WORD.match(tokens[run].group()):
        run += 1
    if run == 0:
        raise BlockCommandError(f"Give the number to {action}, e.g. {example}.")
    for end in range(run, 0, -1):
        candidate = rest[: tokens[end - 1].end()]
        try:
            number = normalize_number(candidate, default_region)
        except InvalidNumber:
            continue
        reason = rest[tokens[end - 1].end():].strip()
        if action == "unblock" and reason:
            raise BlockCommandError(f"`/sms unblock` takes only the number, e.g. {example}.")
        if len(reason) > MAX_REASON_CHARS:
            raise BlockCommandError(f"The reason is {len(reason)} characters; keep it under {MAX_REASON_CHARS}.")
        return BlockCommand(action, number, reason)
    try:
        normalize_number(rest[: tokens[run - 1].end()], default_region)
    except InvalidNumber as exc:
        raise BlockCommandError(f"{exc}. Type it with its country code, e.g. {example}.") from exc
    raise AssertionError("unreachable: a number that failed must fail again")  # pragma: no cover


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def _reason(block: BlockedNumber) -> str:
    return escape_mrkdwn(block.reason) if block.reason else "no reason given"


def block_refusal(block: BlockedNumber) -> str:
    """What a Slack user is told when a send is refused because the number is blocked."""
    return (f"⛔ Nothing was sent: <@{block.blocked_by}> blocked {format_number(block.number)}: {_reason(block)} "
            f"({_when(block.blocked_at)}). `/sms unblock {format_number(block.number)}` lifts it.")


def blocked_text(number: str, reason: str, user_id: str) -> str:
    why = escape_mrkdwn(reason) if reason else "no reason given"
    return (f"🚫 <@{user_id}> blocked {format_number(number)}: {why}. Nothing will be sent to it from any of our "
            "numbers (except the STOP confirmation and HELP answer carriers require) until someone unblocks it.")


def already_blocked_text(block: BlockedNumber) -> str:
    return f"{format_number(block.number)} is blocked already: <@{block.blocked_by}> blocked it: {_reason(block)} " \
           f"({_when(block.blocked_at)})."


def unblocked_text(block: BlockedNumber, user_id: str) -> str:
    return (f"✅ <@{user_id}> unblocked {format_number(block.number)} (blocked by <@{block.blocked_by}>: "
            f"{_reason(block)}). It can be texted again.")


def not_blocked_text(number: str) -> str:
    return f"{format_number(number)} is not blocked; nothing changed."


def block_list_text(blocks: Sequence[BlockedNumber]) -> str:
    if not blocks:
        return "No number is blocked. Block one with `/sms block +1 555 123 4567 reason`."
    lines = [f"*Blocked numbers* ({len(blocks)}{'+' if len(blocks) >= MAX_LISTED else ''}):"]
    lines.extend(f"• {format_number(b.number)}: <@{b.blocked_by}> blocked it: {_reason(b)} ({_when(b.blocked_at)})"
                 for b in blocks)
    return "\n".join(lines)


def blocked_marker(block: BlockedNumber) -> str:
    return f"🚫 *blocked number* (<@{block.blocked_by}>: {_reason(block)}): replies here are not texted."


def mark_blocked(text: str, blocks: list[dict[str, Any]], block: BlockedNumber) -> tuple[str, list[dict[str, Any]]]:
    """An inbound text's post, marked as coming from a blocked number (a context line first)."""
    marker = blocked_marker(block)
    context = {"type": "context", "elements": [{"type": "mrkdwn", "text": marker}]}
    return f"{marker}\n{text}", fit_blocks([context, *blocks])

