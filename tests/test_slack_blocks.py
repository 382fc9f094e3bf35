"""Pure tests: whatever the body, SignalWire's words or the inbound payload, every message the bridge renders is
one Slack accepts (checked by the fake Slack's own limit enforcement), and the unknown-outcome wording is right."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge import render
from bridge.conversations import MAX_INBOUND_SHOWN, inbound_blocks, inbound_text
from bridge.model import OutboundSms, SendState
from bridge.slack_blocks import cut, escaped_len, escaped_pieces, fit_blocks, quote_chunks, section
from bridge.slack_text import escape_mrkdwn, unescape_slack
from demo.fake_slack import FakeSlack
from sw_api.errors import ConnectionLost, InvalidResponse, ResponseTimeout, ServerError
from sw_api.models import InboundMessage, MediaItem, MessageStatus

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SMS = OutboundSms(ref="r1", created_at=NOW, updated_at=NOW, user_id="U0ALICE", channel_id="C0GENERAL",
                  to="+15551234567", from_="+15557770000", body="hi", state=SendState.ACCEPTED, sw_id="SM1",
                  status=MessageStatus.QUEUED, segments=1)
HOSTILE_BODIES = [("&<>" * 534)[:1600], "\n" * 1600, "&\n" * 800, "é" * 1600, "😀" * 800, "x" * 1600,
                  ("<!channel> " * 200)[:1600]]


def accepted(text: str, blocks: list[dict[str, Any]]) -> None:
    """Post through the fake Slack, which enforces Slack's limits (``invalid_blocks``, ``msg_too_long``)."""
    fake = FakeSlack(bot_token="xoxb-t")
    reply = fake.handle("chat.postMessage", {"channel": "C0GENERAL", "text": text, "blocks": blocks}, "xoxb-t")
    assert reply.body.get("ok") is True, reply.body


@pytest.mark.parametrize("body", HOSTILE_BODIES)
@pytest.mark.parametrize("state", [SendState.ACCEPTED, SendState.UNKNOWN, SendState.REJECTED])
def test_any_valid_body_renders_a_parent_slack_accepts(body: str, state: SendState) -> None:
    sms = dataclasses.replace(SMS, body=body, state=state, status=None if state is not SendState.ACCEPTED else
                              MessageStatus.QUEUED, error_code="x" * 5000, media=tuple("https://m.example/" +
                              "&" * 3000 for _ in range(10)))
    accepted(render.parent_text(sms), render.parent_blocks(sms, simulated=True))


def test_the_whole_body_is_shown_across_sections() -> None:
    body = ("&<>" * 534)[:1600]
    blocks = render.parent_blocks(dataclasses.replace(SMS, body=body))
    quoted = [b["text"]["text"] for b in blocks[1:] if b["type"] == "section"]
    assert len(quoted) == 3
    assert unescape_slack("".join(q.replace(">", "").replace("\n", "") for q in quoted)) == body


@pytest.mark.parametrize("said", ["<&>" * 40_000, "a" * 100_000, "\n" * 50_000])
def test_failure_replies_fit_whatever_signalwire_says(said: str) -> None:
    sms = dataclasses.replace(SMS, status=MessageStatus.FAILED, error_code=said[:9000], error_message=said)
    headline = render.unknown_failure_headline(said)
    text = render.failure_text(sms, headline)
    assert "<&>" not in text  # SignalWire's words stay inert, even in the headline
    accepted(text, render.failure_blocks(sms, headline, simulated=True))


@pytest.mark.parametrize("body", [*HOSTILE_BODIES, "x" * 45_000, "&" * 45_000, "\n" * 45_000, None, ""])
@pytest.mark.parametrize("media", [0, 1, 10, 1000])
@pytest.mark.parametrize("new_conversation", [True, False])
def test_any_inbound_renders_one_post_slack_accepts(body: str | None, media: int, new_conversation: bool) -> None:
    message = InboundMessage(
        message_id="m1", from_="<!channel>" * 100, to="+15557770000", body=body,
        media=tuple(MediaItem(url=f"https://m.example/{i}?" + "&" * 400, content_type="<x>" * 100)
                    for i in range(media)),
    )
    text = inbound_text(message, new_conversation=new_conversation)
    assert "<!channel>" not in text
    accepted(text, inbound_blocks(message, new_conversation=new_conversation))
    if body and len(body) > MAX_INBOUND_SHOWN:
        assert f"…({len(body) - MAX_INBOUND_SHOWN} more characters not shown)" in text
    if media > 10:
        assert f"+{media - 10} more attachments not shown" in text


def test_inbound_more_media_counted_by_the_parser_is_said() -> None:
    message = InboundMessage(message_id="m1", from_="+15551234567", to="+15557770000", body="hi",
                             media=(MediaItem(url="https://m.example/a.png"),), more_media=989)
    assert "+989 more attachments not shown" in inbound_text(message, new_conversation=False)


