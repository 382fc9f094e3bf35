"""Scheduled sends on Slack (issue 12): ``/sms schedule``, ``/sms scheduled``, the Cancel button, and the time
zone of whoever schedules (``users.info`` → ``tz``, cached briefly).

Owns: action id ``sms_schedule_cancel`` (``bridge.schedule.CANCEL_ACTION``), ``UserZones``, ``ScheduleCommand``
(called by ``handlers.commands`` for the two sub-commands; validation is pure and everything is stored before the
ack, like a quick send) and ``CancelButton``. The compose modal's "Send at" (block ``send_at``) calls
``ScheduleCommand.schedule_request`` too.
Must not import: storage or SignalWire modules (scheduling goes through ``bridge.scheduler.Scheduler``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge import contacts as book
from bridge import schedule
from bridge.access import AccessGate
from bridge.compose import ComposeError, parse_slash_text, validate_send
from bridge.config import Config
from bridge.model import SCHEDULE_ORIGIN, AuditAction, OutboundSms, SendRequest
from bridge.people import People
from bridge.ports import utcnow
from bridge.scheduler import Scheduler
from bridge.service import Bridge
from handlers.notify import ephemeral_notifier

log = logging.getLogger("handlers.schedule")

ZONE_TTL = 300.0        # seconds a user's time zone is reused before asking Slack again
ZONE_TIMEOUT = 1.0      # users.info waits at most this long before the ack (then UTC, and the parent says "UTC")
SUBCOMMANDS = ("schedule", "scheduled")


class UserZones:
    """Each user's Slack time zone (``users.info`` → ``tz``), cached for ``ZONE_TTL``; "" when Slack cannot say."""

    def __init__(self, ttl: float = ZONE_TTL) -> None:
        self.ttl = ttl
        self._cache: dict[str, tuple[float, str]] = {}

    async def get(self, client: AsyncWebClient, user_id: str) -> str:
        hit = self._cache.get(user_id)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        try:
            async with asyncio.timeout(ZONE_TIMEOUT):
                answer = await client.users_info(user=user_id)
        except SlackApiError as exc:
            log.warning("time zone of %s unknown (%s); using UTC", user_id, exc.response.get("error"))
            return ""
        except TimeoutError:
            log.warning("time zone of %s unknown (users.info timed out); using UTC", user_id)
            return ""
        tz = str((answer.get("user") or {}).get("tz") or "")
        self._cache[user_id] = (time.monotonic(), tz)
        return tz


def _zone_name(tz: str) -> str:
    """The zone actually used: Slack's, or UTC if it gave none (or one this machine does not know)."""
    return schedule.zone(tz).key


