"""``bridge.home``, the App Home view as a pure function (issue 12): Slack's limits whatever the data, escaping,
the sections other slices fill, and what the status never shows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.home import (
    MAX_BLOCKS,
    ConversationLine,
    HomeStatus,
    contacts_section,
    engine_name,
    home_view,
    safe_link,
    shorten,
)
from bridge.model import HomeSummary, LastError, RecentConversation

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
OURS = "+15557770000"


def _summary(**changes: Any) -> HomeSummary:
    values: dict[str, Any] = {"opted_out": 0, "blocked": 0, "outbox_pending": 0, "unsent": 0, "last_error": None}
    values.update(changes)
    return HomeSummary(**values)


def _status(numbers: tuple[str, ...] = (OURS,), **changes: Any) -> HomeStatus:
    return HomeStatus(numbers=numbers, simulated=False, engine="sqlite", summary=_summary(**changes))


def _line(i: int, text: str | None = "hello", *, name: str | None = None, link: str | None = None) -> ConversationLine:
    at = T0 + timedelta(minutes=i)
    conversation = RecentConversation(OURS, f"+1555123{i:04d}", "C1", f"1.{i}", at, text, at, True)
    return ConversationLine(conversation, name, link)


def _button_block(i: int, prefix: str = "sched") -> dict[str, Any]:
    return {"type": "section", "block_id": f"{prefix}_{i}", "text": {"type": "mrkdwn", "text": f"send {i}"},
            "accessory": {"type": "button", "action_id": f"cancel_{i}", "text": {"type": "plain_text", "text": "X"}}}


def _sections(view: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in view["blocks"] if b["type"] == "section" and "text" in b]


def test_every_text_stays_under_slacks_caps_and_the_view_under_100_blocks() -> None:
    huge = "x" * 50_000
    lines = [_line(i, huge, name=huge, link="https://t.slack.com/archives/C1/p1?thread_ts=1.1&cid=C1")
             for i in range(40)]
    error = LastError(T0, "slack", huge, huge)
    view = home_view(_status(numbers=tuple(f"+1555777{i:04d}" for i in range(30)), last_error=error), lines,
                     contacts_blocks=[_button_block(i, "contact") for i in range(50)],
                     scheduled_blocks=[_button_block(1000 + i) for i in range(500)])
    assert view["type"] == "home" and len(view["blocks"]) == MAX_BLOCKS
    for block in view["blocks"]:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        for field in block.get("fields", []):
            assert len(field["text"]) <= 2000
        if "text" in block:
            assert len(block["text"]["text"]) <= 3000
        for element in block.get("elements", []):
            assert len(element.get("text", "")) <= 3000 if isinstance(element.get("text"), str) else True
    texts = _sections(view)
    conversations = [t for t in texts if "+1 555-123-" in t]
    assert len(conversations) == 10, "the last 10, whatever the caller passed"
    assert all(len(t) < 600 for t in conversations)
    # The scheduled sends are cut to fit, and say where the rest are; the contacts section to its share.
    assert any("`/sms scheduled` lists them all" in t for b in view["blocks"] if b["type"] == "context"
               for t in [b["elements"][0]["text"]])
    ids = [str(b.get("block_id", "")) for b in view["blocks"]]
    assert sum(1 for i in ids if i.startswith("contact_")) == 10
    # 100 blocks less our own (3 status, 11 conversations, 11 contacts, 3 counts, 4 dividers, 2 scheduled header/note)
    assert sum(1 for i in ids if i.startswith("sched_")) == 66
    # The sections after the scheduled ones are all there.
    headers = [b["text"]["text"] for b in view["blocks"] if b["type"] == "header"]
    assert headers == ["SMS Bridge", "Your scheduled sends", "Recent conversations", "Contacts", "Opt-outs and blocks"]


def test_names_texts_and_errors_are_escaped_and_shortened() -> None:
    evil = "<!channel> <@U123> <https://evil.example|click> & *bold*"
    error = LastError(T0, "sms", "undelivered", "30003 <!here> handset")
    view = home_view(_status(last_error=error), [_line(1, evil + "\n" + "y" * 400, name=evil)],
                     contacts_blocks=[], scheduled_blocks=[])
    everything = "\n".join(_sections(view)) + "\n".join(
        e["text"] for b in view["blocks"] if b["type"] == "context" for e in b["elements"])
    for raw in ("<!channel>", "<@U123>", "<https://evil", "<!here>"):
        assert raw not in everything
    [line] = [t for t in _sections(view) if "+1 555-123-0001" in t]
    # ``bridge.contacts.labelled``: the whole label bold, the name's own markers made inert, "@" kept from pinging.
    assert line.startswith("*&lt;!channel&gt; &lt;@\u2060U123&gt; &lt;https://evil.example|click&gt; &amp; ∗bold∗ "
                           "(+1 555-123-0001)*")
    assert line.endswith("…") and "\n" in line and line.count("\n") == 1, "the message on one line"
    assert "30003 &lt;!here&gt; handset" in everything and "SMS undelivered" in everything


def test_a_line_without_text_says_why_and_times_read_in_the_viewers_zone() -> None:
    picture = ConversationLine(RecentConversation(OURS, "+15551230001", "C1", "1.1", T0, None, T0, True, True))
    nothing = ConversationLine(RecentConversation(OURS, "+15551230002", "C1", "1.2", T0, None, None, False))
    view = home_view(_status(), [picture, nothing], contacts_blocks=[], scheduled_blocks=[])
    texts = _sections(view)
    assert any("← _(picture)_" in t for t in texts) and any("_(no text stored)_" in t for t in texts)
    assert f"<!date^{int(T0.timestamp())}^{{date_short_pretty}} {{time}}|2026-03-01 12:00 UTC>" in texts[1]


def test_permalinks_are_linked_only_when_they_are_plain_https_urls() -> None:
    assert safe_link("https://w.slack.com/archives/C1/p1?thread_ts=1.1&cid=C1", "Open") == (
        "<https://w.slack.com/archives/C1/p1?thread_ts=1.1&amp;cid=C1|Open>")
    for bad in (None, "", "http://w.slack.com/x", "https://x|y", "https://x>y", "javascript:alert(1)", "https://a b"):
        assert safe_link(bad, "Open") is None


@pytest.mark.parametrize(("url", "engine"), [
    ("sqlite:///data/sms-bridge.db", "sqlite"),
    ("postgresql://bridge:hunter2@db.internal:5432/sms", "postgresql"),
    ("postgres://u:p@h/d", "postgresql"),
    ("mysql://x", "unknown"),
])
def test_the_engine_is_named_never_its_url(url: str, engine: str) -> None:
    assert engine_name(url) == engine
    view = home_view(HomeStatus((OURS,), True, engine_name(url), _summary()), [], contacts_blocks=[],
                     scheduled_blocks=[])
    fields = "\n".join(f["text"] for b in view["blocks"] for f in b.get("fields", []))
    assert "hunter2" not in fields and "db.internal" not in fields and "data/" not in fields
    assert "Simulator (no real SMS is sent)" in fields


def test_the_status_reports_pending_work_and_the_counts() -> None:
    view = home_view(_status(opted_out=3, blocked=2, outbox_pending=4, unsent=1), [], contacts_blocks=[],
                     scheduled_blocks=[])
    fields = [f["text"] for b in view["blocks"] for f in b.get("fields", [])]
    assert "*Messages pending*\n5 (1 SMS not sent yet, 4 Slack updates)" in fields
    assert "*Opted out*\n3" in fields and "*Blocked*\n2" in fields
    assert "*Sending numbers*\n+1 555-777-0000" in fields


def test_the_contacts_section_has_a_count_when_known_and_the_three_buttons() -> None:
    assert "*12* contacts" in contacts_section(12)[0]["text"]["text"]
    assert "*1* contact in" in contacts_section(1)[0]["text"]["text"]
    assert "address book" in contacts_section(None)[0]["text"]["text"]
    actions = [e["action_id"] for e in contacts_section(None)[1]["elements"]]
    assert actions == ["contacts_add", "contacts_import", "contacts_export"]


def test_shorten_folds_whitespace_and_marks_a_cut() -> None:
    assert shorten("a\n\n b\tc", 10) == "a b c"
    assert shorten("abcdefghij", 5) == "abcd…" and len(shorten("x" * 500, 150)) == 150
