"""Rows both administration tests (tests/test_store_admin.py, tests/test_copy_db.py) seed alike, written through
the port as the bridge writes them: the tables of issues 11-13 (``seed_since_issue_11``): a picture, a blocked
number and an auto-reply, a scheduled send, a contact and a template, and the bulk tables (``seed_bulk``: a batch,
recipients — one handed, one quiet-held, one skipped — an outbound message with ``bulk_id``, and a send pace)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from bridge.bulk_model import BULK_ORIGIN, BatchState, BulkBatch, BulkRecipientRow, RecipientState
from bridge.model import AUTO_REPLY_ORIGIN, AutoReply, AutoReplyKind, MediaItem, SendRequest
from bridge.storage.port import Store
from sw_api.models import InboundMessage


async def seed_since_issue_11(store: Store, request: SendRequest, at: datetime) -> None:
    """A row in every table of issues 11-13, around ``request`` (its numbers, user and channel); adds three outbound
    rows (``auto1``, ``sched1``, ``bulk1-0``) and one audit row (the auto-reply)."""
    ours, theirs = request.from_, request.to
    # -- issue 11: outbound MMS (bytes must cross engines exactly)
    await store.media_put(MediaItem("t" * 32, "a.png", "image/png", b"\x89PNG\r\n\x1a\n\x00\xff", at,
                                    at + timedelta(days=7)))
    # -- issue 11: compliance (migration 13): a blocked number, an inbound HELP and its auto-reply
    await store.block_number("+15550002222", "spam", request.user_id, at)
    await store.record_inbound(
        InboundMessage(message_id="in-help", from_=theirs, to=ours, body="HELP"), opt_out=None, opt_in=False,
        items=[], now=at, auto_reply=AutoReply("auto1", AutoReplyKind.HELP, replace(
            request, user_id="sms-bridge", body="help text", media=(), origin=AUTO_REPLY_ORIGIN)))
    # -- issue 12: a scheduled send (migration 16)
    await store.create_scheduled("sched1", replace(request, body="later", origin="schedule"),
                                 at + timedelta(hours=2), "America/Los_Angeles", at)
    # -- issue 12: contacts and templates (migrations 14, 15)
    await store.contact_put("Dana Smith", theirs, request.user_id, at)
    await store.template_put("late", "Running {minutes} min late", request.user_id, at)
    # -- issue 13: bulk sends (migration 18)
    await seed_bulk(store, ours, at)


async def seed_bulk(store: Store, ours: str, at: datetime) -> None:
    """One sending batch from ``ours`` with three recipients; adds one outbound row (``bulk1-0``)."""
    await store.bulk_create(BulkBatch("bulk1", "U1", "C1", ours, "Closed today, {name}", "Closed today",
                                      BatchState.DRAFT, 0, at, team_id="T1"), at)
    await store.bulk_add_recipients("bulk1", [
        BulkRecipientRow(0, 1, "+15553330000", "Ann", {"number": "+15553330000", "name": "Ann"}),
        BulkRecipientRow(1, 2, "+15553330001", None, {}, not_before=at + timedelta(hours=9)),
        BulkRecipientRow(2, 3, "+15553330002", None, {}, RecipientState.SKIPPED, "opted out"),
    ])
    await store.bulk_set_total("bulk1", 2)
    assert await store.bulk_move("bulk1", [BatchState.DRAFT], BatchState.SENDING, at)
    [(batch_id, row)] = await store.bulk_claim("owner-a", at, at + timedelta(seconds=30), 1)
    request = SendRequest(user_id="U1", channel_id="C1", to=row.number, from_=ours, body="Closed today, Ann",
                          team_id="T1", origin=BULK_ORIGIN)
    assert await store.bulk_hand_over(batch_id, row.seq, "owner-a", "bulk1-0", request, at) is not None
    await store.pace_reserve(ours, 1, 1.0, at)
