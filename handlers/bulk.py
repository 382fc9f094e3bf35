"""Bulk sends on Slack (issue 13): ``/sms bulk``, its modal, the preview's buttons and the live parent's buttons.

Owns: ``callback_id`` ``sms_bulk`` and its block ids ``recipients`` (the box), ``csv`` (one CSV / text file),
``body`` (the message, with placeholders; action id ``bulk_body`` drives the live segment counter in ``counter``,
as the compose modal's does), ``sender`` (only when there are several numbers), ``channel``;
``BulkEngine`` (the Protocol of what this surface needs from the engine, ``bridge.bulk.BulkSends``) and
``BulkCommand`` (the command, the submission and the five buttons of ``bridge.bulk_render``). The command refuses
at once, privately, when the engine says the user may not bulk-send; the submission checks its fields
synchronously (``response_action: errors``), acks, and only then streams the CSV from Slack, feeds
``bridge.bulk_input.combined`` to the engine's ``draft`` and posts the preview as an ephemeral (or the engine's
refusal). "Send to N" confirms, posts the one live parent in the channel, hands its ``ts`` to the engine and
replaces the preview; every refusal is private.
Must not import: storage adapters or SignalWire modules (everything goes through the engine).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable
from typing import Any, Protocol

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge import bulk_input, bulk_render
from bridge.bulk_model import BulkBatch, BulkDraft, BulkPreview, BulkProblem, BulkProgress, BulkRecipient
from bridge.bulk_text import BUILT_IN, placeholders, unknown_placeholders
from bridge.config import Config
from bridge.media import MediaRefused, MediaUnavailable
from bridge.service import Bridge
from bridge.storage.port import StoreUnavailable
from handlers.modals import counter_text
from handlers.slack_files import SlackFiles
from sw_api.text import MAX_BODY_CHARS, format_number, segment_info

log = logging.getLogger("handlers.bulk")

CALLBACK_ID = "sms_bulk"
SUBCOMMAND = "bulk"
CSV_TYPES = ["csv", "txt"]


class BulkEngine(Protocol):
    """What the Slack side needs from the bulk engine (``bridge.bulk.BulkSends``). A ``str`` answer is a refusal,
    told to the user as it is."""

    def refusal(self, user_id: str) -> str | None: ...

    async def draft(self, draft: BulkDraft,
                    lines: AsyncIterable[BulkRecipient | BulkProblem]) -> BulkPreview | str: ...

    async def confirm(self, batch_id: str, user_id: str) -> BulkBatch | str: ...

    async def discard(self, batch_id: str, user_id: str) -> BulkBatch | str: ...

    async def pause(self, batch_id: str, user_id: str) -> BulkBatch | str: ...

    async def resume(self, batch_id: str, user_id: str) -> BulkBatch | str: ...

    async def cancel(self, batch_id: str, user_id: str) -> BulkBatch | str: ...

    async def progress(self, batch_id: str) -> BulkProgress: ...

    async def set_parent(self, batch_id: str, ts: str) -> None: ...


# -- the modal -------------------------------------------------------------------------------------------------------

def _plain(text: str) -> dict[str, str]:
    return {"type": "plain_text", "text": text}


def _input(block_id: str, label: str, element: dict[str, Any], *, optional: bool = False,
           hint: str | None = None, dispatch: bool = False) -> dict[str, Any]:
    # action ids are prefixed: the compose modal listens to block "body" / action "body" for its counter
    block: dict[str, Any] = {"type": "input", "block_id": block_id, "label": _plain(label),
                             "element": {**element, "action_id": f"bulk_{block_id}"}, "optional": optional}
    if hint:
        block["hint"] = _plain(hint)
    if dispatch:
        block["dispatch_action"] = True
    return block


def bulk_counter(body: str) -> str:
    """The live counter under the message: the template's own length and segments (placeholders not filled yet)."""
    counted = counter_text(body)
    return f"{counted} · before placeholders are filled" if placeholders(body) else counted


