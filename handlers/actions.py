"""Buttons on bridge messages: Retry on a failed or uncertain send.

Owns: action id ``sms_retry``. Must not import: storage or SignalWire modules.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bridge.access import AccessGate, AuditAction
from bridge.render import RETRY_ACTION
from bridge.service import Bridge
from handlers.notify import ephemeral_notifier


class RetryButton:
    def __init__(self, bridge: Bridge, gate: AccessGate) -> None:
        self.bridge = bridge
        self.gate = gate

    async def handle(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any],
                     client: AsyncWebClient) -> None:
        await ack()
        user_id = str((body.get("user") or {}).get("id", ""))
        channel_id = str((body.get("channel") or {}).get("id", ""))
        notify = ephemeral_notifier(client, channel_id, user_id) if channel_id else None
        # The person clicking is checked, not the original sender: a Retry is a new send by whoever presses it.
        admission = await self.gate.admit(user_id=user_id, channel_id=channel_id, action=AuditAction.RETRY)
        if admission.refusal is not None:
            if notify is not None:
                await notify(admission.refusal.message)
            return
        self.bridge.spawn(self.gate.track(admission, self.bridge.retry(str(action.get("value", "")), user_id, notify)),
                          name="retry")


def register(app: AsyncApp, button: RetryButton) -> None:
    app.action(RETRY_ACTION)(button.handle)
