"""Slack's external file upload, step by step: the ``bridge.media_in.SlackFiles`` port over slack_sdk.

Owns: ``SlackFilesOut`` — ``files.getUploadURLExternal`` and ``files.completeUploadExternal`` (the two API calls
of slack_sdk's ``files_upload_v2``, made one at a time so the file id can be recorded between them), the upload of
the bytes to the URL Slack issued (no token goes there: the URL itself is the credential, as in ``files_upload_v2``)
and ``files.info`` to see whether a file is already shared in a thread. Errors become ``SlackPortError`` /
``SlackTransientError`` like every other Slack call (``handlers.slack_out.port_error``).
Must not import: ``handlers`` siblings other than ``slack_out``, storage.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient

from bridge.ports import SlackPortError, SlackTransientError
from handlers.slack_out import SLACK_TIMEOUT_SECONDS, port_error

UPLOAD_TIMEOUT_SECONDS = 60.0  # a few MB over a slow link; the outbox lease is renewed meanwhile


class SlackFilesOut:
    """``client``: the bot's ``AsyncWebClient``; ``session``: for the upload URL (given, never closed)."""

    def __init__(self, client: AsyncWebClient, session: aiohttp.ClientSession) -> None:
        self.client = client
        self.session = session

    async def _api(self, method: str, **params: Any) -> dict[str, Any]:
        try:
            response = await self.client.api_call(method, params=params)
        except (SlackApiError, SlackRequestError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise port_error(exc) from exc
        data = response.data
        return data if isinstance(data, dict) else {}

    async def start_upload(self, filename: str, length: int) -> tuple[str, str]:
        data = await self._api("files.getUploadURLExternal", filename=filename, length=length)
        file_id, upload_url = data.get("file_id"), data.get("upload_url")
        if not isinstance(file_id, str) or not isinstance(upload_url, str) or not file_id or not upload_url:
            raise SlackPortError("files.getUploadURLExternal answered without file_id / upload_url")
        return file_id, upload_url

    async def send_bytes(self, upload_url: str, data: bytes, content_type: str, filename: str) -> None:
        timeout = aiohttp.ClientTimeout(total=UPLOAD_TIMEOUT_SECONDS, sock_connect=SLACK_TIMEOUT_SECONDS)
        try:
            async with self.session.post(upload_url, data=data, headers={"Content-Type": content_type},
                                         timeout=timeout, allow_redirects=False) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SlackTransientError(f"upload failed: {type(exc).__name__}") from exc
        if status == 429 or status >= 500:
            raise SlackTransientError(f"upload_http_{status}")
        if status != 200:
            raise SlackPortError(f"upload_http_{status}")

    async def complete_upload(self, file_id: str, title: str, channel: str, thread_ts: str) -> None:
        await self._api("files.completeUploadExternal", files=_files_json(file_id, title), channel_id=channel,
                        thread_ts=thread_ts)

    async def shared_in(self, file_id: str, channel: str, thread_ts: str) -> bool | None:
        try:
            data = await self._api("files.info", file=file_id)
        except SlackPortError as exc:
            if str(exc) in ("file_not_found", "file_deleted"):
                return None
            raise
        file = data.get("file") or {}
        shares = file.get("shares") or {}
        for scope in ("public", "private"):
            for share in (shares.get(scope) or {}).get(channel) or []:
                if isinstance(share, dict) and share.get("thread_ts") == thread_ts:
                    return True
        return False


def _files_json(file_id: str, title: str) -> str:
    return json.dumps([{"id": file_id, "title": title}])
