"""PostgreSQL gone (stopped for 10 s, or unreachable) under two replicas: a clean degradation and a clean return.

The bots reach the database through ``TcpProxy``, which the test cuts and restores; the shared server is never
touched. While it is cut: a new send is refused with a clear "not sent" in its ack, status callbacks and inbound
webhooks get 503 (SignalWire retries them), ``/readyz`` answers 503 and ``/healthz`` keeps answering. Once it is
back everything resumes by itself: nothing lost, nothing sent twice, no replica exits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

from demo.harness import FROM_NUMBER
from sw_api.models import MessageStatus
from tests.faults.dbtools import assert_nothing_claimed
from tests.faults.procs import CHANNEL, RECEIPT_LABELS, World, assert_receipts_once, parent_for, sms_to
from tests.faults.tcp_proxy import CutMode, TcpProxy
from tests.pg import throwaway_database

INBOUND = "C0INBOUND"
TO = "+15550600001"
PHONE = "+15550600002"
REPLICAS = 2
ENV = {"INBOUND_CHANNEL": INBOUND, "SMS_RATE_LIMIT_PER_USER": "1000"}
# A probe's budget, as an orchestrator would set it: /healthz must answer within 2 s however the database is
# doing; /readyz bounds its own database check (2 s) and must then answer, so it gets more.
PROBES = {"/healthz": aiohttp.ClientTimeout(total=2), "/readyz": aiohttp.ClientTimeout(total=5)}


@pytest.fixture
def engine() -> str:
    return "postgresql"


@pytest.fixture
async def proxied_url() -> AsyncIterator[tuple[str, TcpProxy]]:
    """A throwaway database and a proxy in front of it: the URL the bots get goes through the proxy."""
    async with throwaway_database() as url:
        parts = urlsplit(url)
        async with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
            userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
            proxied = urlunsplit((parts.scheme, f"{userinfo}127.0.0.1:{proxy.port}", parts.path, parts.query, ""))
            yield proxied, proxy


async def probe(world: World, replica: int, path: str) -> int | None:
    try:
        async with world.session.get(world.bots[replica].url + path, timeout=PROBES[path]) as resp:
            await resp.read()
            return resp.status
    except (aiohttp.ClientError, TimeoutError):
        return None


async def all_ready(world: World, status: int) -> bool:
    answers = await asyncio.gather(*(probe(world, i, "/readyz") for i in range(REPLICAS)))
    return all(a == status for a in answers)


def delivered(world: World, body: str) -> bool:
    parents = [m for m in world.slack.messages(CHANNEL) if body in m.text]
    return len(parents) == 1 and RECEIPT_LABELS[MessageStatus.DELIVERED] in parents[0].text


def posted(world: World, body: str) -> int:
    top = world.slack.messages(INBOUND)
    texts = [m.text for m in top] + [r.text for m in top for r in world.slack.thread(INBOUND, m.ts)]
    return sum(body in t for t in texts)


async def redeliver_failed_callbacks(world: World) -> None:
    """SignalWire retries a callback it got no 2xx for: replay every one whose attempts all failed."""
    taken = {(a.message_id, a.body) for a in world.simulator.callback_log if a.ok}
    pending = {(a.message_id, a.body): a for a in world.simulator.callback_log if not a.ok}
    for key, attempt in pending.items():
        if key in taken:
            continue
        for n in range(5):
            async with world.session.post(attempt.url, data=attempt.body, headers=dict(attempt.headers),
                                          timeout=aiohttp.ClientTimeout(total=10)) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    break
            await asyncio.sleep(0.3 * (n + 1))


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "seconds"), [("refuse", 10.0), ("blackhole", 8.0)],
                         ids=["stopped-10s", "unreachable"])
async def test_a_database_outage_degrades_cleanly_and_resumes_by_itself(
        make_world: Any, proxied_url: tuple[str, TcpProxy], mode: CutMode, seconds: float) -> None:
    url, proxy = proxied_url
    async with asyncio.timeout(140), make_world(step_delay=1.0, env=ENV, replicas=REPLICAS,
                                                database_url=url) as world:
        assert await all_ready(world, 200)
        # Two sends whose receipts arrive during the outage.
        before = ["before the outage 1", "before the outage 2"]
        for body in before:
            answer = await world.driver.slash_command(f"{TO} {body}")
            assert answer.status == 200 and "not sent" not in answer.body.lower(), answer.body
        await world.wait_for(lambda: all(len(sms_to(world, TO, b)) == 1 for b in before), what="sent")
        await world.wait_for(lambda: len(world.slack.messages(CHANNEL)) == len(before), what="parents posted")

        proxy.cut(mode)
        loop = asyncio.get_running_loop()
        ends = loop.time() + seconds
        await world.wait_for(lambda: all_ready(world, 503), timeout=seconds - 1, what="/readyz 503 on every replica")
        for replica in range(REPLICAS):
            assert await probe(world, replica, "/healthz") == 200, f"replica {replica} /healthz during the outage"
        during = "during the outage"
        refusal = await world.driver.slash_command(f"{TO} {during}")
        assert refusal.status == 200 and "not sent" in refusal.body.lower(), (refusal.status, refusal.body)
        inbound = await world.simulator.inject_inbound(PHONE, FROM_NUMBER, "texted in the outage",
                                                       url=world.bot_url + "/signalwire/inbound",
                                                       message_id="in-outage-1")
        assert inbound.status == 503, inbound
        while loop.time() < ends:
            for replica in range(REPLICAS):
                assert await probe(world, replica, "/healthz") == 200, f"replica {replica} /healthz in the outage"
            await asyncio.sleep(0.5)
        # Callbacks that came in meanwhile were refused with 503 (retry), never 500 or a 2xx that loses them.
        refused = [a for a in world.simulator.callback_log if not a.ok]
        assert refused, "no callback arrived during the outage (the test's timing is off)"
        assert all(a.status == 503 for a in refused), [(a.status, a.error) for a in refused]

        proxy.restore()
        await world.wait_for(lambda: all_ready(world, 200), timeout=30, what="/readyz 200 again on every replica")
        await redeliver_failed_callbacks(world)
        again = await world.simulator.inject_inbound(PHONE, FROM_NUMBER, "texted in the outage",
                                                     url=world.bot_url + "/signalwire/inbound",
                                                     message_id="in-outage-1")
        assert again.status == 200, again
        after = "after the outage"
        answer = await world.driver.slash_command(f"{TO} {after}")
        assert answer.status == 200 and "not sent" not in answer.body.lower(), answer.body
        await world.wait_for(lambda: all(delivered(world, b) for b in [*before, after]), timeout=40,
                             what="every accepted send delivered in its thread")
        await world.wait_for(lambda: posted(world, "texted in the outage") >= 1, timeout=20, what="inbound posted")
        await world.quiet(1.0, timeout=30)

        for body in [*before, after]:
            [sms] = sms_to(world, TO, body)
            assert_receipts_once(world, sms, parent_for(world, body))
        assert not sms_to(world, TO, during), "a send refused during the outage was texted"
        assert posted(world, "texted in the outage") == 1, world.slack.transcript(INBOUND)
        assert all(b.running and b.starts == 1 for b in world.bots), "a replica exited during the outage"
        await assert_nothing_claimed(world)
