"""Who may text from Slack, how often, and the audit trail of every attempt.

Owns: ``AccessPolicy`` (pure: allowed users / channels, the per-user sliding-minute rate limit and the wording of
every refusal), the audit values (``AuditEntry``, ``AuditAction``) and ``AccessGate``, the one place the human send
paths (slash command, modal, Retry button, thread reply) ask "may this person send now?". The gate counts a user's
recent sends in the store's audit table, so the limit holds across replicas, and fails closed when the store is
slow or down.
Must not import: aiohttp, Slack packages, ``handlers``, ``bridge.service`` (handlers wrap ``Bridge`` calls with
``AccessGate.track``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.model import AuditAction, OutboundSms
from bridge.storage.port import Store, StoreUnavailable
from sw_api.text import mask_number

log = logging.getLogger("bridge.access")

RATE_WINDOW = timedelta(minutes=1)
# The slash command and the modal are checked before their ack, which Slack wants within 3 s.
STORE_TIMEOUT_SECONDS = 1.5


class RefusalReason(enum.StrEnum):
    USER_NOT_ALLOWED = "user not allowed"
    CHANNEL_NOT_ALLOWED = "channel not allowed"
    RATE_LIMITED = "rate limited"
    STORE_UNAVAILABLE = "store unavailable"


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: RefusalReason
    message: str  # shown to the person, ephemerally
    retry_after: int | None = None  # seconds, for the rate limit


def user_refusal_text() -> str:
    return ("⛔ You are not allowed to send SMS from sms-bridge; ask an admin to add you to SMS_ALLOWED_USERS. "
            "Nothing was sent.")


def channel_refusal_text(channel_id: str) -> str:
    return (f"⛔ SMS cannot be sent from <#{channel_id}>; ask an admin to add this channel to "
            "SMS_ALLOWED_CHANNELS. Nothing was sent.")


def rate_refusal_text(limit: int, wait_seconds: int) -> str:
    return (f"⏳ You have reached the limit of {limit} text{'s' if limit != 1 else ''} per minute. Nothing was sent; "
            f"try again in {wait_seconds} s.")


STORE_REFUSAL_TEXT = ("⚠️ Your SMS was not sent: sms-bridge cannot check sending limits right now (its database is "
                      "not answering). Nothing was sent; try again in a minute.")


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """Empty ``allowed_users`` / ``allowed_channels`` mean everyone (``open_parts`` names them for a warning)."""

    allowed_users: frozenset[str] = frozenset()
    allowed_channels: frozenset[str] = frozenset()
    rate_limit_per_minute: int = 20

    @classmethod
    def build(cls, users: Iterable[str], channels: Iterable[str], rate_limit_per_minute: int) -> AccessPolicy:
        if rate_limit_per_minute < 1:
            raise ValueError("rate_limit_per_minute must be positive")
        return cls(frozenset(users), frozenset(channels), rate_limit_per_minute)

    def open_parts(self) -> list[str]:
        """The variables left empty, i.e. open to everyone."""
        return [name for name, allowed in (("SMS_ALLOWED_USERS", self.allowed_users),
                                           ("SMS_ALLOWED_CHANNELS", self.allowed_channels)) if not allowed]

    def user_refusal(self, user_id: str) -> Refusal | None:
        if self.allowed_users and user_id not in self.allowed_users:
            return Refusal(RefusalReason.USER_NOT_ALLOWED, user_refusal_text())
        return None

    def identity_refusal(self, user_id: str, channel_id: str) -> Refusal | None:
        refusal = self.user_refusal(user_id)
        if refusal is not None:
            return refusal
        if self.allowed_channels and channel_id not in self.allowed_channels:
            return Refusal(RefusalReason.CHANNEL_NOT_ALLOWED, channel_refusal_text(channel_id))
        return None

    def rate_refusal(self, send_times: Sequence[datetime], now: datetime) -> Refusal | None:
        """``send_times``: the user's sends since ``now - RATE_WINDOW`` (any order)."""
        recent = sorted(t for t in send_times if t > now - RATE_WINDOW)
        if len(recent) < self.rate_limit_per_minute:
            return None
        # A slot frees up when the send that puts the user at the limit leaves the window.
        frees_at = recent[len(recent) - self.rate_limit_per_minute] + RATE_WINDOW
        wait = max(1, math.ceil((frees_at - now).total_seconds()))
        return Refusal(RefusalReason.RATE_LIMITED, rate_refusal_text(self.rate_limit_per_minute, wait), wait)


