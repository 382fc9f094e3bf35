"""Slack and webhook surfaces of the bridge: one module per surface, each with ``register``.

Owns: wiring Bolt listeners and aiohttp routes to ``bridge.service.Bridge``. Nothing here talks to storage or
SignalWire directly except through the bridge.
"""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bridge.config import Config
from bridge.service import Bridge
from bridge.two_way import TwoWay


def register_all(app: AsyncApp, bridge: Bridge, config: Config) -> None:
    from handlers import actions, commands, events, modals

    modal = modals.ComposeModal(bridge, config)
    commands.register(app, commands.SmsCommand(bridge, config, modal))
    modals.register(app, modal)
    actions.register(app, actions.RetryButton(bridge))
    events.register(app, events.ThreadReplies(two_way(bridge, config)))


def two_way(bridge: Bridge, config: Config) -> TwoWay:
    return TwoWay(bridge, inbound_channel=config.inbound_channel, number_channels=config.number_channels,
                  from_numbers=config.from_numbers, default_region=config.default_region)
