"""Outbound MMS from Slack files (issue 11), end to end over real HTTP: a person replies in a conversation's thread
with a picture (or attaches one in the form), the bot downloads it from the fake Slack with its token, checks it,
publishes it at PUBLIC_URL/media/<token>/<name>, and the simulator fetches that URL as SignalWire would."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.media import new_token
from bridge.model import MediaItem
from bridge.ports import utcnow
from demo.fake_slack import SlackMessage
from demo.harness import FROM_NUMBER, Harness, running_bridge
from sw_api.simulator import media_fetch
from tests.pg import throwaway_database

INBOUND = "C0INBOUND"
PHONE = "+15551234567"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00" \
      b"\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bridge(tmp_path, env={"INBOUND_CHANNEL": INBOUND, "REPLY_RESUME_SECONDS": "1"}) as harness:
        yield harness


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.05)


async def conversation(h: Harness) -> SlackMessage:
    """Someone texts us: their conversation's thread (its parent) in the inbound channel."""
    await h.simulator.inject_inbound(PHONE, FROM_NUMBER, "Can you send me the picture?", [],
                                     url=h.bot_url + "/signalwire/inbound")
    await h.settle()
    [parent] = h.slack.messages(INBOUND)
    return parent


async def reply_with(h: Harness, parent: SlackMessage, text: str, files: list[dict[str, Any]]) -> dict[str, Any]:
    event = h.slack.files.file_share_event(INBOUND, "U0ALICE", text, files, thread_ts=parent.ts)
    response = await h.driver.event(event)
    assert response.status == 200
    await h.settle()
    return event


def outbound(h: Harness) -> list[Any]:
    return [m for m in h.simulator.messages.values() if m.direction == "outbound"]


def thread_texts(h: Harness, parent: SlackMessage) -> list[str]:
    return [m.text for m in h.slack.thread(INBOUND, parent.ts)]


async def test_a_reply_with_a_png_goes_out_as_mms_that_signalwire_can_fetch(h: Harness) -> None:
    parent = await conversation(h)
    photo = h.slack.files.add_file(PNG, "Screen Shot.png", "image/png")
    event = await reply_with(h, parent, "Here it is", [photo])
    await wait_for(lambda: len(media_fetch.fetches(h.simulator)) == 1, "SignalWire fetched the picture")
    [sms] = outbound(h)
    assert (sms.to, sms.body, sms.kind) == (PHONE, "Here it is", "mms")
    [url] = sms.media
    assert url.startswith(h.config.public_url + "/media/") and url.endswith("/Screen-Shot.png")
    [fetch] = media_fetch.fetches(h.simulator)
    assert (fetch.url, fetch.status, fetch.content_type, fetch.content_length, fetch.length) == (
        url, 200, "image/png", len(PNG), len(PNG))
    # The bot downloaded it with its token, once; the reply shows the outcome like any texted reply.
    assert [(d.file_id, d.authorized) for d in h.slack.files.downloads] == [(photo["id"], True)]
    await h.settle()
    reply = h.slack.message(INBOUND, event["ts"])
    assert reply is not None and "white_check_mark" in reply.reactions and "x" not in reply.reactions
    # MMS has no delivery receipt: the thread says "sent" is final, and shows the picture that went out.
    [note] = [m for m in h.slack.thread(INBOUND, parent.ts) if "Sent to carrier as MMS" in m.text]
    assert "1 picture" in note.text and "no delivery receipt" in note.text
    assert {"type": "image", "image_url": url, "alt_text": "Picture sent: Screen-Shot.png"} in note.blocks
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        assert answer.status == 200 and await answer.read() == PNG


async def test_a_picture_without_text_is_sent_too(h: Harness) -> None:
    parent = await conversation(h)
    await reply_with(h, parent, "", [h.slack.files.add_file(GIF, "dot.gif", "image/gif")])
    await wait_for(lambda: len(outbound(h)) == 1, "the MMS was submitted")
    [sms] = outbound(h)
    assert sms.body == "" and sms.kind == "mms" and sms.media[0].endswith("/dot.gif")


async def test_a_2_mb_picture_is_refused_naming_the_1_mb_limit(h: Harness) -> None:
    parent = await conversation(h)
    big = h.slack.files.add_file(PNG + b"\x00" * (2 * 1024 * 1024), "big.png", "image/png")
    event = await reply_with(h, parent, "big one", [big])
    assert outbound(h) == []
    [note] = [t for t in thread_texts(h, parent) if "not texted" in t]
    assert "at most 1 MB" in note and "Nothing was sent" in note
    assert h.slack.files.downloads == [], "its size was known from files.info: nothing to download"
    reply = h.slack.message(INBOUND, event["ts"])
    assert reply is not None and "x" in reply.reactions


