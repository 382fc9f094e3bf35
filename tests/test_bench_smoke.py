"""The benches still run: each one at a tiny size on SQLite, as a real subprocess, printing its table and goal rows.

Owns nothing but this check; the figures themselves are not asserted (benches report, they are not tests, and a
2-core machine shared with other jobs makes any timing flaky). Must not import: ``bench`` internals beyond running
its modules, ``handlers``, ``bridge``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CASES = {
    "ack_latency": (["-m", "bench.ack_latency", "--requests", "8", "--clients", "2", "--slow-seconds", "0.1"],
                    "/sms ack latency", 2),
    "bulk": (["-m", "bench.bulk", "--quick"], "bulk sends, click to last create", 2),
    "callbacks": (["-m", "bench.callbacks", "--messages", "5", "--clients", "2"], "signed status callbacks", 1),
    "slack_calls": (["-m", "bench.slack_calls", "--sms", "1", "--burst", "4", "--clients", "2", "--step-delay",
                     "0.05", "--quiet", "0.5", "--window", "5", "--give-up", "15"], "calls per isolated SMS", 2),
    "soak": (["-m", "bench.callbacks", "--soak", "30", "--report-every", "15", "--clients", "2"], "soak:", 2),
}


def _run(argv: list[str], summary: Path) -> subprocess.CompletedProcess[str]:
    # A smoke test, not a measurement: receipts coalesce briefly and posts are not paced, as in the other tests.
    env = {**os.environ, "BENCH_SUMMARY": str(summary), "RECEIPT_COALESCE_SECONDS": "0.2",
           "SLACK_CHANNEL_POSTS_PER_SECOND": "50", "SLACK_CHANNEL_POST_BURST": "20"}
    env.pop("BENCH_PROFILE", None)
    return subprocess.run([sys.executable, *argv, "--engines", "sqlite"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=25)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", sorted(CASES))
def test_bench_prints_its_table_and_goal_rows(name: str, tmp_path: Path) -> None:
    argv, title, goal_rows = CASES[name]
    summary = tmp_path / "summary.jsonl"
    done = _run(argv, summary)
    assert done.returncode == 0, done.stderr[-3000:]
    assert title in done.stdout, done.stdout
    rows = [json.loads(line) for line in summary.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == goal_rows, rows
    assert {r["engine"] for r in rows} == {"sqlite"}
    assert all(r["ok"] in {"ok", "MISSED"} and r["goal"] for r in rows), rows

    table = subprocess.run([sys.executable, "-m", "bench.summary", str(summary)], cwd=REPO, capture_output=True,
                           text=True, timeout=10)
    assert table.returncode == 0, table.stderr
    assert "figure" in table.stdout and rows[0]["figure"] in table.stdout
