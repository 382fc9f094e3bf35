"""What the benches share: the engines to measure on, processes to run side by side, and percentiles.

Owns: ``engines()`` (SQLite always; PostgreSQL when ``BENCH_POSTGRES_URL`` — default the local trust-auth server —
answers, in a throwaway database dropped afterwards), ``World`` (simulator + fake Slack in this process, the real
``python bot.py`` and the bare aiohttp baseline as subprocesses on loopback), ``percentile`` and the table printer.
Must not import: ``tests`` (benches stand alone), ``handlers`` or ``bridge.service`` (the bot is reached over HTTP).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

from demo.fake_slack import FakeSlack
from demo.fake_slack import create_app as create_fake_slack_app
from demo.harness import SIGNING_SECRET, _bound_socket, _serve, bot_environment
from demo.slack_driver import SlackDriver
from sw_api.simulator import Simulator, SimulatorConfig
from sw_api.simulator import create_app as create_simulator_app

REPO = Path(__file__).resolve().parents[1]
POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


REFUSAL_MARKERS = ("was not sent", "Nothing was sent")


def refused(body: str) -> bool:
    """Whether a ``/sms`` ack says the text was not sent (e.g. the intent insert outlived its 1 s bound)."""
    return any(marker in body for marker in REFUSAL_MARKERS)


# bridge.config's defaults (demo.harness lowers them so tests need not wait a second for each receipt); the bench's
# own environment may override them (tests/test_bench_smoke.py does, to stay small).
PRODUCTION_SLACK_PACING = {"RECEIPT_COALESCE_SECONDS": "2", "SLACK_CHANNEL_POSTS_PER_SECOND": "1",
                           "SLACK_CHANNEL_POST_BURST": "4"}


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def free_port() -> int:
    probe = _bound_socket()
    port: int = probe.getsockname()[1]
    probe.close()
    return port


@asynccontextmanager
async def _postgres_database() -> AsyncIterator[str | None]:
    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        print(f"PostgreSQL not reachable ({type(exc).__name__}): measuring SQLite only", file=sys.stderr)
        yield None
        return
    name = f"sms_bridge_bench_{secrets.token_hex(4)}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    parts = urlsplit(POSTGRES_ADMIN_URL)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    finally:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def engine_urls(wanted: Sequence[str], data_dir: Path) -> AsyncIterator[dict[str, str]]:
    """``{"sqlite": url, "postgresql": url}`` for the wanted engines that are available."""
    urls: dict[str, str] = {}
    if "sqlite" in wanted:
        urls["sqlite"] = f"sqlite:///{data_dir / 'bench.db'}"
    if "postgresql" in wanted:
        async with _postgres_database() as pg:
            if pg is not None:
                urls["postgresql"] = pg
            yield urls
        return
    yield urls


class Process:
    """A subprocess on a loopback port, started and waited for (``/healthz``), always killed at the end."""

    def __init__(self, argv: list[str], env: Mapping[str, str], port: int, log: Path) -> None:
        self.argv, self.env, self.port, self.log_path = argv, dict(env), port, log
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, session: aiohttp.ClientSession, timeout: float = 30.0) -> None:
        log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(*self.argv, env=self.env, cwd=REPO, stdout=log,
                                                         stderr=asyncio.subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise RuntimeError(f"{self.argv[1]} exited: {self.log_path.read_text()[-2000:]}")
            try:
                async with session.get(f"{self.url}/healthz", timeout=aiohttp.ClientTimeout(total=1)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.argv[1]} did not answer /healthz within {timeout:g} s")

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            async with asyncio.timeout(10):
                await self.proc.wait()


@dataclass
class World:
    simulator: Simulator
    slack: FakeSlack
    session: aiohttp.ClientSession
    bot: Process
    bare: Process
    driver: SlackDriver        # aimed at the bot
    bare_driver: SlackDriver   # the same requests aimed at the bare endpoint


@asynccontextmanager
async def open_world(database_url: str, data_dir: Path, *, env: Mapping[str, str] | None = None,
                     step_delay: float = 0.05) -> AsyncIterator[World]:
    simulator = Simulator(SimulatorConfig(step_delay=step_delay))
    sim_runner, sim_url = await _serve(create_simulator_app(simulator))
    slack = FakeSlack(bot_token="xoxb-fake")
    slack_runner, slack_url = await _serve(create_fake_slack_app(slack))
    slack.base_url = slack_url
    bot_port, bare_port = free_port(), free_port()
    bot_env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")},
        **bot_environment(slack_url=slack_url, sim_url=sim_url, sim=simulator.config,
                          public_url=f"http://127.0.0.1:{bot_port}", database=data_dir / "unused.db"),
        "DATABASE_URL": database_url,
        "PORT": str(bot_port),
        "HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "SMS_RATE_LIMIT_PER_USER": "1000000",
        # The harness tunes these for a fake Slack without rate limits; benches measure what production does.
        **{name: os.environ.get(name, value) for name, value in PRODUCTION_SLACK_PACING.items()},
        **(env or {}),
    }
    bot = Process([sys.executable, "bot.py"], bot_env, bot_port, data_dir / "bot.log")
    bare = Process([sys.executable, "bench/bare_server.py", str(bare_port)], bot_env, bare_port,
                   data_dir / "bare.log")
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
            await bot.start(session)
            await bare.start(session)
            yield World(
                simulator=simulator, slack=slack, session=session, bot=bot, bare=bare,
                driver=SlackDriver(session, bot.url, SIGNING_SECRET, response_url_base=slack.response_url_base,
                                   show_acks=False),
                bare_driver=SlackDriver(session, bare.url, SIGNING_SECRET, show_acks=False),
            )
    finally:
        await bot.stop()
        await bare.stop()
        for runner in (sim_runner, slack_runner):
            await runner.cleanup()


async def run_concurrently(n: int, clients: int, one: Callable[[int], Awaitable[float]]) -> tuple[list[float], float]:
    """Run ``one(i)`` for i in range(n) with ``clients`` at a time; (latencies in ms, wall seconds)."""
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def client() -> None:
        while not queue.empty():
            latencies.append(await one(queue.get_nowait()))

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(clients):
            group.create_task(client())
    return latencies, time.perf_counter() - started


async def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll another process's visible state (no event to wait on across processes); whether it came true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def temp_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="sms-bridge-bench-")


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]], *, left: int = 0) -> None:
    """Columns right-aligned (figures), except the first ``left`` ones (labels)."""
    print(f"\n{title}")
    widths = [max(len(str(h)), *(len(_cell(r[i])) for r in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                                   strict=True)))

    print(line([str(h) for h in header]).rstrip())
    for row in rows:
        print(line([_cell(c) for c in row]).rstrip())


def _cell(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def thread_cpu(process: Process) -> dict[str, float]:
    """CPU seconds (user + system) ``process`` has used so far, per thread: ``main`` (the event loop) and the
    others by name (aiosqlite's connection threads are called ``python``). Empty when it is not running or there
    is no /proc. Read from the kernel, so it is what the process cost whatever else the machine was doing."""
    if process.proc is None:
        return {}
    pid = process.proc.pid
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii", errors="replace") as stat:
                text = stat.read()
        except OSError:
            continue  # the thread ended meanwhile
        name = "main" if tid == str(pid) else text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        used[name] = used.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return used


def cpu_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Seconds each thread group used between two ``thread_cpu`` readings (threads born meanwhile count whole)."""
    return {name: after[name] - before.get(name, 0.0) for name in after}


@asynccontextmanager
async def profiled(process: Process, label: str) -> AsyncIterator[None]:
    """With ``BENCH_PROFILE=DIR``: py-spy samples ``process`` for the duration (collapsed stacks in DIR/label.txt).

    py-spy attaches to the running bot from outside, so the measured process runs unmodified; without the
    variable (or without py-spy on PATH) this does nothing."""
    out_dir = os.environ.get("BENCH_PROFILE")
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if not out_dir or process.proc is None or spy is None:
        yield
        return
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, f"{label}.txt")
    sampler = await asyncio.create_subprocess_exec(spy, "record", "--pid", str(process.proc.pid), "--format", "raw",
                                                   "--rate", "500", "--output", out, "--nonblocking",
                                                   stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.DEVNULL)
    await asyncio.sleep(0.5)  # py-spy attaches
    try:
        yield
    finally:
        sampler.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            await sampler.wait()


SUMMARY_ENV = "BENCH_SUMMARY"
"""When set, a JSON-lines file each bench appends its goal rows to; ``python -m bench.summary FILE`` prints them."""


def record_goal(figure: str, engine: str, baseline: object, measured: object, goal: str, ok: bool) -> None:
    """One row of ``make bench``'s closing table: a figure, what it is compared with, the issue's goal, met or not.

    Benches report, they do not fail: a missed goal is a row saying MISSED, never an exit status."""
    path = os.environ.get(SUMMARY_ENV)
    if not path:
        return
    row = {"figure": figure, "engine": engine, "baseline": _cell(baseline), "measured": _cell(measured),
           "goal": goal, "ok": "ok" if ok else "MISSED"}
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
