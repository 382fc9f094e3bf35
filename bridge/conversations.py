"""Text rules of a two-way conversation: opt-out keywords, internal notes, Slack markup → SMS, inbound rendering.

Owns: which inbound texts are STOP/START/HELP, which thread replies stay internal, turning Slack's markup into plain
SMS text, and the Slack text/blocks of an inbound SMS (always one post Slack accepts, whatever the payload; issue 13:
naming the bulk text it answers) and of opt-out notices.
Must not import: aiohttp, Slack packages, storage, ``handlers``. Pure functions.
"""

from __future__ import annotations

import enum
import re
import string
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from bridge.bulk_render import quoted_title
from bridge.contacts import labelled
from bridge.slack_blocks import (
    SECTION_TEXT,
    clip,
    fit_blocks,
    fit_text,
    more_note,
    pack,
    quote_lines,
    sections,
    shown,
)
from bridge.slack_text import escape_mrkdwn
from sw_api.models import InboundMessage, MediaItem
from sw_api.text import format_number


class Keyword(enum.StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"


# The keywords carriers and CTIA expect a sender to honour (shared/signalwire/FACTS.md, "Opt-out").
OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN_WORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_WORDS = frozenset({"HELP", "INFO"})

_STRIP = string.whitespace + string.punctuation + "¡¿“”‘’«»…"


def keyword_word(body: str | None) -> str:
    """The message as a keyword candidate: surrounding whitespace and punctuation dropped, upper case."""
    return (body or "").strip(_STRIP).upper()


def classify_keyword(body: str | None) -> Keyword | None:
    """The keyword an inbound text is, if the whole message (any case, ignoring surrounding punctuation) is one."""
    word = keyword_word(body)
    if word in OPT_OUT_WORDS:
        return Keyword.OPT_OUT
    if word in OPT_IN_WORDS:
        return Keyword.OPT_IN
    if word in HELP_WORDS:
        return Keyword.HELP
    return None


def is_internal_note(text: str) -> bool:
    """A thread reply meant for colleagues only: it starts with ``note:`` (any case) or ``//``."""
    head = text.lstrip()
    return head.startswith("//") or head[:5].lower() == "note:"


# Slack sends emoji as :shortcodes:. The full table lives in the `emoji` package, which is not a dependency; these
# are the ones support replies actually use. An unknown shortcode is left as typed, which still reads fine in an SMS.
EMOJI: Mapping[str, str] = {
    "wave": "👋", "smile": "😄", "slightly_smiling_face": "🙂", "grinning": "😀", "joy": "😂", "wink": "😉",
    "blush": "😊", "heart": "❤️", "thumbsup": "👍", "+1": "👍", "thumbsdown": "👎", "-1": "👎", "ok_hand": "👌",
    "pray": "🙏", "clap": "👏", "tada": "🎉", "white_check_mark": "✅", "heavy_check_mark": "✔️", "x": "❌",
    "warning": "⚠️", "calendar": "📅", "clock3": "🕒", "hourglass": "⌛", "truck": "🚚", "house": "🏠",
    "phone": "☎️", "iphone": "📱", "email": "📧", "package": "📦", "rocket": "🚀", "fire": "🔥", "star": "⭐",
    "sunglasses": "😎", "thinking_face": "🤔", "sweat_smile": "😅", "slightly_frowning_face": "🙁", "cry": "😢",
    "eyes": "👀", "raised_hands": "🙌", "muscle": "💪", "point_right": "👉", "sparkles": "✨", "coffee": "☕",
}

_USER = re.compile(r"<@([UW][A-Z0-9]+)(?:\|([^>]*))?>")
_CHANNEL = re.compile(r"<#([CG][A-Z0-9]+)(?:\|([^>]*))?>")
_SPECIAL = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>")
_SUBTEAM = re.compile(r"<!subteam\^[A-Z0-9]+(?:\|([^>]*))?>")
_LINK = re.compile(r"<((?:https?|mailto|tel):[^|>]+)(?:\|([^>]*))?>")
_SHORTCODE = re.compile(r":([a-z0-9_+\-]+):")


def mentioned_users(text: str) -> set[str]:
    """User ids mentioned as ``<@U…>`` (to look their display names up before ``slack_to_sms``)."""
    return {m.group(1) for m in _USER.finditer(text)}


def _link(match: re.Match[str]) -> str:
    target, label = match.group(1), match.group(2)
    plain = target.split(":", 1)[1] if target.startswith(("mailto:", "tel:")) else target
    if not label or label in (plain, target):
        return plain
    return f"{label} ({plain})"


def slack_to_sms(text: str, user_names: Mapping[str, str] | None = None) -> str:
    """Slack message markup → the plain text a phone should show.

    ``<@U1>`` → ``@Name`` (from ``user_names``, else the label Slack gave, else the id), ``<#C1|ops>`` → ``#ops``,
    ``<https://x|label>`` → ``label (https://x)``, ``:wave:`` → 👋, and Slack's ``&amp; &lt; &gt;`` un-escaped last
    so a literal ``&lt;`` typed by the user survives as ``<``.
    """
    names = user_names or {}
    out = _USER.sub(lambda m: "@" + (names.get(m.group(1)) or m.group(2) or m.group(1)), text)
    out = _CHANNEL.sub(lambda m: "#" + (m.group(2) or m.group(1)), out)
    out = _SPECIAL.sub(lambda m: "@" + m.group(1), out)
    out = _SUBTEAM.sub(lambda m: m.group(1) or "@team", out)
    out = _LINK.sub(_link, out)
    out = _SHORTCODE.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), out)
    return out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()


