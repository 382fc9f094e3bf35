"""Two-way conversations: inbound texts into per-contact Slack threads, thread replies out as SMS, STOP/START/HELP.

Owns: routing an inbound SMS to its conversation's thread (or a new parent in the inbound channel), duplicate
suppression, recording opt-outs and opt-ins, and turning a human's thread reply into a ``SendRequest`` for
``Bridge.submit`` (which refuses opted-out numbers for every send path).
Must not import: aiohttp's server side, Slack packages, ``handlers``. Slack is reached through ``Bridge.slack``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import replace

from bridge import conversations as conv
from bridge.compose import ComposeError, validate_send
from bridge.model import OutboundSms
from bridge.service import Bridge, Notify, SlackPortError, utcnow
from sw_api.models import InboundMessage
from sw_api.text import format_number, mask_number

log = logging.getLogger("bridge.two_way")

NEW_REPLY_REACTION = "incoming_envelope"


class InboundNotPosted(RuntimeError):
    """Slack would not take the inbound text; the webhook should answer 503 so SignalWire delivers it again."""


class TwoWay:
    """Stateless over the store: one instance per surface is fine (locks live in the shared ``Bridge``)."""

    def __init__(
        self,
        bridge: Bridge,
        *,
        inbound_channel: str,
        number_channels: Mapping[str, str],
        from_numbers: tuple[str, ...],
        default_region: str = "US",
    ) -> None:
        self.bridge = bridge
        self.inbound_channel = inbound_channel
        self.number_channels = dict(number_channels)
        self.from_numbers = from_numbers
        self.default_region = default_region

    def channel_for(self, our_number: str) -> str:
        return self.number_channels.get(our_number) or self.inbound_channel

    # -- inbound -----------------------------------------------------------------------------------------------

    async def receive(self, message: InboundMessage) -> bool:
        """Post one inbound text into Slack; False for a duplicate delivery. Raises ``InboundNotPosted``."""
        store = self.bridge.store
        if not await store.claim_inbound(message.message_id, utcnow()):
            log.info("duplicate inbound id=%s ignored", message.message_id)
            return False
        try:
            async with self.bridge.lock(f"conversation:{message.to}:{message.from_}"):
                channel, thread_ts = await self._post(message)
                await store.set_conversation(message.to, message.from_, channel, thread_ts, utcnow())
                await self._apply_keyword(message, channel, thread_ts)
        except BaseException:
            await store.release_inbound(message.message_id)
            raise
        return True

    async def _post(self, message: InboundMessage) -> tuple[str, str]:
        """(channel, thread ts) the text was posted under."""
        slack = self.bridge.slack
        existing = await self.bridge.store.get_conversation(message.to, message.from_)
        if existing is not None:
            try:
                await slack.post(existing.channel_id, conv.inbound_text(message, new_conversation=False),
                                 conv.inbound_blocks(message, new_conversation=False), thread_ts=existing.thread_ts)
            except SlackPortError as exc:
                # The parent was deleted or the bot left the channel: start afresh rather than lose the text.
                log.warning("inbound into thread failed (%s); starting a new parent", exc)
            else:
                # already_reacted is fine: the parent already shows there are replies from the phone.
                with contextlib.suppress(SlackPortError):
                    await slack.react(existing.channel_id, existing.thread_ts, NEW_REPLY_REACTION)
                return existing.channel_id, existing.thread_ts
        channel = self.channel_for(message.to)
        if not channel:
            raise InboundNotPosted("no INBOUND_CHANNEL configured for a new conversation")
        try:
            ts = await slack.post(channel, conv.inbound_text(message, new_conversation=True),
                                  conv.inbound_blocks(message, new_conversation=True))
        except SlackPortError as exc:
            raise InboundNotPosted(f"could not post in {channel}: {exc}") from exc
        return channel, ts

    async def _apply_keyword(self, message: InboundMessage, channel: str, thread_ts: str) -> None:
        keyword = conv.classify_keyword(message.body)
        if keyword is None:
            return
        store, now = self.bridge.store, utcnow()
        if keyword is conv.Keyword.OPT_OUT:
            await store.set_opt_out(message.to, message.from_, conv.keyword_word(message.body), now)
            log.info("opt-out from=%s to=%s", mask_number(message.from_), mask_number(message.to))
        elif keyword is conv.Keyword.OPT_IN:
            await store.clear_opt_out(message.to, message.from_)
            log.info("opt-in from=%s to=%s", mask_number(message.from_), mask_number(message.to))
        try:
            await self.bridge.slack.post(channel, conv.keyword_notice(keyword, message.from_, message.to, now),
                                         thread_ts=thread_ts)
        except SlackPortError as exc:
            log.warning("keyword notice not posted: %s", exc)

    # -- thread replies ----------------------------------------------------------------------------------------

    async def is_bridged(self, channel_id: str, thread_ts: str) -> bool:
        return await self.bridge.store.conversation_by_thread(channel_id, thread_ts) is not None

    async def send_reply(
        self,
        *,
        channel_id: str,
        thread_ts: str,
        ts: str,
        user_id: str,
        text: str,
        user_names: Mapping[str, str],
        notify: Notify,
        team_id: str = "",
    ) -> OutboundSms | None:
        """A human's reply in a bridged thread → SMS to that conversation. Internal notes and empty text are kept."""
        if conv.is_internal_note(text):
            return None
        conversation = await self.bridge.store.conversation_by_thread(channel_id, thread_ts)
        if conversation is None:
            return None
        body = conv.slack_to_sms(text, user_names)
        if not body:
            return None
        if conversation.our_number not in self.from_numbers:
            # The conversation is with a number we no longer send from (removed from SIGNALWIRE_FROM_NUMBERS):
            # never text from a number that may not be ours any more; say so where everyone sees it.
            log.warning("thread reply not texted: conversation number %s is not in SIGNALWIRE_FROM_NUMBERS",
                        mask_number(conversation.our_number))
            await self.bridge.outbox.post(channel_id, channel_id, sender_gone_notice(conversation.our_number),
                                          thread_ts=thread_ts)
            return None
        try:
            request = validate_send(
                to=conversation.their_number, body=body, from_=conversation.our_number,
                from_numbers=self.from_numbers, default_region=self.default_region,
                user_id=user_id, channel_id=channel_id, team_id=team_id, origin="reply",
            )
        except ComposeError as exc:
            await notify(f"⚠️ Your reply was not texted: {exc.message}")
            return None
        return await self.bridge.submit(replace(request, thread_ts=thread_ts, source_ts=ts), notify)


def sender_gone_notice(our_number: str) -> str:
    """The thread's answer to a reply that cannot be texted: its conversation's number is no longer ours."""
    return (f"⚠️ Not texted: this conversation is with our number {format_number(our_number)}, which is no longer "
            "one of sms-bridge's sender numbers (SIGNALWIRE_FROM_NUMBERS), so no SMS was sent. Text them from a "
            "current number with `/sms`, or add the number back to SIGNALWIRE_FROM_NUMBERS.")
