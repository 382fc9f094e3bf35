"""The fault suite's world: real ``python bot.py`` processes between an in-process simulator and fake Slack.

Owns: ``BotProcess`` (start / SIGKILL / SIGTERM / restart of the bot as a subprocess on a loopback port, waiting
for ``/healthz``, its log file), ``RoundRobin`` (the load balancer in front of several replicas on one database),
``World`` (simulator + fake Slack served in the test's own event loop so a test can flip their fault switches
directly, a signed ``SlackDriver`` aimed at the bot or the front) and ``open_world``.
Also the invariants every fault test asserts (``assert_exactly_one_sms``, ``assert_receipts_once``, ``Snapshot``).
Must not import: ``bot.py``, ``handlers`` or ``bridge.service`` — the bot is only ever reached over HTTP
(``bridge.render`` only for the receipt wording).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp
from aiohttp import web

from bridge.render import STATUS_BADGES
from demo.fake_slack import FakeSlack, SlackMessage
from demo.fake_slack import create_app as create_fake_slack_app
from demo.harness import SIGNING_SECRET, _bound_socket, _serve, bot_environment
from demo.slack_driver import SlackDriver
from sw_api.models import MessageStatus
from sw_api.simulator import SimMessage, Simulator, SimulatorConfig
from sw_api.simulator import create_app as create_simulator_app

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0
LEASE_SECONDS = 2.0  # the bots' LEASE_SECONDS: a killed bot's claims run out this fast


class BotDied(AssertionError):
    """The bot process exited (or never answered /healthz) when it should be serving."""


# Below Linux's ephemeral range (32768-60999 by default): no outgoing connection of this busy machine is ever given
# one of these, so a bot's port stays free between the probe and its bind, and across its restarts.
_BOT_PORTS = range(20000, 32768)


def _free_port() -> int:
    # bot.py binds host:port itself, so it cannot be handed a socket: probe a free port and release it. The
    # same port is kept across restarts because the simulator's callback URLs (PUBLIC_URL) name it. A port the
    # kernel picks (port 0) is an ephemeral one, which any outgoing connection may take before the bot binds it.
    for port in random.sample(_BOT_PORTS, 200):
        try:
            probe = _bound_socket(port)
        except OSError:
            continue
        probe.close()
        return port
    raise RuntimeError(f"no free port in {_BOT_PORTS}")


@dataclass
class BotProcess:
    """``python bot.py`` in the repository root with ``env``; output goes to ``log_path`` (appended across runs)."""

    env: dict[str, str]
    log_path: Path
    port: int
    # bot.py, or a fault-injecting wrapper that runs it (e.g. tests/faults/slow_outbox_bot.py).
    script: Path = REPO / "bot.py"
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    killed: bool = False  # SIGKILLed at least once: its leases may still hold work for up to LEASE_SECONDS
    last_exit_seconds: float | None = None  # how long the last SIGTERM took
    _log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, timeout: float = START_TIMEOUT) -> None:
        """Spawn the bot and wait until ``GET /healthz`` answers 200; ``BotDied`` (with the log tail) otherwise."""
        assert not self.running, "the bot is already running"
        self.starts += 1
        self._log = self.log_path.open("ab")
        self._log.write(f"\n===== start #{self.starts} =====\n".encode())
        self._log.flush()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(self.script), "serve",
            cwd=REPO, env=self.env, stdin=asyncio.subprocess.DEVNULL, stdout=self._log, stderr=self._log,
        )
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                if self.proc.returncode is not None:
                    raise BotDied(f"bot exited with {self.proc.returncode} during start-up\n{self.log_tail()}")
                with suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"{self.url}/healthz", timeout=aiohttp.ClientTimeout(total=1)) as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    await self.kill()
                    raise BotDied(f"bot did not answer /healthz within {timeout:g} s\n{self.log_tail()}")
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL: no clean-up runs, exactly like a crash or the OOM killer."""
        if self.proc is not None and self.proc.returncode is None:
            self.killed = True
            self._mark("SIGKILL")
            self.proc.kill()
            await self.proc.wait()
        self._close_log()

    async def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait for the exit code (SIGKILL and ``BotDied`` if it does not exit within ``timeout``)."""
        assert self.proc is not None, "the bot was never started"
        if self.proc.returncode is None:
            self._mark("SIGTERM sent")
            started = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout):
                    await self.proc.wait()
            except TimeoutError:
                self._mark(f"still running {timeout:g} s after SIGTERM: SIGKILL")
                await self.kill()
                raise BotDied(f"bot ignored SIGTERM for {timeout:g} s\n{self.log_tail()}") from None
            self.last_exit_seconds = time.monotonic() - started
            self._mark(f"exited {self.proc.returncode} {self.last_exit_seconds:.1f} s after SIGTERM")
        self._close_log()
        assert self.proc.returncode is not None
        return self.proc.returncode

    async def restart(self) -> None:
        """SIGKILL (if still running) and start again on the same port and database."""
        await self.kill()
        await self.start()

    def log_text(self) -> str:
        if self._log is not None:
            self._log.flush()
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        # aiosqlite logs every statement twice at DEBUG; those lines would push out everything that explains.
        kept = [line for line in self.log_text().splitlines() if "logger=aiosqlite" not in line]
        return "\n".join(kept[-lines:])

    def _mark(self, what: str) -> None:
        """A line of the harness's own in the bot's log, so a reader sees when it was signalled."""
        if self._log is not None:
            self._log.write(f"===== {time.strftime('%H:%M:%S')} {what} =====\n".encode())
            self._log.flush()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass(frozen=True)
class Routed:
    """One request the front passed on: to which replica (None: none answered) and what came back."""

    path: str
    replica: int | None
    status: int


@dataclass
class RoundRobin:
    """The load balancer in front of the replicas: each request goes to the next running replica in turn.

    A replica that refuses the connection (dead, restarting) is skipped, as a balancer's health check would; a
    replica that dies while handling a request costs that request a 502, exactly as in production. ``routed``
    records where every request went.
    """

    bots: list[BotProcess]
    session: aiohttp.ClientSession
    routed: list[Routed] = field(default_factory=list)
    in_flight: dict[int, int] = field(default_factory=dict)  # requests each replica is handling now
    _busy: dict[int, asyncio.Event] = field(default_factory=dict)
    _next: int = 0

    def busy(self, replica: int) -> asyncio.Event:
        """Set while ``replica`` is handling at least one request."""
        return self._busy.setdefault(replica, asyncio.Event())

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        return app

    def _order(self) -> list[int]:
        start = self._next
        self._next = (self._next + 1) % len(self.bots)
        return [(start + i) % len(self.bots) for i in range(len(self.bots))]

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        for index in self._order():
            bot = self.bots[index]
            if not bot.running:
                continue
            self.in_flight[index] = self.in_flight.get(index, 0) + 1
            self.busy(index).set()
            try:
                async with self.session.request(
                    request.method, bot.url + request.path_qs, data=body, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=30), allow_redirects=False,
                ) as upstream:
                    payload = await upstream.read()
                    self.routed.append(Routed(request.path, index, upstream.status))
                    kept = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}
                    return web.Response(status=upstream.status, body=payload, headers=kept)
            except aiohttp.ClientConnectorError:
                continue  # nothing reached it: the next replica may take the request
            except (aiohttp.ClientError, TimeoutError):
                self.routed.append(Routed(request.path, index, 502))
                return web.Response(status=502, text="replica failed mid-request")
            finally:
                self.in_flight[index] -= 1
                if not self.in_flight[index]:
                    self.busy(index).clear()
        self.routed.append(Routed(request.path, None, 502))
        return web.Response(status=502, text="no replica answered")


_HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive"})


def engine_of(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite:") else "postgresql"


@dataclass
class World:
    """Everything one fault test touches. ``simulator`` and ``slack`` live in this event loop.

    ``bots`` are the replicas (one, unless the world was opened with ``replicas=N``), all on ``database_url``;
    with several, ``front`` spreads requests across them and ``bot_url`` (what the driver, the simulator's
    callbacks and inbound webhooks use) is the front's. ``bot`` is the first replica.
    """

    simulator: Simulator
    sim_url: str
    slack: FakeSlack
    slack_url: str
    bots: list[BotProcess]
    session: aiohttp.ClientSession
    driver: SlackDriver
    database_url: str
    database: Path | None  # the SQLite file, None on PostgreSQL
    front: RoundRobin | None = None
    front_url: str | None = None
    _runners: list[web.AppRunner] = field(default_factory=list)

    @property
    def bot(self) -> BotProcess:
        return self.bots[0]

    @property
    def bot_url(self) -> str:
        return self.front_url or self.bot.url

    @property
    def engine(self) -> str:
        return engine_of(self.database_url)

    def driver_for(self, replica: int) -> SlackDriver:
        """A Slack driver aimed straight at one replica (bypassing the front): a retry landing elsewhere."""
        return SlackDriver(self.session, self.bots[replica].url, SIGNING_SECRET,
                           response_url_base=self.slack.response_url_base)

    def logs_tail(self, lines: int = 60) -> str:
        if len(self.bots) == 1:
            return self.bot.log_tail(lines)
        per = max(20, lines // len(self.bots))
        return "\n".join(f"--- replica {i} ({b.log_path.name}) ---\n{b.log_tail(per)}" for i, b in enumerate(self.bots))

    async def wait_for(self, predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0,
                       what: str = "condition") -> None:
        """Poll ``predicate`` (sync or async) until true; ``AssertionError`` naming ``what`` (and the bot logs)."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not reached within {timeout:g} s\n--- bot log ---\n{self.logs_tail()}")
            await asyncio.sleep(0.02)

    async def quiet(self, seconds: float = 0.5, timeout: float = 15.0) -> None:
        """Wait until the simulator has nothing pending and Slack saw no call for ``seconds``.

        The bot is another process, so "done" is observed from outside: no callback in flight and no Web API
        traffic for a while. After a SIGKILL "a while" is at least one lease: work the dead process had claimed
        (an outbox item half-delivered) is taken over only when its lease runs out, which may leave Slack silent
        that long in the middle of a thread.
        """
        if any(bot.killed for bot in self.bots):
            seconds = max(seconds, LEASE_SECONDS + 0.5)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await self.simulator.settle(timeout=max(0.1, deadline - loop.time()))
            last = self.slack.calls[-1].at if self.slack.calls else 0.0
            idle = time.monotonic() - last
            if idle >= seconds:
                return
            if loop.time() > deadline:
                raise AssertionError(f"still busy after {timeout:g} s\n--- bot log ---\n{self.logs_tail()}")
            await asyncio.sleep(min(0.1, max(0.02, seconds - idle)))


