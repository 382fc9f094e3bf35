"""SignalWire's webhooks, as aiohttp routes.

Owns: ``POST /signalwire/status`` (status callbacks), ``POST /signalwire/inbound`` (inbound messages);
refusing forged, unknown and malformed webhooks without side effects, and inbound texts addressed to a number that
is not one of ours (``SIGNALWIRE_FROM_NUMBERS``); counting each answer (by delivery status) in ``bridge.metrics``.
Must not import: Slack packages (Slack is reached through the bridge).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from bridge.metrics import Metrics
from bridge.service import Bridge, CallbackRefused
from bridge.storage.port import StoreUnavailable
from bridge.two_way import TwoWay
from sw_api.errors import MalformedWebhook, SignatureMismatch
from sw_api.text import InvalidNumber, mask_number, normalize_sender
from sw_api.webhooks import (
    CXML_EMPTY,
    SIGNATURE_HEADER,
    SWML_RECEIVE,
    TWILIO_SIGNATURE_HEADER,
    parse_inbound,
    parse_status_callback,
    require_signature,
)

log = logging.getLogger("handlers.web")

# SignalWire reads a callback's answer for 5 s before it counts the attempt as failed.
CALLBACK_ANSWER_SECONDS = 2.0

UNSIGNED_WEBHOOKS_WARNING = (
    "SIGNALWIRE_ALLOW_UNSIGNED_WEBHOOKS=true and no SIGNALWIRE_SIGNING_KEY: SignalWire webhooks are accepted "
    "unsigned, so anyone who can reach /signalwire/inbound can post fake texts, STOPs and STARTs into real "
    "conversations (status callbacks still need their per-message token). Set SIGNALWIRE_SIGNING_KEY to close this."
)


class SignalWireRoutes:
    def __init__(self, bridge_key: web.AppKey[Bridge], *, public_url: str, signing_key: str,
                 our_numbers: tuple[str, ...], two_way: Callable[[Bridge], TwoWay] | None = None,
                 default_region: str = "US", metrics: Metrics | None = None) -> None:
        self._bridge_key = bridge_key
        self._metrics = metrics
        self._two_way = two_way
        self.public_url = public_url.rstrip("/")
        self.signing_key = signing_key
        # SIGNALWIRE_FROM_NUMBERS: an inbound text must be addressed to one of them.
        self.our_numbers = our_numbers
        self.default_region = default_region

    def warn_if_unsigned(self) -> None:
        """At every start: say loudly that webhooks are not signature-checked (the operator opted in)."""
        if not self.signing_key:
            log.warning(UNSIGNED_WEBHOOKS_WARNING)

    def is_ours(self, number: str) -> bool:
        try:
            number = normalize_sender(number, self.default_region)
        except InvalidNumber:
            return False
        return number in self.our_numbers

    def _check_signature(self, request: web.Request, raw: bytes) -> None:
        """With a signing key configured, every webhook must carry a valid signature."""
        if not self.signing_key:
            return
        signature = request.headers.get(SIGNATURE_HEADER) or request.headers.get(TWILIO_SIGNATURE_HEADER)
        # SignalWire signed the public URL it called, not whatever a proxy forwarded to us.
        url = self.public_url + request.path_qs
        try:
            require_signature(self.signing_key, url, raw, request.content_type, signature)
        except SignatureMismatch as exc:
            log.warning("webhook refused path=%s: %s", request.path, exc)
            raise web.HTTPUnauthorized(text=json.dumps({"error": str(exc)}),
                                       content_type="application/json") from exc

    async def _answered(self, handle: Callable[[], Awaitable[web.StreamResponse]],
                        count: Callable[[int], None]) -> web.StreamResponse:
        """Run a route and count its answer, including the ones raised as ``HTTPException`` (401)."""
        try:
            response = await handle()
        except web.HTTPException as exc:
            count(exc.status)
            raise
        count(response.status)
        return response

    async def status(self, request: web.Request) -> web.StreamResponse:
        seen: list[str] = []  # the delivery status, once parsed

        def count(answer: int) -> None:
            if self._metrics is not None:
                self._metrics.callbacks.labels(status=seen[0] if seen else "unparsed", answer=str(answer)).inc()

        return await self._answered(lambda: self._status(request, seen), count)

    async def inbound(self, request: web.Request) -> web.StreamResponse:
        def count(answer: int) -> None:
            if self._metrics is not None:
                self._metrics.inbound.labels(answer=str(answer)).inc()

        return await self._answered(lambda: self._inbound(request), count)

    async def _status(self, request: web.Request, seen: list[str]) -> web.StreamResponse:
        raw = await request.read()
        ref = request.query.get("ref", "")
        token = request.query.get("t", "")
        if not ref or not token:
            return web.json_response({"error": "missing ref or token"}, status=401)
        self._check_signature(request, raw)
        try:
            event = parse_status_callback(raw)
        except MalformedWebhook as exc:
            return web.json_response({"error": str(exc)}, status=400)
        seen.append(event.status.value)
        bridge = request.app[self._bridge_key]
        # The work runs as a bridge task: if the store is slow (a locked file), SignalWire gets a quick 503 and
        # retries, while the task still finishes and announces the receipt — the retry is then a harmless duplicate.
        task = bridge.spawn(bridge.apply_status(ref, token, event), name=f"status-{ref}")
        try:
            # asyncio.timeout around a shield: the task is never cancelled by our deadline, and (unlike 3.11's
            # wait_for) a cancellation of this request cannot be lost.
            async with asyncio.timeout(CALLBACK_ANSWER_SECONDS):
                await asyncio.shield(task)
        except TimeoutError:
            log.warning("status callback ref=%s still waiting on the store; answered 503 so SignalWire retries", ref)
            return web.json_response({"error": "storage busy, retry"}, status=503)
        except CallbackRefused as exc:
            log.warning("status callback refused ref=%s: %s", ref, exc.reason)
            return web.json_response({"error": exc.reason}, status=exc.status)
        except StoreUnavailable:
            log.exception("status callback not stored ref=%s", ref)
            # 503 makes SignalWire try again; the receipt is not lost to a locked database.
            return web.json_response({"error": "storage unavailable, retry"}, status=503)
        # Only now: the status is recorded and its Slack receipt queued (committed), so a crash after this 204,
        # which SignalWire never retries, loses nothing.
        return web.Response(status=204)

    async def _inbound(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self._check_signature(request, raw)
        try:
            message = parse_inbound(raw, request.content_type)
        except MalformedWebhook as exc:
            return web.json_response({"error": str(exc)}, status=400)
        log.info("inbound message id=%s from=%s to=%s", message.message_id, mask_number(message.from_),
                 mask_number(message.to))
        if not self.is_ours(message.to):
            # Not a number we text from: posting it would open a conversation we could never answer (replies go
            # only from our own numbers), and its STOP/START would change opt-outs of a number we do not own.
            log.warning("inbound id=%s to=%s ignored: not one of SIGNALWIRE_FROM_NUMBERS", message.message_id,
                        mask_number(message.to))
        elif self._two_way is not None:
            bridge = request.app[self._bridge_key]
            # 200 only once the text, its opt-out change and its Slack posts are committed (one transaction);
            # Slack itself is reached later by the outbox. A slow store gets a quick 503 (SignalWire delivers
            # again) while the task finishes: the redelivery is then a harmless duplicate.
            task = bridge.spawn(self._two_way(bridge).receive(message), name=f"inbound-{message.message_id}")
            try:
                async with asyncio.timeout(CALLBACK_ANSWER_SECONDS):
                    await asyncio.shield(task)
            except TimeoutError:
                log.warning("inbound id=%s still waiting on the store; answered 503 so SignalWire retries",
                            message.message_id)
                return web.json_response({"error": "storage busy, retry"}, status=503)
            except StoreUnavailable as exc:
                log.warning("inbound id=%s not stored: %s", message.message_id, exc)
                # Nothing was committed: SignalWire's redelivery is handled as new.
                return web.json_response({"error": "storage unavailable, retry"}, status=503)
        if message.source_format == "form":
            return web.Response(text=CXML_EMPTY, content_type="text/xml")
        return web.json_response(SWML_RECEIVE)

