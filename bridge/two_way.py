"""Two-way conversations: inbound texts into per-contact Slack threads, thread replies out as SMS, STOP/START/HELP.

Owns: storing an inbound SMS durably with its opt-out / opt-in, its Slack posts (the outbox routes it to its
conversation's thread, or a new parent in the inbound channel) and its compliance auto-reply (issue 11: the STOP /
START / HELP answer, stored in the same transaction and sent through ``Bridge.process``; a blocked number's text is
marked), the bulk text an inbound text answers (issue 13: named in its post; a conversation it opens opens in the
batch's channel), duplicate suppression, and turning a human's
thread reply into a ``SendRequest`` for ``Bridge.submit`` (which refuses opted-out numbers for every send path).
Must not import: aiohttp's server side, Slack packages, ``handlers``. Slack is reached through ``Bridge.outbox``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

from bridge import compliance, outbox
from bridge import conversations as conv
from bridge.bulk_model import BulkBatch
from bridge.compliance import ComplianceTexts
from bridge.compose import ComposeError, validate_send
from bridge.media_in import media_items
from bridge.model import AutoReply, BlockedNumber, Conversation, OutboundSms, SlackReply, new_ref
from bridge.ports import utcnow
from bridge.service import ACCEPT_TIMEOUT, NOT_RECORDED, Bridge, Notify
from bridge.storage.port import StoreUnavailable
from sw_api.models import InboundMessage
from sw_api.text import format_number, mask_number

log = logging.getLogger("bridge.two_way")

NEW_REPLY_REACTION = "incoming_envelope"
# Storing a thread reply's intent: Slack has been answered already (the reply is stored as received), so this
# may wait longer than an ack could — longer than SQLite's 5 s busy timeout, so a locked database answers
# StoreUnavailable (nothing stored: the sweeper tries again) before this bound abandons an insert still running.
REPLY_ACCEPT_TIMEOUT = 10.0


# The outbox thread of inbound texts that can go nowhere (no conversation, no inbound channel).
UNROUTED_THREAD = "inbound-unrouted"


class Received(enum.Enum):
    """What ``record_reply`` did with a thread reply Slack delivered (before Slack is answered)."""

    NEW = "new"                    # stored now, claimed by the caller: it must be finished or released
    AGAIN = "again"                # stored before: Slack's retry of an event we answered (or failed to)
    SKIPPED = "skipped"            # nobody is texted (an internal note, a thread that is not bridged): not stored
    NOT_RECORDED = "not recorded"  # the store did not answer in time: answer Slack with a 5xx so it retries


class TwoWay:
    """Stateless over the store: one instance per surface is fine (in-process locks live in the shared ``Bridge``;
    what holds across replicas is in the store)."""

    def __init__(
        self,
        bridge: Bridge,
        *,
        inbound_channel: str,
        number_channels: Mapping[str, str],
        from_numbers: tuple[str, ...],
        default_region: str = "US",
        compliance: ComplianceTexts | None = None,
    ) -> None:
        self.bridge = bridge
        self.inbound_channel = inbound_channel
        self.number_channels = dict(number_channels)
        self.from_numbers = from_numbers
        self.default_region = default_region
        # Issue 11: the STOP / START / HELP auto-replies (None or disabled: none is sent).
        self.compliance = compliance

    def channel_for(self, our_number: str) -> str:
        return self.number_channels.get(our_number) or self.inbound_channel

    # -- inbound -----------------------------------------------------------------------------------------------

    async def receive(self, message: InboundMessage) -> bool:
        """Store one inbound text durably; False for a duplicate delivery (already stored: nothing changes).

        One transaction stores the text, applies STOP/START, queues its Slack posts (the text, 📨 on the
        parent of an existing thread, the keyword notice) and stores its auto-reply, if it is a keyword and
        auto-replies are on (sent right after; after a crash, by the sweeper), so once this returns SignalWire
        may be answered: the outbox delivers them, across crashes. If the transaction did not commit, nothing
        happened and SignalWire's redelivery does it all. Routing (existing thread or a new parent) is decided at
        delivery.
        """
        keyword = conv.classify_keyword(message.body)
        now = utcnow()
        # -- issue 11: a blocked number's texts still appear, marked; a keyword gets its auto-reply (stored with the
        # text, so a redelivery or a second replica never sends another; the store refuses what may not be sent)
        texts = self.compliance if self.compliance is not None and self.compliance.enabled else None
        reply_kind = compliance.auto_reply_kind(keyword) if texts is not None else None
        block = await self.bridge.store.get_block(message.from_)
        # -- issue 12: the sender's contact name, if any, read now (the post is rendered when the text is stored).
        name = await self.bridge.names.name_of(message.from_)
        auto_reply: AutoReply | None = None
        # The lock only spares this process's coroutines; across replicas the store decides. Two first texts of a
        # conversation landing on two replicas at once both see no conversation, so both items get the same key
        # (the inbound channel): the outbox delivers a key's items one at a time, in order, on whichever replica
        # (``outbox_claim``: thread head, no other owner's live claim), so the second is routed when the first has
        # made the thread (``inbound_posted``; the conversation is unique per (our, their) number).
        async with self.bridge.lock(f"conversation:{message.to}:{message.from_}"):
            current = await self.bridge.store.get_conversation(message.to, message.from_)
            channel = self.channel_for(message.to)
            # -- issue 13: the first text after a bulk text answers it: its post names the batch, and a conversation
            # it opens opens in the batch's channel (the sender asked the list there, so the answers belong there).
            answered = await self._bulk_answered(message, current)
            if answered is not None and current is None:
                channel = answered.channel_id
            reply_post, new_post = self._posts(
                message, name, block,
                # Into the thread as it is at delivery: if this text opens the conversation, a thread that exists by
                # then was opened by an earlier text (which named the batch): this one is an ordinary reply.
                reply_bulk=answered.title if answered is not None and current is not None else None,
                new_bulk=answered.title if answered is not None else None)
            # Items of one conversation share a key, so each sees the thread the previous one ended up in.
            key = current.channel_id if current is not None else (channel or UNROUTED_THREAD)
            items = [
                outbox.inbound_item(
                    key, message_id=message.message_id, our_number=message.to, their_number=message.from_,
                    channel=channel, reply=reply_post, new=new_post,
                ),
                # Only acts if the text went into an existing thread: its parent shows replies from the phone.
                outbox.react_item(key, channel, None, NEW_REPLY_REACTION, parent_of_inbound=message.message_id),
            ]
            # -- issue 11: mms-in. Each attachment is downloaded and uploaded into the thread after the text, by the
            # outbox; nothing of it runs before SignalWire is answered.
            items += media_items(key, channel, message.message_id, message.media)
            if keyword is not None:
                items.append(outbox.post_item(key, channel, conv.keyword_notice(keyword, message.from_, message.to,
                                                                                 now, name),
                                              thread_of_inbound=message.message_id))
            if texts is not None and reply_kind is not None:
                request = compliance.auto_reply_request(reply_kind, texts, our_number=message.to,
                                                        their_number=message.from_, channel_id=key)
                ref = new_ref()
                notice = outbox.post_item(key, channel, compliance.auto_reply_notice(reply_kind, request.body,
                                                                                     message.from_),
                                          thread_of_inbound=message.message_id, ref=ref)
                auto_reply = AutoReply(ref, reply_kind, request, (notice,))
            stored = await self.bridge.store.record_inbound(
                message, opt_out=conv.keyword_word(message.body) if keyword is conv.Keyword.OPT_OUT else None,
                opt_in=keyword is conv.Keyword.OPT_IN, items=items, now=now, auto_reply=auto_reply,
            )
        if not stored:
            log.info("duplicate inbound id=%s ignored (already stored)", message.message_id)
            return False
        self.bridge.outbox.wake()
        if auto_reply is not None:
            if await self.bridge.store.get_outbound(auto_reply.ref) is None:
                log.info("no %s auto-reply to=%s: blocked or opted out", auto_reply.kind, mask_number(message.from_))
            else:
                # Stored pending: sent now; after a crash, by the sweeper (``bridge.recovery``).
                log.info("auto-reply (%s) ref=%s to=%s", auto_reply.kind, auto_reply.ref, mask_number(message.from_))
                self.bridge.spawn(self.bridge.process(auto_reply.ref), name=f"auto-reply-{auto_reply.ref}")
        if keyword is conv.Keyword.OPT_OUT:
            log.info("opt-out from=%s to=%s", mask_number(message.from_), mask_number(message.to))
        elif keyword is conv.Keyword.OPT_IN:
            log.info("opt-in from=%s to=%s", mask_number(message.from_), mask_number(message.to))
        if current is None and not channel:
            log.warning("inbound id=%s to=%s starts a conversation but no INBOUND_CHANNEL (or NUMBER_CHANNELS entry) "
                        "is set: stored (opt-out keywords applied) but not posted in Slack", message.message_id,
                        mask_number(message.to))
        return True

    async def _bulk_answered(self, message: InboundMessage, current: Conversation | None) -> BulkBatch | None:
        """The batch this text answers: the newest text we sent them from this number is a bulk text, sent after the
        conversation last moved (or there is no conversation)."""
        latest = await self.bridge.store.bulk_latest_to(message.to, message.from_)
        if latest is None or (current is not None and latest[1] <= current.updated_at):
            return None
        return await self.bridge.store.bulk_get(latest[0])

    @staticmethod
    def _posts(message: InboundMessage, name: str | None, block: BlockedNumber | None, *, reply_bulk: str | None,
               new_bulk: str | None) -> tuple[tuple[str, list[dict[str, Any]]], tuple[str, list[dict[str, Any]]]]:
        """(the post into the conversation's thread, the post that opens a new one), rendered now."""
        reply_post = (conv.inbound_text(message, new_conversation=False, name=name, bulk=reply_bulk),
                      conv.inbound_blocks(message, new_conversation=False, name=name, bulk=reply_bulk))
        new_post = (conv.inbound_text(message, new_conversation=True, name=name, bulk=new_bulk),
                    conv.inbound_blocks(message, new_conversation=True, name=name, bulk=new_bulk))
        if block is not None:
            reply_post = compliance.mark_blocked(*reply_post, block)
            new_post = compliance.mark_blocked(*new_post, block)
        return reply_post, new_post

    # -- thread replies ----------------------------------------------------------------------------------------

    async def record_reply(self, reply: SlackReply, *, lease: float,
                           timeout: float = ACCEPT_TIMEOUT) -> Received:
        """Store a thread reply as Slack delivered it, before Slack is answered: once this returns ``NEW`` or
        ``AGAIN`` a crash cannot lose it (``bridge.recovery`` resumes what stays unfinished after ``lease``
        seconds). Cheap filters first: an internal note or a thread that is not bridged costs one read, no write.
        Bounded like ``Bridge.accept``; a late insert is released so that Slack's retry (or the sweeper) takes it.
        """
        task = asyncio.ensure_future(self._record_now(reply, lease))
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            log.warning("thread reply %s not recorded within %.1fs; Slack will be asked to retry", reply.ts, timeout)
            self.bridge.spawn(self._release_late(task, reply), name="release-reply")
            return Received.NOT_RECORDED
        try:
            return task.result()
        except StoreUnavailable:
            log.exception("thread reply %s not recorded; Slack will be asked to retry", reply.ts)
            return Received.NOT_RECORDED

    async def _record_now(self, reply: SlackReply, lease: float) -> Received:
        if conv.is_internal_note(reply.text) or not await self.is_bridged(reply.channel_id, reply.thread_ts):
            return Received.SKIPPED
        now = utcnow()
        if await self.bridge.store.record_reply(reply, now, now + timedelta(seconds=lease)):
            return Received.NEW
        return Received.AGAIN

    async def _release_late(self, task: asyncio.Future[Received], reply: SlackReply) -> None:
        try:
            outcome = await task
        except StoreUnavailable:
            return
        if outcome is Received.NEW:
            await self.bridge.store.release_reply(reply.channel_id, reply.ts)

    async def claim_reply(self, channel_id: str, ts: str, *, lease: float) -> SlackReply | None:
        """Take over a stored, unfinished reply whose claim ran out (Slack's retry, or the sweeper)."""
        now = utcnow()
        return await self.bridge.store.claim_reply(channel_id, ts, now, now + timedelta(seconds=lease))

    async def finish_reply(self, reply: SlackReply, outcome: str) -> bool:
        """The reply is handled without an intent (refused, explained, nothing to text); True if this call did it."""
        return await self.bridge.store.finish_reply(reply.channel_id, reply.ts, outcome, utcnow())

    async def is_bridged(self, channel_id: str, thread_ts: str) -> bool:
        return await self.bridge.store.conversation_by_thread(channel_id, thread_ts) is not None

    async def stored_reply(self, channel_id: str, ts: str) -> OutboundSms | None:
        """The intent already stored for this Slack message (Slack delivered it again), resumed if a crash left it
        pending; None if it is new."""
        sms = await self.bridge.store.reply_intent(channel_id, ts)
        if sms is not None:
            return await self.bridge.process(sms.ref)
        return None

    async def reply_not_texted(self, *, channel_id: str, thread_ts: str, ts: str, why: str) -> None:
        """Tell the thread (durably, once per Slack message) that this reply was not texted, and mark it ❌."""
        # The explanation is queued before the reply is finished: a crash in between leaves it to be resumed, and
        # the resumed attempt finds the claim below taken instead of explaining twice.
        if await self.bridge.store.claim_slack_event(f"{channel_id}:{ts}:not-texted", utcnow()):
            await self.bridge.outbox.post(channel_id, channel_id, f"⚠️ This reply was not texted: {why}",
                                          thread_ts=thread_ts)
            await self.bridge.outbox.react(channel_id, channel_id, ts, "x")
        await self.bridge.store.finish_reply(channel_id, ts, "not texted", utcnow())

    async def send_reply(
        self,
        *,
        channel_id: str,
        thread_ts: str,
        ts: str,
        user_id: str,
        text: str,
        user_names: Mapping[str, str],
        notify: Notify,
        team_id: str = "",
        media: tuple[str, ...] = (),
    ) -> OutboundSms | None:
        """A human's reply in a bridged thread → SMS to that conversation. Internal notes and empty text are kept.

        None: nothing was stored (not texted, and the user or the thread was told why, if there is anything to tell).
        ``StoreUnavailable``: the intent could not be stored; try again later."""
        if conv.is_internal_note(text):
            return None
        conversation = await self.bridge.store.conversation_by_thread(channel_id, thread_ts)
        if conversation is None:
            return None
        body = conv.slack_to_sms(text, user_names)
        if not body and not media:
            return None
        if conversation.our_number not in self.from_numbers:
            # The conversation is with a number we no longer send from (removed from SIGNALWIRE_FROM_NUMBERS):
            # never text from a number that may not be ours any more; say so where everyone sees it.
            log.warning("thread reply not texted: conversation number %s is not in SIGNALWIRE_FROM_NUMBERS",
                        mask_number(conversation.our_number))
            await self.bridge.outbox.post(channel_id, channel_id, sender_gone_notice(conversation.our_number),
                                          thread_ts=thread_ts)
            return None
        try:
            request = validate_send(
                to=conversation.their_number, body=body, from_=conversation.our_number,
                from_numbers=self.from_numbers, default_region=self.default_region,
                user_id=user_id, channel_id=channel_id, team_id=team_id, origin="reply",
                media_text="\n".join(media),  # issue 11: the reply's pictures, published at /media/…
            )
        except ComposeError as exc:
            await notify(f"⚠️ Your reply was not texted: {exc.message}")
            return None
        # Slack was answered long ago (the reply itself is stored): the store may take longer than an ack allows.
        # Not recorded → StoreUnavailable: the caller leaves the stored reply for the sweeper to try again.
        accepted = await self.bridge.accept(replace(request, thread_ts=thread_ts, source_ts=ts),
                                            timeout=REPLY_ACCEPT_TIMEOUT)
        if accepted == NOT_RECORDED:
            raise StoreUnavailable(f"the intent of thread reply {ts} was not recorded")
        if isinstance(accepted, str):
            await notify(accepted)
            return None
        return await self.bridge.process(accepted.ref, notify)


def sender_gone_notice(our_number: str) -> str:
    """The thread's answer to a reply that cannot be texted: its conversation's number is no longer ours."""
    return (f"⚠️ Not texted: this conversation is with our number {format_number(our_number)}, which is no longer "
            "one of sms-bridge's sender numbers (SIGNALWIRE_FROM_NUMBERS), so no SMS was sent. Text them from a "
            "current number with `/sms`, or add the number back to SIGNALWIRE_FROM_NUMBERS.")
