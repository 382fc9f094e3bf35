"""The storage contract of issue 12's App Home (migration 17: indexes only), on every engine.

Covers: ``recent_conversations`` (newest first, at most ``limit``, each with its newest text either way, a picture
without text, none stored, another of our numbers being another conversation) and ``home_summary`` (opt-out and
block counts, unsent SMS and undone outbox items, the newest error of either kind: a refused SMS, a Slack post given
up on, a delivery failure). Uses the ``store`` fixture of tests/conftest.py (SQLite and PostgreSQL).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge import outbox
from bridge.model import SendRequest
from bridge.storage.port import Store
from sw_api.models import InboundMessage, MediaItem, MessageStatus

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
OURS, OTHER_OURS = "+15557770000", "+15557770001"


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _number(i: int) -> str:
    return f"+1555123{i:02d}42"


def _request(to: str, body: str, from_: str = OURS) -> SendRequest:
    return SendRequest(user_id="U0ALICE", channel_id="C1", to=to, from_=from_, body=body)


async def test_recent_conversations_are_newest_first_with_their_newest_text_either_way(store: Store) -> None:
    assert await store.recent_conversations() == []
    for i in range(12):
        await store.set_conversation(OURS, _number(i), "C1", f"100.{i:06d}", _at(i))
    # Conversation 11: an outbound text, then a newer inbound one: the inbound is its last message.
    await store.create_outbound("r11", _request(_number(11), "we said this"), _at(20))
    await store.record_inbound(InboundMessage("m11", _number(11), OURS, "they answered"), opt_out=None,
                               opt_in=False, items=[], now=_at(21))
    # Conversation 10: an inbound text, then a newer outbound one (and an older one).
    await store.record_inbound(InboundMessage("m10", _number(10), OURS, "question?"), opt_out=None, opt_in=False,
                               items=[], now=_at(22))
    await store.create_outbound("r10a", _request(_number(10), "old answer"), _at(15))
    await store.create_outbound("r10b", _request(_number(10), "newest answer"), _at(23))
    # Conversation 9: a picture without text. Another of our numbers texting the same person is another pair.
    picture = (MediaItem("https://x/1.jpg", "image/jpeg"),)
    await store.record_inbound(InboundMessage("m9", _number(9), OURS, None, picture), opt_out=None, opt_in=False,
                               items=[], now=_at(24))
    await store.create_outbound("rx", _request(_number(9), "from the other number", from_=OTHER_OURS), _at(30))

    recent = await store.recent_conversations(limit=10)
    assert [c.their_number for c in recent] == [_number(i) for i in range(11, 1, -1)]
    c11, c10, c9, c8 = recent[:4]
    assert (c11.last_text, c11.last_inbound, c11.last_at) == ("they answered", True, _at(21))
    assert (c10.last_text, c10.last_inbound, c10.last_at) == ("newest answer", False, _at(23))
    assert (c9.last_text, c9.last_inbound, c9.last_has_media) == (None, True, True)
    assert (c8.last_text, c8.last_at, c8.last_has_media) == (None, None, False)
    assert (c11.channel_id, c11.thread_ts, c11.updated_at) == ("C1", "100.000011", _at(11))
    assert len(await store.recent_conversations(limit=3)) == 3


async def test_home_summary_counts_and_the_newest_error_of_either_kind(store: Store) -> None:
    empty = await store.home_summary()
    assert (empty.opted_out, empty.blocked, empty.outbox_pending, empty.unsent, empty.last_error) == (0, 0, 0, 0, None)

    # One person opted out of two of our numbers: one number. Two blocked numbers.
    await store.set_opt_out(OURS, _number(1), "STOP", _at(0))
    await store.set_opt_out(OTHER_OURS, _number(1), "STOP", _at(0))
    await store.set_opt_out(OURS, _number(2), "STOPALL", _at(0))
    await store.block_number(_number(3), "spam", "U0ALICE", _at(0))
    await store.block_number(_number(4), "", "U0ALICE", _at(0))
    # Pending: two unsent SMS (one pending, one submitting) and one undone outbox item.
    await store.create_outbound("p1", _request(_number(5), "a"), _at(1))
    await store.create_outbound("p2", _request(_number(6), "b"), _at(1))
    await store.mark_submitting("p2", _at(2))
    item = outbox.post_item("C1", "C1", "hello")
    await store.outbox_add(item.thread_key, item.kind, item.ref, item.channel, item.payload, _at(1))
    summary = await store.home_summary()
    assert (summary.opted_out, summary.blocked, summary.unsent, summary.outbox_pending) == (2, 2, 2, 1)
    assert summary.last_error is None

    # An SMS SignalWire refused, then a Slack post given up on later: the newer is shown.
    await store.create_outbound("bad", _request(_number(7), "c"), _at(3))
    await store.mark_rejected("bad", "21211", "Invalid 'To' number", _at(4))
    rejected = (await store.home_summary()).last_error
    assert rejected is not None
    assert (rejected.source, rejected.what, rejected.detail, rejected.at) == ("sms", "rejected",
                                                                               "21211 Invalid 'To' number", _at(4))
    failing = outbox.post_item("C2", "C2", "never posted")
    item_id = await store.outbox_add(failing.thread_key, failing.kind, None, failing.channel, failing.payload, _at(5))
    await store.outbox_fail(item_id, "channel_not_found", _at(6))
    slack = (await store.home_summary()).last_error
    assert slack is not None and (slack.source, slack.what, slack.detail, slack.at) == (
        "slack", "post", "channel_not_found", _at(6))
    # A delivery failure reported later still wins over both.
    await store.mark_accepted("p1", "SM1", 1, _at(7))
    await store.record_status("p1", MessageStatus.UNDELIVERED, "30003", "Unreachable handset", None, _at(8))
    undelivered = (await store.home_summary()).last_error
    assert undelivered is not None and (undelivered.source, undelivered.what, undelivered.at) == (
        "sms", "undelivered", _at(8))
    assert (await store.home_summary()).unsent == 1, "p1 was handed to SignalWire"
