"""The storage contract of two-way conversations (migrations 2 and 8), run on every engine: conversations and
their threads, opt-outs, Slack event dedup, reply sources, and the all-or-nothing transactions of
``record_inbound`` and ``announce_status`` (a failure half-way leaves nothing behind).

Uses the ``store`` fixture of tests/conftest.py (SQLite and PostgreSQL).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge import outbox
from bridge.model import OutboxWrite, SendRequest
from bridge.storage.port import Store
from sw_api.models import InboundMessage, MediaItem, MessageStatus

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
OURS, THEIRS, OTHER = "+15557770000", "+15551234567", "+15559990000"
REQUEST = SendRequest(user_id="U1", channel_id="C1", to=THEIRS, from_=OURS, body="hi")


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class _Unserialisable:
    """A payload value no engine can store: the write fails after earlier statements of its transaction ran."""


# --- conversations ---------------------------------------------------------------------------------------


async def test_a_conversation_points_at_the_last_thread_used(store: Store) -> None:
    assert await store.get_conversation(OURS, THEIRS) is None
    await store.set_conversation(OURS, THEIRS, "C1", "100.1", _at(1))
    conversation = await store.get_conversation(OURS, THEIRS)
    assert conversation is not None
    assert (conversation.our_number, conversation.their_number, conversation.channel_id, conversation.thread_ts,
            conversation.updated_at) == (OURS, THEIRS, "C1", "100.1", _at(1))
    await store.set_conversation(OURS, THEIRS, "C2", "200.2", _at(2))
    moved = await store.get_conversation(OURS, THEIRS)
    assert moved is not None and (moved.channel_id, moved.thread_ts, moved.updated_at) == ("C2", "200.2", _at(2))
    assert await store.get_conversation(THEIRS, OURS) is None, "keyed by (our number, their number) in that order"


async def test_conversation_by_thread_is_the_most_recently_used(store: Store) -> None:
    await store.set_conversation(OURS, THEIRS, "C1", "100.1", _at(1))
    await store.set_conversation(OURS, OTHER, "C1", "100.1", _at(5))
    found = await store.conversation_by_thread("C1", "100.1")
    assert found is not None and found.their_number == OTHER
    await store.set_conversation(OURS, THEIRS, "C1", "100.1", _at(9))
    found = await store.conversation_by_thread("C1", "100.1")
    assert found is not None and found.their_number == THEIRS
    assert await store.conversation_by_thread("C2", "100.1") is None
    assert await store.conversation_by_thread("C1", "999.9") is None


# --- inbound texts --------------------------------------------------------------------------------------


async def test_record_inbound_stores_once_and_applies_opt_out_and_opt_in(store: Store) -> None:
    stop = InboundMessage(message_id="m1", from_=THEIRS, to=OURS, body="STOP",
                          media=(MediaItem("https://example.com/a.png", "image/png"),))
    items = [outbox.post_item("C1", "C1", "notice", thread_of_inbound="m1")]
    assert await store.record_inbound(stop, opt_out="STOP", opt_in=False, items=items, now=T0)
    opt_out = await store.get_opt_out(OURS, THEIRS)
    assert opt_out is not None and (opt_out.keyword, opt_out.opted_out_at) == ("STOP", T0)
    assert not await store.record_inbound(stop, opt_out="STOP", opt_in=False, items=items, now=_at(1))
    assert await store.outbox_pending() == 1
    start = InboundMessage(message_id="m2", from_=THEIRS, to=OURS, body="START")
    assert await store.record_inbound(start, opt_out=None, opt_in=True, items=[], now=_at(2))
    assert await store.get_opt_out(OURS, THEIRS) is None


async def test_record_inbound_is_all_or_nothing(store: Store) -> None:
    message = InboundMessage(message_id="m1", from_=THEIRS, to=OURS, body="STOP")
    good = outbox.post_item("C1", "C1", "notice", thread_of_inbound="m1")
    bad = OutboxWrite("C1", "post", None, "C1", {"text": _Unserialisable()})
    with pytest.raises(Exception):  # noqa: B017 - whichever error the engine gives; what matters is what is left
        await store.record_inbound(message, opt_out="STOP", opt_in=False, items=[good, bad], now=T0)
    assert await store.get_opt_out(OURS, THEIRS) is None, "the opt-out was rolled back"
    assert await store.outbox_pending() == 0, "the first item was rolled back"
    assert await store.record_inbound(message, opt_out="STOP", opt_in=False, items=[good], now=_at(1)), \
        "the text itself was rolled back: its redelivery is new"
    assert await store.outbox_pending() == 1


async def test_inbound_posted_records_the_place_and_moves_the_conversation(store: Store) -> None:
    first = InboundMessage(message_id="m1", from_=THEIRS, to=OURS, body="hi")
    assert await store.record_inbound(first, opt_out=None, opt_in=False, items=[], now=T0)
    assert await store.inbound_posted_at("m1") is None
    assert await store.inbound_posted_at("never") is None
    await store.inbound_posted("m1", "C9", "100.1", "100.1", _at(1))
    place = await store.inbound_posted_at("m1")
    assert place is not None and (place.channel_id, place.thread_ts, place.ts, place.started_thread) == (
        "C9", "100.1", "100.1", True)
    conversation = await store.get_conversation(OURS, THEIRS)
    assert conversation is not None and (conversation.channel_id, conversation.thread_ts) == ("C9", "100.1")


# --- opt-outs -------------------------------------------------------------------------------------------


async def test_opt_out_keeps_the_first_time_and_word_and_clear_says_whether_there_was_one(store: Store) -> None:
    assert await store.get_opt_out(OURS, THEIRS) is None
    await store.set_opt_out(OURS, THEIRS, "STOP", _at(1))
    await store.set_opt_out(OURS, THEIRS, "21610", _at(2))
    opt_out = await store.get_opt_out(OURS, THEIRS)
    assert opt_out is not None
    assert (opt_out.our_number, opt_out.their_number, opt_out.keyword, opt_out.opted_out_at) == (
        OURS, THEIRS, "STOP", _at(1))
    assert await store.get_opt_out(OURS, OTHER) is None
    assert await store.clear_opt_out(OURS, THEIRS) is True
    assert await store.clear_opt_out(OURS, THEIRS) is False
    assert await store.get_opt_out(OURS, THEIRS) is None


# --- Slack events, reply sources ------------------------------------------------------------------------


async def test_a_slack_event_is_claimed_the_first_time_only(store: Store) -> None:
    assert await store.claim_slack_event("C1:1700.1", T0) is True
    assert await store.claim_slack_event("C1:1700.1", _at(1)) is False
    assert await store.claim_slack_event("C1:1700.2", _at(1)) is True


async def test_reply_source_is_remembered_per_message(store: Store) -> None:
    await store.create_outbound("r1", REQUEST, T0)
    await store.create_outbound("r2", REQUEST, T0)
    assert await store.reply_source("r1") is None
    await store.set_reply_source("r1", "100.5")
    await store.set_reply_source("r2", "100.6")
    assert (await store.reply_source("r1"), await store.reply_source("r2")) == ("100.5", "100.6")
    await store.set_reply_source("r1", "100.7")
    assert await store.reply_source("r1") == "100.7"


# --- receipts: the announcement transaction -------------------------------------------------------------


async def test_announce_status_is_all_or_nothing(store: Store) -> None:
    await store.create_outbound("ref1", REQUEST, T0)
    await store.mark_accepted("ref1", "SM-1", 1, _at(1))
    await store.record_status("ref1", MessageStatus.DELIVERED, None, None, None, _at(2))
    good = OutboxWrite("C1", "post", None, "C1", {"text": "✅ Delivered"})
    bad = OutboxWrite("C1", "post", None, "C1", {"text": _Unserialisable()})
    with pytest.raises(Exception):  # noqa: B017 - whichever error the engine gives; what matters is what is left
        await store.announce_status("ref1", "delivered", [good, bad], _at(3))
    assert await store.outbox_pending() == 0
    assert await store.unannounced("ref1") == [MessageStatus.DELIVERED], "still to be told"
    assert await store.announce_status("ref1", "delivered", [good], _at(4))
    assert await store.outbox_pending() == 1
