"""Tests of bridge.render: parent message, receipts and failure replies as Slack will show them."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge import render
from bridge.model import OutboundSms, SendState
from sw_api.models import MessageStatus

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
EVIL = "<!channel> click <https://evil.example|your bank> & <@U0ADMIN>"

SMS = OutboundSms(
    ref="ref123",
    created_at=NOW,
    updated_at=NOW,
    user_id="U0SENDER",
    channel_id="C0CHAN",
    to="+15551234567",
    from_="+15557770000",
    body="Running 10 min late",
    state=SendState.ACCEPTED,
    sw_id="SM1",
    status=MessageStatus.QUEUED,
    segments=1,
)


def sms(**changes: Any) -> OutboundSms:
    return dataclasses.replace(SMS, **changes)


def texts(blocks: list[dict[str, Any]]) -> list[str]:
    """Every mrkdwn/plain text in the blocks, in order."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks)
    return found


def retry_buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        element
        for block in blocks
        if block["type"] == "actions"
        for element in block["elements"]
        if element.get("action_id") == render.RETRY_ACTION
    ]


def assert_no_live_markup(text: str) -> None:
    """Outside the mentions we put there ourselves, nothing in the text can ping, link or mention."""
    ours = re.sub(r"<@U0SENDER>", "", text)
    assert "<" not in ours
    assert not re.search(r"&(?!amp;|lt;|gt;)", ours)


# --- parent ---------------------------------------------------------------------------------------------


def test_parent_shows_numbers_sender_badge_and_segments() -> None:
    blocks = render.parent_blocks(sms(body="a" * 161, segments=2))
    joined = "\n".join(texts(blocks))
    assert "+1 555-123-4567" in joined
    assert "+1 555-777-0000" in joined
    assert "<@U0SENDER>" in joined
    assert "🕓" in joined and "Queued at SignalWire" in joined
    assert "161 chars, GSM-7, 2 segment(s)" in joined
    assert render.SIMULATED_NOTE not in joined
    assert retry_buttons(blocks) == []
    json.dumps(blocks)  # what goes to Slack must serialise


def test_parent_counts_segments_itself_before_signalwire_answers() -> None:
    blocks = render.parent_blocks(sms(body="ж" * 71, segments=None, status=None, state=SendState.PENDING))
    joined = "\n".join(texts(blocks))
    assert "71 chars, UCS-2, 2 segment(s)" in joined
    assert "⏳" in joined and "Sending…" in joined


def test_parent_simulated_note() -> None:
    assert render.SIMULATED_NOTE in "\n".join(texts(render.parent_blocks(SMS, simulated=True)))


@pytest.mark.parametrize(
    ("status", "emoji", "label"),
    [
        (MessageStatus.QUEUED, "🕓", "Queued at SignalWire"),
        (MessageStatus.SENT, "📤", "Sent to carrier"),
        (MessageStatus.DELIVERED, "✅", "Delivered"),
        (MessageStatus.UNDELIVERED, "❌", "Undelivered"),
        (MessageStatus.FAILED, "❌", "Failed"),
    ],
)
def test_parent_badge_follows_status(status: MessageStatus, emoji: str, label: str) -> None:
    shown = sms(status=status)
    assert render.badge(shown) == render.Badge(emoji, label)
    assert render.parent_text(shown).startswith(f"{emoji} {label} · SMS to +1 555-123-4567")
    assert f"*{label}*" in "\n".join(texts(render.parent_blocks(shown)))


def test_parent_escapes_the_body_and_media() -> None:
    shown = sms(body=EVIL, media=("https://example.com/a.png?x=1&y=<2>",))
    blocks = render.parent_blocks(shown)
    for text in texts(blocks):
        assert_no_live_markup(text)
    joined = "\n".join(texts(blocks))
    assert "&lt;!channel&gt;" in joined
    assert "&lt;https://evil.example|your bank&gt;" in joined
    assert "x=1&amp;y=&lt;2&gt;" in joined
    assert_no_live_markup(render.parent_text(shown))


def test_parent_text_previews_long_bodies() -> None:
    text = render.parent_text(sms(body="x" * 200))
    assert "x" * 79 + "…" in text
    assert "x" * 80 not in text


@pytest.mark.parametrize(
    ("shown", "retry"),
    [
        (sms(status=MessageStatus.QUEUED), False),
        (sms(status=MessageStatus.SENT), False),
        (sms(status=MessageStatus.DELIVERED), False),
        (sms(status=MessageStatus.READ), False),
        (sms(status=None, state=SendState.PENDING), False),
        (sms(status=None, state=SendState.SUBMITTING), False),
        (sms(status=MessageStatus.UNDELIVERED, error_code="30003"), True),
        (sms(status=MessageStatus.FAILED, error_code="30005"), True),
        (sms(status=None, state=SendState.REJECTED, sw_id=None, error_code="21610", error_message="opted out"), True),
        (sms(status=None, state=SendState.UNKNOWN, sw_id=None, error_message="timed out"), True),
        # The send timed out, but SignalWire had created it and its callbacks arrived: it is not unknown any more.
        (sms(status=MessageStatus.DELIVERED, state=SendState.UNKNOWN, sw_id=None), False),
        (sms(status=MessageStatus.UNDELIVERED, state=SendState.UNKNOWN, sw_id=None, error_code="30003"), True),
    ],
)
def test_retry_button_exactly_when_failed_rejected_or_unknown(shown: OutboundSms, retry: bool) -> None:
    assert render.can_retry(shown) is retry
    buttons = retry_buttons(render.parent_blocks(shown))
    assert len(buttons) == (1 if retry else 0)
    if retry:
        assert buttons[0]["value"] == shown.ref
        assert buttons[0]["text"]["text"] == "Retry"