# -- rendering inbound texts and notices for Slack ----------------------------------------------------------------


# An inbound text is always one Slack post that Slack accepts, whatever SignalWire delivered: a real SMS is at
# most ~1600 characters (10 concatenated segments) and an MMS carries at most 10 attachments. Longer bodies are
# shown up to MAX_INBOUND_SHOWN characters (split over sections) with "…(N more characters not shown)"; more
# media than MAX_MEDIA_SHOWN get "+N more attachments not shown". Nothing is posted as a continuation, so the
# inbound text stays one outbox item / one post, and the thread does not fill with fragments of a flood.
MAX_INBOUND_SHOWN = 4000
MAX_MEDIA_SHOWN = 10
MAX_URL_SHOWN = 300
MAX_NUMBER_SHOWN = 40
MAX_TYPE_SHOWN = 80


def _safe_url(url: str) -> str | None:
    # Only web links become clickable; the URL itself is escaped so a crafted one cannot close the link early.
    # A URL too long to show whole is not made a (broken) link: it is shown cut, as text.
    if not url.lower().startswith(("https://", "http://")) or len(url) > MAX_URL_SHOWN:
        return None
    return escape_mrkdwn(url).replace("|", "%7C")


def media_lines(media: Sequence[MediaItem], more: int = 0) -> list[str]:
    """One line per attachment (at most ``MAX_MEDIA_SHOWN``), then how many more were not shown."""
    lines: list[str] = []
    for index, item in enumerate(media[:MAX_MEDIA_SHOWN], start=1):
        kind = shown(item.content_type or "unknown type", MAX_TYPE_SHOWN)
        url = _safe_url(item.url)
        label = f"📎 attachment {index} ({kind})"
        lines.append(f"<{url}|{label}>" if url else f"{label}: {shown(item.url, MAX_URL_SHOWN)}")
    if media:  # issue 11: mms-in — bridge.media_in uploads each one into the thread after this post
        count = min(len(media), MAX_MEDIA_SHOWN)
        lines.append(f"_📎 {count} attachment{'s' if count != 1 else ''} below in the thread_")
    hidden = more + max(0, len(media) - MAX_MEDIA_SHOWN)
    if hidden:
        lines.append(f"_+{hidden} more attachment{'s' if hidden != 1 else ''} not shown_")
    return lines


