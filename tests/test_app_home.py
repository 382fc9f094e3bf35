"""The App Home tab (issue 12) end to end over real HTTP (the bot, the fake Slack's views.publish /
chat.getPermalink, the SignalWire simulator); the store's reads are in tests/test_store_home.py.

Covers: the published Home (status with engine, mode and numbers, the last 10 conversations in order with their
thread permalinks, opt-out and blocked counts, Slack markup escaped), its limits with many conversations and long
texts, the Messages tab publishing nothing, a failed publish logged without its token and the bot going on, a
failed permalink leaving the line without a link, one publish in flight per user, conversations hidden from
who may not send, the manifest's home tab.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from slack_sdk.web.async_client import AsyncWebClient

from demo.harness import FROM_NUMBER, Harness, running_bridge
from handlers.home import AppHome
from tests.pg import throwaway_database
from tests.test_render import texts

INBOUND = "C0INBOUND"
GENERAL = "C0GENERAL"
ROOT = Path(__file__).resolve().parent.parent


def _number(i: int) -> str:
    return f"+1555123{i:02d}42"  # never a suffix the simulator fails on (0003, 0007, 1610)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    env = {"INBOUND_CHANNEL": INBOUND, "SMS_ALLOWED_USERS": "U0ALICE,U0BOB"}
    async with running_bridge(tmp_path, env=env) as harness:
        yield harness


def conversation_lines(view: dict[str, Any]) -> list[str]:
    """The texts of the "Recent conversations" section's lines."""
    blocks = view["blocks"]
    start = next(i for i, b in enumerate(blocks) if b.get("type") == "header"
                 and b["text"]["text"] == "Recent conversations")
    lines = []
    for block in blocks[start + 1:]:
        if block["type"] != "section":
            break
        lines.append(block["text"]["text"])
    return lines


async def open_home(h: Harness, user: str = "U0ALICE") -> dict[str, Any]:
    before = h.slack.call_count("views.publish")
    answer = await h.driver.app_home_opened(user)
    assert answer.status == 200
    await h.settle()
    assert h.slack.call_count("views.publish") == before + 1
    view = h.slack.home_view(user)
    assert view is not None and view["type"] == "home"
    return view


async def text_in(h: Harness, from_: str, body: str) -> None:
    delivery = await h.simulator.inject_inbound(from_, FROM_NUMBER, body, [], url=h.bot_url + "/signalwire/inbound")
    assert delivery.status == 200
    await h.settle()


async def sms(h: Harness, text: str, user: str = "U0ALICE") -> None:
    answer = await h.driver.slash_command(text, user_id=user, channel_id=GENERAL)
    assert answer.status == 200
    await h.settle()