@dataclass(frozen=True, slots=True)
class Admission:
    """The gate's answer: ``refusal`` is None when the send may go ahead; ``audit`` then yields its audit row's id
    (the row is written in the background so that a busy database delays the audit, not Slack's ack)."""

    refusal: Refusal | None
    audit: asyncio.Future[str | None] | None = None

    @property
    def allowed(self) -> bool:
        return self.refusal is None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def outcome_of(sms: OutboundSms | None) -> str:
    """What the audit trail says about a finished ``Bridge.submit`` / ``retry``."""
    if sms is None:
        return "not sent"
    word = sms.status.value if sms.status is not None else sms.state.value
    return f"{word} ({sms.error_code})" if sms.error_code else word


Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


@dataclass(eq=False, slots=True)
class _Admitted:
    """A send this process admitted in the last minute, whose audit row is written in the background.

    Reads are numbered as they start; ``written_before`` is the number of the first read that started after the
    row was committed, so that read surely counts it."""

    at: datetime
    written_before: int | None = None  # None: not committed yet (as far as this process knows)

    def surely_read_by(self, read_no: int) -> bool:
        return self.written_before is not None and read_no >= self.written_before


async def _reaped(task: asyncio.Future[Any]) -> None:
    """Wait for an abandoned read to finish cancelling; its outcome is of no use any more."""
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not report it as lost


def _not_in(times: Sequence[datetime], mine: Sequence[_Admitted], read_no: int) -> list[datetime]:
    """This process's sends that the rate-limit read ``read_no`` (rows ``times``) did not count.

    A row committed before the read started is in ``times``. One committed while the read was out may or may not
    be: it is taken to be there if an unclaimed row of the same ``at`` (to the microsecond) is — the rows of sends
    surely read claim theirs first, so several sends of one instant are never mistaken for each other."""
    unclaimed = Counter(times)
    for sent in mine:
        if sent.surely_read_by(read_no) and unclaimed[sent.at] > 0:
            unclaimed[sent.at] -= 1
    missing = []
    for sent in mine:
        if sent.surely_read_by(read_no):
            continue
        if unclaimed[sent.at] > 0:
            unclaimed[sent.at] -= 1
        else:
            missing.append(sent.at)
    return missing


