"""``GET PUBLIC_URL/media/<token>/<name>``: the pictures of outbound MMS, for SignalWire (and Slack) to fetch.

Owns: the route (``register(app, bridge_key)``, one line in ``handlers.server``). A picture is read from the store
(``bridge.media.MediaShelf`` put it there), so any replica answers for any token; an unknown or expired token, or a
name that is not the one published with it, is 404 with nothing said about which. The answer carries the picture's
own ``Content-Type`` and ``Content-Length`` and is never sniffed by a browser.
Must not import: storage adapters, SignalWire modules.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web

from bridge.media import TOKEN_PATTERN
from bridge.ports import utcnow
from bridge.service import Bridge
from bridge.storage.port import StoreUnavailable

log = logging.getLogger("handlers.media_route")

_TOKEN = re.compile(TOKEN_PATTERN)


def register(app: web.Application, bridge_key: web.AppKey[Bridge]) -> None:
    async def media(request: web.Request) -> web.Response:
        token, name = request.match_info["token"], request.match_info["name"]
        if not _TOKEN.fullmatch(token):
            raise web.HTTPNotFound()
        try:
            item = await request.app[bridge_key].store.media_get(token, utcnow())
        except StoreUnavailable as exc:
            log.warning("media: store unavailable: %s", exc)
            raise web.HTTPServiceUnavailable(headers={"Retry-After": "5"}) from exc
        if item is None or item.name != name:
            raise web.HTTPNotFound()
        return web.Response(body=item.data, content_type=item.content_type, headers={
            "Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"})

    app.router.add_get("/media/{token}/{name}", media)
