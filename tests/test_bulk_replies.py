"""Replies to a bulk text, and the bulk audit trail (issue 13), over the real harness: the engine sends a batch through
the simulator on loopback, the recipients text back through the bot's inbound webhook, and the fake Slack shows where
each answer went.

What must hold: the first text after a bulk text names the batch ("📥 Dana Smith (+1 212-555-1000) replied to bulk
“Store closed”", the number alone for a stranger), and a conversation it opens opens in the batch's channel; a later
text continues that thread as an ordinary reply; a conversation that existed before the bulk text is continued in its
own thread, naming the batch; a number that got no bulk text is unchanged; the audit trail holds one ``bulk`` row
for the confirm (who, how many) and one ``bulk-send`` row per recipient (number, message) — and no bulk row counts
towards the sender's rate limit. Every wait is for a condition, with a timeout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from bridge import conversations as conv
from bridge.bulk_model import BatchState
from bridge.contacts import labelled
from bridge.model import AuditAction, AuditEntry
from bridge.ports import utcnow
from demo.fake_slack import SlackMessage
from demo.harness import FROM_NUMBER, Harness
from sw_api.models import InboundMessage
from tests.test_bulk_engine import (
    GENERAL,
    bridge_with,
    engine,
    numbers,
    preview_of,
    recipients,
    until_state,
)

INBOUND = "C0INBOUND"
TITLE = "“Store closed”"  # draft_of's title, as the header quotes it


async def text_in(h: Harness, from_: str, body: str) -> None:
    delivery = await h.simulator.inject_inbound(from_, FROM_NUMBER, body, [], url=h.bot_url + "/signalwire/inbound",
                                                fmt="json")
    assert delivery.status == 200
    await h.settle()


def posts(h: Harness, channel: str, has: str) -> list[SlackMessage]:
    return [m for m in h.slack.messages(channel) if has in m.text]


def in_blocks(message: SlackMessage, text: str) -> bool:
    return text in json.dumps(message.blocks or [], ensure_ascii=False)


async def send_batch(h: Harness, nums: list[str]) -> str:
    sends = engine(h)
    preview = await preview_of(sends, recipients(nums))
    batch = await sends.confirm(preview.batch_id, "U0ALICE")
    assert not isinstance(batch, str)
    await until_state(h, preview.batch_id, BatchState.DONE)
    await h.settle()
    return preview.batch_id


async def audit_rows(h: Harness, want: Callable[[list[AuditEntry]], bool]) -> list[AuditEntry]:
    rows: list[AuditEntry] = []

    async def read() -> bool:
        nonlocal rows
        rows = await h.bridge.store.audit_list(limit=1000)
        return want(rows)

    # The hand-over's row is written beside its POST: wait for it rather than for time.
    for _ in range(400):
        if await read():
            return rows
        await h.settle(timeout=0.5)
    raise AssertionError(f"audit rows never matched: {rows}")


async def test_a_reply_to_a_bulk_text_names_the_batch_and_later_ones_continue_its_thread(tmp_path: Path) -> None:
    async with bridge_with(tmp_path, INBOUND_CHANNEL=INBOUND) as h:
        dana, stranger = numbers(2)
        await h.bridge.store.contact_put("Dana Smith", dana, "U0ALICE", utcnow())
        await send_batch(h, [dana, stranger])

        await text_in(h, dana, "Is it open tomorrow?")
        header = f"📥 {labelled(dana, 'Dana Smith')} replied to bulk {TITLE}"
        assert header == "📥 Dana Smith (+1 212-555-1000) replied to bulk “Store closed”"
        # Opened in the batch's channel (where the list was asked), not the inbound channel.
        [parent] = posts(h, GENERAL, "replied to bulk")
        assert parent.text.startswith(header) and "Is it open tomorrow?" in parent.text
        assert in_blocks(parent, header)
        assert h.slack.messages(INBOUND) == []
        conversation = await h.bridge.store.get_conversation(FROM_NUMBER, dana)
        assert conversation is not None and (conversation.channel_id, conversation.thread_ts) == (GENERAL, parent.ts)

        # The next text continues that thread as an ordinary reply: the batch was answered already.
        await text_in(h, dana, "And on Sunday?")
        [follow] = [m for m in h.slack.thread(GENERAL, parent.ts) if "And on Sunday?" in m.text]
        assert follow.text.startswith(f"📥 *{labelled(dana, 'Dana Smith')}* replied")
        assert "bulk" not in follow.text
        assert len(posts(h, GENERAL, "replied to bulk")) == 1

        # A recipient who is not a contact: the number alone, in a conversation of their own.
        await text_in(h, stranger, "ok")
        [other] = [m for m in posts(h, GENERAL, "replied to bulk") if m.ts != parent.ts]
        assert other.text.startswith(f"📥 +1 212-555-1001 replied to bulk {TITLE}")
        assert "Dana" not in other.text


async def test_an_existing_conversation_is_continued_and_an_ordinary_one_is_unchanged(tmp_path: Path) -> None:
    async with bridge_with(tmp_path, INBOUND_CHANNEL=INBOUND) as h:
        talked, bulked, ordinary = numbers(3, start=2000)
        await text_in(h, talked, "hello before any bulk")
        [thread] = posts(h, INBOUND, "hello before any bulk")
        assert "New conversation" in thread.text

        await send_batch(h, [talked, bulked])
        await text_in(h, talked, "got the bulk text")
        # Into the conversation's own thread (in the inbound channel), naming the batch; no new parent anywhere.
        [answer] = [m for m in h.slack.thread(INBOUND, thread.ts) if "got the bulk text" in m.text]
        assert answer.text.startswith(f"📥 +1 212-555-2000 replied to bulk {TITLE}")
        assert posts(h, GENERAL, "replied to bulk") == []
        assert len(h.slack.messages(INBOUND)) == 1

        # A number that got no bulk text: a new conversation in the inbound channel, exactly as before.
        await text_in(h, ordinary, "just saying hi")
        [fresh] = posts(h, INBOUND, "just saying hi")
        assert fresh.text.startswith("📥 *New conversation:* +1 212-555-2002 texted")
        assert "bulk" not in fresh.text

        # An ordinary /sms text sent after the bulk one: the next reply answers that (its thread), not the batch.
        assert await h.bridge.store.bulk_latest_to(FROM_NUMBER, bulked) is not None
        answer_status = await h.driver.slash_command(f"{bulked} Your order is ready", user_id="U0ALICE",
                                                     channel_id=GENERAL)
        assert answer_status.status == 200
        await h.settle(timeout=30)
        [sent] = posts(h, GENERAL, "Your order is ready")
        await text_in(h, bulked, "thanks, on my way")
        [back] = [m for m in h.slack.thread(GENERAL, sent.ts) if "thanks, on my way" in m.text]
        assert back.text.startswith("📥 *+1 212-555-2001* replied") and "bulk" not in back.text
        assert posts(h, GENERAL, "replied to bulk") == []


async def test_the_audit_trail_records_the_batch_and_each_recipient(tmp_path: Path) -> None:
    async with bridge_with(tmp_path) as h:
        nums = numbers(5, start=3000)
        batch_id = await send_batch(h, nums)

        def complete(rows: list[AuditEntry]) -> bool:
            sends = [r for r in rows if r.action is AuditAction.BULK_SEND]
            return len(sends) == 5 and all(r.outcome == "delivered" for r in sends)

        rows = await audit_rows(h, complete)
        [confirm] = [r for r in rows if r.action is AuditAction.BULK]
        assert (confirm.user_id, confirm.channel_id, confirm.from_number) == ("U0ALICE", GENERAL, FROM_NUMBER)
        assert confirm.reason == f"batch {batch_id}: 5 recipients"
        sends = [r for r in rows if r.action is AuditAction.BULK_SEND]
        assert sorted(r.to_number for r in sends) == sorted(nums)
        assert {r.reason for r in sends} == {f"batch {batch_id}"}
        assert {r.from_number for r in sends} == {FROM_NUMBER} and {r.user_id for r in sends} == {"U0ALICE"}
        # Each row is tied to the message it handed over.
        for row in sends:
            assert row.ref is not None
            sms = await h.bridge.store.get_outbound(row.ref)
            assert sms is not None and sms.to == row.to_number
        # Bulk never counts towards SMS_RATE_LIMIT_PER_USER.
        assert await h.bridge.store.audit_recent_sends("U0ALICE", confirm.at.replace(year=2000)) == 0
        # A second confirm (a double click) writes no second batch row.
        assert isinstance(await engine(h).confirm(batch_id, "U0ALICE"), str)
        assert [r.action for r in await h.bridge.store.audit_list(limit=1000)].count(AuditAction.BULK) == 1


def test_the_bulk_header_is_inert_whatever_the_title_and_name() -> None:
    message = InboundMessage(message_id="m1", from_="+15551234567", to=FROM_NUMBER, body="yes")
    hostile = "<!channel> *Sale* <https://evil.example|bank>"
    text = conv.inbound_text(message, new_conversation=True, name="<@U0ALICE> Dana", bulk=hostile)
    blocks = json.dumps(conv.inbound_blocks(message, new_conversation=True, name="<@U0ALICE> Dana", bulk=hostile))
    head = text.splitlines()[0]
    assert head.startswith("📥 ") and " replied to bulk “" in head and "+1 555-123-4567" in head
    for raw in ("<!channel>", "<https://evil", "<@U0ALICE>"):
        assert raw not in text and raw not in blocks
    # Without a title the header is the ordinary one.
    assert conv.inbound_text(message, new_conversation=True).startswith("📥 *New conversation:*")
    assert conv.inbound_text(message, new_conversation=False, bulk=" ").startswith(
        "📥 +1 555-123-4567 replied to bulk (untitled)")
