"""What Slack shows of a bulk send (issue 13), pure: the preview (problems, "and K more", skips, quiet-hour waits,
escaping, the Send button and its confirm), the live parent in each state (buttons only where they make sense,
the final form with totals and none), the report CSV (header, a name with a comma, the formula guard) and the
reply header.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge import bulk_render as br
from bridge.bulk_model import (
    PREVIEW_PROBLEMS,
    BatchState,
    BulkBatch,
    BulkPreview,
    BulkProblem,
    BulkProgress,
    BulkReportRow,
)
from bridge.slack_blocks import MESSAGE_BLOCKS, SECTION_TEXT

QUIET_UNTIL = datetime(2026, 12, 8, 13, 0, tzinfo=UTC)  # a Tuesday


def _preview(**changes: Any) -> BulkPreview:
    values: dict[str, Any] = dict(
        batch_id="B123", will_send=297, invalid=(), invalid_count=0, opted_out=0, blocked=0, duplicates=0,
        segments=297, seconds=150.0, quiet_waiting=0, quiet_until=None, sample="Hi Dana, the store is closed today.")
    values.update(changes)
    return BulkPreview(**values)


def _text_of(blocks: list[dict[str, Any]]) -> str:
    return "\n".join(b["text"]["text"] for b in blocks if b["type"] == "section")


def _buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


def test_preview_counts_time_and_the_send_button() -> None:
    preview = _preview(opted_out=2, blocked=1, duplicates=4)
    blocks = br.preview_blocks(preview, "Store closed today", from_="+15550001111")
    text = _text_of(blocks)
    assert "*297 recipients* will get the text" in text
    assert "3 skipped: 2 opted out, 1 blocked" in text
    assert "4 duplicates merged" in text
    assert "297 segments in total" in text and "about 2 min 30 s" in text
    assert "Hi Dana, the store is closed today." in text
    assert "quiet hours" not in text and "cannot be texted" not in text
    send, cancel = _buttons(blocks)
    assert (send["action_id"], send["value"], send["style"]) == ("bulk_send", "B123", "primary")
    assert send["text"]["text"] == "Send to 297"
    assert send["confirm"]["title"]["text"] == "Send to 297?"
    assert "+1 555-000-1111" in send["confirm"]["text"]["text"]
    assert (cancel["action_id"], cancel["value"]) == ("bulk_discard", "B123")
    assert br.preview_text(preview, "Store closed today").startswith("*Preview of bulk “Store closed today”*")


def test_preview_lists_at_most_the_first_problems_then_counts_the_rest() -> None:
    problems = tuple(BulkProblem(n, f"55{n}", "not a valid phone number: it is too short") for n in range(1, 26))
    csv_problem = BulkProblem(7, "+1 nope", "no phone number", source="csv")
    preview = _preview(invalid=(*problems[:PREVIEW_PROBLEMS - 1], csv_problem), invalid_count=40)
    text = _text_of(br.preview_blocks(preview, "T"))
    assert "*40 lines cannot be texted:*" in text
    assert "• entry 1 “551”: not a valid phone number: it is too short" in text
    assert "• CSV line 7 “+1 nope”: no phone number" in text
    assert text.count("\n• ") == PREVIEW_PROBLEMS + 1
    assert f"_and {40 - PREVIEW_PROBLEMS} more_" in text


def test_preview_quiet_hour_waits_use_slack_dates() -> None:
    text = _text_of(br.preview_blocks(_preview(quiet_waiting=12, quiet_until=QUIET_UNTIL), "T"))
    stamp = int(QUIET_UNTIL.timestamp())
    assert f"12 wait for quiet hours to end (until <!date^{stamp}^{{date_short_pretty}} {{time}}|Tue 13:00 UTC>)" \
        in text


def test_preview_escapes_everything_typed() -> None:
    hostile = "<!channel> *bold* <https://evil.example|click> & @here"
    preview = _preview(invalid=(BulkProblem(1, hostile, "no contact of that name (did you mean <@U0BOSS>?)"),),
                       invalid_count=1, sample=hostile)
    blocks = br.preview_blocks(preview, hostile)
    dumped = json.dumps(blocks, ensure_ascii=False) + br.preview_text(preview, hostile)
    assert "<!channel>" not in dumped and "<https://" not in dumped and "<@U0BOSS>" not in dumped
    assert "&lt;!channel&gt;" in dumped and "&amp;" in dumped
    assert "@\u2060here" in _text_of(blocks), "no @here ping from a name or a line"


def test_preview_with_nobody_to_send_to_offers_only_cancel() -> None:
    blocks = br.preview_blocks(_preview(will_send=0, segments=0, seconds=0, sample=""), "T")
    assert [b["action_id"] for b in _buttons(blocks)] == ["bulk_discard"]
    assert "*0 recipients* will get the text" in _text_of(blocks)


def test_a_huge_preview_fits_slack() -> None:
    long_reason = "x" * 2000
    problems = tuple(BulkProblem(n, "v" * 500, long_reason) for n in range(1, PREVIEW_PROBLEMS + 1))
    blocks = br.preview_blocks(_preview(invalid=problems, invalid_count=9000, sample="y" * 5000), "T")
    assert len(blocks) <= MESSAGE_BLOCKS
    assert all(len(b["text"]["text"]) <= SECTION_TEXT for b in blocks if b["type"] == "section")
    assert blocks[-1]["type"] == "actions"


@pytest.mark.parametrize(("seconds", "said"), [(0.2, "under a second"), (45, "about 45 s"),
                                               (150, "about 2 min 30 s"), (700, "about 12 min"),
                                               (3900, "about 1 h 5 min"), (7200, "about 2 h")])
def test_about(seconds: float, said: str) -> None:
    assert br.about(seconds) == said


def test_title_of() -> None:
    assert br.title_of("\n  Store   closed today\nsee you tomorrow") == "Store closed today"
    long = br.title_of("The store is closed today because of the storm, see you all tomorrow")
    assert long.endswith("…") and len(long) <= br.TITLE_CHARS and long.startswith("The store is closed")


# -- the live parent -------------------------------------------------------------------------------------------------

def _batch(state: BatchState, **changes: Any) -> BulkBatch:
    values: dict[str, Any] = dict(id="B123", user_id="U0ALICE", channel_id="C0GENERAL", from_="+15550001111",
                                  body="Store closed today", title="Store closed today", state=state, total=300,
                                  created_at=datetime(2026, 12, 2, 9, 0, tzinfo=UTC))
    values.update(changes)
    return BulkBatch(**values)


PROGRESS = BulkProgress(sent=100, delivered=80, failed=3, skipped=2, remaining=115, quiet_waiting=5)


def test_parent_while_sending_has_pause_and_cancel() -> None:
    batch = _batch(BatchState.SENDING)
    blocks = br.parent_blocks(batch, PROGRESS, seconds_left=115)
    text = _text_of(blocks)
    assert "📣 *Bulk “Store closed today”* to 300 recipients from +1 555-000-1111 · 📤 sending" in text
    assert "100 sent · 80 delivered · 3 failed · 2 skipped · 115 remaining" in text
    assert "ETA: about 1 min 50 s" in text and "5 wait for quiet hours" in text
    pause, cancel = _buttons(blocks)
    assert (pause["action_id"], pause["value"]) == ("bulk_pause", "B123")
    assert (cancel["action_id"], cancel["style"]) == ("bulk_cancel", "danger") and cancel["confirm"]
    assert br.parent_text(batch, PROGRESS, seconds_left=115).splitlines()[1] == \
        "100 sent · 80 delivered · 3 failed · 2 skipped · 115 remaining"


def test_parent_when_paused_has_resume_and_cancel() -> None:
    blocks = br.parent_blocks(_batch(BatchState.PAUSED), PROGRESS, seconds_left=115)
    assert [b["action_id"] for b in _buttons(blocks)] == ["bulk_resume", "bulk_cancel"]
    text = _text_of(blocks)
    assert "⏸️ paused" in text and "ETA" not in text and "until Resume" in text


def test_parent_final_forms_show_totals_and_no_buttons() -> None:
    done_progress = BulkProgress(sent=5, delivered=290, failed=3, skipped=2, remaining=0)
    finished = datetime(2026, 12, 2, 9, 6, tzinfo=UTC)
    done = br.parent_blocks(_batch(BatchState.DONE, finished_at=finished), done_progress)
    assert not _buttons(done)
    text = _text_of(done)
    assert "✅ done" in text and "Totals: 5 sent · 290 delivered · 3 failed · 2 skipped" in text
    assert "remaining" not in text and f"<!date^{int(finished.timestamp())}^" in text
    stopped = BulkProgress(sent=10, delivered=40, failed=0, skipped=1, remaining=0, cancelled=249)
    cancelled = br.parent_blocks(_batch(BatchState.CANCELLED, finished_by="U0BOB"), stopped)
    assert not _buttons(cancelled)
    assert "Cancelled by <@U0BOB>: 10 sent · 40 delivered · 0 failed · 1 skipped · 249 not sent" in \
        _text_of(cancelled)


def test_parent_escapes_the_title() -> None:
    text = br.parent_text(_batch(BatchState.SENDING, title="<!here> *sale*"), PROGRESS)
    assert "<!here>" not in text and "&lt;!here&gt;" in text and "*sale*" not in text
    assert "ETA: working it out" in text


# -- the report and a reply --------------------------------------------------------------------------------------------

def test_report_csv_header_commas_and_formula_guard() -> None:
    at = datetime(2026, 12, 2, 9, 1, 2, tzinfo=UTC)
    rows = [
        BulkReportRow("+15551234567", "Smith, Dana", "delivered", None, None, at),
        BulkReportRow("+15552223333", "=HYPERLINK(\"http://evil\")", "failed", "30003", "-unreachable", at),
        BulkReportRow("+15559876543", "@Jo", "skipped", None, "+opted out", None),
        BulkReportRow("=1+1", None, "failed", "@x", "\tsneaky", None),
    ]
    lines = list(br.report_csv(rows))
    assert lines[0] == "number,name,status,error_code,error_message,sent_at\n"
    parsed = list(csv.reader(io.StringIO("".join(lines))))
    assert parsed[1] == ["+15551234567", "Smith, Dana", "delivered", "", "", "2026-12-02T09:01:02Z"]
    assert parsed[2] == ["+15552223333", "'=HYPERLINK(\"http://evil\")", "failed", "30003", "'-unreachable",
                         "2026-12-02T09:01:02Z"]
    assert parsed[3] == ["+15559876543", "'@Jo", "skipped", "", "'+opted out", ""]
    assert parsed[4] == ["'=1+1", "", "failed", "'@x", "'\tsneaky", ""]
    assert len(lines) == 5, "one string per row"


def test_report_csv_is_lazy() -> None:
    def rows() -> Any:
        yield BulkReportRow("+15551234567", "Dana", "sent", None, None, None)
        raise AssertionError("read past what was asked for")

    report = br.report_csv(rows())
    assert next(report).startswith("number,")
    assert next(report).startswith("+15551234567,Dana,sent")
