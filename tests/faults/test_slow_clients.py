"""Slow and numerous clients against a real ``python bot.py``: a trickled body or request head is answered 408 and
closed within REQUEST_READ_TIMEOUT_SECONDS, connections beyond MAX_CONNECTIONS are answered 503 at once, and at
the file-descriptor limit the log stays small (asyncio's accept error is rate-limited) — and the bot keeps serving.

No wall-clock budget is asserted: each client runs under a generous hard cap (far below what the old behaviour
took: minutes), and order is what is checked (served others while the slow one was still open)."""

from __future__ import annotations

import asyncio
import itertools
import os
import resource
from contextlib import suppress
from typing import Any

import pytest

from tests.faults.procs import World

READ_TIMEOUT = "1"
HARD_CAP = 30.0  # seconds; the old bot held such a connection for minutes (the body) or 75 s (the head)

pytestmark = pytest.mark.slow


@pytest.fixture
def engine() -> str:
    """Connection handling happens before any storage: one engine is enough."""
    return "sqlite"


async def _healthz(world: World) -> int:
    async with world.session.get(f"{world.bot_url}/healthz") as response:
        return response.status


async def _open(world: World) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", world.bot.port)


async def _trickle_until_closed(world: World, head: bytes, drip: bytes,
                                first: bytes = b"") -> tuple[bytes, list[int]]:
    """Send ``first`` (a complete request, whose answer is read) if given, then ``head``, then ``drip`` one byte
    at a time every 0.2 s until the bot answers and closes.

    Returns what the bot answered and the /healthz statuses other clients got while this one was open."""
    reader, writer = await _open(world)
    served: list[int] = []
    if first:
        writer.write(first)
        async with asyncio.timeout(HARD_CAP):
            assert (await reader.readuntil(b'{"ok": true}')).startswith(b"HTTP/1.1 200 ")
    writer.write(head)
    # The first bytes of the answer, as soon as any arrive. Dripping stops then: a byte sent after the bot has
    # closed is answered with a TCP reset, and a reset can discard the answer before it is read.
    answer = asyncio.ensure_future(reader.read(65536))
    try:
        async with asyncio.timeout(HARD_CAP):
            for n in itertools.count():  # endless: the body/head never completes before the bot gives up
                byte = drip[n % len(drip):][:1]
                if answer.done():
                    break
                with suppress(ConnectionError):
                    writer.write(byte)
                    await writer.drain()
                if len(served) < 3:
                    served.append(await _healthz(world))
                await asyncio.wait({answer}, timeout=0.2)
            received = await answer
            while chunk := await reader.read(65536):  # the rest, until the bot closes the connection
                received += chunk
            return received, served
    finally:
        answer.cancel()
        writer.close()


# /proc/net/tcp states of a connection the bot has not closed yet: established, SYN received (not accepted yet)
# and CLOSE_WAIT (the client closed, the bot has not noticed). Once the bot closes a socket it has also forgotten
# the connection (asyncio closes it after ``connection_lost``).
_HELD_STATES = {"01", "03", "08"}


def _bot_held_sockets(port: int) -> int:
    """How many client connections on ``port`` the kernel still shows as open on the bot's side."""
    held = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(FileNotFoundError), open(table) as rows:
            for row in itertools.islice(rows, 1, None):
                fields = row.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] in _HELD_STATES:
                    held += 1
    return held


async def _settled(world: World) -> None:
    """Wait until the bot holds no client connection: start-up's /healthz polls are closed on the bot's side too,
    so none of them still takes a slot under MAX_CONNECTIONS."""
    async with asyncio.timeout(HARD_CAP):
        while True:  # the kernel's table is polled: nothing signals a socket's close to another process
            if not _bot_held_sockets(world.bot.port):
                return
            await asyncio.sleep(0.05)


