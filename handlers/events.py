"""Slack ``message`` events: a human's reply in a bridged thread goes out as SMS.

Owns: filtering events (bots, our own posts, edits, deletions, subtypes, top-level messages), deduplicating Slack's
retries by message, resolving mentioned users' display names, and handing the reply to ``bridge.two_way``.
Must not import: storage or SignalWire modules (everything goes through ``TwoWay`` / ``Bridge``).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge import conversations
from bridge.access import AccessGate, AuditAction
from bridge.service import utcnow
from bridge.two_way import TwoWay
from handlers.notify import ephemeral_notifier

log = logging.getLogger("handlers.events")


def is_human_thread_reply(event: dict[str, Any], bot_user_id: str | None) -> bool:
    """Only a plain new message by a person, inside a thread: everything else must never text anyone."""
    if event.get("subtype") or event.get("bot_id") or event.get("bot_profile"):
        return False
    user = event.get("user")
    if not user or user == bot_user_id:
        return False
    thread_ts, ts = event.get("thread_ts"), event.get("ts")
    return bool(thread_ts and ts and thread_ts != ts and isinstance(event.get("text"), str))


async def display_names(client: AsyncWebClient, user_ids: set[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    for user_id in sorted(user_ids):
        try:
            response = await client.users_info(user=user_id)
        except SlackApiError as exc:
            log.info("users.info %s failed: %s", user_id, exc.response.get("error"))
            continue
        user = response.get("user") or {}
        profile = user.get("profile") or {}
        name = profile.get("display_name") or profile.get("real_name") or user.get("real_name") or user.get("name")
        if name:
            names[user_id] = str(name)
    return names


class ThreadReplies:
    def __init__(self, two_way: TwoWay, gate: AccessGate) -> None:
        self.two_way = two_way
        self.gate = gate

    async def handle(self, event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient) -> None:
        # Bolt has already acknowledged the event (process_before_response=False); the send runs in the bridge's
        # background so shutdown drains it.
        if not is_human_thread_reply(event, context.bot_user_id):
            return
        bridge = self.two_way.bridge
        bridge.spawn(self._reply(event, client), name="thread-reply")

    async def _reply(self, event: dict[str, Any], client: AsyncWebClient) -> None:
        channel, thread_ts, ts = str(event["channel"]), str(event["thread_ts"]), str(event["ts"])
        text, user = str(event["text"]), str(event["user"])
        if conversations.is_internal_note(text) or not await self.two_way.is_bridged(channel, thread_ts):
            return
        # A message's ts is unique in its channel: Slack's retries (X-Slack-Retry-Num) carry the same one.
        if not await self.two_way.bridge.store.claim_slack_event(f"{channel}:{ts}", utcnow()):
            log.info("Slack redelivered message %s; already handled", ts)
            return
        notify = ephemeral_notifier(client, channel, user)
        admission = await self.gate.admit(user_id=user, channel_id=channel, action=AuditAction.REPLY)
        if admission.refusal is not None:
            await notify(admission.refusal.message)
            return
        names = await display_names(client, conversations.mentioned_users(text))
        await self.gate.track(admission, self.two_way.send_reply(
            channel_id=channel, thread_ts=thread_ts, ts=ts, user_id=user, text=text, user_names=names,
            notify=notify, team_id=str(event.get("team", "")),
        ))


def register(app: AsyncApp, replies: ThreadReplies) -> None:
    app.event("message")(replies.handle)
