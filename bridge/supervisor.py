"""The task supervisor: work a request starts and finishes after its HTTP answer (Slack wants its ack in 3 s).

Owns: ``TaskSupervisor`` — spawning named background tasks, logging the ones that fail (except the exception types
it is told are answers, not failures), and ``drain`` (bounded) at shutdown. Must not import: aiohttp, Slack
packages, ``handlers``, the other parts of ``Bridge``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("bridge.service")


class TaskSupervisor:
    def __init__(self, *, quiet: tuple[type[BaseException], ...] = ()) -> None:
        self._quiet = quiet
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run work after the HTTP answer; ``drain`` waits for all of it."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None or isinstance(task.exception(), self._quiet):
            return  # e.g. a refused callback was answered by its route; nothing failed
        log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def drain(self, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while self._tasks:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            await asyncio.wait(set(self._tasks), timeout=remaining)
