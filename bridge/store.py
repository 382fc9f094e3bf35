"""The storage contract: what the bridge persists and the guarantees each operation gives.

Owns: the ``Store`` protocol (implemented by ``bridge.sqlite_store``; a PostgreSQL implementation must pass the same
contract tests in tests/test_store.py) and ``open_store`` which picks an implementation from ``DATABASE_URL``.
Must not import: aiohttp, Slack packages, ``handlers``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from bridge.model import OutboundSms, SendRequest, StatusChange, StatusRecord
from sw_api.models import MessageStatus


class StoreUnavailable(RuntimeError):
    """The database cannot be reached or answered with an error; the message says which."""


class Store(Protocol):
    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers."""

    async def close(self) -> None: ...

    async def secret(self, name: str) -> bytes:
        """A random 32-byte secret created on first use and stable across restarts and replicas."""

    async def create_outbound(self, ref: str, request: SendRequest, now: datetime) -> OutboundSms:
        """Persist the intent to send (state ``pending``) before anything leaves the process."""

    async def get_outbound(self, ref: str) -> OutboundSms | None: ...

    async def find_by_sw_id(self, sw_id: str) -> OutboundSms | None: ...

    async def set_parent(self, ref: str, parent_ts: str, now: datetime) -> OutboundSms: ...

    async def mark_submitting(self, ref: str, now: datetime) -> OutboundSms: ...

    async def mark_accepted(self, ref: str, sw_id: str, segments: int, now: datetime) -> OutboundSms:
        """SignalWire answered 201. The delivery status itself is set through ``record_status``."""

    async def claim_retry(self, ref: str, user_id: str, now: datetime) -> bool:
        """True for exactly one caller per message: a double-clicked Retry sends once."""

    async def mark_rejected(self, ref: str, error_code: str | None, error_message: str, now: datetime) -> OutboundSms:
        ...

    async def mark_unknown(self, ref: str, error_message: str, now: datetime) -> OutboundSms: ...

    async def record_status(
        self,
        ref: str,
        status: MessageStatus,
        error_code: str | None,
        error_message: str | None,
        event_at: datetime | None,
        now: datetime,
    ) -> StatusChange:
        """Record a delivery status atomically.

        ``new`` is False for a duplicate (same message, same status); ``advanced`` is True only when the status
        outranks the current one (``MessageStatus.rank``), in which case the message's status and error fields
        are updated. Nothing ever moves backwards.
        """

    async def history(self, ref: str) -> list[StatusRecord]: ...

    async def thread_messages(self, channel_id: str, parent_ts: str) -> list[OutboundSms]:
        """Every outbound message whose receipts go to that thread, oldest first."""


async def open_store(database_url: str) -> Store:
    """Open (creating and migrating if needed) the store named by ``DATABASE_URL``."""
    if database_url.startswith("sqlite:///"):
        from bridge.sqlite_store import SqliteStore

        return await SqliteStore.open(database_url.removeprefix("sqlite:///"))
    raise StoreUnavailable(
        f"DATABASE_URL scheme not supported yet: {database_url.split(':', 1)[0]} (use sqlite:///path)"
    )
