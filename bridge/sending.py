"""Sending: from a validated request to SignalWire, in order, with every outcome stored before anything else.

Owns: ``Sending`` — the opt-out and block-list check and the bounded recording of an intent before Slack is answered
(``accept``, ``accept_retry``: what is acknowledged is never lost, what is refused is never sent), posting the
parent (once, looked up after a crash), the POST to SignalWire under the message's lease (``process``: of several
replicas one sends), its outcomes (accepted → ``Receipts.adopt``, rejected, rate limited, unknown → told at once
and reconciled by ``bridge.recovery``) and Retry (the atomic ``create_retry_intent``).
-- issue 13: every POST waits for its slot of the sending number's pace (``pace_reserve``, shared by every replica and
by bulk sends; ``SendSettings.mps``), and SignalWire's 429 pushes that pace back (``pace_push``) so the whole number
slows down; the 429s this process was answered are kept too (``note_hold`` / ``held_since``), so a slot reserved
before one came back is not used inside its Retry-After window, and a POST held up more than ``LATE_SLOT_SECONDS``
after its slot takes a fresh one rather than bunching with the next. A bulk recipient (origin ``BULK_ORIGIN``) has no
parent and no thread.
Must not import: aiohttp, Slack packages (Slack is reached through ``SlackPort``), ``handlers``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from bridge import render
from bridge.bulk_model import BULK_ORIGIN
from bridge.claims import MESSAGE_LEASE, MessageClaims
from bridge.compliance import block_refusal
from bridge.conversations import opted_out_refusal
from bridge.display import ThreadDisplay
from bridge.model import AUTO_REPLY_ORIGIN, SCHEDULE_ORIGIN, OutboundSms, SendRequest, SendState, new_ref
from bridge.outbox import SlackOutbox, parent_key
from bridge.ports import SignalWireSender, SlackPort, SlackPortError, is_transient, utcnow
from bridge.receipts import Receipts
from bridge.storage.port import Store, StoreUnavailable
from bridge.supervisor import TaskSupervisor
from bridge.tokens import CallbackTokens
from sw_api.errors import NotSent, OutcomeUnknown, RateLimited, SignalWireError, ValidationFailed
from sw_api.models import MessageStatus
from sw_api.text import mask_number, segment_info

log = logging.getLogger("bridge.service")

T = TypeVar("T")

Notify = Callable[[str], Awaitable[None]]

# Recording the intent is a local insert; if it takes longer than this the user is refused, not left guessing.
ACCEPT_TIMEOUT = 1.0
NOT_RECORDED = (
    "⚠️ Your SMS was not sent: sms-bridge could not record it (its database is not answering). "
    "Try again in a minute; if it keeps happening, tell whoever runs sms-bridge."
)
RETRY_NOT_RECORDED = (
    "⚠️ Nothing was sent: sms-bridge could not record your Retry (its database is not answering). "
    "Press Retry again in a minute; if it keeps happening, tell whoever runs sms-bridge."
)
ALREADY_RETRIED = "Someone already pressed Retry on this message; see the thread for the new attempt."
RECORD_PATIENCE = 60.0     # seconds to keep trying to store a send's outcome before leaving it to reconciliation
RATE_LIMIT_BACKOFF = 5.0   # seconds, when SignalWire's 429 carries no Retry-After
LONG_WAIT_NOTICE = 10.0    # tell the thread when a 429 makes a message wait at least this long
MAX_POSTS = 2              # the original POST and at most one re-send after SignalWire's logs prove it absent
PACE_MARGIN = 0.96         # -- issue 13: pace at 96 % of SIGNALWIRE_MPS: no one-second window sees more even when a
#                                POST starts ~40 ms late (at 5 MPS), and 1,000 texts at 20 MPS take 52 s (50 s + 4 %)
# -- issue 13: a POST that starts later than this after its slot takes a fresh one instead: below the ~42 ms by which
# the margin lets a one-second window absorb lateness, and above a store write's usual latency at 200 MPS.
LATE_SLOT_SECONDS = 0.03


def seconds_per_segment(mps: float) -> float:
    """-- issue 13: the length of one segment's pace slot at ``mps`` (with the margin)."""
    return 1.0 / (mps * PACE_MARGIN)


