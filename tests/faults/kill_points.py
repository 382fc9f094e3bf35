"""Killing the bot at an exact point: the fake Slack SIGKILLs the bot process as it answers (or receives) a call.

Owns: ``kill_on`` — wraps ``World.slack.handle`` so that a matching Web API call SIGKILLs the bot before it can
read Slack's answer (``after=True``: Slack took the call, its answer is lost) or before Slack acts on it
(``after=False``: nothing happened) — and ``restart_after_kill``.
Must not import: ``bot.py``, ``handlers``, ``bridge.service`` (the bot is only reached over HTTP).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from tests.faults.procs import World

Match = Callable[[str, dict[str, Any]], bool]


@dataclass
class KillSwitch:
    """Armed with ``arm``: the ``nth`` matching call from then on kills the bot (once)."""

    world: World
    match: Match
    nth: int = 0
    after: bool = True
    seen: int = 0
    fired: list[str] = field(default_factory=list)

    def arm(self, nth: int = 1, *, after: bool = True) -> None:
        self.nth, self.after, self.seen = nth, after, 0

    def _maybe_kill(self, method: str, payload: dict[str, Any], when_after: bool) -> bool:
        if self.nth <= 0 or when_after is not self.after or not self.match(method, payload):
            return False
        self.seen += 1
        if self.seen != self.nth:
            return False
        self.nth = 0
        proc = self.world.bot.proc
        if proc is None or proc.returncode is not None:
            return False
        with suppress(ProcessLookupError):
            proc.kill()
        self.fired.append(f"{method} {'after' if self.after else 'before'}")
        return True


def kill_on(world: World, match: Match) -> KillSwitch:
    switch = KillSwitch(world, match)
    original = world.slack.handle

    def handle(method: str, payload: dict[str, Any], token: str | None, http_verb: str = "POST") -> Any:
        if switch._maybe_kill(method, payload, False):
            # Killed before Slack acted: answer with a queued fault, which changes nothing in the fake.
            world.slack.add_response(method, status=503)
        reply = original(method, payload, token, http_verb)
        if reply.status == 200 and reply.body.get("ok"):
            switch._maybe_kill(method, payload, True)
        return reply

    world.slack.handle = handle  # type: ignore[method-assign]
    return switch


async def restart_after_kill(world: World, timeout: float = 10.0, switch: KillSwitch | None = None) -> bool:
    """Wait (up to ``timeout``) for the bot to die, SIGKILL it if it did not, start it again; True if it died.
    ``switch`` is disarmed before the start, so a kill left armed cannot hit the new process while it starts."""
    proc = world.bot.proc
    died = False
    if proc is not None:
        with suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await proc.wait()
                died = True
    await world.bot.kill()
    if switch is not None:
        switch.arm(0)
    await world.bot.start()
    return died
