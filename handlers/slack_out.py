"""Outgoing Slack Web API calls for the bridge: the ``SlackPort`` implementation over slack_sdk.

Owns: building the one ``AsyncWebClient`` (base URL, timeout, slack_sdk's own retry handlers, kept to one quick
retry each because ``bridge.outbox`` owns retrying) and turning slack_sdk / aiohttp errors into
``SlackPortError`` — ``SlackTransientError`` (with ``Retry-After``) for what may succeed later; counting Web API
calls and slack_sdk's retries by method in ``bridge.metrics.Metrics`` when given one.
Must not import: ``handlers`` siblings (it is a leaf), storage.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bridge.metrics import Metrics
from bridge.ports import SlackPortError, SlackTransientError

log = logging.getLogger("handlers.slack_out")

SLACK_TIMEOUT_SECONDS = 10
METADATA_EVENT = "sms_bridge_post"
# Slack error codes that mean "Slack's side, try later" even when the HTTP status does not say so.
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# A Retry-After beyond this is treated as garbage rather than held for hours.
MAX_RETRY_AFTER = 3600.0

T = TypeVar("T")


class MeteredWebClient(AsyncWebClient):
    """Counts every Web API call (Bolt's and ours: they share this client) by method and result."""

    metrics: Metrics | None = None

    async def api_call(self, api_method: str, *args: Any, **kwargs: Any) -> AsyncSlackResponse:
        if self.metrics is None:
            return await super().api_call(api_method, *args, **kwargs)
        try:
            response = await super().api_call(api_method, *args, **kwargs)
        except Exception:  # a cancellation is not Slack's failure
            self.metrics.slack_calls.labels(method=api_method, result="error").inc()
            raise
        self.metrics.slack_calls.labels(method=api_method, result="ok").inc()
        return response


class CountedRetries(AsyncRetryHandler):
    """One of slack_sdk's retry handlers, with each retry it makes counted by API method."""

    def __init__(self, inner: AsyncRetryHandler, metrics: Metrics) -> None:
        super().__init__(max_retry_count=inner.max_retry_count, interval_calculator=inner.interval_calculator)
        self._inner = inner
        self._metrics = metrics

    async def can_retry_async(self, *, state: RetryState, request: HttpRequest,
                              response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        return await self._inner.can_retry_async(state=state, request=request, response=response, error=error)

    async def prepare_for_next_attempt_async(self, *, state: RetryState, request: HttpRequest,
                                             response: HttpResponse | None = None,
                                             error: Exception | None = None) -> None:
        # The method is the last path segment of the URL (…/api/chat.postMessage).
        self._metrics.slack_retries.labels(method=request.url.rstrip("/").rsplit("/", 1)[-1]).inc()
        await self._inner.prepare_for_next_attempt_async(state=state, request=request, response=response,
                                                         error=error)


def make_web_client(token: str, base_url: str, metrics: Metrics | None = None) -> AsyncWebClient:
    # One quick retry each smooths a blip inside a single call; anything longer is the outbox's job, where a wait
    # does not hold the caller and survives a restart.
    handlers: list[AsyncRetryHandler] = [
        AsyncConnectionErrorRetryHandler(max_retry_count=1),
        AsyncRateLimitErrorRetryHandler(max_retry_count=1),
        AsyncServerErrorRetryHandler(max_retry_count=1),
    ]
    if metrics is not None:
        handlers = [CountedRetries(handler, metrics) for handler in handlers]
    client = MeteredWebClient(token=token, base_url=base_url, timeout=SLACK_TIMEOUT_SECONDS,
                              retry_handlers=handlers)
    client.metrics = metrics
    return client


def _retry_after(headers: Mapping[str, Any] | None) -> float | None:
    for key, value in (headers or {}).items():
        if key.lower() == "retry-after":
            # slack_sdk may hand over a list of values; Slack sends whole seconds.
            raw = value[0] if isinstance(value, list | tuple) and value else value
            try:
                seconds = float(raw)
            except (TypeError, ValueError):
                return None
            return min(max(seconds, 0.0), MAX_RETRY_AFTER)
    return None


def port_error(exc: Exception) -> SlackPortError:
    """Classify a slack_sdk / transport error: ``SlackTransientError`` if retrying may help."""
    if isinstance(exc, SlackApiError):
        response = exc.response
        status = int(getattr(response, "status_code", 200) or 200)
        data = getattr(response, "data", None)
        code = data.get("error") if isinstance(data, dict) else None
        code = str(code or ("slack_error" if status == 200 else f"http_{status}"))
        if status == 429 or status >= 500 or code in TRANSIENT_ERRORS:
            return SlackTransientError(code, _retry_after(getattr(response, "headers", None)))
        return SlackPortError(code)
    if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
        return SlackTransientError(f"Slack unreachable: {type(exc).__name__}")
    # SlackRequestError: slack_sdk refused to build the request; sending it again cannot help.
    return SlackPortError(f"Slack request invalid: {type(exc).__name__}")


async def _call(request: Awaitable[T]) -> T:
    try:
        return await request
    except (SlackApiError, SlackRequestError, aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise port_error(exc) from exc


class SlackOut:
    """Posts and updates messages; links and media never unfurl (user text must not fetch URLs)."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def post(
        self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None, thread_ts: str | None = None,
        *, key: str | None = None,
    ) -> str:
        # ``key`` rides along as Slack message metadata so a post whose answer was lost can be found again.
        metadata = {"event_type": METADATA_EVENT, "event_payload": {"key": key}} if key else None
        response = await _call(
            self.client.chat_postMessage(
                channel=channel, text=text, blocks=blocks, thread_ts=thread_ts,
                unfurl_links=False, unfurl_media=False, metadata=metadata,
            )
        )
        return str(response["ts"])

    async def find_posted(self, channel: str, key: str, thread_ts: str | None = None) -> str | None:
        """The ``ts`` of our earlier post carrying ``key``, if Slack has it (recent history / the thread)."""
        if thread_ts:
            call = self.client.conversations_replies(channel=channel, ts=thread_ts, limit=200,
                                                      include_all_metadata=True)
        else:
            call = self.client.conversations_history(channel=channel, limit=100, include_all_metadata=True)
        response = await _call(call)
        for message in response.get("messages") or []:
            metadata = message.get("metadata") or {}
            if metadata.get("event_type") == METADATA_EVENT and (metadata.get("event_payload") or {}).get("key") == key:
                return str(message["ts"])
        return None

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        await _call(self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks))

    async def react(self, channel: str, ts: str, name: str, *, add: bool = True) -> None:
        if add:
            await _call(self.client.reactions_add(channel=channel, timestamp=ts, name=name))
        else:
            await _call(self.client.reactions_remove(channel=channel, timestamp=ts, name=name))

    async def upload(self, channel: str, thread_ts: str | None, filename: str, content: bytes, *, title: str,
                     comment: str) -> None:
        """-- issue 13: ``files_upload_v2`` (scope files:write), part of ``SlackPort``: the bulk report CSV."""
        await _call(self.client.files_upload_v2(channel=channel, thread_ts=thread_ts, content=content,
                                                filename=filename, title=title, initial_comment=comment))

    async def direct(self, user: str, text: str) -> None:
        """-- issue 12: a message in the bot's DM with ``user`` (``conversations.open``, scope im:write), part of
        ``SlackPort``; used when the channel itself refused (``bridge.scheduler.parent_failed``)."""
        opened = await _call(self.client.conversations_open(users=user))
        await _call(self.client.chat_postMessage(channel=str(opened["channel"]["id"]), text=text))

    async def ephemeral(self, channel: str, user: str, text: str) -> None:
        """Only ``user`` sees it; used by ``bridge.outbox`` for refusals and hints."""
        await _call(self.client.chat_postEphemeral(channel=channel, user=user, text=text))