@asynccontextmanager
async def open_world(
    tmp_path: Path,
    *,
    step_delay: float = 0.05,
    env: Mapping[str, str] | None = None,
    start: bool = True,
    script: Path | None = None,
    database_url: str | None = None,
    replicas: int = 1,
) -> AsyncIterator[World]:
    """Simulator + fake Slack on port 0 here, the bot(s) as subprocesses; every bot is SIGKILLed on exit.

    ``database_url``: what the bots use (default: a SQLite file in ``tmp_path``; the caller owns any other
    database). ``replicas`` > 1: that many bots on the same database behind a round-robin front.
    """
    simulator = Simulator(SimulatorConfig(step_delay=step_delay))
    sim_runner, sim_url = await _serve(create_simulator_app(simulator))
    slack = FakeSlack(bot_token="xoxb-fake")
    slack_runner, slack_url = await _serve(create_fake_slack_app(slack))
    slack.base_url = slack_url
    runners = [sim_runner, slack_runner]
    database = None if database_url is not None else tmp_path / "bridge.db"
    url = database_url or f"sqlite:///{database}"
    bots: list[BotProcess] = []
    try:
        async with aiohttp.ClientSession() as session:
            front: RoundRobin | None = None
            front_url: str | None = None
            if replicas > 1:
                front = RoundRobin(bots, session)
                front_runner, front_url = await _serve(front.app())
                runners.append(front_runner)
            for index in range(replicas):
                port = _free_port()
                public = front_url or f"http://127.0.0.1:{port}"
                bot_env = {
                    # Only what the interpreter needs from the parent: the bot must not pick up a developer's keys.
                    **{k: v for k, v in os.environ.items()
                       if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")},
                    **bot_environment(slack_url=slack_url, sim_url=sim_url, sim=simulator.config,
                                      public_url=public, database=tmp_path / "unused.db"),
                    "DATABASE_URL": url,
                    "PORT": str(port),
                    "HOST": "127.0.0.1",
                    "LOG_LEVEL": "DEBUG",
                    "PYTHONUNBUFFERED": "1",
                    # Small grace periods so reconciliation happens within a test (the bot's defaults: 15 s / 60 s).
                    "SIGNALWIRE_TIMEOUT_SECONDS": "2",
                    "RECONCILE_GRACE_SECONDS": "1",
                    # A killed bot's leases (messages, outbox items) run out this fast; a restarted one takes over.
                    "LEASE_SECONDS": str(LEASE_SECONDS),
                    **(env or {}),
                }
                log_name = "bot.log" if replicas == 1 else f"bot{index}.log"
                bots.append(BotProcess(env=bot_env, log_path=tmp_path / log_name, port=port,
                                       script=script or REPO / "bot.py"))
            driver = SlackDriver(session, front_url or bots[0].url, SIGNING_SECRET,
                                 response_url_base=slack.response_url_base)
            world = World(simulator=simulator, sim_url=sim_url, slack=slack, slack_url=slack_url, bots=bots,
                          session=session, driver=driver, database_url=url, database=database, front=front,
                          front_url=front_url, _runners=runners)
            try:
                if start:
                    # One at a time: the first migrates the database, the others find it ready.
                    for bot in bots:
                        await bot.start()
                yield world
            finally:
                for bot in bots:
                    await bot.kill()
    finally:
        for bot in bots:
            await bot.kill()
        for runner in reversed(runners):
            await runner.cleanup()


# ----- invariants ---------------------------------------------------------------------------------------------
# Written against what people see (the simulator's record of texts, the fake Slack's channels), never the bot's
# own tables: the suite must hold whichever way the bot implements durability.

CHANNEL = "C0GENERAL"
RECEIPT_LABELS: Mapping[MessageStatus, str] = {status: b.label for status, b in STATUS_BADGES.items()}


def sms_to(world: World, to: str, body: str) -> list[SimMessage]:
    """Every text the simulator created to ``to`` with exactly ``body``."""
    return [m for m in world.simulator.messages.values() if m.direction == "outbound" and m.to == to
            and m.body == body]


def assert_exactly_one_sms(world: World, to: str, body: str) -> SimMessage:
    found = sms_to(world, to, body)
    assert len(found) == 1, f"expected exactly one SMS to {to} “{body}”, the simulator created {len(found)}"
    return found[0]


def parent_for(world: World, body: str, channel: str = CHANNEL) -> SlackMessage:
    """The one parent message about ``body`` (the parent quotes the body in its text)."""
    found = [m for m in world.slack.messages(channel) if body in m.text]
    assert len(found) == 1, f"expected one parent for “{body}”, found {[m.text for m in found]}"
    return found[0]


def thread_texts(world: World, parent: SlackMessage, channel: str = CHANNEL) -> list[str]:
    return [m.text for m in world.slack.thread(channel, parent.ts)]


# A coalesced receipt names every status it tells in its timeline, each as "<status> <!date^…>"
# (bridge.render.receipt_timeline): "✅ Delivered · queued <!date^…> · sent <!date^…> · delivered <!date^…>".
_TIMELINE_ENTRY = re.compile(r"(?<!\w)(" + "|".join(s.value for s in MessageStatus) + r") <!date\^")


def receipts_in(texts: list[str]) -> list[MessageStatus]:
    """The statuses that thread replies announce, in thread order (failure notes included): a coalesced reply
    counts once for every entry of its timeline, in the order it lists them (so a status told twice, in one reply
    or in two, still shows twice)."""
    found: list[MessageStatus] = []
    for text in texts:
        timeline = _TIMELINE_ENTRY.findall(text)
        if timeline:
            found.extend(MessageStatus(value) for value in timeline)
            continue
        for status, label in RECEIPT_LABELS.items():
            if label in text:
                found.append(status)
                break
    return found


def callback_statuses(world: World, sms: SimMessage) -> list[MessageStatus]:
    """Statuses whose callback the bot accepted (2xx), once each, in the order first accepted."""
    seen: list[MessageStatus] = []
    for attempt in world.simulator.callback_log:
        if attempt.message_id == sms.id and attempt.ok:
            status = MessageStatus(attempt.event()["status"])
            if status not in seen:
                seen.append(status)
    return seen


def assert_receipts_once(world: World, sms: SimMessage, parent: SlackMessage, *, in_order: bool = True) -> None:
    """Every receipt SignalWire sent is in the thread exactly once; the parent shows the final status.

    ``in_order=False`` (reordered callbacks): a receipt arriving after a later status may rightly be dropped, so
    only the final status must be there once, and nothing twice.
    """
    texts = thread_texts(world, parent)
    shown = receipts_in(texts)
    assert len(shown) == len(set(shown)), f"a receipt reached the thread twice: {texts}"
    final = sms.status
    assert RECEIPT_LABELS[final] in parent.text, f"parent says {parent.text!r}, SignalWire says {final.value}"
    assert final in shown, f"final status {final.value} missing from the thread: {texts}"
    if in_order:
        sent = callback_statuses(world, sms)
        assert set(sent) <= set(shown), f"receipts {sent} sent, thread shows {texts}"
        assert shown == sorted(shown, key=lambda s: s.rank), f"thread out of order: {texts}"


@dataclass(frozen=True)
class Snapshot:
    """What people can see: texts sent, channel messages and their threads, ephemerals."""

    texts: tuple[tuple[str, str, str], ...]
    slack: tuple[tuple[str, tuple[str, ...]], ...]
    ephemerals: int

    @classmethod
    def take(cls, world: World, channel: str = CHANNEL) -> Snapshot:
        texts = tuple(sorted((m.id, m.to, m.status.value) for m in world.simulator.messages.values()))
        slack = tuple((p.text, tuple(thread_texts(world, p, channel))) for p in world.slack.messages(channel))
        return cls(texts, slack, len(world.slack.ephemerals))
