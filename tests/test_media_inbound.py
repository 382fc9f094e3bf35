"""Inbound MMS pictures end to end over real HTTP (issue 11, mms-in): the simulator hosts the media and texts the
bot; the bot answers SignalWire, posts the text, downloads each picture from the "space" and uploads it into the
thread through the fake Slack's external upload flow — in order, once, whatever Slack or the media do.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge import media_in
from bridge.outbox import Kind
from demo.fake_slack import FakeSlack, SlackMessage
from demo.fake_slack import create_app as create_fake_slack_app
from demo.harness import FROM_NUMBER, Harness, running_bridge
from tests.faults.kill_points import kill_on, restart_after_kill
from tests.faults.procs import open_world
from tests.pg import throwaway_database

INBOUND = "C0INBOUND"
PHONE = "+15551234567"
MB = 1024 * 1024


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bridge(tmp_path, env={"INBOUND_CHANNEL": INBOUND}) as harness:
        yield harness


def picture(data: bytes, content_type: str = "image/jpeg") -> dict[str, Any]:
    return {"content_type": content_type, "data_base64": base64.b64encode(data).decode()}


async def mms_in(h: Harness, body: str | None, media: list[Any], *, fmt: str = "json",
                 settle: bool = True) -> dict[str, Any]:
    """Text the bot through the simulator's control route (the simulator hosts the media objects)."""
    request = {"from": PHONE, "to": FROM_NUMBER, "body": body, "media": media, "format": fmt,
               "url": h.bot_url + "/signalwire/inbound"}
    async with h.session.post(h.sim_url + "/_sim/inbound", json=request) as resp:
        assert resp.status == 200, await resp.text()
        answer: dict[str, Any] = await resp.json()
    if settle:
        await h.settle(timeout=20)
    return answer


async def media_requests(h: Harness) -> list[dict[str, Any]]:
    async with h.session.get(h.sim_url + "/_sim/media") as resp:
        requests: list[dict[str, Any]] = (await resp.json())["requests"]
    return requests


def the_parent(h: Harness) -> SlackMessage:
    [parent] = h.slack.messages(INBOUND)
    return parent


def test_the_media_kind_is_the_outbox_kind() -> None:
    assert Kind.MEDIA.value == media_in.KIND  # bridge.media_in cannot import bridge.outbox (which imports it)


@pytest.mark.parametrize("fmt", ["json", "form"])
async def test_three_pictures_follow_the_text_in_order(h: Harness, fmt: str) -> None:
    await mms_in(h, "first text", [])
    parent = the_parent(h)
    pictures = [bytes([n]) * (1000 + n) for n in range(3)]
    answer = await mms_in(h, "look at these", [picture(pictures[0]), picture(pictures[1], "image/png"),
                                               picture(pictures[2], "image/gif")], fmt=fmt)
    assert answer["status"] == 200

    thread = h.slack.thread(INBOUND, parent.ts)
    assert len(thread) == 4, [m.text for m in thread]
    assert "look at these" in thread[0].text and "3 attachments below in the thread" in thread[0].text
    shared = h.slack.uploads.shared_in(INBOUND, parent.ts)
    assert [f.data for f in shared] == pictures
    assert [f.content_type for f in shared] == ["image/jpeg", "image/png", "image/gif"]
    assert [m.ts for m in thread[1:]] == [ts for f in shared for (_, _, ts) in f.shares]
    assert [f.title for f in shared] == ["Attachment 1 of 3", "Attachment 2 of 3", "Attachment 3 of 3"]
    # Fetched from the space with its credentials, once each.
    requests = await media_requests(h)
    assert len(requests) == 3 and all(r["authorized"] for r in requests)


async def test_a_new_conversation_gets_its_picture_under_its_own_parent(h: Harness) -> None:
    await mms_in(h, None, [picture(b"\x89PNG-bytes", "image/png")], fmt="form")
    parent = the_parent(h)
    assert "New conversation" in parent.text and "1 attachment below in the thread" in parent.text
    [shared] = h.slack.uploads.shared_in(INBOUND, parent.ts)
    assert shared.data == b"\x89PNG-bytes" and shared.filename.endswith(".png")
    assert len(h.slack.thread(INBOUND, parent.ts)) == 1


