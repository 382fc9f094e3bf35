"""The fake Slack's file uploads: Slack's external upload flow, as slack_sdk's ``files_upload_v2`` drives it.

Owns: ``FakeUploads`` (every file the app uploaded, its bytes and where it was shared) with the Web API methods
``files.getUploadURLExternal`` (an ``upload_url`` on the fake itself plus a ``file_id``),
``files.completeUploadExternal`` (``files`` JSON, ``channel_id``, ``thread_ts``: the file appears as a bot message
in that thread, so ``FakeSlack.thread`` and the transcript show pictures in order) and ``files.info`` (with
``shares``), and the upload URL route ``POST /upload/{file_id}/{key}`` that stores the bytes.
Registered by ``demo.fake_slack`` (``FakeSlack.uploads``, routes added by its ``create_app``), which imports this
module only when a ``FakeSlack`` is built, since this one imports it.
Must not import: ``bridge``, ``handlers``, ``bot``, ``sw_api``.

Like the rest of the fake: the Web API methods go through ``FakeSlack.handle`` (bearer token, ``add_response``
faults, ``outage``); the upload URL needs no token (the URL is the credential, as at Slack), fails during an
``outage`` too, and ``fail_uploads(n)`` makes the next ``n`` uploads answer an HTTP error. Completing the same
file twice shares it twice, as a careless client would see at Slack: tests can count.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from demo.fake_slack import ApiCall, FakeSlack, SlackError, SlackMessage

_SCOPE = "files:write"


@dataclass(slots=True)
class FakeFile:
    """One uploaded file. ``shares``: (channel, thread_ts or None, message ts) for each time it was shared."""

    id: str
    filename: str
    length: int
    key: str
    title: str = ""
    data: bytes | None = None
    content_type: str = ""
    shares: list[tuple[str, str | None, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        public: dict[str, list[dict[str, Any]]] = {}
        for channel, thread_ts, ts in self.shares:
            entry: dict[str, Any] = {"ts": ts}
            if thread_ts:
                entry["thread_ts"] = thread_ts
            public.setdefault(channel, []).append(entry)
        return {
            "id": self.id, "name": self.filename, "title": self.title or self.filename, "size": self.length,
            "mimetype": self.content_type, "shares": {"public": public} if public else {},
            "channels": sorted(public),
        }


class FakeUploads:
    """Upload state of one ``FakeSlack``; its methods are registered into the fake's Web API dispatch."""

    def __init__(self, fake: FakeSlack) -> None:
        self.fake = fake
        self.files: dict[str, FakeFile] = {}
        self.upload_requests = 0
        self._ids = itertools.count(1)
        self._faults: deque[int] = deque()
        self._lost_answers = 0
        fake._handlers.update({
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete,
            "files.info": self._info,
        })

    # ----- inspection and faults ------------------------------------------------------------------

    def shared_in(self, channel: str, thread_ts: str) -> list[FakeFile]:
        """Files shared into that thread, once per share, in the order they were shared."""
        found = [(ts, f) for f in self.files.values() for (c, t, ts) in f.shares if c == channel and t == thread_ts]
        return [f for _, f in sorted(found, key=lambda pair: _ts_key(pair[0]))]

    def fail_uploads(self, count: int = 1, status: int = 500) -> None:
        """The next ``count`` POSTs to an upload URL answer ``status`` and store nothing."""
        self._faults.extend([status] * count)

    def lose_complete_answers(self, count: int = 1) -> None:
        """The next ``count`` ``files.completeUploadExternal`` calls share the file and then answer
        ``internal_error`` (a transient error): the client cannot tell that it worked."""
        self._lost_answers += count

    # ----- Web API methods -------------------------------------------------------------------------

    def _check_scope(self) -> None:
        if self.fake.scopes is not None and _SCOPE not in self.fake.scopes:
            raise SlackError("missing_scope", needed=_SCOPE, provided=",".join(sorted(self.fake.scopes)))

    def _get_upload_url(self, payload: dict[str, Any]) -> dict[str, Any]:
        self._check_scope()
        filename, length = payload.get("filename"), str(payload.get("length", ""))
        if not isinstance(filename, str) or not filename or not length.isdigit():
            raise SlackError("invalid_arguments")
        if self.fake.base_url is None:
            raise RuntimeError("set FakeSlack.base_url before uploading files")
        file = FakeFile(f"F{next(self._ids):010d}", filename, int(length), secrets.token_urlsafe(12))
        self.files[file.id] = file
        return {"file_id": file.id, "upload_url": f"{self.fake.base_url.rstrip('/')}/upload/{file.id}/{file.key}"}

    def _complete(self, payload: dict[str, Any]) -> dict[str, Any]:
        self._check_scope()
        raw = payload.get("files")
        try:
            entries = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            raise SlackError("invalid_arguments") from None
        if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
            raise SlackError("invalid_arguments")
        files = [self.files.get(str(e.get("id"))) for e in entries]
        if any(f is None for f in files):
            raise SlackError("file_not_found")
        if any(f is not None and f.data is None for f in files):
            raise SlackError("file_upload_incomplete")  # the bytes never reached the upload URL
        channel_id = payload.get("channel_id")
        thread_ts = payload.get("thread_ts") or None
        done: list[dict[str, Any]] = []
        for entry, file in zip(entries, files, strict=True):
            assert file is not None
            if entry.get("title"):
                file.title = str(entry["title"])
            if channel_id:
                chan = self.fake._channel(channel_id)
                parent = self.fake._parent(chan.id, thread_ts) if thread_ts else None
                text = f"📎 {file.title or file.filename} ({file.filename}, {file.content_type}, {file.length} bytes)"
                msg = SlackMessage(chan.id, self.fake._next_ts(), text, self.fake.bot_user_id,
                                   bot_id=self.fake.bot_id, team=self.fake.team_id)
                self.fake._store(chan, msg, parent)
                file.shares.append((chan.id, parent.ts if parent else None, msg.ts))
            done.append({"id": file.id, "title": file.title})
        if self._lost_answers:
            self._lost_answers -= 1
            raise SlackError("internal_error")
        return {"files": done}

    def _info(self, payload: dict[str, Any]) -> dict[str, Any]:
        file = self.files.get(str(payload.get("file", "")))
        if file is None:
            # Not one the bot uploaded: perhaps one a person attached (``demo.fake_slack_downloads``), which owns
            # ``files.info`` for those. One method, two kinds of file, as in Slack.
            return self.fake.files.info(payload)
        return {"file": file.as_dict()}

    # ----- the upload URL ----------------------------------------------------------------------------

    async def upload(self, request: web.Request) -> web.Response:
        self.upload_requests += 1
        data = await request.read()
        status = self._upload_status(request, data)
        self.fake.calls.append(ApiCall("upload_url", {"file_id": request.match_info["file_id"], "bytes": len(data)},
                                       time.monotonic(), status))
        if status != 200:
            return web.Response(status=status, text=f"upload failed: HTTP {status}")
        return web.Response(text=f"OK - {len(data)}")

    def _upload_status(self, request: web.Request, data: bytes) -> int:
        if time.monotonic() < self.fake._outage_until:
            return self.fake._outage_status
        if self._faults:
            return self._faults.popleft()
        file = self.files.get(request.match_info["file_id"])
        if file is None or not secrets.compare_digest(file.key, request.match_info["key"]):
            return 404
        if len(data) != file.length:
            return 400  # Slack checks the bytes against the length announced in getUploadURLExternal
        file.data = data
        file.content_type = request.headers.get("Content-Type", "application/octet-stream")
        return 200

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/upload/{file_id}/{key}", self.upload)


def _ts_key(ts: str) -> tuple[int, int]:
    whole, _, frac = ts.partition(".")
    return int(whole), int(frac or 0)
