"""Inbound MMS pictures into the Slack thread: one durable outbox item (``Kind.MEDIA``) per attachment.

Owns: ``media_items`` (the outbox writes queued with an inbound text, one per attachment, after it in the same
outbox thread so Slack shows the text first and the pictures in order), ``InboundMedia.deliver`` (download through
a ``MediaSource``, upload through ``SlackFiles`` into the thread the text ended up in), the ports ``MediaSource``
and ``SlackFiles``, and the thread reply that stands in for a picture that could not be shown.
Must not import: aiohttp, Slack packages, ``handlers``, ``bridge.outbox`` (which calls this module). The fetcher is
``sw_api.media.MediaFetcher``, the Slack side ``handlers.slack_uploads.SlackFilesOut``.

Exactly-once upload: Slack's flow has three steps (``files.getUploadURLExternal`` → upload the bytes →
``files.completeUploadExternal``), and only the last one shows the file. The file id is recorded as the item's
``result`` (``outbox_note_result``, while the claim is held) before the bytes go up; an attempt that finds a file
id asks Slack (``files.info``) whether that file is already shared in the thread — then it is done — and otherwise
completes that same file again. So a crash or a Slack outage at any step delays the picture, never doubles it.
A picture that cannot be fetched (refused host, too large, timeout, HTTP error) or that Slack refuses for good
becomes a thread reply with its link, its content type and the reason: the text never depends on the pictures,
and nothing here runs before SignalWire is answered.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.model import OutboxItem, OutboxWrite
from bridge.ports import SlackPortError, SlackTransientError, is_transient, retry_after
from bridge.slack_blocks import shown
from bridge.slack_text import escape_mrkdwn
from sw_api.media_policy import FetchedMedia, FetchResult
from sw_api.models import MediaItem

log = logging.getLogger("bridge.media_in")

KIND = "media"  # bridge.outbox.Kind.MEDIA
FILE_PREFIX = "file:"
MAX_URL_SHOWN = 300


class MediaSource(Protocol):
    """Downloads one attachment; never raises for what the remote side does (``sw_api.media.MediaFetcher``)."""

    async def fetch(self, url: str, content_type: str | None = None, position: int = 1) -> FetchResult: ...


class SlackFiles(Protocol):
    """Slack's external upload flow (``handlers.slack_uploads``); every method raises ``SlackPortError``."""

    async def start_upload(self, filename: str, length: int) -> tuple[str, str]:
        """``files.getUploadURLExternal``: (file id, upload URL)."""

    async def send_bytes(self, upload_url: str, data: bytes, content_type: str, filename: str) -> None:
        """Upload the bytes to the URL ``start_upload`` gave."""

    async def complete_upload(self, file_id: str, title: str, channel: str, thread_ts: str) -> None:
        """``files.completeUploadExternal``: share the file into ``thread_ts`` of ``channel``."""

    async def shared_in(self, file_id: str, channel: str, thread_ts: str) -> bool | None:
        """``files.info``: whether the file is shared in that thread; None if Slack does not know the file."""


def media_items(thread_key: str, channel: str, message_id: str, media: Sequence[MediaItem]) -> list[OutboxWrite]:
    """One outbox item per attachment, queued after the inbound text under the same ``thread_key``."""
    total = len(media)
    return [
        OutboxWrite(thread_key, KIND, None, channel, {
            "message_id": message_id, "position": position, "total": total,
            "url": item.url, "content_type": item.content_type,
        })
        for position, item in enumerate(media, start=1)
    ]


def link_text(url: str, content_type: str | None, position: int, total: int, reason: str) -> str:
    """The reply standing in for a picture that is not shown: link, content type, reason (all inert mrkdwn)."""
    kind = shown(content_type or "unknown type", 80)
    label = f"📎 attachment {position} of {total} ({kind})"
    safe = url.lower().startswith(("https://", "http://")) and len(url) <= MAX_URL_SHOWN
    link = f"<{escape_mrkdwn(url).replace('|', '%7C')}|{label}>" if safe else f"{label}: {shown(url, MAX_URL_SHOWN)}"
    return f"⚠️ {link} is not shown here: {escape_mrkdwn(reason)}"


