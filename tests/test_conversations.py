"""Pure rules of two-way conversations: keywords, internal notes, Slack markup → SMS, inbound rendering."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.conversations import (
    Keyword,
    classify_keyword,
    inbound_text,
    is_internal_note,
    mentioned_users,
    opted_out_refusal,
    slack_to_sms,
)
from sw_api.models import InboundMessage, MediaItem


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("STOP", Keyword.OPT_OUT), ("stop", Keyword.OPT_OUT), ("  Stop.  ", Keyword.OPT_OUT),
        ("UNSUBSCRIBE!", Keyword.OPT_OUT), ("optout", Keyword.OPT_OUT), ("stopall", Keyword.OPT_OUT),
        ("cancel", Keyword.OPT_OUT), ("end", Keyword.OPT_OUT), ("quit", Keyword.OPT_OUT), ("revoke", Keyword.OPT_OUT),
        ("START", Keyword.OPT_IN), ("unstop", Keyword.OPT_IN), ("Yes!", Keyword.OPT_IN),
        ("help", Keyword.HELP), ("INFO?", Keyword.HELP),
        ("please stop texting me", None), ("stop it", None), ("", None), (None, None), ("STOPP", None),
    ],
)
def test_keywords_are_whole_messages(body: str | None, expected: Keyword | None) -> None:
    assert classify_keyword(body) is expected


@pytest.mark.parametrize(
    ("text", "internal"),
    [("note: call them", True), ("NOTE: x", True), ("  Note:x", True), ("// internal", True),
     ("notes are useful", False), ("see https://x.example//path", False), ("hello", False)],
)
def test_internal_notes(text: str, internal: bool) -> None:
    assert is_internal_note(text) is internal


@pytest.mark.parametrize(
    ("slack", "sms"),
    [
        ("hi <@U123>", "hi @Dana Smith"),
        ("ask <@U999>", "ask @U999"),
        ("see <#C123|ops>", "see #ops"),
        ("see <#C123>", "see #C123"),
        ("<https://x.example|label>", "label (https://x.example)"),
        ("<https://x.example>", "https://x.example"),
        ("<https://x.example|https://x.example>", "https://x.example"),
        ("<mailto:a@b.example|a@b.example>", "a@b.example"),
        ("<tel:+15551234567|555 123 4567>", "555 123 4567 (+15551234567)"),
        (":wave: hi :thumbsup:", "👋 hi 👍"),
        (":not_an_emoji:", ":not_an_emoji:"),
        ("fish &amp; chips &lt;3 &gt; 2", "fish & chips <3 > 2"),
        ("&amp;lt;", "&lt;"),
        ("<!here> ok", "@here ok"),
        ("  padded  ", "padded"),
    ],
)
def test_slack_markup_becomes_plain_sms(slack: str, sms: str) -> None:
    assert slack_to_sms(slack, {"U123": "Dana Smith"}) == sms


def test_mentioned_users() -> None:
    assert mentioned_users("<@U1> and <@W2|bob> not <#C3>") == {"U1", "W2"}


def _inbound(body: str | None, media: tuple[MediaItem, ...] = ()) -> InboundMessage:
    return InboundMessage(message_id="m1", from_="+15551234567", to="+15557770000", body=body, media=media)


def test_inbound_text_is_inert() -> None:
    text = inbound_text(_inbound("<!channel> <https://evil.example|bank> & <@U0ALICE>"), new_conversation=True)
    assert "<!channel>" not in text and "<https://evil" not in text and "<@U0ALICE>" not in text
    assert "&lt;!channel&gt;" in text and "&amp;" in text
    assert "+1 555-123-4567" in text


def test_inbound_media_only_and_hostile_urls() -> None:
    media = (MediaItem("https://media.example/a.jpg?x=1&y=2", "image/jpeg"),
             MediaItem("https://media.example/b|<!channel>", "image/png"),
             MediaItem("javascript:alert(1)", "text/plain"))
    text = inbound_text(_inbound(None, media), new_conversation=False)
    assert "<https://media.example/a.jpg?x=1&amp;y=2|📎 attachment 1 (image/jpeg)>" in text
    assert "<!channel>" not in text and "b%7C&lt;!channel&gt;" in text
    assert "<javascript" not in text and "text/plain" in text
    assert "empty message" not in text


def test_refusal_says_who_and_when() -> None:
    text = opted_out_refusal("+15551234567", "+15557770000", datetime(2024, 5, 1, 9, 30, tzinfo=UTC), "STOP")
    assert "+1 555-123-4567 opted out" in text and "2024-05-01 09:30 UTC" in text and "texted STOP" in text
    assert "Nothing was sent" in text
