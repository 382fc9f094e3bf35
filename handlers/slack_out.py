"""Outgoing Slack Web API calls for the bridge: the ``SlackPort`` implementation over slack_sdk.

Owns: building the one ``AsyncWebClient`` (base URL, timeout, slack_sdk's own retry handlers for 429 / 5xx /
connection errors) and turning ``SlackApiError`` into ``SlackPortError``.
Must not import: ``handlers`` siblings (it is a leaf), storage.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bridge.service import SlackPortError

log = logging.getLogger("handlers.slack_out")

SLACK_TIMEOUT_SECONDS = 10


def make_web_client(token: str, base_url: str) -> AsyncWebClient:
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        timeout=SLACK_TIMEOUT_SECONDS,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
            AsyncServerErrorRetryHandler(max_retry_count=2),
        ],
    )


class SlackOut:
    """Posts and updates messages; links and media never unfurl (user text must not fetch URLs)."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def post(
        self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None, thread_ts: str | None = None
    ) -> str:
        try:
            response = await self.client.chat_postMessage(
                channel=channel, text=text, blocks=blocks, thread_ts=thread_ts,
                unfurl_links=False, unfurl_media=False,
            )
        except SlackApiError as exc:
            raise SlackPortError(str(exc.response.get("error", "slack_error"))) from exc
        except (SlackRequestError, OSError, TimeoutError) as exc:
            raise SlackPortError(f"Slack unreachable: {type(exc).__name__}") from exc
        return str(response["ts"])

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        try:
            await self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
        except SlackApiError as exc:
            raise SlackPortError(str(exc.response.get("error", "slack_error"))) from exc
        except (SlackRequestError, OSError, TimeoutError) as exc:
            raise SlackPortError(f"Slack unreachable: {type(exc).__name__}") from exc

    async def react(self, channel: str, ts: str, name: str, *, add: bool = True) -> None:
        try:
            if add:
                await self.client.reactions_add(channel=channel, timestamp=ts, name=name)
            else:
                await self.client.reactions_remove(channel=channel, timestamp=ts, name=name)
        except SlackApiError as exc:
            raise SlackPortError(str(exc.response.get("error", "slack_error"))) from exc
        except (SlackRequestError, OSError, TimeoutError) as exc:
            raise SlackPortError(f"Slack unreachable: {type(exc).__name__}") from exc
