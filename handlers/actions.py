"""Buttons on bridge messages: Retry on a failed or uncertain send.

Owns: action id ``sms_retry``. Must not import: storage or SignalWire modules.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bridge.access import AccessGate, Admission
from bridge.model import AuditAction
from bridge.render import RETRY_ACTION
from bridge.service import Bridge, Notify
from handlers.notify import ephemeral_notifier


class RetryButton:
    def __init__(self, bridge: Bridge, gate: AccessGate) -> None:
        self.bridge = bridge
        self.gate = gate

    async def handle(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any],
                     client: AsyncWebClient) -> None:
        # Acknowledged only once the retry is claimed and stored (both bounded, well inside Slack's 3 s): a crash
        # after the ack resumes the stored retry; nothing between the click and the claim can be lost.
        user_id = str((body.get("user") or {}).get("id", ""))
        channel_id = str((body.get("channel") or {}).get("id", ""))
        notify = ephemeral_notifier(client, channel_id, user_id) if channel_id else None
        # The person clicking is checked, not the original sender: a Retry is a new send by whoever presses it.
        admission = await self.gate.admit(user_id=user_id, channel_id=channel_id, action=AuditAction.RETRY)
        if admission.refusal is not None:
            await ack()
            if notify is not None:
                await notify(admission.refusal.message)
            return
        accepted = await self.bridge.accept_retry(str(action.get("value", "")), user_id)
        await ack()
        if isinstance(accepted, str):
            self.bridge.spawn(self._refused(admission, accepted, notify), name="retry-refused")
            return
        self.bridge.spawn(self.gate.track(admission, self.bridge.process(accepted.ref, notify)), name="retry")

    async def _refused(self, admission: Admission, text: str, notify: Notify | None) -> None:
        await self.gate.link(admission, None)
        if notify is not None:
            await notify(text)


def register(app: AsyncApp, button: RetryButton) -> None:
    app.action(RETRY_ACTION)(button.handle)
