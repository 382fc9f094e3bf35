"""What a load balancer and Prometheus see, over real HTTP against the running app (simulator + fake Slack):
``/healthz`` (liveness, never the database), ``/readyz`` (database, schema, Slack token) and ``/metrics``."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from bridge.storage.sqlite.store import MIGRATIONS
from demo.harness import Harness, running_bridge
from handlers.server import METRICS

LATEST = max(MIGRATIONS)
METRIC_NAMES = {
    "sms_bridge_sends", "sms_bridge_reconciliations", "sms_bridge_receipt_recoveries", "sms_bridge_status_callbacks",
    "sms_bridge_inbound_webhooks", "sms_bridge_outbox_depth", "sms_bridge_outbox_oldest_age_seconds",
    "sms_bridge_slack_api_calls", "sms_bridge_slack_api_retries", "sms_bridge_slack_ack_seconds",
    "sms_bridge_database_errors",
}


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bridge(tmp_path) as harness:
        yield harness


async def _get(h: Harness, path: str) -> tuple[int, Any]:
    async with h.session.get(h.bot_url + path) as response:
        if path == "/metrics":
            assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
            return response.status, await response.text()
        return response.status, await response.json()


async def _scrape(h: Harness) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by (sample name, sorted labels)."""
    status, text = await _get(h, "/metrics")
    assert status == 200
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_ready_replica_says_which_engine_and_schema(h: Harness) -> None:
    status, body = await _get(h, "/readyz")
    assert status == 200, body
    assert body["ok"] is True
    checks = body["checks"]
    assert checks["database"]["ok"] and checks["database"]["detail"].startswith("sqlite ")
    assert checks["schema"]["ok"] and checks["schema"]["detail"].endswith("(current)")
    assert checks["slack"] == {"ok": True, "detail": "token valid"}
    assert await _get(h, "/healthz") == (200, {"ok": True})


async def test_without_the_database_readyz_is_503_while_healthz_stays_200(h: Harness) -> None:
    await h.bridge.store.close()
    status, body = await _get(h, "/readyz")
    assert status == 503
    assert body["ok"] is False and "database" in body["failed"] and "schema" in body["failed"]
    assert "closed" in body["checks"]["database"]["detail"]
    # Liveness never asks the database: the process is fine, only not ready.
    assert await _get(h, "/healthz") == (200, {"ok": True})
    samples = await _scrape(h)  # the scrape itself still answers
    assert samples[("sms_bridge_database_errors_total", (("operation", "ping"),))] >= 1
    assert samples[("sms_bridge_database_errors_total", (("operation", "outbox_stats"),))] >= 1


async def test_a_revoked_slack_token_makes_the_replica_unready_and_auth_test_is_cached(h: Harness) -> None:
    h.slack.add_response("auth.test", body={"ok": False, "error": "token_revoked"})
    calls = h.slack.call_count("auth.test")
    status, body = await _get(h, "/readyz")
    assert status == 503 and body["failed"] == ["slack"]
    assert body["checks"]["slack"]["detail"] == "token refused: token_revoked"
    status, body = await _get(h, "/readyz")
    assert status == 503 and body["failed"] == ["slack"]
    assert h.slack.call_count("auth.test") == calls + 1  # the second probe used the cached verdict


async def test_slack_unreachable_does_not_take_the_replica_out(h: Harness) -> None:
    # Every replica would fail alike, and SignalWire's webhooks need no Slack: readiness is about this replica.
    h.slack.outage(30.0, status=503)
    status, body = await _get(h, "/readyz")
    assert status == 200, body
    assert body["checks"]["slack"]["detail"].startswith("not verified, Slack unreachable")


async def test_metrics_count_sends_callbacks_slack_calls_and_ack_latency(h: Harness) -> None:
    names = {family.name for family in text_string_to_metric_families((await _get(h, "/metrics"))[1])}
    assert names == METRIC_NAMES
    h.slack.add_response("chat.postMessage", status=500)  # slack_sdk retries it once
    response = await h.driver.slash_command("+1 555 123 4567 Running 10 min late")
    assert response.status == 200
    await h.settle()
    [parent] = h.slack.messages("C0GENERAL")
    assert "Delivered" in parent.text

    samples = await _scrape(h)
    assert samples[("sms_bridge_sends_total", (("outcome", "accepted"),))] == 1
    assert samples[("sms_bridge_sends_total", (("outcome", "rejected"),))] == 0
    assert samples[("sms_bridge_status_callbacks_total", (("answer", "204"), ("status", "delivered")))] == 1
    assert samples[("sms_bridge_slack_api_calls_total", (("method", "chat.postMessage"), ("result", "ok")))] >= 4
    assert samples[("sms_bridge_slack_api_retries_total", (("method", "chat.postMessage"),))] == 1
    assert samples[("sms_bridge_slack_ack_seconds_count", (("kind", "command"),))] == 1
    assert samples[("sms_bridge_outbox_depth", ())] == 0
    assert samples[("sms_bridge_outbox_oldest_age_seconds", ())] == 0
    assert not any(name == "sms_bridge_database_errors_total" for name, _ in samples)


async def test_refused_callbacks_are_counted_with_their_answer(h: Harness) -> None:
    async with h.session.post(f"{h.bot_url}/signalwire/status?ref=nope&t=bad", data=b"{}") as response:
        assert response.status in (400, 401)
        answer = str(response.status)
    async with h.session.post(f"{h.bot_url}/signalwire/inbound", data=b"not json",
                              headers={"Content-Type": "application/json"}) as response:
        inbound_answer = str(response.status)
    samples = await _scrape(h)
    assert samples[("sms_bridge_status_callbacks_total", (("answer", answer), ("status", "unparsed")))] == 1
    assert samples[("sms_bridge_inbound_webhooks_total", (("answer", inbound_answer),))] == 1


async def test_each_app_has_its_own_registry_with_the_same_names(tmp_path: Path) -> None:
    # Two replicas in one process (as in the in-process replica tests) must not collide in a global registry.
    async with running_bridge(tmp_path / "a") as one, running_bridge(tmp_path / "b") as two:
        first, second = (harness._bot_runner.app[METRICS] for harness in (one, two) if harness._bot_runner)
        assert first.registry is not second.registry
        names = [{f.name for f in text_string_to_metric_families((await _get(x, "/metrics"))[1])} for x in (one, two)]
        assert names[0] == names[1] == METRIC_NAMES


async def test_readiness_follows_the_schema_version_in_the_database(h: Harness) -> None:
    path = h.config.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:  # another replica, one version ahead, migrated the shared database
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (LATEST + 1,))
    status, body = await _get(h, "/readyz")
    assert status == 200, body
    assert body["checks"]["schema"]["detail"] == f"{LATEST + 1} (newer than this code's {LATEST})"
    with sqlite3.connect(path) as db:  # the database lost migrations this code needs (e.g. restored from old)
        db.execute("DELETE FROM schema_version WHERE version >= ?", (LATEST,))
    status, body = await _get(h, "/readyz")
    assert status == 503 and body["failed"] == ["schema"]
    assert body["checks"]["schema"]["detail"] == f"{LATEST - 1}, this code needs {LATEST}"
