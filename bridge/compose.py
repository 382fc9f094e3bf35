"""Turning what a user typed (``/sms`` text or the modal's fields) into a valid ``SendRequest`` or precise errors.

Owns: the slash-command grammar, the validation rules shared by the command and the modal, and their wording.
Must not import: aiohttp, Slack packages, storage, ``handlers``. Pure functions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from bridge.compliance import BlockCommandError, block_command
from bridge.model import SendRequest
from bridge.slack_text import replace_tel_links, unescape_slack
from sw_api.text import MAX_BODY_CHARS, MAX_MEDIA, InvalidNumber, format_number, normalize_number, normalize_sender

USAGE = (
    "*Text someone from Slack*\n"
    "• `/sms +1 555 123 4567 Running 10 min late` sends right away\n"
    "• `/sms` opens a form (pick the sender number, add pictures, choose the channel for receipts)\n"
    "• Numbers can be typed as `+15551234567`, `+1 555-123-4567` or `(555) 123-4567` ({region} numbers)\n"
    "• `/sms block +1 555 123 4567 reason` stops every text to that number (for the whole team); "
    "`/sms unblock +1 555 123 4567` lifts it; `/sms blocked` lists them\n"
    # -- issue 12: scheduled sends
    "• `/sms schedule 17:30 +1 555 123 4567 Running late` sends later (`17:30` today or tomorrow, "
    "`2026-12-24 09:00`, `+2h`, `+45m`; your Slack time zone); `/sms scheduled` lists yours with Cancel\n"
    "• `/sms Dana Running late` or `/sms \"Dana Smith\" Running late` texts a contact; "
    "`/sms contact add Dana Smith +1 555 123 4567`, `/sms contact remove Dana Smith`, `/sms contacts [search]`\n"
    "• `/sms template add late Running {{minutes}} min late, sorry {{first_name}}!` saves a template; "
    "`/sms Dana #late minutes=10` sends it; `/sms template remove late`, `/sms templates`\n"
    # -- issue 13: bulk sends
    "• `/sms bulk` opens a form to text a list (numbers, contact names or a CSV file) with one preview, one "
    "progress message and a CSV report\n"
    "Delivery receipts appear in the thread of the message the bot posts."
)

# A token that may be part of a phone number as people type it.
_NUMBER_TOKEN = re.compile(r"^[+(]?[0-9][0-9().\-]*$|^\+$")


class ComposeError(ValueError):
    """Input that cannot become a send; ``field`` is the modal block it belongs to."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class SlashInput:
    """What ``/sms`` asked for: ``help``, the compose modal, or a quick send (number and text as typed)."""

    kind: str  # "help" | "modal" | "send" | "block" | "unblock" | "blocked" (number normalised, text: the reason)
    number: str = ""
    text: str = ""


def _reads_as_number(candidate: str, default_region: str) -> bool:
    try:
        normalize_number(candidate, default_region)
    except InvalidNumber:
        return False
    return True


def parse_slash_text(raw: str, default_region: str) -> SlashInput:
    """Split ``/sms`` text into a number and a message.

    A first word that is a whole phone number by itself (``+15551234567``, ``5551234567``) is the number. Otherwise
    the longest leading run of number-like words that reads as a phone number is (``+1 555 123 4567``,
    ``(555) 123-4567``). The message is the rest, with its own spacing and line breaks kept.
    """
    # Links first: Slack's ``<tel:…|…>`` markup is real ``<``/``>``; what the user typed arrives as ``&lt;``.
    text = unescape_slack(replace_tel_links(raw)).strip()
    if not text:
        return SlashInput("modal")
    if text.lower() in ("help", "-h", "--help", "?"):
        return SlashInput("help")
    # -- issue 11: the block list (``/sms block NUMBER [reason]``, ``/sms unblock NUMBER``, ``/sms blocked``)
    try:
        block = block_command(text.split(None, 1)[0], text, default_region)
    except BlockCommandError as exc:
        raise ComposeError("to", exc.message) from exc
    if block is not None:
        return SlashInput(block.action, number=block.number, text=block.reason)
    words = list(re.finditer(r"\S+", text))
    run = 0
    while run < len(words) and _NUMBER_TOKEN.match(words[run].group()):
        run += 1
    if run == 0:
        raise ComposeError("to", f"`{words[0].group()}` is not a phone number. Start with the number, e.g. "
                           "`/sms +1 555 123 4567 Running late` — or type `/sms help`.")
    # Numbering plans with variable-length numbers (DE, AT, …) make "+4930123456 5 min late" read as a longer
    # valid number; someone who typed the number as one word ended it at the space.
    ends = [1] if _reads_as_number(words[0].group(), default_region) else range(run, 0, -1)
    for end in ends:
        candidate = text[: words[end - 1].end()]
        if _reads_as_number(candidate, default_region):
            return SlashInput("send", number=candidate, text=text[words[end - 1].end():].strip())
    # Report the error for the whole run, which is what the user meant as the number.
    try:
        normalize_number(text[: words[run - 1].end()], default_region)
    except InvalidNumber as exc:
        raise ComposeError("to", f"{exc}. Type it with its country code, e.g. `+1 555 123 4567`.") from exc
    raise AssertionError("unreachable: a number that failed must fail again")  # pragma: no cover


