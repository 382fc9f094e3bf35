"""Limits on slow and numerous clients, for the aiohttp server that ``bot.py`` runs (``handlers.server.run``).

Owns: how long a client may take to send a request head (``Limits.read_timeout``, counted from the connection's
opening or from the first byte of a later request: a head not complete by then is answered 408 and closed) and its
body (``body_deadline_middleware``: 408 and close), and how many connections may be open at once
(``max_connections``, also kept under the file-descriptor limit: beyond it a new connection is answered 503 and
closed at once, so the process does not run out of descriptors). aiohttp's own options bound line and header sizes
and idle keep-alive time; these are what it lacks. A reverse proxy in front (README) is still the real defence;
this keeps a directly exposed bot alive.
Must not import: Slack packages, ``bridge`` (handlers.server passes the configured limits in).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("handlers.limits")

# Descriptors kept free for what is not a client connection: the database and its WAL, outgoing HTTP to Slack and
# SignalWire, the listening socket, logs.
FD_RESERVE = 64
# How long a connection answered 408 is kept open (reading and dropping) for its client to read the answer.
LINGER_SECONDS = 2.0
REFUSED = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\nRetry-After: 5\r\n\r\n"
HEAD_TOO_SLOW = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


@dataclass(frozen=True)
class Limits:
    read_timeout: float = 10.0   # seconds for the request head, and again for the body
    max_connections: int = 500


def connection_cap(max_connections: int) -> int:
    """``max_connections``, lowered to stay ``FD_RESERVE`` descriptors under the process's soft limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, soft - FD_RESERVE))


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection protocol, telling its server when bytes of a new request head start to arrive."""

    def data_received(self, data: bytes) -> None:
        manager = self._manager
        if isinstance(manager, GuardedServer) and not self._request_in_progress:
            manager.head_started(self)
        super().data_received(data)


class GuardedServer(web.Server):
    """aiohttp's low-level server plus a deadline for every request head and a cap on open connections.

    A head's deadline starts when the connection opens (first request) or when the first byte of a later request
    arrives on a kept-alive connection (an idle one is left to ``keepalive_timeout``), and ends when aiohttp has
    parsed the head and asks the request factory for a request."""

    def __init__(self, base: web.Server, limits: Limits) -> None:
        # The same handler, request factory and protocol options the runner built ``base`` with.
        super().__init__(base.request_handler, request_factory=self._first_request,
                         handler_cancellation=base.handler_cancellation, loop=base._loop, **base._kwargs)
        self._app_request_factory = base.request_factory
        self.limits = limits
        self._head_deadlines: dict[RequestHandler, asyncio.TimerHandle] = {}

    def _first_request(self, *args: Any, **kwargs: Any) -> web.BaseRequest:
        # aiohttp calls the factory once a request head is complete (or unparseable): the head deadline is met.
        protocol = args[2] if len(args) > 2 else kwargs["protocol"]
        timer = self._head_deadlines.pop(protocol, None)
        if timer is not None:
            timer.cancel()
        return self._app_request_factory(*args, **kwargs)

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, **self._kwargs)

    def head_started(self, handler: RequestHandler) -> None:
        if handler not in self._head_deadlines and handler.transport is not None:
            self._arm(handler, handler.transport)

    def _arm(self, handler: RequestHandler, transport: asyncio.BaseTransport) -> None:
        self._head_deadlines[handler] = self._loop.call_later(self.limits.read_timeout, self._head_too_slow,
                                                             handler, transport)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        cap = connection_cap(self.limits.max_connections)
        if len(self._connections) > cap:
            log.warning("too many connections open (limit %d): new ones are answered 503 and closed", cap)
            transport.pause_reading()
            transport.write(REFUSED)
            # Closed on the next loop turn, once the connection's start() task has begun: closing it now would
            # leave that task to fail ("Task exception was never retrieved") on every refused connection.
            self._loop.call_later(0, handler.force_close)
            return
        self._arm(handler, transport)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        timer = self._head_deadlines.pop(handler, None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(handler, exc)

    def _head_too_slow(self, handler: RequestHandler, transport: asyncio.BaseTransport) -> None:
        self._head_deadlines.pop(handler, None)
        log.warning("client sent no complete request within %gs: answered 408 and closed", self.limits.read_timeout)
        if isinstance(transport, asyncio.Transport) and not transport.is_closing():
            transport.write(HEAD_TOO_SLOW)
            # A lingering close: closing a socket with unread bytes from the client (the rest of its trickled head)
            # sends RST, which can destroy the 408 before the client reads it. So stop reading for aiohttp, send
            # FIN after the 408, drop whatever still arrives, and close when the client does (or after a while).
            transport.set_protocol(_Discard(handler))
            # No longer one of the server's connections: it must not count against the cap while it lingers.
            self._connections.pop(handler, None)
            if transport.can_write_eof():
                transport.write_eof()
            self._loop.call_later(LINGER_SECONDS, transport.close)
            return
        handler.close()
        transport.close()


class _Discard(asyncio.Protocol):
    """A connection's protocol after its 408: reads and drops what the client still sends; closes on its EOF and
    tells the aiohttp handler (which no longer reads) when the connection is gone, so it cleans up as usual."""

    def __init__(self, handler: RequestHandler) -> None:
        self.handler = handler

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.handler.connection_lost(exc)


class GuardedRunner(web.AppRunner):
    """``web.AppRunner`` whose server is a ``GuardedServer``."""

    def __init__(self, app: web.Application, limits: Limits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.limits = limits

    async def _make_server(self) -> web.Server:
        return GuardedServer(await super()._make_server(), self.limits)


def body_deadline_middleware(timeout: float) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Read every request body within ``timeout`` seconds (routes then get it from aiohttp's cache); a body that
    trickles in slower is answered 408 and its connection closed, so it cannot hold the bot for minutes."""

    @web.middleware
    async def body_deadline(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.body_exists:
            try:
                async with asyncio.timeout(timeout):
                    await request.read()  # also enforces client_max_size (413)
            except TimeoutError:
                log.warning("request body not received within %gs path=%s: answered 408", timeout, request.path)
                response = web.json_response(
                    {"error": f"the request body did not arrive within {timeout:g} s"}, status=408)
                response.force_close()
                return response
        return await handler(request)

    return body_deadline
