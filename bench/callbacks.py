"""Signed status callbacks per second and their latency: the bot against a bare aiohttp endpoint, same run.

For each engine (SQLite; PostgreSQL when reachable): the real ``python bot.py`` sends ``--messages`` texts through
the simulator (which is told to send no callbacks itself), then ``--clients`` concurrent clients deliver three signed
callbacks per message (sent, delivered, and a duplicate delivered, as SignalWire retries do) — each client keeps
one message's callbacks in order, as SignalWire does. The very same requests then go to the bare endpoint
(bench/bare_server.py). Prints callbacks/s, p50/p99 and the ratio bot / bare.

Usage (from the repository root): python -m bench.callbacks [--messages N] [--clients C] [--engines sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bench.common import World, engine_urls, open_world, percentile, print_table, profiled, temp_dir, wait_until
from sw_api.models import MessageStatus, StatusEvent
from sw_api.webhooks import SIGNATURE_HEADER, sign_json

Request = tuple[str, bytes, dict[str, str]]


def callbacks_for(world: World, base_url: str | None = None) -> list[list[Request]]:
    """Per message, its three signed callbacks (URL, body, headers); ``base_url`` re-aims them (the bare server)."""
    key = world.simulator.config.signing_key
    per_message: list[list[Request]] = []
    for message in world.simulator.messages.values():
        assert message.status_callback is not None
        url = message.status_callback
        if base_url is not None:
            url = base_url + url[url.index("/", len("http://")):]
        event = StatusEvent(id=message.id, status=MessageStatus.SENT, to=message.to, from_=message.from_,
                            timestamp=datetime.now(UTC), project_id=world.simulator.config.project_id,
                            body=message.body, number_of_segments=message.segments)
        requests = []
        for status in (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.DELIVERED):
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


async def measure_engine(engine: str, url: str, data_dir: Path, messages: int, clients: int) -> list[object]:
    async with open_world(url, data_dir) as world:
        world.simulator.drop_callbacks = True
        sem = asyncio.Semaphore(clients)

        async def send(i: int) -> None:
            async with sem:
                response = await world.driver.slash_command(f"+15551234567 bench {i}")
                assert response.status == 200, response.status

        await asyncio.gather(*(send(i) for i in range(messages)))
        if not await wait_until(lambda: world.simulator.created_count() >= messages, 60):
            raise SystemExit(f"{engine}: only {world.simulator.created_count()} of {messages} texts were created")
        await asyncio.sleep(1.0)  # let parents and queued receipts settle so the callbacks measure themselves
        # Warm both servers' connections, then interleave: bare, bot, bare — noise hits both alike.
        bare1 = await deliver(world.session, callbacks_for(world, world.bare.url)[: messages // 2], clients)
        async with profiled(world.bot, f"callbacks-{engine}"):
            bot = await deliver(world.session, callbacks_for(world), clients)
        bare2 = await deliver(world.session, callbacks_for(world, world.bare.url)[messages // 2:], clients)
        if bot[2]:
            raise SystemExit(f"{engine}: {bot[2]} callbacks were not answered 2xx")
    bot_rate = len(bot[0]) / bot[1]
    bare_lat = bare1[0] + bare2[0]
    bare_rate = len(bare_lat) / (bare1[1] + bare2[1])
    return [engine, len(bot[0]), round(bare_rate), round(bot_rate), bot_rate / bare_rate,
            percentile(bare_lat, 0.5), percentile(bare_lat, 0.99), percentile(bot[0], 0.5), percentile(bot[0], 0.99)]


async def main_async(messages: int, clients: int, engines: list[str]) -> None:
    rows = []
    with temp_dir() as tmp:
        async with engine_urls(engines, Path(tmp)) as urls:
            for engine, url in urls.items():
                engine_dir = Path(tmp) / engine
                engine_dir.mkdir()
                rows.append(await measure_engine(engine, url, engine_dir, messages, clients))
    print_table(f"signed status callbacks, {clients} concurrent clients, 3 per message, {messages} messages",
                ["engine", "n", "bare/s", "bot/s", "ratio", "bare p50", "bare p99", "bot p50", "bot p99"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=150)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--engines", default="sqlite,postgresql")
    args = parser.parse_args()
    asyncio.run(main_async(args.messages, args.clients, args.engines.split(",")))


if __name__ == "__main__":
    main()
