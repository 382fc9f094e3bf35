"""Finishing what a send left open: resume after a crash, reconcile unknown outcomes, chase missing receipts.

Owns: the sweeper loop and its three jobs —
  * start-up: a message left ``submitting`` by a crash may or may not exist at SignalWire → ``unknown``;
  * ``pending`` messages whose time has come (429 back-off, or never started) are handed to ``Bridge.process``;
  * ``unknown`` messages are looked up in SignalWire's logs (there is no idempotency key, and the logs do not
    return ``custom_variables`` or bodies, so the match is from/to/created_at): found once → adopt its id;
    clearly absent after the grace period → send once more; ambiguous or still unknown → tell the thread;
  * accepted messages without a final receipt after ``stuck_after`` are looked up once (``GET /logs/{id}``);
  * a recorded status whose receipt was never queued (killed in between) is announced (``announce_unannounced``).
  * thread replies stored as Slack delivered them but never finished (the process died after Slack was answered)
    are handed, once their claim has run out, to ``resume_reply`` (given by ``handlers.server``: resolving names
    needs Slack), which claims each with a conditional update, so two processes never both resume one.
  * retention: at most once an hour, inbound claims, Slack event ids, finished thread replies and status-callback
    rows older than ``RETENTION_DAYS`` and audit rows older than ``AUDIT_RETENTION_DAYS`` are deleted,
    ``PRUNE_BATCH`` rows per statement and a few statements per round (a backlog continues next round), so no
    delete holds the lock long.
Everything is driven by the store (state + ``next_attempt_at``), so a restart simply picks up where it was.
Several replicas may run this sweeper on one database: a message is sent, reconciled and checked only under its
lease (``Bridge.claims.hold``; a POST is in flight exactly while its lease lives, so a ``submitting`` message
without one was left by a process that died or gave up), receipts are queued in order by the store's rule
(``announce_status``), and replies are resumed through ``claim_reply`` (a conditional update).
Must not import: aiohttp's server side, Slack packages, ``handlers``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge import render
from bridge.model import OutboundSms, SendState, SlackReply
from bridge.ports import SignalWireSender, utcnow
from bridge.service import MAX_POSTS, Bridge
from bridge.storage.port import StoreUnavailable
from sw_api.errors import SignalWireError
from sw_api.models import LogRecord, MessageStatus
from sw_api.text import mask_number

log = logging.getLogger("bridge.recovery")

LOOKUP_RETRY = timedelta(seconds=15)   # when the logs API itself fails
MAX_LOOKUPS = 20                       # then give up and let the user decide
WINDOW_BEFORE = timedelta(minutes=2)   # clock skew between us and SignalWire
WINDOW_AFTER = timedelta(minutes=10)
STOP_SECONDS = 5.0                     # how long stop() waits for the cancelled sweeper
FRESH_PENDING = timedelta(seconds=10)   # younger pending messages belong to the request that accepted them
PRUNE_EVERY = timedelta(hours=1)       # retention runs at most this often (sooner while a backlog remains)
PRUNE_BATCH = 500                      # rows per DELETE: each statement holds SQLite's write lock only briefly
PRUNE_STATEMENTS = 4                   # DELETEs per table per sweep round


@dataclass(frozen=True)
class Retention:
    """How long rows are kept (``RETENTION_DAYS`` / ``AUDIT_RETENTION_DAYS``); 0 keeps them forever."""

    days: int = 90
    audit_days: int = 365


class Recovery:
    def __init__(self, bridge: Bridge, signalwire: SignalWireSender, retention: Retention | None = None, *,
                 resume_reply: Callable[[SlackReply], Awaitable[None]] | None = None) -> None:
        self.bridge = bridge
        self.resume_reply = resume_reply
        self._resuming: set[tuple[str, str]] = set()
        self.store = bridge.store
        self.signalwire = signalwire
        self.settings = bridge.settings
        self.retention = retention or Retention()
        self._task: asyncio.Task[None] | None = None
        self._lookups: dict[str, int] = {}
        self._next_prune: datetime | None = None  # None: at the first round

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def resume(self) -> None:
        """Once at start-up, before serving: ``submitting`` messages nobody holds a lease on were cut off (this
        process's predecessor, or a replica that died) — their outcome is unknown; tell their threads so."""
        await self._orphaned_submitting(utcnow())

    async def _orphaned_submitting(self, now: datetime) -> None:
        # ``due`` skips live leases: a POST still in flight anywhere keeps its message's lease renewed. (A submitting
        # message has no next_attempt_at, so ``now`` finds them all.)
        for sms in await self.store.due([SendState.SUBMITTING], now):
            async with self.bridge.claims.hold(sms.ref) as held:
                current = await self.store.get_outbound(sms.ref) if held else None
                if current is None or current.state is not SendState.SUBMITTING:
                    continue
                log.warning("send ref=%s was cut off while SignalWire was being called: outcome unknown, checking "
                            "the logs", sms.ref)
                unknown = await self.store.mark_unknown(
                    sms.ref, "the bridge stopped while SignalWire was being called", now)
                await self.store.schedule(sms.ref, None, now)
                await self.store.count("interrupted")
                # Tell the thread now, as a live unknown outcome does; the reconcile says what it found.
                await self.bridge.tell_checking(unknown, render.INTERRUPTED_CAUSE)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="recovery-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # Bounded: a sweep that swallows its cancellation is abandoned rather than waited on forever.
            _, stuck = await asyncio.wait({self._task}, timeout=STOP_SECONDS)
            if stuck:
                log.error("sweeper did not stop within %.1fs; abandoned", STOP_SECONDS)
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except StoreUnavailable:
                log.warning("sweeper: store unavailable; trying again shortly")
            except Exception:
                log.exception("sweeper round failed")
            try:
                await self.prune_if_due()
            except StoreUnavailable:
                log.warning("retention: store unavailable; trying again next round")
            except Exception:
                log.exception("retention round failed")
            await asyncio.sleep(self.settings.sweep_interval)

    # -- retention -------------------------------------------------------------------------------------------

    async def prune_if_due(self) -> None:
        now = utcnow()
        if self._next_prune is not None and now < self._next_prune:
            return
        backlog = await self.prune(now)
        self._next_prune = now if backlog else now + PRUNE_EVERY

    async def prune(self, now: datetime, statements: int = PRUNE_STATEMENTS) -> bool:
        """One bounded round of retention; True if some table still has rows past their time (call again)."""
        jobs: list[tuple[str, Callable[[datetime, int], Awaitable[int]], datetime]] = []
        if self.retention.days:
            cutoff = now - timedelta(days=self.retention.days)
            jobs += [("inbound", self.store.prune_inbound, cutoff),
                     ("slack_event", self.store.prune_slack_events, cutoff),
                     ("slack_reply", self.store.prune_replies, cutoff),
                     ("status_event", self.store.prune_status_events, cutoff)]
        if self.retention.audit_days:
            jobs.append(("audit", self.store.audit_prune, now - timedelta(days=self.retention.audit_days)))
        # -- issue 11: outbound MMS. Pictures carry their own expiry (MEDIA_RETENTION_DAYS when published).
        jobs.append(("media", self.store.prune_media, now))
        backlog = False
        for table, prune, cutoff in jobs:
            deleted = 0
            for _ in range(statements):
                count = await prune(cutoff, PRUNE_BATCH)
                deleted += count
                if count < PRUNE_BATCH:
                    break
            else:
                backlog = True
            if deleted:
                log.info("retention: deleted %d %s rows from before %s", deleted, table, cutoff.date().isoformat())
        return backlog

    # -- one round -------------------------------------------------------------------------------------------

    async def sweep(self) -> None:
        now = utcnow()
        await self._orphaned_submitting(now)
        fresh = now - FRESH_PENDING
        for sms in await self.store.due([SendState.PENDING], now):
            # A just-accepted message is being processed by its own request (or abandoned if its ack was too
            # slow); the sweeper is for back-offs and for what a crash left behind.
            if sms.next_attempt_at is None and sms.created_at > fresh:
                continue
            await self.bridge.process(sms.ref)
        for sms in await self.store.due([SendState.UNKNOWN], now):
            await self.reconcile(sms.ref)
        cutoff = now - timedelta(seconds=self.settings.stuck_after)
        for sms in await self.store.unfinished(cutoff):
            await self.check_receipt(sms)
        await self.announce_unannounced()
        await self.resume_replies(now)

    async def resume_replies(self, now: datetime) -> None:
        """Replies received but unfinished, their claim run out: each resumed in the background (names may take a
        while to resolve), at most once at a time in this process; the claim itself is ``resume_reply``'s."""
        if self.resume_reply is None:
            return
        for reply in await self.store.replies_to_resume(now):
            key = (reply.channel_id, reply.ts)
            if key in self._resuming:
                continue
            self._resuming.add(key)
            self.bridge.spawn(self._resume_one(key, self.resume_reply(reply)), name="resume-reply")

    async def _resume_one(self, key: tuple[str, str], work: Awaitable[None]) -> None:
        try:
            await work
        finally:
            self._resuming.discard(key)

    async def reconcile(self, ref: str) -> None:
        async with self.bridge.claims.hold(ref) as held:
            sms = await self.store.get_outbound(ref) if held else None
            if sms is None or sms.state is not SendState.UNKNOWN:
                return  # another replica holds it, or it was settled meanwhile
            if sms.sw_id is not None:
                # An early callback named it before the crash or the lost answer: no search needed.
                await self.store.count("reconciled_by_callback")
                await self.bridge.adopt(sms, sms.sw_id, sms.segments or 1, sms.status or MessageStatus.QUEUED,
                                        sms.error_code, sms.error_message, None)
                return
            try:
                candidates = await self._candidates(sms)
            except SignalWireError as exc:
                await self._lookup_failed(sms, exc)
                return
            submitted = sms.submitted_at or sms.created_at
            if len(candidates) == 1:
                record = candidates[0]
                log.info("reconciled ref=%s: SignalWire has it as %s (%s)", ref, record.id, record.status)
                await self.store.count("reconciled_found")
                await self.bridge.adopt(sms, record.id, record.number_of_segments or 1, record.status,
                                        record.error_code, record.error_message, record.created_at,
                                        found_via="logs")
            elif len(candidates) > 1:
                log.warning("reconcile ref=%s: %d candidates to %s, cannot tell which", ref, len(candidates),
                            mask_number(sms.to))
                await self.store.count("reconciled_ambiguous")
                await self._give_up(sms, f"{len(candidates)} messages to this number around that time")
            elif utcnow() < submitted + timedelta(seconds=self.settings.reconcile_grace):
                # Absent so far, but logs may lag the create: look again when the grace period is over.
                await self.store.schedule(ref, submitted + timedelta(seconds=self.settings.reconcile_grace),
                                          utcnow())
            elif sms.attempts < MAX_POSTS:
                log.warning("reconcile ref=%s: not in SignalWire's logs after the grace period; sending once more",
                            ref)
                await self.store.count("reconciled_resent")
                await self.bridge.reply(sms, render.resend_text())
                await self.bridge.post_to_signalwire(sms)
            else:
                await self.store.count("reconciled_gave_up")
                await self._give_up(sms, "SignalWire's logs still do not show it after the re-send")

    async def _candidates(self, sms: OutboundSms) -> list[LogRecord]:
        """Outbound log records from our number to theirs, created around our POST, not already adopted."""
        submitted = sms.submitted_at or sms.created_at
        start, end = submitted - WINDOW_BEFORE, submitted + WINDOW_AFTER
        found: list[LogRecord] = []
        # The logs API filters by date only (no time, no to/from): ask for the day and filter here.
        async for record in self.signalwire.list_messages(created_after=start.date(), page_size=100, max_pages=10):
            if record.created_at < start:
                break  # newest first: everything after this is older still
            if (record.created_at <= end and record.direction == "outbound" and record.from_ == sms.from_
                    and record.to == sms.to):
                owner = await self.store.find_by_sw_id(record.id)
                if owner is None or owner.ref == sms.ref:
                    found.append(record)
        return found

    async def _lookup_failed(self, sms: OutboundSms, exc: SignalWireError) -> None:
        count = self._lookups[sms.ref] = self._lookups.get(sms.ref, 0) + 1
        log.warning("reconcile ref=%s: logs lookup failed (%s), attempt %d", sms.ref, exc, count)
        if count >= MAX_LOOKUPS:
            await self._give_up(sms, f"SignalWire's logs could not be read ({exc})")
        else:
            await self.store.schedule(sms.ref, utcnow() + LOOKUP_RETRY, utcnow())
            if count == 1:
                await self.bridge.reply(sms, render.lookup_failed_text(LOOKUP_RETRY.total_seconds()))

    async def _give_up(self, sms: OutboundSms, why: str) -> None:
        """Stop looking; the people decide. The Retry button is offered, with the warning that it may double."""
        await self.store.mark_checked(sms.ref, utcnow())
        sms = await self.store.get_outbound(sms.ref) or sms
        await self.bridge.audit_outcome(sms, "unknown")
        await self.bridge.react_outcome(sms, failed=True)
        await self.bridge.refresh_parent(sms)
        await self.bridge.reply_failure(sms, render.unknown_failure_headline(why))

    async def check_receipt(self, sms: OutboundSms) -> None:
        """No final receipt after ``stuck_after``: ask the logs once and tell the thread what they say. Under the
        message's lease, so of several replicas' sweepers one asks and one note is posted."""
        if sms.sw_id is None:
            return
        async with self.bridge.claims.hold(sms.ref) as held:
            current = await self.store.get_outbound(sms.ref) if held else None
            if current is None or current.checked_at is not None:
                return  # another replica is checking it, or has
            await self._check_receipt_held(current)

    async def _check_receipt_held(self, sms: OutboundSms) -> None:
        assert sms.sw_id is not None
        try:
            record = await self.signalwire.get_message(sms.sw_id)
        except SignalWireError as exc:
            log.warning("receipt lookup ref=%s failed: %s", sms.ref, exc)
            return
        # Recorded before it is marked checked: a crash in between leaves a status to announce (the sweeper does)
        # and a message to check again, never a message marked checked with nothing recorded (stuck for good).
        change = await self.store.record_status(sms.ref, record.status, record.error_code, record.error_message,
                                                record.created_at, utcnow())
        await self.store.mark_checked(sms.ref, utcnow())
        if change.advanced and record.status.is_final:
            await self.store.count("receipts_from_logs")
            await self.bridge.announce_pending(sms.ref)
            return
        minutes = self.settings.stuck_after / 60
        if sms.is_mms:
            text = "ℹ️ No delivery receipt is available for MMS; SignalWire's logs say: sent to the carrier."
        else:
            text = (f"ℹ️ No delivery receipt after {minutes:.0f} min; SignalWire's logs say "
                    f"“{record.status.value}”. Carriers do not always confirm delivery.")
        if change.advanced:
            # The logs moved it on (e.g. to sent): this note is that status's announcement, not an extra receipt.
            await self.bridge.announce_pending(sms.ref, notes={record.status: text})
        else:
            await self.bridge.reply(change.sms, text)

    async def announce_unannounced(self) -> None:
        """Receipts recorded but never queued (the process died in between, after or before answering SignalWire):
        queue them now, in order. The store queues each exactly once and in rank order (``announce_status``), so
        this never races a live callback, here or on another replica, into a double post; the lock only spares this
        process's coroutines a wasted try."""
        for ref in await self.store.refs_with_unannounced():
            async with self.bridge.lock(ref):
                told = await self.bridge.announce_pending(ref)
            if told:
                log.warning("ref=%s: %d recorded status(es) had no receipt queued (interrupted); queued now", ref, told)
                await self.store.count("receipts_recovered", told)
