"""What ``/metrics`` exposes, in Prometheus' format through prometheus-client: the same names on every replica.

Owns: ``Metrics`` (one ``CollectorRegistry`` per app, so several apps in one process never collide) and
``metered(store, metrics)``, a proxy around the ``Store`` that counts the outcomes the bridge records with
``store.count(name)`` and every ``StoreUnavailable`` by operation — so the domain code needs no metrics calls.
Values are per process (a counter restarts at 0 with its replica); Prometheus sums the replicas.
Must not import: ``handlers``, Slack packages, aiohttp (the Slack and HTTP hooks live in ``handlers``).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, cast

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from bridge.model import OutboxStats
from bridge.storage.port import Store, StoreUnavailable

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "metered"]

# A Slack ack must be sent within 3 s; the buckets resolve the part of that range that matters.
ACK_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0)
SEND_OUTCOMES = ("accepted", "rejected", "rejected_slack", "unknown", "rate_limited", "interrupted")
RECONCILE_OUTCOMES = ("by_callback", "found", "ambiguous", "resent", "gave_up")


class Metrics:
    def __init__(self) -> None:
        # No ``*_created`` series next to every counter: they double the output and nobody alerts on them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sends = Counter("sms_bridge_sends", "Send outcomes (accepted by SignalWire, rejected, unknown, ...)",
                             ["outcome"], registry=r)
        self.reconciliations = Counter("sms_bridge_reconciliations",
                                       "Outcomes of reconciling a send whose result was unknown", ["outcome"],
                                       registry=r)
        self.receipt_recoveries = Counter("sms_bridge_receipt_recoveries",
                                          "Receipts recovered by the sweeper (from SignalWire's logs, or re-told)",
                                          ["outcome"], registry=r)
        self.callbacks = Counter("sms_bridge_status_callbacks",
                                 "SignalWire status callbacks by delivery status and the HTTP status answered",
                                 ["status", "answer"], registry=r)
        self.inbound = Counter("sms_bridge_inbound_webhooks", "Inbound SMS webhooks by the HTTP status answered",
                               ["answer"], registry=r)
        self.outbox_depth = Gauge("sms_bridge_outbox_depth", "Slack outbox items not yet done or failed",
                                  registry=r)
        self.outbox_oldest = Gauge("sms_bridge_outbox_oldest_age_seconds",
                                   "Age of the oldest undone Slack outbox item (0 when empty)", registry=r)
        self.slack_calls = Counter("sms_bridge_slack_api_calls", "Slack Web API calls by method and result",
                                   ["method", "result"], registry=r)
        self.slack_retries = Counter("sms_bridge_slack_api_retries",
                                     "Slack Web API retries made by slack_sdk's retry handlers, by method",
                                     ["method"], registry=r)
        self.ack_seconds = Histogram("sms_bridge_slack_ack_seconds",
                                     "Time to answer a Slack request over HTTP (slash command, interactivity, event)",
                                     ["kind"], buckets=ACK_BUCKETS, registry=r)
        self.db_errors = Counter("sms_bridge_database_errors", "Store operations that failed (StoreUnavailable)",
                                 ["operation"], registry=r)
        for outcome in SEND_OUTCOMES:
            self.sends.labels(outcome=outcome)
        for outcome in RECONCILE_OUTCOMES:
            self.reconciliations.labels(outcome=outcome)

    def outcome(self, name: str, by: int = 1) -> None:
        """One ``store.count(name, by)``: ``reconciled_*``, ``receipts_*``, or a send outcome."""
        if name.startswith("reconciled_"):
            self.reconciliations.labels(outcome=name.removeprefix("reconciled_")).inc(by)
        elif name.startswith("receipts_"):
            self.receipt_recoveries.labels(outcome=name.removeprefix("receipts_")).inc(by)
        else:
            self.sends.labels(outcome=name).inc(by)

    def set_outbox(self, stats: OutboxStats) -> None:
        self.outbox_depth.set(stats.depth)
        self.outbox_oldest.set(stats.oldest_age or 0.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _MeteredStore:
    """Forwards every attribute to the store; coroutine methods are wrapped to count errors (and ``count``)."""

    def __init__(self, store: Store, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics

    @property
    def inner(self) -> Store:
        return self._store

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not inspect.iscoroutinefunction(attr):
            return attr
        wrapped = self._wrap(name, attr)
        setattr(self, name, wrapped)  # built once per method
        return wrapped

    def _wrap(self, name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        metrics = self._metrics

        async def call(*args: Any, **kwargs: Any) -> Any:
            if name == "count":
                metrics.outcome(*args, **kwargs)
            try:
                return await method(*args, **kwargs)
            except StoreUnavailable:
                metrics.db_errors.labels(operation=name).inc()
                raise

        call.__name__ = name
        return call


def metered(store: Store, metrics: Metrics) -> Store:
    """``store`` with its outcomes and failures counted in ``metrics``; behaves exactly like ``store`` otherwise."""
    return cast(Store, _MeteredStore(store, metrics))
