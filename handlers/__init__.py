"""Slack and webhook surfaces of the bridge: one module per surface, each with ``register``.

Owns: wiring Bolt listeners and aiohttp routes to ``bridge.service.Bridge``. Nothing here talks to storage or
SignalWire directly except through the bridge.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slack_bolt.async_app import AsyncApp

from bridge.access import AccessPolicy, log_open_access
from bridge.bulk import BulkSends
from bridge.config import Config
from bridge.media import MediaShelf
from bridge.people import People
from bridge.scheduler import Scheduler
from bridge.service import Bridge
from bridge.two_way import TwoWay

if TYPE_CHECKING:
    from handlers.events import ThreadReplies


def register_all(app: AsyncApp, bridge: Bridge, config: Config, *,
                 scheduler: Scheduler | None = None, bulk_sends: BulkSends | None = None) -> ThreadReplies:
    """Register every listener; returns the thread-reply handler (``bridge.recovery`` resumes replies with it)."""
    from handlers import actions, bulk, commands, contacts_actions, events, home, modals, people, schedule
    from handlers.slack_files import SlackFiles

    # One gate for every send path: its per-user locks keep one process's count-then-insert in turn.
    gate = bridge.access_gate(
        AccessPolicy.build(config.allowed_users, config.allowed_channels, config.rate_limit_per_user))
    log_open_access(gate.policy)
    # -- issue 12: contacts and templates (one People per process; names shown through bridge.names)
    address_book = People(bridge.store, config.default_region, bridge.names)
    modal = modals.ComposeModal(bridge, config, gate, files=SlackFiles.from_config(config),
                                shelf=media_shelf(bridge, config), people=address_book)
    people.register(app, people.PickButton(bridge, config, gate))
    contacts_actions.register(app, contacts_actions.ContactsActions(bridge, config, address_book,
                                                                    files=SlackFiles.from_config(config),
                                                                    policy=gate.policy))
    # -- issue 12: scheduled sends (the due loop itself runs in handlers.server)
    scheduler = scheduler or scheduler_for(bridge, config)
    scheduled = schedule.ScheduleCommand(bridge, config, gate, scheduler, people=address_book)
    modal.scheduled = scheduled
    app_home = home.AppHome(bridge, config, gate.policy)
    schedule.register(app, schedule.CancelButton(bridge, scheduler, app_home.request))
    # -- issue 13: bulk sends (the worker itself runs in handlers.server)
    bulk_command = bulk.BulkCommand(bridge, config, bulk_sends or bulk_for(bridge, config),
                                    files=SlackFiles.from_config(config))
    bulk.register(app, bulk_command)
    commands.register(app, commands.SmsCommand(bridge, config, modal, gate,
                                               people.PeopleCommand(bridge, config, gate, address_book),
                                               scheduled, bulk_command))
    modals.register(app, modal)
    actions.register(app, actions.RetryButton(bridge, gate))
    replies = events.ThreadReplies(two_way(bridge, config), gate, lease=config.reply_resume_after,
                                   files=SlackFiles.from_config(config), shelf=media_shelf(bridge, config))
    events.register(app, replies)
    # -- issue 12: app home
    home.register(app, app_home)
    return replies


def two_way(bridge: Bridge, config: Config) -> TwoWay:
    return TwoWay(bridge, inbound_channel=config.inbound_channel, number_channels=config.number_channels,
                  from_numbers=config.from_numbers, default_region=config.default_region,
                  compliance=config.compliance)


def media_shelf(bridge: Bridge, config: Config) -> MediaShelf:
    """-- issue 11: where outbound MMS pictures are published (``PUBLIC_URL/media/…``)."""
    return MediaShelf(bridge.store, config.public_url, days=config.media_retention_days)


def scheduler_for(bridge: Bridge, config: Config) -> Scheduler:
    """-- issue 12: the scheduled-send service (its policy is the send paths' own: checked again at send time)."""
    policy = AccessPolicy.build(config.allowed_users, config.allowed_channels, config.rate_limit_per_user)
    return Scheduler(bridge, policy, grace_minutes=config.schedule_grace_minutes,
                     admins=frozenset(config.admin_users))


def bulk_for(bridge: Bridge, config: Config) -> BulkSends:
    """-- issue 13: the bulk-send service and its worker (started and stopped by ``handlers.server``)."""
    return BulkSends(bridge, mps=config.signalwire_mps, quiet=config.quiet_hours,
                     allowed=frozenset(config.bulk_allowed_users), admins=frozenset(config.admin_users),
                     max_recipients=config.bulk_max_recipients,
                     # a dead replica's claimed recipients are taken over as soon as its other work (LEASE_SECONDS)
                     lease=config.lease_seconds)
