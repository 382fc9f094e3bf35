"""The fake Slack's file hosting (issue 11, outbound MMS): files people attach, ``files.info`` and downloads.

Owns: ``FakeFiles`` (``FakeSlack.files``) — ``add_file(content, name, mimetype)`` makes a "user file" with an id and
a ``url_private_download`` on the fake itself (``GET /files/{id}/{name}``) that answers only with
``Authorization: Bearer <bot token>`` (401 otherwise, every attempt recorded in ``downloads``); ``files.info``;
``file_share_event(...)``, a person's thread reply with files, for ``SlackDriver.event``; ``file_input_value``,
what a modal's ``file_input`` submits. ``add_file(..., download_url=...)`` points a file elsewhere (a foreign host),
``add_file(..., redirect_to=...)`` makes its download redirect.
Registered into ``demo.fake_slack`` with one line in ``FakeSlack.__init__`` and one in ``create_app``.
Must not import: ``bridge``, ``handlers``, ``bot``, ``sw_api`` — it plays Slack and must not know the app.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from demo.fake_slack import FakeSlack


@dataclass(frozen=True, slots=True)
class Download:
    """One request for a file's bytes: which file, and whether it carried the bot token (then it was served)."""

    file_id: str
    authorized: bool
    authorization: str | None


@dataclass
class _File:
    info: dict[str, Any]
    content: bytes
    redirect_to: str | None = None


class FakeFiles:
    def __init__(self, fake: FakeSlack) -> None:
        self.fake = fake
        self.downloads: list[Download] = []
        self._files: dict[str, _File] = {}
        self._ids = itertools.count(1)
        fake._handlers["files.info"] = self.info

    def add_file(self, content: bytes, name: str, mimetype: str, *, user: str = "U0ALICE",
                 download_url: str | None = None, redirect_to: str | None = None) -> dict[str, Any]:
        """A file a person uploaded; returns its file object (as ``files.info`` and events show it).
        ``redirect_to``: an authorized download answers ``302 Location: redirect_to`` instead of the bytes."""
        if self.fake.base_url is None and download_url is None:
            raise RuntimeError("set FakeSlack.base_url before adding files")
        file_id = f"F{next(self._ids):09d}"
        url = download_url or f"{str(self.fake.base_url).rstrip('/')}/files/{file_id}/{name}"
        info: dict[str, Any] = {
            "id": file_id, "name": name, "title": name, "mimetype": mimetype,
            "filetype": name.rsplit(".", 1)[-1].lower() if "." in name else "binary",
            "size": len(content), "user": user, "is_external": False, "mode": "hosted",
            "url_private": url, "url_private_download": url,
        }
        self._files[file_id] = _File(info, content, redirect_to)
        return dict(info)

    def file_share_event(self, channel: str, user: str, text: str, files: list[dict[str, Any]], *,
                         thread_ts: str | None = None) -> dict[str, Any]:
        """A person posts ``text`` with ``files`` (from ``add_file``); the ``message`` event Slack sends the bot."""
        event = self.fake.post_user_message(channel, user, text, thread_ts=thread_ts)
        event["subtype"] = "file_share"
        event["files"] = [dict(f) for f in files]
        event["upload"] = False
        return event

    @staticmethod
    def file_input_value(files: list[dict[str, Any]]) -> dict[str, Any]:
        """``view.state.values["files"]`` of a modal whose ``file_input`` (action id ``files``) holds ``files``."""
        return {"files": {"type": "file_input", "files": [dict(f) for f in files]}}

    def info(self, payload: dict[str, Any]) -> dict[str, Any]:
        from demo.fake_slack import SlackError

        found = self._files.get(str(payload.get("file", "")))
        if found is None:
            raise SlackError("file_not_found")
        return {"file": dict(found.info)}

    def install(self, app: web.Application) -> None:
        async def download(request: web.Request) -> web.StreamResponse:
            file_id = request.match_info["file_id"]
            header = request.headers.get("Authorization")
            authorized = header == f"Bearer {self.fake.bot_token}"
            self.downloads.append(Download(file_id, authorized, header))
            found = self._files.get(file_id)
            if not authorized:
                return web.Response(status=401, text="not authorized")
            if found is None or found.info["name"] != request.match_info["name"]:
                return web.Response(status=404, text="no such file")
            if found.redirect_to is not None:
                raise web.HTTPFound(found.redirect_to)
            return web.Response(body=found.content, content_type=str(found.info["mimetype"]))

        app.router.add_get("/files/{file_id}/{name}", download)
