"""Bulk sends (issue 13), the moving part: drafts, confirm, the paced worker, Pause / Resume / Cancel, the report.

INTERFACE STUB (written by the lead so the Slack slice and the engine slice can be built at the same time): the
signatures and docstrings below are the contract; the engine slice replaces the bodies and this paragraph.

Owns: ``BulkSends``. Must not import: aiohttp, Slack packages, ``handlers``, storage adapters (the store is the
``Store`` port).
"""

from __future__ import annotations

from collections.abc import AsyncIterable

from bridge.bulk_model import BulkBatch, BulkDraft, BulkPreview, BulkProblem, BulkProgress, BulkRecipient
from bridge.quiet_hours import QuietHours
from bridge.service import Bridge

BULK_DISABLED = ("Bulk sending is turned off on this sms-bridge: nobody is in SMS_BULK_ALLOWED_USERS. "
                 "Ask whoever runs sms-bridge to add your Slack user id there.")
BULK_NOT_ALLOWED = ("You are not allowed to send bulk texts: your Slack user id is not in SMS_BULK_ALLOWED_USERS. "
                    "Ask whoever runs sms-bridge to add you.")


class BulkSends:
    def __init__(self, bridge: Bridge, *, mps: float, quiet: QuietHours | None, allowed: frozenset[str],
                 admins: frozenset[str], max_recipients: int) -> None:
        self.bridge = bridge
        self.mps = mps
        self.quiet = quiet
        self.allowed = allowed
        self.admins = admins
        self.max_recipients = max_recipients

    def refusal(self, user_id: str) -> str | None:
        """Why ``user_id`` may not bulk-send (``BULK_DISABLED`` / ``BULK_NOT_ALLOWED``), or ``None``."""
        if not self.allowed:
            return BULK_DISABLED
        return None if user_id in self.allowed else BULK_NOT_ALLOWED

    async def draft(self, draft: BulkDraft,
                    lines: AsyncIterable[BulkRecipient | BulkProblem]) -> BulkPreview | str:
        """Store a draft batch and its recipients as ``lines`` stream in (chunked inserts, flat memory): duplicates
        merged (counted), opted-out / blocked numbers stored as skipped (counted), problems counted and the first
        ``PREVIEW_PROBLEMS`` kept; segments, duration at ``mps`` and quiet-hour waits computed. Returns the preview,
        or what to tell the user (more than ``max_recipients`` valid recipients, no valid recipient, not allowed):
        then nothing is left stored. Nothing is sent before ``confirm``."""
        raise NotImplementedError

    async def confirm(self, batch_id: str, user_id: str) -> BulkBatch | str:
        """"Send to N" (only the drafter): the draft becomes ``sending`` by a conditional update (a second press,
        from any replica, gets "already started"), its one parent (the live progress message with Pause / Resume /
        Cancel) is posted in its channel, and the worker starts claiming. Returns the batch or what to tell the user."""
        raise NotImplementedError

    async def discard(self, batch_id: str, user_id: str) -> str:
        """The preview's Cancel (only the drafter): the draft is dropped; returns what to show instead of it."""
        raise NotImplementedError

    async def pause(self, batch_id: str, user_id: str) -> str | None:
        """Only the sender or an admin; ``None`` = done (the parent shows it), else what to tell the presser."""
        raise NotImplementedError

    async def resume(self, batch_id: str, user_id: str) -> str | None:
        raise NotImplementedError

    async def cancel(self, batch_id: str, user_id: str) -> str | None:
        """Stops within one second on every replica; recipients not yet handed over become ``cancelled``."""
        raise NotImplementedError

    async def progress(self, batch_id: str) -> BulkProgress | None:
        raise NotImplementedError

    def start(self) -> None:
        """Start this replica's worker (claims recipients of ``sending`` batches under leases, paced)."""

    async def stop(self) -> None:
        """Stop the worker, bounded."""
