"""What a load balancer and Prometheus see, over real HTTP against the running app (simulator + fake Slack):
``/healthz`` (liveness, never the database), ``/readyz`` (database, schema, Slack token) and ``/metrics``."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from bridge.config import Config
from bridge.storage.sqlite.store import MIGRATIONS
from demo.fake_slack import FakeSlack, socket_send
from demo.fake_slack import create_app as create_fake_slack_app
from demo.harness import Harness, _bound_socket, _serve, bot_environment, running_bridge
from handlers.server import METRICS, create_app
from sw_api.simulator import Simulator, SimulatorConfig
from sw_api.simulator import create_app as create_simulator_app
from tests.pg import throwaway_database

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
    # The parent and one coalesced receipt.
    assert samples[("sms_bridge_slack_api_calls_total", (("method", "chat.postMessage"), ("result", "ok")))] >= 2
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
    # The newest applied version left (versions need not be consecutive: branches take numbers of their own).
    previous = max(v for v in MIGRATIONS if v < LATEST)
    assert body["checks"]["schema"]["detail"] == f"{previous}, this code needs {LATEST}"


async def test_readyz_never_waits_on_a_database_that_does_not_answer(tmp_path: Path) -> None:
    """PostgreSQL holds a lock the readiness query needs (as a stuck migration would): /readyz answers 503 after its
    short deadline instead of hanging, /healthz is unaffected, and readiness returns once the lock is gone."""
    async with throwaway_database() as url, running_bridge(tmp_path, env={"DATABASE_URL": url}) as h:
        assert (await _get(h, "/readyz"))[0] == 200
        blocker = await asyncpg.connect(url, timeout=5)
        try:
            async with blocker.transaction():
                await blocker.execute("LOCK TABLE schema_version IN ACCESS EXCLUSIVE MODE")
                status, body = await _get(h, "/readyz")
                assert status == 503 and "database" in body["failed"]
                assert body["checks"]["database"]["detail"] == "no answer within 2s"
                assert await _get(h, "/healthz") == (200, {"ok": True})
        finally:
            await blocker.close()
        status, body = await _get(h, "/readyz")
        assert status == 200, body
        assert body["checks"]["database"]["detail"].startswith("postgresql 15")


async def test_socket_mode_acks_are_timed_too(tmp_path: Path) -> None:
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
    bot_runner, _ = await _serve(create_app(Config.from_env(env)), sock)
    try:
        await socket_send(slack, "slash_commands", {
            "command": "/sms", "text": "help", "user_id": "U0ALICE", "channel_id": "C0GENERAL", "team_id": "T0001",
            "trigger_id": "t1", "response_url": slack.response_url("r1", channel="C0GENERAL", user="U0ALICE"),
        })
        async with aiohttp.ClientSession() as session, session.get(f"{bot_url}/metrics") as response:
            text = await response.text()
        [family] = [f for f in text_string_to_metric_families(text) if f.name == "sms_bridge_slack_ack_seconds"]
        counts = {s.labels["kind"]: s.value for s in family.samples if s.name.endswith("_count")}
        assert counts == {"command": 1}
    finally:
        await bot_runner.cleanup()
        await slack_runner.cleanup()
        await sim_runner.cleanup()
