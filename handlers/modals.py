"""The compose modal: its view, the live character/segment counter, and the submission.

Owns: ``callback_id`` ``sms_compose``, block ids ``to``, ``body``, ``from``, ``media``, ``files`` (Slack files sent as
MMS: downloaded, checked and published before the ack, within ``FILES_SECONDS``; issue 11), ``mms``, ``channel``,
``counter``, ``send_at`` (issue 12: schedule instead of sending now, ``handlers.schedule``); inline
errors with ``response_action: errors``.
Must not import: storage or SignalWire modules (sending goes through ``bridge.service.Bridge``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge import schedule
from bridge.access import AccessGate, RefusalReason
from bridge.compose import ComposeError, validate_all, validate_send
from bridge.config import Config
from bridge.media import MediaRefused, MediaShelf, MediaUnavailable
from bridge.model import AuditAction, SendRequest, Template
from bridge.people import People
from bridge.ports import utcnow
from bridge.service import Bridge
from bridge.storage.port import StoreUnavailable
from bridge.templates import CONTACT_FIELDS, fill_contact, placeholders
from handlers.notify import ephemeral_notifier
from handlers.slack_files import SlackFiles
from sw_api.text import MAX_BODY_CHARS, InvalidNumber, format_number, normalize_number, segment_info

if TYPE_CHECKING:
    from handlers.schedule import ScheduleCommand

log = logging.getLogger("handlers.modals")

CALLBACK_ID = "sms_compose"
# -- issue 11: the form's files are fetched and published before the ack (Slack allows 3 s in all).
FILES_SECONDS = 2.0
FILE_TYPES = ["jpg", "jpeg", "png", "gif"]


def counter_text(body: str) -> str:
    info = segment_info(body)
    if not body:
        return f"0 / {MAX_BODY_CHARS} characters"
    over = " ⚠️ too long" if info.characters > MAX_BODY_CHARS else ""
    return (
        f"{info.characters} / {MAX_BODY_CHARS} characters · {info.encoding} · "
        f"{info.segments} segment{'s' if info.segments != 1 else ''}{over}"
    )


def _input(block_id: str, label: str, element: dict[str, Any], *, optional: bool = False,
           hint: str | None = None, dispatch: bool = False) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "input",
        "block_id": block_id,
        "label": {"type": "plain_text", "text": label},
        "element": {**element, "action_id": block_id},
        "optional": optional,
    }
    if hint:
        block["hint"] = {"type": "plain_text", "text": hint}
    if dispatch:
        block["dispatch_action"] = True
    return block


def compose_view(
    *, channel_id: str, from_numbers: tuple[str, ...], body: str = "", simulated: bool = False,
    templates: Sequence[Template] = (), filled: int = 0, template: str = "",
) -> dict[str, Any]:
    """The modal. ``body`` only feeds the counter: Slack keeps what the user typed across ``views.update``.
    -- issue 12: ``templates`` make the ``template`` select; ``filled`` counts the times one filled the message:
    each fill gives the message input a new action id (``body_<n>``), so Slack shows the template's text as its
    initial value instead of keeping what was typed. ``template``: the one picked last (its placeholders must be
    filled in before Send)."""
    body_element: dict[str, Any] = {
        "type": "plain_text_input", "multiline": True, "max_length": 3000,
        "dispatch_action_config": {"trigger_actions_on": ["on_character_entered"]},
    }
    if filled:
        body_element["initial_value"] = body
    body_block = _input("body", "Message", body_element, optional=True, dispatch=True)
    if filled:
        body_block["element"]["action_id"] = f"body_{filled}"
    blocks: list[dict[str, Any]] = [
        _input("to", "To", {"type": "plain_text_input", "placeholder": {
            "type": "plain_text", "text": "+1 555 123 4567 or Dana Smith"}},
            hint="Mobile number with country code, or a contact's name"),
    ]
    if templates:
        options = [{"text": {"type": "plain_text", "text": f"#{t.name}: {t.body}"[:75]}, "value": t.name}
                   for t in templates[:100]]
        select: dict[str, Any] = {"type": "static_select", "options": options,
                                  "placeholder": {"type": "plain_text", "text": "Start from a template"}}
        picked = [o for o in options if o["value"] == template]
        if picked:
            select["initial_option"] = picked[0]
        blocks.append(_input("template", "Template", select, optional=True, dispatch=True,
                             hint="Fills the message; {first_name} and {name} come from the contact"))
    blocks += [
        body_block,
        {"type": "context", "block_id": "counter",
         "elements": [{"type": "mrkdwn", "text": counter_text(body)}]},
    ]
    if len(from_numbers) > 1:
        options = [
            {"text": {"type": "plain_text", "text": format_number(n)}, "value": n} for n in from_numbers
        ]
        blocks.append(_input("from", "From", {
            "type": "static_select", "options": options, "initial_option": options[0]}))
    blocks += [
        _input("media", "Pictures or files (MMS)", {"type": "plain_text_input", "multiline": True,
               "placeholder": {"type": "plain_text", "text": "https://example.com/photo.jpg"}},
               optional=True, hint="Public http(s) URLs, one per line, at most 8"),
        # -- issue 11: pictures from Slack (or the computer), sent as MMS.
        _input("files", "Attach pictures", {"type": "file_input", "filetypes": FILE_TYPES, "max_files": 8},
               optional=True, hint="JPEG, PNG or GIF; at most 8 pictures in all"),
        _input("mms", "Options", {"type": "checkboxes", "options": [{
            "text": {"type": "plain_text", "text": "Send as MMS even without pictures"}, "value": "mms"}]},
            optional=True),
        # -- issue 12: send later (Slack gives a UTC epoch; the parent shows it in the sender's time zone).
        _input("send_at", "Send at (optional)", {"type": "datetimepicker"}, optional=True,
               hint="Leave empty to send now; at most a year ahead"),
        _input("channel", "Post the thread in", {
            "type": "conversations_select", "default_to_current_conversation": True,
            "initial_conversation": channel_id,
            "filter": {"include": ["public", "private"], "exclude_bot_users": True}}),
    ]
    if simulated:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": "🧪 Simulator mode: no real SMS will be sent."}]})
    return {
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "private_metadata": json.dumps({"channel_id": channel_id, "filled": filled, "template": template}),
        "title": {"type": "plain_text", "text": "Send an SMS"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    }


def _value(values: dict[str, Any], block: str) -> dict[str, Any]:
    entries = values.get(block, {})
    # -- issue 12: the message input's action id changes when a template fills it (``body_<n>``).
    entry = entries.get(block) if block in entries else next(iter(entries.values()), {}) if entries else {}
    return entry if isinstance(entry, dict) else {}


def _text(values: dict[str, Any], block: str) -> str:
    return str(_value(values, block).get("value") or "")


class ComposeModal:
    def __init__(self, bridge: Bridge, config: Config, gate: AccessGate, *, files: SlackFiles | None = None,
                 shelf: MediaShelf | None = None, people: People | None = None) -> None:
        self.bridge = bridge
        self.config = config
        self.gate = gate
        self.files = files
        self.shelf = shelf
        self.scheduled: ScheduleCommand | None = None  # -- issue 12: set by ``handlers.register_all``
        self.people = people  # -- issue 12: names in ``to``, the template select

    def view(self, channel_id: str, body: str = "", *, templates: Sequence[Template] = (), filled: int = 0,
             template: str = "") -> dict[str, Any]:
        return compose_view(channel_id=channel_id, from_numbers=self.config.from_numbers, body=body,
                            simulated=self.config.simulated, templates=templates, filled=filled, template=template)

    async def _templates(self) -> list[Template]:
        if self.people is None:
            return []
        try:
            return await self.people.templates()
        except StoreUnavailable:
            log.warning("templates not read; the form opens without them")
            return []

    async def open(self, client: AsyncWebClient, trigger_id: str, channel_id: str) -> None:
        await client.views_open(trigger_id=trigger_id, view=self.view(channel_id, templates=await self._templates()))

    # -- issue 12: a template picked in the form fills the message (and the counter) through views.update -------

    async def on_template(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any],
                          client: AsyncWebClient) -> None:
        await ack()
        self.bridge.spawn(self._fill_template(body, action, client), name="form-template")

    async def _fill_template(self, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        if self.people is None:
            return
        view = body.get("view") or {}
        values = (view.get("state") or {}).get("values") or {}
        metadata = _metadata(view)
        name = str((action.get("selected_option") or {}).get("value") or "")
        template = await self.people.template(name)
        templates = await self._templates()
        if template is None:
            return
        contact = None
        typed = _text(values, "to").strip()
        if typed:
            number, _ = await self.people.recipient_number(typed)
            if number is not None:
                with contextlib.suppress(InvalidNumber):
                    contact = await self.bridge.store.contact_by_number(
                        normalize_number(number, self.config.default_region))
        text = fill_contact(template, contact)
        filled = int(metadata.get("filled") or 0) + 1
        try:
            await client.views_update(view_id=view.get("id"), hash=view.get("hash"), view=self.view(
                str(metadata.get("channel_id", "")), text, templates=templates, filled=filled, template=name))
        except SlackApiError as exc:
            log.debug("template fill skipped: %s", exc.response.get("error"))

    async def on_body_change(self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        self.bridge.spawn(self._update_counter(body, client), name="form-counter")

    async def _update_counter(self, body: dict[str, Any], client: AsyncWebClient) -> None:
        view = body.get("view") or {}
        values = (view.get("state") or {}).get("values") or {}
        metadata = _metadata(view)
        try:
            await client.views_update(
                view_id=view.get("id"), hash=view.get("hash"),
                view=self.view(str(metadata.get("channel_id", "")), _text(values, "body"),
                               templates=await self._templates(), filled=int(metadata.get("filled") or 0),
                               template=str(metadata.get("template") or "")),
            )
        except SlackApiError as exc:
            # hash_conflict: the user typed again and a newer update is on its way; nothing to do.
            log.debug("counter update skipped: %s", exc.response.get("error"))

    async def on_submit(self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        view = body.get("view") or {}
        values = (view.get("state") or {}).get("values") or {}
        user_id = str((body.get("user") or {}).get("id", ""))
        team_id = str((body.get("team") or {}).get("id", ""))
        selected_from = (_value(values, "from").get("selected_option") or {}).get("value")
        channel_id = _value(values, "channel").get("selected_conversation") or _metadata(view).get("channel_id")
        fields = dict(
            to=_text(values, "to"), body=_text(values, "body"), from_=selected_from,
            from_numbers=self.config.from_numbers, default_region=self.config.default_region,
            media_text=_text(values, "media"),
        )
        file_ids = _file_ids(values)
        errors = validate_all(**fields, files=len(file_ids))  # type: ignore[arg-type]
        if self.people is not None:  # -- issue 12: a contact's name in ``to``; a template's blanks filled in
            await self._people_fields(fields, errors, view)
        if not channel_id:
            errors["channel"] = "Pick the channel where the message and its receipts should appear."
        # -- issue 12: "Send at" — checked with the other fields (in the past, more than a year ahead)
        send_at = _value(values, "send_at").get("selected_date_time")
        due = None
        if send_at is not None and self.scheduled is not None:
            tz = await self.scheduled.zone_of(client, user_id)
            due, problem = _due(send_at, tz)
            if problem is not None:
                errors["send_at"] = problem
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        try:
            request = validate_send(
                **fields,  # type: ignore[arg-type]
                user_id=user_id, channel_id=str(channel_id), team_id=team_id,
                send_as_mms=bool(_value(values, "mms").get("selected_options")), origin="modal", files=len(file_ids),
            )
        except ComposeError as exc:  # pragma: no cover - validate_all already said everything
            await ack(response_action="errors", errors={exc.field: exc.message})
            return
        if due is not None and self.scheduled is not None:
            await self._schedule(ack, client, request, file_ids, due, tz)
            return
        admission = await self.gate.admit(user_id=user_id, channel_id=request.channel_id, action=AuditAction.SEND,
                                          to_number=request.to, from_number=request.from_)
        if admission.refusal is not None:
            # Shown in the form, which stays open: another channel can be picked, or the send tried again later.
            block = "channel" if admission.refusal.reason is RefusalReason.CHANNEL_NOT_ALLOWED else "body"
            await ack(response_action="errors", errors={block: admission.refusal.message})
            return
        if file_ids:  # -- issue 11: only for an admitted send are the files downloaded and published
            published = await self._publish(client, file_ids)
            if isinstance(published, str):
                self.bridge.spawn(self.gate.link(admission, None, "not sent (files refused)"), name="audit")
                await ack(response_action="errors", errors={"files": published})
                return
            request = replace(request, media=(*request.media, *published),
                              send_as_mms=request.send_as_mms or bool(published))
        accepted = await self.bridge.accept(request)
        self.bridge.spawn(self.gate.link(admission, None if isinstance(accepted, str) else accepted), name="audit")
        if isinstance(accepted, str):
            await ack(response_action="errors", errors={"body": accepted})
            return
        await ack()
        notify = ephemeral_notifier(client, str(channel_id), user_id)
        self.bridge.spawn(self.bridge.process(accepted.ref, notify), name="send-modal")


    async def _schedule(self, ack: AsyncAck, client: AsyncWebClient, request: SendRequest, file_ids: list[str],
                        due: datetime, tz: str) -> None:
        """-- issue 12: the form with "Send at": scheduled (stored before the ack) instead of sent."""
        assert self.scheduled is not None
        if file_ids:
            published = await self._publish(client, file_ids)
            if isinstance(published, str):
                await ack(response_action="errors", errors={"files": published})
                return
            request = replace(request, media=(*request.media, *published),
                              send_as_mms=request.send_as_mms or bool(published))
        accepted = await self.scheduled.schedule_request(request, due, tz)
        if isinstance(accepted, str):
            await ack(response_action="errors", errors={"send_at": accepted})
            return
        await ack()

    async def _people_fields(self, fields: dict[str, Any], errors: dict[str, str], view: dict[str, Any]) -> None:
        assert self.people is not None
        if "to" in errors and str(fields["to"]).strip():
            try:
                number, error = await self.people.recipient_number(str(fields["to"]).strip())
            except StoreUnavailable:
                number, error = None, "sms-bridge could not reach its database to look the name up. Try again."
            if number is not None:
                fields["to"] = number
                errors.pop("to")
            elif error is not None:
                errors["to"] = error
        template = str(_metadata(view).get("template") or "")
        if template and "to" not in errors and set(placeholders(str(fields["body"]))) & set(CONTACT_FIELDS):
            # The template was picked before the recipient was typed: the contact's names go in now.
            with contextlib.suppress(InvalidNumber, StoreUnavailable):
                contact = await self.bridge.store.contact_by_number(
                    normalize_number(str(fields["to"]), self.config.default_region))
                fields["body"] = fill_contact(Template("", str(fields["body"]), "", utcnow()), contact)
        if template and "body" not in errors:
            left = placeholders(str(fields["body"]))
            stored = await self.people.template(template)
            wanted = placeholders(stored.body) if stored is not None else []
            blanks = [p for p in left if p in wanted]
            if blanks:
                errors["body"] = (f"Fill in {', '.join('{' + p + '}' for p in blanks)} from the template "
                                  f"#{template} before sending.")

    async def _publish(self, client: AsyncWebClient, file_ids: list[str]) -> tuple[str, ...] | str:
        """-- issue 11: the form's files as published /media URLs, or what to show under the file input."""
        if self.files is None or self.shelf is None:
            return "sms-bridge is not set up to send pictures from Slack."
        try:
            async with asyncio.timeout(FILES_SECONDS):
                pictures = await self.files.fetch_ids(client, file_ids)
                return await self.shelf.publish(pictures, utcnow())
        except MediaRefused as exc:
            return f"{exc.message} Nothing was sent."
        except (MediaUnavailable, TimeoutError) as exc:
            log.warning("form files not fetched in time: %s", exc or "timeout")
            return "Slack did not hand over the pictures in time. Nothing was sent: press Send again."


def _due(send_at: Any, tz: str) -> tuple[datetime | None, str | None]:
    """-- issue 12: the form's ``selected_date_time`` (a UTC epoch) as a due time, or why it cannot be one."""
    try:
        due = datetime.fromtimestamp(int(send_at), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None, "Pick a date and a time."
    return due, schedule.check_due(due, utcnow(), schedule.zone(tz))


def _file_ids(values: dict[str, Any]) -> list[str]:
    """The ids of the files given in the form's ``file_input`` (block ``files``), in order."""
    files = _value(values, "files").get("files")
    if not isinstance(files, list):
        return []
    return [str(f["id"]) for f in files if isinstance(f, dict) and isinstance(f.get("id"), str) and f["id"]]


def _metadata(view: dict[str, Any]) -> dict[str, str]:
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def register(app: AsyncApp, modal: ComposeModal) -> None:
    app.view(CALLBACK_ID)(modal.on_submit)
    app.action({"block_id": "body", "action_id": re.compile(r"^body(_\d+)?$")})(modal.on_body_change)
    app.action({"block_id": "template", "action_id": "template"})(modal.on_template)  # issue 12
