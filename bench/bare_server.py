"""The baseline of every bench: a bare aiohttp endpoint in its own process, doing what any webhook receiver must.

It reads the body, parses it (JSON or form, as the bot would), and answers — ``204`` for a callback, a small JSON
body for a slash command. Nothing else: no signature check, no storage. The bot's figures are divided by this one's,
measured in the same run on the same machine, so the ratio says what sms-bridge costs over the floor.

Usage: python bench/bare_server.py PORT
"""

from __future__ import annotations

import json
import sys
from urllib.parse import parse_qsl

from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    raw = await request.read()
    if request.content_type == "application/json":
        json.loads(raw or b"{}")
        return web.Response(status=204)
    fields = dict(parse_qsl(raw.decode()))
    return web.json_response({"response_type": "ephemeral", "text": f"ok {len(fields)}"})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def main() -> None:
    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
