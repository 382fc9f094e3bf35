"""The ``/sms`` slash command: quick send, help, or the compose modal.

Owns: answering Slack within milliseconds (validation is pure; sending happens after the ack).
Must not import: storage or SignalWire modules (sending goes through ``bridge.service.Bridge``).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge.access import AccessGate
from bridge.blocklist import BlockList
from bridge.compliance import BLOCK_WORDS
from bridge.compose import USAGE, ComposeError, SlashInput, parse_slash_text, validate_send
from bridge.config import Config
from bridge.contacts import command_word, starts_with_name
from bridge.model import AuditAction, SendRequest
from bridge.people import NOT_RECORDED
from bridge.service import Bridge, Notify
from bridge.storage.port import StoreUnavailable
from bridge.templates import TemplateError, named
from handlers.bulk import BulkCommand
from handlers.modals import ComposeModal
from handlers.notify import respond_notifier
from handlers.people import PeopleCommand
from handlers.schedule import ScheduleCommand
from sw_api.text import normalize_number

log = logging.getLogger("handlers.commands")


class SmsCommand:
    def __init__(self, bridge: Bridge, config: Config, modal: ComposeModal, gate: AccessGate,
                 people: PeopleCommand | None = None, scheduled: ScheduleCommand | None = None,
                 bulk: BulkCommand | None = None) -> None:
        self.bridge = bridge
        self.bulk = bulk  # -- issue 13: ``/sms bulk``
        self.scheduled = scheduled  # -- issue 12: ``/sms schedule``, ``/sms scheduled``
        self.config = config
        self.modal = modal
        self.gate = gate
        self.blocks = BlockList(bridge.store)
        # -- issue 12: contacts and templates (``/sms contact…``, ``/sms template…``, sending by name)
        self.people = people

    async def handle(
        self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        user_id = str(command.get("user_id", ""))
        channel_id = str(command.get("channel_id", ""))
        # -- issue 13: bulk sends
        if self.bulk is not None and str(command.get("text", "")).lower().split(None, 1)[:1] == ["bulk"]:
            await self.bulk.handle(ack, command, respond, client)
            return
        # -- issue 12: scheduled sends
        if self.scheduled is not None and str(command.get("text", "")).lower().split(None, 1)[:1] in (
                ["schedule"], ["scheduled"]):
            await self.scheduled.handle(ack, command, respond, client)
            return
        raw = str(command.get("text", ""))
        # -- issue 12: contacts and templates
        ours = command_word(raw) if self.people is not None else None
        if ours is not None and self.people is not None:
            await self.people.subcommand(ack, *ours, command, respond)
            return
        try:
            parsed = parse_slash_text(raw, self.config.default_region)
            if parsed.kind == "send":
                body = parsed.text
                if self.people is not None and named(body) is not None:  # issue 12: ``#template key=value``
                    body = await self.people.body_for(normalize_number(parsed.number, self.config.default_region),
                                                      body)
                request = validate_send(
                    to=parsed.number, body=body, from_=None, from_numbers=self.config.from_numbers,
                    default_region=self.config.default_region, user_id=user_id, channel_id=channel_id,
                    team_id=str(command.get("team_id", "")), origin="command",
                )
        except ComposeError as exc:
            if self.people is not None and exc.field == "to" and starts_with_name(raw):
                await self.people.send_by_name(ack, command, respond, self.send)  # issue 12: ``/sms Dana …``
                return
            await ack(text=f"⚠️ {exc.message}\nNothing was sent. Type `/sms help` for examples.")
            return
        except TemplateError as exc:
            await ack(text=f"⚠️ {exc.message}")
            return
        except StoreUnavailable:
            await ack(text=NOT_RECORDED.replace("Nothing changed", "Nothing was sent"))
            return
        if parsed.kind == "help":
            await ack(text=USAGE.format(region=self.config.default_region))
            return
        if parsed.kind in BLOCK_WORDS:
            await self._block_list(ack, parsed, user_id, channel_id, respond)
            return
        if parsed.kind == "modal":
            # Only the user is checked here: the channel is picked in the form and checked on submit.
            refusal = self.gate.policy.user_refusal(user_id)
            if refusal is not None:
                await ack(text=refusal.message)
                return
            await ack()
            self.bridge.spawn(self._open_form(client, str(command.get("trigger_id", "")), channel_id, respond),
                              name="open-form")
            return
        await self.send(ack, request, respond)

    async def send(self, ack: AsyncAck, request: SendRequest, respond: AsyncRespond) -> None:
        """Admit, store and acknowledge a validated send, then process it (also issue 12's sends by name)."""
        user_id, channel_id = request.user_id, request.channel_id
        # Checked before anything is stored, and before the ack so that the refusal is the answer.
        admission = await self.gate.admit(user_id=user_id, channel_id=channel_id, action=AuditAction.SEND,
                                          to_number=request.to, from_number=request.from_)
        if admission.refusal is not None:
            await ack(text=admission.refusal.message)
            return
        # Recorded before the ack (a bounded local insert), so an acknowledged request survives a crash.
        accepted = await self.bridge.accept(request)
        self.bridge.spawn(self.gate.link(admission, None if isinstance(accepted, str) else accepted), name="audit")
        if isinstance(accepted, str):
            await ack(text=accepted)
            return
        await ack()
        self.bridge.spawn(self.bridge.process(accepted.ref, respond_notifier(respond)), name="send-command")

    # -- issue 11: the block list ------------------------------------------------------------------------------

    async def _block_list(self, ack: AsyncAck, parsed: SlashInput, user_id: str, channel_id: str,
                          respond: AsyncRespond) -> None:
        """Who may text may block (the same user / channel policy); every answer, the list included, is private."""
        refusal = self.gate.policy.identity_refusal(user_id, channel_id)
        if refusal is not None:
            await ack(text=refusal.message)
            return
        await ack()
        self.bridge.spawn(self._change_block_list(parsed, user_id, channel_id, respond_notifier(respond)),
                          name=f"sms-{parsed.kind}")

    async def _change_block_list(self, parsed: SlashInput, user_id: str, channel_id: str, notify: Notify) -> None:
        if parsed.kind == "block":
            text = await self.blocks.block(parsed.number, parsed.text, user_id=user_id, channel_id=channel_id)
        elif parsed.kind == "unblock":
            text = await self.blocks.unblock(parsed.number, user_id=user_id, channel_id=channel_id)
        else:
            text = await self.blocks.listing()
        await notify(text)

    async def _open_form(self, client: AsyncWebClient, trigger_id: str, channel_id: str,
                         respond: AsyncRespond) -> None:
        try:
            await self.modal.open(client, trigger_id, channel_id)
        except SlackApiError as exc:
            await respond(text=f"⚠️ Could not open the form ({exc.response.get('error')}). Try `/sms` again.",
                          response_type="ephemeral")


def register(app: AsyncApp, command: SmsCommand) -> None:
    app.command("/sms")(command.handle)
