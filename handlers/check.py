"""``python bot.py check``: prove the configuration works before going live, and say precisely what does not.

Owns: the checks (Slack ``auth.test``, a SignalWire logs call, the database: reachable, its engine and server
version, its schema version) and their wording, and a ``warn`` line
for a risk the operator accepted (``SIGNALWIRE_ALLOW_UNSIGNED_WEBHOOKS=true``; not a failure).
Must not import: ``handlers.server`` (checks run without serving anything).
"""

from __future__ import annotations

import aiohttp
from slack_sdk.errors import SlackApiError

from bridge.config import Config
from bridge.storage.engines import open_store
from bridge.storage.port import StoreUnavailable
from bridge.storage.tools import redact_url
from handlers.slack_out import make_web_client
from handlers.web import UNSIGNED_WEBHOOKS_WARNING
from sw_api.client import NO_RETRY, SignalWireClient
from sw_api.errors import ConnectError, SignalWireError, Unauthorized


async def run_check(config: Config, out: list[str] | None = None) -> int:
    """Returns 0 when every check passed, 1 otherwise; each line is also printed (and appended to ``out``)."""
    failures = 0

    def say(ok: bool, text: str) -> None:
        nonlocal failures
        failures += 0 if ok else 1
        line = f"{'ok  ' if ok else 'FAIL'} {text}"
        print(line)
        if out is not None:
            out.append(line)

    client = make_web_client(config.slack_bot_token, config.slack_api_url)
    try:
        auth = await client.auth_test()
        say(True, f"Slack: token works for team {auth.get('team')} as bot user {auth.get('user')}")
    except SlackApiError as exc:
        error = exc.response.get("error")
        hint = " (reinstall the app and copy the Bot User OAuth Token)" if error in (
            "invalid_auth", "not_authed", "token_revoked") else ""
        say(False, f"Slack: auth.test failed: {error}{hint}")
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        say(False, f"Slack: cannot reach {config.slack_api_url}: {type(exc).__name__}")

    if config.simulated:
        say(True, "SignalWire: simulator mode, no credentials needed (no real SMS will be sent)")
    else:
        async with aiohttp.ClientSession() as session:
            sw = SignalWireClient(session, space=config.signalwire_space_url,
                                  project_id=config.signalwire_project_id,
                                  api_token=config.signalwire_api_token, retry=NO_RETRY)
            try:
                async for _ in sw.list_messages(page_size=1, max_pages=1):
                    break
                say(True, f"SignalWire: credentials accepted by {sw.base_url}")
            except Unauthorized:
                say(False, "SignalWire: 401 Unauthorized: check SIGNALWIRE_PROJECT_ID and SIGNALWIRE_API_TOKEN "
                           "(the token needs the Messaging scope)")
            except ConnectError as exc:
                say(False, f"SignalWire: cannot connect to {sw.base_url}: {exc} (check SIGNALWIRE_SPACE_URL)")
            except SignalWireError as exc:
                say(False, f"SignalWire: logs call failed: {exc}")

    where = redact_url(config.database_url)
    try:
        store = await open_store(config.database_url)
        try:
            await store.ping()
            status = await store.schema_status()
        finally:
            await store.close()
        say(True, f"Database: {where} is reachable and migrated")
        if status.current:
            say(True, f"Database engine: {status.engine} {status.server_version}, schema {status.schema_version} "
                      "(current)")
        else:
            say(False, f"Database engine: {status.engine} {status.server_version}, schema {status.schema_version}, "
                       f"newer than this version of sms-bridge knows ({status.latest_version}): upgrade it")
    except StoreUnavailable as exc:
        say(False, f"Database: {where}: {exc}")

    if config.allow_unsigned_webhooks:
        # Not a failure (the operator opted in), but never silent.
        line = f"warn {UNSIGNED_WEBHOOKS_WARNING}"
        print(line)
        if out is not None:
            out.append(line)
    return 1 if failures else 0
