"""Receipts name the contact (issue 12), over real HTTP (the bot, fake Slack, the SignalWire simulator): a contact's
receipt and failure reply say "Dana Smith (+1 555-123-4567)"; a number that is not a contact gets the receipt it
always got. Plus the pure wording (``bridge.render.receipt_reply`` with ``name=``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge import render
from bridge.model import OutboundSms, SendState
from demo.harness import Harness, running_bridge
from sw_api.models import MessageStatus
from sw_api.simulator import Outcome

GENERAL = "C0GENERAL"
DANA, STRANGER, JO = "+15551234567", "+15559876543", "+15552223333"
DANA_SHOWN, JO_SHOWN = "Dana Smith (+1 555-123-4567)", "Jo Bloggs (+1 555-222-3333)"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bridge(tmp_path, env={"SMS_ALLOWED_USERS": "U0ALICE"}) as harness:
        yield harness


async def command(h: Harness, text: str) -> None:
    answer = await h.driver.slash_command(text, user_id="U0ALICE", channel_id=GENERAL)
    assert answer.status == 200
    await h.settle(timeout=30)


def replies(h: Harness, body: str) -> list[tuple[str, str]]:
    [parent] = [m for m in h.slack.messages(GENERAL) if body in m.text]
    return [(m.text, json.dumps(m.blocks or [], ensure_ascii=False)) for m in h.slack.thread(GENERAL, parent.ts)]


async def test_a_contacts_receipts_name_them_and_a_numbers_stay_as_they_were(h: Harness) -> None:
    await command(h, "contact add Dana Smith +1 555 123 4567")
    await command(h, f"{DANA} Running late")
    await command(h, f"{STRANGER} Who is this")
    named = [text for text, _ in replies(h, "Running late")]
    assert named and all(DANA_SHOWN in text for text in named), named
    assert any(t.startswith(f"✅ Delivered to {DANA_SHOWN} · ") for t in named), named
    plain = [text for text, _ in replies(h, "Who is this")]
    assert any(t.startswith("✅ Delivered · ") for t in plain), plain
    assert not any("+1 555-987-6543" in t or " for " in t for t in plain), "a number's receipts are unchanged"


async def test_a_contacts_failure_reply_names_them_and_a_numbers_does_not(h: Harness) -> None:
    await command(h, "contact add Jo Bloggs +1 555 222 3333")
    for number in (JO, STRANGER):
        h.simulator.script(number, Outcome(MessageStatus.UNDELIVERED, "30003", "Unreachable destination handset"))
    await command(h, f"{JO} Are you there")
    await command(h, f"{STRANGER} Hello there")
    headline = f"❌ *Undelivered*: the carrier did not deliver this message to {JO_SHOWN}."
    failures = [(t, b) for t, b in replies(h, "Are you there") if "did not deliver" in t]
    assert failures and headline in failures[-1][0] and headline in failures[-1][1], failures
    plain = [t for t, _ in replies(h, "Hello there") if "did not deliver" in t]
    assert plain and "❌ *Undelivered*: the carrier did not deliver this message.\n" in plain[-1], plain


def _sms(**changes: object) -> OutboundSms:
    now = datetime(2026, 12, 1, 10, tzinfo=UTC)
    values: dict[str, object] = dict(ref="r1", created_at=now, updated_at=now, channel_id=GENERAL, user_id="U0ALICE",
                                     to=DANA, from_="+15557770000", body="hi", origin="slash",
                                     state=SendState.ACCEPTED, segments=2)
    values.update(changes)
    return OutboundSms(**values)  # type: ignore[arg-type]


def test_the_wording_with_and_without_a_name() -> None:
    sms = _sms()
    statuses = [MessageStatus.QUEUED]
    assert render.receipt_reply(sms, statuses, {})[0] == "🕓 Queued at SignalWire (2 segments) · queued"
    assert render.receipt_reply(sms, statuses, {}, name="Dana Smith")[0] == (
        f"🕓 Queued at SignalWire for {DANA_SHOWN} (2 segments) · queued")
    assert render.receipt_text(sms, MessageStatus.DELIVERED, name="  ") == "✅ Delivered"
    evil = render.receipt_text(sms, MessageStatus.DELIVERED, name="<!channel> *x*")
    assert "<!channel>" not in evil and "*x*" not in evil and evil.endswith("(+1 555-123-4567)")