def bulk_view(*, channel_id: str, from_numbers: tuple[str, ...], body: str = "") -> dict[str, Any]:
    """The form. ``body`` only feeds the counter: Slack keeps what was typed across ``views.update``."""
    blocks: list[dict[str, Any]] = [
        _input("recipients", "Recipients", {
            "type": "plain_text_input", "multiline": True,
            "placeholder": _plain("+1 555 123 4567, Dana Smith; one per line or separated by commas")},
            optional=True, hint="Numbers or contact names. Leave empty if you attach a CSV."),
        _input("csv", "Or a CSV file", {"type": "file_input", "filetypes": CSV_TYPES, "max_files": 1},
               optional=True, hint="A header line with a number column; name and any other columns are optional "
                                   f"and usable as {{column}}. At most {bulk_input.MAX_CSV_BYTES // 1_000_000} MB."),
        _input("body", "Message", {"type": "plain_text_input", "multiline": True, "max_length": 3000,
                                   "placeholder": _plain("Hi {first_name}, the store is closed today."),
                                   "dispatch_action_config": {"trigger_actions_on": ["on_character_entered"]}},
               hint="Placeholders: {name}, {first_name}, {number} and any CSV {column}", dispatch=True),
        {"type": "context", "block_id": "counter", "elements": [{"type": "mrkdwn", "text": bulk_counter(body)}]},
    ]
    if len(from_numbers) > 1:
        options = [{"text": _plain(format_number(n)), "value": n} for n in from_numbers]
        blocks.append(_input("sender", "From", {"type": "static_select", "options": options,
                                                "initial_option": options[0]}))
    blocks.append(_input("channel", "Post the progress in", {
        "type": "conversations_select", "default_to_current_conversation": True, "initial_conversation": channel_id,
        "filter": {"include": ["public", "private"], "exclude_bot_users": True}}))
    return {
        "type": "modal", "callback_id": CALLBACK_ID,
        "private_metadata": json.dumps({"channel_id": channel_id}),
        "title": _plain("Bulk SMS"), "submit": _plain("Preview"), "close": _plain("Cancel"),
        "blocks": blocks,
    }


def _entry(values: dict[str, Any], block: str) -> dict[str, Any]:
    entries = values.get(block) or {}
    entry = entries.get(f"bulk_{block}") or (next(iter(entries.values()), {}) if entries else {})
    return entry if isinstance(entry, dict) else {}


