"""Command line: ``python -m sw_api.simulator [--host H] [--port P] [--inbound-url URL] [--step-delay S]``.

Owns: reading the environment once, logging set-up, serving ``create_app`` until SIGINT/SIGTERM, and the
start-up banner (the line ``listening on http://HOST:PORT`` is what scripts and tests parse).
Must not import: Slack packages, ``bridge``, ``handlers``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace

from aiohttp import web

from sw_api.simulator.app import create_app
from sw_api.simulator.config import SimulatorConfig, describe_rules
from sw_api.simulator.engine import Simulator


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sw_api.simulator", description="A local stand-in for SignalWire's messaging API."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--inbound-url", default=None, help="where injected inbound texts are POSTed")
    parser.add_argument(
        "--step-delay", type=float, default=0.15, help="seconds between status callbacks (default 0.15)"
    )
    return parser.parse_args(argv)


def _credential_lines(config: SimulatorConfig, environ: Mapping[str, str]) -> list[str]:
    # Built-in defaults are not secrets and users must copy them; values from the environment might be.
    token = config.masked_api_token if environ.get("SIGNALWIRE_API_TOKEN") else config.api_token
    key = config.masked_signing_key if environ.get("SIGNALWIRE_SIGNING_KEY") else config.signing_key
    origin = {True: "(from environment)", False: "(built-in default)"}
    return [
        f"  SIGNALWIRE_PROJECT_ID={config.project_id}  {origin[bool(environ.get('SIGNALWIRE_PROJECT_ID'))]}",
        f"  SIGNALWIRE_API_TOKEN={token}  {origin[bool(environ.get('SIGNALWIRE_API_TOKEN'))]}",
        f"  SIGNALWIRE_SIGNING_KEY={key}  {origin[bool(environ.get('SIGNALWIRE_SIGNING_KEY'))]}",
    ]


def _base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _serve(config: SimulatorConfig, host: str, port: int, environ: Mapping[str, str]) -> None:
    runner = web.AppRunner(create_app(Simulator(config)), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        url = _base_url(str(bound_host), int(bound_port))
        banner = [
            f"SignalWire simulator listening on {url}",
            f"  SIGNALWIRE_SPACE_URL={url}",
            *_credential_lines(config, environ),
            f"  status callbacks every {config.step_delay:g} s; inbound texts go to {config.inbound_url or '-'}",
            "Outcome rules (override with POST /_sim/script):",
            *describe_rules(),
            "Control routes: POST /_sim/script /_sim/faults /_sim/settings /_sim/inbound /_sim/reset, "
            "GET /_sim/messages /_sim/callbacks",
        ]
        print("\n".join(banner), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = _parse_args(argv)
    env = os.environ if environ is None else environ
    try:
        config = SimulatorConfig.from_env(env)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = replace(config, step_delay=args.step_delay, inbound_url=args.inbound_url)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(config, args.host, args.port, env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
