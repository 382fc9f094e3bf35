"""What a load balancer and Prometheus ask a replica: ``GET /healthz``, ``GET /readyz``, ``GET /metrics``.

Owns: liveness (answers at once, never touches the database), readiness (the database answers within a short
deadline, its schema has every migration this code needs, the Slack token is accepted — ``auth.test``, cached) and the
scrape (outbox depth and age read from the store at scrape time, then prometheus-client's exposition).
Must not import: ``handlers.server`` (it wires these routes), storage adapters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge.metrics import CONTENT_TYPE_LATEST, Metrics
from bridge.storage.port import Store, StoreUnavailable

log = logging.getLogger("handlers.ops")

DB_CHECK_SECONDS = 2.0      # a readiness probe never waits longer on the database than this
SLACK_CHECK_SECONDS = 3.0
SLACK_CACHE_SECONDS = 60.0  # auth.test is asked at most once a minute per replica
SLACK_RECHECK_SECONDS = 10.0  # ...or sooner after Slack could not be reached
# Slack's answers that mean the token itself is no good (anything else says nothing about the token).
BAD_TOKEN_ERRORS = frozenset({"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"})


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP. Nothing here can block, so a database outage never restarts it."""
    return web.json_response({"ok": True})


@dataclass(frozen=True, slots=True)
class _SlackVerdict:
    ok: bool
    detail: str
    at: float  # time.monotonic()
    reachable: bool


class Readiness:
    """``/readyz``: 200 ``{"ok": true, ...}`` or 503 naming the check that failed."""

    def __init__(self, store: Store, slack: AsyncWebClient) -> None:
        self._store = store
        self._slack = slack
        self._verdict: _SlackVerdict | None = None
        self._slack_lock = asyncio.Lock()

    async def database(self) -> tuple[bool, str, bool, str]:
        """(reachable, detail, schema current, schema detail)."""
        try:
            async with asyncio.timeout(DB_CHECK_SECONDS):
                await self._store.ping()
                status = await self._store.schema_status()
        except TimeoutError:
            return False, f"no answer within {DB_CHECK_SECONDS:g}s", False, "unknown"
        except StoreUnavailable as exc:
            return False, str(exc), False, "unknown"
        version, needed = status.schema_version, status.latest_version
        if version < needed:
            return True, f"{status.engine} {status.server_version}", False, f"{version}, this code needs {needed}"
        # Newer than this code knows: another replica already runs the next version. Migrations only add, so this
        # replica keeps serving until it is replaced (a rolling upgrade must not take every old replica out).
        schema = f"{version} (current)" if version == needed else f"{version} (newer than this code's {needed})"
        return True, f"{status.engine} {status.server_version}", True, schema

    async def slack(self) -> _SlackVerdict:
        async with self._slack_lock:  # concurrent probes share one auth.test
            verdict = self._verdict
            now = time.monotonic()
            if verdict is not None and now - verdict.at < (SLACK_CACHE_SECONDS if verdict.reachable
                                                            else SLACK_RECHECK_SECONDS):
                return verdict
            self._verdict = verdict = await self._auth_test(verdict)
            return verdict

    async def _auth_test(self, previous: _SlackVerdict | None) -> _SlackVerdict:
        now = time.monotonic()
        try:
            async with asyncio.timeout(SLACK_CHECK_SECONDS):
                await self._slack.auth_test()
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "slack_error")
            if error in BAD_TOKEN_ERRORS:
                return _SlackVerdict(False, f"token refused: {error}", now, reachable=True)
            return self._unreachable(previous, error, now)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return self._unreachable(previous, type(exc).__name__, now)
        return _SlackVerdict(True, "token valid", now, reachable=True)

    @staticmethod
    def _unreachable(previous: _SlackVerdict | None, why: str, now: float) -> _SlackVerdict:
        # Slack being down says nothing about this replica (every replica would fail alike, and SignalWire's
        # webhooks do not need Slack): the last known verdict about the token stands; none yet counts as fine.
        ok = previous.ok if previous is not None else True
        return _SlackVerdict(ok, f"not verified, Slack unreachable ({why})", now, reachable=False)

    async def __call__(self, request: web.Request) -> web.Response:
        db_ok, db_detail, schema_ok, schema_detail = await self.database()
        slack = await self.slack()
        checks: dict[str, Any] = {
            "database": {"ok": db_ok, "detail": db_detail},
            "schema": {"ok": schema_ok, "detail": schema_detail},
            "slack": {"ok": slack.ok, "detail": slack.detail},
        }
        failed = [name for name, check in checks.items() if not check["ok"]]
        body = {"ok": not failed, "checks": checks, **({"failed": failed} if failed else {})}
        if failed:
            log.warning("not ready: %s", ", ".join(f"{name}: {checks[name]['detail']}" for name in failed))
        return web.json_response(body, status=503 if failed else 200)


class MetricsRoute:
    """``/metrics``: the outbox gauges are read from the store now (bounded), then everything is rendered."""

    def __init__(self, metrics: Metrics, store: Store) -> None:
        self._metrics = metrics
        self._store = store

    async def __call__(self, request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(DB_CHECK_SECONDS):
                self._metrics.set_outbox(await self._store.outbox_stats(datetime.now(UTC)))
        except TimeoutError:
            self._metrics.db_errors.labels(operation="outbox_stats").inc()
        except StoreUnavailable:
            pass  # counted by the metered store; the gauges keep their last values
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