async def test_text_renamed_png_is_refused_by_content(h: Harness) -> None:
    parent = await conversation(h)
    fake = h.slack.files.add_file(b"I am only text, whatever my name says\n", "photo.png", "image/png")
    await reply_with(h, parent, "see attached", [fake])
    assert outbound(h) == []
    [note] = [t for t in thread_texts(h, parent) if "not texted" in t]
    assert "not a JPEG, PNG or GIF" in note and "content" in note
    assert (await h.bridge.store.row_counts())["media"] == 0, "nothing was published"


async def test_nine_files_are_refused(h: Harness) -> None:
    parent = await conversation(h)
    files = [h.slack.files.add_file(PNG, f"p{i}.png", "image/png") for i in range(9)]
    await reply_with(h, parent, "all of them", files)
    assert outbound(h) == []
    [note] = [t for t in thread_texts(h, parent) if "not texted" in t]
    assert "9 files" in note and "at most 8" in note
    assert h.slack.files.downloads == []
    assert h.slack.call_count("files.info") == 0


async def test_a_file_on_a_foreign_host_never_gets_the_token(h: Harness) -> None:
    seen: list[dict[str, str]] = []

    async def foreign(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(body=PNG, content_type="image/png")

    app = web.Application()
    app.router.add_get("/{tail:.*}", foreign)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        parent = await conversation(h)
        # Same machine, another port: not the host:port of SLACK_API_URL, so not Slack's.
        evil = h.slack.files.add_file(PNG, "evil.png", "image/png", download_url=f"http://127.0.0.1:{port}/evil.png")
        await reply_with(h, parent, "from elsewhere", [evil])
        assert outbound(h) == []
        [note] = [t for t in thread_texts(h, parent) if "not texted" in t]
        assert "not stored on a Slack file host" in note
        assert seen == [], "the foreign host was contacted"
        assert all("authorization" not in {k.lower() for k in headers} for headers in seen)
    finally:
        await runner.cleanup()


async def test_redirects_are_followed_only_within_slack(h: Harness) -> None:
    seen: list[str] = []

    async def foreign(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(body=PNG, content_type="image/png")

    app = web.Application()
    app.router.add_get("/{tail:.*}", foreign)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        parent = await conversation(h)
        real = h.slack.files.add_file(PNG, "real.png", "image/png")
        hop = h.slack.files.add_file(b"", "hop.png", "image/png", redirect_to=real["url_private_download"])
        await reply_with(h, parent, "via a hop", [hop])
        await wait_for(lambda: len(outbound(h)) == 1, "the MMS after a redirect within Slack")
        assert [d.authorized for d in h.slack.files.downloads] == [True, True]
        away = h.slack.files.add_file(b"", "away.png", "image/png", redirect_to=f"http://127.0.0.1:{port}/x.png")
        await reply_with(h, parent, "via elsewhere", [away])
        assert len(outbound(h)) == 1, "a redirect off Slack was followed"
        assert seen == [], "the foreign host was contacted"
        assert any("to another host" in t for t in thread_texts(h, parent))
    finally:
        await runner.cleanup()


async def test_without_files_read_the_thread_says_which_scope(h: Harness) -> None:
    parent = await conversation(h)
    h.slack.scopes = frozenset({"commands", "chat:write", "chat:write.public", "users:read", "channels:history",
                                "groups:history", "reactions:write"})
    await reply_with(h, parent, "pic", [h.slack.files.add_file(PNG, "p.png", "image/png")])
    assert outbound(h) == []
    [note] = [t for t in thread_texts(h, parent) if "not texted" in t]
    assert "missing_scope" in note and "files:read" in note


async def test_the_compose_form_sends_attached_files_and_shows_them(h: Harness) -> None:
    await h.driver.slash_command("")
    await h.settle()
    [view] = h.slack.views.values()
    assert any(b.get("block_id") == "files" and b["element"]["type"] == "file_input" for b in view["blocks"])
    photo = h.slack.files.add_file(PNG, "map.png", "image/png")
    values = {
        "to": {"to": {"type": "plain_text_input", "value": PHONE}},
        "body": {"body": {"type": "plain_text_input", "value": "The map"}},
        "channel": {"channel": {"type": "conversations_select", "selected_conversation": "C0GENERAL"}},
        "files": h.slack.files.file_input_value([photo]),
    }
    response = await h.driver.view_submission(view, values)
    assert response.status == 200 and response.body in ("", "{}")
    await h.settle()
    await wait_for(lambda: len(media_fetch.fetches(h.simulator)) == 1, "SignalWire fetched the picture")
    [sms] = outbound(h)
    assert sms.kind == "mms" and sms.media[0].endswith("/map.png")
    [fetch] = media_fetch.fetches(h.simulator)
    assert (fetch.status, fetch.content_type, fetch.length) == (200, "image/png", len(PNG))
    [parent] = h.slack.messages("C0GENERAL")
    assert {"type": "image", "image_url": sms.media[0], "alt_text": "Picture sent: map.png"} in parent.blocks


async def test_the_form_refuses_a_bad_file_inline(h: Harness) -> None:
    await h.driver.slash_command("")
    await h.settle()
    [view] = h.slack.views.values()
    bad = h.slack.files.add_file(b"%PDF-1.4 not a picture", "doc.png", "image/png")
    values = {
        "to": {"to": {"type": "plain_text_input", "value": PHONE}},
        "body": {"body": {"type": "plain_text_input", "value": ""}},
        "channel": {"channel": {"type": "conversations_select", "selected_conversation": "C0GENERAL"}},
        "files": h.slack.files.file_input_value([bad]),
    }
    answer = (await h.driver.view_submission(view, values)).json()
    assert answer["response_action"] == "errors" and set(answer["errors"]) == {"files"}
    assert "not a JPEG, PNG or GIF" in answer["errors"]["files"]
    await h.settle()
    assert outbound(h) == []


async def test_unknown_and_expired_tokens_are_404(h: Harness) -> None:
    expired = new_token()
    past = utcnow() - timedelta(days=8)
    await h.bridge.store.media_put(MediaItem(expired, "old.png", "image/png", PNG, past, past + timedelta(days=7)))
    live = new_token()
    await h.bridge.store.media_put(MediaItem(live, "new.png", "image/png", PNG, utcnow(),
                                             utcnow() + timedelta(days=7)))
    async with aiohttp.ClientSession() as session:
        for path, status in ((f"/media/{expired}/old.png", 404), (f"/media/{new_token()}/x.png", 404),
                             (f"/media/{live}/other-name.png", 404), ("/media/short/new.png", 404),
                             (f"/media/{live}/new.png", 200)):
            async with session.get(h.bot_url + path) as answer:
                assert answer.status == status, path
                if status == 200:
                    assert answer.headers["Content-Type"] == "image/png"
                    assert answer.headers["Content-Length"] == str(len(PNG))


async def test_the_files_of_a_reply_survive_a_restart(h: Harness) -> None:
    parent = await conversation(h)
    photo = h.slack.files.add_file(PNG, "later.png", "image/png")
    # Slack cannot say where the file is for now: the reply stays stored (with its file ids), unfinished.
    h.slack.add_response("files.info", status=503, count=1000)
    await reply_with(h, parent, "when you can", [photo])
    assert outbound(h) == []
    await h.stop_bot()
    h.slack.clear_faults()
    await h.start_bot()  # a new process: all it knows of the reply is what the store kept
    await wait_for(lambda: len(outbound(h)) == 1, "the resumed reply was sent", timeout=20)
    [sms] = outbound(h)
    assert sms.body == "when you can" and sms.media[0].endswith("/later.png")
    await wait_for(lambda: len(media_fetch.fetches(h.simulator)) == 1, "SignalWire fetched the picture")
    assert media_fetch.fetches(h.simulator)[0].status == 200


async def test_postgresql_serves_the_picture(tmp_path: Path) -> None:
    async with throwaway_database() as url, running_bridge(
            tmp_path, env={"INBOUND_CHANNEL": INBOUND, "DATABASE_URL": url}) as h:
        parent = await conversation(h)
        await reply_with(h, parent, "from postgres", [h.slack.files.add_file(PNG, "pg.png", "image/png")])
        await wait_for(lambda: len(media_fetch.fetches(h.simulator)) == 1, "SignalWire fetched the picture")
        [fetch] = media_fetch.fetches(h.simulator)
        assert (fetch.status, fetch.content_type, fetch.length) == (200, "image/png", len(PNG))
        assert (await h.bridge.store.schema_status()).engine == "postgresql"


async def test_the_fake_slack_serves_files_only_with_the_bot_token(h: Harness) -> None:
    photo = h.slack.files.add_file(PNG, "p.png", "image/png")
    url = photo["url_private_download"]
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as anonymous:
            assert anonymous.status == 401
        async with session.get(url, headers={"Authorization": "Bearer xoxb-wrong"}) as wrong:
            assert wrong.status == 401
        async with session.get(url, headers={"Authorization": f"Bearer {h.slack.bot_token}"}) as right:
            assert right.status == 200 and await right.read() == PNG
        api = f"{h.slack_url}/api/files.info"
        auth = {"Authorization": f"Bearer {h.slack.bot_token}"}
        async with session.post(api, data={"file": photo["id"]}, headers=auth) as info:
            assert (await info.json())["file"]["url_private_download"] == url
        async with session.post(api, data={"file": "F404"}, headers=auth) as missing:
            assert (await missing.json()) == {"ok": False, "error": "file_not_found"}
    assert [d.authorized for d in h.slack.files.downloads] == [False, False, True]
