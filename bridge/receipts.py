"""Receipts: status callbacks applied exactly once and never backwards, and told in the thread in rank order.

Owns: ``Receipts`` — authenticating a callback (its token; an id, to or from that is not its message's is
refused with ``CallbackRefused``), recording it, queuing its Slack announcement durably before the callback is
answered (``announce_status`` refuses a receipt whose predecessor is still untold, so order holds whichever
replica records what), ``adopt`` (SignalWire has the message: accepted, its first status recorded and told), and
the audit outcome / opt-out a final status implies.
-- issue 13: a bulk recipient's statuses (origin ``BULK_ORIGIN``) are marked announced with nothing queued: no
receipt thread, no parent repaint (the batch's live parent counts them from the store).
Must not import: aiohttp, Slack packages, ``handlers``, ``bridge.sending`` (which uses this module).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime

from bridge import render
from bridge.bulk_model import BULK_ORIGIN
from bridge.claims import MessageClaims
from bridge.display import ThreadDisplay
from bridge.model import OutboundSms, SendState, StatusChange
from bridge.outbox import SlackOutbox
from bridge.ports import utcnow
from bridge.storage.port import Store, StoreUnavailable
from bridge.tokens import CallbackTokens
from sw_api.models import MessageStatus, StatusEvent

log = logging.getLogger("bridge.service")

# Accepted messages whose callbacks are checked from memory: a few hours of a busy number's traffic, about 1 MB.
ACCEPTED_CACHE_SIZE = 4096


class CallbackRefused(Exception):
    """A status callback that must change nothing; ``status`` is the HTTP answer (401/403/404)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Receipts:
    def __init__(self, store: Store, outbox: SlackOutbox, display: ThreadDisplay, tokens: CallbackTokens,
                 claims: MessageClaims) -> None:
        self.store = store
        self.outbox = outbox
        self.display = display
        self.tokens = tokens
        self.claims = claims
        # ref → (SignalWire id, to, from) of accepted messages: facts that never change once a message is accepted,
        # so a message's later callbacks are checked without reading it again (a cache; the store stays the truth).
        self._accepted: OrderedDict[str, tuple[str, str, str]] = OrderedDict()

    def _known_accepted(self, ref: str, event: StatusEvent) -> bool:
        known = self._accepted.get(ref)
        if known is None:
            return False
        self._accepted.move_to_end(ref)
        sw_id, to, from_ = known
        return sw_id == event.id and _same_number(event.to, to) and _same_number(event.from_, from_)

    def _remember_accepted(self, sms: OutboundSms) -> None:
        if sms.state is SendState.ACCEPTED and sms.sw_id is not None:
            self._accepted[sms.ref] = (sms.sw_id, sms.to, sms.from_)
            self._accepted.move_to_end(sms.ref)
            while len(self._accepted) > ACCEPTED_CACHE_SIZE:
                self._accepted.popitem(last=False)

    async def apply_status(self, ref: str, token: str, event: StatusEvent) -> bool:
        """Authenticate and record a callback, and queue its Slack announcement; True when it moved the message on.

        Returns only once the receipt is durably queued in the outbox (or, while our POST is still in flight, left
        to the POST's owner, which announces it as soon as SignalWire's answer is stored): the route answers 204
        after this, and SignalWire never retries a 204. Raises ``CallbackRefused`` (and changes nothing) for unknown
        refs, bad tokens, and an ``id`` / ``to`` / ``from`` that is not this message's.
        """
        if not token or not self.tokens.valid(ref, token):
            raise CallbackRefused(403, "bad callback token")
        if self._known_accepted(ref, event):
            try:
                return await self._record_and_announce(ref, event)
            except KeyError:
                self._accepted.pop(ref, None)  # pruned by retention since: unknown now
                raise CallbackRefused(404, "unknown message reference") from None
        sms = await self.store.get_outbound(ref)
        if sms is None:
            raise CallbackRefused(404, "unknown message reference")
        if sms.sw_id is not None and sms.sw_id != event.id:
            raise CallbackRefused(403, "callback id does not match the message")
        # A captured callback URL must not rewrite this message's history with some other message's statuses.
        if not (_same_number(event.to, sms.to) and _same_number(event.from_, sms.from_)):
            raise CallbackRefused(403, "callback to/from do not match the message")
        if sms.sw_id is None:
            # Its id is about to be adopted: it must not be one SignalWire already gave another message of ours.
            owner = await self.store.find_by_sw_id(event.id)
            if owner is not None and owner.ref != ref:
                raise CallbackRefused(403, "callback id belongs to another message")
        if sms.state is SendState.SUBMITTING:
            # Faster than the create answer. Remember the id, so even a lost answer leaves no doubt, and record the
            # status without the message's lease: the POST holds it. Its owner announces what was recorded once
            # SignalWire's answer is stored (``adopt``); after a crash, reconciliation does.
            if sms.sw_id is None:
                await self.store.note_sw_id(ref, event.id, utcnow())
            change = await self._record(ref, event)
            if change.sms.state is SendState.ACCEPTED:
                # The answer was stored meanwhile and its owner may have announced before our status was there.
                await self.announce_pending(ref)
            return change.advanced
        if sms.state is SendState.UNKNOWN:
            async with self.claims.hold(ref) as held:
                current = await self.store.get_outbound(ref)
                if held and current is not None and current.state is SendState.UNKNOWN:
                    # The token proves this callback is about our message: SignalWire has it, under event.id.
                    # Under the lease and re-read, so of several replicas (and the sweeper) one adopts it, once.
                    await self.store.count("reconciled_by_callback")
                    await self.adopt(current, current.sw_id or event.id, event.number_of_segments or 1, event.status,
                                     event.error_code, event.error_message, event.timestamp)
                    return True
                if not held and current is not None and current.sw_id is None:
                    # Another replica is reconciling it: the id it will find first proves SignalWire has it.
                    await self.store.note_sw_id(ref, event.id, utcnow())
        # Receipts are queued in rank order by the store (``announce_status`` refuses one whose predecessor is still
        # untold), whichever replica records what; the lock only saves this process's coroutines a wasted try. A
        # redelivery after a crash between recording and announcing finds the status unannounced and announces it.
        self._remember_accepted(sms)
        return await self._record_and_announce(ref, event)

    async def _record_and_announce(self, ref: str, event: StatusEvent) -> bool:
        async with self.claims.lock(ref):
            change = await self._record(ref, event)
            if change.unannounced or not change.new:
                # Recording told us what is still untold (and the message as it is now): announce from that, not
                # from fresh reads. A duplicate finds the queue as a crash may have left it, so it looks again.
                await self.announce_pending(ref, first=change)
        return change.advanced

    async def _record(self, ref: str, event: StatusEvent) -> StatusChange:
        change = await self.store.record_status(
            ref, event.status, event.error_code, event.error_message, event.timestamp, utcnow()
        )
        log.info(
            "status ref=%s sw_id=%s status=%s new=%s advanced=%s", ref, event.id, event.status, change.new,
            change.advanced,
        )
        return change

    async def announce_pending(self, ref: str, notes: Mapping[MessageStatus, str] | None = None, *,
                               first: StatusChange | None = None) -> int:
        """Announce every status that advanced ``ref`` and is not announced yet, oldest first; how many were.

        Safe from any replica at any time: the store queues a receipt only once and only after the ones before it,
        so this goes round until a pass announces nothing (a status another replica recorded while an earlier one
        was still untold is told here once that one is). ``notes``: a status's thread reply is this text instead.
        ``first``: what recording a status just returned — the first pass starts from it instead of reading.
        """
        told = 0
        while True:
            progress = 0
            from_recording = first is not None and first.new
            if first is not None and first.new:
                statuses, sms_now = list(first.unannounced), first.sms
            else:
                statuses, sms_now = await self.store.unannounced(ref), None
            first = None
            if statuses and sms_now is None:
                sms_now = await self.store.get_outbound(ref)
            for status in statuses:
                if sms_now is not None and await self.announce(sms_now, status, note=(notes or {}).get(status)):
                    progress += 1
            if progress == 0:
                return told
            told += progress
            if from_recording and progress == len(statuses):
                # Everything untold when we recorded is told now. A status recorded since then by another replica
                # is its recorder's to tell (its own pass starts from it), so there is nothing to look for again.
                return told

    async def announce(self, sms: OutboundSms, status: MessageStatus, *, note: str | None = None) -> bool:
        """Queue what Slack must show for ``status`` (receipt, parent repaint, reactions) in the transaction that
        marks it announced; False, with nothing queued, if it already was (or an earlier status is still untold)."""
        if status.is_failure:
            await self.note_opt_out(sms)
        if not status.is_final:
            return await self._announce(sms, status, note)
        # The audit row's outcome is written beside the announcement (group commit puts both in one COMMIT). Not a
        # TaskGroup: the announcement's own errors (StoreUnavailable) must reach the caller as they are.
        audit = asyncio.get_running_loop().create_task(self.audit_outcome(sms, status.value))
        try:
            told = await self._announce(sms, status, note)
        except BaseException:
            audit.cancel()  # best effort anyway; never left running without us
            raise
        await audit  # never raises StoreUnavailable (see audit_outcome)
        return told

    async def _announce(self, sms: OutboundSms, status: MessageStatus, note: str | None) -> bool:
        batch = self.outbox.batch()
        if sms.origin == BULK_ORIGIN:
            # An empty batch: the status is still marked announced, so nothing waits on it (rank order holds).
            return await self.outbox.add_announcement(sms.ref, status.value, batch)
        if sms.origin == "reply":
            # A thread reply shows its outcome as reactions on itself; only a failure adds a note to the thread.
            if status is MessageStatus.DELIVERED or status.is_failure:
                await self.display.react_outcome(sms, failed=status.is_failure, out=batch)
                if status.is_failure:
                    await self.display.reply_failure(sms, render.delivery_failure_headline(sms), out=batch)
            elif status is MessageStatus.SENT and sms.is_mms:
                # -- issue 11: MMS never gets a delivery receipt: "sent" is final. The thread shows what went out.
                await self.display.react_outcome(sms, failed=False, out=batch)
                await self.display.reply(sms, render.mms_reply_sent_text(sms), render.mms_reply_sent_blocks(sms),
                                         out=batch)
            if note is not None:
                await self.display.reply(sms, note, out=batch)
            return await self.outbox.add_announcement(sms.ref, status.value, batch)
        # The repaint first: the parent shows a new state at once instead of after the receipt's window, and later
        # repaints queue behind the waiting receipt and coalesce there (an isolated SMS: parent, at most 2 repaints
        # and one reply — 4 Slack calls, 3 when the statuses beat the first repaint).
        await self.display.refresh_parent(sms, out=batch)
        if note is not None:
            # Recovery's words for this status (e.g. what SignalWire's logs say): a fixed reply with that text.
            await self.display.reply(sms, note, out=batch)
        else:
            # One reply for every status received within the coalescing window (failures with Retry), rendered
            # when posted from the store's status history.
            await self.display.receipt(sms, status, out=batch)
        return await self.outbox.add_announcement(sms.ref, status.value, batch)

    async def audit_outcome(self, sms: OutboundSms, outcome: str) -> None:
        """The audit trail's row for this send learns how it ended (best effort: the thread is the record)."""
        text = f"{outcome} ({sms.error_code})" if sms.error_code else outcome
        try:
            await self.store.audit_outcome(sms.ref, text)
        except StoreUnavailable:
            log.warning("audit outcome not recorded ref=%s: %s", sms.ref, text)

    async def note_opt_out(self, sms: OutboundSms) -> None:
        # SignalWire's 21610 means the carrier knows they said STOP: never try that number again.
        if sms.error_code == "21610":
            await self.store.set_opt_out(sms.from_, sms.to, "21610", utcnow())

    async def adopt(self, sms: OutboundSms, sw_id: str, segments: int, status: MessageStatus,
                    error_code: str | None, error_message: str | None, at: datetime | None,
                    *, found_via: str = "callback") -> OutboundSms:
        """SignalWire has this message under ``sw_id`` (a 201, a reconciled log record, or an early callback).

        An *unknown* message being adopted was announced as "checking": the thread hears what settled it
        (``found_via``: "logs" or "callback") before its receipts."""
        was_unknown = sms.state is SendState.UNKNOWN
        sms = await self.store.mark_accepted(sms.ref, sw_id, segments, utcnow())
        if was_unknown:
            await self.display.reply(sms, render.found_text(found_via, status))
        await self.store.count("accepted")
        log.info("send accepted ref=%s sw_id=%s segments=%d", sms.ref, sw_id, segments)
        await self.display.react(sms, "x", add=False)
        await self.display.react(sms, "outbox_tray")
        change = await self.store.record_status(sms.ref, status, error_code, error_message, at, utcnow())
        # This status, and any an early callback recorded while the POST was in flight, are told now, in order.
        if not await self.announce_pending(sms.ref):
            await self.display.refresh_parent(change.sms)
        return change.sms


def _same_number(a: str, b: str) -> bool:
    """Whether a callback's ``to`` / ``from`` names the number we stored (formatting aside, e.g. a missing +)."""
    digits_a, digits_b = "".join(c for c in a if c.isdigit()), "".join(c for c in b if c.isdigit())
    return bool(digits_a) and digits_a == digits_b
