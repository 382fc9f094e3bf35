"""The thread display: what Slack shows of an outbound message — its parent, thread replies and reactions.

Owns: ``ThreadDisplay`` (queuing thread replies, failure notes, reactions on a thread reply's own message and
parent repaints, each into the durable outbox or into a batch committed with an announcement) and ``Parents``
(the outbox's view of a parent: rendered from the store when delivered, and recording its ``ts`` once posted;
the receipts name a contact, and a scheduled parent does not move its conversation until the text goes out).
-- issue 13: a bulk recipient's message (origin ``BULK_ORIGIN``) has no parent and no thread: nothing is queued for
it here (the batch's one live parent and its report tell its outcome).
Must not import: aiohttp, Slack packages, ``handlers``, the other parts of ``Bridge``.
"""

from __future__ import annotations

from typing import Any

from bridge import render, schedule
from bridge.bulk_model import BULK_ORIGIN
from bridge.model import AUTO_REPLY_ORIGIN, SCHEDULE_ORIGIN, OutboundSms, ScheduleOutcome, SendState
from bridge.outbox import OutboxBatch, ParentView, ReceiptView, SlackOutbox
from bridge.people import ContactNames
from bridge.ports import utcnow
from bridge.storage.port import Store
from sw_api.models import MessageStatus

# Where Slack work is queued: the outbox itself, or a batch committed in one transaction (``Receipts.announce``).
Enqueue = SlackOutbox | OutboxBatch

# Origins whose message has no parent of its own: a thread reply's is the conversation's, an auto-reply's (issue 11)
# the text it answers; a bulk recipient (issue 13) has none at all.
_NO_PARENT = frozenset({"reply", AUTO_REPLY_ORIGIN, BULK_ORIGIN})

# How a scheduled send that never went out is stored (``error_code`` of its ``rejected`` message).
_NEVER_SENT = frozenset({ScheduleOutcome.CANCELLED.value, ScheduleOutcome.MISSED.value, ScheduleOutcome.REFUSED.value})


class ThreadDisplay:
    def __init__(self, store: Store, outbox: SlackOutbox, *, simulated: bool = False) -> None:
        self.store = store
        self.outbox = outbox
        self.simulated = simulated

    async def react(self, sms: OutboundSms, name: str, *, add: bool = True, out: Enqueue | None = None) -> None:
        source_ts = await self.store.reply_source(sms.ref) if sms.origin == "reply" else None
        if source_ts is not None:
            await (out or self.outbox).react(sms.channel_id, sms.channel_id, source_ts, name, add=add)

    async def react_outcome(self, sms: OutboundSms, *, failed: bool, out: Enqueue | None = None) -> None:
        await self.react(sms, "outbox_tray", add=False, out=out)
        await self.react(sms, "x" if failed else "white_check_mark", out=out)

    async def reply_failure(self, sms: OutboundSms, headline: str, *, out: Enqueue | None = None) -> None:
        await self.reply(sms, render.failure_text(sms, headline),
                         render.failure_blocks(sms, headline, simulated=self.simulated), out=out)

    async def refresh_parent(self, sms: OutboundSms, *, out: Enqueue | None = None) -> None:
        """Queue a repaint of the parent; it is rendered from the store when delivered, so bursts coalesce."""
        # A thread reply's parent is the conversation's (another message or an inbound text): never repaint it.
        # Nor an auto-reply's (issue 11): it is shown in the thread of the text it answers. A bulk one has none.
        if sms.origin in _NO_PARENT:
            return
        await (out or self.outbox).update_parent(sms.ref, sms.channel_id)

    async def reply(self, sms: OutboundSms, text: str, blocks: list[dict[str, Any]] | None = None, *,
                    out: Enqueue | None = None) -> None:
        """Queue a thread reply; if the parent is itself still queued, the reply follows it into its thread."""
        if sms.origin == BULK_ORIGIN:
            return  # -- issue 13: no per-recipient thread (a failure shows in the batch's counters and report)
        await (out or self.outbox).post(sms.channel_id, sms.channel_id, text, blocks, thread_ts=sms.parent_ts,
                                        thread_of_ref=None if sms.parent_ts else sms.ref, ref=sms.ref)

    async def receipt(self, sms: OutboundSms, status: MessageStatus, *, out: OutboxBatch) -> None:
        """Queue the receipt of ``status``: one thread reply per burst of statuses (``Parents.render_receipt``)."""
        await out.receipt(sms.ref, sms.channel_id, sms.channel_id, status.value)


class Parents:
    """The outbox's view of a parent message (``SlackOutbox(render_parent=..., on_parent_posted=...)``)."""

    def __init__(self, store: Store, *, simulated: bool = False, names: ContactNames | None = None) -> None:
        self.store = store
        self.simulated = simulated
        # -- issue 12: the recipient's contact name, read from the store when the parent is rendered.
        self.names = names or ContactNames(store)

    async def render_parent(self, ref: str) -> ParentView | None:
        sms = await self.store.get_outbound(ref)
        if sms is None or sms.origin in _NO_PARENT:
            return None
        name = await self.names.name_of(sms.to)
        if sms.state is SendState.SCHEDULED:  # -- issue 12: waiting for its time, with Cancel
            item = await self.store.get_scheduled(ref)
            if item is not None:
                return ParentView(sms.channel_id, sms.parent_ts, schedule.parent_text(item, name),
                                  schedule.parent_blocks(item, simulated=self.simulated, name=name))
        return ParentView(sms.channel_id, sms.parent_ts, render.parent_text(sms, name),
                          render.parent_blocks(sms, simulated=self.simulated, name=name))

    async def render_receipt(self, ref: str, statuses: list[str]) -> ReceiptView | None:
        """The receipt reply telling ``statuses`` (in order), at the times the status history gives."""
        sms = await self.store.get_outbound(ref)
        told = [MessageStatus(s) for s in statuses]
        if sms is None or not told or sms.origin == BULK_ORIGIN:
            return None
        times = {r.status: r.event_at or r.received_at for r in await self.store.history(ref)}
        name = await self.names.name_of(sms.to)  # -- issue 12: a contact's receipt says who it is to
        text, blocks = render.receipt_reply(sms, told, times, simulated=self.simulated, name=name)
        return ReceiptView(sms.channel_id, sms.parent_ts, text, blocks)

    async def parent_posted(self, ref: str, ts: str) -> None:
        sms = await self.store.set_parent(ref, ts, utcnow())
        # -- issue 12: a scheduled send's parent is posted when it is scheduled, but the text has not gone out: the
        # conversation (its thread, its time on the Home tab) moves only when it does — ``Sender`` points it here
        # when the released message is sent (or here, if the parent is posted after the release).
        if sms.state is SendState.SCHEDULED or (sms.origin == SCHEDULE_ORIGIN and sms.error_code in _NEVER_SENT):
            return
        await self.store.set_conversation(sms.from_, sms.to, sms.channel_id, ts, utcnow())