# -- issue 13: the 429s this process was answered, per store and sending number: (when, until when they hold). A
# pace slot reserved before a 429 came back may lie inside its Retry-After window, which ``pace_push`` cannot move;
# whoever waited for such a slot asks ``held_since`` before its POST.
_holds: WeakKeyDictionary[Store, dict[str, tuple[datetime, datetime]]] = WeakKeyDictionary()


def note_hold(store: Store, from_: str, until: datetime) -> None:
    """-- issue 13: a 429 for ``from_`` was answered now; it holds the number back until ``until``."""
    holds = _holds.setdefault(store, {})
    _, held = holds.get(from_, (until, until))
    holds[from_] = (utcnow(), max(held, until))


def held_since(store: Store, from_: str, since: datetime) -> datetime | None:
    """-- issue 13: until when a 429 answered at or after ``since`` holds ``from_`` back; None if none did or it is
    over already."""
    answered, until = _holds.get(store, {}).get(from_, (None, None))
    if answered is None or until is None or answered < since or until <= utcnow():
        return None
    return until


def pace_pusher(store: Store) -> Callable[[str, float], Awaitable[None]]:
    """-- issue 13: what the SignalWire client calls when a POST from ``from_`` is answered 429 and retried after
    ``wait`` seconds: that number's shared pace is pushed back, so every replica and every batch slows down."""

    async def push(from_: str, wait: float) -> None:
        until = utcnow() + timedelta(seconds=wait)
        note_hold(store, from_, until)
        try:
            await store.pace_push(from_, until)
        except StoreUnavailable as exc:
            log.warning("pace of %s not pushed back after a 429 (%s)", mask_number(from_), exc)

    return push


@dataclass(frozen=True)
class SendSettings:
    """Timings of durable sending (from ``Config``; small in tests)."""

    reconcile_first_check: float = 2.0   # seconds after an unknown outcome before the first look in the logs
    reconcile_grace: float = 60.0        # absent from the logs this long after the POST → it was never created
    stuck_after: float = 900.0           # accepted without a final receipt this long → ask the logs
    sweep_interval: float = 2.0          # how often the sweeper looks for due work
    stale_submitting: float = 120.0      # unused: a POST is "in flight" exactly while its message's lease lives
    message_lease: float = MESSAGE_LEASE  # seconds a replica's claim on a message lasts unless renewed
    # -- issue 13: segments per second per sending number (SIGNALWIRE_MPS); None: POSTs are not paced
    mps: float | None = None


class _AsTransient(SlackPortError):
    """Looking for an earlier post failed: whether it exists is unknown, so leave the post to the outbox."""

    transient = True


