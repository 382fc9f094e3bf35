"""Slack ``message`` events: a human's reply in a bridged thread goes out as SMS.

Owns: filtering events (bots, our own posts, edits, deletions, subtypes, top-level messages), storing a reply as
Slack delivered it before Slack is answered (a Bolt middleware, after signature verification; a store that does
not answer gets Slack a 503, so Slack retries), deduplicating Slack's retries by message (the stored reply is the
claim), resolving mentioned users' display names, a ``file_share`` reply's pictures (issue 11: their Slack file ids are
stored with the reply; ``handlers.slack_files`` downloads and checks them, ``bridge.media`` publishes them, and the
reply goes out as MMS — or is explained, nothing sent), handing the reply to ``bridge.two_way``, and ``resume`` for
``bridge.recovery`` (replies a crash left unfinished).
Must not import: storage or SignalWire modules (everything goes through ``TwoWay`` / ``Bridge``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge import conversations
from bridge.access import AccessGate
from bridge.media import MediaRefused, MediaShelf, MediaUnavailable
from bridge.model import AuditAction, SlackReply
from bridge.ports import is_transient, utcnow
from bridge.storage.port import StoreUnavailable
from bridge.two_way import Received, TwoWay
from handlers.notify import ephemeral_notifier
from handlers.slack_files import SlackFiles
from handlers.slack_out import port_error

log = logging.getLogger("handlers.events")


# "Also send to channel" replies are thread replies too, and so are replies with files (sent as MMS, issue 11);
# every other subtype (edits, deletions, joins, bot messages, ...) never texts anyone.
REPLY_SUBTYPES = frozenset({"thread_broadcast", "file_share"})
# users.info: attempts and the pause before each retry, for errors that may pass (5xx, 429, transport, timeout).
NAME_LOOKUP_PAUSES = (0.5, 1.5)
NAME_LOOKUP_SECONDS = 5.0
# A reply under one of our posts that is not (yet) a conversation's thread is looked at again for this long: the
# outbox records a new conversation's thread only after Slack answered its post.
LATE_THREAD_SECONDS = 3.0
LATE_THREAD_POLL = 0.25


def is_human_thread_reply(event: dict[str, Any], bot_user_id: str | None) -> bool:
    """Only a new message by a person, inside a thread: everything else must never text anyone."""
    subtype = event.get("subtype")
    if (subtype and subtype not in REPLY_SUBTYPES) or event.get("bot_id") or event.get("bot_profile"):
        return False
    if subtype == "file_share" and not reply_file_ids(event):
        return False  # a "file share" without files has nothing to send as MMS
    user = event.get("user")
    if not user or user == bot_user_id:
        return False
    thread_ts, ts = event.get("thread_ts"), event.get("ts")
    return bool(thread_ts and ts and thread_ts != ts and isinstance(event.get("text"), str))


async def display_names(client: AsyncWebClient, user_ids: set[str],
                        budget: float | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """(names found, user id → why not) for the mentioned users, within ``budget`` seconds in all (users not looked
    up by then count as failed)."""
    names: dict[str, str] = {}
    failed: dict[str, str] = {}
    try:
        async with asyncio.timeout(budget):
            await _display_names(client, user_ids, names, failed)
    except TimeoutError:
        log.warning("users.info: no answer for every mentioned user within %.1fs; giving up", budget)
        failed.update({u: f"no answer within {budget:.0f}s" for u in user_ids if u not in names and u not in failed})
    return names, failed


async def _display_names(client: AsyncWebClient, user_ids: set[str], names: dict[str, str],
                         failed: dict[str, str]) -> None:
    """Fill ``names`` (names found) and ``failed`` (user id → why not) for the mentioned users.

    A user Slack says does not exist (or that we may not look up) is left out of both: the reply shows the label
    Slack gave, else the id. A failure that may pass (5xx, 429, a transport error, a timeout) is retried a couple of
    times, then reported, so the caller can say why the reply was not texted instead of sending it half-resolved.
    """
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


# Where the middleware leaves what it did with the event for the listener (Bolt's context is per request).
RECEIVED = "sms_bridge_reply_received"
# A reply whose processing failed this many times (the store not answering, a bug) is explained instead.
MAX_REPLY_ATTEMPTS = 5


def slack_reply(event: dict[str, Any], body: dict[str, Any]) -> SlackReply:
    """The stored form of a thread reply (``is_human_thread_reply`` has passed)."""
    return SlackReply(
        channel_id=str(event.get("channel", "")), thread_ts=str(event["thread_ts"]), ts=str(event["ts"]),
        user_id=str(event["user"]), text=str(event["text"]),
        team_id=str(event.get("team") or body.get("team_id") or ""),
        subtype=str(event["subtype"]) if event.get("subtype") else None,
        files=reply_file_ids(event),
    )


def reply_file_ids(event: dict[str, Any]) -> tuple[str, ...]:
    """The Slack file ids of a ``file_share`` reply, in order (stored with the reply: a crash cannot lose them)."""
    files = event.get("files")
    if not isinstance(files, list):
        return ()
    return tuple(str(f["id"]) for f in files if isinstance(f, dict) and isinstance(f.get("id"), str) and f["id"])


def _message_event(body: dict[str, Any]) -> dict[str, Any] | None:
    event = body.get("event") if body.get("type") == "event_callback" else None
    if isinstance(event, dict) and event.get("type") == "message" and event.get("channel"):
        return event
    return None


class ThreadReplies:
    """A thread reply is stored as Slack delivered it before Slack is answered (``record``, a Bolt middleware: it
    runs after Bolt verified the signature and before the ack), then turned into one SMS or one explanation
    (``process``) — by the listener, or after a crash by ``bridge.recovery`` through ``resume``."""

    def __init__(self, two_way: TwoWay, gate: AccessGate, *, lease: float = 30.0, files: SlackFiles | None = None,
                 shelf: MediaShelf | None = None) -> None:
        self.two_way = two_way
        self.gate = gate
        self.lease = lease
        # -- issue 11: outbound MMS. Without them (tests of the text path) a reply's files are not downloaded.
        self.files = files
        self.shelf = shelf

    async def record(self, body: dict[str, Any], context: AsyncBoltContext,
                     next: Callable[[], Awaitable[BoltResponse | None]]) -> BoltResponse | None:
        event = _message_event(body)
        if event is not None and is_human_thread_reply(event, context.bot_user_id):
            received = await self.two_way.record_reply(slack_reply(event, body), lease=self.lease)
            if received is Received.NOT_RECORDED:
                # Not stored, so not acknowledged: Slack retries the event (up to 3 times).
                return BoltResponse(status=503, body="the reply could not be recorded; please retry")
            context[RECEIVED] = (received, slack_reply(event, body))
        return await next()

    async def handle(self, event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient) -> None:
        # Bolt has already acknowledged the event (process_before_response=False); the send runs in the bridge's
        # background so shutdown drains it.
        found = context.get(RECEIVED)
        if found is None:
            return  # not a human thread reply (or the middleware did not see it)
        received, reply = found
        if received is Received.SKIPPED:
            if event.get("parent_user_id") == context.bot_user_id and not conversations.is_internal_note(reply.text):
                # A reply under one of our own posts that is not a conversation's thread (yet): maybe it is the
                # parent of a new conversation whose ts the outbox records only once Slack's answer is in, and a
                # quick reply beat that. Look again for a moment before letting it go.
                self.two_way.bridge.spawn(self._late_thread(reply, client), name="thread-reply-late")
            return
        if received is Received.AGAIN:
            # Slack's retry: ours to finish only if the first delivery's claim ran out unfinished (it was stored
            # but its process could not go on); otherwise it is done or in hand.
            claimed = await self.two_way.claim_reply(reply.channel_id, reply.ts, lease=self.lease)
            if claimed is None:
                log.info("Slack redelivered message %s; already stored", reply.ts)
                return
            reply = claimed
        self.two_way.bridge.spawn(self.process(reply, client), name="thread-reply")

    async def _late_thread(self, reply: SlackReply, client: AsyncWebClient) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LATE_THREAD_SECONDS
        while loop.time() < deadline:
            await asyncio.sleep(LATE_THREAD_POLL)
            if await self.two_way.is_bridged(reply.channel_id, reply.thread_ts):
                if await self.two_way.record_reply(reply, lease=self.lease) is Received.NEW:
                    await self.process(reply, client)
                return

    async def resume(self, reply: SlackReply, client: AsyncWebClient) -> None:
        """``bridge.recovery``'s resume step: claim a reply left unfinished (a crash) and finish it."""
        claimed = await self.two_way.claim_reply(reply.channel_id, reply.ts, lease=self.lease)
        if claimed is None:
            return  # another process took it, or it was finished meanwhile
        log.warning("thread reply %s in %s was received but never finished (interrupted); resuming", reply.ts,
                    reply.channel_id)
        await self.process(claimed, client)

    async def process(self, reply: SlackReply, client: AsyncWebClient) -> None:
        """Claimed: end in one SMS or one explanation (then the reply is finished). If that fails (the store does
        not answer, or a bug) the claim is left to run out and the sweeper tries again, ``MAX_REPLY_ATTEMPTS``
        times, then explains."""
        try:
            await self._process(reply, client)
        except StoreUnavailable as exc:
            log.warning("thread reply %s: the store did not answer (%s); trying again in %.0fs", reply.ts, exc,
                        self.lease)
        except MediaUnavailable as exc:
            log.warning("thread reply %s: its files could not be fetched from Slack (%s); trying again in %.0fs",
                        reply.ts, exc, self.lease)

    async def _process(self, reply: SlackReply, client: AsyncWebClient) -> None:
        channel, thread_ts, ts, text, user = reply.channel_id, reply.thread_ts, reply.ts, reply.text, reply.user_id
        if reply.attempts > MAX_REPLY_ATTEMPTS:
            await self.two_way.reply_not_texted(
                channel_id=channel, thread_ts=thread_ts, ts=ts,
                why=f"sms-bridge could not process it in {MAX_REPLY_ATTEMPTS} attempts (its log says why). "
                    "Nothing was sent: post the reply again.")
            return
        if conversations.is_internal_note(text) or not await self.two_way.is_bridged(channel, thread_ts):
            await self.two_way.finish_reply(reply, "not a texted reply")
            return
        # A message's ts is unique in its channel: an intent stored by an earlier attempt is resumed, not doubled.
        if await self.two_way.stored_reply(channel, ts) is not None:
            await self.two_way.finish_reply(reply, "intent stored before")
            return
        notify = ephemeral_notifier(client, channel, user)
        admission = await self.gate.admit(user_id=user, channel_id=channel, action=AuditAction.REPLY)
        if admission.refusal is not None:
            await notify(admission.refusal.message)
            await self.two_way.finish_reply(reply, "refused")
            return
        # Within half the claim: the reply is finished (or explained) long before the sweeper may take it over.
        names, failed = await display_names(client, conversations.mentioned_users(text), budget=self.lease / 2)
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
        media: tuple[str, ...] = ()
        if reply.files:
            try:
                media = await self._publish(reply, client)
            except MediaRefused as exc:
                await self.gate.link(admission, None, "not sent (files refused)")
                await self.two_way.reply_not_texted(
                    channel_id=channel, thread_ts=thread_ts, ts=ts, why=f"{exc.message} Nothing was sent.")
                return
            except MediaUnavailable:
                await self.gate.link(admission, None, "not sent yet (Slack files unavailable)")
                raise
        sent = await self.gate.track(admission, self.two_way.send_reply(
            channel_id=channel, thread_ts=thread_ts, ts=ts, user_id=user, text=text, user_names=names,
            notify=notify, team_id=reply.team_id, media=media,
        ))
        if sent is None:
            # Nothing to text, or refused (the user or the thread was told): finished without an intent. An
            # intent, when stored, finished the reply in the same transaction.
            await self.two_way.finish_reply(reply, "not texted")

    async def _publish(self, reply: SlackReply, client: AsyncWebClient) -> tuple[str, ...]:
        """-- issue 11: the reply's files, downloaded, checked and published: their /media URLs, in order."""
        if self.files is None or self.shelf is None:
            raise MediaRefused("sms-bridge is not set up to send pictures.")
        pictures = await self.files.fetch_ids(client, reply.files)
        return await self.shelf.publish(pictures, utcnow())


def register(app: AsyncApp, replies: ThreadReplies) -> None:
    app.middleware(replies.record)
    app.event("message")(replies.handle)
