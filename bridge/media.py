"""Outbound MMS pictures (issue 11): what may be sent, and publishing the bytes for SignalWire to fetch.

Owns: the MMS limits and their wording (jpeg / png / gif recognised by their first bytes, never by name or by what
Slack says; a per-item size cap; at most ``MAX_MEDIA`` items), the safe file name and the unguessable token of a
published picture, its public URL ``PUBLIC_URL/media/<token>/<name>``, and ``MediaShelf`` (storing the bytes
through the ``Store`` so that any replica can serve them, until they expire).
Must not import: aiohttp, Slack packages, ``handlers``, storage (``MediaStore`` is the one method it needs).
Downloading from Slack is ``handlers.slack_files``; serving is ``handlers.media_route``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from bridge.model import MediaItem
from sw_api.text import MAX_MEDIA

DEFAULT_MAX_BYTES = 1024 * 1024
# Signatures of the picture types every MMS carrier takes (SignalWire's limits, shared/signalwire/FACTS.md).
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif"}
# The path of a published picture: what ``handlers.media_route`` serves and ``bridge.render`` shows inline.
TOKEN_PATTERN = r"[A-Za-z0-9_-]{32}"
MEDIA_PATH = re.compile(rf"/media/({TOKEN_PATTERN})/([A-Za-z0-9._-]{{1,100}})$")


class MediaRefused(ValueError):
    """A picture (or a set of them) that must not be sent; ``message`` names the limit, for people."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MediaUnavailable(RuntimeError):
    """A picture could not be fetched for a reason that may pass (Slack 5xx, a timeout): try again later."""


@dataclass(frozen=True, slots=True)
class MediaLimits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_items: int = MAX_MEDIA


@dataclass(frozen=True, slots=True)
class Picture:
    """A checked picture, ready to publish: its bytes, what they are, and a name safe in a URL."""

    name: str
    content_type: str
    data: bytes


def human_bytes(count: int) -> str:
    """``1048576`` → ``1 MB``; ``1536`` → ``1.5 KB`` (binary units, as people read a size cap)."""
    for unit, size in (("MB", 1024 * 1024), ("KB", 1024)):
        if count >= size:
            return f"{count / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{count} bytes"


def sniff(data: bytes) -> str | None:
    """The picture type by content (magic bytes), or None if it is none of jpeg, png, gif."""
    for signature, content_type in _SIGNATURES:
        if data.startswith(signature):
            return content_type
    return None


def check_count(count: int, limits: MediaLimits) -> None:
    if count > limits.max_items:
        raise MediaRefused(f"{count} files are attached; an MMS carries at most {limits.max_items} pictures.")


def check_size(name: str, size: int, limits: MediaLimits) -> None:
    if size > limits.max_bytes:
        raise MediaRefused(f"`{display_name(name)}` is {human_bytes(size)}; an MMS picture may be at most "
                           f"{human_bytes(limits.max_bytes)} (MMS_MAX_BYTES).")


def check_picture(name: str, data: bytes, limits: MediaLimits) -> Picture:
    """The picture, or ``MediaRefused`` naming the limit it breaks (size first, then type by content)."""
    check_size(name, len(data), limits)
    content_type = sniff(data)
    if content_type is None:
        raise MediaRefused(f"`{display_name(name)}` is not a JPEG, PNG or GIF picture (judged by its content, not "
                           "its name); an MMS can only carry those.")
    return Picture(safe_name(name, content_type), content_type, data)


def display_name(name: str) -> str:
    """A file name as shown in an explanation: no backticks or line breaks, not endless."""
    cleaned = re.sub(r"[`\r\n]", "", name).strip() or "file"
    return cleaned if len(cleaned) <= 80 else cleaned[:79] + "…"


def safe_name(name: str, content_type: str) -> str:
    """A URL-safe name ending in the extension of what the bytes are (``Holiday photo!.PNG`` → ``Holiday-photo.png``)
    — never the extension the name claimed."""
    stem = name.rsplit(".", 1)[0] if "." in name else name
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-_")[:60] or "picture"
    return f"{stem}.{EXTENSIONS[content_type]}"


def new_token() -> str:
    """32 URL-safe characters from 24 random bytes: a link nobody can guess."""
    return secrets.token_urlsafe(24)


def media_url(public_url: str, token: str, name: str) -> str:
    return f"{public_url.rstrip('/')}/media/{token}/{name}"


def is_published(url: str) -> bool:
    """True for a URL of the form ``…/media/<token>/<name>`` (a picture this bridge publishes)."""
    return MEDIA_PATH.search(url.split("?", 1)[0]) is not None


class MediaStore(Protocol):
    """The one ``Store`` method publishing needs (so this module, which ``bridge.render`` uses, imports no storage)."""

    async def media_put(self, item: MediaItem) -> None: ...


class MediaShelf:
    """Publishes checked pictures: stored in the database under a fresh token, served until ``days`` have passed."""

    def __init__(self, store: MediaStore, public_url: str, *, days: int) -> None:
        self.store = store
        self.public_url = public_url
        self.days = days

    async def publish(self, pictures: Sequence[Picture], now: datetime) -> tuple[str, ...]:
        """The public URLs, in order. A crash part-way leaves rows nobody links to; they expire like the rest."""
        urls: list[str] = []
        for picture in pictures:
            token = new_token()
            await self.store.media_put(MediaItem(token, picture.name, picture.content_type, picture.data, now,
                                                 now + timedelta(days=self.days)))
            urls.append(media_url(self.public_url, token, picture.name))
        return tuple(urls)
