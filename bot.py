"""sms-bridge entry point: ``python bot.py [serve|demo|check]``.

Owns: loading ``.env`` and the configuration once, logging set-up, and choosing what to run. Nothing imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from dotenv import load_dotenv

from bridge.config import Config, ConfigError
from bridge.logs import setup_logging


def _secrets(config: Config) -> list[str]:
    return [config.slack_bot_token, config.slack_signing_secret, config.slack_app_token,
            config.signalwire_api_token, config.signalwire_signing_key]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bot.py", description="Text people from Slack through SignalWire.")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "demo", "check"],
                        help="serve (default): run the bot; demo: offline scripted session; check: verify config")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from demo.run import run_demo

        setup_logging(os.environ.get("LOG_LEVEL", "ERROR"))  # the transcript is the output; errors still show
        return asyncio.run(run_demo())

    load_dotenv()
    try:
        config = Config.from_env(os.environ)
    except ConfigError as exc:
        print(f"sms-bridge: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(os.environ.get("LOG_LEVEL", "INFO"), _secrets(config))

    if args.command == "check":
        from handlers.check import run_check

        return asyncio.run(run_check(config))

    from handlers.server import run

    run(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
