"""The whole bridge on loopback: the real bot app, the SignalWire simulator and the fake Slack, each on port 0.

Owns: starting and stopping the three servers in one process, wiring their URLs into a real ``Config``, and
restarting the bot on the same port and database (what a crash-and-restart looks like to the outside).
Used by ``python bot.py demo`` and by the end-to-end tests. Must not import: ``bot.py``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from bridge.config import Config
from bridge.service import Bridge
from demo.fake_slack import FakeSlack
from demo.fake_slack import create_app as create_fake_slack_app
from demo.slack_driver import SlackDriver
from handlers.server import BRIDGE, create_app
from sw_api.simulator import Simulator, SimulatorConfig
from sw_api.simulator import create_app as create_simulator_app

SIGNING_SECRET = "demo-slack-signing-secret"
FROM_NUMBER = "+15557770000"


async def _serve(app: web.Application, sock: socket.socket | None = None) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    if sock is None:
        site: web.BaseSite = web.TCPSite(runner, "127.0.0.1", 0)
    else:
        site = web.SockSite(runner, sock)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


def _bound_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@dataclass
class Harness:
    simulator: Simulator
    sim_url: str
    slack: FakeSlack
    slack_url: str
    config: Config
    session: aiohttp.ClientSession
    driver: SlackDriver
    bot_port: int
    _bot_runner: web.AppRunner | None = None
    _runners: list[web.AppRunner] = field(default_factory=list)

    @property
    def bot_url(self) -> str:
        return f"http://127.0.0.1:{self.bot_port}"

    @property
    def bridge(self) -> Bridge:
        assert self._bot_runner is not None, "the bot is not running"
        return self._bot_runner.app[BRIDGE]

    async def start_bot(self) -> None:
        self._bot_runner, _ = await _serve(create_app(self.config), _bound_socket(self.bot_port))

    async def stop_bot(self) -> None:
        if self._bot_runner is not None:
            await self._bot_runner.cleanup()
            self._bot_runner = None

    async def restart_bot(self) -> None:
        await self.stop_bot()
        await self.start_bot()

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until callbacks, background sends and Slack posts have all finished.

        A callback can start a Slack post and a send can start callbacks, so alternate until both are quiet.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        quiet_rounds = 0
        while quiet_rounds < 2 and loop.time() < deadline:
            await self.simulator.settle(timeout=max(0.1, deadline - loop.time()))
            busy = self._bot_runner is not None and not await self.bridge.idle()
            if busy:
                await self.bridge.drain(timeout=max(0.1, deadline - loop.time()))
                await self.bridge.outbox.flush(timeout=max(0.1, deadline - loop.time()))
            quiet_rounds = 0 if busy else quiet_rounds + 1
            await asyncio.sleep(0.03)


def bot_environment(
    *,
    slack_url: str,
    sim_url: str,
    sim: SimulatorConfig,
    public_url: str,
    database: Path,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = {
        "SLACK_BOT_TOKEN": "xoxb-fake",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": f"{slack_url}/api/",
        "SIGNALWIRE_SPACE_URL": sim_url,
        "SIGNALWIRE_PROJECT_ID": sim.project_id,
        "SIGNALWIRE_API_TOKEN": sim.api_token,
        "SIGNALWIRE_SIGNING_KEY": sim.signing_key,
        "SIGNALWIRE_FROM_NUMBERS": FROM_NUMBER,
        "PUBLIC_URL": public_url,
        "DATABASE_URL": f"sqlite:///{database}",
        # Fake Slack has no rate limit, and tests send far faster than one post a second into one channel and call a
        # run "done" after half a second without Slack calls: receipts coalesce over a short window and posts are
        # paced generously. Tests of the production defaults (bench/slack_calls.py, tests/test_slack_calls.py) set
        # their own values.
        "RECEIPT_COALESCE_SECONDS": "0.2",
        "SLACK_CHANNEL_POSTS_PER_SECOND": "50",
        "SLACK_CHANNEL_POST_BURST": "20",
        # Tests send many texts from one number at once: the carrier pace (issue 13) is set high unless a test sets
        # its own SIGNALWIRE_MPS.
        "SIGNALWIRE_MPS": "1000",
    }
    env.update(extra or {})
    return env


@asynccontextmanager
async def running_bridge(
    data_dir: Path,
    *,
    step_delay: float = 0.02,
    env: Mapping[str, str] | None = None,
    owned_numbers: frozenset[str] = frozenset(),
) -> AsyncIterator[Harness]:
    """Simulator + fake Slack + bot, all on loopback; everything is stopped on exit."""
    simulator = Simulator(SimulatorConfig(step_delay=step_delay, owned_numbers=owned_numbers))
    sim_runner, sim_url = await _serve(create_simulator_app(simulator))
    slack = FakeSlack(bot_token="xoxb-fake")
    slack_runner, slack_url = await _serve(create_fake_slack_app(slack))
    slack.base_url = slack_url
    probe = _bound_socket()
    bot_port = probe.getsockname()[1]
    probe.close()
    bot_url = f"http://127.0.0.1:{bot_port}"
    config = Config.from_env(
        bot_environment(
            slack_url=slack_url,
            sim_url=sim_url,
            sim=simulator.config,
            public_url=bot_url,
            database=data_dir / "bridge.db",
            extra=env,
        )
    )
    async with aiohttp.ClientSession() as session:
        driver = SlackDriver(session, bot_url, SIGNING_SECRET, response_url_base=slack.response_url_base)
        harness = Harness(
            simulator=simulator,
            sim_url=sim_url,
            slack=slack,
            slack_url=slack_url,
            config=config,
            session=session,
            driver=driver,
            bot_port=bot_port,
            _runners=[sim_runner, slack_runner],
        )
        await harness.start_bot()
        try:
            yield harness
        finally:
            await harness.stop_bot()
            for runner in harness._runners:
                await runner.cleanup()