class ScheduleCommand:
    def __init__(self, bridge: Bridge, config: Config, gate: AccessGate, scheduler: Scheduler,
                 zones: UserZones | None = None, people: People | None = None) -> None:
        self.bridge = bridge
        self.config = config
        self.gate = gate
        self.scheduler = scheduler
        self.zones = zones or UserZones()
        self.people = people  # -- issue 12: schedule by name (``/sms schedule 17:30 Dana Running late``)

    async def handle(self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond,
                     client: AsyncWebClient) -> None:
        text = str(command.get("text", "")).strip()
        word, _, rest = text.partition(" ")
        user_id = str(command.get("user_id", ""))
        if word.lower() == "scheduled":
            refusal = self.gate.policy.user_refusal(user_id)
            if refusal is not None:
                await ack(text=refusal.message)
                return
            await ack()
            self.bridge.spawn(self._list(user_id, client, respond), name="sms-scheduled")
            return
        await self._schedule_command(ack, command, rest.strip(), client)

    async def _list(self, user_id: str, client: AsyncWebClient, respond: AsyncRespond) -> None:
        items = await self.scheduler.pending_of(user_id)
        tz = schedule.zone(await self.zones.get(client, user_id))
        names = await self.bridge.names.names_of(i.sms.to for i in items)
        try:
            await respond(text=schedule.listing_text(items, tz, names),
                          blocks=schedule.scheduled_blocks(items, utcnow(), tz, names),
                          response_type="ephemeral", replace_original=False)
        except Exception:  # the response_url may have expired
            log.warning("could not answer /sms scheduled", exc_info=True)

    async def _schedule_command(self, ack: AsyncAck, command: dict[str, Any], rest: str,
                                client: AsyncWebClient) -> None:
        user_id = str(command.get("user_id", ""))
        channel_id = str(command.get("channel_id", ""))
        try:
            wanted = schedule.split_schedule(rest)
            recipient = await self._recipient(wanted.rest, user_id, channel_id)
            if isinstance(recipient, str):
                await ack(text=recipient)
                return
            number, body = recipient
            request = validate_send(
                to=number, body=body, from_=None, from_numbers=self.config.from_numbers,
                default_region=self.config.default_region, user_id=user_id, channel_id=channel_id,
                team_id=str(command.get("team_id", "")), origin=SCHEDULE_ORIGIN,
            )
            tz = _zone_name(await self.zones.get(client, user_id))
            now = utcnow()
            when = schedule.parse_when(wanted.when, now, schedule.zone(tz))
            problem = schedule.check_due(when.due, now, schedule.zone(tz))
            if problem is not None:
                raise schedule.ScheduleError(problem)
        except (ComposeError, schedule.ScheduleError) as exc:
            await ack(text=f"⚠️ {exc.message}\nNothing was scheduled. Type `/sms help` for examples.")
            return
        accepted = await self.schedule_request(request, when.due, tz)
        if isinstance(accepted, str):
            await ack(text=accepted)
            return
        tomorrow = " (tomorrow: that time had passed today)" if when.next_day else ""
        await ack(text=f"⏰ Scheduled for {schedule.describe(when.due, schedule.zone(tz))} "
                       f"({'UTC' if tz == 'UTC' else 'your time'}){tomorrow}. Cancel it from its message, or see "
                       "`/sms scheduled`.")

    async def _recipient(self, text: str, user_id: str, channel_id: str) -> tuple[str, str] | str:
        """(number, body) after the time: a number, or — issue 12: schedule by name — a contact's name resolved as
        ``/sms Dana …`` resolves it; a ``str`` is what to tell the user (nothing is scheduled)."""
        try:
            parsed = parse_slash_text(text, self.config.default_region)
        except ComposeError as exc:
            if self.people is None or exc.field != "to" or not book.starts_with_name(text):
                raise
            # Who may not text learns nothing of the address book (no suggestions, no candidates).
            refusal = self.gate.policy.identity_refusal(user_id, channel_id)
            if refusal is not None:
                return refusal.message
            found = await self.people.find(text, outcome="Nothing was scheduled.")
            if found.error is not None:
                return found.error
            if found.contact is None:
                return "⚠️ " + book.ambiguous_text(
                    found.spoken, found.candidates, outcome="Nothing was scheduled: write the full name, "
                    'e.g. `/sms schedule 17:30 "Dana Smith" Running late`, or the number.')
            return found.contact.number, found.rest
        if parsed.kind != "send":
            raise schedule.ScheduleError(
                "After the time, give the number and the text: `/sms schedule 17:30 +1 555 123 4567 Running late`.")
        return parsed.number, parsed.text

    async def schedule_request(self, request: SendRequest, due: datetime, tz: str) -> OutboundSms | str:
        """Admit (access, rate limit, audit) and store a scheduled send, then queue its parent. Before the ack."""
        request = replace(request, origin=SCHEDULE_ORIGIN)
        admission = await self.gate.admit(user_id=request.user_id, channel_id=request.channel_id,
                                          action=AuditAction.SEND, to_number=request.to, from_number=request.from_)
        if admission.refusal is not None:
            return admission.refusal.message
        accepted = await self.scheduler.schedule(request, due, tz)
        self.bridge.spawn(self.gate.link(admission, None if isinstance(accepted, str) else accepted,
                                         None if isinstance(accepted, str) else "scheduled"), name="audit")
        if not isinstance(accepted, str):
            self.bridge.spawn(self.scheduler.post_parent(accepted), name="schedule-parent")
        return accepted

    async def zone_of(self, client: AsyncWebClient, user_id: str) -> str:
        return _zone_name(await self.zones.get(client, user_id))


class CancelButton:
    """``home``: republishes a user's App Home (``AppHome.request``) after a Cancel pressed there, so the list
    shows what is still pending (a Home has no channel to answer in)."""

    def __init__(self, bridge: Bridge, scheduler: Scheduler,
                 home: Callable[[str, AsyncWebClient], None] | None = None) -> None:
        self.bridge = bridge
        self.scheduler = scheduler
        self.home = home

    async def handle(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any],
                     client: AsyncWebClient) -> None:
        await ack()
        user_id = str((body.get("user") or {}).get("id", ""))
        channel_id = str((body.get("channel") or {}).get("id", ""))
        from_home = (body.get("view") or {}).get("type") == "home"
        self.bridge.spawn(self._cancel(str(action.get("value", "")), user_id, channel_id, client, from_home),
                          name="schedule-cancel")

    async def _cancel(self, ref: str, user_id: str, channel_id: str, client: AsyncWebClient,
                      from_home: bool = False) -> None:
        told = await self.scheduler.cancel(ref, user_id)
        if channel_id:
            await ephemeral_notifier(client, channel_id, user_id)(told)
        if from_home and self.home is not None and user_id:
            self.home(user_id, client)


def register(app: AsyncApp, button: CancelButton) -> None:
    app.action(schedule.CANCEL_ACTION)(button.handle)
