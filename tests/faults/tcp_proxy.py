"""A loopback TCP proxy the fault suite puts between the bots and PostgreSQL, to cut the database off and bring it
back without touching the shared server.

Owns: ``TcpProxy`` (listens on 127.0.0.1 port 0, forwards every connection to ``target``) and its two faults:
``cut("refuse")`` — the database is stopped: open connections are reset and new ones are closed at once — and
``cut("blackhole")`` — the database is unreachable: nothing is relayed any more, open connections and new ones just
get no answer (a dropped route, a dead host). ``restore()`` relays again: after a blackhole the held bytes flow on,
as when a route comes back; after a refusal only new connections work, as after a server restart.
Must not import: anything from the project (it is plain asyncio).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Literal

CutMode = Literal["refuse", "blackhole"]
_CHUNK = 64 * 1024


@dataclass
class TcpProxy:
    """``async with TcpProxy(host, port) as proxy``: ``proxy.port`` is where clients connect."""

    target_host: str
    target_port: int
    mode: CutMode | None = None
    connections: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _flowing: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def port(self) -> int:
        assert self._server is not None, "the proxy is not running"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> TcpProxy:
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.mode = "refuse"
        self._drop_all()
        self._flowing.set()  # handlers held by a blackhole wake up, find their socket closed, and return
        for task in list(self._tasks):
            task.cancel()
        with suppress(TimeoutError):
            async with asyncio.timeout(5):
                await asyncio.gather(*self._tasks, return_exceptions=True)
        with suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._server.wait_closed()

    def cut(self, mode: CutMode = "refuse") -> None:
        """From now on the database is stopped (``refuse``) or unreachable (``blackhole``)."""
        self.mode = mode
        self._flowing.clear()
        if mode == "refuse":
            self._drop_all()

    def restore(self) -> None:
        """Relay again."""
        self.mode = None
        self._flowing.set()

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            # abort(): an RST, not a polite FIN, like a server process that died.
            writer.transport.abort()
        self._writers.clear()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        if self.mode == "refuse":
            self._drop_all()
            return
        await self._flowing.wait()  # blackhole: accepted, not answered until restored (or reset by a refusal)
        if writer.transport.is_closing():
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        self._spawn(self._pipe(reader, up_writer, writer))
        self._spawn(self._pipe(up_reader, writer, up_writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    other: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(_CHUNK):
                await self._flowing.wait()
                if writer.transport.is_closing():
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side closed (or was reset): close both, as the real peer would see.
            for w in (writer, other):
                w.transport.abort()
                self._writers.discard(w)
