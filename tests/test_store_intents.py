"""The storage contract of the intents stored together with their claim (migration 8): inbound texts with their
opt-out change and outbox items, thread replies keyed by their Slack message, Retry, parent-post attempts.

Run on every engine (the ``store`` fixture of tests/conftest.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bridge import outbox
from bridge.model import SendRequest, SendState
from bridge.storage.port import Store
from sw_api.models import InboundMessage

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
OURS, THEIRS = "+15557770000", "+15551234567"
REQUEST = SendRequest(user_id="U1", channel_id="C1", to=THEIRS, from_=OURS, body="hi")


def _inbound(message_id: str, body: str = "STOP") -> InboundMessage:
    return InboundMessage(message_id=message_id, from_=THEIRS, to=OURS, body=body)


async def test_record_inbound_is_all_or_nothing_and_once(store: Store) -> None:
    items = [outbox.post_item("C1", "C1", "notice", thread_of_inbound="m1")]
    assert await store.record_inbound(_inbound("m1"), opt_out="STOP", opt_in=False, items=items, now=T0)
    assert await store.get_opt_out(OURS, THEIRS) is not None
    assert await store.outbox_pending() == 1
    # A redelivery changes nothing: no second item, and START in its body would not apply either.
    assert not await store.record_inbound(_inbound("m1", "START"), opt_out=None, opt_in=True, items=items, now=T0)
    assert await store.get_opt_out(OURS, THEIRS) is not None
    assert await store.outbox_pending() == 1
    assert await store.record_inbound(_inbound("m2", "START"), opt_out=None, opt_in=True, items=[], now=T0)
    assert await store.get_opt_out(OURS, THEIRS) is None


async def test_inbound_posted_sets_the_conversation(store: Store) -> None:
    await store.record_inbound(_inbound("m1", "hi"), opt_out=None, opt_in=False, items=[], now=T0)
    assert await store.inbound_posted_at("m1") is None
    await store.inbound_posted("m1", "C9", "100.1", "100.1", T0)
    place = await store.inbound_posted_at("m1")
    assert place is not None and place.started_thread and place.channel_id == "C9"
    conversation = await store.get_conversation(OURS, THEIRS)
    assert conversation is not None and (conversation.channel_id, conversation.thread_ts) == ("C9", "100.1")
    await store.record_inbound(_inbound("m2", "again"), opt_out=None, opt_in=False, items=[], now=T0)
    await store.inbound_posted("m2", "C9", "100.1", "100.2", T0 + timedelta(seconds=1))
    second = await store.inbound_posted_at("m2")
    assert second is not None and not second.started_thread


async def test_reply_intent_is_stored_once_per_slack_message(store: Store) -> None:
    request = replace(REQUEST, origin="reply", thread_ts="100.1", source_ts="100.5")
    results = await asyncio.gather(*(store.create_reply_intent(f"r{i}", request, T0) for i in range(5)))
    assert sorted(created for _, created in results) == [False] * 4 + [True]
    assert len({sms.ref for sms, _ in results}) == 1
    found = await store.reply_intent("C1", "100.5")
    assert found is not None and found.ref == results[0][0].ref and found.state is SendState.PENDING
    assert await store.reply_source(found.ref) == "100.5"
    assert await store.reply_intent("C2", "100.5") is None


async def test_retry_intent_claims_once_and_abandon_frees_the_claim(store: Store) -> None:
    await store.create_outbound("orig", REQUEST, T0)
    retry = replace(REQUEST, origin="retry", retry_of="orig")
    results = await asyncio.gather(*(store.create_retry_intent(f"x{i}", retry, f"U{i}", T0) for i in range(5)))
    assert sorted(results) == [False] * 4 + [True]
    winner = f"x{results.index(True)}"
    assert await store.abandon_retry_intent(winner)
    assert await store.get_outbound(winner) is None
    assert await store.create_retry_intent("again", retry, "U9", T0)
    await store.mark_submitting("again", T0)
    assert not await store.abandon_retry_intent("again")  # started: it may be at SignalWire, never undone


async def test_begin_parent_post_says_whether_an_attempt_was_made_before(store: Store) -> None:
    await store.create_outbound("p1", REQUEST, T0)
    assert not await store.begin_parent_post("p1", T0)
    assert await store.begin_parent_post("p1", T0)


# -- ack path (issue 10) ---------------------------------------------------------------------------------------


async def test_create_outbound_unless_opted_out_stores_what_create_outbound_stores(store: Store) -> None:
    request = replace(REQUEST, team_id="T1", media=("https://example.com/a.jpg",), send_as_mms=True,
                      origin="modal", thread_ts="99.1")
    made = await store.create_outbound_unless_opted_out("a1", request, T0)
    plain = await store.create_outbound("a2", request, T0)
    assert made is not None and made == await store.get_outbound("a1")
    assert replace(made, ref="a2") == plain
    assert (made.state, made.to, made.from_, made.media, made.created_at) == (
        SendState.PENDING, THEIRS, OURS, ("https://example.com/a.jpg",), T0)


async def test_create_outbound_unless_opted_out_stores_nothing_for_an_opted_out_number(store: Store) -> None:
    await store.set_opt_out(OURS, THEIRS, "STOP", T0)
    assert await store.create_outbound_unless_opted_out("b1", REQUEST, T0) is None
    assert await store.get_outbound("b1") is None
    # Only that pair: the same number texted from another of our numbers, and another number, still go.
    other_sender = await store.create_outbound_unless_opted_out("b2", replace(REQUEST, from_="+15557770001"), T0)
    other_number = await store.create_outbound_unless_opted_out("b3", replace(REQUEST, to="+15550001111"), T0)
    assert other_sender is not None and other_number is not None
    assert await store.clear_opt_out(OURS, THEIRS)
    assert await store.create_outbound_unless_opted_out("b4", REQUEST, T0) is not None
