"""What Slack shows of a bulk send (issue 13): the preview, the live parent, the report CSV and a reply's header.

Owns: the bulk action ids (``bulk_send``, ``bulk_discard`` on the preview; ``bulk_pause``, ``bulk_resume``,
``bulk_cancel`` on the parent; each button's value is the batch id), the wording and Block Kit JSON (plain dicts)
of the preview (an ephemeral for the sender only: counts, invalid lines, skips, duplicates, segments, how long,
quiet-hour waits, the sample text, "Send to N" / "Cancel") and of the live parent (counters, ETA, state, only the
buttons that make sense in that state; the final form shows totals and no buttons), ``report_csv`` (the report
uploaded into the parent's thread, guarded against spreadsheet formulas), ``title_of`` (a batch's short title,
from its message) and ``quoted_title`` (how every bulk text quotes it, ``bridge.conversations``' reply header too).
Everything typed by a person (titles, names, lines, the sample) is escaped; every message fits Slack's limits
(``bridge.slack_blocks``).
Pure. Must not import: storage, ``handlers``, aiohttp, Slack packages.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from bridge.bulk_input import where
from bridge.bulk_model import PREVIEW_PROBLEMS, BatchState, BulkBatch, BulkPreview, BulkProgress, BulkReportRow
from bridge.contacts import safe_name
from bridge.slack_blocks import SECTION_TEXT, fit_blocks, fit_text, pack, quote_chunks, sections
from sw_api.text import format_number

SEND_ACTION = "bulk_send"
DISCARD_ACTION = "bulk_discard"
PAUSE_ACTION = "bulk_pause"
RESUME_ACTION = "bulk_resume"
CANCEL_ACTION = "bulk_cancel"
ACTIONS = (SEND_ACTION, DISCARD_ACTION, PAUSE_ACTION, RESUME_ACTION, CANCEL_ACTION)

REPORT_HEADER = ("number", "name", "status", "error_code", "error_message", "sent_at")
TITLE_CHARS = 40          # a batch's title: the first words of its message, at most this long
SAMPLE_CHARS = 1600       # the sample text shown in the preview (a text is at most 1600 characters anyway)
CONFIRM_TEXT = 300        # Slack's limit on a confirm dialog's text

# A cell a spreadsheet would run as a formula (OWASP: = + - @, and tab / CR which some readers strip first).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def about(seconds: float) -> str:
    """"about 45 s", "about 2 min 30 s", "about 1 h 5 min": how long, for people (never "0 s")."""
    total = round(max(0.0, seconds))
    if total < 1:
        return "under a second"
    if total < 60:
        return f"about {total} s"
    if total < 3600:
        minutes, secs = divmod(total, 60)
        if minutes >= 10:  # past 10 min, minutes are precise enough
            return f"about {round(total / 60)} min"
        secs = secs // 10 * 10  # "2 min 30 s", not "2 min 37 s"
        return f"about {minutes} min {secs} s" if secs else f"about {minutes} min"
    hours, rest = divmod(round(total / 60), 60)
    return f"about {hours} h {rest} min" if rest else f"about {hours} h"


def title_of(body: str) -> str:
    """A batch's short title: its message's first line, spacing collapsed, cut at a word near ``TITLE_CHARS``."""
    first = next((line for line in body.splitlines() if line.strip()), "")
    words = " ".join(first.split())
    if len(words) <= TITLE_CHARS:
        return words
    cut = words[: TITLE_CHARS - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > TITLE_CHARS // 2 else cut).rstrip(" ,;:.-") + "…"


def quoted_title(title: str) -> str:
    """A batch's title as every bulk text quotes it: inert, in curly quotes."""
    return f"“{safe_name(title)}”" if title.strip() else "(untitled)"


def _until(at: datetime) -> str:
    """A moment in each reader's own time zone (``<!date^…>``), weekday and time in UTC in the fallback."""
    at = at.astimezone(UTC)
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{at:%a %H:%M} UTC>"


# -- the preview ---------------------------------------------------------------------------------------------------

