"""The App Home tab (issue 12) as a pure function: status, scheduled sends, recent conversations, contacts, counts.

Owns: ``home_view`` (values in, one ``views.publish`` view out, always within Slack's limits: at most
``MAX_BLOCKS`` blocks, every text under its cap, user text Slack-escaped), the values it takes (``HomeStatus``,
``ConversationLine``), ``contacts_section`` (a count and the Add / Import / Export buttons, whose actions the
contacts slice handles) and ``engine_name`` (a database URL → ``sqlite`` / ``postgresql``, never the URL).
Sections built elsewhere (the contacts section, the schedule slice's ``scheduled_blocks``) come in as block lists
and are cut to fit.
Must not import: aiohttp, Slack packages, storage, ``handlers``. No I/O (``handlers.home`` gathers and publishes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.contacts import labelled
from bridge.model import HomeSummary, RecentConversation
from bridge.slack_text import escape_mrkdwn
from sw_api.text import format_number

MAX_BLOCKS = 100            # Slack's limit for a Home tab view
MAX_CONVERSATIONS = 10
MAX_CONTACT_BLOCKS = 10     # what the contacts section may take of the view
TEXT_CHARS = 150            # a conversation's last message, shown on one line
NAME_CHARS = 80
ERROR_CHARS = 200
HEADER_CHARS = 150          # Slack's limit for a header's plain text
SECTION_CHARS = 3000        # Slack's limit for a section's text

CONTACT_ACTIONS = (("contacts_add", "Add contact"), ("contacts_import", "Import CSV"),
                   ("contacts_export", "Export CSV"))


@dataclass(frozen=True, slots=True)
class HomeStatus:
    """The bridge's state as the Home tab reports it."""

    numbers: tuple[str, ...]   # our sending numbers, E.164
    simulated: bool            # SignalWire simulator (no real SMS) or live
    engine: str                # ``engine_name`` of DATABASE_URL
    summary: HomeSummary


@dataclass(frozen=True, slots=True)
class ConversationLine:
    """One conversation of the list: the stored values, the contact's name if it has one, the thread's link."""

    conversation: RecentConversation
    name: str | None = None
    permalink: str | None = None


def engine_name(database_url: str) -> str:
    """``sqlite`` or ``postgresql`` from the URL's scheme: the Home tab never shows the URL (it may hold a password)."""
    scheme = database_url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    return "unknown"


def shorten(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters (whitespace runs folded, an ellipsis when cut)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def safe_text(text: str, limit: int) -> str:
    """User text for mrkdwn: shortened first (the limit counts what the reader sees), then escaped."""
    return escape_mrkdwn(shorten(text, limit))


def slack_date(at: datetime) -> str:
    """A time Slack shows in the reader's own time zone (the fallback is UTC)."""
    fallback = at.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def safe_link(url: str | None, label: str) -> str | None:
    """A mrkdwn link to a Slack permalink, or None for anything that is not a plain https URL."""
    if not url or not url.startswith("https://") or any(c in url for c in "<>| \n\t"):
        return None
    return f"<{url.replace('&', '&amp;')}|{label}>"


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": shorten(text, HEADER_CHARS), "emoji": True}}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_CHARS]}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:SECTION_CHARS]}]}


_DIVIDER: dict[str, Any] = {"type": "divider"}


def status_blocks(status: HomeStatus) -> list[dict[str, Any]]:
    summary = status.summary
    numbers = ", ".join(format_number(n) for n in status.numbers[:10]) or "none"
    if len(status.numbers) > 10:
        numbers += f" and {len(status.numbers) - 10} more"
    mode = "Simulator (no real SMS is sent)" if status.simulated else "Live (SignalWire)"
    engine = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}.get(status.engine, "unknown")
    pending = summary.outbox_pending + summary.unsent
    fields = [
        f"*Sending numbers*\n{numbers}",
        f"*Mode*\n{mode}",
        f"*Database*\n{engine}",
        f"*Messages pending*\n{pending} ({summary.unsent} SMS not sent yet, {summary.outbox_pending} Slack updates)",
    ]
    blocks: list[dict[str, Any]] = [
        _header("SMS Bridge"),
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f[:2000]} for f in fields]},
    ]
    error = summary.last_error
    if error is None:
        blocks.append(_context("No errors recorded."))
    else:
        where = "Slack update" if error.source == "slack" else "SMS"
        what = safe_text(error.what, 40)
        detail = safe_text(error.detail, ERROR_CHARS) if error.detail.strip() else "no details"
        blocks.append(_context(f":warning: *Last error* {slack_date(error.at)} · {where} {what}: {detail}"))
    return blocks


