"""The storage contract: what the bridge persists and the guarantees each operation gives.

Owns: the ``Store`` protocol and its error ``StoreUnavailable``. Implemented by the adapters in
``bridge.storage.sqlite`` and ``bridge.storage.postgres``, which must pass the same contract tests
(tests/test_store*.py, parametrised by engine); ``bridge.storage.engines.open_store`` picks one from ``DATABASE_URL``.
The values it takes and returns live in ``bridge.model`` (issue 13's bulk sends: ``bridge.bulk_model``).
Must not import: anything in ``bridge`` but ``bridge.model`` and ``bridge.bulk_model``; aiohttp, Slack packages,
``handlers``, drivers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from bridge.bulk_model import BatchState, BulkBatch, BulkProgress, BulkRecipientRow, BulkReportRow
from bridge.model import (
    AuditAction,
    AuditEntry,
    AutoReply,
    BlockedNumber,
    Contact,
    ContactChange,
    Conversation,
    HomeSummary,
    InboundPlace,
    MediaItem,
    OptOut,
    OutboundSms,
    OutboxItem,
    OutboxStats,
    OutboxWrite,
    RecentConversation,
    ScheduledSend,
    ScheduleOutcome,
    SchemaStatus,
    SendRequest,
    SendState,
    SlackReply,
    StatusChange,
    StatusRecord,
    Template,
)
from sw_api.models import InboundMessage, MessageStatus


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

    async def mark_pending(self, ref: str, next_attempt_at: datetime | None, now: datetime) -> OutboundSms:
        """Back to waiting (e.g. SignalWire said 429): nothing was created; try again at ``next_attempt_at``."""

    async def schedule(self, ref: str, at: datetime | None, now: datetime) -> None:
        """Set when the sweeper should next look at this message."""

    async def due(self, states: Sequence[SendState], now: datetime, limit: int = 100) -> list[OutboundSms]:
        """Messages in one of ``states`` whose ``next_attempt_at`` is unset or has passed, oldest first."""

    async def unfinished(self, accepted_before: datetime, limit: int = 100) -> list[OutboundSms]:
        """Accepted messages still without a final status, submitted before the cutoff, never looked up."""

    async def mark_checked(self, ref: str, now: datetime) -> None: ...

    async def count(self, name: str, by: int = 1) -> None:
        """Add to a named outcome counter (accepted, rejected, unknown, reconciled_found, ...)."""

    async def counters(self) -> dict[str, int]: ...

    async def mark_accepted(self, ref: str, sw_id: str, segments: int, now: datetime) -> OutboundSms:
        """SignalWire answered 201. The delivery status itself is set through ``record_status``."""

    async def note_sw_id(self, ref: str, sw_id: str, now: datetime) -> None:
        """Remember SignalWire's id from an early callback while the POST is in flight (state unchanged)."""

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

    # -- receipts told in Slack (migration 7) -----------------------------------------------------------------------

    async def unannounced(self, ref: str) -> list[MessageStatus]:
        """Statuses that advanced ``ref`` but whose Slack announcement is not queued yet, in recorded (rank) order."""

    async def refs_with_unannounced(self, limit: int = 100) -> list[str]:
        """Accepted messages with such a status: a process died between recording it and queuing its receipt."""

    async def announce_status(self, ref: str, status: str, writes: Sequence[OutboxWrite], now: datetime) -> bool:
        """In one transaction: mark ``status`` of ``ref`` announced and add ``writes`` to the Slack outbox.

        False, and nothing added, if it was announced already or never advanced the message: exactly once.
        """

    async def thread_messages(self, channel_id: str, parent_ts: str) -> list[OutboundSms]:
        """Every outbound message whose receipts go to that thread, oldest first."""

    # -- two-way conversations (migration 2) ------------------------------------------------------------------------

    async def get_conversation(self, our_number: str, their_number: str) -> Conversation | None: ...

    async def set_conversation(
        self, our_number: str, their_number: str, channel_id: str, thread_ts: str, now: datetime
    ) -> None:
        """Point the conversation at this thread (the last outbound or inbound message wins)."""

    async def conversation_by_thread(self, channel_id: str, thread_ts: str) -> Conversation | None:
        """The conversation bridged to that thread (the most recently used one if several were)."""

    async def record_inbound(
        self, message: InboundMessage, *, opt_out: str | None, opt_in: bool, items: Sequence[OutboxWrite],
        now: datetime, auto_reply: AutoReply | None = None,
    ) -> bool:
        """Store an inbound text, apply its opt-out (``opt_out``: the keyword) or opt-in, and add its outbox
        ``items``, all in one transaction. False (and nothing changes) if its message id was recorded before.

        ``auto_reply`` (issue 11): in the same transaction, after the opt-out / opt-in, store its intent (state
        ``pending``, with an ``auto-reply`` audit row), its link to this text (unique per message id and kind) and
        its ``items`` — unless ``auto_reply.request.to`` is now opted out of ``request.from_`` or blocked and its
        kind is not in ``OPT_OUT_EXEMPT`` (the only texts an opted-out or blocked number is ever sent)."""

    async def inbound_posted(self, message_id: str, channel_id: str, thread_ts: str, ts: str, now: datetime) -> None:
        """The text is in Slack at ``ts`` in thread ``thread_ts``; that thread becomes its conversation's."""

    async def inbound_posted_at(self, message_id: str) -> InboundPlace | None:
        """Where the text was posted; None while it is not (or never was: old rows, or it could not be)."""

    async def get_opt_out(self, our_number: str, their_number: str) -> OptOut | None: ...

    async def set_opt_out(self, our_number: str, their_number: str, keyword: str, now: datetime) -> None:
        """Record an opt-out (keeping the first time and word if already opted out)."""

    async def clear_opt_out(self, our_number: str, their_number: str) -> bool:
        """Opt back in; True if they were opted out."""

    async def claim_slack_event(self, key: str, now: datetime) -> bool:
        """True the first time a Slack message (``channel:ts``) is seen: Slack's retries never act twice."""

    async def set_reply_source(self, ref: str, source_ts: str) -> None:
        """Remember the Slack thread reply an outbound message was sent from (its reactions show the outcome)."""

    async def reply_source(self, ref: str) -> str | None: ...

    # -- intents stored with their claim (migration 8, bridge.storage.sqlite.two_way) -------------------------------

    async def create_reply_intent(self, ref: str, request: SendRequest, now: datetime) -> tuple[OutboundSms, bool]:
        """Store a thread reply's intent (and its ``source_ts``) unless that Slack message (channel + source_ts)
        already has one: then return that one and False. Check and insert are one transaction, which also
        finishes the stored ``SlackReply`` of that message (``record_reply``), if any."""

    async def reply_intent(self, channel_id: str, source_ts: str) -> OutboundSms | None:
        """The intent ``create_reply_intent`` stored for that Slack message, if any."""

    # -- thread replies received but not yet turned into an intent (migration 9, bridge.storage.sqlite.two_way) -----

    async def record_reply(self, reply: SlackReply, now: datetime, claimed_until: datetime) -> bool:
        """Store a thread reply as received, claimed by the caller until ``claimed_until``; False (nothing changes)
        if that Slack message (channel + ts) is stored already."""

    async def claim_reply(self, channel_id: str, ts: str, now: datetime, until: datetime) -> SlackReply | None:
        """Claim a stored reply that is not finished and whose claim has run out (conditional update: of several
        callers exactly one gets it); the reply, its ``attempts`` counting this claim, or None."""

    async def release_reply(self, channel_id: str, ts: str) -> None:
        """Give up a claim without finishing (it can be claimed again at once)."""

    async def finish_reply(self, channel_id: str, ts: str, outcome: str, now: datetime) -> bool:
        """Mark a stored reply handled (texted, refused, explained); True if this call finished it."""

    async def replies_to_resume(self, now: datetime, limit: int = 100) -> list[SlackReply]:
        """Stored replies neither finished nor claimed (their claim ran out: the process handling them died)."""

    async def create_retry_intent(self, ref: str, request: SendRequest, user_id: str, now: datetime) -> bool:
        """Claim the Retry of ``request.retry_of`` for ``user_id`` and store the new intent, atomically; False (and
        nothing stored) if that message was retried already."""

    async def abandon_retry_intent(self, ref: str) -> bool:
        """Undo ``create_retry_intent`` for a retry never started (the user was told it was not recorded)."""

    async def begin_parent_post(self, ref: str, now: datetime) -> bool:
        """Note that ``ref``'s parent is about to be posted; True if an earlier attempt was noted (it may be in
        Slack already: look before posting again)."""

    # -- leases on messages (migration 10): work more than one replica could pick up ------------------------------

    async def claim_message(self, ref: str, owner: str, now: datetime, until: datetime) -> bool:
        """Lease ``ref`` to ``owner`` until ``until`` (a conditional update): True if it was unclaimed, its lease had
        run out, or ``owner`` already held it (a renewal); False if another owner holds a live lease. Sending,
        reconciling and checking a message happen only under its lease."""

    async def release_message(self, ref: str, owner: str) -> None:
        """Drop ``owner``'s lease on ``ref`` (nothing happens if someone else holds it now)."""

    # -- administration (bot.py check / migrate / copy-db, /readyz, /metrics) -------------------------------------

    async def schema_status(self) -> SchemaStatus:
        """The engine, its server version, the applied schema version and the newest this code knows."""

    async def table_names(self) -> list[str]:
        """Every data table of the schema (not the migration bookkeeping), in an order safe for copying."""

    async def export_rows(self, table: str, after: int, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` rows of ``table`` past the first ``after`` (a stable order), as plain Python values:
        str, int, float, bytes, None, timezone-aware ``datetime``."""

    async def import_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert rows as ``export_rows`` gives them (any engine's), in one transaction; returns how many."""

    async def row_counts(self) -> dict[str, int]:
        """Rows per data table."""

    async def outbox_stats(self, now: datetime) -> OutboxStats:
        """How many outbox items are undone and how old the oldest is (for /metrics)."""

    # -- audit trail (migration 4, bridge.storage.sqlite.audit) -----------------------------------------------------

    async def audit_add(
        self,
        *,
        at: datetime,
        user_id: str,
        channel_id: str,
        action: AuditAction,
        to_number: str = "",
        from_number: str = "",
        ref: str | None = None,
        reason: str | None = None,
    ) -> str:
        """Append one row (a send attempt, or a refusal with its ``reason``); returns the row's id."""

    async def audit_recent_sends(self, user_id: str, since: datetime) -> int:
        """How many send attempts (``send``, ``retry``, ``reply``; not refusals) the user made after ``since``."""

    async def audit_send_times(self, user_id: str, since: datetime) -> list[datetime]:
        """When those attempts were made, oldest first (the rate limit tells how long to wait from them)."""

    async def audit_link(self, audit_id: str, ref: str | None, outcome: str) -> None:
        """Tie a send's row to the message it created; its outcome is the message's current status if it has one."""

    async def audit_outcome(self, ref: str, outcome: str) -> bool:
        """Record how the send of ``ref`` ended (e.g. ``delivered``, ``failed (30003)``); False if no row has it."""

    async def audit_list(self, limit: int = 100) -> list[AuditEntry]:
        """The newest rows first."""

    # -- durable Slack outbox (migration 3, bridge.storage.sqlite.outbox; used only by bridge.outbox) ---------------

    async def outbox_add(
        self, thread_key: str, kind: str, ref: str | None, channel: str | None, payload: dict[str, Any],
        now: datetime,
    ) -> int:
        """Append an item, due at once, committed before returning; returns its id (ids grow in enqueue order)."""

    async def outbox_add_coalesced(
        self, thread_key: str, kind: str, ref: str, channel: str | None, payload: dict[str, Any],
        covered_by: Sequence[str], now: datetime,
    ) -> int | None:
        """Like ``outbox_add`` unless an undone, unclaimed item for ``ref`` of a ``covered_by`` kind exists
        (then None). Check and insert are atomic."""

    async def outbox_due(self, now: datetime, limit: int) -> list[OutboxItem]:
        """The first undone item of each thread_key, if due and not claimed (a live lease), earliest first."""

    async def outbox_next_due(self) -> datetime | None:
        """When the earliest thread head becomes due or its claim expires; None if nothing is undone."""

    async def outbox_claim(self, item_id: int, owner: str, now: datetime, until: datetime) -> bool:
        """Lease an undone item to ``owner`` until ``until`` (conditional update): True for one caller only while the
        lease lives; True again for the same ``owner`` (a renewal)."""

    async def outbox_renew(self, item_id: int, owner: str, until: datetime) -> bool:
        """Extend ``owner``'s live lease on an undone item; False if ``owner`` no longer holds it."""

    async def outbox_release(self, item_id: int) -> None: ...

    async def outbox_done(self, item_id: int, result: str | None, now: datetime) -> None: ...

    async def outbox_retry(self, item_id: int, error: str, next_attempt_at: datetime, result: str | None) -> None:
        """Count a failed attempt, release the claim and make the item due again at ``next_attempt_at``."""

    async def outbox_fail(self, item_id: int, error: str, now: datetime) -> None:
        """Give up on the item; the next item of its thread becomes the head."""

    async def outbox_pending(self) -> int:
        """Items neither done nor failed."""

    async def outbox_failed(self, limit: int = 100) -> list[OutboxItem]:
        """Failed items, newest first."""

    async def outbox_prune(self, before: datetime) -> int:
        """Delete items finished (done or failed) before ``before``; returns how many."""

    async def outbox_get(self, item_id: int) -> OutboxItem | None:
        """One item as stored now (done or not); None if there is none. A claimed item is re-read before delivery,
        so what it posts is exactly its payload as it stood when its claim was taken (nothing is appended after)."""

    async def outbox_defer(self, item_id: int, owner: str, until: datetime) -> bool:
        """Hand back ``owner``'s claim on an item it has not attempted, and make it due at ``until`` (paced):
        no attempt is counted, so it stays unclaimed-and-unattempted (a waiting receipt may still be appended to)."""

    async def outbox_take_post(self, thread_key: str, now: datetime, interval: float, burst: int) -> float:
        """Take one post from ``thread_key``'s token bucket (one post per ``interval`` seconds, bursts of
        ``burst``), atomically, shared by every replica: 0.0 if taken, else the seconds until one is free."""

    async def outbox_post_finished(self, thread_key: str, at: datetime, interval: float) -> None:
        """A post taken from ``thread_key``'s bucket returned at ``at``: the next is counted from then, not from
        when it was taken, so a slow request does not squeeze two posts closer together at Slack's end."""

    # -- retention (migration 6; bridge.recovery calls these in small batches so no delete holds the lock long) -----

    async def prune_inbound(self, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` inbound rows received before ``before``, oldest first; returns how many.
        Never an inbound message that is not yet delivered to Slack (if the store keeps such messages)."""

    async def prune_replies(self, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` finished thread replies (``record_reply``) received before ``before``."""

    async def prune_slack_events(self, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` Slack event ids seen before ``before``, oldest first; returns how many."""

    async def prune_status_events(self, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` status-callback rows received before ``before``, oldest first."""

    async def audit_prune(self, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` audit rows older than ``before``, oldest first; returns how many."""

    # -- ack path (issue 10)

    async def create_outbound_unless_opted_out(self, ref: str, request: SendRequest,
                                               now: datetime) -> OutboundSms | None:
        """``create_outbound``, with the opt-out check in the same statement: None, and nothing stored, when
        ``request.to`` has opted out of ``request.from_`` (``get_opt_out`` then says since when) or is blocked
        (``get_block``: by whom, why; issue 11). One round trip
        where the engine can return the inserted row: what a slash command's ack waits for."""

    # -- issue 11: outbound MMS (migration 12; bridge.storage.sqlite.media, bridge.storage.postgres.media) --------

    async def media_put(self, item: MediaItem) -> None:
        """Store a picture under its (unguessable, unique) token, committed before returning."""

    async def media_get(self, token: str, now: datetime) -> MediaItem | None:
        """The picture stored under ``token`` unless it has expired (``expires_at`` <= ``now``): then None, as for
        a token never stored."""

    async def prune_media(self, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` pictures that expired before ``before``, oldest first; returns how many."""

    # -- issue 11: mms-in (no schema change: the outbox's ``result`` column holds the recorded value)

    async def outbox_note_result(self, item_id: int, owner: str, result: str) -> bool:
        """Record ``result`` on an undone item while ``owner`` holds its claim, before the attempt finishes (an
        upload's file id, so a retry after a crash resumes that upload instead of starting another); False, and
        nothing written, if ``owner`` no longer holds the claim. A later ``outbox_retry`` / ``outbox_done`` writes
        the result again."""

    # -- issue 11: compliance (auto-replies and the team-wide block list, migration 13) ----------------------------

    async def auto_reply_for(self, message_id: str, kind: str) -> OutboundSms | None:
        """The auto-reply ``record_inbound`` stored for that inbound text and kind, if any."""

    async def get_block(self, number: str) -> BlockedNumber | None:
        """Whether ``number`` is on the block list (and by whom, since when, why)."""

    async def block_number(self, number: str, reason: str, blocked_by: str, now: datetime) -> bool:
        """Put ``number`` on the block list; True if it was not blocked before (False: the row is left as it was)."""

    async def unblock_number(self, number: str) -> BlockedNumber | None:
        """Take ``number`` off the block list; the row removed, or None if it was not blocked."""

    async def blocked_numbers(self, limit: int = 100) -> list[BlockedNumber]:
        """The block list, newest first."""

    # -- issue 12: contacts and templates (migrations 14 and 15; bridge.storage.sqlite.people,
    # bridge.storage.postgres.people) ---------------------------------------------------------------------------

    async def contact_put(self, name: str, number: str, user_id: str, now: datetime) -> ContactChange:
        """Add ``name`` for ``number``, or rename the number's contact (a number has at most one). Nothing changes
        (``NAME_TAKEN``) if another number holds that name (``contact_key``: case and spacing ignored)."""

    async def contacts_import(self, entries: Sequence[tuple[str, str]], user_id: str,
                              now: datetime) -> list[ContactChange]:
        """``contact_put`` for each (name, number) in order, in one transaction: every change or none. If any of
        them is ``NAME_TAKEN`` nothing at all is changed; the list still says what each would have done."""

    async def contact_remove(self, name: str) -> Contact | None:
        """Delete the contact of that name (``contact_key``); the row removed, or None."""

    async def contact_by_number(self, number: str) -> Contact | None: ...

    async def contacts(self, search: str = "", limit: int = 1000) -> list[Contact]:
        """Contacts whose name contains ``search`` (case-insensitive; all for ""), by name."""

    async def contacts_count(self) -> int: ...

    async def template_put(self, name: str, body: str, user_id: str, now: datetime) -> bool:
        """Store template ``name`` (lower case); True if it is new, False if it replaced one."""

    async def template_remove(self, name: str) -> Template | None: ...

    async def template_get(self, name: str) -> Template | None: ...

    async def templates(self, limit: int = 100) -> list[Template]:
        """Stored templates by name."""

    # -- issue 12: app home (indexes: migration 17) -------------------------------------------------------------

    async def recent_conversations(self, limit: int = 10) -> list[RecentConversation]:
        """The ``limit`` most recently active conversations (``conversation.updated_at``, newest first), each with
        its newest stored text in either direction (inbound by ``received_at``, outbound by ``created_at``)."""

    async def home_summary(self) -> HomeSummary:
        """Opted-out and blocked counts, undone outbox items, unsent outbound SMS and the newest error (a failed
        outbox item, or an SMS rejected, of unknown outcome, failed or undelivered), from indexed reads."""

    # -- issue 12: scheduled sends (migration 16; bridge.storage.sqlite.schedule, bridge.storage.postgres.schedule) --

    async def create_scheduled(self, ref: str, request: SendRequest, due_at: datetime, tz: str,
                               now: datetime) -> OutboundSms | None:
        """In one transaction: the message (state ``scheduled``) and its ``scheduled_send`` row (due at ``due_at``,
        shown in ``tz``) — unless ``request.to`` opted out of ``request.from_`` or is blocked: then None, nothing
        stored."""

    async def get_scheduled(self, ref: str) -> ScheduledSend | None:
        """The scheduled send of message ``ref`` (whatever its state), or None if it was never scheduled."""

    async def scheduled_of_user(self, user_id: str, limit: int = 50) -> list[ScheduledSend]:
        """``user_id``'s scheduled sends still waiting (state ``scheduled``), soonest first."""

    async def due_scheduled(self, now: datetime, limit: int = 50) -> list[ScheduledSend]:
        """Scheduled sends still waiting whose due time is at or before ``now``, oldest first."""

    async def finish_scheduled(self, ref: str, outcome: ScheduleOutcome, by: str | None, reason: str,
                               now: datetime) -> bool:
        """Move ``ref`` out of ``scheduled`` — True for exactly one caller across replicas (a conditional update),
        False, and nothing changed, if it left that state already. ``RELEASED``: the message becomes ``pending``
        (``process`` sends it); any other outcome: ``rejected`` with ``error_code`` = the outcome, ``reason`` as
        its error message."""

    # -- issue 13: bulk sends and the shared send pace (migration 18; bridge.storage.sqlite.bulk,
    # bridge.storage.postgres.bulk). Recipients are rows claimed with a lease; every move is a conditional update.

    async def bulk_create(self, batch: BulkBatch, now: datetime) -> None:
        """Store ``batch`` (normally ``draft``) as given, with ``created_at`` = ``now``."""

    async def bulk_add_recipients(self, batch_id: str, rows: Sequence[BulkRecipientRow]) -> int:
        """Insert one chunk of recipients (callers stream a CSV in chunks of ~500) in one transaction; a number
        already in the batch (or earlier in the chunk) is ignored — duplicates merged, the first line wins. Returns
        how many were inserted. ``seq`` must be new in the batch."""

    async def bulk_get(self, batch_id: str) -> BulkBatch | None: ...

    async def bulk_set_total(self, batch_id: str, total: int) -> None:
        """Set ``total`` (the N of "Send to N")."""

    async def bulk_set_parent(self, batch_id: str, ts: str) -> None:
        """Remember the batch's one parent message in the channel."""

    async def bulk_move(self, batch_id: str, from_states: Sequence[BatchState], to: BatchState, now: datetime,
                        by: str | None = None) -> bool:
        """Move the batch from one of ``from_states`` to ``to`` — one conditional update: True for exactly one
        caller across replicas, False (nothing changed) if it is in none of them. Into ``sending``: sets
        ``confirmed_at`` once. Into ``done`` / ``cancelled`` / ``discarded``: sets ``finished_at`` (``cancelled``
        also ``finished_by`` = ``by``) and, for ``cancelled``, in the same transaction every ``waiting`` recipient
        (and every ``claimed`` one whose lease has expired) becomes ``cancelled``; a live lease is left to its
        holder, whose ``bulk_hand_over`` then cancels it."""

    async def bulk_claim(self, owner: str, now: datetime, until: datetime,
                         limit: int) -> list[tuple[str, BulkRecipientRow]]:
        """Claim up to ``limit`` recipients of ``sending`` batches — ``waiting`` ones, or ``claimed`` ones whose
        lease expired — whose ``not_before`` is unset or has passed, oldest batch first, lowest ``seq`` first: they
        become ``claimed`` by ``owner`` until ``until``. Atomic: two replicas never claim the same row. Returns
        ``(batch_id, recipient)`` pairs in that order."""

    async def bulk_hand_over(self, batch_id: str, seq: int, owner: str, ref: str, request: SendRequest,
                             now: datetime) -> OutboundSms | None:
        """In ONE transaction: if the recipient is still ``claimed`` by ``owner`` and its batch still ``sending``,
        create its outbound message ``ref`` as ``create_outbound`` does (state ``pending``, origin from the
        request) with ``bulk_id`` = ``batch_id``, mark the recipient ``handed`` with that ref and return the message.
        Otherwise None: not ``owner``'s claim → nothing written; batch ``paused`` → the recipient is ``waiting``
        again, batch cancelled (or any other state) → ``cancelled``; ``request.to`` opted out of
        ``request.from_`` or blocked → ``skipped`` (skip_reason ``opted out`` / ``blocked``). ValueError if
        ``request.to`` is not the recipient's number."""

    async def bulk_defer(self, batch_id: str, seq: int, owner: str, not_before: datetime) -> bool:
        """Back to ``waiting`` until ``not_before`` (quiet hours), if still ``claimed`` by ``owner``."""

    async def bulk_skip(self, batch_id: str, seq: int, owner: str, reason: str) -> bool:
        """``skipped`` with ``reason``, if still ``claimed`` by ``owner``."""

    async def bulk_progress(self, batch_id: str, now: datetime) -> BulkProgress:
        """The counters in one read. Handed recipients by their message: ``delivered`` (delivered, read);
        ``failed`` (rejected, failed, undelivered, or an unknown POST outcome); ``sent`` (accepted otherwise);
        ``remaining``: waiting, claimed, or handed with the POST not answered yet; ``quiet_waiting``: waiting with
        ``not_before`` after ``now``; ``skipped`` and ``cancelled`` recipients."""

    async def bulk_report(self, batch_id: str, after_seq: int, limit: int) -> list[tuple[int, BulkReportRow]]:
        """Up to ``limit`` recipients with ``seq`` > ``after_seq``, in ``seq`` order, as ``(seq, row)``: status
        (see ``bridge.storage.rows.bulk_report_from_row``), the message's error code and message (a skipped one's
        reason as its message) and ``sent_at`` = when its POST started."""

    async def bulk_unfinished(self, limit: int = 100) -> list[BulkBatch]:
        """Batches ``sending`` or ``paused``, oldest first (the worker and a restart resume them)."""

    async def bulk_finished_if_done(self, batch_id: str, now: datetime) -> bool:
        """``sending`` → ``done`` (``finished_at`` = ``now``) when no recipient is ``waiting`` or ``claimed`` — one
        conditional update: True for exactly one caller."""

    async def pace_reserve(self, from_number: str, segments: int, seconds_per_segment: float,
                           now: datetime) -> datetime:
        """Reserve the next send slot of ``from_number`` (shared by every replica and every kind of send), in one
        atomic statement: ``slot = max(next_at, now)``, ``next_at = slot + segments × seconds_per_segment``.
        Returns ``slot``: the caller waits until then. Two callers never get overlapping slots."""

    async def pace_push(self, from_number: str, until: datetime) -> None:
        """``next_at = max(next_at, until)`` (SignalWire answered 429 with Retry-After)."""

    async def bulk_latest_to(self, our_number: str, their_number: str) -> tuple[str, datetime] | None:
        """If the newest outbound message from ``our_number`` to ``their_number`` (by ``created_at``) is a bulk
        text: ``(its batch id, when it was created)``; None if there is none or it is not a bulk text (a reply to
        it names the batch, ``bridge.two_way``)."""