def preview_lines(preview: BulkPreview, title: str) -> list[str]:
    """The preview's mrkdwn lines (each already escaped), before the sample and the buttons."""
    lines = [f"*Preview of bulk {quoted_title(title)}* · only you can see this; nothing is sent before "
             f"“Send to {preview.will_send}”.",
             f"✅ *{_plural(preview.will_send, 'recipient')}* will get the text"]
    if preview.invalid_count:
        lines.append(f"⚠️ *{_plural(preview.invalid_count, 'line')} cannot be texted:*")
        listed = preview.invalid[:PREVIEW_PROBLEMS]
        for problem in listed:
            value = f" “{safe_name(problem.value)}”" if problem.value.strip() else ""
            lines.append(f"• {where(problem)}{value}: {safe_name(problem.reason)}")
        if preview.invalid_count > len(listed):
            lines.append(f"• _and {preview.invalid_count - len(listed)} more_")
    skipped = preview.opted_out + preview.blocked
    if skipped:
        lines.append(f"🚫 {skipped} skipped: {preview.opted_out} opted out, {preview.blocked} blocked")
    if preview.duplicates:
        lines.append(f"🔁 {_plural(preview.duplicates, 'duplicate')} merged")
    lines.append(f"🧮 {_plural(preview.segments, 'segment')} in total · takes {about(preview.seconds)} at the "
                 "configured rate")
    if preview.quiet_waiting:
        until = f" (until {_until(preview.quiet_until)})" if preview.quiet_until is not None else ""
        lines.append(f"🌙 {preview.quiet_waiting} wait for quiet hours to end{until}")
    return lines


def preview_text(preview: BulkPreview, title: str) -> str:
    return fit_text("\n".join(preview_lines(preview, title)))


def _button(text: str, action_id: str, value: str, *, style: str | None = None,
            confirm: dict[str, Any] | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "text": {"type": "plain_text", "text": text, "emoji": True},
                              "action_id": action_id, "value": value}
    if style:
        button["style"] = style
    if confirm:
        button["confirm"] = confirm
    return button


def _plain(text: str, limit: int) -> dict[str, str]:
    return {"type": "plain_text", "text": text if len(text) <= limit else text[: limit - 1] + "…"}


def preview_blocks(preview: BulkPreview, title: str, *, from_: str = "") -> list[dict[str, Any]]:
    blocks = sections(pack(preview_lines(preview, title), SECTION_TEXT))
    if preview.sample:
        blocks += sections(pack(["*Sample* (the first recipient's text):"], SECTION_TEXT))
        sample = preview.sample if len(preview.sample) <= SAMPLE_CHARS else preview.sample[:SAMPLE_CHARS] + "…"
        blocks += sections(quote_chunks(sample))
    sender = f" from {format_number(from_)}" if from_ else ""
    confirm = {
        "title": _plain(f"Send to {preview.will_send}?", 100),
        # plain_text: nothing typed by a person is shown here, and plain text cannot mention anyone
        "text": _plain(f"{_plural(preview.will_send, 'text')}{sender}, {about(preview.seconds)}. "
                       "Pause and Cancel stay available while it sends.", CONFIRM_TEXT),
        "confirm": _plain("Send", 30), "deny": _plain("Not yet", 30), "style": "primary",
    }
    buttons = []
    if preview.will_send > 0:
        buttons.append(_button(f"Send to {preview.will_send}", SEND_ACTION, preview.batch_id, style="primary",
                               confirm=confirm))
    buttons.append(_button("Cancel", DISCARD_ACTION, preview.batch_id))
    return fit_blocks([*blocks, {"type": "actions", "block_id": "bulk_preview", "elements": buttons}])


def discarded_text(batch: BulkBatch) -> str:
    """What replaces the preview after its Cancel."""
    return f"🗑️ Bulk {quoted_title(batch.title)} discarded; nothing was sent."


# -- the live parent -------------------------------------------------------------------------------------------------

_STATE = {
    BatchState.DRAFT: "📝 not confirmed yet",
    BatchState.SENDING: "📤 sending",
    BatchState.PAUSED: "⏸️ paused",
    BatchState.CANCELLED: "🛑 cancelled",
    BatchState.DONE: "✅ done",
    BatchState.DISCARDED: "🗑️ discarded",
}
_FINAL = frozenset({BatchState.CANCELLED, BatchState.DONE, BatchState.DISCARDED})