class AccessGate:
    """The policy plus the store: admits or refuses one send attempt and writes the audit row either way.

    ``spawn`` runs the audit writes in the background (pass ``Bridge.spawn`` so that draining waits for them).
    ``reader`` answers the rate-limit read, which the ack waits for (the ack path's own connection; default
    ``store``); the audit writes go to ``store``.
    """

    def __init__(self, policy: AccessPolicy, store: Store, *, timeout: float = STORE_TIMEOUT_SECONDS,
                 clock: Callable[[], datetime] = _utcnow, spawn: Spawn | None = None,
                 reader: Store | None = None) -> None:
        self.policy = policy
        self.store = store
        self.reader = reader or store
        self.timeout = timeout
        self.clock = clock
        self._spawn = spawn or self._own_task
        self._tasks: set[asyncio.Task[Any]] = set()
        # Count-then-insert is not atomic. Within one process no lock is needed: reads run concurrently (otherwise
        # the ack of each request of one user waits for every read queued before it), and the decision after a read
        # is synchronous, counting this process's admitted sends that the read did not (``_not_in``). Across
        # replicas two simultaneous attempts can both pass at the limit's edge, which the limit tolerates.
        self._reads_started = 0
        self._admitted: dict[str, list[_Admitted]] = {}

    def _own_task(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self) -> None:
        """Wait for the audit writes started without a ``spawn`` (tests, tools)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def admit(self, *, user_id: str, channel_id: str, action: AuditAction, to_number: str = "",
                    from_number: str = "") -> Admission:
        refusal = self.policy.identity_refusal(user_id, channel_id)
        if refusal is not None:
            self._refused(refusal, user_id, channel_id, action, to_number, from_number)
            return Admission(refusal)
        try:
            # Only the read is bounded: it is what the decision needs. (SQLite in WAL mode answers reads while
            # another connection holds the write lock, so a busy writer elsewhere does not refuse anyone.)
            read_no = self._reads_started
            self._reads_started += 1
            times = await self._bounded_read(user_id)
        except (StoreUnavailable, TimeoutError) as exc:
            # Fail closed: without the count nobody can tell whether this send is within the limit.
            log.error("send refused user=%s channel=%s action=%s: store unavailable for the rate check (%s)",
                      user_id, channel_id, action.value, type(exc).__name__ if isinstance(exc, TimeoutError) else exc)
            return Admission(Refusal(RefusalReason.STORE_UNAVAILABLE, STORE_REFUSAL_TEXT))
        # From here to the end no await: the count and the admission it allows are one step for this process.
        now = self.clock()
        mine = [a for a in self._admitted.get(user_id, ()) if a.at > now - RATE_WINDOW]
        refusal = self.policy.rate_refusal([*times, *_not_in(times, mine, read_no)], now)
        if refusal is None:
            entry = _Admitted(now)
            mine.append(entry)
            self._admitted[user_id] = mine
            audit = self._spawn(self._write_send(entry, user_id, channel_id, action, to_number, from_number))
            return Admission(None, audit)
        if mine:
            self._admitted[user_id] = mine
        else:
            self._admitted.pop(user_id, None)
        self._refused(refusal, user_id, channel_id, action, to_number, from_number)
        return Admission(refusal)

    async def _bounded_read(self, user_id: str) -> list[datetime]:
        """The rate-limit read, or ``TimeoutError`` after ``self.timeout`` — at once, not after the read's
        cancellation has finished: asyncpg cancels a query sent into a dead network by opening a connection
        to the server, which waits out its own connect timeout, past Slack's 3 s for the ack."""
        read = asyncio.ensure_future(self.reader.audit_send_times(user_id, self.clock() - RATE_WINDOW))
        done, _ = await asyncio.wait({read}, timeout=self.timeout)
        if not done:
            read.cancel()
            self._spawn(_reaped(read))  # owned, and waited for at shutdown like the audit writes
            raise TimeoutError
        return read.result()

    async def _write_send(self, entry: _Admitted, user_id: str, channel_id: str, action: AuditAction,
                          to_number: str, from_number: str) -> str | None:
        try:
            audit_id = await self.store.audit_add(at=entry.at, user_id=user_id, channel_id=channel_id,
                                                  action=action, to_number=to_number, from_number=from_number)
        except StoreUnavailable as exc:
            # The send goes ahead (it was admitted on a good count); the log line is its only audit record.
            log.error("audit row not written user=%s channel=%s action=%s: %s", user_id, channel_id, action.value,
                      exc)
            mine = self._admitted.get(user_id, [])
            if entry in mine:
                mine.remove(entry)
            return None
        # Committed: every read started from now on counts this row itself.
        entry.written_before = self._reads_started
        return audit_id

    def _refused(self, refusal: Refusal, user_id: str, channel_id: str, action: AuditAction,
                 to_number: str, from_number: str) -> None:
        reason = refusal.reason.value
        if refusal.retry_after is not None:
            reason += f" ({self.policy.rate_limit_per_minute}/min, retry after {refusal.retry_after} s)"
        log.warning("send refused user=%s channel=%s action=%s to=%s reason=%s", user_id, channel_id, action.value,
                    mask_number(to_number) if to_number else "-", reason)

        async def write() -> None:
            try:
                await self.store.audit_add(
                    at=self.clock(), user_id=user_id, channel_id=channel_id, action=AuditAction.REFUSED,
                    to_number=to_number, from_number=from_number, reason=f"{action.value}: {reason}")
            except StoreUnavailable:
                # The refusal itself stands; only its audit row is lost, and the log line above still records it.
                log.error("refusal not written to the audit trail user=%s", user_id)

        self._spawn(write())

    async def link(self, admission: Admission, sms: OutboundSms | None, outcome: str | None = None) -> None:
        """Tie an admitted send's audit row to the message it created (``sms``), or say why there is none.

        Later outcomes (delivery receipts) reach the row through ``Store.audit_outcome(ref, ...)``. Waits for the
        row to be written: call it after the ack (from the background work), not before.
        """
        if admission.audit is None:
            return
        ref = None if sms is None else sms.ref
        audit_id = await admission.audit
        if audit_id is None:
            return
        try:
            await self.store.audit_link(audit_id, ref, outcome or outcome_of(sms))
        except StoreUnavailable as exc:
            log.error("audit row %s not linked to ref=%s: %s", audit_id, ref, exc)

    async def track(self, admission: Admission, work: Awaitable[OutboundSms | None]) -> OutboundSms | None:
        """Run an admitted send that creates its message itself (Retry, thread reply), then ``link`` it."""
        sms = await work
        await self.link(admission, sms)
        return sms


def log_open_access(policy: AccessPolicy) -> None:
    """At start-up: say loudly which of the allow-lists is empty, i.e. lets everyone text."""
    for name in policy.open_parts():
        what = "every workspace member" if name == "SMS_ALLOWED_USERS" else "every channel"
        log.warning("%s is empty: %s may send SMS (set it to a comma-separated list of Slack ids)", name, what)