class MediaRetry(SlackTransientError):
    """A transient failure after the file id was recorded: the retry keeps that id (``outbox_result``)."""

    def __init__(self, cause: BaseException, outbox_result: str) -> None:
        super().__init__(str(cause) or type(cause).__name__, retry_after(cause))
        self.outbox_result = outbox_result


NoteResult = Callable[[str], Awaitable[bool]]
PostReply = Callable[[str, str, str], Awaitable[str]]  # (channel, thread_ts, text) → ts


@dataclass(frozen=True, slots=True)
class _Target:
    channel: str
    thread_ts: str


class InboundMedia:
    """Delivers ``Kind.MEDIA`` items for ``bridge.outbox.SlackOutbox`` (given to it as ``media=``)."""

    def __init__(self, source: MediaSource, files: SlackFiles) -> None:
        self.source = source
        self.files = files
        self.uploaded = 0
        self.refused = 0

    async def deliver(self, item: OutboxItem, channel: str, thread_ts: str, *, note_result: NoteResult,
                      post_reply: PostReply) -> str:
        """Put one attachment into ``thread_ts``; the return value is the item's result (``file:<id>`` or the
        ts of the stand-in reply). Raises a transient ``SlackPortError`` to be retried."""
        payload: dict[str, Any] = item.payload
        where = _Target(channel, thread_ts)
        if item.result and item.result.startswith(FILE_PREFIX):
            done = await self._resume(item.result.removeprefix(FILE_PREFIX), where, payload, item.result)
            if done is not None:
                return done
        fetched = await self.source.fetch(payload["url"], payload.get("content_type"), int(payload["position"]))
        if not isinstance(fetched, FetchedMedia):
            return await self._stand_in(where, payload, fetched.reason, post_reply)
        return await self._upload(fetched, where, payload, note_result, post_reply)

    async def _resume(self, file_id: str, where: _Target, payload: dict[str, Any], result: str) -> str | None:
        """An earlier attempt got a file id: done if it is shared in the thread, else complete it again. None: that
        file is gone (or Slack refuses to complete it), so start over with a new upload."""
        try:
            shared = await self.files.shared_in(file_id, where.channel, where.thread_ts)
            if shared:
                log.info("media %s of inbound %s already shared (file %s); not uploading again",
                         payload["position"], payload["message_id"], file_id)
                return result
            if shared is None:
                return None
            await self.files.complete_upload(file_id, _title(payload), where.channel, where.thread_ts)
        except SlackPortError as exc:
            if is_transient(exc):
                raise
            log.warning("media %s of inbound %s: file %s cannot be completed (%s); uploading it anew",
                        payload["position"], payload["message_id"], file_id, exc)
            return None
        self.uploaded += 1
        return result

    async def _upload(self, fetched: FetchedMedia, where: _Target, payload: dict[str, Any], note_result: NoteResult,
                      post_reply: PostReply) -> str:
        try:
            file_id, upload_url = await self.files.start_upload(fetched.filename, fetched.size)
        except SlackPortError as exc:
            if is_transient(exc):
                raise
            return await self._stand_in(where, payload, f"Slack refused the upload ({exc})", post_reply)
        result = FILE_PREFIX + file_id
        if not await note_result(result):
            raise SlackTransientError("outbox claim lost before the upload")
        try:
            await self.files.send_bytes(upload_url, fetched.data, fetched.content_type, fetched.filename)
            await self.files.complete_upload(file_id, _title(payload), where.channel, where.thread_ts)
        except SlackPortError as exc:
            if is_transient(exc):
                raise MediaRetry(exc, result) from exc
            return await self._stand_in(where, payload, f"Slack refused the upload ({exc})", post_reply)
        self.uploaded += 1
        return result

    async def _stand_in(self, where: _Target, payload: dict[str, Any], reason: str, post_reply: PostReply) -> str:
        self.refused += 1
        text = link_text(payload["url"], payload.get("content_type"), int(payload["position"]),
                         int(payload.get("total") or payload["position"]), reason)
        return await post_reply(where.channel, where.thread_ts, text)


def _title(payload: dict[str, Any]) -> str:
    return f"Attachment {payload['position']} of {payload.get('total') or payload['position']}"