async def test_home_shows_status_conversations_in_order_with_permalinks_and_counts(h: Harness) -> None:
    await text_in(h, _number(1), "first one")
    await sms(h, f"{_number(2)} Running late")
    await text_in(h, _number(3), "STOP")                       # opted out (its conversation is listed too)
    await text_in(h, _number(4), "hi <!channel> *bold* <@U0BOB> & more")
    await sms(h, f"block {_number(5)} spam")
    await sms(h, f"block {_number(6)} more spam")

    view = await open_home(h)
    everything = "\n".join(texts(view["blocks"]))
    assert "+1 555-777-0000" in everything, "the sending number"
    assert "Live (SignalWire)" in everything and "SQLite" in everything
    assert "bridge.db" not in everything and "sqlite://" not in everything, "never the database URL"
    assert "No errors recorded." in everything

    lines = conversation_lines(view)
    assert len(lines) == 4
    shown = ["+1 555-123-0442", "+1 555-123-0342", "+1 555-123-0242", "+1 555-123-0142"]
    assert [next(s for s in shown if s in line) for line in lines] == shown, "newest first"
    assert "→ Running late" in lines[2] and "← first one" in lines[3]
    # Slack markup in the text shows literally: no @channel, no mention, no bold.
    assert "hi &lt;!channel&gt; *bold* &lt;@U0BOB&gt; &amp; more" in lines[0]
    assert "<!channel>" not in everything and "<@U0BOB>" not in everything
    # Each line links its thread, with the permalink Slack gave for that thread's parent.
    parents = {m.text: m.ts for m in h.slack.messages(INBOUND) + h.slack.messages(GENERAL)}
    assert h.slack.call_count("chat.getPermalink") == 4
    for line in lines:
        assert "|Open thread>" in line
    first_parent = next(ts for text, ts in parents.items() if "first one" in text or "555-123-0001" in text)
    assert f"/archives/{INBOUND}/p{first_parent.replace('.', '')}|Open thread>" in lines[3]

    counts = next(b for b in view["blocks"] if b.get("type") == "section" and b.get("fields")
                  and "*Opted out*" in b["fields"][0]["text"])
    assert [f["text"] for f in counts["fields"]] == ["*Opted out*\n1", "*Blocked*\n2"]
    # Contacts: the section and its three buttons (their actions belong to the contacts slice).
    actions = [e["action_id"] for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert actions == ["contacts_add", "contacts_import", "contacts_export"]
    assert "Your scheduled sends" in everything and "No scheduled sends." in everything

    # Opened again: the same Home view is republished with fresh data; permalinks come from the cache.
    await text_in(h, _number(2), "on my way")
    again = await open_home(h)
    assert again["id"] == view["id"]
    lines = conversation_lines(again)
    assert "+1 555-123-0242" in lines[0] and "← on my way" in lines[0]
    assert h.slack.call_count("chat.getPermalink") == 4

    # The simulator does not deliver to a number ending in 0003: that is the last error now, shown briefly.
    await sms(h, "+15551230003 are you there?")
    errored = await open_home(h)
    [error] = [t for t in texts(errored["blocks"]) if "*Last error*" in t]
    assert "SMS undelivered: 30003 Unreachable destination handset" in error and "<!date^" in error


async def test_many_conversations_and_long_texts_stay_within_slack_limits(h: Harness) -> None:
    long_text = "word <b> " * 150
    for i in range(12):
        await sms(h, f"{_number(i)} {i} {long_text}")
    view = await open_home(h)  # the fake Slack refuses a view over Slack's limits: it was published
    assert len(view["blocks"]) <= 100
    lines = conversation_lines(view)
    assert len(lines) == 10
    assert "+1 555-123-1142" in lines[0] and "+1 555-123-0242" in lines[-1]
    for line in lines:
        message = line.split("\n", 1)[1]
        assert len(message.replace("&lt;", "<").replace("&gt;", ">")) <= 152 and message.endswith("…")
        assert "<b>" not in message


async def test_who_may_not_send_sees_the_status_but_not_the_conversations(h: Harness) -> None:
    await text_in(h, _number(1), "private matter")
    view = await open_home(h, "U0CAROL")  # not in SMS_ALLOWED_USERS
    everything = "\n".join(texts(view["blocks"]))
    assert "private matter" not in everything and "+1 555-123-0142" not in everything
    assert "Only people allowed to send SMS" in everything and "+1 555-777-0000" in everything
    assert h.slack.call_count("chat.getPermalink") == 0
    assert "private matter" in "\n".join(texts((await open_home(h, "U0BOB"))["blocks"]))


async def test_the_messages_tab_publishes_nothing(h: Harness) -> None:
    answer = await h.driver.app_home_opened("U0ALICE", tab="messages")
    assert answer.status == 200
    await h.settle()
    assert h.slack.call_count("views.publish") == 0


async def test_a_failed_publish_is_logged_without_the_token_and_the_bot_goes_on(
        h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    h.slack.add_response("views.publish", body={"ok": False, "error": "not_enabled"})
    answer = await h.driver.app_home_opened("U0ALICE")
    assert answer.status == 200
    await h.settle()
    assert h.slack.home_view("U0ALICE") is None
    assert "views.publish failed (not_enabled)" in caplog.text
    assert "xoxb-" not in caplog.text
    # A permalink Slack will not give: the line is shown without a link; and the bot still sends and publishes.
    await sms(h, f"{_number(1)} still working")
    h.slack.add_response("chat.getPermalink", body={"ok": False, "error": "message_not_found"})
    view = await open_home(h)
    [line] = conversation_lines(view)
    assert "still working" in line and "Open thread" not in line
    assert [m.body for m in h.simulator.messages.values()] == ["still working"]


async def test_one_publish_in_flight_per_user(h: Harness) -> None:
    await sms(h, f"{_number(1)} hello")
    client = AsyncWebClient(token="xoxb-fake", base_url=f"{h.slack_url}/api/")
    home = AppHome(h.bridge, h.config)
    for _ in range(5):
        home.request("U0ALICE", client)   # no await in between: one publish, which reads the data after all five
    home.request("U0BOB", client)
    await h.settle()
    published = [h.slack.get_payload("views.publish", i)["user_id"] for i in range(h.slack.call_count("views.publish"))]
    assert sorted(published) == ["U0ALICE", "U0BOB"]

    # An open while Alice's publish is in flight (its permalink lookup has reached Slack) publishes once more after.
    await sms(h, f"{_number(2)} another")
    links = h.slack.call_count("chat.getPermalink")
    home.request("U0ALICE", client)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while h.slack.call_count("chat.getPermalink") == links and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    home.request("U0ALICE", client)
    home.request("U0ALICE", client)
    await h.settle()
    assert h.slack.call_count("views.publish") == 4
    assert "another" in conversation_lines(h.slack.home_view("U0ALICE") or {})[0]


async def test_simulator_mode_on_postgresql_is_shown(tmp_path: Path) -> None:
    async with throwaway_database() as url:
        env = {"SIGNALWIRE_SPACE_URL": "simulator", "DATABASE_URL": url}
        async with running_bridge(tmp_path, env=env) as h:
            view = await open_home(h)
    everything = "\n".join(texts(view["blocks"]))
    assert "Simulator (no real SMS is sent)" in everything and "PostgreSQL" in everything
    assert "postgresql://" not in everything and "127.0.0.1" not in everything
    assert "No conversations yet." in everything


def test_the_manifest_enables_the_home_tab_and_its_event() -> None:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text(encoding="utf-8"))
    assert manifest["features"]["app_home"] == {"home_tab_enabled": True, "messages_tab_enabled": True,
                                                "messages_tab_read_only_enabled": False}
    assert "app_home_opened" in manifest["settings"]["event_subscriptions"]["bot_events"]
    assert json.dumps(manifest)  # plain data



async def test_your_scheduled_sends_are_listed_in_your_time_zone_and_cancel_there_refreshes_the_home(
        h: Harness) -> None:
    h.slack.set_user_tz("U0ALICE", "Asia/Kolkata")
    await sms(h, "schedule +2h +1 555 123 4567 Two hours from now")
    await sms(h, "schedule +3h +1 555 123 4567 Bob's own", user="U0BOB")
    [mine] = await h.bridge.store.scheduled_of_user("U0ALICE")
    view = await open_home(h)
    shown = [b for b in view["blocks"] if str(b.get("block_id", "")).startswith("scheduled:")]
    assert [b["block_id"] for b in shown] == [f"scheduled:{mine.sms.ref}"]  # only the opener's own
    assert "Two hours from now" in shown[0]["text"]["text"] and "Bob's own" not in str(shown)
    local = mine.due_at.astimezone(ZoneInfo("Asia/Kolkata"))
    assert f"{local:%H:%M}" in shown[0]["text"]["text"]  # in the opener's time zone, not UTC
    before = h.slack.call_count("views.publish")
    answer = await h.driver.block_action("sms_schedule_cancel", mine.sms.ref, view=view, user_id="U0ALICE")
    assert answer.status == 200
    await h.settle()
    assert await h.bridge.store.scheduled_of_user("U0ALICE") == []
    assert h.slack.call_count("views.publish") == before + 1  # republished without it
    refreshed = h.slack.home_view("U0ALICE")
    assert refreshed is not None and f"scheduled:{mine.sms.ref}" not in str(refreshed["blocks"])
