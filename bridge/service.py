"""The send flow and the receipt flow: from a validated request to a Slack thread that tells the truth.

Owns: ordering (intent stored → parent posted → SignalWire called → outcome stored → thread told), the
per-message callback token, applying status callbacks exactly once and never backwards, Retry.
Must not import: aiohttp's server side, Slack packages (Slack is reached through the ``SlackPort`` protocol),
``handlers``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlencode

from bridge import render
from bridge.conversations import opted_out_refusal
from bridge.model import OutboundSms, SendRequest, new_ref
from bridge.store import Store
from sw_api.errors import NotSent, OutcomeUnknown, SignalWireError, ValidationFailed
from sw_api.models import Message, MessageStatus, StatusEvent
from sw_api.text import mask_number

log = logging.getLogger("bridge.service")

STATUS_PATH = "/signalwire/status"

Notify = Callable[[str], Awaitable[None]]


class SlackPortError(RuntimeError):
    """Slack refused or could not take a post; ``str()`` is Slack's error code (e.g. ``channel_not_found``)."""


class SlackPort(Protocol):
    """The few Slack Web API calls the bridge makes. Implemented over slack_sdk in ``handlers.slack_out``."""

    async def post(
        self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None, thread_ts: str | None = None
    ) -> str:
        """Post a message (or a thread reply) and return its ``ts``; raises ``SlackPortError``."""

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None: ...

    async def react(self, channel: str, ts: str, name: str, *, add: bool = True) -> None:
        """Add (or remove) the bot's reaction ``name`` (bare, e.g. ``white_check_mark``); raises ``SlackPortError``."""


class SignalWireSender(Protocol):
    async def send_message(
        self,
        to: str,
        from_: str,
        body: str | None = None,
        media: tuple[str, ...] = (),
        send_as_mms: bool = False,
        status_callback: str | None = None,
    ) -> Message: ...


