"""Downloading inbound-MMS media safely: the I/O half of ``sw_api.media_policy``.

Owns: ``MediaFetcher.fetch(url, content_type, position)`` over an aiohttp ``ClientSession`` it is given and never
closes. Every hop is checked against the ``MediaPolicy`` *before* it is contacted (redirects are followed by hand
with ``sw_api.redirects``, at most ``max_redirects``); the space's Basic auth goes only to the space's own origin;
``Content-Length`` is checked first and reading stops past ``max_bytes``; the whole fetch (every hop) is bounded by
``timeout``.
A fetch never raises for anything the remote side does: it returns ``FetchedMedia`` or ``MediaRefused(reason)``.
Must not import: Slack packages, ``bridge``, ``handlers``.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import aiohttp

from sw_api import redirects, sansio
from sw_api.client import USER_AGENT
from sw_api.media_policy import (
    FetchedMedia,
    FetchResult,
    MediaPolicy,
    MediaRefused,
    content_type_of,
    filename_for,
    megabytes,
)

log = logging.getLogger("sw_api.media")

_CHUNK = 64 * 1024


class MediaFetcher:
    """Fetch media under ``policy``; ``project_id`` / ``api_token`` authenticate to the space only."""

    def __init__(self, session: aiohttp.ClientSession, policy: MediaPolicy, *, project_id: str = "",
                 api_token: str = "") -> None:
        self.session = session
        self.policy = policy
        self._auth = sansio.basic_auth_header(project_id, api_token) if project_id and api_token else None

    def headers_for(self, url: str) -> dict[str, str]:
        """The request headers for one hop: the space's Basic auth only on the space's own origin."""
        headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
        if self._auth is not None and self.policy.is_space(url):
            headers["Authorization"] = self._auth
        return headers

    async def fetch(self, url: str, content_type: str | None = None, position: int = 1) -> FetchResult:
        """Download one attachment (``content_type``: the webhook's, used when the server sends none)."""
        try:
            async with asyncio.timeout(self.policy.timeout):
                result = await self._fetch(url, content_type, position)
        except TimeoutError:
            result = MediaRefused(f"timed out after {self.policy.timeout:g} s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            # ValueError: aiohttp refusing a malformed URL or header the remote side sent.
            result = MediaRefused(f"download failed ({type(exc).__name__})")
        if isinstance(result, MediaRefused):
            log.info("media %d from %s not fetched: %s", position, _host(url), result.reason)
        return result

    async def _fetch(self, url: str, hint: str | None, position: int) -> FetchResult:
        try:
            async with redirects.follow(self.session, url, check=self.policy.refusal, headers=self.headers_for,
                                        max_redirects=self.policy.max_redirects) as followed:
                response = followed.response
                if response.status != 200:
                    return MediaRefused(f"HTTP {response.status}")
                limit = self.policy.max_bytes
                too_big = MediaRefused(f"larger than {megabytes(limit)}")
                if response.content_length is not None and response.content_length > limit:
                    response.close()
                    return too_big
                data = bytearray()
                async for chunk in response.content.iter_chunked(_CHUNK):
                    data += chunk
                    if len(data) > limit:
                        response.close()  # drop the connection: nothing more is read
                        return too_big
                kind = content_type_of(response.headers.get("Content-Type"), hint)
                name = filename_for(followed.url, kind, position, response.headers.get("Content-Disposition"))
                return FetchedMedia(bytes(data), kind, name)
        except redirects.HopRefused as refused:
            return MediaRefused(refused.reason if refused.hop == 0 else f"redirected elsewhere, {refused.reason}")
        except redirects.BadLocation as bad:
            return MediaRefused(f"HTTP {bad.status} without a Location")
        except redirects.TooManyRedirects as many:
            return MediaRefused(f"more than {many.max_redirects} redirects")


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"
