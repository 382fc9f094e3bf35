"""Signed status callbacks per second and their latency: the bot against a bare aiohttp endpoint, same run.

For each engine (SQLite; PostgreSQL when reachable): the real ``python bot.py`` sends ``--messages`` texts through
the simulator (which is told to send no callbacks itself), then ``--clients`` concurrent clients deliver three signed
callbacks per message (sent, delivered, and a duplicate delivered, as SignalWire retries do) — each client keeps
one message's callbacks in order, as SignalWire does. The very same requests then go to the bare endpoint
(bench/bare_server.py). Prints callbacks/s, p50/p99, the ratio bot / bare beside the issue's goal (≥ 0.40 on
SQLite, ≥ 0.30 on PostgreSQL), and the bot's CPU per callback while they were delivered (from /proc, so machine
noise does not change it; "of it loop": the event loop's thread, the rest is aiosqlite's connection threads).

Soak (``--soak N``, e.g. 20000; ``make bench`` runs a shorter one, ``make bench SOAK=20000`` the issue's): the bot's
RSS at idle, then after every ``--report-every`` (5,000) callbacks and once its outbox has drained, and the growth
since idle. The callbacks are the three SignalWire really sends for every SMS — queued, sent, delivered — for texts
sent through ``/sms`` just before each block (the simulator's own callbacks dropped, as above), so the soak runs the
whole path a receipt takes (record, enqueue, post in the thread, repaint the parent) for N/3 real messages, and the
database grows as it would in use. Sending the texts is part of each block: real traffic is sends and their
receipts, and a leak on either path shows. "Idle" is read after a warm-up of 50 texts (fewer for a tiny N) with
their callbacks and a quiet Slack (lazy imports, caches and pools are not growth); "fresh" is the RSS before it.

Usage (from the repository root): python -m bench.callbacks [--messages N] [--clients C] [--engines sqlite,postgresql]
       python -m bench.callbacks --soak 20000 [--report-every 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bench.common import (
    World,
    cpu_spent,
    engine_urls,
    open_world,
    percentile,
    print_table,
    profiled,
    record_goal,
    refused,
    temp_dir,
    thread_cpu,
    wait_until,
)
from sw_api.models import MessageStatus, StatusEvent
from sw_api.simulator import SimMessage
from sw_api.webhooks import SIGNATURE_HEADER, sign_json

Request = tuple[str, bytes, dict[str, str]]


THREE = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.DELIVERED)  # as SignalWire retries
LIFECYCLE = (MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED)  # what SignalWire sends per SMS


def callbacks_for(world: World, base_url: str | None = None, messages: Sequence[SimMessage] | None = None,
                  statuses: Sequence[MessageStatus] = THREE) -> list[list[Request]]:
    """Per message (default: every one the simulator holds), its signed callbacks (URL, body, headers), one per
    status in ``statuses``; ``base_url`` re-aims them (the bare server)."""
    key = world.simulator.config.signing_key
    per_message: list[list[Request]] = []
    for message in (world.simulator.messages.values() if messages is None else messages):
        assert message.status_callback is not None
        url = message.status_callback
        if base_url is not None:
            url = base_url + url[url.index("/", len("http://")):]
        event = StatusEvent(id=message.id, status=MessageStatus.SENT, to=message.to, from_=message.from_,
                            timestamp=datetime.now(UTC), project_id=world.simulator.config.project_id,
                            body=message.body, number_of_segments=message.segments)
        requests = []
        for status in statuses:
            body = json.dumps(replace(event, status=status).to_json()).encode()
            requests.append((url, body, {"Content-Type": "application/json",
                                         SIGNATURE_HEADER: sign_json(key, url, body)}))
        per_message.append(requests)
    return per_message


async def deliver(session: aiohttp.ClientSession, per_message: list[list[Request]], clients: int,
                  ) -> tuple[list[float], float, int]:
    """(latencies ms, wall seconds, non-2xx answers)."""
    latencies: list[float] = []
    failures = 0
    queue = list(reversed(per_message))

    async def client() -> None:
        nonlocal failures
        while queue:
            for url, body, headers in queue.pop():
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status >= 300:
                        failures += 1
                latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(clients):
            group.create_task(client())
    return latencies, time.perf_counter() - started, failures


async def send_texts(world: World, count: int, clients: int, label: str) -> tuple[list[SimMessage], int]:
    """``count`` texts through ``/sms`` (``clients`` at a time): the simulator's messages they created, and how many
    acks said the text was not sent (a loaded machine can make the bot's bounded intent insert give up)."""
    before = set(world.simulator.messages)
    sem = asyncio.Semaphore(clients)
    refusals = 0

    async def send(i: int) -> None:
        nonlocal refusals
        async with sem:
            response = await world.driver.slash_command(f"+15551234567 {label} {i}")
            assert response.status == 200, response.status
            refusals += refused(response.body)

    await asyncio.gather(*(send(i) for i in range(count)))
    expected = len(before) + count - refusals
    if not await wait_until(lambda: world.simulator.created_count() >= expected, 60 + count / 20):
        raise SystemExit(f"only {world.simulator.created_count() - len(before)} of {count - refusals} accepted "
                         "texts were created")
    if refusals:
        print(f"note: {refusals} of {count} /sms acks said the text was not sent", file=sys.stderr)
    return [m for k, m in world.simulator.messages.items() if k not in before], refusals


async def measure_engine(engine: str, url: str, data_dir: Path, messages: int, clients: int) -> list[object]:
    async with open_world(url, data_dir) as world:
        world.simulator.drop_callbacks = True
        await send_texts(world, messages, clients, "bench")
        await asyncio.sleep(1.0)  # let parents and queued receipts settle so the callbacks measure themselves
        # Warm both servers' connections, then interleave: bare, bot, bare — noise hits both alike.
        bare1 = await deliver(world.session, callbacks_for(world, world.bare.url)[: messages // 2], clients)
        cpu_before = thread_cpu(world.bot)
        async with profiled(world.bot, f"callbacks-{engine}"):
            bot = await deliver(world.session, callbacks_for(world), clients)
        spent = cpu_spent(cpu_before, thread_cpu(world.bot))
        bare2 = await deliver(world.session, callbacks_for(world, world.bare.url)[messages // 2:], clients)
        if bot[2]:
            raise SystemExit(f"{engine}: {bot[2]} callbacks were not answered 2xx")
    bot_rate = len(bot[0]) / bot[1]
    bare_lat = bare1[0] + bare2[0]
    bare_rate = len(bare_lat) / (bare1[1] + bare2[1])
    per_callback = 1000 / max(1, len(bot[0]))  # ms of bot CPU per callback, while they were being delivered
    loop_ms = spent.get("main", 0.0) * per_callback
    return [engine, len(bot[0]), round(bare_rate), round(bot_rate), bot_rate / bare_rate,
            percentile(bare_lat, 0.5), percentile(bare_lat, 0.99), percentile(bot[0], 0.5), percentile(bot[0], 0.99),
            sum(spent.values()) * per_callback, loop_ms]


RATIO_GOALS = {"sqlite": 0.40, "postgresql": 0.30}
RSS_GOAL_MB = 80.0
GROWTH_GOAL_MB = 10.0


async def slack_quiet(world: World, seconds: float, timeout: float) -> bool:
    """Wait until the bot made no Slack call for ``seconds``: its outbox has drained."""
    calls = world.slack.calls
    return await wait_until(lambda: not calls or time.monotonic() - calls[-1].at >= seconds, timeout)


def progress(line: str) -> None:
    """A long soak says where it is as it goes (the table comes at the end)."""
    print(line, flush=True)


async def soak_engine(engine: str, url: str, data_dir: Path, total: int, every: int, clients: int,
                      ) -> list[list[object]]:
    """RSS at idle, then after every ``every`` callbacks of ``total``; each block sends its own texts first."""
    rows: list[list[object]] = []
    async with open_world(url, data_dir) as world:
        world.simulator.drop_callbacks = True
        fresh = world.bot.rss_mb()
        # Warm-up: every code path the soak uses runs once (lazy imports, caches, pools) before "idle" is read.
        warm, _ = await send_texts(world, max(1, min(50, total // 30)), clients, "warm-up")
        await deliver(world.session, callbacks_for(world, messages=warm, statuses=LIFECYCLE), clients)
        await slack_quiet(world, 2.0, 60)
        idle = world.bot.rss_mb()
        rows.append([engine, 0, "", "", f"{fresh:.1f}", f"{idle:.1f}", "", "idle (fresh, after warm-up)"])
        progress(f"soak {engine}: RSS fresh {fresh:.1f} MB, idle after warm-up {idle:.1f} MB")
        done = total_refused = 0
        while done < total:
            block = min(every, total - done)
            started = time.perf_counter()
            messages, refusals = await send_texts(world, -(-block // len(LIFECYCLE)), clients, f"soak {done}")
            total_refused += refusals
            if not messages:
                raise SystemExit(f"{engine}: every /sms of a soak block was refused")
            sent = time.perf_counter() - started
            per_message = callbacks_for(world, messages=messages, statuses=LIFECYCLE)
            excess = sum(len(r) for r in per_message) - block
            if excess > 0:  # the last text of the block gets only its first statuses: exactly ``every`` per block
                per_message[-1] = per_message[-1][:-excess]
            latencies, wall, failures = await deliver(world.session, per_message, clients)
            if failures:
                raise SystemExit(f"{engine}: {failures} soak callbacks were not answered 2xx")
            done += len(latencies)
            rss = world.bot.rss_mb()
            rows.append([engine, done, round(len(latencies) / wall), percentile(latencies, 0.99),
                         "", f"{rss:.1f}", f"{rss - idle:+.1f}",
                         f"{len(messages)} texts in {sent:.0f} s"
                         + (f" ({refusals} refused)" if refusals else "") + f", callbacks in {wall:.0f} s"])
            progress(f"soak {engine}: {done} callbacks, RSS {rss:.1f} MB ({rss - idle:+.1f})")
        drained = await slack_quiet(world, 2.0, 120)
        final = world.bot.rss_mb()
    note = "after the outbox drained" if drained else "outbox still busy after 120 s"
    if total_refused:
        note += f"; {total_refused} /sms refused in all"
    rows.append([engine, done, "", "", "", f"{final:.1f}", f"{final - idle:+.1f}", note])
    peak = max(float(str(r[5])) for r in rows)
    record_goal(f"RSS over a {done}-callback soak (MB)", engine, f"idle {idle:.1f}", f"max {peak:.1f}",
                f"< {RSS_GOAL_MB:g}", peak < RSS_GOAL_MB)
    record_goal(f"RSS growth over a {done}-callback soak (MB)", engine, f"idle {idle:.1f}", f"{final - idle:+.1f}",
                f"< +{GROWTH_GOAL_MB:g}", final - idle < GROWTH_GOAL_MB)
    return rows


async def main_async(messages: int, clients: int, engines: list[str], soak: int, every: int) -> None:
    rows = []
    with temp_dir() as tmp:
        async with engine_urls(engines, Path(tmp)) as urls:
            for engine, url in urls.items():
                engine_dir = Path(tmp) / engine
                engine_dir.mkdir()
                if soak:
                    rows.extend(await soak_engine(engine, url, engine_dir, soak, every, clients))
                else:
                    rows.append(await measure_engine(engine, url, engine_dir, messages, clients))
    if soak:
        print_table(f"soak: {soak} signed status callbacks (queued, sent, delivered per text; each block's texts "
                    f"sent first), {clients} concurrent clients; bot RSS goal < {RSS_GOAL_MB:g} MB, growth "
                    f"< +{GROWTH_GOAL_MB:g} MB",
                    ["engine", "callbacks", "bot/s", "bot p99", "fresh MB", "RSS MB", "growth MB", "note"], rows)
        return
    for row in rows:
        engine, ratio = str(row[0]), float(str(row[4]))
        goal = RATIO_GOALS.get(engine, 0.0)
        row.insert(5, f"≥ {goal:.2f}")
        record_goal("callbacks/s, bot / bare", engine, f"{row[2]}/s", f"{ratio:.2f} ({row[3]}/s)", f"≥ {goal:.2f}",
                    ratio >= goal)
    print_table(f"signed status callbacks, {clients} concurrent clients, 3 per message, {messages} messages",
                ["engine", "n", "bare/s", "bot/s", "ratio", "goal", "bare p50", "bare p99", "bot p50", "bot p99",
                 "bot CPU ms", "of it loop"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=150)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--soak", type=int, default=0, metavar="N",
                        help="instead: deliver N callbacks and print the bot's RSS along the way")
    parser.add_argument("--report-every", type=int, default=5000, metavar="K",
                        help="with --soak: print RSS after every K callbacks")
    args = parser.parse_args()
    asyncio.run(main_async(args.messages, args.clients, args.engines.split(","), args.soak, args.report_every))


if __name__ == "__main__":
    main()