def parent_lines(batch: BulkBatch, progress: BulkProgress, *, seconds_left: float | None = None) -> list[str]:
    sender = f" from {format_number(batch.from_)}" if batch.from_ else ""
    lines = [f"📣 *Bulk {quoted_title(batch.title)}* to {_plural(batch.total, 'recipient')}{sender} · "
             f"{_STATE[batch.state]}"]
    counts = (f"{progress.sent} sent · {progress.delivered} delivered · {progress.failed} failed · "
              f"{progress.skipped} skipped")
    if batch.state in _FINAL:
        if batch.state is BatchState.CANCELLED:
            by = f" by <@{safe_name(batch.finished_by)}>" if batch.finished_by else ""
            not_sent = progress.cancelled + progress.remaining
            lines.append(f"Cancelled{by}: {counts} · {not_sent} not sent")
        else:
            lines.append(f"Totals: {counts}")
        if batch.finished_at is not None:
            lines.append(f"Finished {_until(batch.finished_at)}")
        return lines
    lines.append(f"{counts} · {progress.remaining} remaining")
    if progress.quiet_waiting:
        lines.append(f"🌙 {progress.quiet_waiting} wait for quiet hours to end")
    if batch.state is BatchState.SENDING and progress.remaining:
        lines.append(f"ETA: {about(seconds_left)}" if seconds_left is not None else "ETA: working it out")
    elif batch.state is BatchState.PAUSED:
        lines.append("Paused: nothing new is sent until Resume")
    return lines


def parent_text(batch: BulkBatch, progress: BulkProgress, *, seconds_left: float | None = None) -> str:
    return fit_text("\n".join(parent_lines(batch, progress, seconds_left=seconds_left)))


def parent_buttons(batch: BulkBatch) -> list[dict[str, Any]]:
    """Only what makes sense now: Pause while sending, Resume while paused, Cancel in both; none at the end."""
    cancel = _button("Cancel", CANCEL_ACTION, batch.id, style="danger", confirm={
        "title": _plain("Cancel this bulk send?", 100),
        "text": _plain("No recipient who has not been sent to yet will get the text. This cannot be undone.",
                       CONFIRM_TEXT),
        "confirm": _plain("Cancel the send", 30), "deny": _plain("Keep going", 30), "style": "danger"})
    if batch.state is BatchState.SENDING:
        return [_button("Pause", PAUSE_ACTION, batch.id), cancel]
    if batch.state is BatchState.PAUSED:
        return [_button("Resume", RESUME_ACTION, batch.id, style="primary"), cancel]
    return []


def parent_blocks(batch: BulkBatch, progress: BulkProgress, *,
                  seconds_left: float | None = None) -> list[dict[str, Any]]:
    blocks = sections(pack(parent_lines(batch, progress, seconds_left=seconds_left), SECTION_TEXT))
    buttons = parent_buttons(batch)
    if buttons:
        blocks.append({"type": "actions", "block_id": "bulk_parent", "elements": buttons})
    return fit_blocks(blocks)


def parent_view(batch: BulkBatch, progress: BulkProgress, *, segments_per_text: int,
                mps: float) -> tuple[str, list[dict[str, Any]]]:
    """The live parent (text, blocks) with its ETA from the rate: the segments of what is left at ``mps``."""
    seconds_left = progress.remaining * max(1, segments_per_text) / max(mps, 0.1)
    return (parent_text(batch, progress, seconds_left=seconds_left),
            parent_blocks(batch, progress, seconds_left=seconds_left))


# -- the report ------------------------------------------------------------------------------------------------------

def inert_cell(value: str) -> str:
    """A cell no spreadsheet runs as a formula: a leading = + - @ (or tab / CR) gets an apostrophe."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _number_cell(number: str) -> str:
    # E.164 starts with + on purpose and is only digits after it (a spreadsheet reads it as a number, never runs
    # it); anything else in the number column is guarded like any cell.
    return number if _E164.match(number) else inert_cell(number)


def _at(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else ""


def report_csv(rows: Iterable[BulkReportRow]) -> Iterator[str]:
    """The report, one CSV line at a time (header first), so a 10,000-row report is never built whole."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")

    def line(cells: Iterable[str]) -> str:
        out.seek(0)
        out.truncate()
        writer.writerow(list(cells))
        return out.getvalue()

    yield line(REPORT_HEADER)
    for row in rows:
        yield line([_number_cell(row.number), inert_cell(row.name or ""), inert_cell(row.status),
                    inert_cell(row.error_code or ""), inert_cell(row.error_message or ""), _at(row.sent_at)])