def _metadata(view: dict[str, Any]) -> dict[str, Any]:
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class BulkCommand:
    def __init__(self, bridge: Bridge, config: Config, engine: BulkEngine, *, files: SlackFiles) -> None:
        self.bridge = bridge
        self.config = config
        self.engine = engine
        self.files = files

    # -- /sms bulk -------------------------------------------------------------------------------------------------

    async def handle(self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond,
                     client: AsyncWebClient) -> None:
        refusal = self.engine.refusal(str(command.get("user_id", "")))
        if refusal is not None:
            await ack(text=refusal)
            return
        await ack()
        view = bulk_view(channel_id=str(command.get("channel_id", "")), from_numbers=self.config.from_numbers)
        self.bridge.spawn(self._open(client, str(command.get("trigger_id", "")), view, respond), name="bulk-form")

    async def _open(self, client: AsyncWebClient, trigger_id: str, view: dict[str, Any],
                    respond: AsyncRespond) -> None:
        try:
            await client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as exc:
            log.warning("bulk form not opened: %s", exc.response.get("error"))
            await respond(text="⚠️ Slack would not open the bulk form; try `/sms bulk` again.",
                          response_type="ephemeral")

    # -- the live counter --------------------------------------------------------------------------------------------

    async def on_body_change(self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        self.bridge.spawn(self._update_counter(body, client), name="bulk-counter")

    async def _update_counter(self, body: dict[str, Any], client: AsyncWebClient) -> None:
        view = body.get("view") or {}
        values = (view.get("state") or {}).get("values") or {}
        new = bulk_view(channel_id=str(_metadata(view).get("channel_id") or ""),
                        from_numbers=self.config.from_numbers, body=str(_entry(values, "body").get("value") or ""))
        try:
            await client.views_update(view_id=view.get("id"), hash=view.get("hash"), view=new)
        except SlackApiError as exc:
            # hash_conflict: the user typed again and a newer update is on its way; nothing to do.
            log.debug("bulk counter update skipped: %s", exc.response.get("error"))

    # -- the submission ----------------------------------------------------------------------------------------------

    async def on_submit(self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        view = body.get("view") or {}
        values = (view.get("state") or {}).get("values") or {}
        user_id = str((body.get("user") or {}).get("id", ""))
        text = str(_entry(values, "recipients").get("value") or "")
        files = _entry(values, "csv").get("files")
        file_ids = [str(f["id"]) for f in files or [] if isinstance(f, dict) and f.get("id")]
        message = str(_entry(values, "body").get("value") or "")
        sender = (_entry(values, "sender").get("selected_option") or {}).get("value") or (
            self.config.from_numbers[0] if self.config.from_numbers else "")
        channel_id = str(_entry(values, "channel").get("selected_conversation") or _metadata(view).get("channel_id")
                         or "")
        errors: dict[str, str] = {}
        if not text.strip() and not file_ids:
            errors["recipients"] = "Type the recipients here, or attach a CSV file below."
        if len(file_ids) > 1:
            errors["csv"] = "Attach one CSV file."
        if not message.strip():
            errors["body"] = "Type the message to send."
        elif segment_info(message).characters > MAX_BODY_CHARS:
            errors["body"] = f"The message is longer than {MAX_BODY_CHARS} characters."
        elif not file_ids and (unknown := unknown_placeholders(message, [])):
            # Without a CSV only the built-in placeholders exist; with one, its header decides (the engine checks).
            errors["body"] = (f"{', '.join('{' + u + '}' for u in unknown)}: no such placeholder without a CSV; use "
                              f"{', '.join('{' + b + '}' for b in BUILT_IN)}.")
        if sender and sender not in self.config.from_numbers:
            errors["sender"] = "Pick one of the bridge's numbers."
        if not channel_id:
            errors["channel"] = "Pick the channel where the progress should appear."
        refusal = self.engine.refusal(user_id)
        if refusal is not None:
            errors["body"] = refusal
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        draft = BulkDraft(user_id=user_id, channel_id=channel_id, from_=str(sender), body=message,
                          title=bulk_render.title_of(message), team_id=str((body.get("team") or {}).get("id", "")))
        self.bridge.spawn(self._draft(client, draft, text, file_ids[0] if file_ids else None), name="bulk-draft")

    async def _draft(self, client: AsyncWebClient, draft: BulkDraft, text: str, file_id: str | None) -> None:
        """After the ack: stream the CSV, let the engine build the preview, show it to the sender only."""
        chunks: AsyncGenerator[bytes, None] | None = (self.files.stream_data(client, file_id)
                                                      if file_id is not None else None)
        lines = bulk_input.combined(text, self.bridge.store, self.config.default_region, chunks)
        try:
            try:
                preview = await self.engine.draft(draft, lines)
            finally:  # the download ends here even when the engine stopped reading early (a fatal line, the limit)
                if isinstance(lines, AsyncGenerator):
                    await lines.aclose()
                if chunks is not None:
                    await chunks.aclose()
        except MediaRefused as exc:
            await self._tell(client, draft.channel_id, draft.user_id, f"⚠️ Nothing was sent: {exc.message}")
            return
        except MediaUnavailable:
            log.warning("bulk CSV %s not downloaded", file_id, exc_info=True)
            await self._tell(client, draft.channel_id, draft.user_id,
                             "⚠️ Nothing was sent: Slack did not hand over the CSV file. Try again.")
            return
        except StoreUnavailable:
            log.exception("bulk draft not stored")
            await self._tell(client, draft.channel_id, draft.user_id,
                             "⚠️ Nothing was sent: the bridge could not record the list right now. Try again.")
            return
        if isinstance(preview, str):
            await self._tell(client, draft.channel_id, draft.user_id, preview)
            return
        try:
            await client.chat_postEphemeral(channel=draft.channel_id, user=draft.user_id,
                                            text=bulk_render.preview_text(preview, draft.title),
                                            blocks=bulk_render.preview_blocks(preview, draft.title,
                                                                              from_=draft.from_))
        except SlackApiError as exc:
            log.warning("bulk preview not posted in %s: %s", draft.channel_id, exc.response.get("error"))

    async def _tell(self, client: AsyncWebClient, channel_id: str, user_id: str, text: str) -> None:
        try:
            await client.chat_postEphemeral(channel=channel_id, user=user_id, text=text)
        except SlackApiError as exc:
            log.warning("could not tell %s about a bulk send: %s", user_id, exc.response.get("error"))

    # -- the buttons -------------------------------------------------------------------------------------------------

    async def on_send(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond,
                      client: AsyncWebClient) -> None:
        await ack()
        self.bridge.spawn(self._send(body, str(action.get("value") or ""), respond, client), name="bulk-confirm")

    async def _send(self, body: dict[str, Any], batch_id: str, respond: AsyncRespond, client: AsyncWebClient) -> None:
        user_id = str((body.get("user") or {}).get("id", ""))
        batch = await self.engine.confirm(batch_id, user_id)
        if isinstance(batch, str):
            await respond(text=batch, response_type="ephemeral", replace_original=False)
            return
        try:
            progress = await self.engine.progress(batch.id)
            posted = await client.chat_postMessage(channel=batch.channel_id, **self._parent(batch, progress))
        except SlackApiError as exc:
            log.warning("bulk parent of %s not posted: %s", batch.id, exc.response.get("error"))
            await respond(text="⚠️ Sending has started, but Slack would not let me post its progress here "
                               f"({exc.response.get('error')}).", response_type="ephemeral", replace_original=False)
            return
        await self.engine.set_parent(batch.id, str(posted.get("ts") or ""))
        await respond(text=f"📤 Sending to {batch.total}: the progress is in the channel.", replace_original=True)

    async def on_discard(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond,
                         client: AsyncWebClient) -> None:
        await ack()
        user_id = str((body.get("user") or {}).get("id", ""))
        batch = await self.engine.discard(str(action.get("value") or ""), user_id)
        if isinstance(batch, str):
            await respond(text=batch, response_type="ephemeral", replace_original=False)
            return
        await respond(text=bulk_render.discarded_text(batch), replace_original=True)

    async def on_pause(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond,
                       client: AsyncWebClient) -> None:
        await self._change(ack, body, action, respond, client, self.engine.pause)

    async def on_resume(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond,
                        client: AsyncWebClient) -> None:
        await self._change(ack, body, action, respond, client, self.engine.resume)

    async def on_cancel(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond,
                        client: AsyncWebClient) -> None:
        await self._change(ack, body, action, respond, client, self.engine.cancel)

    async def _change(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond,
                      client: AsyncWebClient, change: Callable[[str, str], Awaitable[BulkBatch | str]]) -> None:
        await ack()
        user_id = str((body.get("user") or {}).get("id", ""))
        batch = await change(str(action.get("value") or ""), user_id)
        if isinstance(batch, str):
            await respond(text=batch, response_type="ephemeral", replace_original=False)
            return
        channel = str((body.get("channel") or {}).get("id") or batch.channel_id)
        ts = batch.parent_ts or str((body.get("message") or {}).get("ts") or "")
        if not ts:
            return
        try:
            progress = await self.engine.progress(batch.id)
            await client.chat_update(channel=channel, ts=ts, **self._parent(batch, progress))
        except SlackApiError as exc:
            log.warning("bulk parent of %s not updated: %s", batch.id, exc.response.get("error"))

    def _parent(self, batch: BulkBatch, progress: BulkProgress) -> dict[str, Any]:
        """The parent's text and blocks; its ETA from the rate (segments of the template, per recipient left)."""
        text, blocks = bulk_render.parent_view(batch, progress, segments_per_text=segment_info(batch.body).segments,
                                               mps=self.config.signalwire_mps)
        return {"text": text, "blocks": blocks}


def register(app: AsyncApp, bulk: BulkCommand) -> None:
    app.view(CALLBACK_ID)(bulk.on_submit)
    app.action({"block_id": "body", "action_id": "bulk_body"})(bulk.on_body_change)
    app.action(bulk_render.SEND_ACTION)(bulk.on_send)
    app.action(bulk_render.DISCARD_ACTION)(bulk.on_discard)
    app.action(bulk_render.PAUSE_ACTION)(bulk.on_pause)
    app.action(bulk_render.RESUME_ACTION)(bulk.on_resume)
    app.action(bulk_render.CANCEL_ACTION)(bulk.on_cancel)
