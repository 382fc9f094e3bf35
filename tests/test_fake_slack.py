"""Tests for demo.fake_slack and demo.slack_driver, driven by the real slack_sdk client and real Bolt over loopback.

Owns: the contract that the fake answers like Slack for the methods the bot uses, that its faults surface in
slack_sdk the way Slack's do, and that the driver's requests are signed and shaped so Bolt accepts them.
Must not import: ``bridge``, ``handlers``, ``bot``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from demo.fake_slack import RESPONSE_URL, FakeSlack, create_app
from demo.slack_driver import SlackDriver

TOKEN = "xoxb-fake"
# slack_sdk warns when a message has no top-level text; those tests send blocks-only messages on purpose.
NO_TEXT_OK = pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing:UserWarning")
SECRET = "test-signing-secret"

MODAL: dict[str, Any] = {
    "type": "modal",
    "callback_id": "compose",
    "title": {"type": "plain_text", "text": "Send SMS"},
    "submit": {"type": "plain_text", "text": "Send"},
    "private_metadata": "C0GENERAL",
    "blocks": [
        {
            "type": "input",
            "block_id": "to",
            "label": {"type": "plain_text", "text": "To"},
            "element": {"type": "plain_text_input", "action_id": "number"},
        }
    ],
}
RETRY_BLOCKS: list[dict[str, Any]] = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "❌ Failed · SMS to +1 555-123-4567"}},
    {"type": "context", "elements": [{"type": "mrkdwn", "text": "carrier said 30007"}]},
    {
        "type": "actions",
        "block_id": "receipt_actions",
        "elements": [
            {
                "type": "button",
                "action_id": "retry",
                "text": {"type": "plain_text", "text": "Retry"},
                "value": "msg-1",
            }
        ],
    },
]


@dataclass
class Fake:
    slack: FakeSlack
    server: TestServer

    def client(self, token: str = TOKEN, **kwargs: Any) -> AsyncWebClient:
        return AsyncWebClient(token=token, base_url=str(self.server.make_url("/api/")), **kwargs)


@pytest.fixture
async def fake(aiohttp_server: AiohttpServer) -> Fake:
    slack = FakeSlack()
    server = await aiohttp_server(create_app(slack))
    slack.base_url = str(server.make_url("/"))
    return Fake(slack, server)


async def api_error(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value


# ----- Web API ---------------------------------------------------------------------------------------------


async def test_auth_test_answers_like_slack(fake: Fake) -> None:
    resp = await fake.client().auth_test()
    assert resp["user_id"] == "UBOT"
    assert resp["bot_id"] == "B0001"
    assert resp["team_id"] == "T0001"
    assert fake.slack.called("auth.test")


async def test_wrong_or_missing_token_is_rejected(fake: Fake) -> None:
    err = await api_error(fake.client(token="xoxb-wrong").chat_postMessage(channel="C0GENERAL", text="hi"))
    assert err.response["error"] == "invalid_auth"
    err = await api_error(fake.client(token="").auth_test())
    assert err.response["error"] == "not_authed"
    assert fake.slack.messages("C0GENERAL") == []
    assert [c.status for c in fake.slack.calls] == [200, 200]


async def test_post_message_and_thread(fake: Fake) -> None:
    client = fake.client()
    first = await client.chat_postMessage(channel="C0GENERAL", text="📨 SMS to +1 555-123-4567")
    second = await client.chat_postMessage(channel="C0GENERAL", text="📤 Sent to carrier", thread_ts=first["ts"])
    third = await client.chat_postMessage(channel="C0GENERAL", text="✅ Delivered", thread_ts=second["ts"])

    assert first["channel"] == "C0GENERAL"
    assert first["message"]["text"] == "📨 SMS to +1 555-123-4567"
    assert first["message"]["bot_id"] == "B0001"
    ts = [first["ts"], second["ts"], third["ts"]]
    assert all(len(t.split(".")[1]) == 6 for t in ts)
    assert sorted(ts, key=float) == ts and len(set(ts)) == 3

    top = fake.slack.messages("C0GENERAL")
    assert [m.ts for m in top] == [first["ts"]]
    # A reply to a reply lands in the parent's thread, as in Slack.
    assert [m.text for m in fake.slack.thread("C0GENERAL", first["ts"])] == ["📤 Sent to carrier", "✅ Delivered"]
    assert third["message"]["thread_ts"] == first["ts"]
    assert fake.slack.get_payload("chat.postMessage", 1)["thread_ts"] == first["ts"]
    assert fake.slack.call_count("chat.postMessage") == 3


@NO_TEXT_OK
async def test_channel_resolution_and_errors(fake: Fake) -> None:
    client = fake.client()
    by_name = await client.chat_postMessage(channel="#general", text="by name")
    assert by_name["channel"] == "C0GENERAL"
    fresh = await client.chat_postMessage(channel="C0NEWCHAN", text="auto-created")
    assert fresh["channel"] == "C0NEWCHAN"
    err = await api_error(client.chat_postMessage(channel="nowhere", text="x"))
    assert err.response["error"] == "channel_not_found"
    err = await api_error(client.chat_postMessage(channel="C0GENERAL", text="x", thread_ts="1.000001"))
    assert err.response["error"] == "thread_not_found"
    err = await api_error(client.chat_postMessage(channel="C0GENERAL", text=""))
    assert err.response["error"] == "no_text"


async def test_update_counts_edits_and_requires_the_message(fake: Fake) -> None:
    client = fake.client()
    posted = await client.chat_postMessage(channel="C0GENERAL", text="⏳ Queued")
    updated = await client.chat_update(channel="C0GENERAL", ts=posted["ts"], text="✅ Delivered", blocks=RETRY_BLOCKS)
    assert updated["ts"] == posted["ts"]
    msg = fake.slack.messages("C0GENERAL")[0]
    assert (msg.text, msg.edited, msg.blocks[2]["block_id"]) == ("✅ Delivered", 1, "receipt_actions")
    err = await api_error(client.chat_update(channel="C0GENERAL", ts="1700000000.000001", text="x"))
    assert err.response["error"] == "message_not_found"


async def test_form_encoded_blocks_arrive_as_json_strings_and_are_validated(fake: Fake) -> None:
    client = fake.client()
    resp = await client.api_call(
        "chat.postMessage",
        data={"channel": "C0GENERAL", "text": "fallback", "blocks": json.dumps(RETRY_BLOCKS)},
    )
    assert resp["message"]["blocks"][0]["type"] == "section"
    assert fake.slack.get_payload("chat.postMessage")["blocks"] == RETRY_BLOCKS
    too_long = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]
    err = await api_error(client.chat_postMessage(channel="C0GENERAL", text="t", blocks=too_long))
    assert err.response["error"] == "invalid_blocks"
    assert "3001" in err.response["response_metadata"]["messages"][0]


async def test_reactions(fake: Fake) -> None:
    client = fake.client()
    posted = await client.chat_postMessage(channel="C0GENERAL", text="reply")
    await client.reactions_add(channel="C0GENERAL", timestamp=posted["ts"], name="white_check_mark")
    assert fake.slack.messages("C0GENERAL")[0].reactions == {"white_check_mark": ["UBOT"]}
    err = await api_error(client.reactions_add(channel="C0GENERAL", timestamp=posted["ts"], name="white_check_mark"))
    assert err.response["error"] == "already_reacted"
    err = await api_error(client.reactions_add(channel="C0GENERAL", timestamp=posted["ts"], name=":x:"))
    assert err.response["error"] == "invalid_name"
    await client.reactions_remove(channel="C0GENERAL", timestamp=posted["ts"], name="white_check_mark")
    assert fake.slack.messages("C0GENERAL")[0].reactions == {}
    err = await api_error(client.reactions_remove(channel="C0GENERAL", timestamp=posted["ts"], name="x"))
    assert err.response["error"] == "no_reaction"
    # slack_sdk sends reactions.* as query parameters, not a body.
    assert fake.slack.calls[1].payload == {
        "channel": "C0GENERAL",
        "timestamp": posted["ts"],
        "name": "white_check_mark",
    }


async def test_ephemeral_permalink_users_and_conversations(fake: Fake) -> None:
    client = fake.client()
    eph = await client.chat_postEphemeral(channel="C0GENERAL", user="U0ALICE", text="⚠️ Not a phone number")
    assert eph["message_ts"]
    assert fake.slack.ephemerals[0]["user"] == "U0ALICE"
    assert fake.slack.ephemerals[0]["text"] == "⚠️ Not a phone number"

    posted = await client.chat_postMessage(channel="C0GENERAL", text="x")
    link = await client.chat_getPermalink(channel="C0GENERAL", message_ts=posted["ts"])
    assert link["permalink"].endswith("/archives/C0GENERAL/p" + posted["ts"].replace(".", ""))

    user = await client.users_info(user="U0ALICE")
    assert user["user"]["profile"]["display_name"] == "alice"
    assert fake.slack.calls[-1].http_verb == "GET"
    err = await api_error(client.users_info(user="U0NOBODY"))
    assert err.response["error"] == "user_not_found"

    info = await client.conversations_info(channel="G0PRIVATE")
    assert info["channel"]["is_private"] is True
    joined = await client.conversations_join(channel="C0SUPPORT")
    assert joined["channel"]["is_member"] is True

    err = await api_error(client.api_call("chat.frobnicate", json={"x": 1}))
    assert err.response["error"] == "unknown_method"


async def test_views_open_update_push_publish(fake: Fake) -> None:
    client = fake.client()
    opened = await client.views_open(trigger_id="123.456.abc", view={**MODAL, "external_id": "compose-1"})
    view_id = opened["view"]["id"]
    assert fake.slack.views[view_id]["callback_id"] == "compose"
    assert opened["view"]["state"] == {"values": {}}

    stale_hash = opened["view"]["hash"]
    updated = await client.views_update(view_id=view_id, hash=stale_hash, view={**MODAL, "private_metadata": "v2"})
    assert updated["view"]["id"] == view_id
    assert fake.slack.views[view_id]["private_metadata"] == "v2"
    err = await api_error(client.views_update(view_id=view_id, hash=stale_hash, view=MODAL))
    assert err.response["error"] == "hash_conflict"
    by_external = await client.views_update(external_id="compose-1", view={**MODAL, "private_metadata": "v3"})
    assert by_external["view"]["id"] == view_id
    err = await api_error(client.views_update(view_id="V404", view=MODAL))
    assert err.response["error"] == "not_found"

    pushed = await client.views_push(trigger_id="123.456.def", view=MODAL)
    assert pushed["view"]["id"] != view_id
    home = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]}
    first = await client.views_publish(user_id="U0ALICE", view=home)
    again = await client.views_publish(user_id="U0ALICE", view=home)
    assert first["view"]["id"] == again["view"]["id"]

    long_title = {**MODAL, "title": {"type": "plain_text", "text": "Send a text message to someone"}}
    err = await api_error(client.views_open(trigger_id="1.2.3", view=long_title))
    assert err.response["error"] == "invalid_arguments"
    assert "/view/title" in err.response["response_metadata"]["messages"][0]
    err = await api_error(client.views_open(trigger_id="", view=MODAL))
    assert err.response["error"] == "invalid_trigger_id"


async def test_missing_scope_when_scopes_are_declared(aiohttp_server: AiohttpServer) -> None:
    slack = FakeSlack(scopes={"chat:write", "commands"})
    server = await aiohttp_server(create_app(slack))
    client = AsyncWebClient(token=TOKEN, base_url=str(server.make_url("/api/")))
    err = await api_error(client.users_info(user="U0ALICE"))
    assert err.response["error"] == "missing_scope"
    assert err.response["needed"] == "users:read"
    # Without chat:write.public the bot must join a public channel before posting there.
    err = await api_error(client.chat_postMessage(channel="C0GENERAL", text="x"))
    assert err.response["error"] == "not_in_channel"


# ----- faults ----------------------------------------------------------------------------------------------


async def test_429_surfaces_as_slack_api_error_with_retry_after(fake: Fake) -> None:
    fake.slack.add_response("chat.postMessage", status=429, headers={"Retry-After": "7"})
    err = await api_error(fake.client().chat_postMessage(channel="C0GENERAL", text="x"))
    assert err.response.status_code == 429
    assert err.response.headers["Retry-After"] == "7"
    assert err.response["error"] == "ratelimited"
    assert fake.slack.messages("C0GENERAL") == []
    # The fault was used up: the next call goes through.
    await fake.client().chat_postMessage(channel="C0GENERAL", text="x")
    assert [c.status for c in fake.slack.calls] == [429, 200]


async def test_rate_limit_retry_handler_recovers(fake: Fake) -> None:
    fake.slack.add_response("chat.postMessage", status=429, headers={"Retry-After": "0"})
    client = fake.client(retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)])
    resp = await client.chat_postMessage(channel="C0GENERAL", text="after the limit")
    assert resp["ok"] is True
    assert [c.status for c in fake.slack.calls] == [429, 200]
    assert [m.text for m in fake.slack.messages("C0GENERAL")] == ["after the limit"]


async def test_canned_error_bodies_and_counts(fake: Fake) -> None:
    fake.slack.add_response("chat.update", body={"ok": False, "error": "channel_not_found"}, count=2)
    fake.slack.add_response("users.info", status=500)
    client = fake.client()
    for _ in range(2):
        err = await api_error(client.chat_update(channel="C0GENERAL", ts="1.1", text="x"))
        assert err.response["error"] == "channel_not_found"
    err = await api_error(client.chat_update(channel="C0GENERAL", ts="1.1", text="x"))
    assert err.response["error"] == "message_not_found"
    err = await api_error(client.users_info(user="U0ALICE"))
    assert err.response.status_code == 500


async def test_outage_fails_every_method_then_recovers(fake: Fake) -> None:
    client = fake.client()
    fake.slack.outage(0.3)
    for call in (client.auth_test(), client.chat_postMessage(channel="C0GENERAL", text="x")):
        err = await api_error(call)
        assert err.response.status_code == 503
    await asyncio.sleep(0.35)
    assert (await client.chat_postMessage(channel="C0GENERAL", text="back"))["ok"] is True
    fake.slack.outage(5, status=429)
    err = await api_error(client.auth_test())
    assert err.response.status_code == 429
    assert int(err.response.headers["Retry-After"]) >= 4


# ----- response URLs and transcript ------------------------------------------------------------------------


async def post_json(url: str, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        return resp.status, await resp.json()


async def test_response_url_ephemeral_in_channel_and_replace(fake: Fake) -> None:
    slack = fake.slack
    status, body = await post_json(slack.response_url("a", channel="C0GENERAL", user="U0ALICE"), {"text": "only you"})
    assert (status, body) == (200, {"ok": True})
    assert slack.ephemerals[-1]["text"] == "only you"
    assert slack.ephemerals[-1]["user"] == "U0ALICE"
    assert slack.responses[-1]["key"] == "a"

    await post_json(slack.response_url("b", channel="C0GENERAL"), {"text": "for all", "response_type": "in_channel"})
    assert [m.text for m in slack.messages("C0GENERAL")] == ["for all"]

    source = slack.messages("C0GENERAL")[0]
    url = slack.response_url("c", channel="C0GENERAL", user="U0ALICE", message_ts=source.ts)
    await post_json(url, {"text": "replaced", "replace_original": True})
    assert (source.text, source.edited) == ("replaced", 1)
    await post_json(url, {"delete_original": True})
    assert slack.messages("C0GENERAL") == []

    # Slack honours a response URL five times.
    statuses = [(await post_json(slack.response_url("e"), {"text": "again"}))[0] for _ in range(6)]
    assert statuses == [200] * 5 + [404]
    assert len(slack.responses) == 4 + 5

    slack.add_response(RESPONSE_URL, status=404, body={"ok": False, "error": "expired_url"})
    status, body = await post_json(slack.response_url("d"), {"text": "late"})
    assert (status, body["error"]) == (404, "expired_url")
    assert len(slack.responses) == 4 + 5, "a faulted POST is not recorded as delivered"


@NO_TEXT_OK
async def test_transcript_shows_threads_edits_buttons_and_ephemerals(fake: Fake) -> None:
    client = fake.client()
    parent = await client.chat_postMessage(channel="C0GENERAL", text="⏳ SMS to +1 555-123-4567")
    await client.chat_postMessage(channel="C0GENERAL", text="📤 Sent to carrier", thread_ts=parent["ts"])
    await client.chat_postMessage(channel="C0GENERAL", text="✅ Delivered", thread_ts=parent["ts"])
    await client.chat_update(channel="C0GENERAL", ts=parent["ts"], text="✅ Delivered · SMS to +1 555-123-4567")
    await client.chat_postMessage(channel="C0GENERAL", text="", blocks=RETRY_BLOCKS)
    await client.chat_postEphemeral(channel="C0GENERAL", user="U123", text="⚠️ Check the number")
    fake.slack.post_user_message("C0GENERAL", "U0BOB", "thanks!", thread_ts=parent["ts"])
    reply = await client.chat_postMessage(channel="C0SUPPORT", text="other channel")
    await client.reactions_add(channel="C0SUPPORT", timestamp=reply["ts"], name="eyes")

    assert fake.slack.transcript() == (
        "#C0GENERAL\n"
        "[10:00:01] sms-bridge: ✅ Delivered · SMS to +1 555-123-4567 (edited)\n"
        "    ↳ [10:00:02] sms-bridge: 📤 Sent to carrier\n"
        "    ↳ [10:00:03] sms-bridge: ✅ Delivered\n"
        "    ↳ [10:00:06] bob: thanks!\n"
        "[10:00:04] sms-bridge: ❌ Failed · SMS to +1 555-123-4567\n"
        "                       carrier said 30007 [Retry]\n"
        "(ephemeral to U123) ⚠️ Check the number\n"
        "\n"
        "#C0SUPPORT\n"
        "[10:00:07] sms-bridge: other channel  :eyes: sms-bridge\n"
    )
    only_support = fake.slack.transcript("C0SUPPORT")
    assert only_support.startswith("#C0SUPPORT\n") and "C0GENERAL" not in only_support


# ----- driver ----------------------------------------------------------------------------------------------


@dataclass
class Receiver:
    """A stand-in bot endpoint that verifies signatures with slack_sdk and keeps what it got."""

    server: TestServer
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
async def receiver(aiohttp_server: AiohttpServer) -> Receiver:
    verifier = SignatureVerifier(SECRET)
    got: list[tuple[dict[str, str], bytes]] = []

    async def events(request: web.Request) -> web.Response:
        body = await request.read()
        got.append((dict(request.headers), body))
        if not verifier.is_valid_request(body, dict(request.headers)):
            return web.Response(status=401, text="invalid signature")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/slack/events", events)
    server = await aiohttp_server(app)
    return Receiver(server, got)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def form_payload(body: bytes) -> dict[str, Any]:
    loaded = json.loads(parse_qs(body.decode())["payload"][0])
    assert isinstance(loaded, dict)
    return loaded


async def test_driver_signs_every_kind_of_request(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    driver = SlackDriver(
        session, str(receiver.server.make_url("/")), SECRET, response_url_base="http://fake/respond", show_acks=False
    )
    responses = [
        await driver.slash_command("+1 555 123 4567 hello & bye"),
        await driver.view_submission({"id": "V1", "callback_id": "compose"}, {"to": {"n": {"value": "x"}}}),
        await driver.block_action("retry", "msg-1", message={"ts": "1.000100", "text": "t", "blocks": RETRY_BLOCKS}),
        await driver.event({"type": "message", "text": "hi"}, retry_num=1, event_id="Ev1"),
    ]
    assert [r.status for r in responses] == [200, 200, 200, 200]
    assert all(r.elapsed_ms > 0 for r in responses)

    headers, body = receiver.got[0]
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    fields = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    assert set(fields) >= {
        "token", "team_id", "team_domain", "channel_id", "channel_name", "user_id", "user_name",
        "command", "text", "api_app_id", "response_url", "trigger_id",
    }  # fmt: skip
    assert (fields["command"], fields["text"], fields["channel_name"]) == (
        "/sms",
        "+1 555 123 4567 hello & bye",
        "general",
    )
    assert fields["response_url"].startswith("http://fake/respond/")
    assert parse_qs(fields["response_url"].split("?", 1)[1])["user"] == ["U0ALICE"]

    submission = form_payload(receiver.got[1][1])
    assert submission["type"] == "view_submission"
    assert submission["view"]["state"] == {"values": {"to": {"n": {"value": "x"}}}}
    assert submission["view"]["callback_id"] == "compose"
    assert submission["user"] == {"id": "U0ALICE", "username": "alice", "name": "alice", "team_id": "T0001"}

    action = form_payload(receiver.got[2][1])
    assert action["type"] == "block_actions"
    assert action["actions"][0] | {"action_ts": "-"} == {
        "action_id": "retry",
        "block_id": "receipt_actions",
        "type": "button",
        "value": "msg-1",
        "text": {"type": "plain_text", "text": "Retry", "emoji": True},
        "action_ts": "-",
    }
    assert action["container"] == {
        "type": "message",
        "message_ts": "1.000100",
        "channel_id": "C0GENERAL",
        "is_ephemeral": False,
    }
    assert "message_ts=1.000100" in action["response_url"]

    in_view = await driver.block_action("number", "x", view={"id": "V9", "blocks": MODAL["blocks"]})
    assert in_view.status == 200
    view_action = form_payload(receiver.got[4][1])
    assert view_action["container"] == {"type": "view", "view_id": "V9"}
    assert view_action["actions"][0]["block_id"] == "to"
    assert "response_url" not in view_action and "channel" not in view_action

    headers, body = receiver.got[3]
    envelope = json.loads(body)
    assert (envelope["type"], envelope["event_id"], envelope["event"]["text"]) == ("event_callback", "Ev1", "hi")
    assert (headers["X-Slack-Retry-Num"], headers["X-Slack-Retry-Reason"]) == ("1", "http_timeout")


async def test_driver_forged_and_stale_requests_fail_verification(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    driver = SlackDriver(session, str(receiver.server.make_url("/slack/events")), SECRET)
    forged = await driver.raw(b"a=b", "application/x-www-form-urlencoded", signature="v0=" + "0" * 64)
    stale = await driver.raw(b"a=b", "application/x-www-form-urlencoded", timestamp=int(time.time()) - 600)
    fresh = await driver.raw(b"a=b", "application/x-www-form-urlencoded")
    assert [forged.status, stale.status, fresh.status] == [401, 401, 200]
    other = SlackDriver(session, str(receiver.server.make_url("/")), "some-other-secret")
    assert (await other.slash_command("help")).status == 401


# ----- driver + fake + real Bolt ---------------------------------------------------------------------------


async def test_bolt_accepts_driver_requests_and_talks_to_the_fake(
    fake: Fake, aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    # A minimal real Bolt app: proves payload shapes route the way Slack's do and that respond()/views_open
    # land on the fake. Not the product's handlers, which are tested elsewhere.
    bolt = AsyncApp(token=TOKEN, signing_secret=SECRET, client=fake.client())
    submitted: list[dict[str, Any]] = []

    async def on_sms(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond) -> None:
        if body["text"] == "ping":
            await ack(text="pong")
            return
        await ack()
        if body["text"] == "help":
            await respond(text=f"usage for {body['user_name']}")
        else:
            await client.views_open(trigger_id=body["trigger_id"], view=MODAL)

    async def on_submit(ack: AsyncAck, view: dict[str, Any]) -> None:
        await ack()
        submitted.append(view["state"]["values"])

    async def on_retry(ack: AsyncAck, action: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        await respond(text=f"retrying {action['value']}", replace_original=True)

    async def on_message(event: dict[str, Any], client: AsyncWebClient) -> None:
        await client.reactions_add(channel=event["channel"], timestamp=event["ts"], name="outbox_tray")

    bolt.command("/sms")(on_sms)
    bolt.view("compose")(on_submit)
    bolt.action("retry")(on_retry)
    bolt.event("message")(on_message)
    bot = await aiohttp_server(bolt.web_app())
    driver = SlackDriver(session, str(bot.make_url("/")), SECRET, response_url_base=fake.slack.response_url_base)

    async def soon(predicate: Callable[[], bool]) -> None:
        # Bolt answers at ack() and runs the rest of a listener afterwards: wait for its effect, not a fixed time.
        for _ in range(500):
            if predicate():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the listener's effect never showed")

    assert (await driver.slash_command("help")).status == 200
    await soon(lambda: bool(fake.slack.ephemerals))
    assert fake.slack.ephemerals[-1]["text"] == "usage for alice"
    assert fake.slack.ephemerals[-1]["user"] == "U0ALICE"

    # An ack body is what Slack shows the user; the driver mirrors it so transcripts include it.
    assert (await driver.slash_command("ping")).body == "pong"
    assert (fake.slack.ephemerals[-1]["text"], fake.slack.ephemerals[-1]["source"]) == ("pong", "ack")
    assert len(fake.slack.responses) == 1, "an ack is not a response_url POST"

    assert (await driver.slash_command("")).status == 200
    view = next(iter(fake.slack.views.values()))
    assert view["callback_id"] == "compose"
    values = {"to": {"number": {"type": "plain_text_input", "value": "+15551234567"}}}
    assert (await driver.view_submission(view, values)).status == 200
    await soon(lambda: bool(submitted))
    assert submitted == [values]

    posted = await fake.client().chat_postMessage(channel="C0GENERAL", text="❌ Failed", blocks=RETRY_BLOCKS)
    message = fake.slack.messages("C0GENERAL")[0]
    assert (await driver.block_action("retry", "msg-1", message=message.as_dict())).status == 200
    await soon(lambda: message.edited == 1)
    assert fake.slack.message("C0GENERAL", posted["ts"]) is message
    assert (message.text, message.edited) == ("retrying msg-1", 1)

    event = fake.slack.post_user_message("C0GENERAL", "U0BOB", "reply text", thread_ts=posted["ts"])
    assert (await driver.event(event)).status == 200
    # Bolt runs event listeners after acking; wait for the reaction rather than sleeping a fixed time.
    for _ in range(100):
        if fake.slack.called("reactions.add"):
            break
        await asyncio.sleep(0.01)
    reply = fake.slack.thread("C0GENERAL", posted["ts"])[0]
    assert reply.reactions == {"outbox_tray": ["UBOT"]}
    assert (await driver.url_verification("xyz")).json() == {"challenge": "xyz"}