def validate_send(
    *,
    to: str,
    body: str,
    from_: str | None,
    from_numbers: Sequence[str],
    default_region: str,
    user_id: str,
    channel_id: str,
    team_id: str = "",
    media_text: str = "",
    send_as_mms: bool = False,
    origin: str = "command",
    files: int = 0,
) -> SendRequest:
    """Validate every field; raises the first ``ComposeError`` for a command, see ``validate_all`` for modals.
    ``files``: Slack files the caller adds to ``media`` itself once published (issue 11)."""
    errors = validate_all(
        to=to, body=body, from_=from_, from_numbers=from_numbers, default_region=default_region,
        media_text=media_text, files=files,
    )
    if errors:
        field, message = next(iter(errors.items()))
        raise ComposeError(field, message)
    return SendRequest(
        user_id=user_id,
        channel_id=channel_id,
        team_id=team_id,
        to=normalize_number(to, default_region),
        from_=normalize_sender(from_, default_region) if from_ else from_numbers[0],
        body=body.strip(),
        media=parse_media(media_text),
        send_as_mms=send_as_mms,
        origin=origin,
    )


def parse_media(media_text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in media_text.splitlines() if line.strip())


def validate_all(
    *,
    to: str,
    body: str,
    from_: str | None,
    from_numbers: Sequence[str],
    default_region: str,
    media_text: str = "",
    files: int = 0,
) -> dict[str, str]:
    """Every problem, keyed by the modal block it belongs to (``to``, ``body``, ``from``, ``media``, ``files``:
    the modal's Slack files, counted with the URLs towards MMS's limit; issue 11)."""
    errors: dict[str, str] = {}
    try:
        normalize_number(to, default_region)
    except InvalidNumber as exc:
        errors["to"] = f"{exc}. Use the full number with country code, e.g. +1 555 123 4567."
    media = parse_media(media_text)
    text = body.strip()
    if not text and not media and not files:
        errors["body"] = "The message is empty. Type the text to send."
    elif len(text) > MAX_BODY_CHARS:
        errors["body"] = (
            f"The message is {len(text)} characters; SMS allows at most {MAX_BODY_CHARS}. "
            f"Shorten it by {len(text) - MAX_BODY_CHARS}."
        )
    if from_:
        try:
            sender = normalize_sender(from_, default_region)
        except InvalidNumber:
            sender = from_
        if sender not in from_numbers:
            allowed = ", ".join(format_number(n) for n in from_numbers)
            errors["from"] = f"{from_} is not one of this workspace's sender numbers ({allowed})."
    if len(media) > MAX_MEDIA:
        errors["media"] = f"{len(media)} media URLs given; at most {MAX_MEDIA} are allowed."
    elif files and len(media) + files > MAX_MEDIA:
        errors["files"] = (f"{files} files and {len(media)} picture URLs make {files + len(media)}; an MMS carries "
                           f"at most {MAX_MEDIA} pictures.")
    else:
        bad = [url for url in media if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc]
        if bad:
            errors["media"] = f"Not an http(s) URL: {bad[0]}. Put one public http(s) URL per line."
    return errors
