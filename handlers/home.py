"""The App Home tab (issue 12): on ``app_home_opened`` (tab ``home``), publish the opener's Home with ``views.publish``.

Owns: the ``app_home_opened`` listener, gathering what ``bridge.home.home_view`` renders (the store's
``home_summary`` and ``recent_conversations``, the threads' permalinks, the bridge's numbers / mode / engine) and
publishing it best-effort: at most one publish in flight per user (an open meanwhile publishes once more after it,
with fresh data), permalinks fetched concurrently but at most ``PERMALINK_CONCURRENCY`` at a time and cached, the
whole publish bounded by ``PUBLISH_SECONDS``; a Slack or store error is logged (Slack's error code, never a token)
and never raised. Slack's 3 s ack is not involved: Bolt answers the event before the listener runs.
The two sections other slices fill are the marked call sites in ``AppHome.build`` (contacts, scheduled sends).
Must not import: storage or SignalWire modules (the store is reached through ``Bridge.store``'s port).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge.access import AccessPolicy
from bridge.config import Config
from bridge.home import ConversationLine, HomeStatus, contacts_section, engine_name, home_view
from bridge.model import RecentConversation
from bridge.ports import utcnow
from bridge.schedule import scheduled_blocks
from bridge.service import Bridge
from bridge.storage.port import StoreUnavailable
from handlers.schedule import UserZones
from handlers.slack_out import port_error

log = logging.getLogger("handlers.home")

PUBLISH_SECONDS = 15.0        # gathering and publishing one Home, in all
PERMALINK_SECONDS = 3.0       # one chat.getPermalink
PERMALINK_CONCURRENCY = 4     # chat.getPermalink calls in flight for one Home
PERMALINK_CACHE = 1000        # (channel, thread ts) → permalink; a message's permalink never changes
_SLACK_ERRORS = (SlackApiError, aiohttp.ClientError, OSError, TimeoutError)


class AppHome:
    """Publishes a user's Home tab when they open it; one instance per process."""

    def __init__(self, bridge: Bridge, config: Config, policy: AccessPolicy | None = None, *,
                 publish_seconds: float = PUBLISH_SECONDS, permalink_seconds: float = PERMALINK_SECONDS,
                 permalink_concurrency: int = PERMALINK_CONCURRENCY) -> None:
        self.bridge = bridge
        self.config = config
        # Who may read the conversations' texts: the people who may send (an empty SMS_ALLOWED_USERS is everyone).
        self.policy = policy or AccessPolicy.build(config.allowed_users, config.allowed_channels,
                                                   config.rate_limit_per_user)
        self.publish_seconds = publish_seconds
        self.permalink_seconds = permalink_seconds
        self.permalink_concurrency = permalink_concurrency
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._permalinks: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.zones = UserZones()

    async def opened(self, event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab") != "home":
            return  # the Messages tab: nothing to publish
        user = event.get("user")
        if not isinstance(user, str) or not user:
            return
        self.request(user, client)

    def request(self, user: str, client: AsyncWebClient) -> None:
        """Publish ``user``'s Home in the background; if one is in flight, publish once more after it instead."""
        if user in self._running:
            self._again.add(user)
            return
        self._running[user] = self.bridge.spawn(self._publish_until_current(user, client), name="app-home")

    async def _publish_until_current(self, user: str, client: AsyncWebClient) -> None:
        try:
            while True:
                self._again.discard(user)
                await self.publish(user, client)
                if user not in self._again:
                    return
        finally:
            self._running.pop(user, None)
            self._again.discard(user)

    async def publish(self, user: str, client: AsyncWebClient) -> bool:
        """Build and publish ``user``'s Home; False (logged, not raised) if the store or Slack failed."""
        try:
            async with asyncio.timeout(self.publish_seconds):
                view = await self.build(user, client)
                await client.views_publish(user_id=user, view=view)
        except StoreUnavailable as exc:
            log.warning("App Home of %s not published: the store did not answer (%s)", user, exc)
            return False
        except TimeoutError:
            log.warning("App Home of %s not published: not done within %.0fs", user, self.publish_seconds)
            return False
        except _SLACK_ERRORS as exc:
            log.warning("App Home of %s not published: views.publish failed (%s)", user, port_error(exc))
            return False
        return True

    async def build(self, user: str, client: AsyncWebClient) -> dict[str, Any]:
        store = self.bridge.store
        summary = await store.home_summary()
        hidden = self.policy.user_refusal(user) is not None
        recent = [] if hidden else await store.recent_conversations(limit=10)
        links = await self.permalinks(client, recent)
        # -- issue 12 (contacts slice): contact names by number for the conversation list, and the contacts count.
        names = await self.bridge.names.names_of(c.their_number for c in recent)
        contacts_count: int | None = await store.contacts_count()
        # The opener's own pending scheduled sends, with Cancel buttons, in their Slack time zone.
        pending = [] if hidden else await store.scheduled_of_user(user)
        scheduled: list[dict[str, Any]] = [] if hidden else scheduled_blocks(
            pending, utcnow(), await self.zones.get(client, user),
            await self.bridge.names.names_of(i.sms.to for i in pending))
        status = HomeStatus(numbers=self.config.from_numbers, simulated=self.bridge.simulated,
                            engine=engine_name(self.config.database_url), summary=summary)
        lines = [ConversationLine(c, names.get(c.their_number), links.get((c.channel_id, c.thread_ts)))
                 for c in recent]
        return home_view(status, lines, contacts_blocks=contacts_section(contacts_count), scheduled_blocks=scheduled,
                         conversations_hidden=hidden)

    async def permalinks(self, client: AsyncWebClient,
                         conversations: list[RecentConversation]) -> dict[tuple[str, str], str]:
        """Each thread's permalink (cached), fetched ``permalink_concurrency`` at a time; a failure means no link."""
        wanted = {(c.channel_id, c.thread_ts) for c in conversations}
        found = {key: self._permalinks[key] for key in wanted if key in self._permalinks}
        limit = asyncio.Semaphore(self.permalink_concurrency)

        async def fetch(channel: str, ts: str) -> None:
            async with limit:
                try:
                    async with asyncio.timeout(self.permalink_seconds):
                        response = await client.chat_getPermalink(channel=channel, message_ts=ts)
                except _SLACK_ERRORS as exc:
                    log.info("chat.getPermalink %s %s failed: %s; the Home shows no link", channel, ts,
                             port_error(exc))
                    return
            link = response.get("permalink")
            if isinstance(link, str) and link:
                found[(channel, ts)] = link
                self._remember((channel, ts), link)

        await asyncio.gather(*(fetch(channel, ts) for channel, ts in sorted(wanted - found.keys())))
        return found

    def _remember(self, key: tuple[str, str], link: str) -> None:
        self._permalinks[key] = link
        self._permalinks.move_to_end(key)
        while len(self._permalinks) > PERMALINK_CACHE:
            self._permalinks.popitem(last=False)


def register(app: AsyncApp, home: AppHome) -> None:
    app.event("app_home_opened")(home.opened)