@pytest.mark.parametrize(
    ("shown", "emoji", "label"),
    [
        (sms(status=None, state=SendState.REJECTED, sw_id=None), "⛔", "Not sent"),
        (sms(status=None, state=SendState.UNKNOWN, sw_id=None), "❓", "Checking with SignalWire…"),
        (sms(status=None, state=SendState.UNKNOWN, sw_id=None, checked_at=NOW), "❓", "Outcome unknown"),
    ],
)
def test_parent_badge_for_sends_that_never_got_a_status(shown: OutboundSms, emoji: str, label: str) -> None:
    assert render.badge(shown) == render.Badge(emoji, label)


def test_parent_shows_error_code_and_nothing_dangling_without_one() -> None:
    with_code = "\n".join(texts(render.parent_blocks(sms(status=MessageStatus.FAILED, error_code="30007"))))
    assert "· error 30007" in with_code
    rejected = sms(status=None, state=SendState.REJECTED, sw_id=None, error_code=None, error_message="no channel")
    detail = texts(render.parent_blocks(rejected))
    assert not any(t.rstrip().endswith("error") for t in detail)


# --- MMS ------------------------------------------------------------------------------------------------


def test_mms_sent_is_final_wording() -> None:
    mms = sms(media=("https://example.com/a.png",), status=MessageStatus.SENT)
    assert render.badge(mms).label == "Sent to carrier (MMS has no delivery receipt)"
    assert "no delivery receipt" in render.receipt_text(mms, MessageStatus.SENT)
    joined = "\n".join(texts(render.parent_blocks(mms)))
    assert "*MMS to +1 555-123-4567*" in joined
    assert "📎 https://example.com/a.png" in joined
    assert render.parent_text(mms).startswith("📤 Sent to carrier (MMS has no delivery receipt) · MMS to")


def test_send_as_mms_without_media_is_mms() -> None:
    assert "no delivery receipt" in render.receipt_text(sms(send_as_mms=True), MessageStatus.SENT)


def test_sms_sent_wording() -> None:
    assert render.receipt_text(SMS, MessageStatus.SENT) == "📤 Sent to carrier"


# --- receipts -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("segments", "text"),
    [(1, "🕓 Queued at SignalWire (1 segment)"), (3, "🕓 Queued at SignalWire (3 segments)"),
     (None, "🕓 Queued at SignalWire")],
)
def test_queued_receipt_counts_segments(segments: int | None, text: str) -> None:
    assert render.receipt_text(sms(segments=segments), MessageStatus.QUEUED) == text


def test_delivered_receipt() -> None:
    assert render.receipt_text(SMS, MessageStatus.DELIVERED) == "✅ Delivered"


# --- failures -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        ("30003", "unreachable"),
        ("30005", "unknown to the carrier"),
        ("30006", "landline"),
        ("30007", "spam"),
        ("21610", "STOP"),
    ],
)
def test_failure_blocks_explain_common_codes(code: str, meaning: str) -> None:
    failed = sms(status=MessageStatus.UNDELIVERED, error_code=code, error_message="Carrier said no")
    headline = render.delivery_failure_headline(failed)
    blocks = render.failure_blocks(failed, headline)
    text = texts(blocks)[0]
    assert text.startswith("❌ *Undelivered*")
    assert f"Error code *{code}*" in text
    assert "SignalWire says: “Carrier said no”" in text
    explanation = render.explain(code)
    assert explanation is not None and meaning in explanation
    assert explanation in text
    assert len(retry_buttons(blocks)) == 1
    assert render.failure_text(failed, headline) == text


def test_failure_quotes_signalwire_verbatim_but_escaped() -> None:
    failed = sms(status=MessageStatus.FAILED, error_code="<!here>", error_message=EVIL)
    blocks = render.failure_blocks(failed, render.delivery_failure_headline(failed))
    text = texts(blocks)[0]
    assert "“&lt;!channel&gt; click &lt;https://evil.example|your bank&gt; &amp; &lt;@U0ADMIN&gt;”" in text
    assert "*&lt;!here&gt;*" in text
    assert_no_live_markup(text)


def test_failure_with_unknown_code_has_no_made_up_explanation() -> None:
    failed = sms(status=MessageStatus.FAILED, error_code="99999", error_message="Something odd")
    text = render.failure_text(failed, render.delivery_failure_headline(failed))
    assert text.split("\n") == ["❌ *Failed*: the carrier did not deliver this message.", "Error code *99999*",
                                "SignalWire says: “Something odd”"]
    assert render.explain("99999") is None
    assert render.explain(None) is None


def test_rejected_and_unknown_failures() -> None:
    rejected = sms(status=None, state=SendState.REJECTED, sw_id=None, error_code="21610",
                   error_message="Attempt to send to unsubscribed recipient")
    text = render.failure_text(rejected, render.rejected_headline())
    assert text.startswith("⛔ *Not sent*")
    assert "must text START" in text
    unknown = sms(status=None, state=SendState.UNKNOWN, sw_id=None, error_message="no answer in 10 s")
    blocks = render.failure_blocks(unknown, render.unknown_headline(), simulated=True)
    joined = "\n".join(texts(blocks))
    assert "may or may not have been sent" in joined
    assert "no answer in 10 s" in joined
    assert render.SIMULATED_NOTE in joined
    assert len(retry_buttons(blocks)) == 1
