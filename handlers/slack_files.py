"""Downloading Slack files to send them as MMS (issue 11), with the bot token going nowhere but Slack.

Owns: ``SlackFiles`` — ``files.info`` for each file id (Slack's own word on where the file is), the download of
``url_private_download`` with ``Authorization: Bearer <bot token>`` **only** when its host is on an explicit, small
list (the host of ``SLACK_API_URL`` and Slack's file hosts; scheme and port as configured for the API host, https for
the others), redirects followed by hand (``sw_api.redirects``) and only within that list (the token is never
carried elsewhere; origins compared as ``sw_api.origins`` normalises them: ``files.slack.com.:443`` is
``files.slack.com``), a size cap read as the bytes arrive, and the checks of ``bridge.media`` (count, size, type
by content).
Refusals are ``MediaRefused`` (nothing is sent; the message names the limit); Slack trouble that may pass is
``MediaUnavailable``.
Must not import: storage, SignalWire modules (``sw_api.origins`` / ``sw_api.redirects``, generic HTTP helpers, are
the exception).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge.config import Config
from bridge.media import MediaLimits, MediaRefused, MediaUnavailable, Picture, check_count, check_picture, check_size
from bridge.ports import is_transient
from handlers.slack_out import port_error
from sw_api import redirects
from sw_api.origins import Origin, origin_of

log = logging.getLogger("handlers.slack_files")

# Where Slack serves files from (besides the API host itself): https only. Kept explicit and small on purpose.
SLACK_FILE_HOSTS = frozenset({"files.slack.com", "files-origin.slack.com"})
DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=20, sock_connect=5)
MAX_REDIRECTS = 3


class SlackFiles:
    """The bot's view of Slack files: what they are and their bytes, checked against the MMS limits."""

    def __init__(self, *, token: str, api_url: str, limits: MediaLimits) -> None:
        self._token = token
        self.limits = limits
        api = origin_of(api_url)
        self._trusted: set[Origin] = {Origin.https(host) for host in SLACK_FILE_HOSTS}
        if api is not None:
            self._trusted.add(api)

    @classmethod
    def from_config(cls, config: Config) -> SlackFiles:
        return cls(token=config.slack_bot_token, api_url=config.slack_api_url,
                   limits=MediaLimits(max_bytes=config.mms_max_bytes))

    def trusted(self, url: str) -> bool:
        """May the bot token be sent to this URL? Only Slack's API host (as configured) and Slack's file hosts."""
        origin = origin_of(url)
        return origin is not None and origin in self._trusted

    async def fetch_ids(self, client: AsyncWebClient, file_ids: Sequence[str]) -> list[Picture]:
        """The pictures of these Slack files, in order, each looked up with ``files.info``."""
        check_count(len(file_ids), self.limits)
        infos = [await self._info(client, file_id) for file_id in file_ids]
        return await self.fetch(infos)

    async def fetch(self, files: Sequence[dict[str, Any]]) -> list[Picture]:
        """The pictures of these Slack file objects (as ``files.info`` or a modal's ``file_input`` gives them)."""
        check_count(len(files), self.limits)
        for info in files:  # cheap refusals first: nothing is downloaded for a set that cannot go
            size = info.get("size")
            if isinstance(size, int):
                check_size(str(info.get("name") or info.get("id") or "file"), size, self.limits)
        async with aiohttp.ClientSession(timeout=DOWNLOAD_TIMEOUT) as session:
            return [await self._download(session, info) for info in files]

    async def _located(self, client: AsyncWebClient, file_id: str) -> tuple[str, str, dict[str, Any]]:
        """(name, download URL, ``files.info``'s file) of a Slack file on a Slack file host, else ``MediaRefused``."""
        info = await self._info(client, file_id)
        name = str(info.get("name") or info.get("title") or file_id)
        url = info.get("url_private_download") or info.get("url_private")
        if not isinstance(url, str) or not url:
            raise MediaRefused(f"Slack gave no download link for `{name}`.")
        if not self.trusted(url):
            raise MediaRefused(f"`{name}` is not stored on a Slack file host, so I did not download it.")
        return name, url, info

    # -- issue 12: a contacts CSV from the App Home's import form: the same lookup and token-guarded download,
    # checked only for size (it is not a picture).
    async def fetch_data(self, client: AsyncWebClient, file_id: str) -> tuple[str, bytes]:
        """(name, bytes) of one Slack file; ``MediaRefused`` / ``MediaUnavailable`` as for pictures."""
        name, url, info = await self._located(client, file_id)
        size = info.get("size")
        if isinstance(size, int):
            check_size(name, size, self.limits)
        try:
            async with aiohttp.ClientSession(timeout=DOWNLOAD_TIMEOUT) as session:
                return name, await self._get(session, url, name, file_id)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise MediaUnavailable(f"download of {file_id}: {type(exc).__name__}") from exc

    # -- issue 13: a bulk send's CSV, read as a stream (the parser stops reading past its own limit).
    async def stream_data(self, client: AsyncWebClient, file_id: str, *,
                          chunk_size: int = 64 * 1024) -> AsyncGenerator[bytes, None]:
        """One Slack file's bytes as they arrive; the same lookup, host checks and errors as ``fetch_data``, but no
        size cap here: the caller stops iterating (close it with ``contextlib.aclosing``) when it has enough."""
        name, url, _ = await self._located(client, file_id)
        try:
            async with aiohttp.ClientSession(timeout=DOWNLOAD_TIMEOUT) as session, \
                    redirects.follow(session, url, check=self._refusal, headers=self._headers,
                                     max_redirects=MAX_REDIRECTS) as followed:
                response = followed.response
                if response.status >= 500 or response.status == 429:
                    raise MediaUnavailable(f"download of {file_id}: HTTP {response.status}")
                if response.status != 200 or response.content_type == "text/html":
                    raise MediaRefused(f"Slack refused the download of `{name}` (HTTP {response.status}); is the "
                                       "`files:read` scope granted?")
                async for chunk in response.content.iter_chunked(chunk_size):
                    yield chunk
        except (redirects.HopRefused, redirects.BadLocation, redirects.TooManyRedirects) as exc:
            raise MediaRefused(f"Slack redirected the download of `{name}` where I will not follow.") from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise MediaUnavailable(f"download of {file_id}: {type(exc).__name__}") from exc

    async def _info(self, client: AsyncWebClient, file_id: str) -> dict[str, Any]:
        try:
            response = await client.files_info(file=file_id)
        except (SlackApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            error = port_error(exc)
            if is_transient(error):
                raise MediaUnavailable(f"files.info {file_id}: {error}") from exc
            raise MediaRefused(f"Slack would not let me read the attached file ({error}); is the `files:read` "
                               "scope granted?") from exc
        file = response.get("file")
        if not isinstance(file, dict):
            raise MediaRefused("Slack did not describe the attached file.")
        return file

    async def _download(self, session: aiohttp.ClientSession, info: dict[str, Any]) -> Picture:
        name = str(info.get("name") or info.get("title") or info.get("id") or "file")
        url = info.get("url_private_download") or info.get("url_private")
        if not isinstance(url, str) or not url:
            raise MediaRefused(f"Slack gave no download link for `{name}`.")
        if not self.trusted(url):
            # Never contacted: the token must not leave Slack, and an unknown host has no business serving it.
            log.warning("file %s: download URL host %s is not a Slack file host; refused without contacting it",
                        info.get("id"), urlsplit(url).hostname)
            raise MediaRefused(f"`{name}` is not stored on a Slack file host, so I did not download it.")
        try:
            data = await self._get(session, url, name, str(info.get("id")))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise MediaUnavailable(f"download of {info.get('id')}: {type(exc).__name__}") from exc
        return check_picture(name, data, self.limits)

    async def _get(self, session: aiohttp.ClientSession, url: str, name: str, file_id: str) -> bytes:
        # Redirects are followed by hand, and only to trusted hosts: aiohttp would carry the token anywhere.
        try:
            async with redirects.follow(session, url, check=self._refusal, headers=self._headers,
                                        max_redirects=MAX_REDIRECTS) as followed:
                return await self._read(followed.response, name, file_id)
        except redirects.HopRefused as refused:
            log.warning("file %s: redirected to %s, not a Slack file host; not followed", file_id,
                        _hostname(refused.url))
            raise MediaRefused(f"Slack sent the download of `{name}` to another host; I did not "
                               "follow it.") from refused
        except redirects.BadLocation as bad:
            raise MediaRefused(f"Slack redirected the download of `{name}` without saying where (HTTP "
                               f"{bad.status}).") from bad
        except redirects.TooManyRedirects as many:
            raise MediaRefused(f"Slack redirected the download of `{name}` too many times.") from many

    def _refusal(self, url: str) -> str | None:
        return None if self.trusted(url) else "not a Slack file host"

    def _headers(self, url: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}  # only ever asked for trusted hops: _refusal ran first

    async def _read(self, response: aiohttp.ClientResponse, name: str, file_id: str) -> bytes:
        if response.status >= 500 or response.status == 429:
            raise MediaUnavailable(f"download of {file_id}: HTTP {response.status}")
        if response.status != 200:
            raise MediaRefused(f"Slack refused the download of `{name}` (HTTP {response.status}); is the "
                               "`files:read` scope granted?")
        if response.content_type == "text/html":
            # What Slack answers a token that may not read the file: its sign-in page, not the file.
            raise MediaRefused(f"Slack answered with a web page instead of `{name}`; is the `files:read` "
                               "scope granted?")
        if response.content_length is not None:
            check_size(name, response.content_length, self.limits)
        data = bytearray()
        async for chunk in response.content.iter_chunked(64 * 1024):
            data += chunk
            if len(data) > self.limits.max_bytes:
                check_size(name, len(data), self.limits)  # raises: read no further
        return bytes(data)


def _hostname(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None
