"""``python tests/faults/slow_outbox_bot.py serve``: the real ``bot.py`` with every Slack-outbox enqueue slowed down.

Owns: the fault suite's one test-only hook, ``SMS_BRIDGE_TEST_OUTBOX_WRITE_DELAY`` (seconds slept before each outbox
enqueue reaches the database), so a test can SIGKILL the bot between recording a status and queuing its receipt. The bot
itself has no such switch: this wrapper wraps the store ``open_store`` opens (any engine) in its own process, then
runs ``bot.py`` unchanged.
Must not import: ``handlers``, ``bridge.service`` (only the opened store is touched).
"""

from __future__ import annotations

import asyncio
import os
import runpy
import sys
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DELAY_VARIABLE = "SMS_BRIDGE_TEST_OUTBOX_WRITE_DELAY"
# Every way an item gets into the outbox (announce_status: a receipt batch with its "announced" marker).
SLOWED = ("outbox_add", "outbox_add_coalesced", "announce_status")


def _slowed(method: Callable[..., Awaitable[Any]], delay: float) -> Callable[..., Awaitable[Any]]:
    @wraps(method)
    async def slowed(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(delay)
        return await method(*args, **kwargs)

    return slowed


def main() -> None:
    sys.path.insert(0, str(REPO))
    from bridge.storage import engines

    delay = float(os.environ.get(DELAY_VARIABLE, "0"))
    open_store = engines.open_store

    async def open_slowed_store(database_url: str) -> Any:
        # Whichever engine DATABASE_URL names: the opened store's own methods are wrapped, not a class.
        store = await open_store(database_url)
        for name in SLOWED:
            method = getattr(store, name, None)
            if method is not None:  # the hook also runs against older code that lacks announce_status
                setattr(store, name, _slowed(method, delay))
        return store

    engines.open_store = open_slowed_store
    sys.argv[0] = str(REPO / "bot.py")
    runpy.run_path(str(REPO / "bot.py"), run_name="__main__")


if __name__ == "__main__":
    main()
