"""The storage contract of thread replies stored as Slack delivered them (migration 9): one row per Slack message,
claims that exactly one caller wins, finished by the intent's own transaction or by ``finish_reply``.

Run on every engine (the ``store`` fixture of tests/conftest.py).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bridge.model import SendRequest, SlackReply
from bridge.storage.port import Store

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
REPLY = SlackReply(channel_id="C1", thread_ts="100.000001", ts="100.000002", user_id="U1", text="hi <@U2>",
                   team_id="T1", subtype="thread_broadcast")


async def test_a_reply_is_stored_once_per_slack_message(store: Store) -> None:
    assert await store.record_reply(REPLY, T0, T0 + LEASE)
    assert not await store.record_reply(REPLY, T0, T0 + LEASE)
    # Claimed by whoever stored it: nobody resumes it while the claim runs.
    assert await store.replies_to_resume(T0 + LEASE / 2) == []
    assert await store.claim_reply("C1", REPLY.ts, T0 + LEASE / 2, T0 + 2 * LEASE) is None
    [left] = await store.replies_to_resume(T0 + LEASE)
    assert (left.channel_id, left.thread_ts, left.ts, left.user_id, left.text, left.team_id, left.subtype) == (
        "C1", REPLY.thread_ts, REPLY.ts, "U1", "hi <@U2>", "T1", "thread_broadcast")


async def test_of_concurrent_claims_exactly_one_wins(store: Store) -> None:
    await store.record_reply(REPLY, T0, T0 + LEASE)
    later = T0 + 2 * LEASE
    won = await asyncio.gather(*(store.claim_reply("C1", REPLY.ts, later, later + LEASE) for _ in range(5)))
    claimed = [r for r in won if r is not None]
    assert len(claimed) == 1 and claimed[0].attempts == 2
    # Released (the store could not take the intent), it can be claimed again at once.
    await store.release_reply("C1", REPLY.ts)
    again = await store.claim_reply("C1", REPLY.ts, later, later + LEASE)
    assert again is not None and again.attempts == 3


async def test_finished_replies_are_never_resumed_or_claimed(store: Store) -> None:
    await store.record_reply(REPLY, T0, T0 + LEASE)
    assert await store.finish_reply("C1", REPLY.ts, "refused", T0)
    assert not await store.finish_reply("C1", REPLY.ts, "refused", T0)
    assert await store.replies_to_resume(T0 + 10 * LEASE) == []
    assert await store.claim_reply("C1", REPLY.ts, T0 + 10 * LEASE, T0 + 11 * LEASE) is None


async def test_storing_the_intent_finishes_the_reply_in_the_same_transaction(store: Store) -> None:
    await store.record_reply(REPLY, T0, T0 + LEASE)
    request = SendRequest(user_id="U1", channel_id="C1", to="+15551234567", from_="+15557770000", body="hi",
                          origin="reply", thread_ts=REPLY.thread_ts, source_ts=REPLY.ts)
    _, created = await store.create_reply_intent("r1", request, T0)
    assert created
    assert await store.replies_to_resume(T0 + 10 * LEASE) == []
    assert not await store.finish_reply("C1", REPLY.ts, "not texted", T0)


async def test_retention_deletes_only_finished_replies(store: Store) -> None:
    old = [SlackReply("C1", "1.0", f"1.{i}", "U1", "hi") for i in range(1, 4)]
    for reply in old:
        await store.record_reply(reply, T0, T0 + LEASE)
    await store.finish_reply("C1", "1.1", "not texted", T0)
    await store.finish_reply("C1", "1.2", "refused", T0)
    assert await store.prune_replies(T0 + timedelta(days=1), 1) == 1
    assert await store.prune_replies(T0 + timedelta(days=1), 10) == 1
    assert await store.prune_replies(T0 + timedelta(days=1), 10) == 0
    # The unfinished one is kept however old: it is still to be texted or explained.
    [left] = await store.replies_to_resume(T0 + timedelta(days=1))
    assert left.ts == "1.3"


async def test_replies_to_resume_oldest_first_within_the_limit(store: Store) -> None:
    for n in (3, 1, 2):
        reply = SlackReply("C1", "1.0", f"1.{n}", "U1", "hi")
        await store.record_reply(reply, T0 + timedelta(seconds=n), T0 + timedelta(seconds=n))
    later = T0 + timedelta(seconds=10)
    assert [r.ts for r in await store.replies_to_resume(later)] == ["1.1", "1.2", "1.3"]
    assert [r.ts for r in await store.replies_to_resume(later, limit=2)] == ["1.1", "1.2"]
