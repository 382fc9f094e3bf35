"""Issue 12 on the ``/sms`` command: ``/sms contact…`` / ``/sms contacts`` / ``/sms template…`` / ``/sms templates``,
sending by name (``/sms Dana Running late``, ``/sms "Dana Smith" #late minutes=10``), and the buttons offered when a
name fits several contacts.

Owns: action ids ``sms_pick_<n>`` (one button per candidate; the value carries the number and the text to send,
at most 1 + 16 + 1600 characters, inside Slack's 2000-character button value). A click is a new send by whoever
clicks: access, rate limit, opt-outs and blocks apply again, and the first click on one message is the only one
that sends (``claim_slack_event``, shared by every replica).
Must not import: storage or SignalWire modules (sending goes through ``bridge.service.Bridge``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond

from bridge import contacts as book
from bridge import templates as tpl
from bridge.access import AccessGate
from bridge.compose import ComposeError, validate_send
from bridge.config import Config
from bridge.model import AuditAction, Contact, SendRequest
from bridge.people import NOT_RECORDED, People
from bridge.ports import utcnow
from bridge.service import Bridge
from bridge.storage.port import StoreUnavailable
from handlers.notify import respond_notifier

log = logging.getLogger("handlers.people")

PICK_PREFIX = "sms_pick_"
PICK_ACTION = re.compile(rf"^{PICK_PREFIX}\d+$")
MAX_CANDIDATES = 10
NOT_SENT = "\nNothing was sent. Type `/sms help` for examples."

# Sends an admitted request: ``handlers.commands.SmsCommand.send`` (the ack, the audit link, the processing).
Send = Callable[[AsyncAck, SendRequest, AsyncRespond], Awaitable[None]]


def pick_value(number: str, body: str) -> str:
    return f"{number}\n{body}"


def pick_blocks(spoken: str, options: list[tuple[Contact, str]]) -> list[dict[str, Any]]:
    text = book.ambiguous_text(spoken, [c for c, _ in options])
    buttons = [{
        "type": "button", "action_id": f"{PICK_PREFIX}{i}",
        "text": {"type": "plain_text", "text": f"{c.name} ({c.number})"[:75]},
        "value": pick_value(c.number, body),
    } for i, (c, body) in enumerate(options)]
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "actions", "block_id": "sms_pick", "elements": buttons}]


class PeopleCommand:
    def __init__(self, bridge: Bridge, config: Config, gate: AccessGate, people: People) -> None:
        self.bridge = bridge
        self.config = config
        self.gate = gate
        self.people = people

    def _request(self, command: dict[str, Any], number: str, body: str) -> SendRequest:
        return validate_send(
            to=number, body=body, from_=None, from_numbers=self.config.from_numbers,
            default_region=self.config.default_region, user_id=str(command.get("user_id", "")),
            channel_id=str(command.get("channel_id", "")), team_id=str(command.get("team_id", "")),
            origin="command",
        )

    async def subcommand(self, ack: AsyncAck, word: str, rest: str, command: dict[str, Any],
                         respond: AsyncRespond) -> None:
        """``/sms contact…`` and ``/sms template…``: who may text may change them; every answer is private."""
        user_id, channel_id = str(command.get("user_id", "")), str(command.get("channel_id", ""))
        refusal = self.gate.policy.identity_refusal(user_id, channel_id)
        if refusal is not None:
            await ack(text=refusal.message)
            return
        try:
            if word in ("contact", "contacts"):
                contact = book.parse_contact_command(word, rest, self.config.default_region)
                work = self.people.contact_command(contact, user_id)
            else:
                template = tpl.parse_template_command(word, rest)
                work = self.people.template_command(template, user_id)
        except (book.ContactCommandError, tpl.TemplateError) as exc:
            await ack(text=f"⚠️ {exc.message}")
            return
        await ack()
        notify = respond_notifier(respond)

        async def answer() -> None:
            await notify(await work)

        self.bridge.spawn(answer(), name=f"sms-{word}")

    async def body_for(self, number: str, text: str) -> str:
        """``text``, or the template it names filled for ``number``; ``TemplateError`` / ``StoreUnavailable``."""
        return await self.people.body(number, text)

    async def send_by_name(self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond,
                           send: Send) -> None:
        text = book.clean_text(str(command.get("text", "")))
        # Who may not text learns nothing of the address book (no suggestions, no candidates).
        refusal = self.gate.policy.identity_refusal(str(command.get("user_id", "")),
                                                    str(command.get("channel_id", "")))
        if refusal is not None:
            await ack(text=refusal.message)
            return
        try:
            found = await self.people.find(text)
            if found.error is not None:
                await ack(text=found.error)
                return
            if found.contact is not None:
                body = await self.people.body(found.contact.number, found.rest)
                await send(ack, self._request(command, found.contact.number, body), respond)
                return
            options: list[tuple[Contact, str]] = []
            for candidate in found.candidates[:MAX_CANDIDATES]:
                body = await self.people.body(candidate.number, found.rest)
                self._request(command, candidate.number, body)  # refuse now what no click could send
                options.append((candidate, body.strip()))
        except tpl.TemplateError as exc:
            await ack(text=f"⚠️ {exc.message}")
            return
        except ComposeError as exc:
            await ack(text=f"⚠️ {exc.message}{NOT_SENT}")
            return
        except StoreUnavailable:
            log.exception("recipient lookup failed")
            await ack(text=NOT_RECORDED.replace("Nothing changed", "Nothing was sent"))
            return
        blocks = pick_blocks(found.spoken, options)
        await ack(text=book.ambiguous_text(found.spoken, [c for c, _ in options]), blocks=blocks)


class PickButton:
    """A click on one of the candidates: a send to that number of the text the button carries."""

    def __init__(self, bridge: Bridge, config: Config, gate: AccessGate) -> None:
        self.bridge = bridge
        self.config = config
        self.gate = gate

    async def handle(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any],
                     respond: AsyncRespond) -> None:
        user_id = str((body.get("user") or {}).get("id", ""))
        channel_id = str((body.get("channel") or {}).get("id", ""))
        team_id = str((body.get("team") or {}).get("id", ""))
        number, _, text = str(action.get("value", "")).partition("\n")
        notify = respond_notifier(respond)
        try:
            request = validate_send(
                to=number, body=text, from_=None, from_numbers=self.config.from_numbers,
                default_region=self.config.default_region, user_id=user_id, channel_id=channel_id,
                team_id=team_id, origin="command")
        except ComposeError as exc:
            await ack()
            await notify(f"⚠️ {exc.message} Nothing was sent.")
            return
        # One send per offered message, across replicas: a double click (or a second replica) finds it claimed.
        container = body.get("container") or {}
        key = f"pick:{channel_id}:{container.get('message_ts') or action.get('action_ts')}:{user_id}"
        try:
            first = await self.bridge.store.claim_slack_event(key, utcnow())
        except StoreUnavailable:
            await ack()
            await notify(NOT_RECORDED.replace("Nothing changed", "Nothing was sent"))
            return
        if not first:
            await ack()
            return
        admission = await self.gate.admit(user_id=user_id, channel_id=channel_id, action=AuditAction.SEND,
                                          to_number=request.to, from_number=request.from_)
        if admission.refusal is not None:
            await ack()
            await notify(admission.refusal.message)
            return
        accepted = await self.bridge.accept(request)
        self.bridge.spawn(self.gate.link(admission, None if isinstance(accepted, str) else accepted), name="audit")
        await ack()
        if isinstance(accepted, str):
            await notify(accepted)
            return
        label = await self.bridge.names.label(request.to)
        await respond(text=f"📤 Texting {label}…", replace_original=True)
        self.bridge.spawn(self.bridge.process(accepted.ref, notify), name="send-pick")


def register(app: AsyncApp, button: PickButton) -> None:
    app.action(PICK_ACTION)(button.handle)
