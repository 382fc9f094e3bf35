"""The safe media fetcher (issue 11, mms-in): the pure policy (``sw_api.media_policy``) and the transport
(``sw_api.media.MediaFetcher``) against real local servers — a "space" and a "foreign" host, each on port 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from bridge.config import Config, ConfigError
from sw_api.media import MediaFetcher
from sw_api.media_policy import (
    FetchedMedia,
    MediaPolicy,
    MediaRefused,
    content_type_of,
    filename_for,
    megabytes,
    parse_media_hosts,
)
from sw_api.sansio import basic_auth_header

PROJECT, TOKEN = "project-1", "PT-secret"

# -- the policy ----------------------------------------------------------------------------------------------------


def test_the_space_origin_is_matched_exactly() -> None:
    policy = MediaPolicy("http://127.0.0.1:8080")
    assert policy.refusal("http://127.0.0.1:8080/media/a/0") is None
    assert policy.refusal("http://127.0.0.1:8081/media/a/0") == "not an allowed host: 127.0.0.1:8081"
    assert policy.refusal("https://127.0.0.1:8080/x") == "not an allowed host: 127.0.0.1:8080"
    assert policy.refusal("http://localhost:8080/x") == "not an allowed host: localhost:8080"
    assert policy.is_space("http://127.0.0.1:8080/x") and not policy.is_space("http://127.0.0.1:8081/x")


def test_a_default_port_is_the_same_origin_written_or_not() -> None:
    policy = MediaPolicy("https://example.signalwire.com")
    assert policy.refusal("https://example.signalwire.com:443/files/1") is None
    assert policy.refusal("https://EXAMPLE.signalwire.com/files/1") is None
    assert policy.refusal("http://example.signalwire.com/files/1") == "not an allowed host: example.signalwire.com"


def test_listed_hosts_need_https_on_443_and_nothing_else_passes() -> None:
    policy = MediaPolicy("https://example.signalwire.com", parse_media_hosts(" Media.Carrier.example , cdn.x.io,"))
    assert policy.hosts == ("media.carrier.example", "cdn.x.io")
    assert policy.refusal("https://media.carrier.example/p.jpg") is None
    assert policy.refusal("http://media.carrier.example/p.jpg") == "not https: media.carrier.example"
    assert policy.refusal("https://media.carrier.example:8443/p") == "not an allowed port: media.carrier.example:8443"
    assert policy.refusal("https://evil.carrier.example/p.jpg") == "not an allowed host: evil.carrier.example"
    assert policy.refusal("https://media.carrier.example.evil.io/p") == (
        "not an allowed host: media.carrier.example.evil.io")
    assert policy.refusal("ftp://media.carrier.example/p") == "not an http(s) URL"
    assert policy.refusal("https://user:pw@evil.io/p") == "not an allowed host: evil.io"
    assert policy.refusal("not a url") == "not an http(s) URL"


@pytest.mark.parametrize("bad", ["https://cdn.example", "cdn.example:443", "cdn.example/path", "under_score.io", "a b"])
def test_bad_media_hosts_are_named(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a host name"):
        parse_media_hosts(f"ok.example,{bad}")


def test_names_types_and_sizes() -> None:
    assert megabytes(5 * 1024 * 1024) == "5 MB" and megabytes(1536 * 1024) == "1.5 MB"
    assert content_type_of("image/JPEG; charset=binary", "image/png") == "image/jpeg"
    assert content_type_of("application/octet-stream", "image/png") == "image/png"
    assert content_type_of(None, None) == "application/octet-stream"
    assert filename_for("https://h/media/cat.jpg?sig=1", "image/jpeg", 1) == "cat.jpg"
    assert filename_for("https://h/media/abc/0", "image/png", 2) == "0.png"
    assert filename_for("https://h/", "image/jpeg", 3) == "picture-3.jpg"
    assert filename_for("https://h/x", "image/gif", 1, 'attachment; filename="../../etc/pass wd.gif"') == (
        "etc_pass_wd.gif")


# -- the transport ----------------------------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    hits: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Authorization)




@pytest.fixture
async def servers() -> AsyncIterator[tuple[Server, Server, aiohttp.ClientSession]]:
    """A "space" serving /pic, /big, /chunked-big, /slow, /missing, /hop/N, /loop, /away (302 to the foreign host);
    a foreign host that must never be contacted."""
    runners: list[web.AppRunner] = []

    async def serve(app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    foreign = Server("")
    space = Server("")

    async def foreign_route(request: web.Request) -> web.Response:
        foreign.hits.append((request.path, request.headers.get("Authorization")))
        return web.Response(body=b"foreign", content_type="image/jpeg")

    async def space_route(request: web.Request) -> web.StreamResponse:
        space.hits.append((request.path, request.headers.get("Authorization")))
        path = request.path
        if path == "/pic":
            return web.Response(body=b"JPEGDATA", content_type="image/jpeg")
        if path == "/big":
            return web.Response(body=b"x" * 3000, content_type="image/jpeg")
        if path == "/chunked-big":
            response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(100):
                await response.write(b"y" * 1000)
            return response
        if path == "/slow":
            await asyncio.sleep(5)
            return web.Response(body=b"late")
        if path.startswith("/hop/"):
            left = int(path.rsplit("/", 1)[1])
            raise web.HTTPFound("/pic" if left == 0 else f"/hop/{left - 1}")
        if path == "/loop":
            raise web.HTTPFound("/loop")
        if path == "/away":
            raise web.HTTPFound(foreign.url + "/stolen")
        raise web.HTTPNotFound()

    foreign_app = web.Application()
    foreign_app.router.add_get("/{tail:.*}", foreign_route)
    foreign.url = await serve(foreign_app)
    space_app = web.Application()
    space_app.router.add_get("/{tail:.*}", space_route)
    space.url = await serve(space_app)
    async with aiohttp.ClientSession() as session:
        yield space, foreign, session
    for runner in runners:
        await runner.cleanup()


def fetcher(session: aiohttp.ClientSession, space: Server, **policy: object) -> MediaFetcher:
    return MediaFetcher(session, MediaPolicy(space.url, **policy),  # type: ignore[arg-type]
                        project_id=PROJECT, api_token=TOKEN)


async def test_a_picture_is_fetched_from_the_space_with_its_credentials(
        servers: tuple[Server, Server, aiohttp.ClientSession]) -> None:
    space, foreign, session = servers
    result = await fetcher(session, space).fetch(space.url + "/hop/2", "image/png", 1)
    assert foreign.hits == []
    assert isinstance(result, FetchedMedia)
    assert result.data == b"JPEGDATA" and result.content_type == "image/jpeg" and result.size == 8
    assert result.filename == "pic.jpg"
    auth = basic_auth_header(PROJECT, TOKEN)
    assert space.hits == [("/hop/2", auth), ("/hop/1", auth), ("/hop/0", auth), ("/pic", auth)]


async def test_credentials_go_to_the_space_origin_only() -> None:
    async with aiohttp.ClientSession() as session:
        media = MediaFetcher(session, MediaPolicy("https://example.signalwire.com", ("cdn.carrier.example",)),
                             project_id=PROJECT, api_token=TOKEN)
        assert media.headers_for("https://example.signalwire.com/api/media/1")["Authorization"] == (
            basic_auth_header(PROJECT, TOKEN))
        assert "Authorization" not in media.headers_for("https://cdn.carrier.example/p.jpg")
        assert "Authorization" not in media.headers_for("https://example.signalwire.com:8443/api/media/1")


async def test_a_redirect_to_a_foreign_host_is_refused_before_connecting(
        servers: tuple[Server, Server, aiohttp.ClientSession]) -> None:
    space, foreign, session = servers
    result = await fetcher(session, space).fetch(space.url + "/away", "image/jpeg", 1)
    assert isinstance(result, MediaRefused)
    port = foreign.url.rsplit(":", 1)[1]
    assert result.reason == f"redirected elsewhere, not an allowed host: 127.0.0.1:{port}"
    direct = await fetcher(session, space).fetch(foreign.url + "/direct", "image/jpeg", 1)
    assert direct == MediaRefused(f"not an allowed host: 127.0.0.1:{port}")
    assert foreign.hits == []


async def test_size_cap_by_length_and_while_reading(servers: tuple[Server, Server, aiohttp.ClientSession]) -> None:
    space, _, session = servers
    small = fetcher(session, space, max_bytes=2048)
    assert await small.fetch(space.url + "/big") == MediaRefused("larger than 0.00195 MB")
    assert await small.fetch(space.url + "/chunked-big") == MediaRefused("larger than 0.00195 MB")
    assert isinstance(await small.fetch(space.url + "/pic"), FetchedMedia)


async def test_errors_loops_and_timeouts_are_reasons(servers: tuple[Server, Server, aiohttp.ClientSession]) -> None:
    space, _, session = servers
    media = fetcher(session, space, timeout=0.3)
    assert await media.fetch(space.url + "/missing") == MediaRefused("HTTP 404")
    assert await media.fetch(space.url + "/loop") == MediaRefused("more than 5 redirects")
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await media.fetch(space.url + "/slow") == MediaRefused("timed out after 0.3 s")
    assert loop.time() - started < 3
    closed = "http://127.0.0.1:1/nothing"  # port 1: nothing listens
    assert (await MediaFetcher(session, MediaPolicy("http://127.0.0.1:1")).fetch(closed)) == MediaRefused(
        "download failed (ClientConnectorError)")


# -- configuration --------------------------------------------------------------------------------------------------


def _config(**extra: str) -> Config:
    return Config.from_env({
        "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "SIGNALWIRE_SPACE_URL": "example.signalwire.com",
        "SIGNALWIRE_PROJECT_ID": "p", "SIGNALWIRE_API_TOKEN": "t", "SIGNALWIRE_SIGNING_KEY": "k",
        "SIGNALWIRE_FROM_NUMBERS": "+15557770000", "PUBLIC_URL": "https://sms.example.com", **extra,
    })


def test_media_settings_default_and_validate() -> None:
    config = _config()
    assert config.signalwire_media_hosts == () and config.media_max_inbound_bytes == 5 * 1024 * 1024
    assert config.media_fetch_timeout == 20.0
    config = _config(SIGNALWIRE_MEDIA_HOSTS="a.example, B.example", MEDIA_MAX_INBOUND_BYTES="1048576",
                     MEDIA_FETCH_TIMEOUT_SECONDS="7.5")
    assert config.signalwire_media_hosts == ("a.example", "b.example")
    assert (config.media_max_inbound_bytes, config.media_fetch_timeout) == (1048576, 7.5)
    for name, value, says in [("SIGNALWIRE_MEDIA_HOSTS", "https://x.example", "is not a host name"),
                              ("MEDIA_MAX_INBOUND_BYTES", "5MB", "whole number of bytes"),
                              ("MEDIA_FETCH_TIMEOUT_SECONDS", "0", "number of seconds")]:
        with pytest.raises(ConfigError, match=says) as info:
            _config(**{name: value})
        assert info.value.name == name