class Sending:
    def __init__(self, *, store: Store, signalwire: SignalWireSender, slack: SlackPort, tokens: CallbackTokens,
                 outbox: SlackOutbox, display: ThreadDisplay, receipts: Receipts, claims: MessageClaims,
                 supervisor: TaskSupervisor, settings: SendSettings, simulated: bool = False,
                 ack_store: Store | None = None) -> None:
        self.store = store
        # The connection(s) of what Slack's ack waits for: ``accept`` / ``accept_retry`` before the ack use it, so
        # a slash command never queues behind outbox, callback and send writers. Everything after the ack (and
        # thread replies, which Slack got its answer for already) stays on ``store``.
        self.ack_store = ack_store or store
        self.signalwire = signalwire
        self.slack = slack
        self.tokens = tokens
        self.outbox = outbox
        self.display = display
        self.receipts = receipts
        self.claims = claims
        self.supervisor = supervisor
        self.settings = settings
        self.simulated = simulated

    async def opt_out_refusal(self, from_: str, to: str, *, store: Store | None = None) -> str | None:
        """Why texting ``to`` from ``from_`` is not allowed (blocked by the team, or they opted out), or None. Every
        send path asks this (a new send asks the store in its insert: ``create_outbound_unless_opted_out``)."""
        # -- issue 11: the team's block list comes first (it holds whichever number we text from)
        block = await (store or self.store).get_block(to)
        if block is not None:
            return block_refusal(block)
        opt_out = await (store or self.store).get_opt_out(from_, to)
        if opt_out is None:
            return None
        return opted_out_refusal(to, from_, opt_out.opted_out_at, opt_out.keyword)

    # -- sending ---------------------------------------------------------------------------------------------

    async def accept(self, request: SendRequest, *, timeout: float = ACCEPT_TIMEOUT) -> OutboundSms | str:
        """Check opt-out and record the intent to send, before Slack is answered: what is acknowledged is never lost.

        Returns the stored message, or a refusal to show the user (opted out, or the database did not answer
        within ``timeout`` — then nothing was sent and nothing ever will be for this request). The whole check is
        bounded: Slack's 3 s for the ack must never run out while a locked database is waited on.
        Slack's ack waits for this (the slash command, the form), so it runs on ``ack_store`` — except for a thread
        reply, which was stored and answered already.
        """
        store = self.store if request.origin == "reply" else self.ack_store
        return await self._record_bounded(
            self._accept_now(request, store), timeout=timeout, refusal=NOT_RECORDED,
            what=f"send (origin={request.origin})",
            # Too slow to acknowledge: the late insert must never be sent.
            undo=lambda sms: self.store.mark_rejected(
                sms.ref, None, "not acknowledged in time; the user was told nothing was sent", utcnow()),
        )

    async def _record_bounded(
        self, work: Coroutine[Any, Any, OutboundSms | str], *, timeout: float, refusal: str, what: str,
        undo: Callable[[OutboundSms], Awaitable[Any]],
    ) -> OutboundSms | str:
        """Run ``work`` (store an intent) for at most ``timeout``; too slow or failed → ``refusal``, and an intent
        that commits after we gave up is undone (``undo``), since the user was told nothing was recorded."""
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            self.supervisor.spawn(self._undo_late(task, undo), name="abandon-intent")
            return refusal
        try:
            return task.result()
        except StoreUnavailable:
            log.exception("%s not recorded", what)
            return refusal

    async def _undo_late(self, task: asyncio.Future[OutboundSms | str],
                         undo: Callable[[OutboundSms], Awaitable[Any]]) -> None:
        try:
            outcome = await task
        except StoreUnavailable:
            return
        if isinstance(outcome, OutboundSms):
            await self._stored(lambda: undo(outcome))

    async def _accept_now(self, request: SendRequest, store: Store) -> OutboundSms | str:
        if request.source_ts is None:
            # A new send (the slash command, the form): the opt-out check rides in the insert, one round trip.
            ref = new_ref()
            sms = await store.create_outbound_unless_opted_out(ref, request, utcnow())
            if sms is not None:
                self._log_requested(ref, request)
                return sms
        refusal = await self.opt_out_refusal(request.from_, request.to, store=store)
        if refusal is not None:
            log.info("send refused: %s blocked or opted out of %s (origin=%s)", mask_number(request.to),
                     mask_number(request.from_), request.origin)
            return refusal
        # A thread reply, or an opt-out withdrawn (START) between the insert and the read.
        return await self._store_intent(request, store)

    @staticmethod
    def _log_requested(ref: str, request: SendRequest) -> None:
        log.info(
            "send requested ref=%s user=%s channel=%s to=%s from=%s origin=%s",
            ref, request.user_id, request.channel_id, mask_number(request.to), mask_number(request.from_),
            request.origin,
        )

    async def _store_intent(self, request: SendRequest, store: Store) -> OutboundSms:
        ref = new_ref()
        if request.source_ts is not None and request.retry_of is None:
            # A thread reply: its Slack message is the claim, stored with the intent (Slack's retries of the event
            # find this one instead of making another).
            sms, created = await store.create_reply_intent(ref, request, utcnow())
            if not created:
                log.info("thread reply %s already stored as ref=%s", request.source_ts, sms.ref)
                return sms
        else:
            sms = await store.create_outbound(ref, request, utcnow())
            if request.source_ts is not None:
                await store.set_reply_source(ref, request.source_ts)
        self._log_requested(ref, request)
        return sms

    async def submit(self, request: SendRequest, notify: Notify | None = None) -> OutboundSms | None:
        """``accept`` then ``process``, for callers that have already answered Slack (Retry, thread replies)."""
        accepted = await self.accept(request)
        if isinstance(accepted, str):
            if notify is not None:
                await notify(accepted)
            return None
        return await self.process(accepted.ref, notify)

    async def _post_parent_once(self, sms: OutboundSms) -> str:
        """Post the parent, tagged with ``parent_key``. The attempt is noted in the store first, so after a crash
        between Slack's answer and ``set_parent`` the next attempt finds that post instead of making another."""
        key = parent_key(sms.ref)
        if await self.store.begin_parent_post(sms.ref, utcnow()):
            find: Callable[..., Awaitable[str | None]] | None = getattr(self.slack, "find_posted", None)
            if find is not None:
                try:
                    found = await find(sms.channel_id, key, None)
                except SlackPortError as exc:
                    raise _AsTransient(str(exc)) from exc
                if found is not None:
                    log.info("parent of ref=%s was already posted (%s); not posting it again", sms.ref, found)
                    return found
        return await self.slack.post(sms.channel_id, render.parent_text(sms),
                                     render.parent_blocks(sms, simulated=self.simulated), key=key)

    async def process(self, ref: str, notify: Notify | None = None, *,
                      paced: datetime | None = None) -> OutboundSms | None:
        """Post the parent (if new) and hand a pending message to SignalWire. Idempotent: only ``pending`` moves,
        and only under the message's lease: if another replica holds it, that one is on it (the stored message is
        returned as it is). ``paced``: the pace slot the caller reserved for this POST already (``bridge.bulk``)."""
        async with self.claims.hold(ref) as held:
            sms = await self.store.get_outbound(ref)
            if not held:
                log.info("ref=%s is being worked on by another replica; leaving it", ref)
                return sms
            if sms is None or sms.state is not SendState.PENDING:
                return sms
            if sms.origin == AUTO_REPLY_ORIGIN:
                # Issue 11: the bridge's own answer to a keyword has no parent of its own; it is shown in the thread
                # of the text it answers (its notice, then its receipts) and goes at once, Slack or no Slack.
                if sms.retry_of is not None and sms.attempts == 0:
                    await self.display.reply(sms, f"🔁 Retry by <@{sms.user_id}>: sending the auto-reply again…")
                return await self.post_to_signalwire(sms)
            if sms.origin == BULK_ORIGIN:
                # -- issue 13: one recipient of a bulk send: no parent, no thread (the batch has one live parent).
                return await self.post_to_signalwire(sms, paced=paced)
            if sms.parent_ts is None and sms.attempts == 0 and sms.origin != SCHEDULE_ORIGIN:
                # (-- issue 12: a scheduled send's parent was queued in the outbox when it was scheduled.)
                if not await self.outbox.take_post(sms.channel_id):
                    # The channel is at Slack's posting rate: the parent waits its turn in the outbox, the SMS goes.
                    # Noted as an attempt first, so a rerun after a crash here looks for the outbox's post instead
                    # of posting a second parent (and the outbox posts nothing once a parent ts is recorded).
                    await self.store.begin_parent_post(ref, utcnow())
                    await self.outbox.post_parent(ref, sms.channel_id)
                    return await self.post_to_signalwire(sms)
                try:
                    ts = await self._post_parent_once(sms)
                    await self.outbox.post_finished(sms.channel_id)
                except SlackPortError as exc:
                    if is_transient(exc):
                        # Slack is having trouble, not refusing: the parent waits in the outbox, the SMS goes.
                        # A timeout may hide a post that Slack took: the outbox looks before posting it.
                        log.warning("parent post deferred ref=%s: %s", ref, exc)
                        await self.outbox.post_parent(ref, sms.channel_id, maybe_posted=True)
                        return await self.post_to_signalwire(sms)
                    reason = render.parent_refusal(sms.channel_id, str(exc))
                    await self.store.mark_rejected(ref, None, reason, utcnow())
                    await self.store.count("rejected_slack")
                    log.warning("send aborted ref=%s: parent post failed: %s", ref, exc)
                    if notify is not None:
                        await notify(f"⛔ Nothing was sent: I {reason}.")
                    return await self.store.get_outbound(ref)
                sms = await self.store.set_parent(ref, ts, utcnow())
            elif sms.origin != "reply" and sms.retry_of is not None and sms.attempts == 0:
                await self.display.reply(sms, f"🔁 Retry by <@{sms.user_id}>: sending again…")
            if sms.parent_ts is not None:
                # Their answer comes back into this thread (bridge.two_way routes inbound texts by conversation).
                await self.store.set_conversation(sms.from_, sms.to, sms.channel_id, sms.parent_ts, utcnow())
            return await self.post_to_signalwire(sms)

    async def post_to_signalwire(self, sms: OutboundSms, *, paced: datetime | None = None) -> OutboundSms:
        """One POST, under the message's lease (``claims.hold``, held by the caller). Every outcome is stored before
        anything else happens. Each POST first waits for its slot of the sending number's pace (issue 13: shared by
        every replica and by bulk sends) unless ``paced`` (the caller waited for it)."""
        # -- issue 11: checked again right before every POST (a first one, a 429's retry, a reconciled re-send): a
        # message that waited (rate limited, unknown) is not sent once the number opted out or was blocked meanwhile.
        # The store decided at creation which auto-replies may go (``OPT_OUT_EXEMPT``); a Retry of one was checked.
        # A bulk recipient's first POST (``paced``) was checked by ``bulk_hand_over`` in the transaction that created
        # it, milliseconds ago: the POST follows its pace slot as closely as it can.
        if not (sms.origin == AUTO_REPLY_ORIGIN and sms.retry_of is None) and paced is None:
            refusal = await self.opt_out_refusal(sms.from_, sms.to)
            if refusal is not None:
                return await self._refused_late(sms, refusal)
        slot = paced
        if self.settings.mps is not None and paced is None:
            slot = await self._wait_for_pace(sms)
        sms = await self.store.mark_submitting(sms.ref, utcnow())
        if slot is not None and (utcnow() - slot).total_seconds() > LATE_SLOT_SECONDS:
            # Held up since its slot (a slow store write, a busy loop): going now could bunch it with the POSTs
            # whose slots come next. It takes a fresh slot instead, after every one reserved so far.
            await self._wait_for_pace(sms)
        try:
            message = await self.signalwire.send_message(
                sms.to,
                sms.from_,
                body=sms.body or None,
                media=sms.media,
                send_as_mms=sms.send_as_mms,
                status_callback=self.tokens.url(sms.ref),
            )
        except RateLimited as exc:
            # Nothing was created: keep it pending and let the sweeper try again when SignalWire allows.
            wait = exc.retry_after if exc.retry_after is not None else RATE_LIMIT_BACKOFF
            # -- issue 13: the whole number slows down (every replica, every bulk batch), not only this message.
            until = utcnow() + timedelta(seconds=wait)
            note_hold(self.store, sms.from_, until)
            await self.store.pace_push(sms.from_, until)
            sms = await self.store.mark_pending(sms.ref, utcnow() + timedelta(seconds=wait), utcnow())
            await self.store.count("rate_limited")
            log.warning("send rate limited ref=%s: retrying in %.1f s", sms.ref, wait)
            if wait >= LONG_WAIT_NOTICE:
                await self.display.reply(
                    sms, f"⏳ SignalWire asked us to slow down: queued, sending in about {wait:.0f} s.")
            return sms
        except NotSent as exc:
            code, text = _error_parts(exc)
            rejected = sms
            sms = await self._stored(lambda: self.store.mark_rejected(rejected.ref, code, text, utcnow()))
            await self.store.count("rejected")
            log.warning("send rejected ref=%s: %s", sms.ref, exc)
            await self.receipts.audit_outcome(sms, "rejected")
            await self.receipts.note_opt_out(sms)
            await self.display.react_outcome(sms, failed=True)
            await self.display.refresh_parent(sms)
            await self.display.reply_failure(sms, render.rejected_headline())
            return sms
        except OutcomeUnknown as exc:
            sms = await self.store.get_outbound(sms.ref) or sms
            if sms.sw_id is not None:
                # A callback already proved SignalWire has it: the lost answer changes nothing.
                await self.store.count("reconciled_by_callback")
                return await self.receipts.adopt(sms, sms.sw_id, sms.segments or 1, sms.status or MessageStatus.QUEUED,
                                        sms.error_code, sms.error_message, None)
            # It may exist at SignalWire: never re-POST blindly. bridge.recovery looks in the logs first.
            unknown, why = sms, str(exc)
            sms = await self._stored(lambda: self.store.mark_unknown(unknown.ref, why, utcnow()))
            await self.store.schedule(sms.ref, utcnow() + timedelta(seconds=self.settings.reconcile_first_check),
                                      utcnow())
            await self.store.count("unknown")
            log.warning("send outcome unknown ref=%s: %s", sms.ref, exc)
            # Tell the truth at once, not after the grace period: what SignalWire did, that we are checking, and
            # when bridge.recovery will send again if the logs show nothing. The parent stops saying "Sending…".
            await self.tell_checking(sms, render.unknown_cause(exc))
            return sms
        accepted = sms
        return await self._stored(lambda: self.receipts.adopt(accepted, message.id, message.number_of_segments,
                                                     message.status, message.error_code, message.error_message,
                                                     message.created_at))

    async def _wait_for_pace(self, sms: OutboundSms) -> datetime | None:
        """-- issue 13: reserve this POST's slot of ``sms.from_``'s pace (one atomic statement) and sleep until it;
        the slot (None: not paced)."""
        if self.settings.mps is None:
            return None
        segments = 1 if sms.media else max(1, segment_info(sms.body).segments)  # an MMS is one message
        slot = await self.store.pace_reserve(sms.from_, segments, seconds_per_segment(self.settings.mps), utcnow())
        wait = (slot - utcnow()).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)
        return slot

    async def _refused_late(self, sms: OutboundSms, refusal: str) -> OutboundSms:
        """Opted out or blocked while the message waited: never POSTed; the thread (and the parent) say why."""
        pending = sms
        sms = await self._stored(lambda: self.store.mark_rejected(
            pending.ref, None, "blocked or opted out before it was sent", utcnow()))
        await self.store.count("rejected_opted_out")
        log.info("send refused before the POST ref=%s: %s blocked or opted out", sms.ref, mask_number(sms.to))
        await self.receipts.audit_outcome(sms, "rejected")
        await self.display.react_outcome(sms, failed=True)
        await self.display.refresh_parent(sms)
        await self.display.reply(sms, refusal)
        return sms

    async def tell_checking(self, sms: OutboundSms, cause: str) -> None:
        """An unknown outcome, told at once: ``cause`` (one clause), that the logs are being checked, and when the
        message is sent once more if they show nothing. The parent stops saying "Sending…"."""
        resend_at = (sms.submitted_at or utcnow()) + timedelta(seconds=self.settings.reconcile_grace)
        await self.display.refresh_parent(sms)
        await self.display.reply(sms, render.checking_notice(
            cause, resend_at=resend_at if sms.attempts < MAX_POSTS else None,
            resend_in=(resend_at - utcnow()).total_seconds()))

    async def _stored(self, write: Callable[[], Awaitable[T]]) -> T:
        """Record what SignalWire already did, waiting out a briefly locked database rather than forgetting it.

        If the store stays away longer, the message is left ``submitting`` and the sweeper (or the next start)
        reconciles it through SignalWire's logs.
        """
        deadline = time.monotonic() + RECORD_PATIENCE
        while True:
            try:
                return await write()
            except StoreUnavailable:
                if time.monotonic() >= deadline:
                    raise
                log.warning("store unavailable while recording a send outcome; trying again")
                await asyncio.sleep(1.0)

    async def retry(self, ref: str, user_id: str, notify: Notify | None = None) -> OutboundSms | None:
        """Send a failed message again, into the same thread. A second click on the same Retry does nothing."""
        accepted = await self.accept_retry(ref, user_id)
        if isinstance(accepted, str):
            if notify is not None:
                await notify(accepted)
            return None
        return await self.process(accepted.ref, notify)

    async def accept_retry(self, ref: str, user_id: str, *, timeout: float = ACCEPT_TIMEOUT) -> OutboundSms | str:
        """Claim the Retry of ``ref`` and store its intent in one transaction, before the click is acknowledged:
        a crash after the ack resumes it (``bridge.recovery``), and a second click is told it was pressed already.

        Returns the stored retry, or what to tell the user (bounded like ``accept``: a database that does not
        answer within ``timeout`` means nothing was claimed nor will be sent, and Retry can be pressed again).
        """
        return await self._record_bounded(
            self._accept_retry_now(ref, user_id), timeout=timeout, refusal=RETRY_NOT_RECORDED,
            what=f"retry of ref={ref}",
            # Undo the claim too, so the user's next click works.
            undo=lambda retry: self.store.abandon_retry_intent(retry.ref),
        )

    async def _accept_retry_now(self, ref: str, user_id: str) -> OutboundSms | str:
        store = self.ack_store  # the Retry click's ack waits for this
        original = await store.get_outbound(ref)
        if original is None:
            return "That message is not known to this bridge any more; send it again with /sms."
        if not render.can_retry(original):
            return "This message did not fail, so there is nothing to retry."
        refusal = await self.opt_out_refusal(original.from_, original.to, store=store)
        if refusal is not None:
            return refusal
        request = SendRequest(
            user_id=user_id,
            channel_id=original.channel_id,
            team_id=original.team_id,
            to=original.to,
            from_=original.from_,
            body=original.body,
            media=original.media,
            send_as_mms=original.send_as_mms,
            # A retried thread reply stays a thread reply: its reactions, not a new parent, tell the outcome.
            origin=original.origin if original.origin in ("reply", AUTO_REPLY_ORIGIN) else "retry",
            retry_of=original.ref,
            thread_ts=original.parent_ts,
            source_ts=await store.reply_source(original.ref),
        )
        retry_ref = new_ref()
        if not await store.create_retry_intent(retry_ref, request, user_id, utcnow()):
            return ALREADY_RETRIED
        log.info("retry requested ref=%s of=%s user=%s", retry_ref, ref, user_id)
        sms = await store.get_outbound(retry_ref)
        assert sms is not None
        return sms


def _error_parts(exc: SignalWireError) -> tuple[str | None, str]:
    """(code, SignalWire's own words) for the thread."""
    if isinstance(exc, ValidationFailed) and exc.errors:
        first = exc.errors[0]
        return first.code or "422", "; ".join(e.message for e in exc.errors)
    status = getattr(exc, "status", None)
    detail = getattr(exc, "detail", None) or str(exc)
    return (str(status) if status else None), detail
