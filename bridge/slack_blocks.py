"""Slack's size limits, and pure helpers that fit arbitrary text into them so a post is never refused for its size.

Owns: the limits the bridge's messages must respect (section text 3000, context element 2000 by our own margin,
50 blocks, 40,000 characters of fallback text) and turning raw user or SignalWire text into escaped mrkdwn pieces
that fit: split at line ends where possible, never inside an ``&amp;`` / ``&lt;`` / ``&gt;`` escape, and cut
with an honest "…(N more characters not shown)" when even that is too much.
Must not import: aiohttp, Slack packages, storage, ``handlers``. Pure functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.slack_text import escape_mrkdwn

SECTION_TEXT = 3000     # a section block's text (Slack: "must be less than 3001 characters")
CONTEXT_TEXT = 2000     # one context element's text (Slack allows 3000 per text object; we stay well inside)
MESSAGE_BLOCKS = 50     # blocks in one message
MESSAGE_TEXT = 40_000   # the top-level ``text`` of chat.postMessage (``msg_too_long`` beyond)
ELLIPSIS = "…"

_ESCAPED_WIDTH = {"&": 5, "<": 4, ">": 4}


def escaped_len(text: str) -> int:
    """``len(escape_mrkdwn(text))`` without building the string."""
    return len(text) + sum(_ESCAPED_WIDTH.get(ch, 1) - 1 for ch in text if ch in _ESCAPED_WIDTH)


def more_note(hidden: int) -> str:
    return f"_…({hidden} more character{'s' if hidden != 1 else ''} not shown)_"


def escaped_pieces(raw: str, limit: int) -> list[str]:
    """``raw`` escaped for mrkdwn, cut into pieces of at most ``limit`` characters; an escape is never split."""
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for ch in raw:
        width = _ESCAPED_WIDTH.get(ch, 1)
        if size + width > limit and current:
            pieces.append(escape_mrkdwn("".join(current)))
            current, size = [], 0
        current.append(ch)
        size += width
    if current or not pieces:
        pieces.append(escape_mrkdwn("".join(current)))
    return pieces


def pack(lines: Sequence[str], limit: int) -> list[str]:
    """Join mrkdwn lines with newlines into as few chunks of at most ``limit`` as possible (order kept).

    A single line longer than ``limit`` is cut (see ``cut``): callers split raw text with ``escaped_pieces``
    first, so this is only a safety net for text the bridge wrote itself."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        line = cut(line, limit)
        if not current:
            current = line
        elif len(current) + 1 + len(line) <= limit:
            current += "\n" + line
        else:
            chunks.append(current)
            current = line
    if current or not chunks:
        chunks.append(current)
    return chunks


def cut(mrkdwn: str, limit: int) -> str:
    """Already-escaped mrkdwn shortened to at most ``limit`` characters, ending in "…", never inside an escape."""
    if len(mrkdwn) <= limit:
        return mrkdwn
    end = max(0, limit - len(ELLIPSIS))
    amp = mrkdwn.rfind("&", max(0, end - 4), end)
    if amp != -1 and ";" not in mrkdwn[amp:end]:
        end = amp  # the cut would land inside "&amp;" / "&lt;" / "&gt;": drop the whole escape
    return mrkdwn[:end] + ELLIPSIS


def clip(raw: str, max_chars: int) -> tuple[str, int]:
    """(the first ``max_chars`` characters of ``raw``, how many were left out)."""
    if len(raw) <= max_chars:
        return raw, 0
    return raw[:max_chars], len(raw) - max_chars


def shown(raw: str, max_chars: int) -> str:
    """Raw text escaped for mrkdwn, at most ``max_chars`` of it, with "…" when something was left out."""
    head, hidden = clip(raw, max_chars)
    return escape_mrkdwn(head) + (ELLIPSIS if hidden else "")


def quote_lines(raw: str, limit: int = SECTION_TEXT) -> list[str]:
    """``slack_text.quote(raw)`` as lines of at most ``limit`` characters, each a block-quote line (``>``…)."""
    lines: list[str] = []
    for line in raw.split("\n"):
        if not line:
            lines.append(">")
        else:
            lines.extend(">" + piece for piece in escaped_pieces(line, limit - 1))
    return lines


def quote_chunks(raw: str, limit: int = SECTION_TEXT) -> list[str]:
    """The escaped block quote of ``raw`` in chunks that each fit one section."""
    return pack(quote_lines(raw, limit), limit)


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": cut(text, SECTION_TEXT)}}


def sections(chunks: Sequence[str]) -> list[dict[str, Any]]:
    return [section(chunk) for chunk in chunks if chunk]


def fit_text(text: str, limit: int = MESSAGE_TEXT) -> str:
    """A message's fallback ``text`` within Slack's limit (already mrkdwn, so cut with ``cut``)."""
    return cut(text, limit)


def fit_blocks(blocks: list[dict[str, Any]], limit: int = MESSAGE_BLOCKS) -> list[dict[str, Any]]:
    """At most ``limit`` blocks: the last ones (status, buttons) are kept, sections before them are dropped
    and a note says so. The renderers stay far below this; it is the guarantee, not the plan."""
    if len(blocks) <= limit:
        return blocks
    tail = 2
    kept = blocks[: limit - tail - 1]
    note = section(f"_…({len(blocks) - limit + 1} more parts not shown)_")
    return [*kept, note, *blocks[-tail:]]