async def test_a_six_megabyte_picture_becomes_a_link_and_the_text_stays(h: Harness) -> None:
    await mms_in(h, "a big one", [{"content_type": "image/jpeg", "size": 6 * MB}, picture(b"small")])
    parent = the_parent(h)
    assert "a big one" in parent.text
    first, second = h.slack.thread(INBOUND, parent.ts)
    assert "larger than 5 MB" in first.text and "image/jpeg" in first.text and "attachment 1 of 2" in first.text
    assert f"{h.sim_url}/media/" in first.text  # the link to the original
    [shared] = h.slack.uploads.shared_in(INBOUND, parent.ts)
    assert shared.data == b"small" and second.ts == shared.shares[0][2]


async def test_a_redirect_to_a_foreign_host_is_never_followed(h: Harness) -> None:
    foreign_hits: list[str] = []

    async def foreign(request: web.Request) -> web.Response:
        foreign_hits.append(request.path)
        return web.Response(body=b"stolen", content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/{tail:.*}", foreign)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        await mms_in(h, "redirected", [
            {"content_type": "image/jpeg", "redirect": f"http://127.0.0.1:{port}/pic.jpg"},
            [f"http://127.0.0.1:{port}/direct.jpg", "image/png"],
        ])
    finally:
        await runner.cleanup()
    assert foreign_hits == []
    parent = the_parent(h)
    assert "redirected" in parent.text
    first, second = h.slack.thread(INBOUND, parent.ts)
    assert f"redirected elsewhere, not an allowed host: 127.0.0.1:{port}" in first.text and "image/jpeg" in first.text
    assert f"not an allowed host: 127.0.0.1:{port}" in second.text and "image/png" in second.text
    assert f"<http://127.0.0.1:{port}/direct.jpg|" in second.text
    assert not h.slack.called("files.getUploadURLExternal")


async def test_a_picture_slack_refuses_for_good_becomes_a_link(h: Harness) -> None:
    h.slack.add_response("files.getUploadURLExternal", body={"ok": False, "error": "missing_scope"})
    await mms_in(h, "without files:write", [picture(b"refused"), picture(b"fine")])
    parent = the_parent(h)
    first, second = h.slack.thread(INBOUND, parent.ts)
    assert "Slack refused the upload (missing_scope)" in first.text and "attachment 1 of 2 (image/jpeg)" in first.text
    [shared] = h.slack.uploads.shared_in(INBOUND, parent.ts)
    assert shared.data == b"fine" and second.ts == shared.shares[0][2]


async def test_a_slack_outage_delays_pictures_and_each_is_uploaded_once(h: Harness) -> None:
    await mms_in(h, "hello", [])
    parent = the_parent(h)
    h.slack.uploads.fail_uploads(2, status=503)  # the upload URL itself is down for two attempts
    h.slack.uploads.lose_complete_answers(1)     # and one completion works but its answer is lost
    h.slack.outage(1.0)                          # and the whole Web API is down for a second
    answer = await mms_in(h, "pictures during an outage", [picture(b"one"), picture(b"two")], settle=False)
    assert answer["status"] == 200  # SignalWire's answer never waits for Slack or the media
    await h.settle(timeout=30)
    thread = h.slack.thread(INBOUND, parent.ts)
    assert "pictures during an outage" in thread[0].text
    shared = h.slack.uploads.shared_in(INBOUND, parent.ts)
    assert [f.data for f in shared] == [b"one", b"two"], "each picture is shared exactly once, in order"
    assert len(thread) == 3
    assert h.slack.call_count("files.info") >= 1  # the lost answer was checked, not completed again
    assert h.slack.uploads.upload_requests >= 4  # two failed uploads were made again, with new file ids


