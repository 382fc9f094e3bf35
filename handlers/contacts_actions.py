"""The App Home's contact buttons (issue 12): Add, Import CSV, Export CSV.

Owns: action ids ``contacts_add``, ``contacts_import``, ``contacts_export`` (the buttons are rendered by the App
Home) and the modals they open (``callback_id`` ``contacts_add_form`` with blocks ``name`` / ``number``;
``contacts_import_form`` with the ``file_input`` block ``file``). The CSV is downloaded with issue 11's Slack file
download (``handlers.slack_files.SlackFiles``); its report, and the exported CSV (``files_upload_v2``), go to the
person in their DM with the app (``conversations.open``). Who may text may use them (``SMS_ALLOWED_USERS``).
Must not import: storage or SignalWire modules.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge import contacts as book
from bridge.access import AccessPolicy
from bridge.config import Config
from bridge.media import MediaRefused, MediaUnavailable
from bridge.people import NOT_RECORDED, People
from bridge.service import Bridge
from bridge.storage.port import StoreUnavailable
from handlers.slack_files import SlackFiles
from sw_api.text import InvalidNumber, normalize_number

log = logging.getLogger("handlers.contacts_actions")

ADD_ACTION, IMPORT_ACTION, EXPORT_ACTION = "contacts_add", "contacts_import", "contacts_export"
ADD_FORM, IMPORT_FORM = "contacts_add_form", "contacts_import_form"
CSV_TYPES = ["csv", "txt"]


def _plain(text: str) -> dict[str, str]:
    return {"type": "plain_text", "text": text}


def add_view() -> dict[str, Any]:
    return {
        "type": "modal", "callback_id": ADD_FORM, "title": _plain("Add a contact"), "submit": _plain("Add"),
        "close": _plain("Cancel"),
        "blocks": [
            {"type": "input", "block_id": "name", "label": _plain("Name"),
             "element": {"type": "plain_text_input", "action_id": "name", "max_length": book.MAX_NAME}},
            {"type": "input", "block_id": "number", "label": _plain("Number"),
             "element": {"type": "plain_text_input", "action_id": "number",
                         "placeholder": _plain("+1 555 123 4567")}},
        ],
    }


def import_view(region: str) -> dict[str, Any]:
    return {
        "type": "modal", "callback_id": IMPORT_FORM, "title": _plain("Import contacts"), "submit": _plain("Import"),
        "close": _plain("Cancel"),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": (
                "A CSV file with the columns `name,number` (a header line is optional). Numbers without a country "
                f"code are read as {region} numbers. If any line is refused, nothing is imported and you are told "
                "which lines and why.")}},
            {"type": "input", "block_id": "file", "label": _plain("CSV file"),
             "element": {"type": "file_input", "action_id": "file", "filetypes": CSV_TYPES, "max_files": 1}},
        ],
    }


def _values(body: dict[str, Any]) -> dict[str, Any]:
    values = ((body.get("view") or {}).get("state") or {}).get("values") or {}
    return values if isinstance(values, dict) else {}


def _typed(values: dict[str, Any], block: str) -> str:
    entry = (values.get(block) or {}).get(block) or {}
    return str(entry.get("value") or "") if isinstance(entry, dict) else ""


class ContactsActions:
    def __init__(self, bridge: Bridge, config: Config, people: People, *, files: SlackFiles,
                 policy: AccessPolicy) -> None:
        self.bridge = bridge
        self.config = config
        self.people = people
        self.files = files
        self.policy = policy

    def _user(self, body: dict[str, Any]) -> str:
        return str((body.get("user") or {}).get("id", ""))

    async def _dm(self, client: AsyncWebClient, user_id: str, text: str) -> None:
        try:
            channel = await self._dm_channel(client, user_id)
            await client.chat_postMessage(channel=channel, text=text)
        except SlackApiError as exc:
            log.warning("could not DM %s: %s", user_id, exc.response.get("error"))

    async def _dm_channel(self, client: AsyncWebClient, user_id: str) -> str:
        opened = await client.conversations_open(users=user_id)
        return str((opened.get("channel") or {}).get("id"))

    async def _refused(self, client: AsyncWebClient, user_id: str) -> bool:
        refusal = self.policy.user_refusal(user_id)
        if refusal is not None:
            self.bridge.spawn(self._dm(client, user_id, refusal.message), name="contacts-refused")
            return True
        return False

    # -- the buttons ------------------------------------------------------------------------------------------------

    async def on_add(self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        if not await self._refused(client, self._user(body)):
            await client.views_open(trigger_id=str(body.get("trigger_id", "")), view=add_view())

    async def on_import(self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        if not await self._refused(client, self._user(body)):
            await client.views_open(trigger_id=str(body.get("trigger_id", "")),
                                    view=import_view(self.config.default_region))

    async def on_export(self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        user_id = self._user(body)
        if not await self._refused(client, user_id):
            self.bridge.spawn(self._export(client, user_id), name="contacts-export")

    async def _export(self, client: AsyncWebClient, user_id: str) -> None:
        try:
            text, count = await self.people.export_csv()
        except StoreUnavailable:
            log.exception("contacts export not read")
            await self._dm(client, user_id, NOT_RECORDED.replace("Nothing changed", "Nothing was exported"))
            return
        try:
            channel = await self._dm_channel(client, user_id)
            await client.files_upload_v2(channel=channel, content=text.encode(), filename="contacts.csv",
                                         title="Contacts (name,number)",
                                         initial_comment=f"📇 {count} contact{'s' if count != 1 else ''}, as CSV.")
        except SlackApiError as exc:
            log.warning("contacts export not uploaded: %s", exc.response.get("error"))
            await self._dm(client, user_id, f"⚠️ The export could not be uploaded ({exc.response.get('error')}); "
                                            "is the `files:write` scope granted?")

    # -- the forms ---------------------------------------------------------------------------------------------------

    async def on_add_submit(self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        values = _values(body)
        user_id = self._user(body)
        errors: dict[str, str] = {}
        try:
            name = book.check_name(_typed(values, "name"))
        except book.ContactCommandError as exc:
            errors["name"] = exc.message
        try:
            number = normalize_number(_typed(values, "number"), self.config.default_region)
        except InvalidNumber as exc:
            errors["number"] = f"{exc}. Use the full number with country code, e.g. +1 555 123 4567."
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        ok, text = await self.people.add_contact(name, number, user_id)
        if not ok:
            await ack(response_action="errors", errors={"name": text})
            return
        await ack()
        self.bridge.spawn(self._dm(client, user_id, text), name="contacts-added")

    async def on_import_submit(self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        block = _values(body).get("file") or {}
        entry: Any = (block.get("file") or next(iter(block.values()), {})) if isinstance(block, dict) else {}
        files = entry.get("files") if isinstance(entry, dict) else None
        ids = [str(f.get("id")) for f in files or [] if isinstance(f, dict) and f.get("id")]
        if len(ids) != 1:
            await ack(response_action="errors", errors={"file": "Attach one CSV file."})
            return
        # Acknowledged at once: the download and the import may take longer than Slack's 3 seconds.
        await ack()
        self.bridge.spawn(self._import(client, self._user(body), ids[0]), name="contacts-import")

    async def _import(self, client: AsyncWebClient, user_id: str, file_id: str) -> None:
        try:
            name, data = await self.files.fetch_data(client, file_id)
        except MediaRefused as exc:
            await self._dm(client, user_id, f"⚠️ Nothing was imported: {exc.message}")
            return
        except MediaUnavailable:
            log.warning("contacts CSV %s not downloaded", file_id, exc_info=True)
            await self._dm(client, user_id, "⚠️ Nothing was imported: Slack did not hand over the file. Try again.")
            return
        report = await self.people.import_csv(data, user_id)
        await self._dm(client, user_id, f"*Import of {book.safe_name(name)}*\n{report}")


def register(app: AsyncApp, actions: ContactsActions) -> None:
    app.action(ADD_ACTION)(actions.on_add)
    app.action(IMPORT_ACTION)(actions.on_import)
    app.action(EXPORT_ACTION)(actions.on_export)
    app.view(ADD_FORM)(actions.on_add_submit)
    app.view(IMPORT_FORM)(actions.on_import_submit)
