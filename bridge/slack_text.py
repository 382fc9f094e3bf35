"""Text crossing between Slack and SMS: mrkdwn escaping and reading what Slack sends in a slash command.

Owns: escaping user text for Slack (``&``, ``<``, ``>``), un-escaping Slack's own escapes, and Slack's
``<tel:…|…>`` link form.
Must not import: aiohttp, Slack packages, storage, ``handlers``. Pure functions.
"""

from __future__ import annotations

import re

_TEL_LINK = re.compile(r"<tel:([^|>]+)(?:\|[^>]*)?>")


def escape_mrkdwn(text: str) -> str:
    """Make arbitrary text inert in Slack: no mentions, no links, no channel pings.

    Slack documents exactly these three escapes; ``<!channel>`` becomes ``&lt;!channel&gt;`` and shows literally.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape_slack(text: str) -> str:
    """Undo Slack's escaping of ``&``, ``<``, ``>`` (``&amp;`` last, so ``&amp;lt;`` stays ``&lt;``)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def replace_tel_links(text: str) -> str:
    """``<tel:+15551234567|+1 555 123 4567>`` → ``+15551234567`` (Slack auto-links numbers it recognises)."""
    return _TEL_LINK.sub(lambda m: m.group(1), text)


def quote(text: str) -> str:
    """Escaped text as a Slack block quote, line by line."""
    return "\n".join(f">{line}" if line else ">" for line in escape_mrkdwn(text).split("\n"))
