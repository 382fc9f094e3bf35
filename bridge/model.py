"""The bridge's domain values: an outbound SMS and its lifecycle, a status record, a send request.

Owns: the send lifecycle (``SendState``) and which status transitions are progress.
Must not import: aiohttp, Slack packages, storage drivers, ``handlers``. Pure data.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sw_api.models import MessageStatus


class SendState(enum.StrEnum):
    """Where our attempt to hand the message to SignalWire stands (not the carrier's delivery status)."""

    PENDING = "pending"          # intent stored, SignalWire not called yet
    SUBMITTING = "submitting"    # the POST is in flight
    ACCEPTED = "accepted"        # SignalWire answered 201: ``sw_id`` is known
    REJECTED = "rejected"        # certainly not sent (4xx, connection refused): ``error_*`` says why
    UNKNOWN = "unknown"          # timeout / lost connection / 5xx: it may or may not exist at SignalWire
    SCHEDULED = "scheduled"      # issue 12: waits for its due time (``scheduled_send``); nothing else touches it


def new_ref() -> str:
    """Our own reference for an outbound message: unguessable, safe in a URL."""
    return secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class SendRequest:
    """A validated request to text someone, from the slash command, the modal or a Retry button."""

    user_id: str
    channel_id: str
    to: str
    from_: str
    body: str
    media: tuple[str, ...] = ()
    send_as_mms: bool = False
    team_id: str = ""
    origin: str = "command"
    retry_of: str | None = None
    thread_ts: str | None = None  # post receipts into this existing thread instead of a new parent
    source_ts: str | None = None  # a thread reply: the Slack message whose reactions show the outcome


@dataclass(frozen=True, slots=True)
class OutboundSms:
    """One outbound message as the store keeps it."""

    ref: str
    created_at: datetime
    updated_at: datetime
    user_id: str
    channel_id: str
    to: str
    from_: str
    body: str
    media: tuple[str, ...] = ()
    send_as_mms: bool = False
    team_id: str = ""
    origin: str = "command"
    state: SendState = SendState.PENDING
    sw_id: str | None = None
    status: MessageStatus | None = None
    error_code: str | None = None
    error_message: str | None = None
    segments: int | None = None
    parent_ts: str | None = None
    retry_of: str | None = None
    submitted_at: datetime | None = None     # when the last POST to SignalWire started (reconciliation window)
    attempts: int = 0                        # POSTs made to SignalWire for this message
    next_attempt_at: datetime | None = None  # when the sweeper should look at it again (429 back-off, reconcile)
    checked_at: datetime | None = None       # when a missing final receipt was looked up in the logs

    @property
    def is_mms(self) -> bool:
        return bool(self.media) or self.send_as_mms


@dataclass(frozen=True, slots=True)
class StatusRecord:
    """One delivery status we received for an outbound message."""

    ref: str
    status: MessageStatus
    event_at: datetime | None
    received_at: datetime
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class StatusChange:
    """What recording a callback did: ``new`` (not a duplicate) and ``advanced`` (moved the message forward)."""

    new: bool
    advanced: bool
    sms: OutboundSms
    history: tuple[StatusRecord, ...] = field(default_factory=tuple)
    # Statuses that advanced the message and whose receipt is not queued yet, in recorded order (as ``unannounced``).
    unannounced: tuple[MessageStatus, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Conversation:
    """The Slack thread where texts between one of our numbers and one person go."""

    our_number: str
    their_number: str
    channel_id: str
    thread_ts: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class OptOut:
    """A person asked not to be texted from one of our numbers (``keyword`` is the word they sent, or ``21610``)."""

    our_number: str
    their_number: str
    opted_out_at: datetime
    keyword: str


# -- what the store takes and returns (bridge.storage) --------------------------------------------------

class AuditAction(enum.StrEnum):
    SEND = "send"        # /sms quick send or the compose modal
    RETRY = "retry"      # the Retry button on a failed message
    REPLY = "reply"      # a thread reply texted to the conversation
    REFUSED = "refused"  # any of the above, refused by the policy (``reason`` says why)
    # -- issue 11: compliance (migration 13)
    AUTO_REPLY = "auto-reply"  # a STOP/START/HELP confirmation texted by the bridge itself (``reason``: its kind)
    BLOCK = "block"            # /sms block: ``to_number`` blocked by ``user_id`` (``reason``: theirs)
    UNBLOCK = "unblock"        # /sms unblock
    # -- issue 13: bulk sends (migration 19). Neither counts towards SMS_RATE_LIMIT_PER_USER (bulk never passes the
    # access gate); ``reason`` starts with ``batch <id>`` (``bulk_reason``), so a batch's rows read together.
    BULK = "bulk"            # "Send to N" confirmed a batch: by ``user_id``, ``reason`` "batch <id>: N recipients"
    BULK_SEND = "bulk-send"  # one recipient handed over: ``to_number``, ``from_number``, ``ref``; "batch <id>"


def bulk_reason(batch_id: str, recipients: int | None = None) -> str:
    """The ``reason`` of a bulk audit row: ``batch <id>``, and for the batch's own row how many it texts."""
    if recipients is None:
        return f"batch {batch_id}"
    return f"batch {batch_id}: {recipients} recipient{'' if recipients == 1 else 's'}"


# The attempts a person makes one at a time: they count towards the rate limit (refusals, blocks and bulk do not).
SEND_ACTIONS = (AuditAction.SEND, AuditAction.RETRY, AuditAction.REPLY)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit trail: who tried to text whom, from which channel, when, and what came of it."""

    id: str
    at: datetime
    user_id: str
    channel_id: str
    action: AuditAction
    to_number: str = ""
    from_number: str = ""
    ref: str | None = None
    reason: str | None = None
    outcome: str | None = None


@dataclass(frozen=True, slots=True)
class InboundPlace:
    """Where an inbound text was posted: its channel, the thread it is in, and its own ``ts``."""

    channel_id: str
    thread_ts: str
    ts: str

    @property
    def started_thread(self) -> bool:
        """It is the parent of its thread (a new conversation), not a reply in an existing one."""
        return self.ts == self.thread_ts


@dataclass(frozen=True, slots=True)
class SlackReply:
    """A thread reply as Slack delivered it, stored before Slack is answered (migration 9) so that a crash after the
    answer cannot lose it; ``attempts`` counts how often it was claimed for processing."""

    channel_id: str
    thread_ts: str
    ts: str
    user_id: str
    text: str
    team_id: str = ""
    subtype: str | None = None
    attempts: int = 0
    files: tuple[str, ...] = ()  # Slack file ids of a ``file_share`` reply (migration 12): sent as MMS


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One stored outbox row as the worker sees it. ``result`` is the ``ts`` a post produced."""

    id: int
    thread_key: str
    kind: str
    ref: str | None
    channel: str | None
    payload: dict[str, Any]
    attempts: int
    result: str | None
    last_error: str | None
    uncertain: bool = False  # an earlier attempt may have reached Slack: look before posting again


@dataclass(frozen=True, slots=True)
class OutboxWrite:
    """One item to add. ``covered_by``: kinds of which an undone, unclaimed item for the same ``ref`` makes this
    one unnecessary (a parent update is covered by a waiting update or parent post); empty: always added.

    ``append``: the name of a list in ``payload``. If the newest undone item of ``ref`` that shows in its thread
    (kind ``post`` or this kind) is of this kind and was never claimed nor attempted, its list is extended with
    this one's instead of adding an item (coalesced receipts); an item whose delivery has begun is never changed.
    ``delay``: seconds after ``now`` before the item is due (the window in which it may still be appended to)."""

    thread_key: str
    kind: str
    ref: str | None
    channel: str | None
    payload: dict[str, Any]
    covered_by: tuple[str, ...] = ()
    append: str | None = None
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Which engine a store runs on and whether its schema is current (``bot.py check``, ``/readyz``)."""

    engine: str            # "sqlite" or "postgresql"
    server_version: str    # e.g. "3.45.1" or "15.4"
    schema_version: int    # the newest migration applied
    latest_version: int    # the newest migration this code knows

    @property
    def current(self) -> bool:
        return self.schema_version == self.latest_version


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Undone outbox items and the age in seconds of the oldest (None when there are none)."""

    depth: int
    oldest_age: float | None


# -- issue 11: outbound MMS ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MediaItem:
    """A picture the bridge serves to SignalWire at ``PUBLIC_URL/media/<token>/<name>`` (migration 12) until
    ``expires_at``: the bytes live in the database, so any replica can answer."""

    token: str
    name: str
    content_type: str
    data: bytes
    created_at: datetime
    expires_at: datetime
# -- issue 11: compliance (auto-replies and the block list, migration 13) --------------------------------------

# The ``origin`` of an outbound message the bridge texts by itself in answer to a keyword (STOP, START, HELP).
AUTO_REPLY_ORIGIN = "auto-reply"


class AutoReplyKind(enum.StrEnum):
    STOP = "stop"    # the opt-out confirmation
    START = "start"  # the resubscribe confirmation
    HELP = "help"    # the help text (HELP / INFO)


# The only texts ever sent to a number that opted out (or that the team blocked): carriers expect the STOP
# confirmation and an answer to HELP whatever the subscription state. Every other send is refused by the store.
OPT_OUT_EXEMPT = frozenset({AutoReplyKind.STOP, AutoReplyKind.HELP})


@dataclass(frozen=True, slots=True)
class AutoReply:
    """The auto-reply an inbound keyword text asks for, stored by ``record_inbound`` in the same transaction as the
    text (so SignalWire's redelivery, or a second replica, never makes another): ``request`` becomes outbound
    message ``ref`` (origin ``AUTO_REPLY_ORIGIN``) and ``items`` (its notice in the thread) are queued with it —
    unless the number opted out or is blocked and ``kind`` is not in ``OPT_OUT_EXEMPT``: then nothing is stored."""

    ref: str
    kind: AutoReplyKind
    request: SendRequest
    items: tuple[OutboxWrite, ...] = ()


@dataclass(frozen=True, slots=True)
class BlockedNumber:
    """A number the team blocked (``/sms block``): nothing is sent to it from any of our numbers."""

    number: str
    reason: str
    blocked_by: str
    blocked_at: datetime


# -- issue 12: contacts and templates ------------------------------------------------------------------------------

def contact_key(name: str) -> str:
    """What makes two contact names the same: case-insensitive, spacing ignored (the store's unique ``name_key``)."""
    return " ".join(name.split()).casefold()


@dataclass(frozen=True, slots=True)
class Contact:
    """An entry of the team-wide address book: a number belongs to at most one contact, a name (``contact_key``)
    to at most one number."""

    name: str
    number: str
    updated_by: str
    updated_at: datetime


class ContactOutcome(enum.StrEnum):
    ADDED = "added"
    RENAMED = "renamed"        # the number was stored under another name
    UNCHANGED = "unchanged"    # the same name and number were stored already
    NAME_TAKEN = "name_taken"  # another number holds that name: nothing changed


@dataclass(frozen=True, slots=True)
class ContactChange:
    """What ``Store.contact_put`` did; ``contact`` is the row as stored now (for ``NAME_TAKEN``: the one holding
    the name), ``previous_name`` the name a renamed number had."""

    outcome: ContactOutcome
    contact: Contact
    previous_name: str | None = None


@dataclass(frozen=True, slots=True)
class Template:
    """A stored message template (``/sms template add NAME TEXT``): ``{placeholders}`` filled at send time."""

    name: str
    body: str
    updated_by: str
    updated_at: datetime


# -- issue 12: app home (what the Home tab shows; bridge.home renders it) -------------------------------------

@dataclass(frozen=True, slots=True)
class RecentConversation:
    """A conversation as the Home tab lists it: where its thread is, when it was last active (``updated_at``:
    the last message that pointed it at its thread) and its newest text either way (``last_text`` None when it
    has none stored, e.g. pruned; ``last_inbound`` True when they sent it)."""

    our_number: str
    their_number: str
    channel_id: str
    thread_ts: str
    updated_at: datetime
    last_text: str | None
    last_at: datetime | None
    last_inbound: bool
    last_has_media: bool = False


@dataclass(frozen=True, slots=True)
class LastError:
    """The newest failure worth showing an operator: a Slack outbox item given up on (``source`` ``slack``,
    ``what`` its kind) or an SMS refused / failed / of unknown outcome (``source`` ``sms``, ``what`` its state or
    status). ``detail`` is the stored error text, unescaped and untruncated (the view shortens it)."""

    at: datetime
    source: str
    what: str
    detail: str


@dataclass(frozen=True, slots=True)
class HomeSummary:
    """The counters of the Home tab's status and compliance sections, read in one call."""

    opted_out: int        # distinct numbers that opted out of at least one of our numbers
    blocked: int          # numbers on the team block list
    outbox_pending: int   # Slack outbox items neither done nor failed
    unsent: int           # outbound SMS not handed to SignalWire yet (pending or submitting)
    last_error: LastError | None


# -- issue 12: scheduled sends (migration 16) -------------------------------------------------------------------

# The ``origin`` of a scheduled send (from ``/sms schedule`` or the form's "Send at"): its parent is posted when it is
# scheduled (through the outbox), so sending it later never posts another.
SCHEDULE_ORIGIN = "schedule"


class ScheduleOutcome(enum.StrEnum):
    """How a scheduled send left the ``scheduled`` state: exactly one of these, decided by a conditional update."""

    SCHEDULED = "scheduled"  # still waiting
    RELEASED = "released"    # due: the message became ``pending`` and goes the usual way
    CANCELLED = "cancelled"  # Cancel pressed by the scheduler or an admin (message ``rejected``)
    MISSED = "missed"        # the bot was down at the due time for longer than SCHEDULE_GRACE_MINUTES
    REFUSED = "refused"      # at its time: no longer allowed, opted out, or blocked


@dataclass(frozen=True, slots=True)
class ScheduledSend:
    """A scheduled send: its message, when it is due (UTC), the scheduler's IANA time zone (for showing it) and
    where it stands (``finished_by``: who cancelled it)."""

    sms: OutboundSms
    due_at: datetime
    tz: str
    state: ScheduleOutcome = ScheduleOutcome.SCHEDULED
    finished_at: datetime | None = None
    finished_by: str | None = None
