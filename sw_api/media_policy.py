"""Which inbound-MMS media URLs the bot may fetch, and what a fetch produced: the pure half of ``sw_api.media``.

Owns: ``MediaPolicy`` (the SignalWire space's own origin — scheme, host and port exactly as configured — plus the
``SIGNALWIRE_MEDIA_HOSTS`` allow-list, https only; which origin gets the space's Basic auth — origins compared as
``sw_api.origins`` normalises them), the fetch results
``FetchedMedia`` / ``MediaRefused`` with their reasons, and naming a fetched file.
Must not import: aiohttp, Slack packages, ``bridge``, ``handlers``. Pure functions, no I/O: the decision whether a
host may be contacted is taken here, before anything connects.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from sw_api.origins import origin_of

MB = 1024 * 1024
DEFAULT_MAX_BYTES = 5 * MB
DEFAULT_TIMEOUT_SECONDS = 20.0
MAX_REDIRECTS = 5

_HOST_NAME = re.compile(r"(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
MAX_FILENAME = 80


def parse_media_hosts(text: str) -> tuple[str, ...]:
    """``SIGNALWIRE_MEDIA_HOSTS``: comma-separated host names (no scheme, port or path), lower-cased, deduplicated.
    Raises ``ValueError`` naming the first bad entry."""
    hosts: list[str] = []
    for raw in filter(None, (e.strip() for e in text.split(","))):
        host = raw.lower().rstrip(".")
        if not _HOST_NAME.fullmatch(host):
            raise ValueError(f"entry {raw!r} is not a host name (give names only, no scheme, port or path)")
        if host not in hosts:
            hosts.append(host)
    return tuple(hosts)


def megabytes(size: int) -> str:
    """``5242880`` → ``5 MB``; ``1572864`` → ``1.5 MB``."""
    return f"{size / MB:.3g} MB"


@dataclass(frozen=True, slots=True)
class MediaPolicy:
    """Where media may come from. ``space_url``: the space's base URL (``https://example.signalwire.com``, or
    ``http://127.0.0.1:PORT`` for the simulator) — that exact origin only. ``hosts``: more host names, https on
    port 443 only, trusted whatever address they resolve to. Every other URL is refused without being contacted."""

    space_url: str
    hosts: tuple[str, ...] = ()
    max_bytes: int = DEFAULT_MAX_BYTES
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    max_redirects: int = MAX_REDIRECTS

    def refusal(self, url: str) -> str | None:
        """Why ``url`` must not be fetched, or None if it may be."""
        origin = origin_of(url)
        if origin is None:
            return "not an http(s) URL"
        if self.is_space(url):
            return None
        if origin.host in self.hosts:
            if origin.scheme != "https":
                return f"not https: {origin.host}"
            if origin.port != 443:
                return f"not an allowed port: {origin.host}:{origin.port}"
            return None
        return f"not an allowed host: {_host_label(url)}"

    def is_space(self, url: str) -> bool:
        """Whether ``url`` is on the space's own origin: only such requests carry the space's credentials."""
        mine = origin_of(self.space_url)
        return mine is not None and origin_of(url) == mine


def _host_label(url: str) -> str:
    """The host (with its port when the URL names one), never the path: media URLs are unguessable secrets."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        port = parts.port
    except ValueError:
        return "an unreadable URL"
    if not host:
        return "a URL without a host"
    return f"{host}:{port}" if port else host


@dataclass(frozen=True, slots=True)
class FetchedMedia:
    """A downloaded attachment: its bytes, its content type (the server's, else the webhook's) and a file name."""

    data: bytes = field(repr=False)
    content_type: str
    filename: str

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class MediaRefused:
    """Not downloaded: ``reason`` says why in words a Slack reader understands ("larger than 5 MB", "HTTP 404")."""

    reason: str


FetchResult = FetchedMedia | MediaRefused


def content_type_of(header: str | None, fallback: str | None) -> str:
    """The media type without parameters (``image/jpeg; charset=x`` → ``image/jpeg``), else ``fallback``."""
    value = (header or "").split(";", 1)[0].strip().lower()
    if value and "/" in value and value != "application/octet-stream":
        return value
    return (fallback or value or "application/octet-stream").split(";", 1)[0].strip().lower()


def filename_for(url: str, content_type: str, position: int, disposition: str | None = None) -> str:
    """A safe file name for Slack: the server's ``Content-Disposition`` name, else the URL's last path segment,
    else ``picture-N``; an extension matching the content type is added when there is none."""
    name = ""
    if disposition:
        found = re.search(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', disposition, re.IGNORECASE)
        if found:
            name = unquote(found.group(1))
    if not name:
        try:
            name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        except ValueError:
            name = ""
    name = _SAFE_NAME.sub("_", name).strip("._")[:MAX_FILENAME]
    if not name:
        name = f"picture-{position}"
    if "." not in name:
        extension = mimetypes.guess_extension(content_type) or ""
        name += {".jpe": ".jpg"}.get(extension, extension)
    return name

