"""Quiet hours for bulk sends (issue 13, TCPA): the local-time window in which a bulk text may reach a number.

Owns: ``QuietHours`` (the allowed window, e.g. 08:00–21:00; parsed from ``QUIET_HOURS`` by ``parse_quiet_hours``,
``off`` → ``None``), ``zone_of`` (the number's time zone, from phonenumbers: the number's own zone when phonenumbers
knows it, else — a country with several zones, or a number phonenumbers cannot place — the country's
latest-starting zone, i.e. the one where the window opens last) and ``QuietHours.next_allowed`` (``None`` when the
number may be texted now, else the UTC time its window opens). Ordinary one-to-one texts never consult this.
Pure: no I/O, no clock of its own (``now`` is passed in, so tests fix it).
Must not import: anything in ``bridge`` or ``sw_api``; aiohttp, Slack packages, storage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_zones
from phonenumbers import tzdata

_UNKNOWN = "Etc/Unknown"
_CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


@dataclass(frozen=True, slots=True)
class QuietHours:
    """The allowed local-time window [start, end) for bulk texts; outside it a recipient waits."""

    start: time
    end: time

    def __str__(self) -> str:
        return f"{self.start:%H:%M}–{self.end:%H:%M}"

    def allows(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # a window across midnight, e.g. 22:00-06:00

    def next_allowed(self, number: str, now: datetime) -> datetime | None:
        """``None`` if ``number`` (E.164) may get a bulk text at ``now`` (aware), else when its window opens (UTC)."""
        zone = zone_of(number, now)
        local = now.astimezone(zone)
        if self.allows(local.time().replace(tzinfo=None)):
            return None
        opening = datetime.combine(local.date(), self.start, tzinfo=zone)
        if opening <= local:
            opening = datetime.combine(local.date() + timedelta(days=1), self.start, tzinfo=zone)
        return opening.astimezone(UTC)


DEFAULT_QUIET_HOURS = QuietHours(time(8, 0), time(21, 0))


def parse_quiet_hours(text: str) -> QuietHours | None:
    """``HH:MM-HH:MM`` (the allowed window) or ``off``; raises ``ValueError`` with what is wrong."""
    text = text.strip()
    if text.lower() == "off":
        return None
    start_text, sep, end_text = text.replace("–", "-").partition("-")
    start, end = _CLOCK.fullmatch(start_text.strip()), _CLOCK.fullmatch(end_text.strip())
    if not sep or start is None or end is None:
        raise ValueError(f"must be the allowed window as HH:MM-HH:MM (24-hour clock) or off, not {text!r}")
    window = QuietHours(time(int(start[1]), int(start[2])), time(int(end[1]), int(end[2])))
    if window.start == window.end:
        raise ValueError(f"{text!r} is an empty window; use off to send at any hour")
    return window


def zone_of(number: str, now: datetime) -> ZoneInfo:
    """The time zone a bulk text to ``number`` is timed by (see the module docstring); UTC if nothing is known."""
    names = _zone_names(number)
    zones = [zone for zone in map(_zone, names) if zone is not None]
    if not zones:
        return ZoneInfo("UTC")
    # Where the window opens last is where local time is earliest: the smallest UTC offset right now.
    return min(zones, key=lambda zone: (now.astimezone(zone).utcoffset() or timedelta(0), zone.key))


@lru_cache(maxsize=4096)
def _zone_names(number: str) -> tuple[str, ...]:
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        return ()
    names = tuple(name for name in number_zones.time_zones_for_number(parsed) if name != _UNKNOWN)
    if len(names) == 1:
        return names
    # Several zones for the number, or none known: every zone of its country calling code.
    country = tzdata.TIMEZONE_DATA.get(str(parsed.country_code), ())
    return names or tuple(name for name in country if name != _UNKNOWN)


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
