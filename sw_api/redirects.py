"""Following HTTP redirects by hand, each hop checked before it is contacted: the one walk every guarded download uses.

Owns: ``follow(session, url, check=..., headers=..., max_redirects=...)``, an async context manager over an aiohttp
``ClientSession`` it is given and never closes. Each hop's URL goes to ``check`` first (``None``: may be contacted;
a string: why not) and is only then requested, with ``allow_redirects=False`` and that hop's own ``headers`` (so a
credential can be limited to one origin); a 301/302/303/307/308 is followed to its ``Location``, resolved against
the hop with ``yarl.URL.join``; the first other response is handed to the caller, open, with the URL it came from.
The exceptions carry data (the caller words the refusal):

    RedirectError(url)                    any of the below; ``url`` is the hop concerned
     ├── HopRefused(url, hop, reason)     ``check`` refused ``url``; it was not contacted (hop 0: the first URL)
     ├── BadLocation(url, status, location)  a redirect from ``url`` with no (readable) Location
     └── TooManyRedirects(url, max_redirects)  still redirected after ``max_redirects`` hops; ``url`` not contacted

Transport errors (``aiohttp.ClientError``, ``OSError``, ``TimeoutError``) pass through untouched; time limits are
the caller's (a ``ClientTimeout`` or ``asyncio.timeout`` around the whole walk).
Must not import: ``bridge``, ``handlers``, Slack packages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from yarl import URL

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

Check = Callable[[str], str | None]
Headers = Callable[[str], Mapping[str, str]]


class RedirectError(Exception):
    """A walk that ended without a final response; ``url`` is the hop concerned."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(message)
        self.url = url


class HopRefused(RedirectError):
    """``check`` refused ``url`` (``hop`` 0: the URL the walk started from); it was not contacted."""

    def __init__(self, url: str, hop: int, reason: str) -> None:
        super().__init__(url, f"hop {hop} refused: {reason}")
        self.hop = hop
        self.reason = reason


class BadLocation(RedirectError):
    """``url`` answered a redirect ``status`` whose ``Location`` was missing or unreadable."""

    def __init__(self, url: str, status: int, location: str | None) -> None:
        super().__init__(url, f"HTTP {status} without a usable Location")
        self.status = status
        self.location = location


class TooManyRedirects(RedirectError):
    """Still redirected after ``max_redirects`` hops; ``url`` (where it pointed next) was not contacted."""

    def __init__(self, url: str, max_redirects: int) -> None:
        super().__init__(url, f"more than {max_redirects} redirects")
        self.max_redirects = max_redirects


@dataclass(frozen=True, slots=True)
class Followed:
    """The first non-redirect response (open: read it inside the ``async with``), the URL that gave it, and how
    many redirects led there."""

    url: str
    response: aiohttp.ClientResponse
    redirects: int


def resolve(base: str, location: str | None) -> str | None:
    """``location`` (absolute or relative) resolved against ``base``; None if either cannot be read."""
    if not location:
        return None
    try:
        return str(URL(base).join(URL(location)))
    except (ValueError, TypeError):
        return None


def _no_headers(url: str) -> Mapping[str, str]:
    return {}


@asynccontextmanager
async def follow(session: aiohttp.ClientSession, url: str, *, check: Check, headers: Headers = _no_headers,
                 max_redirects: int) -> AsyncIterator[Followed]:
    """GET ``url``, following at most ``max_redirects`` redirects, each hop passed by ``check`` before it is
    contacted; yields the final response (see the module docstring for what is raised instead)."""
    current = url
    for hop in range(max_redirects + 1):
        why = check(current)
        if why is not None:
            raise HopRefused(current, hop, why)
        async with session.get(current, headers=dict(headers(current)), allow_redirects=False) as response:
            if response.status in REDIRECT_STATUSES:
                location = response.headers.get("Location")
                target = resolve(current, location)
                if target is None:
                    raise BadLocation(current, response.status, location)
                current = target
                continue
            yield Followed(current, response, hop)
            return
    raise TooManyRedirects(current, max_redirects)
