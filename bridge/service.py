"""``Bridge``: the send flow and the receipt flow, composed from their parts; one instance per process (replica).

Owns: wiring the parts together and the one object handlers, the sweeper and the tests talk to —
  * ``bridge.sending.Sending``: accept / process / post_to_signalwire / retry (intent stored → parent posted →
    SignalWire called under the message's lease → outcome stored → thread told);
  * ``bridge.receipts.Receipts``: apply_status / announce / adopt (callbacks applied once, never backwards,
    queued in rank order before they are answered);
  * ``bridge.display``: the thread display (replies, reactions, parent repaints; the outbox's view of a parent);
  * ``bridge.supervisor.TaskSupervisor``: background work after the HTTP answer (spawn / drain);
  * ``bridge.claims.MessageClaims``: this replica's owner id and its leases; the durable ``SlackOutbox``.
The public methods are the parts' own (bound here), so callers keep one name for each.
Must not import: aiohttp's server side, Slack packages (Slack is reached through the ``SlackPort`` protocol),
``handlers``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from typing import Any

from bridge.access import AccessGate, AccessPolicy
from bridge.claims import MessageClaims, new_owner_id
from bridge.display import Enqueue, Parents, ThreadDisplay
from bridge.outbox import SlackOutbox
from bridge.people import ContactNames
from bridge.ports import SignalWireSender, SlackPort
from bridge.receipts import CallbackRefused, Receipts
from bridge.sending import (
    ACCEPT_TIMEOUT,
    ALREADY_RETRIED,
    MAX_POSTS,
    NOT_RECORDED,
    RETRY_NOT_RECORDED,
    Notify,
    Sending,
    SendSettings,
)
from bridge.storage.port import Store
from bridge.supervisor import TaskSupervisor
from bridge.tokens import STATUS_PATH, CallbackTokens

__all__ = [
    "ACCEPT_TIMEOUT", "ALREADY_RETRIED", "MAX_POSTS", "NOT_RECORDED", "RETRY_NOT_RECORDED", "STATUS_PATH",
    "Bridge", "CallbackRefused", "CallbackTokens", "Enqueue", "Notify", "SendSettings",
]


class Bridge:
    """Everything between a validated request and the Slack thread. One instance per process."""

    def __init__(
        self,
        *,
        store: Store,
        signalwire: SignalWireSender,
        slack: SlackPort,
        tokens: CallbackTokens,
        simulated: bool = False,
        settings: SendSettings | None = None,
        outbox_options: Mapping[str, Any] | None = None,
        ack_store: Store | None = None,
    ) -> None:
        settings = settings or SendSettings()
        self.store = store
        # What a Slack ack waits for (the rate-limit read, the opt-out read, the intent insert) goes to the
        # ack path's own connection(s) when given, so it never queues behind the background writers (issue 10).
        self.ack_store = ack_store or store
        self.signalwire = signalwire
        self.slack = slack
        self.tokens = tokens
        self.simulated = simulated
        self.settings = settings
        # This replica's name in every lease it takes (messages here, items in the outbox).
        self.owner = new_owner_id()
        self.claims = MessageClaims(store, self.owner, lease=settings.message_lease)
        self.supervisor = TaskSupervisor(quiet=(CallbackRefused,))
        # -- issue 12: contact names shown for numbers (read from the store at render time, briefly cached).
        self.names = ContactNames(store)
        parents = Parents(store, simulated=simulated, names=self.names)
        # Everything the bridge tells Slack after the first post goes through the durable outbox.
        options: dict[str, Any] = {"owner": self.owner, **(outbox_options or {})}
        self.outbox = SlackOutbox(store, slack, render_parent=parents.render_parent,
                                  on_parent_posted=parents.parent_posted, render_receipt=parents.render_receipt,
                                  **options)
        self.display = ThreadDisplay(store, self.outbox, simulated=simulated)
        self.receipts = Receipts(store, self.outbox, self.display, tokens, self.claims)
        self.sending = Sending(store=store, signalwire=signalwire, slack=slack, tokens=tokens, outbox=self.outbox,
                               display=self.display, receipts=self.receipts, claims=self.claims,
                               supervisor=self.supervisor, settings=settings, simulated=simulated,
                               ack_store=self.ack_store)
        # -- sending
        self.opt_out_refusal = self.sending.opt_out_refusal
        self.accept = self.sending.accept
        self.submit = self.sending.submit
        self.process = self.sending.process
        self.post_to_signalwire = self.sending.post_to_signalwire
        self.tell_checking = self.sending.tell_checking
        self.retry = self.sending.retry
        self.accept_retry = self.sending.accept_retry
        # -- receipts
        self.apply_status = self.receipts.apply_status
        self.announce_pending = self.receipts.announce_pending
        self.announce = self.receipts.announce
        self.adopt = self.receipts.adopt
        self.audit_outcome = self.receipts.audit_outcome
        # -- the thread display
        self.react_outcome = self.display.react_outcome
        self.reply_failure = self.display.reply_failure
        self.refresh_parent = self.display.refresh_parent
        self.reply = self.display.reply
        self.render_parent = parents.render_parent
        self.parent_posted = parents.parent_posted

    # -- background work and locks ---------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run work after the HTTP answer (Slack wants its ack in 3 s); ``drain`` waits for all of it."""
        return self.supervisor.spawn(coro, name=name)

    async def drain(self, timeout: float = 10.0) -> None:
        await self.supervisor.drain(timeout)

    async def idle(self) -> bool:
        """No background task running and nothing waiting in the Slack outbox."""
        return not self.supervisor.busy and await self.outbox.pending() == 0

    def lock(self, key: str) -> asyncio.Lock:
        """A process-wide lock by name (one message, or one conversation in ``bridge.two_way``). An optimisation
        within this process only: across replicas, leases (``claims.hold``) and the store's constraints decide."""
        return self.claims.lock(key)

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers (for /readyz)."""
        await self.store.ping()

    def access_gate(self, policy: AccessPolicy) -> AccessGate:
        """The access gate of this bridge's sends: ``policy`` plus the shared audit trail and rate limit (in the
        store, so every replica counts the same sends); its audit writes run as this bridge's background work."""
        return AccessGate(policy, self.store, reader=self.ack_store,
                          spawn=lambda audit: self.spawn(audit, name="audit"))