class CallbackRefused(Exception):
    """A status callback that must change nothing; ``status`` is the HTTP answer (401/403/404)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def utcnow() -> datetime:
    return datetime.now(UTC)


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
    ) -> None:
        self.store = store
        self.signalwire = signalwire
        self.slack = slack
        self.tokens = tokens
        self.simulated = simulated
        self._tasks: set[asyncio.Task[Any]] = set()
        # Thread replies must appear in the order the statuses were accepted: one lock per message.
        self._locks: dict[str, asyncio.Lock] = {}

    # -- background work -------------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run work after the HTTP answer (Slack wants its ack in 3 s); ``drain`` waits for all of it."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def drain(self, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while self._tasks:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            await asyncio.wait(set(self._tasks), timeout=remaining)

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def _lock(self, ref: str) -> asyncio.Lock:
        return self._locks.setdefault(ref, asyncio.Lock())

    def lock(self, key: str) -> asyncio.Lock:
        """A process-wide lock by name (e.g. one conversation), shared with ``bridge.two_way``."""
        return self._lock(key)

    async def opt_out_refusal(self, from_: str, to: str) -> str | None:
        """Why texting ``to`` from ``from_`` is not allowed (they opted out), or None. Every send path asks this."""
        opt_out = await self.store.get_opt_out(from_, to)
        if opt_out is None:
            return None
        return opted_out_refusal(to, from_, opt_out.opted_out_at, opt_out.keyword)

    # -- sending ---------------------------------------------------------------------------------------------

    async def submit(self, request: SendRequest, notify: Notify | None = None) -> OutboundSms | None:
        """Store the intent, post the parent, send, report. Returns the stored message (None if never stored).

        A person who opted out of texts from ``request.from_`` is never texted: ``notify`` says so and nothing is
        stored or sent.
        """
        refusal = await self.opt_out_refusal(request.from_, request.to)
        if refusal is not None:
            log.info("send refused: %s opted out of %s (origin=%s)", mask_number(request.to),
                     mask_number(request.from_), request.origin)
            if notify is not None:
                await notify(refusal)
            return None
        ref = new_ref()
        sms = await self.store.create_outbound(ref, request, utcnow())
        if request.source_ts is not None:
            await self.store.set_reply_source(ref, request.source_ts)
        log.info(
            "send requested ref=%s user=%s channel=%s to=%s from=%s origin=%s",
            ref, request.user_id, request.channel_id, mask_number(request.to), mask_number(request.from_),
            request.origin,
        )
        async with self._lock(ref):
            if sms.parent_ts is None:
                try:
                    ts = await self.slack.post(
                        sms.channel_id, render.parent_text(sms), render.parent_blocks(sms, simulated=self.simulated)
                    )
                except SlackPortError as exc:
                    reason = f"could not post in <#{sms.channel_id}> ({exc}); invite the bot or pick another channel"
                    await self.store.mark_rejected(ref, None, reason, utcnow())
                    log.warning("send aborted ref=%s: parent post failed: %s", ref, exc)
                    if notify is not None:
                        await notify(f"⛔ Nothing was sent: I {reason}.")
                    return await self.store.get_outbound(ref)
                sms = await self.store.set_parent(ref, ts, utcnow())
            elif sms.origin != "reply":
                await self._reply(sms, f"🔁 Retry by <@{request.user_id}>: sending again…")
            assert sms.parent_ts is not None
            # Their answer comes back into this thread (bridge.two_way routes inbound texts by conversation).
            await self.store.set_conversation(sms.from_, sms.to, sms.channel_id, sms.parent_ts, utcnow())
            return await self._send(sms)

    async def _send(self, sms: OutboundSms) -> OutboundSms:
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
        except NotSent as exc:
            code, text = _error_parts(exc)
            sms = await self.store.mark_rejected(sms.ref, code, text, utcnow())
            log.warning("send rejected ref=%s: %s", sms.ref, exc)
            await self._note_opt_out(sms)
            await self._react_outcome(sms, failed=True)
            await self._refresh_parent(sms)
            await self._reply_failure(sms, render.rejected_headline())
            return sms
        except OutcomeUnknown as exc:
            sms = await self.store.mark_unknown(sms.ref, str(exc), utcnow())
            log.warning("send outcome unknown ref=%s: %s", sms.ref, exc)
            await self._react_outcome(sms, failed=True)
            await self._refresh_parent(sms)
            await self._reply_failure(sms, render.unknown_headline())
            return sms
        sms = await self.store.mark_accepted(sms.ref, message.id, message.number_of_segments, utcnow())
        log.info("send accepted ref=%s sw_id=%s segments=%d", sms.ref, message.id, message.number_of_segments)
        await self._react(sms, "x", add=False)
        await self._react(sms, "outbox_tray")
        change = await self.store.record_status(
            sms.ref, message.status, message.error_code, message.error_message, message.created_at, utcnow()
        )
        if change.advanced:
            await self._announce(change.sms, message.status)
        else:
            await self._refresh_parent(change.sms)
        return change.sms

    async def retry(self, ref: str, user_id: str, notify: Notify | None = None) -> OutboundSms | None:
        """Send a failed message again, into the same thread. A second click on the same Retry does nothing."""
        original = await self.store.get_outbound(ref)
        if original is None:
            if notify:
                await notify("That message is not known to this bridge any more; send it again with /sms.")
            return None
        if not render.can_retry(original):
            if notify:
                await notify("This message did not fail, so there is nothing to retry.")
            return None
        if not await self.store.claim_retry(ref, user_id, utcnow()):
            if notify:
                await notify("Someone already pressed Retry on this message; see the thread for the new attempt.")
            return None
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
        return await self.submit(request, notify)

    # -- receipts --------------------------------------------------------------------------------------------

    async def apply_status(self, ref: str, token: str, event: StatusEvent) -> bool:
        """Authenticate and record a callback; returns True when it moved the message forward.

        Raises ``CallbackRefused`` (and changes nothing) for unknown refs, bad tokens or a mismatched id.
        """
        if not token or not self.tokens.valid(ref, token):
            raise CallbackRefused(403, "bad callback token")
        sms = await self.store.get_outbound(ref)
        if sms is None:
            raise CallbackRefused(404, "unknown message reference")
        if sms.sw_id is not None and sms.sw_id != event.id:
            raise CallbackRefused(403, "callback id does not match the message")
        change = await self.store.record_status(
            ref, event.status, event.error_code, event.error_message, event.timestamp, utcnow()
        )
        log.info(
            "status ref=%s sw_id=%s status=%s new=%s advanced=%s", ref, event.id, event.status, change.new,
            change.advanced,
        )
        if change.advanced:
            self.spawn(self._announce_locked(change.sms, event), name=f"announce-{ref}")
        return change.advanced

    async def _announce_locked(self, sms: OutboundSms, event: StatusEvent) -> None:
        async with self._lock(sms.ref):
            # Re-read: the message may have moved on while we waited for the lock.
            latest = await self.store.get_outbound(sms.ref) or sms
            await self._announce(latest, event.status)

    async def _announce(self, sms: OutboundSms, status: Any) -> None:
        if status.is_failure:
            await self._note_opt_out(sms)
        if sms.origin == "reply":
            # A thread reply shows its outcome as reactions on itself; only a failure adds a note to the thread.
            if status is MessageStatus.DELIVERED or status.is_failure:
                await self._react_outcome(sms, failed=status.is_failure)
                if status.is_failure:
                    await self._reply_failure(sms, render.delivery_failure_headline(sms))
            return
        await self._refresh_parent(sms)
        if status.is_failure:
            await self._reply_failure(sms, render.delivery_failure_headline(sms))
        else:
            await self._reply(sms, render.receipt_text(sms, status))

    async def _note_opt_out(self, sms: OutboundSms) -> None:
        # SignalWire's 21610 means the carrier knows they said STOP: never try that number again.
        if sms.error_code == "21610":
            await self.store.set_opt_out(sms.from_, sms.to, "21610", utcnow())

    async def _react(self, sms: OutboundSms, name: str, *, add: bool = True) -> None:
        source_ts = await self.store.reply_source(sms.ref) if sms.origin == "reply" else None
        if source_ts is None:
            return
        try:
            await self.slack.react(sms.channel_id, source_ts, name, add=add)
        except SlackPortError as exc:
            log.info("reaction %s on ref=%s not changed: %s", name, sms.ref, exc)

    async def _react_outcome(self, sms: OutboundSms, *, failed: bool) -> None:
        await self._react(sms, "outbox_tray", add=False)
        await self._react(sms, "x" if failed else "white_check_mark")

    async def _reply_failure(self, sms: OutboundSms, headline: str) -> None:
        await self._reply(sms, render.failure_text(sms, headline),
                          render.failure_blocks(sms, headline, simulated=self.simulated))

    async def _refresh_parent(self, sms: OutboundSms) -> None:
        # A thread reply's parent is the conversation's (another message or an inbound text): never repaint it.
        if sms.parent_ts is None or sms.origin == "reply":
            return
        try:
            await self.slack.update(
                sms.channel_id, sms.parent_ts, render.parent_text(sms),
                render.parent_blocks(sms, simulated=self.simulated),
            )
        except SlackPortError as exc:
            log.warning("parent update failed ref=%s: %s", sms.ref, exc)

    async def _reply(self, sms: OutboundSms, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        if sms.parent_ts is None:
            return
        try:
            await self.slack.post(sms.channel_id, text, blocks, thread_ts=sms.parent_ts)
        except SlackPortError as exc:
            log.warning("thread reply failed ref=%s: %s", sms.ref, exc)


def _error_parts(exc: SignalWireError) -> tuple[str | None, str]:
    """(code, SignalWire's own words) for the thread."""
    if isinstance(exc, ValidationFailed) and exc.errors:
        first = exc.errors[0]
        return first.code or "422", "; ".join(e.message for e in exc.errors)
    status = getattr(exc, "status", None)
    detail = getattr(exc, "detail", None) or str(exc)
    return (str(status) if status else None), detail