def _inbound_head(message: InboundMessage, new_conversation: bool, name: str | None = None,
                  bulk: str | None = None) -> str:
    # -- issue 12: "Dana Smith (+1 555-123-4567)" when the sender is a contact (``name``).
    sender = (labelled(message.from_, name) if len(message.from_) <= MAX_NUMBER_SHOWN
              else shown(format_number(message.from_), MAX_NUMBER_SHOWN))
    if bulk is not None:
        # -- issue 13: the first text after a bulk text answers it, whether it opens the conversation or not.
        return f"📥 {sender} replied to bulk {quoted_title(bulk)}"
    if new_conversation:
        return f"📥 *New conversation:* {sender} texted {shown(format_number(message.to), MAX_NUMBER_SHOWN)}"
    return f"📥 *{sender}* replied"


_INBOUND_FOOTER = ("_Reply in this thread to text them back. Start a reply with `note:` or `//` to keep it "
                   "internal._")


def _inbound_body(message: InboundMessage) -> tuple[list[str], str | None]:
    """(quoted lines of the body as far as it is shown, the "N more characters" note or None)."""
    if not message.body:
        return ([] if message.media or message.more_media else ["_(empty message)_"]), None
    body, hidden = clip(message.body, MAX_INBOUND_SHOWN)
    return quote_lines(body, SECTION_TEXT), (more_note(hidden) if hidden else None)


def inbound_text(message: InboundMessage, *, new_conversation: bool, name: str | None = None,
                 bulk: str | None = None) -> str:
    """The Slack message for one inbound SMS; every byte of the sender's text is escaped (mentions stay inert).
    ``bulk``: the title of the bulk text this one answers (issue 13), named in the header.

    Always within Slack's 40,000-character limit for a message's text (see ``MAX_INBOUND_SHOWN``)."""
    body, note = _inbound_body(message)
    parts = [_inbound_head(message, new_conversation, name, bulk), *body]
    if note:
        parts.append(note)
    parts.extend(media_lines(message.media, message.more_media))
    if new_conversation:
        parts.append(_INBOUND_FOOTER)
    return fit_text("\n".join(parts))


def inbound_blocks(message: InboundMessage, *, new_conversation: bool, name: str | None = None,
                   bulk: str | None = None) -> list[dict[str, Any]]:
    """The same as ``inbound_text`` as blocks: the body split over sections of at most 3000 characters, never
    more than Slack's 50 blocks: whatever the input, Slack takes the post."""
    body, note = _inbound_body(message)
    chunks = pack([_inbound_head(message, new_conversation, name, bulk), *body], SECTION_TEXT)
    tail = [note] if note else []
    tail.extend(media_lines(message.media, message.more_media))
    if new_conversation:
        tail.append(_INBOUND_FOOTER)
    if tail:
        chunks.extend(pack(tail, SECTION_TEXT))
    return fit_blocks(sections(chunks))


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def keyword_notice(keyword: Keyword, their: str, ours: str, at: datetime, name: str | None = None) -> str:
    who, number = labelled(their, name), format_number(ours)  # issue 12: the contact's name, if any
    if keyword is Keyword.OPT_OUT:
        return (f"🚫 *{who} opted out* of texts from {number} ({_when(at)}). The bridge will refuse to text them "
                "from this number until they text START.")
    if keyword is Keyword.OPT_IN:
        return f"🔔 *{who} opted back in* to texts from {number} ({_when(at)}). Replies here are sent again."
    return (f"ℹ️ {who} asked for help (HELP/INFO). Reply in this thread to answer them; they can text STOP to "
            "opt out.")


def opted_out_refusal(their: str, ours: str, at: datetime, keyword: str) -> str:
    """What a Slack user is told when a send is refused because the person opted out."""
    how = "SignalWire reported error 21610" if keyword == "21610" else f"they texted {keyword}"
    return (f"⛔ Nothing was sent: {format_number(their)} opted out of texts from {format_number(ours)} on "
            f"{_when(at)} ({how}). They must text START to {format_number(ours)} before you can text them again.")
