"""The simulator's HTTP surface: SignalWire's messaging routes plus the ``/_sim/`` control routes.

Owns: ``create_app`` (routes, Basic auth, the JSON error shapes of the spec, fault injection on create, the
``ClientSession`` used for callbacks and inbound webhooks), and ``SIMULATOR_KEY``.
Must not import: Slack packages, ``bridge``, ``handlers``.

Routes (SignalWire's, Basic auth with project id : API token):
    POST /api/messaging/messages     201 Message | 400 | 401 | 422 {"errors": [...]} | faults
    GET  /api/messaging/logs/{id}    one log record (no body) | 404
    GET  /api/messaging/logs         {"links": {...}, "data": [...]} newest first, ``page_token`` paging
Control routes (no auth, for tests and the demo running the bot out of process):
    POST /_sim/script    {"to", "status", "error_code"?, "error_message"?}
    POST /_sim/faults    {"kind", "status"?, "create"?, "retry_after"?, "hang_seconds"?, "count"?}
    POST /_sim/settings  {"latency"?, "step_delay"?, "duplicate_callbacks"?, "reorder_callbacks"?,
                          "drop_callbacks"?, "inbound_url"?, "inbound_format"?}
    POST /_sim/inbound   {"from", "to", "body", "media"?: [[url, content_type] | {"content_type", "data_base64"?,
                          "size"?, "redirect"?}], "format"?, "url"?, "message_id"?} → {"message_id", "status", "text",
                          "error"}   (objects are hosted by the simulator: sw_api.simulator.media_host)
    GET  /_sim/media     the requests made for hosted media
    GET  /_sim/messages  every message with its body and status;  GET /_sim/callbacks  every callback attempt
    POST /_sim/reset
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import Any, Literal

import aiohttp
from aiohttp import web

from sw_api.models import MessageStatus
from sw_api.simulator import logs, media_host
from sw_api.simulator.config import Fault, Outcome
from sw_api.simulator.engine import Simulator
from sw_api.simulator.validation import CreateRequest, validate_create

log = logging.getLogger(__name__)

SIMULATOR_KEY = web.AppKey("simulator", Simulator)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# How often a deliberately slow answer checks whether its client left or the server is stopping.
_POLL = 0.05


def _error(status: int, text: str | None = None, **kwargs: Any) -> web.Response:
    return web.json_response({"error": text or HTTPStatus(status).phrase}, status=status, **kwargs)


@web.middleware
async def _errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error answer is JSON like SignalWire's; an unexpected exception is a 500, never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return _error(exc.status, exc.reason, headers=headers)
    except Exception:
        log.exception("simulator bug while answering %s %s", request.method, request.path)
        return _error(500)


def _authorized(request: web.Request) -> bool:
    """Basic auth with project id : API token. Parsed here because ``aiohttp.BasicAuth`` is deprecated."""
    config = request.app[SIMULATOR_KEY].config
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    try:
        decoded = base64.b64decode(encoded.strip().encode("ascii"), validate=True).decode("utf-8")
    except (ValueError, UnicodeError):  # binascii.Error is a ValueError
        return False
    login, colon, password = decoded.partition(":")
    # Compare both parts, always, in constant time.
    ok_user = hmac.compare_digest(login.encode("utf-8"), config.project_id.encode("utf-8"))
    ok_pass = hmac.compare_digest(password.encode("utf-8"), config.api_token.encode("utf-8"))
    return scheme.lower() == "basic" and bool(colon) and ok_user and ok_pass


async def _patient_sleep(request: web.Request, seconds: float) -> bool:
    """Sleep, but give up early (False) when the client hangs up or the server is shutting down."""
    simulator = request.app[SIMULATOR_KEY]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (remaining := deadline - loop.time()) > 0:
        transport = request.transport
        if simulator.stopping or transport is None or transport.is_closing():
            return False
        await asyncio.sleep(min(remaining, _POLL))
    return True


def _fault_answer(fault: Fault) -> web.Response:
    headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
    return _error(fault.status, headers=headers)


async def create_message(request: web.Request) -> web.StreamResponse:
    simulator = request.app[SIMULATOR_KEY]
    if not _authorized(request):
        return _error(401)
    raw = await request.read()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return _error(400)
    if not isinstance(data, dict):
        return _error(400)
    checked = validate_create(data, simulator.config.owned_numbers)
    if not isinstance(checked, CreateRequest):
        return web.json_response({"errors": [e.to_json() for e in checked]}, status=422)
    if simulator.latency > 0 and not await _patient_sleep(request, simulator.latency):
        return _error(503)
    fault = simulator.take_fault()
    if fault is None:
        message = simulator.create_message(checked)
        return web.json_response(message.to_message(simulator.config.project_id).to_json(), status=201)
    created = simulator.create_message(checked) if fault.create else None
    log.info("fault %s (create=%s) on this create request", fault.kind, fault.create)
    if fault.kind == "reset":
        transport = request.transport
        if transport is not None:
            # abort(), not close(): an RST with nothing written, like a proxy dying mid-request.
            transport.abort()
        # Nothing reaches the client: aiohttp drops a response for an aborted transport without noise.
        return web.Response(status=500)
    if fault.kind == "hang":
        await _patient_sleep(request, fault.hang_seconds)
        if created is None:
            return _error(500)
        return web.json_response(created.to_message(simulator.config.project_id).to_json(), status=201)
    return _fault_answer(fault)


async def get_log(request: web.Request) -> web.StreamResponse:
    simulator = request.app[SIMULATOR_KEY]
    if not _authorized(request):
        return _error(401)
    message = simulator.messages.get(request.match_info["id"])
    if message is None:
        return _error(404)
    return web.json_response(message.to_log_record().to_json())


async def list_logs(request: web.Request) -> web.StreamResponse:
    simulator = request.app[SIMULATOR_KEY]
    if not _authorized(request):
        return _error(401)
    query = logs.parse_query(request.query)
    if not isinstance(query, logs.LogQuery):
        return web.json_response({"errors": [e.to_json() for e in query]}, status=422)
    page, next_seq = logs.select(simulator.newest_first(), query)
    first = request.rel_url.with_query({k: v for k, v in request.query.items() if k != "page_token"})
    links = {"self": str(request.rel_url), "first": str(first)}
    if next_seq is not None:
        links["next"] = str(request.rel_url.update_query(page_token=logs.encode_token(next_seq)))
    return web.json_response({"links": links, "data": [m.to_log_record().to_json() for m in page]})


# -- control routes ------------------------------------------------------------------------------------


class _BadControl(web.HTTPBadRequest):
    def __init__(self, text: str) -> None:
        super().__init__(reason=text)


async def _control_body(request: web.Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.read() or b"{}")
    except (ValueError, RecursionError):
        raise _BadControl("body must be JSON") from None
    if not isinstance(data, dict):
        raise _BadControl("body must be a JSON object")
    return data


def _get(data: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value = data.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise _BadControl(f"{name} has the wrong type")
    if not isinstance(value, kind):
        raise _BadControl(f"{name} has the wrong type")
    return value


def _status(value: Any) -> MessageStatus:
    try:
        return MessageStatus(value)
    except ValueError:
        raise _BadControl(f"status must be one of {[s.value for s in MessageStatus]}") from None


def _inbound_format(value: Any) -> Literal["json", "form"] | None:
    if value is None:
        return None
    if value == "json":
        return "json"
    if value == "form":
        return "form"
    raise _BadControl('format must be "json" or "form"')


async def control_script(request: web.Request) -> web.StreamResponse:
    data = await _control_body(request)
    to = _get(data, "to", str)
    if not to:
        raise _BadControl("to is required")
    code = _get(data, "error_code", (str, int))
    outcome = Outcome(
        status=_status(data.get("status", "delivered")),
        error_code=None if code is None else str(code),
        error_message=_get(data, "error_message", str),
    )
    request.app[SIMULATOR_KEY].script(to, outcome)
    return web.json_response({"ok": True})


async def control_faults(request: web.Request) -> web.StreamResponse:
    data = await _control_body(request)
    kind = data.get("kind")
    if kind not in ("status", "hang", "reset"):
        raise _BadControl('kind must be "status", "hang" or "reset"')
    retry_after = _get(data, "retry_after", (int, float))
    fault = Fault(
        kind=kind,
        status=_get(data, "status", int, 500),
        create=_get(data, "create", bool, False),
        retry_after=None if retry_after is None else float(retry_after),
        hang_seconds=float(_get(data, "hang_seconds", (int, float), 30.0)),
        count=_get(data, "count", int, 1),
    )
    if not 400 <= fault.status <= 599:
        raise _BadControl("status must be an HTTP error status (400-599)")
    request.app[SIMULATOR_KEY].add_fault(fault)
    return web.json_response({"ok": True})


async def control_settings(request: web.Request) -> web.StreamResponse:
    data = await _control_body(request)
    latency = _get(data, "latency", (int, float))
    step_delay = _get(data, "step_delay", (int, float))
    request.app[SIMULATOR_KEY].update_settings(
        latency=None if latency is None else float(latency),
        step_delay=None if step_delay is None else float(step_delay),
        duplicate_callbacks=_get(data, "duplicate_callbacks", bool),
        reorder_callbacks=_get(data, "reorder_callbacks", bool),
        drop_callbacks=_get(data, "drop_callbacks", bool),
        inbound_url=_get(data, "inbound_url", str),
        inbound_format=_inbound_format(data.get("inbound_format")),
    )
    return web.json_response({"ok": True})


async def control_inbound(request: web.Request) -> web.StreamResponse:
    data = await _control_body(request)
    from_, to = _get(data, "from", str), _get(data, "to", str)
    if not from_ or not to:
        raise _BadControl("from and to are required")
    try:  # [url, content_type] pairs, or files the simulator hosts itself (sw_api.simulator.media_host)
        media = request.app[media_host.MEDIA_HOST_KEY].entries(str(request.url.origin()), _get(data, "media", list, []))
    except ValueError as exc:
        raise _BadControl(str(exc)) from None
    simulator = request.app[SIMULATOR_KEY]
    try:
        delivery = await simulator.inject_inbound(
            from_,
            to,
            _get(data, "body", str),
            media,
            url=_get(data, "url", str),
            fmt=_inbound_format(data.get("format")),
            message_id=_get(data, "message_id", str),
        )
    except ValueError as exc:
        raise _BadControl(str(exc)) from None
    return web.json_response(
        {
            "message_id": delivery.message_id,
            "status": delivery.status,
            "text": delivery.text,
            "error": delivery.error,
        }
    )


async def control_messages(request: web.Request) -> web.StreamResponse:
    simulator = request.app[SIMULATOR_KEY]
    ordered = sorted(simulator.messages.values(), key=lambda m: m.seq)
    return web.json_response({"messages": [m.to_json() for m in ordered]})


async def control_callbacks(request: web.Request) -> web.StreamResponse:
    simulator = request.app[SIMULATOR_KEY]
    return web.json_response({"callbacks": [a.to_json() for a in simulator.callback_log]})


async def control_reset(request: web.Request) -> web.StreamResponse:
    request.app[SIMULATOR_KEY].reset()
    return web.json_response({"ok": True})


# -- the application -----------------------------------------------------------------------------------


def create_app(simulator: Simulator) -> web.Application:
    """The simulator as an aiohttp application; run it with any aiohttp runner (port 0 in tests)."""
    app = web.Application(middlewares=[_errors_as_json])
    app[SIMULATOR_KEY] = simulator

    async def http_session(app: web.Application) -> AsyncIterator[None]:
        # One session for every callback and inbound webhook; per-request timeouts are SignalWire's.
        async with aiohttp.ClientSession() as session:
            simulator.attach(session)
            yield
            await simulator.detach()

    async def stop_waiting(app: web.Application) -> None:
        # Runs before the server waits for in-flight handlers: hanging answers must end now.
        simulator.stopping = True

    app.cleanup_ctx.append(http_session)
    app.on_shutdown.append(stop_waiting)
    app.router.add_post("/api/messaging/messages", create_message)
    app.router.add_get("/api/messaging/logs", list_logs)
    app.router.add_get("/api/messaging/logs/{id}", get_log)
    app.router.add_post("/_sim/script", control_script)
    app.router.add_post("/_sim/faults", control_faults)
    app.router.add_post("/_sim/settings", control_settings)
    app.router.add_post("/_sim/inbound", control_inbound)
    app.router.add_get("/_sim/messages", control_messages)
    app.router.add_get("/_sim/callbacks", control_callbacks)
    app.router.add_post("/_sim/reset", control_reset)
    media_host.register(app, simulator)  # issue 11: mms-in — GET /media/…, GET /_sim/media
    return app
