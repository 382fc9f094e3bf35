"""sw_api.redirects.follow over real HTTP: two local aiohttp servers on port 0 (ours and a foreign one)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sw_api import redirects
from sw_api.origins import origin_of


@pytest.fixture
async def servers() -> AsyncIterator[tuple[TestServer, TestServer, list[str]]]:
    seen: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(f"{request.host}{request.path}")
        name = request.match_info["name"]
        if name.startswith("hop"):
            left = int(name[3:])
            raise web.HTTPFound(f"hop{left - 1}" if left > 1 else "/final")  # relative: resolved by the walk
        if name == "away":
            raise web.HTTPFound(str(foreign.make_url("/final")))
        return web.Response(text=f"final {request.headers.get('X-Hop', '')}")

    def app() -> web.Application:
        application = web.Application()
        application.router.add_get("/{name}", handle)
        return application

    ours, foreign = TestServer(app()), TestServer(app())
    await ours.start_server()
    await foreign.start_server()
    yield ours, foreign, seen
    await ours.close()
    await foreign.close()


async def test_same_origin_followed_foreign_refused_too_many_refused(
        servers: tuple[TestServer, TestServer, list[str]]) -> None:
    ours, foreign, seen = servers
    mine = origin_of(str(ours.make_url("/")))

    def check(url: str) -> str | None:
        return None if origin_of(url) == mine else "foreign"

    async with aiohttp.ClientSession() as session:
        async with redirects.follow(session, str(ours.make_url("/hop2")), check=check,
                                    headers=lambda url: {"X-Hop": url.rsplit("/", 1)[-1]},
                                    max_redirects=3) as followed:
            assert followed.redirects == 2 and followed.url.endswith("/final")
            assert await followed.response.text() == "final final"

        with pytest.raises(redirects.HopRefused) as refused:
            async with redirects.follow(session, str(ours.make_url("/away")), check=check, max_redirects=3):
                pass
        assert refused.value.hop == 1 and refused.value.reason == "foreign"
        assert not any(s.startswith(f"{foreign.host}:{foreign.port}") for s in seen), "the foreign host was contacted"

        with pytest.raises(redirects.TooManyRedirects) as many:
            async with redirects.follow(session, str(ours.make_url("/hop5")), check=check, max_redirects=2):
                pass
        assert many.value.max_redirects == 2 and many.value.url.endswith("/hop2")
