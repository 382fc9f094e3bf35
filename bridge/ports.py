"""The ports: what the bridge needs from the outside world, as protocols and error types, and the clock.

Owns: ``SlackPort`` (implemented over slack_sdk in ``handlers.slack_out``) with ``SlackPortError`` /
``SlackTransientError`` and the transient test ``is_transient`` / ``retry_after``; ``SignalWireSender``
(implemented by ``sw_api.client.SignalWireClient``); ``utcnow``, the one clock of the domain.
Must not import: anything from ``bridge`` or ``handlers``, Slack packages, aiohttp. Only ``sw_api``'s value types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime
from typing import Any, Protocol

from sw_api.models import LogRecord, Message


def utcnow() -> datetime:
    return datetime.now(UTC)


class SlackPortError(RuntimeError):
    """Slack refused or could not take a post; ``str()`` is Slack's error code (e.g. ``channel_not_found``)."""


class SlackTransientError(SlackPortError):
    """Slack may take this later: 429, 5xx, a timeout or a broken connection. ``retry_after`` from a 429."""

    transient = True

    def __init__(self, code: str, retry_after: float | None = None) -> None:
        super().__init__(code)
        self.retry_after = retry_after


def is_transient(exc: BaseException) -> bool:
    """True if the error says "try again later" (the Slack port sets ``transient`` on such errors)."""
    return getattr(exc, "transient", False) is True


def retry_after(exc: BaseException) -> float | None:
    """Seconds Slack asked us to wait (``Retry-After`` of a 429), if it said."""
    value = getattr(exc, "retry_after", None)
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


class SlackPort(Protocol):
    """The few Slack Web API calls the bridge makes. Implemented over slack_sdk in ``handlers.slack_out``."""

    async def post(
        self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None, thread_ts: str | None = None,
        *, key: str | None = None,
    ) -> str:
        """Post a message (or a thread reply) and return its ``ts``; raises ``SlackPortError``.

        ``key`` tags the message so ``find_posted`` (optional on a port) can find it again after a lost answer."""

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None: ...

    async def react(self, channel: str, ts: str, name: str, *, add: bool = True) -> None:
        """Add (or remove) the bot's reaction ``name`` (bare, e.g. ``white_check_mark``); raises ``SlackPortError``."""

    async def upload(self, channel: str, thread_ts: str | None, filename: str, content: bytes, *, title: str,
                     comment: str) -> None:
        """-- issue 13: a file (the bulk report CSV) into ``channel`` (in ``thread_ts``'s thread); raises
        ``SlackPortError``."""

    async def direct(self, user: str, text: str) -> None:
        """A message in the bot's DM with ``user``, for when the channel itself refused (issue 12: a scheduled
        send whose parent could not be posted); raises ``SlackPortError``."""


class SignalWireSender(Protocol):
    async def send_message(
        self,
        to: str,
        from_: str,
        body: str | None = None,
        media: Sequence[str] = (),
        send_as_mms: bool = False,
        status_callback: str | None = None,
    ) -> Message: ...

    async def get_message(self, message_id: str) -> LogRecord: ...

    def list_messages(
        self, *, created_after: datetime | date | None = None, created_before: datetime | date | None = None,
        page_size: int = 50, max_pages: int = 20,
    ) -> AsyncIterator[LogRecord]: ...
