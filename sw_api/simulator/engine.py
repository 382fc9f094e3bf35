"""The simulator's state and behaviour behind the HTTP routes: messages, their status callbacks, inbound texts.

Owns: ``Simulator`` (every created message, the scripted outcomes and faults, the background tasks that walk a
message through queued → sent → final and POST signed status callbacks with SignalWire's retry policy, and
inbound-message injection), ``SimMessage``, ``CallbackAttempt``, ``InboundDelivery``.
Must not import: Slack packages, ``bridge``, ``handlers``. The HTTP surface lives in ``app.py``; this module
only uses an aiohttp ``ClientSession`` it is given (``attach``) and never opens one itself.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import uuid
from collections import deque
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import aiohttp

from sw_api.models import Direction, Kind, LogRecord, Message, MessageStatus, StatusEvent, format_timestamp
from sw_api.simulator import inbound, media_fetch
from sw_api.simulator.config import DEFAULT_CONFIG, Fault, Outcome, SimulatorConfig, default_outcome
from sw_api.simulator.validation import CreateRequest
from sw_api.text import mask_number, segment_info
from sw_api.webhooks import SIGNATURE_HEADER, sign_json

log = logging.getLogger(__name__)
T = TypeVar("T")

CALLBACK_ATTEMPTS = 3
# SignalWire's documented callback timeouts; a total cap keeps a stuck receiver from pinning a task forever.
CALLBACK_TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=2, sock_read=5)
INBOUND_TIMEOUT = aiohttp.ClientTimeout(total=15, sock_connect=2, sock_read=10)
# Short on purpose: tests and the demo should not wait seconds for a retried callback.
CALLBACK_BACKOFF = 0.05
# Per-segment price, only so that log records carry a plausible ``charge``.
SEGMENT_PRICE = 0.00415


@dataclass
class SimMessage:
    """One message the simulator knows: created through the API (outbound) or injected (inbound)."""

    id: str
    to: str
    from_: str
    body: str | None
    media: tuple[str, ...]
    kind: Kind
    status: MessageStatus
    created_at: datetime
    segments: int
    status_callback: str | None = None
    direction: Direction = "outbound"
    error_code: str | None = None
    error_message: str | None = None
    # Every status event handed to the callback sender, in sending order (twice each with duplicates on).
    callbacks: list[StatusEvent] = field(default_factory=list)
    seq: int = 0

    def to_message(self, project_id: str) -> Message:
        return Message(
            id=self.id,
            from_=self.from_,
            to=self.to,
            body=self.body or "",
            status=self.status,
            direction=self.direction,
            kind=self.kind,
            media=self.media,
            number_of_segments=self.segments,
            error_code=self.error_code,
            error_message=self.error_message,
            created_at=self.created_at,
            project_id=project_id,
            status_callback_url=self.status_callback,
            message_uri=f"/api/messaging/logs/{self.id}",
        )

    def to_log_record(self) -> LogRecord:
        charge = round(self.segments * SEGMENT_PRICE, 5)
        return LogRecord(
            id=self.id,
            from_=self.from_,
            to=self.to,
            status=self.status,
            direction=self.direction,
            kind=self.kind,
            source="api" if self.direction == "outbound" else "carrier",
            type="message",
            url=None,
            number_of_segments=self.segments,
            charge=charge,
            charge_details=[{"description": f"{self.kind.upper()} segments", "charge": charge}],
            created_at=self.created_at,
            error_code=self.error_code,
            error_message=self.error_message,
        )

    def to_json(self) -> dict[str, Any]:
        """Everything, body included: the shape of ``GET /_sim/messages``."""
        return {
            "id": self.id,
            "direction": self.direction,
            "from": self.from_,
            "to": self.to,
            "body": self.body,
            "media": list(self.media),
            "kind": self.kind,
            "status": self.status.value,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "number_of_segments": self.segments,
            "created_at": format_timestamp(self.created_at),
            "status_callback": self.status_callback,
            "callbacks": [event.status.value for event in self.callbacks],
        }


@dataclass(frozen=True)
class CallbackAttempt:
    """One status-callback POST: what was sent and what came back (``status`` None: no HTTP answer)."""

    message_id: str
    url: str
    body: bytes
    headers: Mapping[str, str]
    attempt: int
    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def event(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "url": self.url,
            "attempt": self.attempt,
            "status": self.status,
            "error": self.error,
            "event": self.event(),
        }


@dataclass(frozen=True)
class InboundDelivery:
    """Result of one injected inbound webhook: the receiver's HTTP status and text, or the error."""

    message_id: str
    status: int | None
    text: str
    error: str | None = None


