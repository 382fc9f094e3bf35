"""The whole bulk flow over real HTTP (issue 13): ``/sms bulk`` → the form → the private preview → "Send to N" →
one live parent in the channel, every valid recipient texted exactly once, no per-recipient threads; the preview's
Cancel sends nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from demo.harness import Harness, running_bridge
from tests.test_bulk_modal import GENERAL, _values, open_form

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    env = {"SMS_BULK_ALLOWED_USERS": "U0ALICE", "QUIET_HOURS": "off", "SIGNALWIRE_FROM_NUMBERS": "+15550000000"}
    async with running_bridge(tmp_path, env=env) as harness:
        yield harness


async def until(predicate: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout:g} s"
        await asyncio.sleep(0.05)


def _button_value(ephemeral: dict[str, Any], action_id: str) -> str:
    for block in ephemeral.get("blocks") or []:
        for element in block.get("elements") or []:
            if element.get("action_id") == action_id:
                return str(element["value"])
    raise AssertionError(f"no {action_id} button in {ephemeral}")


async def _preview(h: Harness, recipients: str, body: str) -> dict[str, Any]:
    view = await open_form(h)
    values = _values(recipients=recipients, body=body)
    values["sender"]["bulk_sender"]["selected_option"]["value"] = "+15550000000"
    answer = await h.driver.view_submission(view, values)
    assert answer.status == 200
    await until(lambda: bool([e for e in h.slack.ephemerals if e.get("channel") == GENERAL]), "the preview")
    [preview] = [e for e in h.slack.ephemerals if e.get("channel") == GENERAL]
    return preview


async def test_send_to_n_texts_each_valid_recipient_once_under_one_live_parent(h: Harness) -> None:
    recipients = "+1 212 555 0101, +1 212 555 0102; +1 212 555 0103\n+1 212 555 0101\nnot a number"
    preview = await _preview(h, recipients, "Store closed today, sorry!")
    text = preview.get("text", "")
    assert "Send to 3" in str(preview) and "not a number" in str(preview), text
    assert not h.simulator.messages  # nothing before "Send to N"
    answer = await h.driver.block_action("bulk_send", _button_value(preview, "bulk_send"), channel_id=GENERAL)
    assert answer.status == 200
    await until(lambda: len(h.simulator.messages) == 3, "three texts")
    await h.settle()
    numbers = sorted(m.to for m in h.simulator.messages.values())
    assert numbers == ["+12125550101", "+12125550102", "+12125550103"]
    parents = h.slack.messages(GENERAL)
    assert len(parents) == 1, [p.text for p in parents]  # the live parent only: no per-recipient parents
    parent = parents[0]
    assert "Store closed today" in parent.text
    # The last recipient handed over: the parent shows the totals (no buttons left), and the report is in its thread.
    await until(lambda: bool(h.slack.uploads.shared_in(GENERAL, parent.ts)), "the report in the parent's thread")
    [report] = h.slack.uploads.shared_in(GENERAL, parent.ts)
    assert report.filename.endswith(".csv") and report.data is not None
    lines = report.data.decode().splitlines()
    assert lines[0] == "number,name,status,error_code,error_message,sent_at"
    assert sorted(line.split(",")[0] for line in lines[1:]) == ["+12125550101", "+12125550102", "+12125550103"]
    final = h.slack.messages(GENERAL)[0]
    assert not any(b.get("type") == "actions" for b in final.blocks or []), final.blocks


async def test_the_previews_cancel_sends_nothing(h: Harness) -> None:
    preview = await _preview(h, "+1 212 555 0101", "Shift change at 7")
    answer = await h.driver.block_action("bulk_discard", _button_value(preview, "bulk_discard"), channel_id=GENERAL)
    assert answer.status == 200
    await h.settle()
    await asyncio.sleep(1.0)
    assert not h.simulator.messages and not h.slack.messages(GENERAL)