# -- the helpers ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["&" * 1000, "a&b<c>" * 300, "", "plain"])
@pytest.mark.parametrize("limit", [1, 4, 5, 7, 2999])
def test_escaped_pieces_fit_and_never_split_an_escape(raw: str, limit: int) -> None:
    pieces = escaped_pieces(raw, max(limit, 5))
    assert all(len(p) <= max(limit, 5) for p in pieces)
    assert "".join(unescape_slack(p) for p in pieces) == raw
    assert escaped_len(raw) == len(escape_mrkdwn(raw))


def test_cut_never_leaves_half_an_escape() -> None:
    text = escape_mrkdwn("&" * 100)
    for limit in range(2, 40):
        short = cut(text, limit)
        assert len(short) <= limit and short.endswith("…")
        assert unescape_slack(short[:-1]) == "&" * (len(short[:-1]) // 5)


def test_quote_chunks_are_block_quotes_within_the_limit() -> None:
    chunks = quote_chunks("line\n\n" + "&" * 2000, 3000)
    assert all(len(c) <= 3000 for c in chunks)
    assert all(line.startswith(">") for c in chunks for line in c.split("\n"))


def test_fit_blocks_keeps_the_last_blocks_and_says_what_was_dropped() -> None:
    blocks = [section(str(i)) for i in range(80)]
    fitted = fit_blocks(blocks)
    assert len(fitted) == 50 and fitted[-2:] == blocks[-2:]
    assert "31 more parts not shown" in fitted[-3]["text"]["text"]


# -- unknown outcomes ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "cause"),
    [
        (ServerError(500, "Internal Server Error"), "SignalWire answered *500*"),
        (ServerError(503, "Service Unavailable"), "SignalWire answered *503*"),
        (ResponseTimeout("POST: no answer"), "did not answer in time"),
        (ConnectionLost("POST: lost"), "connection to SignalWire dropped"),
        (InvalidResponse("HTTP 201: bad"), "answer could not be read"),
    ],
)
def test_unknown_notice_says_what_happened_and_when_it_sends_again(exc: Any, cause: str) -> None:
    at = NOW + timedelta(seconds=45)
    notice = render.unknown_notice(exc, resend_at=at, resend_in=45)
    assert cause in notice and "Checking SignalWire's message logs" in notice
    assert f"<!date^{int(at.timestamp())}^{{time_secs}}|12:00:45 UTC>" in notice and "(in 45 s)" in notice


def test_unknown_notice_far_ahead_names_the_day() -> None:
    at = NOW + timedelta(hours=20)
    notice = render.unknown_notice(ServerError(500, "x"), resend_at=at, resend_in=20 * 3600)
    assert f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|2025-03-02 08:00 UTC>" in notice
    assert "(in 20 h)" in notice


def test_unknown_notice_after_the_resend_promises_no_third_post() -> None:
    notice = render.unknown_notice(ServerError(500, "x"), resend_at=None, resend_in=0)
    assert "will not be sent again automatically" in notice and "once more" not in notice


def test_found_texts() -> None:
    assert "message logs show it (status “delivered”)" in render.found_text("logs", MessageStatus.DELIVERED)
    assert "status callback confirms it" in render.found_text("callback")


@pytest.mark.parametrize(("seconds", "shown"), [(0, "0 s"), (45, "45 s"), (60, "60 s"), (120, "2 min"),
                                               (3600, "60 min"), (5400, "1 h 30 min"), (7200, "2 h")])
def test_duration(seconds: float, shown: str) -> None:
    assert render.duration(seconds) == shown


def test_parent_refusal_blames_the_channel_only_when_it_is_the_channel() -> None:
    assert "invite the bot" in render.parent_refusal("C1", "not_in_channel")
    other = render.parent_refusal("C1", "invalid_blocks")
    assert "invite" not in other and "invalid_blocks" in other and "not in your message" in other


def test_fake_slack_enforces_context_and_fields_limits() -> None:
    fake = FakeSlack(bot_token="xoxb-t")

    def post(blocks: list[dict[str, Any]]) -> dict[str, Any]:
        return fake.handle("chat.postMessage", {"channel": "C0GENERAL", "text": "t", "blocks": blocks},
                           "xoxb-t").body

    element = {"type": "mrkdwn", "text": "x"}
    assert post([{"type": "context", "elements": [element] * 10}])["ok"] is True
    assert post([{"type": "context", "elements": [element] * 11}])["error"] == "invalid_blocks"
    assert post([{"type": "context", "elements": [{"type": "mrkdwn", "text": "x" * 3001}]}])["error"] == \
        "invalid_blocks"
    fields = [{"type": "mrkdwn", "text": "x" * 2001}]
    assert post([{"type": "section", "fields": fields}])["error"] == "invalid_blocks"
    assert post([{"type": "section", "text": element, "block_id": "b" * 256}])["error"] == "invalid_blocks"