async def test_a_trickled_body_gets_408_and_the_bot_serves_others(make_world: Any) -> None:
    async with make_world(env={"REQUEST_READ_TIMEOUT_SECONDS": READ_TIMEOUT}) as world:
        head = (b"POST /signalwire/inbound HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n")
        answer, served = await _trickle_until_closed(world, head, b'{"message": {"id": "x"' + b" " * 64)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert served and all(status == 200 for status in served), served
        assert await _healthz(world) == 200
        assert "request body not received within 1s" in world.bot.log_text()
        assert world.simulator.created_count() == 0


async def test_a_trickled_request_head_gets_408_and_the_bot_serves_others(make_world: Any) -> None:
    async with make_world(env={"REQUEST_READ_TIMEOUT_SECONDS": READ_TIMEOUT}) as world:
        answer, served = await _trickle_until_closed(world, b"POST /signalwire/inbound HTTP/1.1\r\n",
                                                     b"X-Slow: " + b"a" * 4000)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert served and all(status == 200 for status in served), served
        assert await _healthz(world) == 200


async def test_a_trickled_head_of_a_later_request_on_a_kept_alive_connection_gets_408(make_world: Any) -> None:
    async with make_world(env={"REQUEST_READ_TIMEOUT_SECONDS": READ_TIMEOUT}) as world:
        first = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        answer, served = await _trickle_until_closed(world, b"POST /signalwire/inbound HTTP/1.1\r\n",
                                                     b"X-Slow: " + b"a" * 4000, first=first)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert served and all(status == 200 for status in served), served


async def test_connections_beyond_the_cap_are_refused_with_503(make_world: Any) -> None:
    # A longer head deadline than elsewhere: all 40 must be open before the first of the 20 accepted ones times
    # out and frees its slot (on a loaded machine opening them took over 1 s, and 21 were accepted).
    async with make_world(env={"REQUEST_READ_TIMEOUT_SECONDS": "3", "MAX_CONNECTIONS": "20"}) as world:
        await _settled(world)
        clients = [await _open(world) for _ in range(40)]
        try:
            async with asyncio.timeout(HARD_CAP):
                # Every idle connection ends: beyond the cap at once with 503, the rest by the head deadline (408).
                answers = await asyncio.gather(*(reader.read() for reader, _ in clients))
        finally:
            for _, writer in clients:
                writer.close()
        refused = [a for a in answers if a.startswith(b"HTTP/1.1 503 ")]
        timed_out = [a for a in answers if a.startswith(b"HTTP/1.1 408 ")]
        assert len(refused) == 20 and len(timed_out) == 20, [a[:20] for a in answers]
        assert await _healthz(world) == 200
        assert world.bot.log_text().count("too many connections open (limit 20)") <= 10


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_at_the_file_descriptor_limit_the_log_stays_small(make_world: Any) -> None:
    async with make_world(env={"LOG_LEVEL": "INFO"}) as world:
        assert world.bot.proc is not None
        pid = world.bot.proc.pid
        before = len(world.bot.log_text())
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        # Two descriptors to spare: almost every accept() fails with EMFILE while the clients below pile up.
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (_open_fds(pid) + 2, hard))
        clients: list[asyncio.StreamWriter] = []
        try:
            async with asyncio.timeout(HARD_CAP):
                for _ in range(3):  # three waves over a few seconds: asyncio retries accept() every second
                    for _ in range(100):
                        with suppress(OSError, TimeoutError):
                            async with asyncio.timeout(1):
                                _, writer = await _open(world)
                                clients.append(writer)
                    await asyncio.sleep(1.2)
        finally:
            for writer in clients:
                writer.close()
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        async with asyncio.timeout(HARD_CAP):
            while True:  # the bot serves again once descriptors are free
                with suppress(OSError):
                    if await _healthz(world) == 200:
                        break
                await asyncio.sleep(0.2)
        assert await world.bot.terminate() == 0
        log = world.bot.log_text()[before:]
        accept_errors = log.count("socket.accept() out of system resource")
        assert 1 <= accept_errors <= 10 + 1, accept_errors  # the first ten, plus the summary line naming it
        assert "suppressed" in log and "identical lines" in log
        assert len(log) < 200_000, f"{len(log)} bytes logged"
