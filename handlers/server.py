"""The application factory: one aiohttp app serving Slack (Bolt mounted in it), SignalWire webhooks and health.

Owns: ``create_app(config)`` and its routes (Slack, SignalWire, ``handlers.ops``' health, readiness and
metrics), the lifetime of every long-lived resource (store, HTTP sessions, Socket Mode,
the in-process simulator in ``simulator`` mode) through ``cleanup_ctx``, the typed app keys, and ``run(config)``:
serving the app until SIGTERM/SIGINT behind the client limits of ``handlers.limits``, with event-loop errors
logged in a form the log's repeat limiter can collapse.
Nothing imports ``bot.py``; ``bot.py`` calls ``run``, the tests call ``create_app`` (or run ``bot.py``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web.async_client import AsyncWebClient

from bridge.bulk import BulkSends
from bridge.config import Config
from bridge.logs import REQUEST_ID, REQUEST_ID_HEADER, bind_request_id
from bridge.media_in import InboundMedia
from bridge.metrics import Metrics, metered
from bridge.model import SlackReply
from bridge.recovery import Recovery, Retention
from bridge.scheduler import Scheduler
from bridge.sending import pace_pusher
from bridge.service import Bridge, CallbackTokens, SendSettings
from bridge.storage.engines import open_store
from handlers import bulk_for, media_route, register_all, scheduler_for, two_way
from handlers.events import ThreadReplies
from handlers.limits import GuardedRunner, Limits, body_deadline_middleware
from handlers.ops import MetricsRoute, Readiness, healthz
from handlers.prompt_ack import PromptAckRunner
from handlers.slack_out import SlackOut, make_web_client
from handlers.slack_uploads import SlackFilesOut
from handlers.web import SignalWireRoutes
from sw_api.client import SignalWireClient
from sw_api.media import MediaFetcher
from sw_api.media_policy import MediaPolicy
from sw_api.sansio import base_url_for_space

log = logging.getLogger("handlers.server")

CONFIG = web.AppKey("config", Config)
BRIDGE = web.AppKey("bridge", Bridge)
BOLT = web.AppKey("bolt", AsyncApp)
METRICS = web.AppKey("metrics", Metrics)
READINESS = web.AppKey("readiness", Readiness)
BULK = web.AppKey("bulk", BulkSends)
SCRAPE = web.AppKey("scrape", MetricsRoute)

SHUTDOWN_DRAIN_SECONDS = 20.0
SHUTDOWN_REQUESTS_SECONDS = 10.0  # SIGTERM: how long requests in flight may finish before the app's clean-up
KEEPALIVE_SECONDS = 75.0          # an idle keep-alive connection (and a later request's head) is closed after this
LINGER_SECONDS = 2.0              # after an early answer (408, 413) the rest of a body is read this long, then closed
LISTEN_BACKLOG = 128

SLACK_SIGNATURE_HEADERS = ("X-Slack-Signature", "X-Slack-Request-Timestamp")

# Slack payloads and SignalWire webhooks are a few KB; anything near this is abuse.
MAX_BODY_BYTES = 256 * 1024


# Each shutdown step has its own bounds inside (drain, flush); this is the outer cap that makes SIGTERM always end.
SHUTDOWN_STEP_SECONDS = SHUTDOWN_DRAIN_SECONDS + 10.0


async def _step(name: str, closing: Awaitable[Any], limit: float = SHUTDOWN_STEP_SECONDS) -> None:
    """One shutdown step, bounded; a failure or overrun is logged and the next step still runs."""
    try:
        async with asyncio.timeout(limit):
            await closing
    except TimeoutError:
        log.error("shutdown: %s did not finish within %.0fs; moving on", name, limit)
    except Exception:
        log.exception("shutdown: %s did not close cleanly", name)


class BotIdentity:
    """Bolt's ``authorize``: the bot's identity from ``auth.test``, fetched once and cached.

    Bolt's default single-team authorization refuses every request while ``auth.test`` fails, so a Slack Web API
    hiccup at the first request would lose a correctly signed slash command. Here such a request is still served
    (its signature already proved it is Slack's); only the bot's own ids stay unknown until ``auth.test`` answers.
    """

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        self._known: AuthorizeResult | None = None

    async def authorize(self, enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
        if self._known is not None:
            return self._known
        token = self._client.token or ""
        try:
            response = await self._client.auth_test()
        except (SlackApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("auth.test failed (%s); serving the request without the bot's own ids", type(exc).__name__)
            return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=token)
        self._known = AuthorizeResult.from_auth_test_response(auth_test_response=response, bot_token=token)
        return self._known

    def as_function(self) -> Callable[..., Awaitable[AuthorizeResult]]:
        # Bolt passes arguments by parameter name and would offer one for a bound method's `self`: wrap it.
        async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
            return await self.authorize(enterprise_id, team_id)

        return authorize


def build_bolt(config: Config, bridge: Bridge, client: AsyncWebClient, *,
               scheduler: Scheduler | None = None,
               bulk_sends: BulkSends | None = None) -> tuple[AsyncApp, ThreadReplies]:
    """The Bolt app with every listener, and its thread-reply handler (the sweeper resumes replies with it)."""
    bolt_logger = logging.getLogger("slack_bolt")
    level = bolt_logger.level
    # Bolt warns at construction that the client's token "will be ignored" once ``authorize`` is given; it is not
    # (BotIdentity hands it back on every request), so that misleading line is kept out of the start-up log.
    bolt_logger.setLevel(logging.ERROR)
    try:
        app = _new_bolt_app(config, client, bolt_logger)
    finally:
        bolt_logger.setLevel(level)

    @app.error
    async def on_error(error: Exception) -> None:
        log.error("unhandled error in a Slack listener", exc_info=error)

    replies = register_all(app, bridge, config, scheduler=scheduler, bulk_sends=bulk_sends)
    return app, replies


def _new_bolt_app(config: Config, client: AsyncWebClient, bolt_logger: logging.Logger) -> AsyncApp:
    app = AsyncApp(
        client=client,
        authorize=BotIdentity(client).as_function(),
        signing_secret=config.slack_signing_secret or None,
        request_verification_enabled=not config.socket_mode,
        process_before_response=False,
        raise_error_for_unhandled_request=False,
        logger=bolt_logger,
    )
    # Answer Slack when the listener acks, not at Bolt's next 10 ms poll (handlers.prompt_ack).
    PromptAckRunner.install(app)
    return app


async def _start_simulator(config: Config) -> tuple[Config, web.AppRunner]:
    """``SIGNALWIRE_SPACE_URL=simulator``: run the simulator in this process and point the client at it."""
    from sw_api.simulator import Simulator, SimulatorConfig
    from sw_api.simulator import create_app as create_simulator_app

    sim_config = SimulatorConfig()
    runner = web.AppRunner(create_simulator_app(Simulator(sim_config)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    public_url = config.public_url or f"http://127.0.0.1:{config.port}"
    log.warning("SIGNALWIRE_SPACE_URL=simulator: no real SMS will be sent (simulator on port %d)", port)
    return replace(
        config,
        signalwire_space_url=f"http://127.0.0.1:{port}",
        signalwire_project_id=sim_config.project_id,
        signalwire_api_token=sim_config.api_token,
        signalwire_signing_key=config.signalwire_signing_key or sim_config.signing_key,
        public_url=public_url,
    ), runner


@web.middleware
async def request_id_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every log line of a request, and of the tasks it starts (they copy the context), carries its id."""
    request_id, token = bind_request_id(request.headers.get(REQUEST_ID_HEADER))
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # 413 from client_max_size, 401/400 raised by routes
        exc.headers[REQUEST_ID_HEADER] = request_id
        raise
    finally:
        REQUEST_ID.reset(token)
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


def _in_memory(database_url: str) -> bool:
    return database_url.startswith("sqlite:") and (":memory:" in database_url or "mode=memory" in database_url)


def create_app(config: Config) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES,
                          middlewares=[request_id_middleware, body_deadline_middleware(config.request_read_timeout)])
    app[CONFIG] = config
    metrics = app[METRICS] = Metrics()
    routes = SignalWireRoutes(BRIDGE, public_url=config.public_url, signing_key=config.signalwire_signing_key,
                              our_numbers=config.from_numbers, default_region=config.default_region,
                              two_way=lambda bridge: two_way(bridge, config), metrics=metrics)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        effective = config
        sim_runner: web.AppRunner | None = None
        if config.simulated:
            effective, sim_runner = await _start_simulator(config)
            routes.public_url = effective.public_url
            routes.signing_key = effective.signalwire_signing_key
        routes.warn_if_unsigned()
        # Every store call goes through the meter: outcomes (store.count) and database errors become metrics.
        store = metered(await open_store(effective.database_url), metrics)
        # The ack path's own connection (SQLite) or pool (PostgreSQL), opened as a second replica would: what a
        # Slack ack waits for (rate-limit read, opt-out read, intent insert) never queues behind the outbox,
        # callback and send writers on ``store`` (issue 10). An in-memory SQLite database exists once per
        # connection: it has to share.
        ack_store = store
        if not _in_memory(effective.database_url):
            try:
                ack_store = metered(await open_store(effective.database_url), metrics)
            except BaseException:
                await store.close()
                raise
        session = aiohttp.ClientSession()
        signalwire = SignalWireClient(
            session, space=effective.signalwire_space_url, project_id=effective.signalwire_project_id,
            api_token=effective.signalwire_api_token,
            timeout=aiohttp.ClientTimeout(total=effective.signalwire_timeout, sock_connect=3),
            on_rate_limited=pace_pusher(store),  # -- issue 13: a 429 slows the number's shared pace down
        )
        slack_client = make_web_client(effective.slack_bot_token, effective.slack_api_url, metrics)
        # -- issue 11: mms-in — inbound MMS pictures: fetched from the space (or SIGNALWIRE_MEDIA_HOSTS) only.
        media = InboundMedia(
            MediaFetcher(session, MediaPolicy(base_url_for_space(effective.signalwire_space_url),
                                              effective.signalwire_media_hosts, effective.media_max_inbound_bytes,
                                              effective.media_fetch_timeout),
                         project_id=effective.signalwire_project_id, api_token=effective.signalwire_api_token),
            SlackFilesOut(slack_client, session),
        )
        bridge = Bridge(
            store=store, signalwire=signalwire, slack=SlackOut(slack_client),
            tokens=CallbackTokens(await store.secret("callback"), effective.public_url),
            simulated=effective.simulated or config.simulated,
            settings=SendSettings(
                reconcile_first_check=min(2.0, effective.reconcile_grace), reconcile_grace=effective.reconcile_grace,
                stuck_after=effective.stuck_after, sweep_interval=effective.sweep_interval,
                stale_submitting=effective.signalwire_timeout + 60, message_lease=effective.lease_seconds,
                mps=effective.signalwire_mps,
            ),
            outbox_options={"lease": effective.lease_seconds, **effective.outbox_pacing, "media": media},
            ack_store=ack_store,
        )
        # -- issue 12: scheduled sends — the due loop (its first round on start sends what came due while down)
        scheduler = scheduler_for(bridge, effective)
        bridge.outbox.on_parent_failed = scheduler.parent_failed  # no scheduled SMS without its thread
        bulk = bulk_for(bridge, effective)  # -- issue 13: the bulk-send worker (resumes unfinished batches on start)
        bolt, replies = build_bolt(effective, bridge, slack_client, scheduler=scheduler, bulk_sends=bulk)

        async def resume_reply(reply: SlackReply) -> None:
            await replies.resume(reply, slack_client)

        recovery = Recovery(bridge, signalwire, Retention(days=effective.retention_days,
                                                          audit_days=effective.audit_retention_days),
                            resume_reply=resume_reply)
        await recovery.resume()
        recovery.start()
        bridge.outbox.start()
        scheduler.start()
        bulk.start()
        app[BRIDGE] = bridge
        app[BULK] = bulk
        app[BOLT] = bolt
        app[READINESS] = Readiness(store, slack_client)
        app[SCRAPE] = MetricsRoute(metrics, store)
        socket_handler: AsyncSocketModeHandler | None = None
        if effective.socket_mode:
            socket_handler = TimedSocketModeHandler(bolt, effective.slack_app_token)
            socket_handler.metrics = metrics
            await socket_handler.connect_async()  # type: ignore[no-untyped-call]
            log.info("connected to Slack over Socket Mode")
        log.info("ready: %r", effective)
        try:
            yield
        finally:
            # SIGTERM lands here after aiohttp stopped accepting requests and let in-flight ones finish:
            # stop starting new work, finish what was started, then close.
            if socket_handler is not None:
                await _step("socket mode", socket_handler.close_async())  # type: ignore[no-untyped-call]
            await _step("bulk sends", bulk.stop())
            await _step("scheduled sends", scheduler.stop())
            await _step("sweeper", recovery.stop())
            if isinstance(bolt.listener_runner, PromptAckRunner):  # listeners still running after their ack
                await _step("slack listeners", bolt.listener_runner.drain(timeout=SHUTDOWN_DRAIN_SECONDS))
            await _step("background work", bridge.drain(timeout=SHUTDOWN_DRAIN_SECONDS))
            await _step("slack outbox", bridge.outbox.stop(flush_timeout=SHUTDOWN_DRAIN_SECONDS))
            await _step("http session", session.close())
            await _step("store", store.close())
            if ack_store is not store:
                await _step("ack store", ack_store.close())
            if sim_runner is not None:
                await _step("simulator", sim_runner.cleanup())

    app.cleanup_ctx.append(resources)

    async def slack_events(request: web.Request) -> web.StreamResponse:
        started = time.monotonic()  # the ack latency counts reading and parsing the request too
        # Bolt compares the signature with hmac.compare_digest, which raises TypeError on non-ASCII text: such a
        # header cannot be Slack's, so it is refused here as unsigned.
        if not all(request.headers.get(name, "").isascii() for name in SLACK_SIGNATURE_HEADERS):
            log.warning("Slack request refused: non-ASCII signature headers")
            return web.json_response({"error": "invalid signature"}, status=401)
        try:
            # Bolt decodes the body and parses a `payload=` field's JSON itself, letting the errors escape.
            bolt_request = await to_bolt_request(request)
        except (ValueError, AttributeError, TypeError, RecursionError, LookupError) as exc:
            # bad UTF-8, bad JSON, JSON that is not an object, JSON nested deeper than the interpreter can parse,
            # a charset Python does not know (aiohttp decodes the body with the Content-Type's charset)
            log.warning("unreadable Slack request refused: %s", type(exc).__name__)
            return web.json_response({"error": "the body is not a Slack request"}, status=400)
        body: object = bolt_request.body  # typed as a dict by Bolt, but `payload=[]` makes it a list
        if not isinstance(body, dict):
            return web.json_response({"error": "the Slack payload is not a JSON object"}, status=400)
        bolt_response = await request.app[BOLT].async_dispatch(bolt_request)
        response = await to_aiohttp_response(bolt_response)
        metrics.ack_seconds.labels(kind=_slack_kind(body)).observe(time.monotonic() - started)
        return response

    async def readyz(request: web.Request) -> web.Response:
        return await request.app[READINESS](request)

    async def scrape(request: web.Request) -> web.Response:
        return await request.app[SCRAPE](request)

    if not config.socket_mode:
        app.router.add_post("/slack/events", slack_events)
    app.router.add_post("/signalwire/status", routes.status)
    app.router.add_post("/signalwire/inbound", routes.inbound)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", scrape)
    media_route.register(app, BRIDGE)  # -- issue 11: outbound MMS pictures
    return app


