"""The simulator fetches an outbound MMS's media like SignalWire does (issue 11), so tests can see it could.

Owns: ``start(simulator, message_id, media)`` (one call in ``Simulator.create_message``): for a message created with
``MediaUrl``s, each URL is fetched in the background (a plain GET, no credentials, redirects followed, a time limit
and a size cap) and what came back is recorded as a ``MediaFetch`` — status, content type, length, or the error;
``fetches(simulator)`` lists them in the order they finished. The message's outcome does not depend on it.
Only loopback URLs are fetched (the bridge under test serves its /media there): a test or the offline demo never
reaches out to the internet; any other URL is recorded as not fetched.
Must not import: Slack packages, ``bridge``, ``handlers``.
"""

from __future__ import annotations

import ipaddress
import logging
import weakref
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

log = logging.getLogger(__name__)

FETCH_TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=3)
MAX_FETCH_BYTES = 5 * 1024 * 1024  # more than any carrier takes: read no further

class Simulator(Protocol):
    """What this module needs of ``sw_api.simulator.engine.Simulator`` (which imports this module)."""

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> Any: ...

    def _require_session(self) -> aiohttp.ClientSession: ...


_FETCHES: weakref.WeakKeyDictionary[Simulator, list[MediaFetch]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class MediaFetch:
    """What fetching one media URL of message ``message_id`` gave: ``status`` None means no answer (``error``)."""

    message_id: str
    url: str
    status: int | None
    content_type: str | None
    content_length: int | None  # the header, as announced
    length: int                 # bytes actually received
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "url": self.url, "status": self.status,
                "content_type": self.content_type, "content_length": self.content_length, "length": self.length,
                "error": self.error}


def fetches(simulator: Simulator) -> list[MediaFetch]:
    """Every fetch so far, in the order they finished."""
    return _FETCHES.setdefault(simulator, [])


def start(simulator: Simulator, message_id: str, media: tuple[str, ...]) -> None:
    if media:
        simulator._spawn(_fetch_all(simulator, message_id, media))


async def _fetch_all(simulator: Simulator, message_id: str, urls: tuple[str, ...]) -> None:
    session = simulator._require_session()
    for url in urls:
        fetches(simulator).append(await _fetch(session, message_id, url))


def _loopback(url: str) -> bool:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def _fetch(session: aiohttp.ClientSession, message_id: str, url: str) -> MediaFetch:
    if not _loopback(url):
        return MediaFetch(message_id, url, None, None, None, 0, "not fetched: the simulator fetches loopback URLs only")
    try:
        async with session.get(url, timeout=FETCH_TIMEOUT, allow_redirects=True) as response:
            received = 0
            async for chunk in response.content.iter_chunked(64 * 1024):
                received += len(chunk)
                if received > MAX_FETCH_BYTES:
                    break
            announced = response.headers.get("Content-Length")
            result = MediaFetch(message_id, url, response.status, response.headers.get("Content-Type"),
                                int(announced) if announced and announced.isdigit() else None, received)
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        result = MediaFetch(message_id, url, None, None, None, 0, f"{type(exc).__name__}: {exc}")
    log.info("fetched media of %s: %s", message_id, result.status if result.error is None else result.error)
    return result
