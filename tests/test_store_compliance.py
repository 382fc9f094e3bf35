"""The storage contract of issue 11's compliance slice (migration 13), on every engine: auto-replies stored with their
inbound text (once per keyword message, even when two replicas race the same delivery), the narrow opt-out
exemption (STOP and HELP answers only), the team-wide block list refused in the ack path's insert, and the audit
actions of both.

Uses the ``store`` / ``store_pair`` fixtures of tests/conftest.py (SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bridge import outbox
from bridge.model import AUTO_REPLY_ORIGIN, AuditAction, AutoReply, AutoReplyKind, SendRequest, SendState
from bridge.storage.port import Store
from sw_api.models import InboundMessage

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
OURS, THEIRS, OTHER = "+15557770000", "+15551234567", "+15559990000"


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _inbound(message_id: str, body: str = "STOP", from_: str = THEIRS) -> InboundMessage:
    return InboundMessage(message_id=message_id, from_=from_, to=OURS, body=body)


def _auto(ref: str, kind: AutoReplyKind, *, to: str = THEIRS, message_id: str = "m1") -> AutoReply:
    request = SendRequest(user_id="sms-bridge", channel_id="C1", to=to, from_=OURS, body=f"{kind} text",
                          origin=AUTO_REPLY_ORIGIN)
    notice = outbox.post_item("C1", "C1", f"notice {ref}", thread_of_inbound=message_id, ref=ref)
    return AutoReply(ref, kind, request, (notice,))


async def _record(store: Store, message_id: str, kind: AutoReplyKind, ref: str, *, opt_out: str | None = None,
                  opt_in: bool = False, from_: str = THEIRS) -> bool:
    return await store.record_inbound(_inbound(message_id, from_=from_), opt_out=opt_out, opt_in=opt_in, items=[],
                                      now=_at(1), auto_reply=_auto(ref, kind, to=from_, message_id=message_id))


async def test_an_auto_reply_is_stored_pending_with_its_text_its_notice_and_an_audit_row(store: Store) -> None:
    assert await _record(store, "m1", AutoReplyKind.STOP, "r1", opt_out="STOP")
    sms = await store.auto_reply_for("m1", "stop")
    assert sms is not None and sms.ref == "r1" and sms.state is SendState.PENDING
    assert (sms.to, sms.from_, sms.origin, sms.body) == (THEIRS, OURS, AUTO_REPLY_ORIGIN, "stop text")
    assert await store.get_opt_out(OURS, THEIRS) is not None, "the STOP itself is applied in the same transaction"
    assert await store.outbox_pending() == 1, "its notice in the thread is queued with it"
    [row] = [a for a in await store.audit_list() if a.action is AuditAction.AUTO_REPLY]
    assert (row.ref, row.to_number, row.from_number, row.reason) == ("r1", THEIRS, OURS, "stop")
    assert await store.auto_reply_for("m1", "help") is None


async def test_a_redelivered_keyword_text_stores_no_second_auto_reply(store: Store) -> None:
    assert await _record(store, "m1", AutoReplyKind.HELP, "r1")
    assert not await _record(store, "m1", AutoReplyKind.HELP, "r2")
    assert await store.get_outbound("r2") is None
    first = await store.auto_reply_for("m1", "help")
    assert first is not None and first.ref == "r1"


async def test_opted_out_numbers_get_only_stop_and_help_answers(store: Store) -> None:
    await store.set_opt_out(OURS, THEIRS, "STOP", _at(0))
    assert await _record(store, "m1", AutoReplyKind.HELP, "help1")
    assert await store.get_outbound("help1") is not None, "HELP is answered whatever the subscription state"
    assert await _record(store, "m2", AutoReplyKind.STOP, "stop1", opt_out="STOP")
    assert await store.get_outbound("stop1") is not None
    # START opts them in within the same transaction, so its confirmation may go.
    assert await _record(store, "m3", AutoReplyKind.START, "start1", opt_in=True)
    assert await store.get_outbound("start1") is not None and await store.get_opt_out(OURS, THEIRS) is None


async def test_a_start_confirmation_is_not_stored_for_a_still_opted_out_or_blocked_number(store: Store) -> None:
    await store.set_opt_out(OURS, THEIRS, "STOP", _at(0))
    # The text is stored (it is a new message) but the non-exempt auto-reply is not: nothing to send.
    assert await _record(store, "m1", AutoReplyKind.START, "s1")
    assert await store.get_outbound("s1") is None and await store.auto_reply_for("m1", "start") is None
    assert await store.outbox_pending() == 0, "nor its notice"
    await store.block_number(OTHER, "spam", "U1", _at(0))
    assert await _record(store, "m2", AutoReplyKind.START, "s2", opt_in=True, from_=OTHER)
    assert await store.get_outbound("s2") is None
    assert await _record(store, "m3", AutoReplyKind.HELP, "h3", from_=OTHER)
    assert await store.get_outbound("h3") is not None, "a blocked number still gets the HELP answer"


async def test_two_replicas_racing_one_keyword_text_store_one_auto_reply(store_pair: tuple[Store, Store]) -> None:
    one, two = store_pair
    for round_ in range(5):
        message_id = f"race-{round_}"
        results = await asyncio.gather(_record(one, message_id, AutoReplyKind.STOP, f"a{round_}", opt_out="STOP"),
                                       _record(two, message_id, AutoReplyKind.STOP, f"b{round_}", opt_out="STOP"))
        assert sorted(results) == [False, True]
        stored = [ref for ref in (f"a{round_}", f"b{round_}") if await one.get_outbound(ref) is not None]
        assert len(stored) == 1
        winner = await two.auto_reply_for(message_id, "stop")
        assert winner is not None and [winner.ref] == stored


async def test_inbound_posted_puts_the_auto_reply_in_the_texts_thread(store: Store) -> None:
    assert await _record(store, "m1", AutoReplyKind.HELP, "r1")
    before = await store.get_outbound("r1")
    assert before is not None and before.parent_ts is None
    await store.inbound_posted("m1", "C9", "500.1", "500.1", _at(2))
    after = await store.get_outbound("r1")
    assert after is not None and (after.channel_id, after.parent_ts) == ("C9", "500.1")


async def test_the_block_list(store: Store) -> None:
    assert await store.get_block(THEIRS) is None
    assert await store.block_number(THEIRS, "spam", "U1", _at(1))
    assert not await store.block_number(THEIRS, "other reason", "U2", _at(2)), "blocked already: kept as it was"
    block = await store.get_block(THEIRS)
    assert block is not None and (block.number, block.reason, block.blocked_by, block.blocked_at) == (
        THEIRS, "spam", "U1", _at(1))
    assert await store.block_number(OTHER, "", "U2", _at(3))
    assert [b.number for b in await store.blocked_numbers()] == [OTHER, THEIRS], "newest first"
    assert [b.number for b in await store.blocked_numbers(limit=1)] == [OTHER]
    removed = await store.unblock_number(THEIRS)
    assert removed is not None and removed.blocked_by == "U1"
    assert await store.unblock_number(THEIRS) is None
    assert await store.get_block(THEIRS) is None


async def test_a_blocked_number_is_refused_in_the_ack_paths_insert(store: Store) -> None:
    request = SendRequest(user_id="U1", channel_id="C1", to=THEIRS, from_=OURS, body="hi")
    await store.block_number(THEIRS, "spam", "U9", _at(0))
    assert await store.create_outbound_unless_opted_out("x1", request, _at(1)) is None
    assert await store.get_outbound("x1") is None
    other_sender = replace(request, from_="+15557770001")
    assert await store.create_outbound_unless_opted_out("x2", other_sender, _at(1)) is None, "team-wide"
    assert await store.create_outbound_unless_opted_out("x3", replace(request, to=OTHER), _at(1)) is not None
    await store.unblock_number(THEIRS)
    assert await store.create_outbound_unless_opted_out("x4", request, _at(2)) is not None


async def test_block_and_unblock_audit_rows_are_accepted(store: Store) -> None:
    for action in (AuditAction.BLOCK, AuditAction.UNBLOCK):
        await store.audit_add(at=_at(1), user_id="U1", channel_id="C1", action=action, to_number=THEIRS,
                              reason="spam")
    assert {a.action for a in await store.audit_list()} == {AuditAction.BLOCK, AuditAction.UNBLOCK}
    # Not send attempts: they never count towards the rate limit.
    assert await store.audit_recent_sends("U1", _at(0)) == 0