def conversation_block(line: ConversationLine, several_numbers: bool) -> dict[str, Any]:
    c = line.conversation
    # The one way the app writes a contact (``labelled``), shortened first so the limit counts what is seen.
    name = shorten(line.name, NAME_CHARS) if line.name else None
    parts = [f"*{labelled(c.their_number, name)}*"]
    if several_numbers:
        parts.append(f"via {format_number(c.our_number)}")
    parts.append(slack_date(c.last_at or c.updated_at))
    link = safe_link(line.permalink, "Open thread")
    if link:
        parts.append(link)
    if c.last_text and c.last_text.strip():
        text = safe_text(c.last_text, TEXT_CHARS)
    elif c.last_has_media:
        text = "_(picture)_"
    else:
        text = "_(no text stored)_"
    arrow = "←" if c.last_inbound else "→"
    return _section(" · ".join(parts) + f"\n{arrow} {text}")


def contacts_section(count: int | None) -> list[dict[str, Any]]:
    """The contacts section: how many (``None``: not known here) and the buttons of the contacts slice."""
    if count is None:
        summary = "The team's address book: add people by name, or import a CSV (`name,number`)."
    else:
        summary = f"*{count}* contact{'s' if count != 1 else ''} in the team's address book."
    buttons = [{"type": "button", "action_id": action, "text": {"type": "plain_text", "text": label}}
               for action, label in CONTACT_ACTIONS]
    return [_section(summary), {"type": "actions", "block_id": "home_contacts", "elements": buttons}]


def home_view(
    status: HomeStatus,
    conversations: Sequence[ConversationLine],
    *,
    contacts_blocks: list[dict[str, Any]],
    scheduled_blocks: list[dict[str, Any]],
    conversations_hidden: bool = False,
) -> dict[str, Any]:
    """The Home tab, in the issue's order. ``conversations_hidden``: the reader may not send SMS
    (``SMS_ALLOWED_USERS``), so the conversations' texts are not shown to them. Whatever the data, the view stays
    within ``MAX_BLOCKS``: our own sections are bounded, the contacts section is cut to ``MAX_CONTACT_BLOCKS`` and
    the scheduled sends get what is left (with a note saying where to see the rest)."""
    top = status_blocks(status)
    several = len(status.numbers) > 1
    lines = list(conversations)[:MAX_CONVERSATIONS]
    recent: list[dict[str, Any]] = [_header("Recent conversations")]
    if conversations_hidden:
        recent.append(_context("Only people allowed to send SMS (`SMS_ALLOWED_USERS`) see the conversations here."))
    else:
        recent += [conversation_block(line, several) for line in lines] or [_context("No conversations yet.")]
    contacts = [_header("Contacts"), *contacts_blocks[:MAX_CONTACT_BLOCKS]]
    counts = [
        _header("Opt-outs and blocks"),
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Opted out*\n{status.summary.opted_out}"},
            {"type": "mrkdwn", "text": f"*Blocked*\n{status.summary.blocked}"},
        ]},
        _context("Numbers that texted STOP, and numbers on the team block list (`/sms blocked`)."),
    ]
    # Every section but the scheduled one, and the dividers between the five sections.
    fixed = len(top) + len(recent) + len(contacts) + len(counts) + 4
    room = MAX_BLOCKS - fixed - 1  # the scheduled section's header
    scheduled: list[dict[str, Any]] = [_header("Your scheduled sends")]
    if not scheduled_blocks:
        scheduled.append(_context("No scheduled sends."))
    elif len(scheduled_blocks) <= room:
        scheduled += scheduled_blocks
    else:
        scheduled += scheduled_blocks[: max(0, room - 1)]
        scheduled.append(_context("More scheduled sends than fit here: `/sms scheduled` lists them all."))
    blocks = [*top, _DIVIDER, *scheduled, _DIVIDER, *recent, _DIVIDER, *contacts, _DIVIDER, *counts]
    return {"type": "home", "callback_id": "sms_home", "blocks": blocks[:MAX_BLOCKS]}
