"""Slack Web API calls per SMS over its whole lifecycle, and the per-channel posting rate of a burst of sends.

For each engine (SQLite; PostgreSQL when reachable) the real ``python bot.py`` runs against the fake Slack
(demo/fake_slack.py records every Web API call with ``time.monotonic()``) and the SignalWire simulator, whose own
callbacks walk each text queued → sent → delivered ``--step-delay`` seconds apart (real receipts come seconds apart;
0.5 s keeps the bench short while leaving the bot room to coalesce).

1. **Isolated SMS** (``--sms`` of them, one at a time, channel C0GENERAL): ``/sms`` one text; once the simulator's
   delivered callback has been answered, post **one duplicate** of it (the very same signed body, as SignalWire's
   retries are); wait until the SMS has settled: the parent names Delivered, a thread reply names Delivered, and no
   Slack call happened for ``--quiet`` seconds (the bot may hold receipts back to coalesce them). Every call since
   the ``/sms`` counts, except ``auth.test`` (Bolt asks once per process and caches it; nothing per SMS). Prints
   calls/SMS (mean, min, max) beside the goal "≤ 5", the breakdown by method, whether every receipt is still
   shown (each thread non-empty and naming Delivered) and whether the duplicate added nothing (no thread repeats a
   reply, exactly one reply names Delivered).
2. **Burst** (``--burst`` sends by ``--clients`` concurrent clients into one channel, C0BURST): every
   chat.postMessage (parents and thread replies; Slack's limit is per channel) and chat.update in that channel with
   its time. Prints the peak number of posts in any 1-second sliding window and the mean posts/s, both over the
   first ``--window`` seconds of the burst (a bot that paces at Slack's ~1 post/s needs minutes to drain 100
   sends with their receipts, so the rate is measured where the burst is), beside Slack's documented limit (about
   1 chat.postMessage per second per channel, short bursts allowed); then how long until all parents were posted
   and until everything settled (every parent final and ``--quiet`` seconds without a call), giving up after
   ``--give-up`` seconds from the start of the burst and saying so. The goal "≤ 1/s sustained" is judged on the
   mean over the window (a short initial burst still passes at 1.1/s); the peak is shown beside it.

Usage (from the repository root): python -m bench.slack_calls [--sms N] [--burst N] [--clients C]
    [--step-delay S] [--quiet S] [--window S] [--give-up S] [--engines sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import World, engine_urls, open_world, print_table, record_goal, refused, temp_dir, wait_until
from demo.fake_slack import ApiCall, SlackMessage
from sw_api.simulator import SimMessage

NOT_PER_SMS = frozenset({"auth.test", "apps.connections.open"})
ISOLATED_CHANNEL = "C0GENERAL"
BURST_CHANNEL = "C0BURST"
TO_NUMBER = "+15551234567"  # the simulator delivers it
SLACK_LIMIT = "~1/s + short bursts"
CALLS_GOAL = 5.0
SUSTAINED_GOAL = 1.1  # posts/s over the window: Slack's 1/s plus room for the short bursts Slack allows


def visible(msg: SlackMessage) -> str:
    """What a message says, whether the bot wrote it as text or as blocks."""
    return msg.text + " " + json.dumps(msg.blocks, ensure_ascii=False)


def find_parent(world: World, channel: str, body: str) -> SlackMessage | None:
    return next((m for m in world.slack.messages(channel) if body in visible(m)), None)


def quiet_for(world: World, seconds: float) -> bool:
    calls = world.slack.calls
    return not calls or time.monotonic() - calls[-1].at >= seconds


def sim_message(world: World, body: str) -> SimMessage | None:
    return next((m for m in world.simulator.messages.values() if m.body == body), None)


# ----- 1. isolated SMS ---------------------------------------------------------------------------------------


@dataclass
class Isolated:
    calls: list[int] = field(default_factory=list)
    methods: Counter[str] = field(default_factory=Counter)
    receipts_shown: int = 0
    duplicate_harmless: int = 0
    unsettled: int = 0
    refused: int = 0  # acks saying the text was not sent (a loaded machine): not counted as SMS


async def post_duplicate_of_delivered(world: World, body: str, timeout: float) -> bool:
    """Re-post the delivered callback the simulator got a 2xx for, byte for byte; whether the bot answered 2xx."""
    def delivered_attempt() -> Any:
        message = sim_message(world, body)
        if message is None:
            return None
        return next((a for a in world.simulator.callback_log
                     if a.message_id == message.id and a.ok and a.event().get("status") == "delivered"), None)

    if not await wait_until(lambda: delivered_attempt() is not None, timeout):
        return False
    attempt = delivered_attempt()
    async with world.session.post(attempt.url, data=attempt.body, headers=dict(attempt.headers)) as response:
        await response.read()
        return 200 <= response.status < 300


async def one_isolated(world: World, i: int, quiet: float, result: Isolated) -> None:
    body = f"calls bench {i} {secrets.token_hex(3)}"
    first = len(world.slack.calls)
    response = await world.driver.slash_command(f"{TO_NUMBER} {body}", channel_id=ISOLATED_CHANNEL)
    assert response.status == 200, response.status
    if refused(response.body):
        result.refused += 1
        return
    duplicate_ok = await post_duplicate_of_delivered(world, body, timeout=30 + quiet)

    def settled() -> bool:
        parent = find_parent(world, ISOLATED_CHANNEL, body)
        if parent is None or "Delivered" not in visible(parent):
            return False
        thread = world.slack.thread(ISOLATED_CHANNEL, parent.ts)
        return any("Delivered" in visible(r) for r in thread) and quiet_for(world, quiet)

    if not await wait_until(settled, 30 + quiet):
        result.unsettled += 1
    mine = [c for c in world.slack.calls[first:] if c.method not in NOT_PER_SMS]
    result.calls.append(len(mine))
    result.methods.update(c.method for c in mine)
    parent = find_parent(world, ISOLATED_CHANNEL, body)
    thread = world.slack.thread(ISOLATED_CHANNEL, parent.ts) if parent else []
    texts = [visible(r) for r in thread]
    if thread and any("Delivered" in t for t in texts):
        result.receipts_shown += 1
    if duplicate_ok and len(texts) == len(set(texts)) and sum("Delivered" in t for t in texts) == 1:
        result.duplicate_harmless += 1


# ----- 2. burst ----------------------------------------------------------------------------------------------


@dataclass
class Burst:
    sends: int
    posts: list[float]          # chat.postMessage times in the channel, seconds since the burst started
    updates: list[float]        # chat.update times, likewise
    window: float
    parents_after: float | None  # seconds until every parent was posted (None: gave up)
    settled_after: float | None  # seconds until every parent was final and the channel quiet (None: gave up)
    sent_after: float           # seconds until every /sms was acknowledged
    refused: int                # acks saying the text was not sent: no parent expected for those

    def in_window(self, times: list[float]) -> list[float]:
        return [t for t in times if t <= self.window]

    def peak(self, times: list[float]) -> int:
        """Most calls in any 1-second sliding window [t, t + 1)."""
        ordered = sorted(times)
        return max((bisect_left(ordered, t + 1.0) - i for i, t in enumerate(ordered)), default=0)

    def mean_rate(self, times: list[float]) -> float:
        shown = self.in_window(times)
        span = min(self.window, max(shown, default=0.0))
        return len(shown) / span if span > 0 else float(len(shown))


def channel_calls(calls: list[ApiCall], method: str, started: float) -> list[float]:
    return [c.at - started for c in calls if c.method == method and c.payload.get("channel") == BURST_CHANNEL]


async def burst(world: World, sends: int, clients: int, quiet: float, window: float, give_up: float) -> Burst:
    tag = secrets.token_hex(3)
    bodies = [f"burst {tag} {i}" for i in range(sends)]
    queue = list(reversed(bodies))
    refusals = 0
    started = time.monotonic()

    async def client() -> None:
        nonlocal refusals
        while queue:
            response = await world.driver.slash_command(f"{TO_NUMBER} {queue.pop()}", channel_id=BURST_CHANNEL)
            assert response.status == 200, response.status
            refusals += refused(response.body)

    async with asyncio.TaskGroup() as group:
        for _ in range(clients):
            group.create_task(client())
    sent_after = time.monotonic() - started
    deadline = started + give_up

    def parents_posted() -> bool:
        return len(world.slack.messages(BURST_CHANNEL)) >= sends - refusals

    def all_settled() -> bool:
        parents = world.slack.messages(BURST_CHANNEL)
        return (len(parents) >= sends - refusals
                and all("Delivered" in visible(p) and world.slack.thread(BURST_CHANNEL, p.ts) for p in parents)
                and quiet_for(world, quiet))

    parents_after = settled_after = None
    if await wait_until(parents_posted, deadline - time.monotonic()):
        parents_after = time.monotonic() - started
        if await wait_until(all_settled, deadline - time.monotonic()):
            settled_after = time.monotonic() - started - quiet
    # The window may not have passed yet if everything settled quickly: nothing more will be posted anyway.
    return Burst(sends, channel_calls(world.slack.calls, "chat.postMessage", started),
                 channel_calls(world.slack.calls, "chat.update", started), window, parents_after, settled_after,
                 sent_after, refusals)


# ----- per engine --------------------------------------------------------------------------------------------


async def measure_engine(engine: str, url: str, data_dir: Path, args: argparse.Namespace) -> tuple[Isolated, Burst]:
    async with open_world(url, data_dir, step_delay=args.step_delay) as world:
        await world.driver.slash_command("help")  # Bolt's lazy auth.test and the connection pools, not per SMS
        isolated = Isolated()
        for i in range(args.sms):
            await one_isolated(world, i, args.quiet, isolated)
        measured = await burst(world, args.burst, args.clients, args.quiet, args.window, args.give_up)
    return isolated, measured


def _seconds(value: float | None, give_up: float) -> str:
    return f"{value:.1f}" if value is not None else f"gave up at {give_up:g}"


async def main_async(args: argparse.Namespace) -> None:
    results: dict[str, tuple[Isolated, Burst]] = {}
    with temp_dir() as tmp:
        async with engine_urls(args.engines.split(","), Path(tmp)) as urls:
            for engine, url in urls.items():
                engine_dir = Path(tmp) / engine
                engine_dir.mkdir()
                results[engine] = await measure_engine(engine, url, engine_dir, args)

    rows: list[list[object]] = []
    for engine, (iso, _) in results.items():
        mean = sum(iso.calls) / len(iso.calls) if iso.calls else 0.0
        n = len(iso.calls)
        rows.append([engine, n, mean, min(iso.calls, default=0), max(iso.calls, default=0), f"≤ {CALLS_GOAL:g}",
                     f"{iso.receipts_shown}/{n}", f"{iso.duplicate_harmless}/{n}", iso.unsettled, iso.refused])
        all_shown = iso.receipts_shown == iso.duplicate_harmless == n and not iso.unsettled
        ok = n > 0 and mean <= CALLS_GOAL and all_shown
        record_goal("Slack calls per isolated SMS", engine, "—", mean, f"≤ {CALLS_GOAL:g}, receipts shown", ok)
    print_table(f"Slack Web API calls per isolated SMS: /sms, queued → sent → delivered {args.step_delay:g} s apart, "
                f"one duplicate delivered callback; settled = Delivered shown + {args.quiet:g} s without a call",
                ["engine", "SMS", "calls/SMS", "min", "max", "goal", "receipts shown", "dup added nothing",
                 "unsettled", "not sent"], rows)
    methods = sorted({m for iso, _ in results.values() for m in iso.methods})
    print_table("    calls per SMS by method (mean)", ["engine", *methods],
                [[engine, *(iso.methods[m] / max(1, len(iso.calls)) for m in methods)]
                 for engine, (iso, _) in results.items()])

    rows = []
    for engine, (_, b) in results.items():
        posts, updates = b.in_window(b.posts), b.in_window(b.updates)
        rows.append([engine, b.sends, b.refused, len(b.posts), len(b.updates), b.peak(posts), b.mean_rate(posts),
                     b.peak(updates), SLACK_LIMIT, f"{b.sent_after:.1f}", _seconds(b.parents_after, args.give_up),
                     _seconds(b.settled_after, args.give_up)])
        mean = b.mean_rate(posts)
        record_goal(f"burst posts/s, one channel (mean, first {b.window:g} s)", engine, "Slack ~1/s",
                    f"{mean:.2f} (peak {b.peak(posts)})", "≤ 1/s sustained", mean <= SUSTAINED_GOAL)
    print_table(f"burst: {args.burst} sends by {args.clients} concurrent clients into one channel; rates over the "
                f"first {args.window:g} s; times in s since the burst started",
                ["engine", "sends", "not sent", "posts", "updates", "peak posts/1s", "mean posts/s", "peak updates/1s",
                 "Slack's limit", "all acked", "all parents", "all settled"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sms", type=int, default=20, help="isolated texts, one at a time")
    parser.add_argument("--burst", type=int, default=100, help="sends in the burst")
    parser.add_argument("--clients", type=int, default=10, help="concurrent clients in the burst")
    parser.add_argument("--step-delay", type=float, default=0.5, help="seconds between a text's statuses")
    parser.add_argument("--quiet", type=float, default=3.0, help="seconds without a Slack call that mean settled")
    parser.add_argument("--window", type=float, default=30.0, help="seconds of the burst the rates are taken over")
    parser.add_argument("--give-up", type=float, default=300.0, help="seconds after which the burst stops waiting")
    parser.add_argument("--engines", default="sqlite,postgresql")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
