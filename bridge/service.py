"""The send flow and the receipt flow: from a validated request to a Slack thread that tells the truth.

Owns: ordering (intent stored → parent posted → SignalWire called → outcome stored → thread told), the
per-message callback token, applying status callbacks exactly once and never backwards (a callback whose id, to
or from is not its message's is refused), queuing each receipt durably before the callback is answered, Retry.
Must not import: aiohttp's server side, Slack packages (Slack is reached through the ``SlackPort`` protocol),
``handlers``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

from bridge import render
from bridge.claims import MESSAGE_LEASE, MessageClaims, new_owner_id
from bridge.conversations import opted_out_refusal
from bridge.model import OutboundSms, SendRequest, SendState, StatusChange, new_ref
from bridge.outbox import OutboxBatch, ParentView, SlackOutbox, parent_key
from bridge.ports import SignalWireSender, SlackPort, SlackPortError, is_transient, utcnow
from bridge.storage.port import Store, StoreUnavailable
from sw_api.errors import NotSent, OutcomeUnknown, RateLimited, SignalWireError, ValidationFailed
from sw_api.models import MessageStatus, StatusEvent
from sw_api.text import mask_number

log = logging.getLogger("bridge.service")

T = TypeVar("T")

STATUS_PATH = "/signalwire/status"

Notify = Callable[[str], Awaitable[None]]
# Where Slack work is queued: the outbox itself, or a batch committed in one transaction (``Bridge.announce``).
Enqueue = SlackOutbox | OutboxBatch

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


@dataclass(frozen=True)
class SendSettings:
    """Timings of durable sending (from ``Config``; small in tests)."""

    reconcile_first_check: float = 2.0   # seconds after an unknown outcome before the first look in the logs
    reconcile_grace: float = 60.0        # absent from the logs this long after the POST → it was never created
    stuck_after: float = 900.0           # accepted without a final receipt this long → ask the logs
    sweep_interval: float = 2.0          # how often the sweeper looks for due work
    stale_submitting: float = 120.0      # unused: a POST is "in flight" exactly while its message's lease lives
    message_lease: float = MESSAGE_LEASE  # seconds a replica's claim on a message lasts unless renewed


class _AsTransient(SlackPortError):
    """Looking for an earlier post failed: whether it exists is unknown, so leave the post to the outbox."""

    transient = True


class CallbackRefused(Exception):
    """A status callback that must change nothing; ``status`` is the HTTP answer (401/403/404)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class CallbackTokens:
    """Per-message tokens so a status callback authenticates itself even without a SignalWire signing key."""

    def __init__(self, secret: bytes, public_url: str) -> None:
        self._secret = secret
        self._public_url = public_url.rstrip("/")

    def token(self, ref: str) -> str:
        return hmac.new(self._secret, ref.encode(), hashlib.sha256).hexdigest()[:32]

    def url(self, ref: str) -> str:
        return f"{self._public_url}{STATUS_PATH}?{urlencode({'ref': ref, 't': self.token(ref)})}"

    def valid(self, ref: str, token: str) -> bool:
        """Constant-time check. Any string is an answer, never an error: ours are ASCII hex, and
        ``compare_digest`` raises TypeError on non-ASCII text (``t=é``), so anything else is simply wrong."""
        if not (ref.isascii() and token.isascii()):
            return False
        return hmac.compare_digest(self.token(ref), token)


