"""``bot.py`` modes over real processes and HTTP: demo, check, simulator mode, configuration errors."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import aiohttp

from bridge.config import Config
from demo.fake_slack import FakeSlack
from demo.fake_slack import create_app as create_fake_slack_app
from demo.harness import SIGNING_SECRET, _bound_socket, _serve, running_bridge
from demo.slack_driver import SlackDriver
from handlers.check import run_check
from handlers.server import create_app

REPO = Path(__file__).resolve().parents[1]


def _run_bot(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "bot.py"), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def test_demo_runs_offline_and_shows_the_threads(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SIGNALWIRE_"))}
    result = _run_bot("demo", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "✅ Delivered · SMS to +1 555-123-4567: “Running 10 min late”" in out
    assert "Your order is ready for pickup" in out
    assert "30003" in out and "[Retry]" in out
    assert "↳" in out


def test_missing_variable_stops_start_up_with_one_line(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "SLACK_SIGNING_SECRET": "x"}
    result = _run_bot(env=env, cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "SLACK_BOT_TOKEN is not set" in line and "example: SLACK_BOT_TOKEN=xoxb-" in line


async def test_check_passes_and_names_each_failure(tmp_path: Path) -> None:
    async with running_bridge(tmp_path) as h:
        lines: list[str] = []
        assert await run_check(h.config, lines) == 0
        assert all(line.startswith("ok") for line in lines), lines

        lines = []
        bad = replace(h.config, signalwire_api_token="PTwrong", slack_bot_token="xoxb-wrong")
        assert await run_check(bad, lines) == 1
        text = "\n".join(lines)
        assert "auth.test failed: invalid_auth" in text
        assert "401 Unauthorized" in text and "SIGNALWIRE_API_TOKEN" in text
        assert "PTwrong" not in text and "xoxb-wrong" not in text


async def test_simulator_mode_says_no_real_sms_was_sent(tmp_path: Path) -> None:
    slack = FakeSlack(bot_token="xoxb-fake")
    slack_runner, slack_url = await _serve(create_fake_slack_app(slack))
    slack.base_url = slack_url
    sock = _bound_socket()
    port = sock.getsockname()[1]
    config = Config.from_env({
        "SLACK_BOT_TOKEN": "xoxb-fake", "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": f"{slack_url}/api/", "SIGNALWIRE_SPACE_URL": "simulator", "PORT": str(port),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'sim.db'}",
    })
    assert config.simulated
    bot_runner, bot_url = await _serve(create_app(config), sock)
    try:
        async with aiohttp.ClientSession() as session:
            driver = SlackDriver(session, bot_url, SIGNING_SECRET, response_url_base=slack.response_url_base)
            response = await driver.slash_command("+15551234567 hello from the simulator")
            assert response.status == 200
            for _ in range(200):
                parents = slack.messages("C0GENERAL")
                if parents and "Delivered" in parents[0].text:
                    break
                await _sleep(0.05)
            [parent] = slack.messages("C0GENERAL")
            assert "Delivered" in parent.text
            assert "Simulator: no real SMS was sent" in str(parent.blocks)
    finally:
        await bot_runner.cleanup()
        await slack_runner.cleanup()


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)

