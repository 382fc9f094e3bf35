"""The asyncio SignalWire messaging client: sends SMS/MMS and reads the message logs over a given session.

Owns: the I/O half of the gidgethub split (``sw_api.sansio`` does everything that is not I/O), the mapping
of aiohttp's transport exceptions onto ``NotSent`` / ``OutcomeUnknown``, retries, the request log line.
The session is the caller's: the client never opens or closes one.
Must not import: Slack packages, ``bridge``, ``handlers``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar
from urllib.parse import quote, urljoin, urlsplit

import aiohttp

from sw_api import sansio
from sw_api.errors import (
    ConnectError,
    ConnectionLost,
    InvalidResponse,
    RateLimited,
    ResponseTimeout,
    ServerError,
    SignalWireError,
)
from sw_api.models import LogRecord, Message
from sw_api.text import mask_number

logger = logging.getLogger("sw_api.client")

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=15, sock_connect=3, sock_read=10)
USER_AGENT = f"sms-bridge/0.1 aiohttp/{aiohttp.__version__}"


@dataclass(frozen=True)
class RetryPolicy:
    """When and how often to try again. ``RetryPolicy.NO_RETRY`` (or ``NO_RETRY``) switches retries off.

    Hand-written rather than using stamina/tenacity: the decision depends on the request (a POST is only
    retried when it certainly created nothing) and on ``Retry-After`` bounded by the total budget, which those
    libraries do not express without wrapping most of this logic anyway.
    """

    enabled: bool = True
    attempts: int = 4  # total tries, the first included
    base_delay: float = 0.25  # full-jitter exponential backoff
    max_delay: float = 4.0
    total: float = 15.0  # never spend longer than this across attempts (incl. a Retry-After wait)

    NO_RETRY: ClassVar[RetryPolicy]

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts counts the first try too: it must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.total < 0:
            raise ValueError("delays and the total budget cannot be negative")

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Full jitter (AWS architecture blog): uniform in [0, min(max_delay, base_delay·2^(attempt-1))]."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** max(0, attempt - 1)))
        return float(ceiling * rand())


RetryPolicy.NO_RETRY = RetryPolicy(enabled=False)
NO_RETRY = RetryPolicy.NO_RETRY
DEFAULT_RETRY = RetryPolicy()

_Response = tuple[int, Mapping[str, str], bytes]


class SignalWireClient:
    """SignalWire's messaging REST API: ``send_message``, ``get_message``, ``list_messages``.

    Errors are those of ``sw_api.errors``: ``NotSent`` means nothing was created, ``OutcomeUnknown`` means a
    message may exist and must be looked up in the logs before sending again.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        space: str,
        project_id: str,
        api_token: str,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy = DEFAULT_RETRY,
        on_rate_limited: Callable[[str, float], Awaitable[None]] | None = None,
    ) -> None:
        self.base_url = sansio.base_url_for_space(space)
        self.project_id = project_id
        self._session = session
        self._auth = sansio.basic_auth_header(project_id, api_token)
        self._timeout = timeout
        self._retry = retry
        # Told (sending number, seconds) when a POST is answered 429 and retried after that wait: the caller's pace
        # of that number (issue 13: shared by every replica) slows down too, not only this one request.
        self._on_rate_limited = on_rate_limited
        origin = urlsplit(self.base_url)
        self._origin = (origin.scheme, origin.hostname, origin.port)

    def __repr__(self) -> str:
        return f"SignalWireClient(base_url={self.base_url!r}, project_id={self.project_id!r}, api_token='***')"

    async def send_message(
        self,
        to: str,
        from_: str,
        body: str | None = None,
        media: Sequence[str] = (),
        send_as_mms: bool = False,
        status_callback: str | None = None,
    ) -> Message:
        """``POST /api/messaging/messages``. Retried only when certainly not sent (connect failure, 429)."""
        payload = sansio.build_send_body(to, from_, body, media, send_as_mms, status_callback)
        status, headers, raw = await self._call(
            "POST",
            self.base_url + sansio.SEND_PATH,
            idempotent=False,
            json_body=payload,
            note=f"to={mask_number(to)} from={mask_number(from_)}",
            sender=from_,
        )
        return sansio.parse_send_response(status, headers, raw)

    async def get_message(self, message_id: str) -> LogRecord:
        """``GET /api/messaging/logs/{id}`` (the id ``send_message`` returned). ``NotFound`` if unknown."""
        if not message_id:
            raise ValueError("message_id is empty")
        url = f"{self.base_url}{sansio.LOGS_PATH}/{quote(message_id, safe='')}"
        status, _, raw = await self._call("GET", url, idempotent=True)
        return sansio.parse_log_record(raw, status=status)

    async def list_messages(
        self,
        *,
        created_after: datetime | date | None = None,
        created_before: datetime | date | None = None,
        page_size: int = 50,
        max_pages: int = 20,
    ) -> AsyncIterator[LogRecord]:
        """``GET /api/messaging/logs``, following ``links.next`` for at most ``max_pages`` pages."""
        if max_pages < 1:
            raise ValueError("max_pages must be at least 1")
        params: dict[str, str] | None = sansio.build_log_query(
            created_after=created_after, created_before=created_before, page_size=page_size
        )
        url: str | None = self.base_url + sansio.LOGS_PATH
        pages = 0
        while url is not None:
            if pages == max_pages:
                logger.warning("message logs: stopped after %d pages, more are available", max_pages)
                return
            status, _, raw = await self._call("GET", url, idempotent=True, params=params)
            pages += 1
            records, next_url = sansio.parse_log_page(raw, status=status)
            for record in records:
                yield record
            url = self._resolve_next(next_url) if next_url else None
            # The next link carries the whole query (page_token included).
            params = None

    def _resolve_next(self, next_url: str) -> str:
        resolved = urljoin(self.base_url + sansio.LOGS_PATH, next_url)
        parts = urlsplit(resolved)
        # Following a link to another host would hand it our Authorization header.
        if (parts.scheme, parts.hostname, parts.port) != self._origin:
            raise InvalidResponse("links.next points outside the SignalWire space; not following it")
        return resolved

    async def _call(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool,
        json_body: dict[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        note: str = "",
        sender: str | None = None,
    ) -> _Response:
        """One logical request: attempts, backoff and the log line. Returns only 2xx answers."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        path = urlsplit(url).path
        attempt = 0
        while True:
            attempt += 1
            sent_at = loop.time()
            try:
                status, headers, raw = await self._once(method, url, path, json_body, params)
                sansio.raise_for_status(status, headers, raw)
            except SignalWireError as exc:
                elapsed_ms = (loop.time() - sent_at) * 1000
                outcome = f"{getattr(exc, 'status', '-')} {type(exc).__name__}"
                delay = self._retry_delay(exc, attempt, idempotent, loop.time() - started)
                logger.warning(
                    "%s %s -> %s in %.0f ms (attempt %d/%d)%s%s",
                    method,
                    path,
                    outcome,
                    elapsed_ms,
                    attempt,
                    self._attempts,
                    _space(note),
                    "" if delay is None else f"; retrying in {delay:.2f} s",
                )
                if delay is None:
                    raise
                if isinstance(exc, RateLimited) and sender is not None and self._on_rate_limited is not None:
                    await self._on_rate_limited(sender, delay)
                await asyncio.sleep(delay)
                continue
            logger.log(
                logging.INFO if method == "POST" else logging.DEBUG,
                "%s %s -> %d in %.0f ms (attempt %d/%d)%s",
                method,
                path,
                status,
                (loop.time() - sent_at) * 1000,
                attempt,
                self._attempts,
                _space(note),
            )
            return status, headers, raw

    @property
    def _attempts(self) -> int:
        return self._retry.attempts if self._retry.enabled else 1

    def _retry_delay(self, exc: SignalWireError, attempt: int, idempotent: bool, elapsed: float) -> float | None:
        """Seconds to wait before the next attempt, or None to give up and re-raise."""
        policy = self._retry
        if not policy.enabled or attempt >= policy.attempts:
            return None
        safe: tuple[type[SignalWireError], ...] = (ConnectError, RateLimited)
        if idempotent:
            # A GET changes nothing, so an unknown outcome is merely a failed read.
            safe += (ServerError, ResponseTimeout, ConnectionLost)
        if not isinstance(exc, safe):
            return None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            delay = exc.retry_after
        else:
            delay = policy.backoff(attempt)
        if elapsed + delay > policy.total:
            return None
        return delay

    async def _once(
        self,
        method: str,
        url: str,
        path: str,
        json_body: dict[str, Any] | None,
        params: Mapping[str, str] | None,
    ) -> _Response:
        """One HTTP exchange, with aiohttp's exceptions turned into ``NotSent`` / ``OutcomeUnknown``."""
        headers = {"Authorization": self._auth, "Accept": "application/json", "User-Agent": USER_AGENT}
        try:
            async with self._session.request(
                method,
                url,
                headers=headers,
                json=json_body,
                params=params,
                timeout=self._timeout,
                # A redirect would be followed with our credentials; the API documents none.
                allow_redirects=False,
            ) as resp:
                raw = await resp.read()
                return resp.status, resp.headers, raw
        # Order matters: ConnectionTimeoutError is a ServerTimeoutError, ClientConnectorError a ClientOSError.
        except aiohttp.ConnectionTimeoutError as exc:
            raise ConnectError(f"{method} {path}: timed out connecting to {self._host}") from exc
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or type(exc.os_error).__name__
            raise ConnectError(f"{method} {path}: could not connect to {self._host} ({reason})") from exc
        except aiohttp.ServerFingerprintMismatch as exc:
            raise ConnectError(f"{method} {path}: TLS fingerprint mismatch for {self._host}") from exc
        except TimeoutError as exc:
            # SocketTimeoutError (sock_read) or the total budget: the request may have been written.
            raise ResponseTimeout(f"{method} {path}: no answer from {self._host} in time") from exc
        except aiohttp.ClientPayloadError as exc:
            raise ConnectionLost(f"{method} {path}: the answer from {self._host} was cut off") from exc
        except aiohttp.ClientConnectionError as exc:
            # ServerDisconnectedError, ClientOSError after connecting, connection resets.
            raise ConnectionLost(f"{method} {path}: connection to {self._host} lost ({type(exc).__name__})") from exc

    @property
    def _host(self) -> str:
        _, host, port = self._origin
        return f"{host}:{port}" if port else str(host)


def _space(note: str) -> str:
    return f" {note}" if note else ""
