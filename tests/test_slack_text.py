"""Tests of bridge.slack_text: what we post is inert in Slack, and what Slack sends us reads back as typed."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.slack_text import escape_mrkdwn, quote, replace_tel_links, unescape_slack

# What makes Slack act on text: a raw "<" opens a mention/link/command, and a raw "&" starts an entity.
_LIVE_ENTITY = re.compile(r"&(?!amp;|lt;|gt;)")


def assert_inert_quote(mrkdwn: str) -> None:
    """No raw "<", no stray entity, and ">" only as each line's block-quote marker."""
    assert "<" not in mrkdwn
    assert not _LIVE_ENTITY.search(mrkdwn)
    for line in mrkdwn.split("\n"):
        assert line.startswith(">")
        assert ">" not in line[1:]


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("<!channel>", "&lt;!channel&gt;"),
        ("<!here> <!everyone>", "&lt;!here&gt; &lt;!everyone&gt;"),
        ("<https://evil.example|your bank>", "&lt;https://evil.example|your bank&gt;"),
        ("<@U0ADMIN>", "&lt;@U0ADMIN&gt;"),
        ("Tom & Jerry", "Tom &amp; Jerry"),
        ("&lt;already&gt;", "&amp;lt;already&amp;gt;"),
        ("plain", "plain"),
    ],
)
def test_escape_mrkdwn(text: str, escaped: str) -> None:
    assert escape_mrkdwn(text) == escaped
    assert "<" not in escape_mrkdwn(text)


@given(st.text())
def test_escape_then_unescape_is_identity(text: str) -> None:
    assert unescape_slack(escape_mrkdwn(text)) == text


@given(st.text())
def test_escaped_text_is_always_inert(text: str) -> None:
    escaped = escape_mrkdwn(text)
    assert "<" not in escaped and ">" not in escaped
    assert not _LIVE_ENTITY.search(escaped)


@pytest.mark.parametrize(
    ("sent", "typed"),
    [
        ("&lt;b&gt;", "<b>"),
        ("a &amp; b", "a & b"),
        ("&amp;lt;", "&lt;"),  # the user typed "&lt;" literally
        ("no escapes", "no escapes"),
    ],
)
def test_unescape_slack(sent: str, typed: str) -> None:
    assert unescape_slack(sent) == typed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<tel:+15551234567|+1 555 123 4567> hi", "+15551234567 hi"),
        ("<tel:+15551234567>", "+15551234567"),
        ("call <tel:5551234567|555-123-4567> or <tel:+15550000000|+1 555 000 0000>", "call 5551234567 or +15550000000"),
        ("<https://example.com|example.com>", "<https://example.com|example.com>"),
        ("no links", "no links"),
    ],
)
def test_replace_tel_links(text: str, expected: str) -> None:
    assert replace_tel_links(text) == expected


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("one line", ">one line"),
        ("two\nlines", ">two\n>lines"),
        ("gap\n\nhere", ">gap\n>\n>here"),
        ("<!channel> & <https://evil|bank>", ">&lt;!channel&gt; &amp; &lt;https://evil|bank&gt;"),
    ],
)
def test_quote(text: str, quoted: str) -> None:
    assert quote(text) == quoted
    assert_inert_quote(quote(text))


@given(st.text())
def test_quote_is_inert_for_any_text(text: str) -> None:
    quoted = quote(text)
    assert_inert_quote(quoted)
    assert quoted.count("\n") == text.count("\n")