async def test_pictures_on_postgresql(tmp_path: Path) -> None:
    async with throwaway_database() as url, running_bridge(
            tmp_path, env={"INBOUND_CHANNEL": INBOUND, "DATABASE_URL": url}) as h:
        h.slack.uploads.lose_complete_answers(1)
        await mms_in(h, "on postgres", [picture(b"pg-1"), picture(b"pg-2")])
        parent = the_parent(h)
        shared = h.slack.uploads.shared_in(INBOUND, parent.ts)
        assert [f.data for f in shared] == [b"pg-1", b"pg-2"]
        assert len(h.slack.thread(INBOUND, parent.ts)) == 2


# -- a real bot process SIGKILLed mid-upload ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.parametrize("after", [True, False], ids=["slack-shared-it", "slack-never-saw-it"])
async def test_sigkill_at_the_upload_completion_shares_each_picture_once(tmp_path: Path, after: bool) -> None:
    async with asyncio.timeout(90), open_world(tmp_path, env={"INBOUND_CHANNEL": INBOUND}) as world:
        switch = kill_on(world, lambda method, _: method == "files.completeUploadExternal")
        switch.arm(1, after=after)
        request = {"from": PHONE, "to": FROM_NUMBER, "body": "photos", "format": "json",
                   "media": [picture(b"kill-1"), picture(b"kill-2")], "url": world.bot_url + "/signalwire/inbound"}
        async with world.session.post(world.sim_url + "/_sim/inbound", json=request) as resp:
            assert resp.status == 200 and (await resp.json())["status"] == 200
        assert await restart_after_kill(world, switch=switch), "the bot was not killed at the upload completion"
        assert switch.fired

        def shared() -> list[bytes | None]:
            parents = world.slack.messages(INBOUND)
            return [f.data for f in world.slack.uploads.shared_in(INBOUND, parents[0].ts)] if parents else []

        await world.wait_for(lambda: len(shared()) >= 2, timeout=30, what="both pictures shared")
        await world.quiet(1.0)
        assert shared() == [b"kill-1", b"kill-2"], world.slack.transcript(INBOUND)
        [parent] = world.slack.messages(INBOUND)
        assert len(world.slack.thread(INBOUND, parent.ts)) == 2


# -- the fake's upload flow is the one slack_sdk drives ----------------------------------------------------------------


async def test_the_fake_takes_slack_sdks_own_files_upload_v2() -> None:
    fake = FakeSlack(bot_token="xoxb-fake")
    runner = web.AppRunner(create_fake_slack_app(fake), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        client = AsyncWebClient(token="xoxb-fake", base_url=fake.base_url + "/api/")
        parent = await client.chat_postMessage(channel="C0GENERAL", text="parent")
        await client.files_upload_v2(channel="C0GENERAL", thread_ts=parent["ts"], content=b"abc",
                                     filename="a.txt", title="A file")
        [file] = fake.uploads.shared_in("C0GENERAL", parent["ts"])
        assert (file.data, file.filename, file.title) == (b"abc", "a.txt", "A file")
        [reply] = fake.thread("C0GENERAL", parent["ts"])
        assert "A file" in reply.text
        info = await client.files_info(file=file.id)
        assert info["file"]["shares"]["public"]["C0GENERAL"][0]["thread_ts"] == parent["ts"]

        stranger = AsyncWebClient(token="xoxb-wrong", base_url=fake.base_url + "/api/")
        with pytest.raises(SlackApiError, match="invalid_auth"):
            await stranger.files_getUploadURLExternal(filename="x.txt", length=1)
        started = await client.files_getUploadURLExternal(filename="x.txt", length=3)
        async with aiohttp.ClientSession() as session:
            wrong_key = started["upload_url"].rsplit("/", 1)[0] + "/not-the-key"
            async with session.post(wrong_key, data=b"xyz") as resp:
                assert resp.status == 404
            async with session.post(started["upload_url"], data=b"too long") as resp:
                assert resp.status == 400
        with pytest.raises(SlackApiError, match="file_upload_incomplete"):
            await client.files_completeUploadExternal(files=[{"id": started["file_id"]}], channel_id="C0GENERAL")
        with pytest.raises(SlackApiError, match="file_not_found"):
            await client.files_info(file="F404")
    finally:
        await runner.cleanup()
