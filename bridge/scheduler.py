"""Scheduled sends (issue 12), the moving part: storing one before Slack is answered, the loop that sends what is
due, Cancel, and the list of a user's pending sends.

Owns: ``Scheduler`` — ``schedule`` (bounded like ``Sending.accept``: an acknowledged schedule is stored, a late
insert is cancelled), ``post_parent`` (queued in the durable outbox at once; it shows the due time and Cancel),
``tick`` (every due row is decided by a conditional update in the store — ``finish_scheduled`` — so one replica
acts on it: missed if more than ``grace`` late, refused if the sender lost access or the number opted out / was
blocked, else released to the usual ``Bridge.process`` pipeline, which posts no second parent and receipts go to the
same thread), ``cancel`` (the scheduler or an admin; after the send: "already sent"), ``pending_of``, and
``parent_failed`` (for the outbox's ``on_parent_failed``: a send whose parent Slack refused for good is refused at
once, never sent without its thread, and its scheduler is told by DM). The Scheduler wires nothing itself: whoever
assembles the bridge (``handlers.server``) installs ``parent_failed`` on the outbox.
Admins: ``SMS_ADMIN_USERS`` (``bridge.config``) may cancel anyone's scheduled send.
Must not import: aiohttp, Slack packages, ``handlers``, storage adapters (the store is the ``Store`` port).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from bridge import render, schedule
from bridge.access import AccessPolicy
from bridge.model import OutboundSms, ScheduledSend, ScheduleOutcome, SendRequest, new_ref
from bridge.ports import SlackPortError, utcnow
from bridge.sending import ACCEPT_TIMEOUT, NOT_RECORDED
from bridge.service import Bridge
from bridge.storage.port import StoreUnavailable
from sw_api.text import format_number, mask_number

log = logging.getLogger("bridge.scheduler")

TICK_SECONDS = 1.0   # how often the due loop looks (a due send goes out within 10 s of its time)
STOP_SECONDS = 5.0

NOT_YOURS = "Only the person who scheduled this message, or an sms-bridge admin, can cancel it."
UNKNOWN = "That scheduled message is not known to this bridge any more."


class Scheduler:
    def __init__(self, bridge: Bridge, policy: AccessPolicy, *, grace_minutes: int = 60,
                 admins: frozenset[str] = frozenset(), tick: float = TICK_SECONDS) -> None:
        self.bridge = bridge
        self.store = bridge.store
        self.policy = policy
        self.grace = timedelta(minutes=grace_minutes)
        self.grace_minutes = grace_minutes
        self.admins = admins
        self.interval = tick
        self._task: asyncio.Task[None] | None = None

    # -- scheduling (before the ack) ---------------------------------------------------------------------------

    async def schedule(self, request: SendRequest, due_at: datetime, tz: str, *,
                       timeout: float = ACCEPT_TIMEOUT) -> OutboundSms | str:
        """Store the scheduled send (opt-out and block list checked in the same transaction) before Slack is
        answered; returns it, or what to tell the user. Bounded: a database that does not answer in ``timeout`` means
        the user is told nothing was scheduled, and an insert that commits later is cancelled."""
        ref = new_ref()
        store = self.bridge.ack_store
        task = asyncio.ensure_future(store.create_scheduled(ref, request, due_at, tz, utcnow()))
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            self.bridge.spawn(self._undo_late(task), name="abandon-schedule")
            return NOT_RECORDED
        try:
            sms = task.result()
        except StoreUnavailable:
            log.exception("scheduled send not recorded")
            return NOT_RECORDED
        if sms is None:
            refusal = await self.bridge.opt_out_refusal(request.from_, request.to, store=store)
            return refusal or "⛔ That number cannot be texted right now. Nothing was scheduled."
        log.info("send scheduled ref=%s user=%s to=%s due=%s", ref, request.user_id, mask_number(request.to),
                 due_at.isoformat())
        return sms

    async def _undo_late(self, task: asyncio.Future[OutboundSms | None]) -> None:
        try:
            sms = await task
        except StoreUnavailable:
            return
        if sms is not None:
            await self.store.finish_scheduled(sms.ref, ScheduleOutcome.CANCELLED, None,
                                              "not acknowledged in time; the user was told nothing was scheduled",
                                              utcnow())

    async def post_parent(self, sms: OutboundSms) -> None:
        """Queue the parent (due time, Cancel) in the durable outbox; its receipts later follow into its thread."""
        await self.bridge.outbox.post_parent(sms.ref, sms.channel_id)

    # -- the due loop ------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="scheduled-sends")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            _, stuck = await asyncio.wait({self._task}, timeout=STOP_SECONDS)
            if stuck:
                log.error("scheduled-send loop did not stop within %.1fs; abandoned", STOP_SECONDS)
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except StoreUnavailable:
                log.warning("scheduled sends: store unavailable; trying again shortly")
            except Exception:
                log.exception("scheduled sends: round failed")
            await asyncio.sleep(self.interval)

    async def tick(self, now: datetime | None = None) -> int:
        """Decide every due scheduled send once; returns how many this replica decided."""
        decided = 0
        for item in await self.store.due_scheduled(now or utcnow()):
            if await self._decide(item, now or utcnow()):
                decided += 1
        return decided

    async def _decide(self, item: ScheduledSend, now: datetime) -> bool:
        sms = item.sms
        if now - item.due_at > self.grace:
            reason = schedule.missed_text(item, self.grace_minutes)
            return await self._finish(item, ScheduleOutcome.MISSED, None, reason)
        refusal = self.policy.identity_refusal(sms.user_id, sms.channel_id)
        why = refusal.message if refusal is not None else await self.bridge.opt_out_refusal(sms.from_, sms.to)
        if why is not None:
            return await self._finish(item, ScheduleOutcome.REFUSED, None, schedule.refused_text(why))
        if not await self.store.finish_scheduled(sms.ref, ScheduleOutcome.RELEASED, None, "", utcnow()):
            return False  # another replica (or a Cancel) got there first
        log.info("scheduled send due ref=%s (%.1f s after its time)", sms.ref, (now - item.due_at).total_seconds())
        released = await self.store.get_outbound(sms.ref) or sms
        await self.bridge.refresh_parent(released)  # the Cancel button goes; the usual parent takes over
        self.bridge.spawn(self.bridge.process(sms.ref), name="send-scheduled")
        return True

    async def parent_failed(self, ref: str, error: str) -> None:
        """Slack refused a parent for good (the outbox gave up): a scheduled send still waiting is refused now, so it
        never goes out without its thread, and its scheduler is told in a direct message (the channel refused)."""
        item = await self.store.get_scheduled(ref)
        if item is None or item.state is not ScheduleOutcome.SCHEDULED:
            return
        sms = item.sms
        reason = render.parent_refusal(sms.channel_id, error)
        if not await self.store.finish_scheduled(ref, ScheduleOutcome.REFUSED, None, f"Not sent: I {reason}.",
                                                 utcnow()):
            return
        log.warning("scheduled send refused ref=%s: its parent could not be posted: %s", ref, error)
        try:
            await self.bridge.slack.direct(sms.user_id, f"⛔ Your scheduled message to {format_number(sms.to)} will "
                                                        f"not be sent: I {reason}. Schedule it again in a channel "
                                                        "the bot can post in.")
        except SlackPortError:
            log.warning("could not tell %s that scheduled send ref=%s was refused", sms.user_id, ref)

    async def _finish(self, item: ScheduledSend, outcome: ScheduleOutcome, by: str | None, text: str) -> bool:
        """Leave ``scheduled`` as ``outcome``; only the winner tells the thread (and repaints the parent)."""
        if not await self.store.finish_scheduled(item.sms.ref, outcome, by, text, utcnow()):
            return False
        log.info("scheduled send ref=%s %s", item.sms.ref, outcome.value)
        sms = await self.store.get_outbound(item.sms.ref) or item.sms
        await self.bridge.refresh_parent(sms)
        await self.bridge.reply(sms, text)
        return True

    # -- Cancel and the list -----------------------------------------------------------------------------------

    def may_cancel(self, item: ScheduledSend, user_id: str) -> bool:
        return user_id == item.sms.user_id or user_id in self.admins

    async def cancel(self, ref: str, user_id: str) -> str:
        """Cancel ``ref`` for ``user_id``; what to tell them privately."""
        item = await self.store.get_scheduled(ref)
        if item is None:
            return UNKNOWN
        if not self.may_cancel(item, user_id):
            return NOT_YOURS
        if await self._finish(item, ScheduleOutcome.CANCELLED, user_id, schedule.cancelled_text(user_id)):
            return "🚫 Cancelled: that scheduled message will not be sent."
        return after_the_fact((await self.store.get_scheduled(ref)) or item)

    async def pending_of(self, user_id: str) -> list[ScheduledSend]:
        return await self.store.scheduled_of_user(user_id, limit=schedule.MAX_LISTED + 1)


def after_the_fact(item: ScheduledSend) -> str:
    """What Cancel says once the scheduled send is decided already (no harm done)."""
    if item.state is ScheduleOutcome.RELEASED:
        return "It was already sent (at its scheduled time), so there was nothing to cancel; see its thread."
    if item.state is ScheduleOutcome.CANCELLED:
        who = f" by <@{item.finished_by}>" if item.finished_by else ""
        return f"It was already cancelled{who}."
    if item.state is ScheduleOutcome.MISSED:
        return "It was already marked missed (the bot was down at its time); nothing was sent."
    return "It was not sent at its time (see its thread); there is nothing to cancel."
