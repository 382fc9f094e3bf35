"""Slack and webhook surfaces of the bridge: one module per surface, each with ``register``.

Owns: wiring Bolt listeners and aiohttp routes to ``bridge.service.Bridge``. Nothing here talks to storage or
SignalWire directly except through the bridge.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slack_bolt.async_app import AsyncApp

from bridge.access import AccessPolicy, log_open_access
from bridge.config import Config
from bridge.service import Bridge
from bridge.two_way import TwoWay

if TYPE_CHECKING:
    from handlers.events import ThreadReplies


def register_all(app: AsyncApp, bridge: Bridge, config: Config) -> ThreadReplies:
    """Register every listener; returns the thread-reply handler (``bridge.recovery`` resumes replies with it)."""
    from handlers import actions, commands, events, modals

    # One gate for every send path: its per-user locks keep one process's count-then-insert in turn.
    gate = bridge.access_gate(
        AccessPolicy.build(config.allowed_users, config.allowed_channels, config.rate_limit_per_user))
    log_open_access(gate.policy)
    modal = modals.ComposeModal(bridge, config, gate)
    commands.register(app, commands.SmsCommand(bridge, config, modal, gate))
    modals.register(app, modal)
    actions.register(app, actions.RetryButton(bridge, gate))
    replies = events.ThreadReplies(two_way(bridge, config), gate, lease=config.reply_resume_after)
    events.register(app, replies)
    return replies


def two_way(bridge: Bridge, config: Config) -> TwoWay:
    return TwoWay(bridge, inbound_channel=config.inbound_channel, number_channels=config.number_channels,
                  from_numbers=config.from_numbers, default_region=config.default_region,
                  compliance=config.compliance)
