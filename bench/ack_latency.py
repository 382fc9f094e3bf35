"""Slash-command ack latency while SignalWire is slow, against a baseline measured in the same run.

Runs the real bot, the SignalWire simulator and the fake Slack on loopback (demo.harness) and sends signed
``/sms`` requests. Three series, interleaved in rounds so machine noise hits all of them alike:
  baseline  ``/sms help``: no send at all, the cheapest request through Bolt's verification and routing
  fast      ``/sms <number> text`` with SignalWire answering at once
  slow      the same with SignalWire taking SLOW_SECONDS to answer each create
Prints p50/p99 per series and their ratio to the baseline. The claim under test: acks never wait for SignalWire.

Usage: python bench/ack_latency.py [--requests N] [--slow-seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

from demo.harness import running_bridge


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def measure(requests: int, slow_seconds: float) -> dict[str, list[float]]:
    series: dict[str, list[float]] = {"baseline": [], "fast": [], "slow": []}
    with tempfile.TemporaryDirectory() as tmp:
        # The per-user rate limit would refuse most of these (and a refusal is cheaper than a send): lift it.
        async with running_bridge(Path(tmp), step_delay=0.05, env={"SMS_RATE_LIMIT_PER_USER": "1000000"}) as h:
            await h.driver.slash_command("help")  # warm-up: Bolt's lazy auth.test, connection pool
            for i in range(requests):
                response = await h.driver.slash_command("help")
                series["baseline"].append(response.elapsed_ms)
                h.simulator.latency = 0.0
                response = await h.driver.slash_command(f"+15551234567 fast {i}")
                series["fast"].append(response.elapsed_ms)
                h.simulator.latency = slow_seconds
                response = await h.driver.slash_command(f"+15551234567 slow {i}")
                series["slow"].append(response.elapsed_ms)
                assert response.status == 200
            await h.settle(timeout=slow_seconds * 4 + 30)
            sent = h.simulator.created_count()
    print(f"SMS created by the simulator: {sent} (expected {2 * requests})")
    if sent != 2 * requests:
        raise SystemExit("the sends did not all go through: the numbers would not measure a send's ack")
    return series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--slow-seconds", type=float, default=2.0)
    args = parser.parse_args()
    series = asyncio.run(measure(args.requests, args.slow_seconds))
    base50 = percentile(series["baseline"], 0.5)
    base99 = percentile(series["baseline"], 0.99)
    print(f"{'series':<10}{'n':>5}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}{'p50/base':>10}{'p99/base':>10}")
    for name, values in series.items():
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        print(f"{name:<10}{len(values):>5}{p50:>10.2f}{p99:>10.2f}{statistics.fmean(values):>10.2f}"
              f"{p50 / base50:>10.2f}{p99 / base99:>10.2f}")
    print(f"SignalWire create latency in the slow series: {args.slow_seconds * 1000:.0f} ms; Slack's limit: 3000 ms")


if __name__ == "__main__":
    main()
