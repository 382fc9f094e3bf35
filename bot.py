"""sms-bridge entry point: ``python bot.py [serve|demo|check|migrate|copy-db]``, also installed as ``sms-bridge``.

Owns: loading ``.env`` and the configuration once, logging set-up, choosing what to run, and the wording and exit
codes of the database commands (``migrate``, ``copy-db``). Nothing imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from urllib.parse import urlsplit

from dotenv import load_dotenv

from bridge.config import Config, ConfigError
from bridge.logs import setup_logging

DEFAULT_DATABASE_URL = "sqlite:///data/sms-bridge.db"


def _secrets(config: Config) -> list[str]:
    return [config.slack_bot_token, config.slack_signing_secret, config.slack_app_token,
            config.signalwire_api_token, config.signalwire_signing_key, *_url_passwords(config.database_url)]


def _url_passwords(*urls: str) -> list[str]:
    """Passwords inside database URLs, so the log never shows them."""
    found = []
    for url in urls:
        try:
            password = urlsplit(url).password
        except ValueError:
            continue
        if password:
            found.append(password)
    return found


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Text people from Slack through SignalWire.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", help="run the bot (the default)")
    commands.add_parser("demo", help="offline scripted session: simulator, fake Slack, transcript")
    commands.add_parser("check", help="verify the configuration: Slack token, SignalWire credentials, database")
    migrate = commands.add_parser("migrate", help="apply the database migrations this version needs, then exit")
    migrate.add_argument("--database-url", help="default: $DATABASE_URL, else " + DEFAULT_DATABASE_URL)
    copy = commands.add_parser(
        "copy-db", help="copy every row of one database into an empty one (e.g. SQLite to PostgreSQL)",
        description="Copy an installation (messages, conversations, threads, opt-outs, audit, outbox, secrets) "
                    "into an empty database and verify the row counts. Stop the bot first.")
    copy.add_argument("--from", dest="source", required=True, metavar="URL", help="e.g. sqlite:///data/sms-bridge.db")
    copy.add_argument("--to", dest="target", required=True, metavar="URL",
                      help="e.g. postgresql://user:password@host/db (empty, or holding only the schema)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "serve"

    if command == "demo":
        from demo.run import run_demo

        setup_logging(os.environ.get("LOG_LEVEL", "ERROR"))  # the transcript is the output; errors still show
        return asyncio.run(run_demo())

    load_dotenv()
    if command == "migrate":
        url = args.database_url or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
        setup_logging(os.environ.get("LOG_LEVEL", "WARNING"), _url_passwords(url))
        return asyncio.run(_migrate(url))
    if command == "copy-db":
        setup_logging(os.environ.get("LOG_LEVEL", "WARNING"), _url_passwords(args.source, args.target))
        return asyncio.run(_copy_db(args.source, args.target))

    try:
        config = Config.from_env(os.environ)
    except ConfigError as exc:
        print(f"sms-bridge: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(os.environ.get("LOG_LEVEL", "INFO"), _secrets(config))

    if command == "check":
        from handlers.check import run_check

        return asyncio.run(run_check(config))

    from handlers.server import run

    run(config)
    return 0


async def _migrate(url: str) -> int:
    from bridge.storage.port import StoreUnavailable
    from bridge.storage.tools import migrate, redact_url

    print(f"database: {redact_url(url)}")
    try:
        done = await migrate(url)
    except StoreUnavailable as exc:
        print(f"sms-bridge: migrate failed: {exc}", file=sys.stderr)
        return 1
    status = done.after
    print(f"engine: {status.engine} {status.server_version}")
    if not status.current:
        print(f"schema: {status.schema_version}, newer than this version of sms-bridge knows "
              f"({status.latest_version}): upgrade it", file=sys.stderr)
        return 1
    if done.before is None:
        applied = "created"
    elif done.before == status.schema_version:
        applied = "nothing to apply"
    else:
        applied = f"migrated from {done.before}"
    print(f"schema: {status.schema_version} (current; {applied})")
    return 0


async def _copy_db(source: str, target: str) -> int:
    from bridge.storage.copy import CopyFailed, CopyRefused, copy_db
    from bridge.storage.port import StoreUnavailable
    from bridge.storage.tools import redact_url

    print(f"copying {redact_url(source)} -> {redact_url(target)}")
    try:
        report = await copy_db(source, target)
    except CopyRefused as exc:
        print(f"sms-bridge: copy-db refused: {exc}", file=sys.stderr)
        return 1
    except (CopyFailed, StoreUnavailable) as exc:
        print(f"sms-bridge: copy-db failed: {exc}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    total = sum(count.target for count in report.counts)
    if not report.ok:
        print("sms-bridge: copy-db: row counts differ (was the bot still running?)", file=sys.stderr)
        return 1
    print(f"ok: {total} rows in {len(report.counts)} tables copied and verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
