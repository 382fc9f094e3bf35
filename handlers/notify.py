"""Telling one Slack user something privately: via a slash command's ``respond`` or ``chat.postEphemeral``.

Owns: the two ``Notify`` factories handlers pass to the bridge. Must not import: storage, SignalWire modules.
"""

from __future__ import annotations

import logging

from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge.service import Notify

log = logging.getLogger("handlers.notify")


def respond_notifier(respond: AsyncRespond) -> Notify:
    async def notify(text: str) -> None:
        try:
            await respond(text=text, response_type="ephemeral", replace_original=False)
        except Exception:  # the response_url may have expired (30 min); the thread still tells the story
            log.warning("could not answer through response_url", exc_info=True)

    return notify


def ephemeral_notifier(client: AsyncWebClient, channel_id: str, user_id: str) -> Notify:
    async def notify(text: str) -> None:
        try:
            await client.chat_postEphemeral(channel=channel_id, user=user_id, text=text)
        except SlackApiError as exc:
            log.warning("could not post ephemeral note: %s", exc.response.get("error"))

    return notify