class Bridge:
    """Everything between a validated request and the Slack thread. One instance per process."""

    def __init__(
        self,
        *,
        store: Store,
        signalwire: SignalWireSender,
        slack: SlackPort,
        tokens: CallbackTokens,
        simulated: bool = False,
        settings: SendSettings = SendSettings(),
        outbox_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        # This replica's name in every lease it takes (messages here, items in the outbox).
        self.owner = new_owner_id()
        self.claims = MessageClaims(store, self.owner, lease=settings.message_lease)
        # Everything the bridge tells Slack after the first post goes through the durable outbox.
        options: dict[str, Any] = {"owner": self.owner, **(outbox_options or {})}
        self.outbox = SlackOutbox(store, slack, render_parent=self.render_parent,
                                  on_parent_posted=self.parent_posted, **options)
        self.store = store
        self.signalwire = signalwire
        self.slack = slack
        self.tokens = tokens
        self.simulated = simulated
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- background work -------------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run work after the HTTP answer (Slack wants its ack in 3 s); ``drain`` waits for all of it."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or isinstance(task.exception(), CallbackRefused | None):
            return  # a refused callback was answered by its route; nothing failed
        log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def drain(self, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while self._tasks:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            await asyncio.wait(set(self._tasks), timeout=remaining)

    async def idle(self) -> bool:
        """No background task running and nothing waiting in the Slack outbox."""
        return not self._tasks and await self.outbox.pending() == 0

    def lock(self, key: str) -> asyncio.Lock:
        """A process-wide lock by name (one message, or one conversation in ``bridge.two_way``). An optimisation
        within this process only: across replicas, leases (``claims.hold``) and the store's constraints decide."""
        return self.claims.lock(key)

    async def opt_out_refusal(self, from_: str, to: str) -> str | None:
        """Why texting ``to`` from ``from_`` is not allowed (they opted out), or None. Every send path asks this."""
        opt_out = await self.store.get_opt_out(from_, to)
        if opt_out is None:
            return None
        return opted_out_refusal(to, from_, opt_out.opted_out_at, opt_out.keyword)

    # -- sending ---------------------------------------------------------------------------------------------

    async def accept(self, request: SendRequest, *, timeout: float = ACCEPT_TIMEOUT) -> OutboundSms | str:
        """Check opt-out and record the intent to send, before Slack is answered: what is acknowledged is never lost.

        Returns the stored message, or a refusal to show the user (opted out, or the database did not answer
        within ``timeout`` — then nothing was sent and nothing ever will be for this request). The whole check is
        bounded: Slack's 3 s for the ack must never run out while a locked database is waited on.
        """
        return await self._record_bounded(
            self._accept_now(request), timeout=timeout, refusal=NOT_RECORDED, what=f"send (origin={request.origin})",
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
            self.spawn(self._undo_late(task, undo), name="abandon-intent")
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

    async def _accept_now(self, request: SendRequest) -> OutboundSms | str:
        refusal = await self.opt_out_refusal(request.from_, request.to)
        if refusal is not None:
            log.info("send refused: %s opted out of %s (origin=%s)", mask_number(request.to),
                     mask_number(request.from_), request.origin)
            return refusal
        return await self._store_intent(request)

    async def _store_intent(self, request: SendRequest) -> OutboundSms:
        ref = new_ref()
        if request.source_ts is not None and request.retry_of is None:
            # A thread reply: its Slack message is the claim, stored with the intent (Slack's retries of the event
            # find this one instead of making another).
            sms, created = await self.store.create_reply_intent(ref, request, utcnow())
            if not created:
                log.info("thread reply %s already stored as ref=%s", request.source_ts, sms.ref)
                return sms
        else:
            sms = await self.store.create_outbound(ref, request, utcnow())
            if request.source_ts is not None:
                await self.store.set_reply_source(ref, request.source_ts)
        log.info(
            "send requested ref=%s user=%s channel=%s to=%s from=%s origin=%s",
            ref, request.user_id, request.channel_id, mask_number(request.to), mask_number(request.from_),
            request.origin,
        )
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

    async def process(self, ref: str, notify: Notify | None = None) -> OutboundSms | None:
        """Post the parent (if new) and hand a pending message to SignalWire. Idempotent: only ``pending`` moves,
        and only under the message's lease: if another replica holds it, that one is on it (the stored message is
        returned as it is)."""
        async with self.claims.hold(ref) as held:
            sms = await self.store.get_outbound(ref)
            if not held:
                log.info("ref=%s is being worked on by another replica; leaving it", ref)
                return sms
            if sms is None or sms.state is not SendState.PENDING:
                return sms
            if sms.parent_ts is None and sms.attempts == 0:
                try:
                    ts = await self._post_parent_once(sms)
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
                await self.reply(sms, f"🔁 Retry by <@{sms.user_id}>: sending again…")
            if sms.parent_ts is not None:
                # Their answer comes back into this thread (bridge.two_way routes inbound texts by conversation).
                await self.store.set_conversation(sms.from_, sms.to, sms.channel_id, sms.parent_ts, utcnow())
            return await self.post_to_signalwire(sms)

    async def post_to_signalwire(self, sms: OutboundSms) -> OutboundSms:
        """One POST, under the message's lease (``claims.hold``, held by the caller). Every outcome is stored before
        anything else happens."""
        sms = await self.store.mark_submitting(sms.ref, utcnow())
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
            sms = await self.store.mark_pending(sms.ref, utcnow() + timedelta(seconds=wait), utcnow())
            await self.store.count("rate_limited")
            log.warning("send rate limited ref=%s: retrying in %.1f s", sms.ref, wait)
            if wait >= LONG_WAIT_NOTICE:
                await self.reply(sms, f"⏳ SignalWire asked us to slow down: queued, sending in about {wait:.0f} s.")
            return sms
        except NotSent as exc:
            code, text = _error_parts(exc)
            rejected = sms
            sms = await self._stored(lambda: self.store.mark_rejected(rejected.ref, code, text, utcnow()))
            await self.store.count("rejected")
            log.warning("send rejected ref=%s: %s", sms.ref, exc)
            await self.audit_outcome(sms, "rejected")
            await self._note_opt_out(sms)
            await self.react_outcome(sms, failed=True)
            await self.refresh_parent(sms)
            await self.reply_failure(sms, render.rejected_headline())
            return sms
        except OutcomeUnknown as exc:
            sms = await self.store.get_outbound(sms.ref) or sms
            if sms.sw_id is not None:
                # A callback already proved SignalWire has it: the lost answer changes nothing.
                await self.store.count("reconciled_by_callback")
                return await self.adopt(sms, sms.sw_id, sms.segments or 1, sms.status or MessageStatus.QUEUED,
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
        return await self._stored(lambda: self.adopt(accepted, message.id, message.number_of_segments,
                                                     message.status, message.error_code, message.error_message,
                                                     message.created_at))

    async def tell_checking(self, sms: OutboundSms, cause: str) -> None:
        """An unknown outcome, told at once: ``cause`` (one clause), that the logs are being checked, and when the
        message is sent once more if they show nothing. The parent stops saying "Sending…"."""
        resend_at = (sms.submitted_at or utcnow()) + timedelta(seconds=self.settings.reconcile_grace)
        await self.refresh_parent(sms)
        await self.reply(sms, render.checking_notice(
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

    async def adopt(self, sms: OutboundSms, sw_id: str, segments: int, status: MessageStatus,
                    error_code: str | None, error_message: str | None, at: datetime | None,
                    *, found_via: str = "callback") -> OutboundSms:
        """SignalWire has this message under ``sw_id`` (a 201, a reconciled log record, or an early callback).

        An *unknown* message being adopted was announced as "checking": the thread hears what settled it
        (``found_via``: "logs" or "callback") before its receipts."""
        was_unknown = sms.state is SendState.UNKNOWN
        sms = await self.store.mark_accepted(sms.ref, sw_id, segments, utcnow())
        if was_unknown:
            await self.reply(sms, render.found_text(found_via, status))
        await self.store.count("accepted")
        log.info("send accepted ref=%s sw_id=%s segments=%d", sms.ref, sw_id, segments)
        await self._react(sms, "x", add=False)
        await self._react(sms, "outbox_tray")
        change = await self.store.record_status(sms.ref, status, error_code, error_message, at, utcnow())
        # This status, and any an early callback recorded while the POST was in flight, are told now, in order.
        if not await self.announce_pending(sms.ref):
            await self.refresh_parent(change.sms)
        return change.sms

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
        original = await self.store.get_outbound(ref)
        if original is None:
            return "That message is not known to this bridge any more; send it again with /sms."
        if not render.can_retry(original):
            return "This message did not fail, so there is nothing to retry."
        refusal = await self.opt_out_refusal(original.from_, original.to)
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
            origin="reply" if original.origin == "reply" else "retry",
            retry_of=original.ref,
            thread_ts=original.parent_ts,
            source_ts=await self.store.reply_source(original.ref),
        )
        retry_ref = new_ref()
        if not await self.store.create_retry_intent(retry_ref, request, user_id, utcnow()):
            return ALREADY_RETRIED
        log.info("retry requested ref=%s of=%s user=%s", retry_ref, ref, user_id)
        sms = await self.store.get_outbound(retry_ref)
        assert sms is not None
        return sms

    # -- receipts --------------------------------------------------------------------------------------------

    async def apply_status(self, ref: str, token: str, event: StatusEvent) -> bool:
        """Authenticate and record a callback, and queue its Slack announcement; True when it moved the message on.

        Returns only once the receipt is durably queued in the outbox (or, while our POST is still in flight, left
        to the POST's owner, which announces it as soon as SignalWire's answer is stored): the route answers 204
        after this, and SignalWire never retries a 204. Raises ``CallbackRefused`` (and changes nothing) for unknown
        refs, bad tokens, and an ``id`` / ``to`` / ``from`` that is not this message's.
        """
        if not token or not self.tokens.valid(ref, token):
            raise CallbackRefused(403, "bad callback token")
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
            # status without the message's lock: the POST holds it. Its owner announces what was recorded once
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
        async with self.lock(ref):
            change = await self._record(ref, event)
            await self.announce_pending(ref)
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

    async def announce_pending(self, ref: str, notes: Mapping[MessageStatus, str] | None = None) -> int:
        """Announce every status that advanced ``ref`` and is not announced yet, oldest first; how many were.

        Safe from any replica at any time: the store queues a receipt only once and only after the ones before it,
        so this goes round until a pass announces nothing (a status another replica recorded while an earlier one
        was still untold is told here once that one is). ``notes``: a status's thread reply is this text instead.
        """
        told = 0
        while True:
            progress = 0
            for status in await self.store.unannounced(ref):
                sms = await self.store.get_outbound(ref)
                if sms is not None and await self.announce(sms, status, note=(notes or {}).get(status)):
                    progress += 1
            if progress == 0:
                return told
            told += progress

    async def announce(self, sms: OutboundSms, status: MessageStatus, *, note: str | None = None) -> bool:
        """Queue what Slack must show for ``status`` (receipt, parent repaint, reactions) in the transaction that
        marks it announced; False, with nothing queued, if it already was (or an earlier status is still untold)."""
        if status.is_failure:
            await self._note_opt_out(sms)
        if status.is_final:
            await self.audit_outcome(sms, status.value)
        batch = self.outbox.batch()
        if sms.origin == "reply":
            # A thread reply shows its outcome as reactions on itself; only a failure adds a note to the thread.
            if status is MessageStatus.DELIVERED or status.is_failure:
                await self.react_outcome(sms, failed=status.is_failure, out=batch)
                if status.is_failure:
                    await self.reply_failure(sms, render.delivery_failure_headline(sms), out=batch)
            if note is not None:
                await self.reply(sms, note, out=batch)
            return await self.outbox.add_announcement(sms.ref, status.value, batch)
        await self.refresh_parent(sms, out=batch)
        if status.is_failure:
            await self.reply_failure(sms, render.delivery_failure_headline(sms), out=batch)
        else:
            await self.reply(sms, note if note is not None else render.receipt_text(sms, status), out=batch)
        return await self.outbox.add_announcement(sms.ref, status.value, batch)

    async def audit_outcome(self, sms: OutboundSms, outcome: str) -> None:
        """The audit trail's row for this send learns how it ended (best effort: the thread is the record)."""
        text = f"{outcome} ({sms.error_code})" if sms.error_code else outcome
        try:
            await self.store.audit_outcome(sms.ref, text)
        except StoreUnavailable:
            log.warning("audit outcome not recorded ref=%s: %s", sms.ref, text)

    async def _note_opt_out(self, sms: OutboundSms) -> None:
        # SignalWire's 21610 means the carrier knows they said STOP: never try that number again.
        if sms.error_code == "21610":
            await self.store.set_opt_out(sms.from_, sms.to, "21610", utcnow())

    # ``out``: the outbox itself (each item committed at once) or a batch committed later in one transaction.

    async def _react(self, sms: OutboundSms, name: str, *, add: bool = True, out: Enqueue | None = None) -> None:
        source_ts = await self.store.reply_source(sms.ref) if sms.origin == "reply" else None
        if source_ts is not None:
            await (out or self.outbox).react(sms.channel_id, sms.channel_id, source_ts, name, add=add)

    async def react_outcome(self, sms: OutboundSms, *, failed: bool, out: Enqueue | None = None) -> None:
        await self._react(sms, "outbox_tray", add=False, out=out)
        await self._react(sms, "x" if failed else "white_check_mark", out=out)

    async def reply_failure(self, sms: OutboundSms, headline: str, *, out: Enqueue | None = None) -> None:
        await self.reply(sms, render.failure_text(sms, headline),
                         render.failure_blocks(sms, headline, simulated=self.simulated), out=out)

    async def refresh_parent(self, sms: OutboundSms, *, out: Enqueue | None = None) -> None:
        """Queue a repaint of the parent; it is rendered from the store when delivered, so bursts coalesce."""
        # A thread reply's parent is the conversation's (another message or an inbound text): never repaint it.
        if sms.origin == "reply":
            return
        await (out or self.outbox).update_parent(sms.ref, sms.channel_id)

    async def reply(self, sms: OutboundSms, text: str, blocks: list[dict[str, Any]] | None = None, *,
                    out: Enqueue | None = None) -> None:
        """Queue a thread reply; if the parent is itself still queued, the reply follows it into its thread."""
        await (out or self.outbox).post(sms.channel_id, sms.channel_id, text, blocks, thread_ts=sms.parent_ts,
                                        thread_of_ref=None if sms.parent_ts else sms.ref)

    # -- the outbox's view of a parent -----------------------------------------------------------------------

    async def render_parent(self, ref: str) -> ParentView | None:
        sms = await self.store.get_outbound(ref)
        if sms is None or sms.origin == "reply":
            return None
        return ParentView(sms.channel_id, sms.parent_ts, render.parent_text(sms),
                          render.parent_blocks(sms, simulated=self.simulated))

    async def parent_posted(self, ref: str, ts: str) -> None:
        sms = await self.store.set_parent(ref, ts, utcnow())
        await self.store.set_conversation(sms.from_, sms.to, sms.channel_id, ts, utcnow())


def _same_number(a: str, b: str) -> bool:
    """Whether a callback's ``to`` / ``from`` names the number we stored (formatting aside, e.g. a missing +)."""
    digits_a, digits_b = "".join(c for c in a if c.isdigit()), "".join(c for c in b if c.isdigit())
    return bool(digits_a) and digits_a == digits_b


def _error_parts(exc: SignalWireError) -> tuple[str | None, str]:
    """(code, SignalWire's own words) for the thread."""
    if isinstance(exc, ValidationFailed) and exc.errors:
        first = exc.errors[0]
        return first.code or "422", "; ".join(e.message for e in exc.errors)
    status = getattr(exc, "status", None)
    detail = getattr(exc, "detail", None) or str(exc)
    return (str(status) if status else None), detail
