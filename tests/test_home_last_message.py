"""A conversation's last message on the App Home (issue 12), over real HTTP on both engines: a scheduled text that has
not gone out (waiting, or cancelled) is never a conversation's last message, does not move the conversation up nor
point it at the scheduled parent's thread, and a number with only a scheduled text is not listed; the contact is
shown with ``bridge.contacts.labelled``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from demo.harness import Harness, running_bridge
from tests.pg import ENGINES, throwaway_database
from tests.test_app_home import conversation_lines, open_home

GENERAL = "C0GENERAL"
DANA, ONLY_LATER, JO = "+15551234567", "+15552223342", "+15559876543"


@pytest.fixture(params=ENGINES)
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    env = {"SMS_ALLOWED_USERS": "U0ALICE"}
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "postgresql":
            env["DATABASE_URL"] = await stack.enter_async_context(throwaway_database())
        yield await stack.enter_async_context(running_bridge(tmp_path, env=env))


async def command(h: Harness, text: str) -> None:
    answer = await h.driver.slash_command(text, user_id="U0ALICE", channel_id=GENERAL)
    assert answer.status == 200
    await h.settle(timeout=30)


async def test_scheduled_texts_are_not_last_messages(h: Harness) -> None:
    await command(h, "contact add Dana Smith +1 555 123 4567")
    await command(h, f"{DANA} Real last one")
    await command(h, f"{JO} First to Jo")
    await command(h, f"schedule +2h {DANA} Not yet")            # waiting
    await command(h, f"schedule +2h {ONLY_LATER} Only scheduled")
    await command(h, f"schedule +3h {JO} Cancelled one")
    [jo_item] = [s for s in await h.bridge.store.scheduled_of_user("U0ALICE") if s.sms.to == JO]
    [jo_parent] = [m for m in h.slack.messages(GENERAL) if "Cancelled one" in m.text]
    await h.driver.block_action("sms_schedule_cancel", jo_item.sms.ref, message=jo_parent.as_dict(),
                                user_id="U0ALICE")
    await h.settle(timeout=30)
    assert (await h.bridge.store.get_scheduled(jo_item.sms.ref)).state.value == "cancelled"  # type: ignore[union-attr]

    lines = conversation_lines(await open_home(h))
    # Jo's real text is newer than Dana's; Dana's scheduled parent, posted last, does not move Dana up.
    assert len(lines) == 2, lines
    assert "*+1 555-987-6543*" in lines[0] and "→ First to Jo" in lines[0], lines
    assert "*Dana Smith (+1 555-123-4567)*" in lines[1] and "→ Real last one" in lines[1], lines
    everything = "\n".join(lines)
    assert "Not yet" not in everything and "Cancelled one" not in everything
    assert "555-222-3342" not in everything, "a number with only a scheduled text is not listed"
    # The conversation still points at the thread of the text that went out, not the scheduled parent's.
    [real] = [m for m in h.slack.messages(GENERAL) if "Real last one" in m.text]
    conversation = await h.bridge.store.get_conversation(h.config.from_numbers[0], DANA)
    assert conversation is not None and conversation.thread_ts == real.ts
