"""Slack Web API calls per SMS, and the per-channel posting rate in a burst: the real ``python bot.py``, same run.

For each engine (SQLite; PostgreSQL when reachable):
- lifecycle: ``--isolated`` sends one at a time, each walked by the simulator through queued → sent → delivered,
  plus one duplicate "delivered" callback (SignalWire retries); every Slack call counted (but Bolt's one
  ``auth.test`` per process), divided by the sends. Issue 10's goal: ≤ 5, with every receipt still shown.
- burst: ``--burst`` sends at once into one channel; the peak number of ``chat.postMessage`` calls Slack received in
  any 1-second window, the average rate over the run, and the calls per SMS. With the defaults
  (``SLACK_CHANNEL_POSTS_PER_SECOND=1``, ``SLACK_CHANNEL_POST_BURST=4``) the peak is ≤ 5 and the average ≤ 1.

Usage (from the repository root): python -m bench.slack_calls [--isolated N] [--burst N] [--engines sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections import Counter
from pathlib import Path

from bench.common import World, engine_urls, open_world, print_table, temp_dir, wait_until
from sw_api.models import MessageStatus, StatusEvent
from sw_api.webhooks import SIGNATURE_HEADER, sign_json

CHANNEL = "C0GENERAL"
TO = "+15551234567"
# The production defaults (demo.harness sets test-friendly ones).
PRODUCTION = {"RECEIPT_COALESCE_SECONDS": "1", "SLACK_CHANNEL_POSTS_PER_SECOND": "1", "SLACK_CHANNEL_POST_BURST": "4"}
_TOLD = re.compile(r"(?<!\w)(delivered|undelivered|failed) <!date\^")


def _calls(world: World, start: int) -> Counter[str]:
    return Counter(c.method for c in world.slack.calls[start:] if c.method != "auth.test")


def _finished(world: World, bodies: list[str]) -> bool:
    """Every parent shows Delivered and its thread has told the final status."""
    parents = {p.text: p for p in world.slack.messages(CHANNEL)}
    for body in bodies:
        parent = next((p for text, p in parents.items() if body in text), None)
        if parent is None or "Delivered" not in parent.text:
            return False
        if not any(_TOLD.search(m.text) for m in world.slack.thread(CHANNEL, parent.ts)):
            return False
    return True


async def _quiet(world: World, seconds: float = 2.0, timeout: float = 60.0) -> None:
    """Wait until no Slack call came in for ``seconds`` (trailing repaints)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = len(world.slack.calls)
        await asyncio.sleep(seconds)
        if len(world.slack.calls) == seen:
            return


async def _duplicate_delivered(world: World, body: str) -> None:
    [message] = [m for m in world.simulator.messages.values() if m.body == body]
    assert message.status_callback is not None
    event = StatusEvent(id=message.id, status=MessageStatus.DELIVERED, to=message.to, from_=message.from_,
                        timestamp=None, project_id=world.simulator.config.project_id, body=message.body)
    data = json.dumps(event.to_json()).encode()
    headers = {"Content-Type": "application/json",
               SIGNATURE_HEADER: sign_json(world.simulator.config.signing_key, message.status_callback, data)}
    async with world.session.post(message.status_callback, data=data, headers=headers) as resp:
        assert resp.status < 300, resp.status


async def lifecycle(world: World, n: int) -> tuple[float, Counter[str]]:
    start = len(world.slack.calls)
    for i in range(n):
        body = f"isolated {i:03d}"
        await world.driver.slash_command(f"{TO} {body}")
        assert await wait_until(lambda b=body: _finished(world, [b]), 60), f"{body} not finished"  # type: ignore[misc]
        await _duplicate_delivered(world, body)
        await _quiet(world, 1.5)
    calls = _calls(world, start)
    return sum(calls.values()) / n, calls


async def burst(world: World, n: int) -> tuple[int, float, float, float]:
    """(peak posts in any 1 s window, average posts/s, seconds until all finished, calls per SMS)."""
    start = len(world.slack.calls)
    began = time.monotonic()
    bodies = [f"burst {i:03d}" for i in range(n)]
    await asyncio.gather(*(world.driver.slash_command(f"{TO} {b}") for b in bodies))
    if not await wait_until(lambda: _finished(world, bodies), 600):
        left = [b for b in bodies if not _finished(world, [b])]
        shown = {p.text: [m.text for m in world.slack.thread(CHANNEL, p.ts)] for p in world.slack.messages(CHANNEL)
                 if any(b in p.text for b in left[:3])}
        raise AssertionError(f"the burst did not finish: {len(left)} left, e.g. {shown}")
    took = time.monotonic() - began
    await _quiet(world)
    posts = sorted(c.at for c in world.slack.calls[start:] if c.method == "chat.postMessage")
    peak, j = 0, 0
    for i, at in enumerate(posts):
        while posts[j] <= at - 1.0:
            j += 1
        peak = max(peak, i - j + 1)
    span = posts[-1] - posts[0] if len(posts) > 1 else 1.0
    return peak, len(posts) / span, took, sum(_calls(world, start).values()) / n


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isolated", type=int, default=10)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--engines", default="sqlite,postgresql")
    args = parser.parse_args()
    rows: list[list[object]] = []
    with temp_dir() as tmp:
        async with engine_urls(args.engines.split(","), Path(tmp)) as urls:
            for engine, url in urls.items():
                data = Path(tmp) / engine
                data.mkdir()
                async with open_world(url, data, env=PRODUCTION) as world:
                    per_sms, calls = await lifecycle(world, args.isolated)
                    print(f"{engine}: isolated calls {dict(calls)}")
                    peak, rate, took, burst_per_sms = await burst(world, args.burst)
                rows.append([engine, per_sms, peak, rate, burst_per_sms, took])
    print_table("Slack calls per SMS (post + queued/sent/delivered + one duplicate callback), and a burst into one "
                f"channel ({args.burst} sends)",
                ["engine", "calls/SMS", "burst peak posts/1s", "burst posts/s", "burst calls/SMS", "burst s"], rows)


if __name__ == "__main__":
    asyncio.run(main())
