"""The values of bulk sends (issue 13): a batch, its recipients, the preview, the progress and the report.

Owns: ``BULK_ORIGIN`` (the ``origin`` of an outbound message sent for a batch), ``BatchState`` and
``RecipientState`` (where a batch / one recipient stands; every move between them is a conditional update in the
store), ``BulkRecipient`` and ``BulkProblem`` (one line of the recipients box or the CSV file, read by
``bridge.bulk_input``), ``BulkDraft`` (what the modal asked for), ``BulkPreview`` (what the sender sees before "Send
to N"), ``BulkBatch``, ``BulkRecipientRow`` (one stored recipient, as the store takes and returns it),
``BulkProgress`` (the live parent's counters) and ``BulkReportRow`` (one line of the report).
Pure data. Must not import: anything in ``bridge`` but ``bridge.model``; storage, aiohttp, Slack packages.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

# The ``origin`` of an outbound SMS sent for a bulk batch: no parent of its own, no receipt thread.
BULK_ORIGIN = "bulk"

# At most this many invalid lines are listed in the preview (the rest are counted).
PREVIEW_PROBLEMS = 20


class BatchState(enum.StrEnum):
    DRAFT = "draft"          # previewed, not confirmed: nothing is sent
    SENDING = "sending"      # confirmed: the worker claims its recipients
    PAUSED = "paused"        # Pause pressed: the position is held, nothing new is claimed
    CANCELLED = "cancelled"  # Cancel pressed: no recipient is claimed any more (the rest are ``cancelled``)
    DONE = "done"            # every recipient was sent or skipped
    DISCARDED = "discarded"  # the preview's Cancel: the draft is dropped


class RecipientState(enum.StrEnum):
    WAITING = "waiting"      # not claimed yet (``not_before`` set while quiet hours hold it)
    CLAIMED = "claimed"      # a replica holds its lease and is creating / handing over its message
    HANDED = "handed"        # its outbound message exists (``ref``): from here the durable send path owns it
    SKIPPED = "skipped"      # opted out or blocked (at the preview or just before its send)
    CANCELLED = "cancelled"  # the batch was cancelled before its turn


@dataclass(frozen=True, slots=True)
class BulkRecipient:
    """One valid recipient line: its line number (1-based, as the sender sees it), E.164 number, name (from the
    contact book or the CSV's ``name`` column) and every CSV column (usable as ``{column}`` placeholders).
    ``source`` says where ``line`` counts: ``"box"`` (the Nth entry of the recipients box) or ``"csv"`` (the CSV
    file's physical line the row starts on, the header being line 1)."""

    line: int
    number: str
    name: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    source: str = "box"


@dataclass(frozen=True, slots=True)
class BulkProblem:
    """One line that cannot be texted: its line number, the value as typed, and why. ``source`` as for
    ``BulkRecipient``. ``fatal``: the whole input is refused (a CSV larger than the limit, not UTF-8, without a
    ``number`` column…) — every recipient read before it is void too, and nothing follows it."""

    line: int
    value: str
    reason: str
    source: str = "box"
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class BulkDraft:
    """What the bulk modal asked for: who asks, from which number, into which channel, the message template (with
    ``{name}`` / ``{first_name}`` / ``{column}`` placeholders) and its short title (for replies and the parent)."""

    user_id: str
    channel_id: str
    from_: str
    body: str
    title: str
    team_id: str = ""


@dataclass(frozen=True, slots=True)
class BulkPreview:
    """What the sender sees before confirming. ``will_send`` is the N of "Send to N": distinct recipients who will get
    the text, quiet-hour waits included, opted-out and blocked excluded."""

    batch_id: str
    will_send: int
    invalid: tuple[BulkProblem, ...]   # the first ``PREVIEW_PROBLEMS`` invalid lines
    invalid_count: int
    opted_out: int
    blocked: int
    duplicates: int                     # lines merged into an earlier line with the same number
    segments: int                       # segments in total over the ``will_send`` recipients
    seconds: float                      # how long sending takes at the configured rate
    quiet_waiting: int                  # of ``will_send``: held by quiet hours right now
    quiet_until: datetime | None        # the latest time one of them becomes sendable (UTC)
    sample: str                         # the first recipient's rendered text


@dataclass(frozen=True, slots=True)
class BulkBatch:
    id: str
    user_id: str
    channel_id: str
    from_: str
    body: str
    title: str
    state: BatchState
    total: int                          # recipients who will get the text (``will_send`` at confirm)
    created_at: datetime
    team_id: str = ""
    parent_ts: str | None = None
    confirmed_at: datetime | None = None
    finished_at: datetime | None = None
    finished_by: str | None = None      # who cancelled it


@dataclass(frozen=True, slots=True)
class BulkRecipientRow:
    """One recipient of a batch as the store keeps it: ``seq`` is its place in the batch (the order of the lines,
    unique per batch, the order it is sent in), ``line`` the line number the sender sees, ``fields`` the CSV columns;
    ``skip_reason`` says why a ``skipped`` one is; ``not_before`` holds a ``waiting`` one until then (quiet hours)."""

    seq: int
    line: int
    number: str
    name: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    state: RecipientState = RecipientState.WAITING
    skip_reason: str | None = None
    not_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class BulkProgress:
    """The live parent's counters (from the store in one read)."""

    sent: int        # handed to SignalWire (accepted, not yet delivered or failed)
    delivered: int
    failed: int
    skipped: int     # opted out or blocked, before or during the batch; cancelled ones are counted in ``cancelled``
    remaining: int   # not sent yet (waiting, claimed, or handed but not yet accepted)
    quiet_waiting: int = 0
    cancelled: int = 0


@dataclass(frozen=True, slots=True)
class BulkReportRow:
    """One line of the CSV report uploaded into the parent's thread when the batch ends."""

    number: str
    name: str | None
    status: str               # delivered / sent / failed / skipped / cancelled / pending …
    error_code: str | None
    error_message: str | None
    sent_at: datetime | None
