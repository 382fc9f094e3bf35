"""Slack ``message`` events: a human's reply in a bridged thread goes out as SMS.

Owns: filtering events (bots, our own posts, edits, deletions, subtypes, top-level messages), deduplicating Slack's
retries by message, resolving mentioned users' display names, and handing the reply to ``bridge.two_way``.
Must not import: storage or SignalWire modules (everything goes through ``TwoWay`` / ``Bridge``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge import conversations
from bridge.access import AccessGate, AuditAction
from bridge.outbox import is_transient
from bridge.two_way import TwoWay
from handlers.notify import ephemeral_notifier
from handlers.slack_out import port_error

log = logging.getLogger("handlers.events")


# "Also send to channel" replies are thread replies too; every other subtype (edits, deletions, joins, bot and
# file-share messages, ...) never texts anyone.
REPLY_SUBTYPES = frozenset({"thread_broadcast"})
# users.info: attempts and the pause before each retry, for errors that may pass (5xx, 429, transport, timeout).
NAME_LOOKUP_PAUSES = (0.5, 1.5)
NAME_LOOKUP_SECONDS = 5.0


def is_human_thread_reply(event: dict[str, Any], bot_user_id: str | None) -> bool:
    """Only a new message by a person, inside a thread: everything else must never text anyone."""
    subtype = event.get("subtype")
    if (subtype and subtype not in REPLY_SUBTYPES) or event.get("bot_id") or event.get("bot_profile"):
        return False
    user = event.get("user")
    if not user or user == bot_user_id:
        return False
    thread_ts, ts = event.get("thread_ts"), event.get("ts")
    return bool(thread_ts and ts and thread_ts != ts and isinstance(event.get("text"), str))


async def display_names(client: AsyncWebClient, user_ids: set[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(names found, user id → why not) for the mentioned users.

    A user Slack says does not exist (or that we may not look up) is left out of both: the reply shows the label
    Slack gave, else the id. A failure that may pass (5xx, 429, a transport error, a timeout) is retried a couple of
    times, then reported, so the caller can say why the reply was not texted instead of sending it half-resolved.
    """
    names: dict[str, str] = {}
    failed: dict[str, str] = {}
    for user_id in sorted(user_ids):
        for pause in (*NAME_LOOKUP_PAUSES, None):
            try:
                async with asyncio.timeout(NAME_LOOKUP_SECONDS):
                    response = await client.users_info(user=user_id)
            except (SlackApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                error = port_error(exc)
                if not is_transient(error):
                    log.info("users.info %s failed: %s", user_id, error)
                    break
                if pause is None:
                    log.warning("users.info %s failed: %s; giving up", user_id, error)
                    failed[user_id] = str(error)
                    break
                log.info("users.info %s failed: %s; trying again in %.1fs", user_id, error, pause)
                await asyncio.sleep(pause)
                continue
            user = response.get("user") or {}
            profile = user.get("profile") or {}
            name = (profile.get("display_name") or profile.get("real_name") or user.get("real_name")
                    or user.get("name"))
            if name:
                names[user_id] = str(name)
            break
    return names, failed


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
        # A message's ts is unique in its channel: Slack's retries (X-Slack-Retry-Num) carry the same one. The
        # claim is the stored intent itself (Bridge.accept), so nothing is claimed that could then be lost; this
        # look-up only keeps a retry from being counted and audited as a second send.
        if await self.two_way.stored_reply(channel, ts) is not None:
            log.info("Slack redelivered message %s; already stored", ts)
            return
        notify = ephemeral_notifier(client, channel, user)
        admission = await self.gate.admit(user_id=user, channel_id=channel, action=AuditAction.REPLY)
        if admission.refusal is not None:
            await notify(admission.refusal.message)
            return
        names, failed = await display_names(client, conversations.mentioned_users(text))
        if failed:
            who = ", ".join(f"<@{u}>" for u in sorted(failed))
            await self.gate.link(admission, None, "not sent (users.info failed)")
            await self.two_way.reply_not_texted(
                channel_id=channel, thread_ts=thread_ts, ts=ts,
                why=(f"Slack did not answer when I looked up the name of {who} "
                     f"(users.info: {next(iter(failed.values()))}), and an SMS must not carry a Slack id. "
                     "Nothing was sent: post the reply again, or write the name out."),
            )
            return
        await self.gate.track(admission, self.two_way.send_reply(
            channel_id=channel, thread_ts=thread_ts, ts=ts, user_id=user, text=text, user_names=names,
            notify=notify, team_id=str(event.get("team", "")),
        ))


def register(app: AsyncApp, replies: ThreadReplies) -> None:
    app.event("message")(replies.handle)
