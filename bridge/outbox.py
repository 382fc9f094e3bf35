"""The durable Slack outbox: every post, parent update and reaction is stored first and delivered by a worker.

Owns: ``SlackOutbox`` (enqueue, the delivery worker, retry scheduling, coalescing of parent updates, flush/stop),
``ParentView``, ``OutboxBatch`` (``OutboxWrite`` items, from ``bridge.model``, added in one transaction with an
announcement marker).
Must not import: Slack packages, aiohttp, ``handlers``, ``bridge.service`` (which imports this module); it sees
Slack only through ``bridge.ports.SlackPort`` and the database only through ``bridge.storage.port.Store``.

Guarantees:
- An enqueue returns once the item is committed to the store; a crash or restart loses nothing (a new outbox on
  the same database delivers whatever is undone). ``add_announcement`` commits a whole batch together with the
  marker that a status was announced, so the receipt of a status is queued exactly once.
- Items sharing a ``thread_key`` are delivered strictly in enqueue order: only the first undone item of a key is
  ever attempted, and the rest wait while it is retried. Different keys are independent.
- Transient failures (Slack 429 with ``Retry-After``, 5xx, timeouts, connection errors — whatever the port marks
  ``transient``) are retried forever with jittered exponential backoff; a permanent one (``channel_not_found``,
  ``invalid_blocks``, ...) fails that item, logged at WARNING, and its thread moves on.
- Parent posts and updates are rendered when delivered, from the store's state at that moment, and a parent
  update is not queued while an undelivered one (or the parent post itself) is still waiting: a burst of status
  changes becomes one ``chat.update`` showing the latest state.
- Receipts (``Kind.RECEIPT``) are coalesced: a receipt waits ``receipt_window`` seconds, and a status announced
  meanwhile is appended to the waiting item (in the transaction that marks it announced) instead of queuing
  another, so statuses arriving close together become one thread reply listing each of them in order. Only an
  item never claimed nor attempted is appended to, and a claimed item is re-read before delivery: what is posted
  is exactly what its payload says when its claim was taken, and a post cut off by a crash is found by its key.
  Nothing of a ref queued after a waiting receipt (a note) is overtaken: then the next status gets a new item.
- Posts into one ``thread_key`` (parents, replies, receipts, inbound texts) are paced by a token bucket kept in
  the store (``post_interval`` seconds per post, bursts of ``post_burst``), so every replica draws on the same
  bucket; a post that must wait hands its claim back unattempted and is due when a token is free.
- Posts happen once: Slack has no idempotency key, so every post carries its item's key as message metadata, and
  an item whose earlier attempt may have reached Slack (a claim left by a crash, a counted failed attempt, or a
  parent the caller already tried to post itself) is looked up in the channel / thread before posting again.
  A parent's ``ts`` is also recorded through ``on_parent_posted`` and a parent that has one is never posted again.
- Inbound texts (``Kind.INBOUND``) are routed when delivered: into the conversation's current thread, or — when
  there is none or that thread no longer takes posts (parent deleted, bot removed) — as a new parent in the
  inbound channel, which then becomes the conversation's thread. Later items can follow it with
  ``thread_of_inbound`` (a reply or reaction in whatever thread that text ended up in).
- Inbound MMS attachments (``Kind.MEDIA``, issue 11) follow their text under the same key and are uploaded into
  the thread it ended up in by ``bridge.media_in.InboundMedia`` (``media=``), the file id recorded before the
  upload completes so a retry never shares a picture twice.
- Several replicas may share the database: an item is claimed by this outbox's ``owner`` (a lease of ``lease``
  seconds, renewed every third of it while the delivery runs) before delivery, and only as the head of its thread
  while no other owner holds a live claim in that thread, so two replicas never post into one thread at once and
  a thread's order holds across them. A restarted outbox takes nothing over early: a process killed mid-delivery
  leaves a claim that simply runs out after the lease, then any replica delivers the item (looking first).
  ``stop`` hands back only the claims of its own deliveries.

``thread_key`` values are logged: they must not contain phone numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from bridge.claims import OUTBOX_LEASE, new_owner_id, renewed
from bridge.media_in import InboundMedia
from bridge.model import OutboxItem, OutboxWrite
from bridge.ports import SlackPort, SlackPortError, is_transient, retry_after
from bridge.storage.port import Store, StoreUnavailable

log = logging.getLogger("bridge.outbox")


class Kind(StrEnum):
    PARENT = "parent"  # post the parent message of an outbound ref, rendered at delivery
    UPDATE = "update"  # chat.update of that parent, rendered at delivery
    POST = "post"  # a fixed message or thread reply
    REACT = "react"
    UNREACT = "unreact"
    EPHEMERAL = "ephemeral"
    INBOUND = "inbound"  # an inbound SMS: into its conversation's thread, else a new parent (routed at delivery)
    RECEIPT = "receipt"  # the receipts of one ref (payload "statuses"), one thread reply rendered at delivery
    # -- issue 11: mms-in
    MEDIA = "media"  # one attachment of an inbound MMS, uploaded into the thread its text went to (bridge.media_in)


# What chat.postMessage delivers, and so what the per-thread posting bucket paces.
POSTING_KINDS = frozenset({Kind.PARENT, Kind.POST, Kind.RECEIPT, Kind.INBOUND, Kind.MEDIA})


@dataclass(frozen=True, slots=True)
class ParentView:
    """What a parent message looks like now. ``ts`` is None while it has not been posted."""

    channel: str
    ts: str | None
    text: str
    blocks: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ReceiptView:
    """A receipt reply as it is posted: into ``thread_ts`` (None: the parent is not posted, so it cannot be)."""

    channel: str
    thread_ts: str | None
    text: str
    blocks: list[dict[str, Any]] | None


def _post_payload(text: str, blocks: list[dict[str, Any]] | None, thread_ts: str | None,
                  thread_of_ref: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"text": text, "blocks": blocks, "thread_ts": thread_ts}
    if thread_of_ref is not None:
        payload["thread_of_ref"] = thread_of_ref
    return payload


_UPDATE_COVERED_BY = (Kind.UPDATE.value, Kind.PARENT.value)


class OutboxBatch:
    """Outbox items collected to be added together in one transaction (``SlackOutbox.add_announcement``).

    Same enqueue methods as ``SlackOutbox`` (``post``, ``update_parent``, ``react``), so a caller can hand
    either; nothing is stored until the batch is committed.
    """

    def __init__(self, receipt_window: float = 0.0) -> None:
        self.writes: list[OutboxWrite] = []
        self.receipt_window = receipt_window

    async def post(
        self,
        thread_key: str,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        *,
        thread_ts: str | None = None,
        thread_of_ref: str | None = None,
        ref: str | None = None,
    ) -> None:
        self.writes.append(post_item(thread_key, channel, text, blocks, thread_ts=thread_ts,
                                     thread_of_ref=thread_of_ref, ref=ref))

    async def receipt(self, ref: str, thread_key: str, channel: str, status: str) -> None:
        """Tell ``status`` in ``ref``'s thread: appended to its waiting receipt if there is one, else a new receipt
        due after the coalescing window (rendered at delivery, from the store, with every status it then lists)."""
        self.writes.append(OutboxWrite(thread_key, Kind.RECEIPT.value, ref, channel, {"statuses": [status]},
                                       append="statuses", delay=self.receipt_window))

    async def update_parent(self, ref: str, thread_key: str) -> None:
        self.writes.append(OutboxWrite(thread_key, Kind.UPDATE.value, ref, None, {}, _UPDATE_COVERED_BY))

    async def react(self, thread_key: str, channel: str, ts: str, name: str, *, add: bool = True) -> None:
        kind = Kind.REACT if add else Kind.UNREACT
        self.writes.append(OutboxWrite(thread_key, kind.value, None, channel, {"ts": ts, "name": name}))


def post_item(thread_key: str, channel: str, text: str, blocks: list[dict[str, Any]] | None = None, *,
              thread_ts: str | None = None, thread_of_ref: str | None = None,
              thread_of_inbound: str | None = None, ref: str | None = None) -> OutboxWrite:
    """See ``SlackOutbox.post``. ``thread_of_inbound``: reply in the thread an inbound text (by message id) was
    posted into — in the channel it ended up in, which may not be ``channel`` after a fallback. ``ref``: the
    outbound message whose thread this is in (so a receipt waiting before it is not appended to afterwards)."""
    payload = _post_payload(text, blocks, thread_ts, thread_of_ref)
    if thread_of_inbound is not None:
        payload["thread_of_inbound"] = thread_of_inbound
    return OutboxWrite(thread_key, Kind.POST.value, ref or thread_of_ref, channel, payload)


def react_item(thread_key: str, channel: str, ts: str | None, name: str, *, add: bool = True,
               parent_of_inbound: str | None = None) -> OutboxWrite:
    """A reaction on ``ts``; or, with ``parent_of_inbound``, on the parent of the thread that inbound text was
    posted into as a reply (nothing if it started a thread itself)."""
    payload: dict[str, Any] = {"ts": ts, "name": name}
    if parent_of_inbound is not None:
        payload["parent_of_inbound"] = parent_of_inbound
    return OutboxWrite(thread_key, (Kind.REACT if add else Kind.UNREACT).value, None, channel, payload)


def inbound_item(thread_key: str, *, message_id: str, our_number: str, their_number: str, channel: str,
                 reply: tuple[str, list[dict[str, Any]]], new: tuple[str, list[dict[str, Any]]]) -> OutboxWrite:
    """Post an inbound text: ``reply`` (text, blocks) into the conversation's thread as it is when delivered, or
    ``new`` as a new parent in ``channel`` (the inbound channel; "" if there is none)."""
    payload: dict[str, Any] = {
        "message_id": message_id, "our": our_number, "their": their_number,
        "reply_text": reply[0], "reply_blocks": reply[1], "new_text": new[0], "new_blocks": new[1],
    }
    return OutboxWrite(thread_key, Kind.INBOUND.value, None, channel, payload)


ParentRenderer = Callable[[str], Awaitable[ParentView | None]]
ReceiptRenderer = Callable[[str, list[str]], Awaitable[ReceiptView | None]]
ParentPosted = Callable[[str, str], Awaitable[None]]

# An ephemeral is only useful while the person is looking; it is not worth holding for an outage.
EPHEMERAL_ATTEMPTS = 3
# Removing a reaction that is not there, or adding one that is, means an earlier attempt got through.
_ALREADY_DONE = {Kind.REACT: "already_reacted", Kind.UNREACT: "no_reaction"}
_PRUNE_EVERY = 3600.0
# The least time between two passes of the worker (seconds): what an item waits at most for being woken late.
PASS_GAP = 0.02
# After cancelling the worker and deliveries, how long stop() waits for them to finish their cleanup.
STOP_CANCEL_SECONDS = 5.0


class _Unrecorded(Exception):
    """The parent was posted but ``on_parent_posted`` failed: retry the recording only, never the post."""

    def __init__(self, ts: str) -> None:
        super().__init__("posted, but recording the parent ts failed")
        self.ts = ts


class _Undeliverable(Exception):
    """The item can never be delivered (e.g. its thread's parent was never posted)."""


# A claim handed back is left expired, not cleared: whether the cut-off attempt reached Slack is unknown.
_EXPIRED = datetime.fromtimestamp(0, UTC)


def _now() -> datetime:
    # Wall clock, not monotonic: schedules are stored and must mean the same thing after a restart.
    return datetime.fromtimestamp(time.time(), UTC)


class SlackOutbox:
    """Queue Slack work durably and deliver it in the background. See the module docstring for guarantees."""

    def __init__(
        self,
        store: Store,
        slack: SlackPort,
        *,
        render_parent: ParentRenderer,
        on_parent_posted: ParentPosted,
        render_receipt: ReceiptRenderer | None = None,
        receipt_window: float = 0.0,
        post_interval: float = 0.0,
        post_burst: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        poll_interval: float = 1.0,
        lease: float = OUTBOX_LEASE,
        owner: str | None = None,
        concurrency: int = 8,
        keep_finished: float = 7 * 86400.0,
        media: InboundMedia | None = None,
    ) -> None:
        self.store = store
        self.slack = slack
        self.render_parent = render_parent
        self.on_parent_posted = on_parent_posted
        self.render_receipt = render_receipt
        self.receipt_window = receipt_window
        # Pacing of posts per thread_key (0: none): one per post_interval seconds, bursts of post_burst.
        self.post_interval = post_interval
        self.post_burst = post_burst
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.poll_interval = poll_interval
        self.lease = lease
        self.owner = owner or new_owner_id()
        self.concurrency = concurrency
        self.keep_finished = keep_finished
        self.media = media  # delivers Kind.MEDIA (inbound MMS pictures); None: they are shown as links only
        # -- issue 12: told (ref, Slack's error) when a parent post fails for good (``bridge.scheduler`` refuses a
        # scheduled send whose parent Slack will not take: it must never go out without its thread).
        self.on_parent_failed: Callable[[str, str], Awaitable[None]] | None = None
        # Counters for metrics (this process only).
        self.delivered = 0
        self.failed = 0
        self.retried = 0
        self.coalesced = 0
        self.paced = 0
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._pruned_at = 0.0

    # -- enqueue ---------------------------------------------------------------------------------------------

    async def post_parent(self, ref: str, thread_key: str, *, maybe_posted: bool = False) -> None:
        """Post ``ref``'s parent (rendered at delivery), then call ``on_parent_posted(ref, ts)``. The post carries
        ``parent_key(ref)``; ``maybe_posted``: the caller's own attempt may have reached Slack, so look first."""
        await self._add(thread_key, Kind.PARENT, ref, None, {"maybe_posted": maybe_posted})

    async def update_parent(self, ref: str, thread_key: str) -> None:
        """``chat.update`` ``ref``'s parent, rendered at delivery; nothing is queued if one is already waiting."""
        item_id = await self.store.outbox_add_coalesced(
            thread_key, Kind.UPDATE, ref, None, {}, _UPDATE_COVERED_BY, _now()
        )
        if item_id is None:
            self.coalesced += 1
            return
        self._wake.set()

    async def post(
        self,
        thread_key: str,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        *,
        thread_ts: str | None = None,
        thread_of_ref: str | None = None,
        ref: str | None = None,
    ) -> None:
        """A message or thread reply. ``thread_of_ref``: reply under ``ref``'s parent, whose ts is looked up when
        delivered — enqueue the parent post earlier under the same ``thread_key`` and it is delivered first."""
        await self._enqueue(post_item(thread_key, channel, text, blocks, thread_ts=thread_ts,
                                      thread_of_ref=thread_of_ref, ref=ref))

    async def react(self, thread_key: str, channel: str, ts: str, name: str, *, add: bool = True) -> None:
        await self._enqueue(react_item(thread_key, channel, ts, name, add=add))

    def wake(self) -> None:
        """Items were added straight through the store (``OutboxWrite``): look for them now."""
        self._wake.set()

    async def _enqueue(self, item: OutboxWrite) -> None:
        await self._add(item.thread_key, Kind(item.kind), item.ref, item.channel, item.payload)

    async def ephemeral(self, channel: str, user: str, text: str) -> None:
        """Best effort: a few attempts, then dropped. Skipped if the Slack port has no ``ephemeral`` method."""
        await self._add(f"ephemeral:{channel}:{user}", Kind.EPHEMERAL, None, channel, {"user": user, "text": text})

    def batch(self) -> OutboxBatch:
        """Collect items to add atomically with an announcement marker (``add_announcement``)."""
        return OutboxBatch(self.receipt_window)

    async def take_post(self, thread_key: str) -> bool:
        """Take a token from ``thread_key``'s posting bucket for a post made outside the outbox (a parent posted at
        once); False if there is none now — then queue the post here instead (``post_parent``), which waits."""
        if self.post_interval <= 0:
            return True
        return await self.store.outbox_take_post(thread_key, _now(), self.post_interval, self.post_burst) == 0.0

    async def post_finished(self, thread_key: str) -> None:
        """The post ``take_post`` allowed has returned: the bucket counts the next one from now."""
        if self.post_interval > 0:
            # Only makes the bucket stricter: losing it must not fail the caller's post.
            with contextlib.suppress(StoreUnavailable):
                await self.store.outbox_post_finished(thread_key, _now(), self.post_interval)

    async def add_announcement(self, ref: str, status: str, batch: OutboxBatch) -> bool:
        """Add ``batch`` in the same transaction that records ``status`` of ``ref`` as announced.

        False, and nothing added, if that status was already announced (or never advanced the message): a receipt
        is queued exactly once, even when a redelivered callback or the sweeper asks again after a crash.
        """
        done = await self.store.announce_status(ref, status, batch.writes, _now())
        if done and batch.writes:
            self._wake.set()
        return done

    async def _add(self, thread_key: str, kind: Kind, ref: str | None, channel: str | None,
                   payload: dict[str, Any]) -> None:
        await self.store.outbox_add(thread_key, kind, ref, channel, payload, _now())
        self._wake.set()

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def pending(self) -> int:
        """Items not yet delivered nor failed (in this process or any other sharing the database)."""
        return await self.store.outbox_pending()

    def start(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="slack-outbox")

    async def flush(self, timeout: float) -> bool:
        """Deliver everything deliverable within ``timeout`` (waiting out backoffs); True if nothing is pending."""
        self.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._progress.clear()
            if await self.pending() == 0:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._wake.set()
            await _wait_event(self._progress, min(remaining, self.poll_interval))

    async def stop(self, flush_timeout: float = 10.0, cancel_timeout: float = STOP_CANCEL_SECONDS) -> None:
        """Flush (bounded), then stop the worker. Whatever is left stays stored for the next start.

        Bounded whatever happens: the flush by ``flush_timeout``, and the cancelled worker and deliveries by
        ``cancel_timeout`` (a task that swallows its cancellation is abandoned and logged, never waited on forever).
        """
        left = 0
        if flush_timeout > 0:
            try:
                async with asyncio.timeout(flush_timeout + cancel_timeout):
                    if not await self.flush(flush_timeout):
                        left = await self.pending()
            except (TimeoutError, StoreUnavailable):
                left = -1
        tasks = [t for t in (self._worker, *self._inflight.values()) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        self._worker = None
        if tasks:
            # asyncio.wait never raises and never cancels what it waits for: it only bounds the wait.
            _, stuck = await asyncio.wait(tasks, timeout=cancel_timeout)
            if stuck:
                log.error("slack outbox: %d task(s) did not stop within %.1fs; abandoned (their claims expire)",
                          len(stuck), cancel_timeout)
        if left:
            log.warning("slack outbox stopped with item(s) pending; they are delivered after the next start")

    # -- worker ----------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                wait = await self._pump()
            except Exception:
                # The store may be briefly unavailable; the worker must outlive that.
                log.exception("slack outbox pass failed; retrying in %.1fs", self.poll_interval)
                wait = self.poll_interval
            await _wait_event(self._wake, wait)
            # Wakes come in bursts (every enqueue sets it; a burst of callbacks enqueues hundreds a second): one pass
            # per PASS_GAP covers them all, instead of two store reads per enqueue.
            await asyncio.sleep(PASS_GAP)

    async def _pump(self) -> float:
        """Start deliveries for due thread heads; return how long to sleep unless woken."""
        now = _now()
        if time.monotonic() - self._pruned_at > _PRUNE_EVERY:
            self._pruned_at = time.monotonic()
            await self.store.outbox_prune(now - timedelta(seconds=self.keep_finished))
        free = self.concurrency - len(self._inflight)
        if free > 0:
            for item in await self.store.outbox_due(now, limit=free):
                if free == 0:
                    break
                if item.thread_key in self._inflight:
                    continue
                if not await self.store.outbox_claim(item.id, self.owner, now,
                                                     now + timedelta(seconds=self.lease)):
                    continue  # another replica took it, or is delivering into that thread
                task = asyncio.get_running_loop().create_task(
                    self._deliver_claimed(item), name=f"slack-outbox-{item.id}"
                )
                self._inflight[item.thread_key] = task
                free -= 1
        if free == 0:
            return self.poll_interval  # a finishing delivery wakes us
        next_due = await self.store.outbox_next_due()
        if next_due is None:
            return self.poll_interval
        return min(self.poll_interval, max(0.01, (next_due - _now()).total_seconds()))

    async def _paced(self, item: OutboxItem) -> bool:
        """Whether a post must wait for its thread's bucket; if so its claim is handed back, unattempted, and it is
        due when a token is free (a waiting receipt can still be appended to meanwhile)."""
        if self.post_interval <= 0 or item.kind not in POSTING_KINDS:
            return False
        wait = await self.store.outbox_take_post(item.thread_key, _now(), self.post_interval, self.post_burst)
        if wait <= 0:
            return False
        await self.store.outbox_defer(item.id, self.owner, _now() + timedelta(seconds=wait))
        self.paced += 1
        return True

    async def _deliver_claimed(self, item: OutboxItem) -> None:
        try:
            try:
                async with renewed(functools.partial(self._renew, item.id), every=self.lease / 3,
                                   what=f"outbox claim on item {item.id}"):
                    if await self._paced(item):
                        return
                    if item.kind == Kind.RECEIPT:
                        # Appends stop at the claim: re-read, so the post tells every status it now lists (only
                        # the payload: whether an earlier attempt may have posted it is as it was before our claim).
                        fresh = await self.store.outbox_get(item.id)
                        if fresh is not None:
                            item = dataclasses.replace(item, payload=fresh.payload)
                    result = await self._deliver(item)
                    if item.kind in POSTING_KINDS and self.post_interval > 0:
                        # Only makes the bucket stricter; losing it must not make a posted item look failed.
                        with contextlib.suppress(StoreUnavailable):
                            await self.store.outbox_post_finished(item.thread_key, _now(), self.post_interval)
            except asyncio.CancelledError:
                # Stopping: hand the item back now rather than after the lease expires — if it is still ours.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(STOP_CANCEL_SECONDS):
                        await self.store.outbox_renew(item.id, self.owner, _EXPIRED)
                raise
            except Exception as exc:
                await self._recorded(functools.partial(self._attempt_failed, item, exc))
            else:
                await self._recorded(functools.partial(self.store.outbox_done, item.id, result, _now()))
                self.delivered += 1
        except asyncio.CancelledError:
            raise
        except Exception:
            # Recording the outcome failed (store down): the claim expires and the item is attempted again.
            log.exception("slack outbox could not record the outcome of item %d (%s)", item.id, item.kind)
        finally:
            self._inflight.pop(item.thread_key, None)
            self._wake.set()
            self._progress.set()

    async def _renew(self, item_id: int) -> bool:
        return await self.store.outbox_renew(item_id, self.owner, _now() + timedelta(seconds=self.lease))

    async def _recorded(self, write: Callable[[], Awaitable[None]]) -> None:
        """Record an attempt's outcome, waiting out a briefly locked or unavailable store (up to the lease):
        giving up early would leave the item claimed, and its whole thread waiting, until the lease expires."""
        deadline = time.monotonic() + self.lease
        while True:
            try:
                await write()
                return
            except StoreUnavailable:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.25)

    async def _attempt_failed(self, item: OutboxItem, exc: Exception) -> None:
        transient = isinstance(exc, _Unrecorded | StoreUnavailable) or is_transient(exc)
        error = str(exc) or type(exc).__name__
        if transient and not (item.kind == Kind.EPHEMERAL and item.attempts + 1 >= EPHEMERAL_ATTEMPTS):
            delay = self._backoff(item.attempts, retry_after(exc))
            # A media upload that recorded its file id (bridge.media_in.MediaRetry) keeps it for the retry.
            result = exc.ts if isinstance(exc, _Unrecorded) else getattr(exc, "outbox_result", item.result)
            await self.store.outbox_retry(item.id, error, _now() + timedelta(seconds=delay), result)
            self.retried += 1
            level = logging.WARNING if item.attempts + 1 in (5, 20) or (item.attempts + 1) % 100 == 0 else logging.INFO
            log.log(level, "slack outbox item %d (%s, thread %s) attempt %d failed: %s; next in %.2fs",
                    item.id, item.kind, item.thread_key, item.attempts + 1, error, delay)
            return
        await self.store.outbox_fail(item.id, error, _now())
        self.failed += 1
        if item.kind == Kind.PARENT and item.ref is not None and self.on_parent_failed is not None:
            try:
                await self.on_parent_failed(item.ref, error)
            except Exception:  # the item's failure is recorded either way; the hook's own trouble is only logged
                log.exception("slack outbox item %d: handling its failed parent post failed", item.id)
        if is_transient(exc) or isinstance(exc, _Undeliverable) or _is_port_error(exc):
            log.warning("slack outbox item %d (%s, thread %s) failed for good: %s",
                        item.id, item.kind, item.thread_key, error)
        else:
            log.error("slack outbox item %d (%s, thread %s) failed with an unexpected error",
                      item.id, item.kind, item.thread_key, exc_info=exc)

    def _backoff(self, attempts: int, asked: float | None) -> float:
        # Hand-written rather than stamina/tenacity: those retry in-process around a call, while this schedule is
        # stored in the database and must survive a restart. "Equal jitter": at least half the step, so a thread
        # never hammers Slack, yet replicas and threads spread out.
        step = min(self.max_delay, self.base_delay * (2 ** min(attempts, 30)))
        return max(random.uniform(step / 2, step), asked or 0.0)

    # -- delivery --------------------------------------------------------------------------------------------

    async def _post_once(self, item: OutboxItem, channel: str, text: str, blocks: list[dict[str, Any]] | None,
                         thread_ts: str | None, *, key: str | None = None, maybe_posted: bool = False) -> str:
        """Post, tagged with ``key`` (default: the item's own); an item whose earlier attempt may have reached Slack
        (it was cut off by a crash, a stop or a failure, or ``maybe_posted``) is first looked up, so nothing is
        posted twice."""
        key = key or f"outbox-{item.id}"
        find = getattr(self.slack, "find_posted", None)
        if (item.uncertain or maybe_posted) and find is not None:
            found: str | None = await find(channel, key, thread_ts)
            if found is not None:
                log.info("slack outbox item %d was already posted (%s); not posting it again", item.id, found)
                return found
        return await self.slack.post(channel, text, blocks, thread_ts, key=key)

    async def _deliver(self, item: OutboxItem) -> str | None:
        """Make the Slack call for one item; the return value is stored as its ``result``."""
        kind = Kind(item.kind)
        payload = item.payload
        if kind in (Kind.PARENT, Kind.UPDATE):
            assert item.ref is not None
            view = await self.render_parent(item.ref)
            if view is None:
                return None
            if kind is Kind.UPDATE:
                if view.ts is None:
                    return None  # not posted yet; the post renders the current state itself
                await self.slack.update(view.channel, view.ts, view.text, view.blocks)
                return view.ts
            if view.ts is not None:
                return view.ts  # posted and recorded by an earlier attempt that died before marking it done
            ts = item.result or await self._post_once(
                item, view.channel, view.text, view.blocks or None, None, key=parent_key(item.ref),
                maybe_posted=bool(payload.get("maybe_posted")))
            try:
                await self.on_parent_posted(item.ref, ts)
            except Exception as exc:
                raise _Unrecorded(ts) from exc
            return ts
        if kind is Kind.INBOUND:
            return await self._deliver_inbound(item)
        if kind is Kind.MEDIA:
            return await self._deliver_media(item)
        if kind is Kind.RECEIPT:
            assert item.ref is not None
            if self.render_receipt is None:
                raise _Undeliverable("this outbox has no receipt renderer")
            receipt = await self.render_receipt(item.ref, list(payload.get("statuses", [])))
            if receipt is None:
                return None
            if receipt.thread_ts is None:
                raise _Undeliverable(f"parent_not_posted (ref {item.ref})")
            return await self._post_once(item, receipt.channel, receipt.text, receipt.blocks, receipt.thread_ts)
        assert item.channel is not None
        channel = item.channel
        if kind is Kind.POST:
            thread_ts = payload.get("thread_ts")
            thread_of = payload.get("thread_of_ref")
            if thread_of is not None:
                sms = await self.store.get_outbound(thread_of)
                if sms is None or sms.parent_ts is None:
                    raise _Undeliverable(f"parent_not_posted (ref {thread_of})")
                thread_ts = sms.parent_ts
            if payload.get("thread_of_inbound") is not None:
                place = await self.store.inbound_posted_at(payload["thread_of_inbound"])
                if place is None:
                    raise _Undeliverable("inbound_not_posted")
                channel, thread_ts = place.channel_id, place.thread_ts
            return await self._post_once(item, channel, payload["text"], payload.get("blocks"), thread_ts)
        if kind in (Kind.REACT, Kind.UNREACT):
            target: str | None = payload.get("ts")
            if payload.get("parent_of_inbound") is not None:
                where = await self.store.inbound_posted_at(payload["parent_of_inbound"])
                if where is None or where.started_thread:
                    return None  # not posted, or it is the parent itself: nothing to mark
                channel, target = where.channel_id, where.thread_ts
            assert target is not None
            try:
                await self.slack.react(channel, target, payload["name"], add=kind is Kind.REACT)
            except Exception as exc:
                if is_transient(exc) or str(exc) != _ALREADY_DONE[kind]:
                    raise
            return None
        # Kind.EPHEMERAL: duck-typed, so a SlackPort without it still works (ephemerals are skipped).
        send: Callable[[str, str, str], Awaitable[Any]] | None = getattr(self.slack, "ephemeral", None)
        if send is None:
            log.debug("slack port has no ephemeral(); skipping outbox item %d", item.id)
            return None
        await send(item.channel, payload["user"], payload["text"])
        return None

    async def _deliver_inbound(self, item: OutboxItem) -> str:
        """Into the conversation's thread as it is now; if there is none, or Slack refuses that thread for good,
        a new parent in the inbound channel, recorded as the conversation's thread. Either way the text is kept."""
        payload = item.payload
        message_id = payload["message_id"]
        current = await self.store.get_conversation(payload["our"], payload["their"])
        if current is not None:
            try:
                ts = await self._post_once(item, current.channel_id, payload["reply_text"], payload["reply_blocks"],
                                           current.thread_ts)
            except Exception as exc:
                if is_transient(exc) or not _is_port_error(exc):
                    raise
                log.warning("slack outbox item %d: the conversation's thread no longer takes posts (%s); "
                            "starting a new parent", item.id, exc)
            else:
                await self.store.inbound_posted(message_id, current.channel_id, current.thread_ts, ts, _now())
                return ts
        if not item.channel:
            raise _Undeliverable("no INBOUND_CHANNEL (or NUMBER_CHANNELS entry) for a new conversation; the text is "
                                 f"kept in the inbound table (message id {message_id})")
        ts = await self._post_once(item, item.channel, payload["new_text"], payload["new_blocks"], None)
        await self.store.inbound_posted(message_id, item.channel, ts, ts, _now())
        return ts

    async def _deliver_media(self, item: OutboxItem) -> str | None:
        """One inbound MMS attachment into the thread its text was posted into (queued after it, same key)."""
        place = await self.store.inbound_posted_at(item.payload["message_id"])
        if place is None:
            raise _Undeliverable("inbound_not_posted")
        if self.media is None:
            return None  # no uploader wired (a bare outbox in tests): the text's own links stand

        async def note(result: str) -> bool:
            return await self.store.outbox_note_result(item.id, self.owner, result)

        async def reply(channel: str, thread_ts: str, text: str) -> str:
            return await self._post_once(item, channel, text, None, thread_ts)

        return await self.media.deliver(item, place.channel_id, place.thread_ts, note_result=note, post_reply=reply)


def parent_key(ref: str) -> str:
    """The metadata key a parent post carries, whoever posts it (``Bridge.process`` or this outbox)."""
    return f"parent-{ref}"


async def _wait_event(event: asyncio.Event, timeout: float) -> None:
    """Wait until ``event`` is set or ``timeout`` passes. ``asyncio.timeout`` rather than ``wait_for``: on Python
    3.11 a cancellation arriving as ``wait_for`` times out can be swallowed, and ``stop()`` would wait forever."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


def _is_port_error(exc: BaseException) -> bool:
    return isinstance(exc, SlackPortError)
