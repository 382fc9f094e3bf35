"""Bulk sends (issue 13), the moving part: the preview, the batch's state changes, and the paced worker.

Owns: ``BulkSends`` —
  * ``refusal`` (bulk disabled: ``SMS_BULK_ALLOWED_USERS`` empty; or this user is not on it);
  * ``draft`` (a draft batch from a stream of ``BulkRecipient | BulkProblem`` — ``bridge.bulk_input`` parses; this
    module never does — stored in chunks of ``CHUNK`` recipients; duplicates, invalid lines, opted-out and blocked
    numbers, quiet-hour waits, segments and the time it takes are counted into a ``BulkPreview``; nothing is sent);
  * ``confirm`` / ``discard`` (only the drafter), ``pause`` / ``resume`` / ``cancel`` (the sender or an admin):
    each one conditional ``bulk_move`` in the store, so of several clicks and replicas exactly one wins;
  * ``progress``;
  * the worker (``start`` / ``stop``, like ``bridge.scheduler.Scheduler``): it claims recipients in the store with a
    lease (``bulk_claim``; the bot passes ``LEASE_SECONDS``; a replica that dies leaves its claims to expire and be
    claimed again), holds a recipient back while quiet hours hold it (``bulk_defer``), reserves the sending number's
    pace slot (``pace_reserve``, shared with every replica and with ordinary sends) and sleeps until it (a 429
    answered meanwhile, ``bridge.sending.held_since``, makes it take a slot after that Retry-After instead), then
    ``bulk_hand_over`` creates the outbound message in the transaction that checks the batch is still ``sending``
    (a Cancel that returned stops every later hand-over) and the durable send path (``Bridge.process``) POSTs it
    without pacing it again. Correctness lives in the store: several replicas run the same worker, and each
    recipient is handed over once;
  * the live parent (posted by ``handlers.bulk`` after "Send to N", its ts stored with ``set_parent``): repainted
    every ``PAINT_SECONDS`` while the batch sends (``paint``), and by ``finished`` — run once, by the replica whose
    ``bulk_finished_if_done`` ended the batch — with its totals, followed by the CSV report uploaded into its thread.
    A batch sent before its parent is there waits up to ``parent_grace`` seconds for it.
The audit trail (``bridge.model.AuditAction``): the confirm is a ``bulk`` row (who, how many), each hand-over a
``bulk-send`` row (the number, the message), written beside its POST.
A bulk message has origin ``BULK_ORIGIN``: no parent of its own, no receipt thread (``bridge.display``,
``bridge.receipts``), and it does not count against ``SMS_RATE_LIMIT_PER_USER`` (it never passes the access gate).
Must not import: aiohttp, Slack packages, ``handlers``, storage adapters (the store is the ``Store`` port).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge import bulk_render, bulk_text
from bridge.bulk_model import (
    BULK_ORIGIN,
    PREVIEW_PROBLEMS,
    BatchState,
    BulkBatch,
    BulkDraft,
    BulkPreview,
    BulkProblem,
    BulkProgress,
    BulkRecipient,
    BulkRecipientRow,
    BulkReportRow,
    RecipientState,
)
from bridge.model import AuditAction, AuditEntry, SendRequest, bulk_reason, new_ref
from bridge.ports import SlackPortError, utcnow
from bridge.quiet_hours import QuietHours
from bridge.sending import held_since, seconds_per_segment
from bridge.service import Bridge
from bridge.storage.port import StoreUnavailable
from sw_api.text import mask_number, segment_info

log = logging.getLogger("bridge.bulk")

CHUNK = 500             # recipients stored per transaction while a draft is read
BULK_LEASE = 60.0       # seconds a replica's claim on recipients lasts by default (the bot passes LEASE_SECONDS)
CLAIM_SECONDS = 5.0     # one claim takes about this many seconds of sending at the configured rate
MAX_CLAIM = 20          # recipients per claim at most
PARENT_GRACE_SECONDS = 30.0  # a sent batch waits this long for its parent's ts before it is finished without one
PAINT_SECONDS = 5.0     # the live parent is repainted at most this often while a batch sends
REPORT_PAGE = 1000      # report rows read per query
IN_FLIGHT = 32          # handed-over messages whose POST runs at once, per worker
IDLE_SECONDS = 1.0      # how often an idle worker looks for work (a confirm in this process wakes it at once)
STOP_SECONDS = 5.0

DISABLED = ("🔒 Bulk sending is turned off for this workspace: an admin enables it by listing who may use it "
            "in `SMS_BULK_ALLOWED_USERS`. Nothing was sent.")
NOT_ALLOWED = ("🔒 You are not on the list of people who may send bulk texts (`SMS_BULK_ALLOWED_USERS`); ask an "
               "admin. Nothing was sent.")
UNKNOWN = "That bulk send is not known to this bridge any more."
NOT_DRAFTER = "Only the person who prepared this bulk send can send or cancel it."
NOT_SENDER = "Only the person who sent this bulk text, or an sms-bridge admin, can pause, resume or cancel it."
NOTHING_VALID = "Nothing to send: no line is a number (or contact) that can be texted."


def too_many(limit: int) -> str:
    return (f"That is more than {limit:,} recipients, the most one bulk send may have (BULK_MAX_RECIPIENTS). "
            "Split the list and send it in parts.")


def unknown_fields(names: list[str]) -> str:
    listed = ", ".join(f"{{{name}}}" for name in names)
    return (f"The message uses {listed}, which no column provides. Use {{name}}, {{first_name}}, {{number}} or a "
            "column of the CSV file.")


@dataclass
class _Tally:
    """What a draft has counted so far (one pass over the stream, flat memory but for the seen numbers)."""

    seq: int = 0
    valid: int = 0
    will_send: int = 0
    invalid_count: int = 0
    opted_out: int = 0
    blocked: int = 0
    duplicates: int = 0
    segments: int = 0
    quiet_waiting: int = 0
    quiet_until: datetime | None = None
    sample: str | None = None


class BulkSends:
    def __init__(self, bridge: Bridge, *, mps: float, quiet: QuietHours | None, allowed: frozenset[str],
                 admins: frozenset[str] = frozenset(), max_recipients: int = 10000, owner: str | None = None,
                 lease: float = BULK_LEASE, idle: float = IDLE_SECONDS,
                 clock: Callable[[], datetime] = utcnow, parent_grace: float = PARENT_GRACE_SECONDS) -> None:
        if mps <= 0:
            raise ValueError("mps must be positive")
        self.bridge = bridge
        self.store = bridge.store
        self.mps = mps
        self.quiet = quiet
        self.allowed = allowed
        self.admins = admins
        self.max_recipients = max_recipients
        # Two workers in one process (tests) need two names: the store tells claims apart by owner only.
        self.owner = owner or f"{bridge.owner}-bulk"
        self.lease = lease
        self.idle = idle
        # The clock quiet hours and claims are judged by (tests fix it); pacing always sleeps in real time.
        self.clock = clock
        self.parent_grace = parent_grace  # seconds a sent batch waits for its parent (tests without Slack: 0)
        self._task: asyncio.Task[None] | None = None
        self._painter: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._in_flight = asyncio.Semaphore(IN_FLIGHT)
        self._batches: dict[str, BulkBatch] = {}
        self._last_slot_end: datetime | None = None

    # -- who may --------------------------------------------------------------------------------------------------

    def refusal(self, user_id: str) -> str | None:
        """Why ``user_id`` may not bulk-send (a private text), or None."""
        if not self.allowed:
            return DISABLED
        if user_id not in self.allowed:
            return NOT_ALLOWED
        return None

    def _may_steer(self, batch: BulkBatch, user_id: str) -> bool:
        return user_id == batch.user_id or user_id in self.admins

    # -- the preview ----------------------------------------------------------------------------------------------

    async def draft(self, draft: BulkDraft,
                    lines: AsyncIterable[BulkRecipient | BulkProblem]) -> BulkPreview | str:
        """Store a draft batch from ``lines`` and count its preview; a refusal (str) discards what was stored."""
        refusal = self.refusal(draft.user_id)
        if refusal is not None:
            return refusal
        now = self.clock()
        batch = BulkBatch(id=new_ref(), user_id=draft.user_id, channel_id=draft.channel_id, from_=draft.from_,
                          body=draft.body, title=draft.title, state=BatchState.DRAFT, total=0, created_at=now,
                          team_id=draft.team_id)
        await self.store.bulk_create(batch, now)
        tally = _Tally()
        problems: list[BulkProblem] = []
        columns: set[str] = set()
        seen: set[str] = set()
        chunk: list[BulkRecipient] = []
        blocked = {b.number for b in await self.store.blocked_numbers(limit=1_000_000)}
        refused: str | None = None
        async for line in lines:
            if isinstance(line, BulkProblem):
                tally.invalid_count += 1
                if len(problems) < PREVIEW_PROBLEMS:
                    problems.append(line)
                continue
            if line.number in seen:
                tally.duplicates += 1
                continue
            if len(seen) >= self.max_recipients:
                refused = too_many(self.max_recipients)
                break
            seen.add(line.number)
            columns.update(line.fields)
            chunk.append(line)
            if len(chunk) >= CHUNK:
                await self._store_chunk(batch, chunk, blocked, tally)
                chunk = []
        if refused is None and chunk:
            await self._store_chunk(batch, chunk, blocked, tally)
        if refused is None:
            unknown = bulk_text.unknown_placeholders(draft.body, columns)
            if unknown:
                refused = unknown_fields(unknown)
            elif tally.valid == 0:
                refused = NOTHING_VALID
        if refused is not None:
            await self.store.bulk_move(batch.id, [BatchState.DRAFT], BatchState.DISCARDED, self.clock())
            return refused
        await self.store.bulk_set_total(batch.id, tally.will_send)
        log.info("bulk draft batch=%s user=%s recipients=%d will_send=%d invalid=%d", batch.id, draft.user_id,
                 tally.valid, tally.will_send, tally.invalid_count)
        return BulkPreview(
            batch_id=batch.id, will_send=tally.will_send, invalid=tuple(problems), invalid_count=tally.invalid_count,
            opted_out=tally.opted_out, blocked=tally.blocked, duplicates=tally.duplicates, segments=tally.segments,
            seconds=tally.segments / self.mps, quiet_waiting=tally.quiet_waiting, quiet_until=tally.quiet_until,
            sample=tally.sample or "",
        )

    async def _store_chunk(self, batch: BulkBatch, chunk: list[BulkRecipient], blocked: set[str],
                           tally: _Tally) -> None:
        """One transaction per chunk; the opt-out reads of a chunk run together (no list read exists for them)."""
        opt_outs = await asyncio.gather(*(self.store.get_opt_out(batch.from_, r.number) for r in chunk))
        now = self.clock()
        rows: list[BulkRecipientRow] = []
        counted = 0
        for recipient, opt_out in zip(chunk, opt_outs, strict=True):
            tally.seq += 1
            state, reason, not_before = RecipientState.WAITING, None, None
            if recipient.number in blocked:
                state, reason = RecipientState.SKIPPED, "blocked"
                tally.blocked += 1
            elif opt_out is not None:
                state, reason = RecipientState.SKIPPED, "opted out"
                tally.opted_out += 1
            else:
                text = bulk_text.render(batch.body, recipient)
                tally.sample = text if tally.sample is None else tally.sample
                tally.segments += segment_info(text).segments
                tally.will_send += 1
                not_before = self.quiet.next_allowed(recipient.number, now) if self.quiet is not None else None
                if not_before is not None:
                    tally.quiet_waiting += 1
                    tally.quiet_until = max(not_before, tally.quiet_until or not_before)
            rows.append(BulkRecipientRow(seq=tally.seq, line=recipient.line, number=recipient.number,
                                         name=recipient.name, fields=dict(recipient.fields), state=state,
                                         skip_reason=reason, not_before=not_before))
            counted += 1
        inserted = await self.store.bulk_add_recipients(batch.id, rows)
        # Numbers are deduplicated above, so the store merges nothing more; if it ever does, say so.
        tally.duplicates += counted - inserted
        tally.valid += inserted

    # -- the batch's state changes --------------------------------------------------------------------------------

    async def confirm(self, batch_id: str, user_id: str) -> BulkBatch | str:
        """"Send to N": DRAFT → SENDING, by the drafter only; the worker starts on it at once."""
        batch = await self.store.bulk_get(batch_id)
        if batch is None:
            return UNKNOWN
        if user_id != batch.user_id:
            return NOT_DRAFTER
        refusal = self.refusal(user_id)
        if refusal is not None:
            return refusal
        if not await self.store.bulk_move(batch_id, [BatchState.DRAFT], BatchState.SENDING, self.clock(), user_id):
            return after_the_fact(await self.store.bulk_get(batch_id) or batch)
        log.info("bulk batch=%s confirmed by %s: %d recipients", batch_id, user_id, batch.total)
        self._wake.set()
        await self._audit(AuditEntry(id="", at=self.clock(), user_id=user_id, channel_id=batch.channel_id,
                                     action=AuditAction.BULK, from_number=batch.from_,
                                     reason=bulk_reason(batch_id, batch.total)))
        return await self.store.bulk_get(batch_id) or batch

    async def discard(self, batch_id: str, user_id: str) -> BulkBatch | str:
        """The preview's Cancel: DRAFT → DISCARDED, by the drafter only."""
        batch = await self.store.bulk_get(batch_id)
        if batch is None:
            return UNKNOWN
        if user_id != batch.user_id:
            return NOT_DRAFTER
        if await self.store.bulk_move(batch_id, [BatchState.DRAFT], BatchState.DISCARDED, self.clock(), user_id):
            return await self.store.bulk_get(batch_id) or batch
        return after_the_fact(await self.store.bulk_get(batch_id) or batch)

    async def pause(self, batch_id: str, user_id: str) -> BulkBatch | str:
        """SENDING → PAUSED (no more texts go out until Resume); the batch as it is now, or why not."""
        return await self._steer(batch_id, user_id, [BatchState.SENDING], BatchState.PAUSED)

    async def resume(self, batch_id: str, user_id: str) -> BulkBatch | str:
        return await self._steer(batch_id, user_id, [BatchState.PAUSED], BatchState.SENDING)

    async def cancel(self, batch_id: str, user_id: str) -> BulkBatch | str:
        """Stop for good: once this returns no further text of the batch is handed to SignalWire."""
        return await self._steer(batch_id, user_id, [BatchState.SENDING, BatchState.PAUSED], BatchState.CANCELLED)

    async def set_parent(self, batch_id: str, ts: str) -> None:
        """The live progress message's ts (posted by the Slack side once the batch is confirmed)."""
        await self.store.bulk_set_parent(batch_id, ts)

    async def _steer(self, batch_id: str, user_id: str, from_states: list[BatchState],
                     to: BatchState) -> BulkBatch | str:
        batch = await self.store.bulk_get(batch_id)
        if batch is None:
            return UNKNOWN
        if not self._may_steer(batch, user_id):
            return NOT_SENDER
        if not await self.store.bulk_move(batch_id, from_states, to, self.clock(), user_id):
            now = await self.store.bulk_get(batch_id) or batch
            if to is BatchState.PAUSED and now.state is BatchState.PAUSED:
                return "It is paused already."
            if to is BatchState.SENDING and now.state is BatchState.SENDING:
                return "It is sending already."
            return after_the_fact(now)
        log.info("bulk batch=%s %s by %s", batch_id, to.value, user_id)
        if to is BatchState.SENDING:
            self._wake.set()
        return await self.store.bulk_get(batch_id) or batch

    async def progress(self, batch_id: str) -> BulkProgress:
        return await self.store.bulk_progress(batch_id, self.clock())

    # -- the worker -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._loop(), name=f"bulk-sends {self.owner}")
        self._painter = loop.create_task(self._paint_loop(), name=f"bulk-parents {self.owner}")

    async def stop(self) -> None:
        tasks = {t for t in (self._task, self._painter) if t is not None}
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=STOP_SECONDS)
            if stuck:
                log.error("bulk-send worker did not stop within %.1f s; abandoned", STOP_SECONDS)
        self._task = self._painter = None

    # -- the live parent and the report ---------------------------------------------------------------------------

    async def _paint_loop(self) -> None:
        """Every ``PAINT_SECONDS``: repaint the parent of each batch still sending (any replica may; a repaint is
        idempotent, so two replicas painting costs a Slack call, never a wrong message)."""
        while True:
            await asyncio.sleep(PAINT_SECONDS)
            try:
                for batch in await self.store.bulk_unfinished():
                    if batch.state is BatchState.SENDING:
                        await self.paint(batch)
            except StoreUnavailable:
                log.warning("bulk parents: store unavailable; repainted next round")
            except Exception:
                log.exception("bulk parents: repaint round failed")

    async def paint(self, batch: BulkBatch) -> None:
        """Show ``batch``'s counters, ETA and buttons in its parent (nothing before the parent is posted)."""
        if not batch.parent_ts:
            return
        progress = await self.progress(batch.id)
        text, blocks = bulk_render.parent_view(batch, progress, segments_per_text=segment_info(batch.body).segments,
                                               mps=self.mps)
        try:
            await self.bridge.slack.update(batch.channel_id, batch.parent_ts, text, blocks)
        except SlackPortError as exc:
            log.warning("bulk batch=%s parent not repainted: %s", batch.id, exc)

    async def finished(self, batch_id: str) -> None:
        """Once, by the replica whose conditional update ended the batch: the totals in the parent, and the CSV
        report (number, name, status, error, sent at) uploaded into its thread."""
        batch = await self.store.bulk_get(batch_id)
        if batch is None:
            return
        await self.paint(batch)
        if not batch.parent_ts:
            log.warning("bulk batch=%s finished without a parent in Slack: no report uploaded", batch.id)
            return
        rows: list[BulkReportRow] = []
        after = 0
        while page := await self.store.bulk_report(batch_id, after, REPORT_PAGE):
            rows.extend(row for _, row in page)
            after = page[-1][0]
        report = "".join(bulk_render.report_csv(rows))
        try:
            await self.bridge.slack.upload(
                batch.channel_id, batch.parent_ts, f"bulk-{batch.id}.csv", report.encode(),
                title=f"Report: {batch.title}", comment=f"📄 Report of “{batch.title}”: one line per recipient.")
        except SlackPortError as exc:
            log.warning("bulk batch=%s report not uploaded: %s", batch.id, exc)

    async def _loop(self) -> None:
        while True:
            worked = 0
            try:
                worked = await self.round()
            except StoreUnavailable:
                log.warning("bulk sends: store unavailable; trying again shortly")
            except Exception:
                log.exception("bulk sends: round failed")
            if worked == 0:
                self._wake.clear()
                try:
                    async with asyncio.timeout(self.idle):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    def _claim_size(self) -> int:
        # One claim's pace waits fit in half its lease, so a short lease (LEASE_SECONDS) still covers them.
        return max(1, min(MAX_CLAIM, int(self.mps * min(CLAIM_SECONDS, self.lease / 2))))

    async def round(self) -> int:
        """Claim recipients and hand each over at its pace slot; how many were claimed (0: nothing to do)."""
        now = self.clock()
        claimed = await self.store.bulk_claim(self.owner, now, now + timedelta(seconds=self.lease),
                                              self._claim_size())
        if not claimed:
            await self._finish_done()
            return 0
        pending = list(claimed)
        # Past three quarters of the lease the rest is given back rather than handed over late: an expired claim is
        # harmless (the store hands a row over only for its current claimant) but another replica may be pacing it.
        give_up_at = time.monotonic() + self.lease * 0.75
        try:
            while pending and time.monotonic() < give_up_at:
                batch_id, row = pending[0]
                await self._one(batch_id, row)
                pending.pop(0)
        finally:
            if pending:
                # Stopped (or failed) half-way: what this worker claimed but never touched is given back now,
                # not left to its lease.
                await asyncio.shield(self._give_back(pending))
        for batch_id in {batch_id for batch_id, _ in claimed}:
            await self._finish_if_done(batch_id)
        return len(claimed)

    async def _give_back(self, pending: list[tuple[str, BulkRecipientRow]]) -> None:
        try:
            async with asyncio.timeout(STOP_SECONDS):
                for batch_id, row in pending:
                    await self.store.bulk_defer(batch_id, row.seq, self.owner, self.clock())
        except (TimeoutError, StoreUnavailable) as exc:
            log.warning("bulk claims not given back (%s); they expire within %.0f s", exc, self.lease)

    async def _batch(self, batch_id: str) -> BulkBatch | None:
        # The template, sender and channel of a batch never change: read once per process.
        batch = self._batches.get(batch_id)
        if batch is None:
            batch = await self.store.bulk_get(batch_id)
            if batch is not None:
                self._batches[batch_id] = batch
        return batch

    async def _one(self, batch_id: str, row: BulkRecipientRow) -> None:
        batch = await self._batch(batch_id)
        if batch is None:
            return
        if self.quiet is not None:
            opening = self.quiet.next_allowed(row.number, self.clock())
            if opening is not None:
                await self.store.bulk_defer(batch_id, row.seq, self.owner, opening)
                return
        text = bulk_text.render(batch.body, BulkRecipient(row.line, row.number, row.name, row.fields))
        request = SendRequest(user_id=batch.user_id, channel_id=batch.channel_id, to=row.number, from_=batch.from_,
                              body=text, team_id=batch.team_id, origin=BULK_ORIGIN)
        now_batch = await self.store.bulk_get(batch_id)
        if now_batch is None or now_batch.state is not BatchState.SENDING:
            # Paused or cancelled since the claim: no pace slot is spent on it. The hand-over creates nothing and
            # puts the recipient back (paused: waiting; cancelled: cancelled), in the store's one transaction.
            await self.store.bulk_hand_over(batch_id, row.seq, self.owner, new_ref(), request, self.clock())
            return
        segments = max(1, segment_info(text).segments)
        slot_length = segments * seconds_per_segment(self.mps)
        now = utcnow()
        if self._last_slot_end is not None and now - self._last_slot_end < timedelta(seconds=slot_length):
            # Back to back with our previous slot: the milliseconds spent handing that one over are not lost from
            # the rate (the store still gives no slot before the number's ``next_at``).
            now = self._last_slot_end
        reserved = utcnow()
        slot = await self.store.pace_reserve(batch.from_, segments, seconds_per_segment(self.mps), now)
        while True:
            self._last_slot_end = slot + timedelta(seconds=slot_length)
            wait = (slot - utcnow()).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
            # A 429 answered since the reservation pushed the pace back, but not this slot: a new one after it.
            held = held_since(self.store, batch.from_, reserved)
            if held is None:
                break
            reserved = utcnow()
            slot = await self.store.pace_reserve(batch.from_, segments, seconds_per_segment(self.mps), held)
        ref = new_ref()
        # The store checks, in this transaction, that the claim is still ours and the batch still sending: a Cancel
        # (or Pause) that returned before this point stops it here.
        sms = await self.store.bulk_hand_over(batch_id, row.seq, self.owner, ref, request, self.clock())
        if sms is None:
            return
        log.info("bulk batch=%s seq=%d handed over ref=%s to=%s", batch_id, row.seq, ref, mask_number(row.number))
        await self._in_flight.acquire()
        task = self.bridge.spawn(self.bridge.process(ref, paced=slot), name="send-bulk")
        task.add_done_callback(lambda _: self._in_flight.release())
        # Beside the POST, not before it: the pace slot is not spent waiting for the audit write. Linked to the
        # message, so its outcome is the message's (a receipt that came first is read by the link).
        self.bridge.spawn(self._audit(
            AuditEntry(id="", at=self.clock(), user_id=batch.user_id, channel_id=batch.channel_id,
                       action=AuditAction.BULK_SEND, to_number=row.number, from_number=batch.from_, ref=ref,
                       reason=bulk_reason(batch_id))), name="audit-bulk")

    async def _audit(self, entry: AuditEntry) -> None:
        """Append ``entry`` to the audit trail (a bulk send's or one recipient's). Best effort: what it records has
        happened already (the batch is sending, the message exists), so a store that does not answer is logged."""
        try:
            audit_id = await self.store.audit_add(
                at=entry.at, user_id=entry.user_id, channel_id=entry.channel_id, action=entry.action,
                to_number=entry.to_number, from_number=entry.from_number, ref=entry.ref, reason=entry.reason)
            if entry.ref is not None:
                await self.store.audit_link(audit_id, entry.ref, "pending")
        except StoreUnavailable as exc:
            log.error("bulk audit row not written (%s %s to=%s): %s", entry.action, entry.reason,
                      mask_number(entry.to_number) if entry.to_number else "-", exc)

    async def _finish_done(self) -> None:
        """Nothing to claim: every sending batch with nothing waiting or claimed is done (one replica wins)."""
        for batch in await self.store.bulk_unfinished():
            if batch.state is BatchState.SENDING:
                await self._finish_if_done(batch.id)

    def _parent_overdue(self, batch: BulkBatch) -> bool:
        """The Slack side posts the parent right after confirming: a batch that is sent before it is there waits
        for it (its totals and report belong in it), but not for ever — Slack may have refused the post."""
        confirmed = batch.confirmed_at or batch.created_at
        return (self.clock() - confirmed).total_seconds() > self.parent_grace

    async def _finish_if_done(self, batch_id: str) -> None:
        batch = await self.store.bulk_get(batch_id)
        if batch is None or batch.state is not BatchState.SENDING:
            return
        if not batch.parent_ts and not self._parent_overdue(batch):
            return  # done, perhaps, but told only once its parent is there (the next idle round looks again)
        if (await self.progress(batch_id)).remaining:
            return  # some POST is still unanswered: the totals (and the report) wait for SignalWire's answers
        if await self.store.bulk_finished_if_done(batch_id, self.clock()):
            log.info("bulk batch=%s done", batch_id)
            self._batches.pop(batch_id, None)
            await self.finished(batch_id)


def after_the_fact(batch: BulkBatch) -> str:
    """What a button says once the batch has moved on (no harm done)."""
    if batch.state is BatchState.DONE:
        return "This bulk send has finished already; nothing was changed."
    if batch.state is BatchState.CANCELLED:
        who = f" by <@{batch.finished_by}>" if batch.finished_by else ""
        return f"This bulk send was cancelled already{who}."
    if batch.state is BatchState.DISCARDED:
        return "This bulk send was discarded; nothing was sent."
    if batch.state is BatchState.SENDING:
        return "This bulk send is on its way already."
    if batch.state is BatchState.PAUSED:
        return "This bulk send is paused; press Resume or Cancel."
    return "This bulk send has not been sent yet."
