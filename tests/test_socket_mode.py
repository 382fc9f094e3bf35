"""Socket Mode: with SLACK_APP_TOKEN set, Slack traffic arrives over a websocket, SignalWire's still over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from bridge.config import Config
from demo.fake_slack import FakeSlack, socket_send
from demo.fake_slack import create_app as create_fake_slack_app
from demo.harness import _bound_socket, _serve, bot_environment
from handlers.server import create_app
from sw_api.simulator import Simulator, SimulatorConfig
from sw_api.simulator import create_app as create_simulator_app


async def test_slash_command_over_socket_mode_is_sent_and_receipted(tmp_path: Path) -> None:
    simulator = Simulator(SimulatorConfig(step_delay=0.02))
    sim_runner, sim_url = await _serve(create_simulator_app(simulator))
    slack = FakeSlack(bot_token="xoxb-fake")
    slack_runner, slack_url = await _serve(create_fake_slack_app(slack))
    slack.base_url = slack_url
    sock = _bound_socket()
    bot_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env = bot_environment(slack_url=slack_url, sim_url=sim_url, sim=simulator.config, public_url=bot_url,
                          database=tmp_path / "socket.db")
    env.pop("SLACK_SIGNING_SECRET")
    env["SLACK_APP_TOKEN"] = slack.app_token
    config = Config.from_env(env)
    bot_runner, _ = await _serve(create_app(config), sock)
    try:
        ack = await socket_send(slack, "slash_commands", {
            "command": "/sms", "text": "+15551234567 over the socket", "user_id": "U0ALICE",
            "channel_id": "C0GENERAL", "team_id": "T0001", "trigger_id": "t1",
            "response_url": slack.response_url("r1", channel="C0GENERAL", user="U0ALICE"),
        })
        assert ack is None or isinstance(ack, dict)
        for _ in range(200):
            parents = slack.messages("C0GENERAL")
            if parents and "Delivered" in parents[0].text:
                break
            await asyncio.sleep(0.05)
        [parent] = slack.messages("C0GENERAL")
        assert "Delivered" in parent.text
        assert [m.body for m in simulator.messages.values()] == ["over the socket"]
        async with aiohttp.ClientSession() as session, session.post(f"{bot_url}/slack/events", data=b"x") as resp:
            assert resp.status == 404  # in Socket Mode there is no HTTP route for Slack at all
    finally:
        await bot_runner.cleanup()
        await slack_runner.cleanup()
        await sim_runner.cleanup()