def _path(kind: Kind, outcome: Outcome) -> list[MessageStatus]:
    """The statuses a message walks through for an outcome."""
    final = outcome.status
    if final is MessageStatus.QUEUED:
        return [MessageStatus.QUEUED]
    # Rejected before reaching a carrier (e.g. opted out): never "sent".
    if final is MessageStatus.FAILED:
        return [MessageStatus.QUEUED, MessageStatus.FAILED]
    # Carriers send no MMS receipts: a good MMS stops at sent; a failure is still reported.
    if final in (MessageStatus.SENT, MessageStatus.INITIATED) or (kind == "mms" and not final.is_failure):
        return [MessageStatus.QUEUED, MessageStatus.SENT]
    return [MessageStatus.QUEUED, MessageStatus.SENT, final]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Simulator:
    """A SignalWire messaging space in memory. Create it, pass it to ``create_app``, run the app."""

    def __init__(self, config: SimulatorConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        self._initial_config = config
        self.messages: dict[str, SimMessage] = {}
        self.callback_log: list[CallbackAttempt] = []
        self.latency = 0.0
        self.duplicate_callbacks = False
        self.reorder_callbacks = False
        self.drop_callbacks = False
        self.stopping = False
        self._scripts: dict[str, Outcome] = {}
        self._faults: deque[list[Any]] = deque()  # [Fault, remaining uses]
        self._tasks: set[asyncio.Task[Any]] = set()
        self._seq = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        # Bumped by reset(): tasks of an earlier generation must not write into the new state.
        self._generation = 0

    def __repr__(self) -> str:
        return f"Simulator({self.config!r}, messages={len(self.messages)})"

    # -- scripting -------------------------------------------------------------------------------------

    def script(self, to: str, outcome: Outcome) -> None:
        """Messages to ``to`` end with ``outcome`` (overrides the built-in suffix rules)."""
        self._scripts[to] = outcome

    def add_fault(self, fault: Fault) -> None:
        """Queue a fault; faults apply in the order added, each to its next ``count`` valid create requests."""
        if fault.count > 0:
            self._faults.append([fault, fault.count])

    def take_fault(self) -> Fault | None:
        """The fault that applies to the current create request, consuming one of its uses."""
        if not self._faults:
            return None
        entry = self._faults[0]
        entry[1] -= 1
        if entry[1] <= 0:
            self._faults.popleft()
        fault: Fault = entry[0]
        return fault

    def outcome_for(self, to: str) -> Outcome:
        return self._scripts.get(to) or default_outcome(to)

    def update_settings(
        self,
        *,
        latency: float | None = None,
        step_delay: float | None = None,
        duplicate_callbacks: bool | None = None,
        reorder_callbacks: bool | None = None,
        drop_callbacks: bool | None = None,
        inbound_url: str | None = None,
        inbound_format: Literal["json", "form"] | None = None,
    ) -> None:
        """Change behaviour at run time (what ``POST /_sim/settings`` does); ``None`` leaves a setting."""
        if latency is not None:
            self.latency = latency
        if duplicate_callbacks is not None:
            self.duplicate_callbacks = duplicate_callbacks
        if reorder_callbacks is not None:
            self.reorder_callbacks = reorder_callbacks
        if drop_callbacks is not None:
            self.drop_callbacks = drop_callbacks
        if step_delay is not None:
            self.config = replace(self.config, step_delay=step_delay)
        if inbound_url is not None:
            self.config = replace(self.config, inbound_url=inbound_url)
        if inbound_format is not None:
            self.config = replace(self.config, inbound_format=inbound_format)

    def created_count(self, to: str | None = None) -> int:
        """How many messages were created through the API (to ``to``, when given)."""
        return sum(
            1 for m in self.messages.values() if m.direction == "outbound" and (to is None or m.to == to)
        )

    def newest_first(self) -> list[SimMessage]:
        return sorted(self.messages.values(), key=lambda m: m.seq, reverse=True)

    def reset(self) -> None:
        """Forget every message, script, fault and setting; cancel pending callbacks and deliveries."""
        self._generation += 1
        for task in self._tasks:
            task.cancel()
        self.config = self._initial_config
        self.messages.clear()
        self.callback_log.clear()
        self._scripts.clear()
        self._faults.clear()
        self.latency = 0.0
        self.duplicate_callbacks = self.reorder_callbacks = self.drop_callbacks = False

    # -- lifecycle with the app ------------------------------------------------------------------------

    def attach(self, session: aiohttp.ClientSession) -> None:
        """Called by the app on start-up: the session every callback and inbound webhook goes through."""
        self._session = session
        self.stopping = False

    async def detach(self) -> None:
        """Called by the app on cleanup: cancel and await every background task, drop the session."""
        self.stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._session = None

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the simulator is not running: serve create_app(simulator) first")
        return self._session

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("simulator task failed", exc_info=task.exception())

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait until no callback or inbound task is pending; ``TimeoutError`` if that takes longer."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.wait(set(self._tasks))

    # -- outbound messages -----------------------------------------------------------------------------

    def create_message(self, request: CreateRequest) -> SimMessage:
        """Store a validated message as ``queued`` and start walking it to its outcome in the background."""
        kind = request.kind
        segments = segment_info(request.body).segments
        message = SimMessage(
            id=str(uuid.uuid4()),
            to=request.to,
            from_=request.from_,
            body=request.body,
            media=request.media,
            kind=kind,
            status=MessageStatus.QUEUED,
            created_at=datetime.now(UTC),
            segments=max(1, segments) if kind == "mms" else segments,
            status_callback=request.status_callback,
            seq=next(self._seq),
        )
        self.messages[message.id] = message
        log.info("created %s %s → %s", kind, message.id, mask_number(message.to))
        self._spawn(self._walk(message, self.outcome_for(message.to), self._generation))
        media_fetch.start(self, message.id, message.media)  # -- issue 11: fetch MediaUrls like SignalWire
        return message

    async def _walk(self, message: SimMessage, outcome: Outcome, generation: int) -> None:
        """Move the message through its statuses ``step_delay`` apart and hand each event to the sender."""
        outbox: asyncio.Queue[StatusEvent | None] = asyncio.Queue()
        if message.status_callback is not None:
            self._spawn(self._send_in_order(message, message.status_callback, outbox, generation))
        held: list[StatusEvent] = []
        try:
            for status in _path(message.kind, outcome):
                await asyncio.sleep(self.config.step_delay)
                if generation != self._generation:
                    return
                message.status = status
                if status.is_failure:
                    message.error_code = outcome.error_code
                    message.error_message = outcome.error_message
                event = self._event(message)
                if self.drop_callbacks or message.status_callback is None:
                    continue
                if self.reorder_callbacks:
                    held.append(event)
                else:
                    outbox.put_nowait(event)
            if held:
                shuffled = random.sample(held, len(held))
                if len(held) > 1 and shuffled == held:
                    # A shuffle may return the original order; the setting promises disorder.
                    shuffled = held[::-1]
                for event in shuffled:
                    outbox.put_nowait(event)
        finally:
            outbox.put_nowait(None)

    def _event(self, message: SimMessage) -> StatusEvent:
        return StatusEvent(
            id=message.id,
            status=message.status,
            to=message.to,
            from_=message.from_,
            timestamp=datetime.now(UTC),
            project_id=self.config.project_id,
            body=message.body,
            number_of_segments=message.segments,
            error_code=message.error_code,
            error_message=message.error_message,
        )

    async def _send_in_order(
        self, message: SimMessage, url: str, outbox: asyncio.Queue[StatusEvent | None], generation: int
    ) -> None:
        """One sender per message, so that a healthy receiver sees the events in the order they happened."""
        while (event := await outbox.get()) is not None:
            copies = 2 if self.duplicate_callbacks else 1
            for _ in range(copies):
                message.callbacks.append(event)
                await self._deliver(message.id, url, event, generation)

    async def _deliver(self, message_id: str, url: str, event: StatusEvent, generation: int) -> None:
        """POST one signed status callback; retry on connection errors and non-2xx, 3 attempts in total."""
        session = self._require_session()
        body = json.dumps(event.to_json()).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign_json(self.config.signing_key, url, body),
        }
        for attempt in range(1, CALLBACK_ATTEMPTS + 1):
            status: int | None = None
            error: str | None = None
            try:
                async with session.post(
                    url, data=body, headers=headers, timeout=CALLBACK_TIMEOUT, allow_redirects=False
                ) as response:
                    status = response.status
                    await response.read()
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                # ValueError: a URL that passed validation but that aiohttp still cannot connect to.
                error = _describe(exc)
            if generation != self._generation:
                return
            attempt_record = CallbackAttempt(message_id, url, body, headers, attempt, status, error)
            self.callback_log.append(attempt_record)
            if attempt_record.ok:
                return
            log.info(
                "status callback %s for %s failed (attempt %d): %s",
                event.status.value, message_id, attempt, error or f"HTTP {status}",
            )
            if attempt < CALLBACK_ATTEMPTS:
                await asyncio.sleep(CALLBACK_BACKOFF * attempt)

    # -- inbound messages ------------------------------------------------------------------------------

    async def inject_inbound(
        self,
        from_: str,
        to: str,
        body: str | None,
        media: Sequence[tuple[str, str]] = (),
        *,
        url: str | None = None,
        fmt: Literal["json", "form"] | None = None,
        message_id: str | None = None,
    ) -> InboundDelivery:
        """Someone texts ``to``: POST the signed webhook to ``url`` (default ``config.inbound_url``).

        The message is logged as ``received`` before the webhook is sent, as SignalWire logs it whether or
        not the receiver answers. Reusing a ``message_id`` re-delivers the same message (a duplicate webhook).
        """
        target = url or self.config.inbound_url
        if not target:
            raise ValueError("no inbound URL: pass url= or set SimulatorConfig.inbound_url")
        session = self._require_session()
        message_id = message_id or str(uuid.uuid4())
        now = datetime.now(UTC)
        if message_id not in self.messages:
            self.messages[message_id] = SimMessage(
                id=message_id,
                to=to,
                from_=from_,
                body=body,
                media=tuple(u for u, _ in media),
                kind="mms" if media else "sms",
                status=MessageStatus.RECEIVED,
                created_at=now,
                segments=inbound.inbound_segments(body, media),
                direction="inbound",
                seq=next(self._seq),
            )
        project_id, key = self.config.project_id, self.config.signing_key
        data: bytes | dict[str, str]
        if (fmt or self.config.inbound_format) == "json":
            data = inbound.json_payload(
                message_id=message_id, project_id=project_id, from_=from_, to=to, body=body, media=media,
                timestamp=now,
            )
            headers = inbound.json_headers(key, target, data)
        else:
            data = inbound.form_params(
                message_id=message_id, project_id=project_id, from_=from_, to=to, body=body, media=media
            )
            headers = inbound.form_headers(key, target, data)
        # The query string is left out of the log: receivers sometimes put a shared secret there.
        log.info("inbound %s from %s → %s", message_id, mask_number(from_), target.split("?", 1)[0])
        return await self._spawn(self._post_inbound(session, target, data, headers, message_id))

    @staticmethod
    async def _post_inbound(
        session: aiohttp.ClientSession,
        url: str,
        data: bytes | dict[str, str],
        headers: dict[str, str],
        message_id: str,
    ) -> InboundDelivery:
        try:
            async with session.post(
                url, data=data, headers=headers, timeout=INBOUND_TIMEOUT, allow_redirects=False
            ) as response:
                text = await response.text(errors="replace")
                return InboundDelivery(message_id, response.status, text)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return InboundDelivery(message_id, None, "", _describe(exc))
