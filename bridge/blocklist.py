"""The team-wide block list behind ``/sms block``, ``/sms unblock`` and ``/sms blocked`` (issue 11).

Owns: ``BlockList`` — changing the list in the store and writing each change to the audit trail, and the words
the person who asked is told (from ``bridge.compliance``). Whether a send is refused is the store's business
(``create_outbound_unless_opted_out``) and ``bridge.sending``'s (``opt_out_refusal``), not this module's.
Must not import: aiohttp, Slack packages, ``handlers``, a storage adapter.
"""

from __future__ import annotations

import logging

from bridge import compliance
from bridge.model import AuditAction
from bridge.ports import utcnow
from bridge.storage.port import Store, StoreUnavailable
from sw_api.text import mask_number

log = logging.getLogger("bridge.blocklist")

NOT_RECORDED = ("⚠️ Nothing changed: sms-bridge could not reach its database. Try again in a minute; if it keeps "
                "happening, tell whoever runs sms-bridge.")


class BlockList:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def block(self, number: str, reason: str, *, user_id: str, channel_id: str) -> str:
        """Block ``number`` for everyone; what to tell ``user_id``."""
        try:
            if not await self.store.block_number(number, reason, user_id, utcnow()):
                existing = await self.store.get_block(number)
                if existing is not None:
                    return compliance.already_blocked_text(existing)
                return "Someone unblocked that number just now; nothing changed. Try again."
            await self.store.audit_add(at=utcnow(), user_id=user_id, channel_id=channel_id, action=AuditAction.BLOCK,
                                       to_number=number, reason=reason or None)
        except StoreUnavailable:
            log.exception("block of %s not recorded", mask_number(number))
            return NOT_RECORDED
        log.info("blocked %s by %s", mask_number(number), user_id)
        return compliance.blocked_text(number, reason, user_id)

    async def unblock(self, number: str, *, user_id: str, channel_id: str) -> str:
        try:
            removed = await self.store.unblock_number(number)
            if removed is None:
                return compliance.not_blocked_text(number)
            await self.store.audit_add(at=utcnow(), user_id=user_id, channel_id=channel_id,
                                       action=AuditAction.UNBLOCK, to_number=number,
                                       reason=f"blocked by {removed.blocked_by}: {removed.reason}")
        except StoreUnavailable:
            log.exception("unblock of %s not recorded", mask_number(number))
            return NOT_RECORDED
        log.info("unblocked %s by %s", mask_number(number), user_id)
        return compliance.unblocked_text(removed, user_id)

    async def listing(self) -> str:
        try:
            return compliance.block_list_text(await self.store.blocked_numbers(compliance.MAX_LISTED))
        except StoreUnavailable:
            log.exception("block list not read")
            return NOT_RECORDED
