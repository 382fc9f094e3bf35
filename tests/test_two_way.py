"""Two-way conversations end to end over real HTTP: the simulator texts the bot, people reply from the fake Slack."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from demo.fake_slack import SlackMessage
from demo.harness import FROM_NUMBER, Harness, running_bridge
from sw_api.simulator import InboundDelivery
from sw_api.webhooks import CXML_EMPTY, SIGNATURE_HEADER, SWML_RECEIVE, sign_json

INBOUND = "C0INBOUND"
GENERAL = "C0GENERAL"
PHONE = "+15551234567"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bridge(tmp_path, env={"INBOUND_CHANNEL": INBOUND}) as harness:
        yield harness


async def text_in(h: Harness, body: str | None, *, from_: str = PHONE, fmt: str = "json",
                  media: list[tuple[str, str]] | None = None, message_id: str | None = None) -> InboundDelivery:
    delivery = await h.simulator.inject_inbound(
        from_, FROM_NUMBER, body, media or [], url=h.bot_url + "/signalwire/inbound", fmt=fmt,  # type: ignore[arg-type]
        message_id=message_id,
    )
    await h.settle()
    return delivery


def thread_texts(h: Harness, channel: str, parent: SlackMessage) -> list[str]:
    return [m.text for m in h.slack.thread(channel, parent.ts)]


def sent(h: Harness) -> list[tuple[str, str, str | None]]:
    return [(m.to, m.from_, m.body) for m in h.simulator.messages.values() if m.status.value != "received"]


async def reply(h: Harness, parent: SlackMessage, text: str, *, channel: str = INBOUND, user: str = "U0ALICE",
                retries: int = 0) -> dict[str, Any]:
    event = h.slack.post_user_message(channel, user, text, thread_ts=parent.ts)
    response = await h.driver.event(event, event_id="Ev0000000001")
    assert response.status == 200
    for n in range(1, retries + 1):
        again = await h.driver.event(event, retry_num=n, event_id="Ev0000000001")
        assert again.status == 200
    await h.settle()
    return event


async def test_json_inbound_starts_a_thread_with_inert_text(h: Harness) -> None:
    delivery = await text_in(h, "<!channel> pay at <https://evil.example|bank> & <@U0ALICE>")
    assert delivery.status == 200 and json.loads(delivery.text) == SWML_RECEIVE
    [parent] = h.slack.messages(INBOUND)
    assert "+1 555-123-4567" in parent.text
    for raw in ("<!channel>", "<https://evil", "<@U0ALICE>"):
        assert raw not in parent.text and raw not in json.dumps(parent.blocks)
    assert "&lt;!channel&gt;" in parent.text


async def test_form_inbound_answers_cxml_and_posts(h: Harness) -> None:
    delivery = await text_in(h, "hello from cXML", fmt="form",
                             media=[("https://media.example/pic.jpg", "image/jpeg")])
    assert delivery.status == 200 and delivery.text == CXML_EMPTY
    [parent] = h.slack.messages(INBOUND)
    assert "hello from cXML" in parent.text
    assert "<https://media.example/pic.jpg|📎 attachment 1 (image/jpeg)>" in parent.text


async def test_forged_inbound_is_refused_and_posts_nothing(h: Harness) -> None:
    body = json.dumps({"message": {"message_id": "x1", "from": PHONE, "to": FROM_NUMBER, "body": "hi",
                                   "direction": "inbound", "type": "sms", "media": []}}).encode()
    url = h.bot_url + "/signalwire/inbound"
    async with h.session.post(url, data=body, headers={
            "Content-Type": "application/json", SIGNATURE_HEADER: sign_json("wrong-key", url, body)}) as resp:
        assert resp.status in (401, 403)
    await h.settle()
    assert h.slack.messages(INBOUND) == [] and not h.slack.called("chat.postMessage")


async def test_media_only_and_duplicate_delivery_post_once(h: Harness) -> None:
    media = [("https://media.example/a.png", "image/png")]
    first = await text_in(h, None, media=media, message_id="dup-1")
    second = await text_in(h, None, media=media, message_id="dup-1")
    assert first.status == second.status == 200
    [parent] = h.slack.messages(INBOUND)
    assert "image/png" in parent.text
    # The text and (issue 11) one reply saying why the picture is not shown (media.example is no media host).
    [why] = h.slack.thread(INBOUND, parent.ts)
    assert "not an allowed host: media.example" in why.text
    assert h.slack.call_count("chat.postMessage") == 2


async def test_later_texts_go_into_the_same_thread(h: Harness) -> None:
    await text_in(h, "first")
    await text_in(h, "second")
    await text_in(h, "someone else", from_="+15559876543")
    first_parent, other_parent = h.slack.messages(INBOUND)
    assert any("second" in t for t in thread_texts(h, INBOUND, first_parent))
    assert "someone else" in other_parent.text and thread_texts(h, INBOUND, other_parent) == []
    assert "incoming_envelope" in first_parent.reactions


async def test_answer_to_a_slash_send_lands_in_its_thread(h: Harness) -> None:
    await h.driver.slash_command(f"{PHONE} Your table is ready")
    await h.settle()
    await text_in(h, "On my way!")
    [parent] = h.slack.messages(GENERAL)
    assert any("On my way!" in t for t in thread_texts(h, GENERAL, parent))
    assert h.slack.messages(INBOUND) == []


async def test_thread_reply_round_trip_with_markup_and_reactions(h: Harness) -> None:
    await text_in(h, "Is the order ready?")
    [parent] = h.slack.messages(INBOUND)
    markup = "Yes <@U0BOB> has it :wave: see <https://x.example/o/1|your order> &amp; <#C0SUPPORT|support>"
    event = await reply(h, parent, markup)
    assert sent(h) == [(PHONE, FROM_NUMBER, "Yes @bob has it 👋 see your order (https://x.example/o/1) & #support")]
    mine = h.slack.message(INBOUND, event["ts"])
    assert mine is not None and set(mine.reactions) == {"white_check_mark"}
    # No receipt flood: the thread holds only the person's reply itself.
    assert [m.user for m in h.slack.thread(INBOUND, parent.ts)] == ["U0ALICE"]
    await text_in(h, "thanks")
    assert any("thanks" in t for t in thread_texts(h, INBOUND, parent))


async def test_notes_bots_edits_and_retries_send_nothing_twice(h: Harness) -> None:
    await text_in(h, "hi")
    [parent] = h.slack.messages(INBOUND)
    await reply(h, parent, "note: VIP customer")
    await reply(h, parent, "// check the CRM first")
    bot_event = {"type": "message", "channel": INBOUND, "user": "UBOT", "bot_id": "B0001", "text": "echo",
                 "ts": "1700042999.000100", "thread_ts": parent.ts}
    await h.driver.event(bot_event)
    edit = {"type": "message", "subtype": "message_changed", "channel": INBOUND, "hidden": True,
            "ts": "1700042998.000100", "message": {"user": "U0ALICE", "text": "edited", "thread_ts": parent.ts}}
    await h.driver.event(edit)
    await h.settle()
    assert sent(h) == []
    await reply(h, parent, "only once please", retries=2)
    assert sent(h) == [(PHONE, FROM_NUMBER, "only once please")]


async def test_reply_outside_a_bridged_thread_is_ignored(h: Harness) -> None:
    await h.driver.slash_command(f"{PHONE} not a conversation thread for the other channel")
    await h.settle()
    [outbound] = h.slack.messages(GENERAL)
    chatter = h.slack.post_user_message(GENERAL, "U0ALICE", "top level")
    await h.driver.event(chatter)
    unrelated = h.slack.post_user_message("C0SUPPORT", "U0ALICE", "hi")
    support_parent = h.slack.message("C0SUPPORT", unrelated["ts"])
    assert support_parent is not None
    await reply(h, support_parent, "a thread nobody bridged", channel="C0SUPPORT")
    await h.settle()
    assert len(sent(h)) == 1  # only the slash command
    await reply(h, outbound, "but this one is bridged", channel=GENERAL)
    assert sent(h)[-1] == (PHONE, FROM_NUMBER, "but this one is bridged")


async def test_stop_start_help(h: Harness) -> None:
    # The bridge's own STOP/START/HELP answers (issue 11, tests/test_compliance.py) aside: nothing a person sends.
    def human_sent(h: Harness) -> list[tuple[str, str, str | None]]:
        return [m for m in sent(h) if not (m[2] or "").startswith("sms-bridge:")]

    await text_in(h, "hello")
    [parent] = h.slack.messages(INBOUND)
    await text_in(h, "  Stop. ")
    assert any("opted out" in t for t in thread_texts(h, INBOUND, parent))

    await reply(h, parent, "are you sure?")
    assert human_sent(h) == []
    [note] = h.slack.ephemerals
    assert note["user"] == "U0ALICE" and "opted out" in note["text"] and "UTC" in note["text"]

    answer = await h.driver.slash_command(f"{PHONE} promo!")
    await h.settle()
    assert human_sent(h) == []
    assert "opted out" in answer.body  # refused in the ack itself, before anything is stored

    await text_in(h, "START")
    assert any("opted back in" in t for t in thread_texts(h, INBOUND, parent))
    await reply(h, parent, "welcome back")
    assert human_sent(h) == [(PHONE, FROM_NUMBER, "welcome back")]

    await text_in(h, "help")
    assert any("asked for help" in t for t in thread_texts(h, INBOUND, parent))


async def test_carrier_21610_marks_the_number_opted_out(h: Harness) -> None:
    number = "+15550001610"  # the simulator fails this destination with 21610
    await h.driver.slash_command(f"{number} first try")
    await h.settle()
    assert len(sent(h)) == 1
    answer = await h.driver.slash_command(f"{number} second try")
    await h.settle()
    assert len(sent(h)) == 1
    assert "opted out" in answer.body and "21610" in answer.body
