"""Races between replicas: every claim and dedup of ``bridge.storage.port.Store`` has exactly one winner when 16
concurrent calls arrive through two stores opened on the same database (two replicas), on every engine.

Uses the ``store_pair`` fixture of tests/conftest.py (SQLite: two connections to one file; PostgreSQL: two pools).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from bridge import outbox
from bridge.model import SendRequest, SlackReply
from bridge.storage.port import Store
from sw_api.models import InboundMessage

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
CALLS = 16
OURS, THEIRS = "+15557770000", "+15551234567"
REQUEST = SendRequest(user_id="U1", channel_id="C1", to=THEIRS, from_=OURS, body="hi")
R = TypeVar("R")


async def _race(pair: tuple[Store, Store], call: Callable[[Store, int], Awaitable[R]]) -> list[R]:
    """``CALLS`` concurrent calls, alternating between the two replicas' stores."""
    return list(await asyncio.gather(*(call(pair[i % 2], i) for i in range(CALLS))))


async def test_one_replica_acts_on_a_slack_event(store_pair: tuple[Store, Store]) -> None:
    results = await _race(store_pair, lambda s, _: s.claim_slack_event("C1:1700.1", T0))
    assert results.count(True) == 1


async def test_one_owner_leases_a_message(store_pair: tuple[Store, Store]) -> None:
    await store_pair[0].create_outbound("r1", REQUEST, T0)
    results = await _race(store_pair, lambda s, i: s.claim_message("r1", f"owner-{i}", T0, T0 + LEASE))
    assert results.count(True) == 1


async def test_one_owner_leases_an_outbox_head(store_pair: tuple[Store, Store]) -> None:
    head = await store_pair[0].outbox_add("C1:1.0", "post", None, "C1", {"text": "x"}, T0)
    results = await _race(store_pair, lambda s, i: s.outbox_claim(head, f"owner-{i}", T0, T0 + LEASE))
    assert results.count(True) == 1


async def test_one_owner_posts_into_a_thread_whichever_item_it_tries(store_pair: tuple[Store, Store]) -> None:
    items = [await store_pair[0].outbox_add("C1:1.0", "post", None, "C1", {"n": n}, T0) for n in range(4)]
    results = await _race(store_pair, lambda s, i: s.outbox_claim(items[i % 4], f"owner-{i}", T0, T0 + LEASE))
    assert results.count(True) == 1
    assert results.index(True) % 4 == 0, "only the head of the thread"


async def test_one_retry_per_message(store_pair: tuple[Store, Store]) -> None:
    await store_pair[0].create_outbound("orig", REQUEST, T0)
    results = await _race(store_pair, lambda s, i: s.claim_retry("orig", f"U{i}", T0))
    assert results.count(True) == 1


async def test_one_retry_intent_per_message(store_pair: tuple[Store, Store]) -> None:
    one, two = store_pair
    await one.create_outbound("orig", REQUEST, T0)
    retry = replace(REQUEST, origin="retry", retry_of="orig")
    results = await _race(store_pair, lambda s, i: s.create_retry_intent(f"x{i}", retry, f"U{i}", T0))
    assert results.count(True) == 1
    stored = [await two.get_outbound(f"x{i}") for i in range(CALLS)]
    assert [sms is not None for sms in stored] == results, "a losing intent left nothing behind"


async def test_one_reply_intent_per_slack_message(store_pair: tuple[Store, Store]) -> None:
    request = replace(REQUEST, origin="reply", thread_ts="100.1", source_ts="100.5")
    results = await _race(store_pair, lambda s, i: s.create_reply_intent(f"r{i}", request, T0))
    assert [created for _, created in results].count(True) == 1
    assert len({sms.ref for sms, _ in results}) == 1


async def test_one_stored_reply_per_slack_message(store_pair: tuple[Store, Store]) -> None:
    reply = SlackReply(channel_id="C1", thread_ts="100.1", ts="100.2", user_id="U1", text="hi")
    results = await _race(store_pair, lambda s, _: s.record_reply(reply, T0, T0 + LEASE))
    assert results.count(True) == 1
    later = T0 + 2 * LEASE
    claims = await _race(store_pair, lambda s, _: s.claim_reply("C1", "100.2", later, later + LEASE))
    assert sum(c is not None for c in claims) == 1


async def test_one_inbound_per_message_id_with_its_items_once(store_pair: tuple[Store, Store]) -> None:
    message = InboundMessage(message_id="SM-in-1", from_=THEIRS, to=OURS, body="STOP")
    items = [outbox.post_item("C1", "C1", "notice", thread_of_inbound="SM-in-1")]
    results = await _race(store_pair, lambda s, _: s.record_inbound(
        message, opt_out="STOP", opt_in=False, items=items, now=T0))
    assert results.count(True) == 1
    assert await store_pair[1].outbox_pending() == 1
    opt_out = await store_pair[0].get_opt_out(OURS, THEIRS)
    assert opt_out is not None and opt_out.keyword == "STOP"


async def test_one_parent_post_is_first(store_pair: tuple[Store, Store]) -> None:
    await store_pair[0].create_outbound("p1", REQUEST, T0)
    results = await _race(store_pair, lambda s, _: s.begin_parent_post("p1", T0))
    assert results.count(False) == 1, "exactly one caller is told no earlier attempt was made"


async def test_the_secret_is_the_same_for_every_replica(store_pair: tuple[Store, Store]) -> None:
    results = await _race(store_pair, lambda s, _: s.secret("callback"))
    assert len(set(results)) == 1 and len(results[0]) == 32


async def test_one_conversation_per_pair_when_two_texts_land_on_two_replicas(store_pair: tuple[Store, Store]) -> None:
    one, two = store_pair
    for n in range(2):
        message = InboundMessage(message_id=f"SM-{n}", from_=THEIRS, to=OURS, body="hi")
        assert await store_pair[n].record_inbound(message, opt_out=None, opt_in=False, items=[], now=T0)
    await asyncio.gather(one.inbound_posted("SM-0", "C1", "100.1", "100.1", T0),
                         two.inbound_posted("SM-1", "C1", "200.1", "200.1", T0))
    conversation = await one.get_conversation(OURS, THEIRS)
    assert conversation is not None and conversation.thread_ts in {"100.1", "200.1"}
    assert await two.get_conversation(OURS, THEIRS) == conversation
    assert (await one.row_counts())["conversation"] == 1