# Socket Mode envelope types → the histogram's kinds (the same as over HTTP).
_SOCKET_KINDS = {"slash_commands": "command", "events_api": "event", "interactive": "interactive"}


class TimedSocketModeHandler(AsyncSocketModeHandler):
    """Bolt's Socket Mode handler, with the time to ack each envelope in the ack latency histogram."""

    metrics: Metrics | None = None

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        started = time.monotonic()
        try:
            await super().handle(client, req)
        finally:
            if self.metrics is not None:
                kind = _SOCKET_KINDS.get(req.type, "interactive")
                self.metrics.ack_seconds.labels(kind=kind).observe(time.monotonic() - started)


def _slack_kind(body: dict[str, Any]) -> str:
    """What a Slack request over HTTP was, for the ack latency histogram."""
    if "command" in body:
        return "command"
    if body.get("type") in ("event_callback", "url_verification"):
        return "event"
    return "interactive"


# Parts of an event-loop error context that change on every occurrence (a timer handle's due time) and would make
# a flood of one error look like distinct lines to the log's repeat limiter.
_VOLATILE_CONTEXT = ("message", "exception", "handle", "source_traceback", "handle_traceback")


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's default handler, minus the volatile parts: at the file-descriptor limit asyncio reports
    "socket.accept() out of system resource" (and, once the socket is closed, its retry timers' errors) thousands
    of times a second; as identical lines they are rate-limited by ``bridge.logs.RepeatLimiter``."""
    message = str(context.get("message") or "unhandled exception in the event loop")
    details = "".join(f"\n{key}: {value!r}" for key, value in sorted(context.items())
                      if key not in _VOLATILE_CONTEXT)
    exc = context.get("exception")
    exc_info = (type(exc), exc, exc.__traceback__) if isinstance(exc, BaseException) else None
    logging.getLogger("asyncio").error("%s%s", message, details, exc_info=exc_info)


def run(config: Config, announce: Callable[[str], None] = print) -> None:
    """Serve until SIGTERM or SIGINT, then stop taking requests, let those in flight finish and clean up."""
    asyncio.run(_serve(config, announce))


async def _serve(config: Config, announce: Callable[[str], None]) -> None:
    limits = Limits(read_timeout=config.request_read_timeout, max_connections=config.max_connections)
    runner = GuardedRunner(
        create_app(config), limits, access_log=None, shutdown_timeout=SHUTDOWN_REQUESTS_SECONDS,
        keepalive_timeout=KEEPALIVE_SECONDS, lingering_time=LINGER_SECONDS,
        max_line_size=8190, max_field_size=8190, max_headers=64,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_log_loop_error)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port, backlog=LISTEN_BACKLOG)
        await site.start()
        announce(f"sms-bridge listening on http://{config.host}:{config.port}")
        await stop.wait()
    finally:
        await runner.cleanup()
