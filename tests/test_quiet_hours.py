"""``bridge.quiet_hours`` and ``bridge.bulk_text``, the pure groundwork of bulk sends (issue 13): the window, the
number's time zone (its own, else the country's latest-starting one), DST, ``QUIET_HOURS`` parsing and the
placeholders."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from bridge.bulk_model import BulkRecipient
from bridge.bulk_text import placeholders, render, unknown_placeholders
from bridge.config import Config, ConfigError
from bridge.quiet_hours import DEFAULT_QUIET_HOURS, QuietHours, parse_quiet_hours, zone_of
from tests.test_config import BASE

NEW_YORK = "+12125551234"
LOS_ANGELES = "+13105551234"
FICTIONAL = "+15551234567"    # a 555 number phonenumbers cannot place: every +1 zone counts
LONDON = "+447911123456"      # several zones for the number (London, Jersey, Guernsey, Isle of Man)


def test_a_number_with_its_own_zone_is_timed_by_it() -> None:
    noon = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # 07:00 in New York, 04:00 in Los Angeles
    assert zone_of(NEW_YORK, noon).key == "America/New_York"
    assert DEFAULT_QUIET_HOURS.next_allowed(NEW_YORK, noon) == datetime(2026, 12, 2, 13, 0, tzinfo=UTC)
    assert DEFAULT_QUIET_HOURS.next_allowed(LOS_ANGELES, noon) == datetime(2026, 12, 2, 16, 0, tzinfo=UTC)
    afternoon = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)  # 13:00 in New York
    assert DEFAULT_QUIET_HOURS.next_allowed(NEW_YORK, afternoon) is None


def test_the_window_is_closed_from_its_end_until_the_next_morning() -> None:
    late = datetime(2026, 12, 3, 2, 30, tzinfo=UTC)  # 21:30 in New York on the 2nd
    assert DEFAULT_QUIET_HOURS.next_allowed(NEW_YORK, late) == datetime(2026, 12, 3, 13, 0, tzinfo=UTC)
    exactly_nine = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)  # 21:00: the end is not allowed
    assert DEFAULT_QUIET_HOURS.next_allowed(NEW_YORK, exactly_nine) is not None
    exactly_eight = datetime(2026, 12, 2, 13, 0, tzinfo=UTC)
    assert DEFAULT_QUIET_HOURS.next_allowed(NEW_YORK, exactly_eight) is None


def test_summer_time_moves_the_opening_in_utc() -> None:
    june = datetime(2026, 6, 15, 11, 0, tzinfo=UTC)  # 07:00 EDT
    assert DEFAULT_QUIET_HOURS.next_allowed(NEW_YORK, june) == datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def test_an_unplaceable_number_uses_the_countrys_latest_starting_zone() -> None:
    noon = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    zone = zone_of(FICTIONAL, noon)
    assert zone.key == "Pacific/Pago_Pago"  # UTC-11: of every +1 zone, 08:00 comes there last
    assert DEFAULT_QUIET_HOURS.next_allowed(FICTIONAL, noon) == datetime(2026, 12, 2, 19, 0, tzinfo=UTC)


def test_several_zones_for_one_number_pick_the_latest_starting() -> None:
    zone = zone_of(LONDON, datetime(2026, 12, 2, 12, 0, tzinfo=UTC))
    assert zone.key in {"Europe/London", "Europe/Guernsey", "Europe/Jersey", "Europe/Isle_of_Man"}
    early = datetime(2026, 12, 2, 7, 59, tzinfo=UTC)  # 07:59 in all four
    assert DEFAULT_QUIET_HOURS.next_allowed(LONDON, early) == datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def test_a_window_across_midnight() -> None:
    night = QuietHours(time(22, 0), time(6, 0))
    assert night.allows(time(23, 0)) and night.allows(time(5, 59))
    assert not night.allows(time(6, 0)) and not night.allows(time(12, 0))


@pytest.mark.parametrize(("text", "expected"), [
    ("08:00-21:00", QuietHours(time(8), time(21))),
    (" 9:30 - 20:15 ", QuietHours(time(9, 30), time(20, 15))),
    ("08:00–21:00", QuietHours(time(8), time(21))),
    ("OFF", None),
])
def test_quiet_hours_setting_is_read(text: str, expected: QuietHours | None) -> None:
    assert parse_quiet_hours(text) == expected


@pytest.mark.parametrize("text", ["", "8-21", "08:00", "25:00-21:00", "08:00-21:60", "08:00-08:00", "always"])
def test_a_bad_quiet_hours_setting_says_what_is_wrong(text: str) -> None:
    with pytest.raises(ValueError, match=r"HH:MM-HH:MM|empty window"):
        parse_quiet_hours(text)


def test_config_reads_the_bulk_settings() -> None:
    base = dict(BASE)
    config = Config.from_env(base)
    assert config.signalwire_mps == 1.0 and config.quiet_hours == DEFAULT_QUIET_HOURS
    assert config.bulk_allowed_users == () and config.bulk_max_recipients == 10000
    config = Config.from_env({**base, "SIGNALWIRE_MPS": "20", "QUIET_HOURS": "off",
                              "SMS_BULK_ALLOWED_USERS": "U0ALICE", "BULK_MAX_RECIPIENTS": "500"})
    assert (config.signalwire_mps, config.quiet_hours, config.bulk_allowed_users, config.bulk_max_recipients) == (
        20.0, None, ("U0ALICE",), 500)
    for name, value in [("SIGNALWIRE_MPS", "fast"), ("SIGNALWIRE_MPS", "0"), ("QUIET_HOURS", "nights"),
                        ("BULK_MAX_RECIPIENTS", "0"), ("SMS_BULK_ALLOWED_USERS", "alice")]:
        with pytest.raises(ConfigError, match=name):
            Config.from_env({**base, name: value})


def test_placeholders_render_per_recipient() -> None:
    template = "Hi {first_name}, your shift at {Store} starts {when}. {unknown} {stay as typed"
    dana = BulkRecipient(line=2, number=FICTIONAL, name="Dana Smith", fields={"Store": "Main St", "when": "9am"})
    assert placeholders(template) == ["first_name", "store", "when", "unknown"]
    assert unknown_placeholders(template, ["number", "name", "store", "When"]) == ["unknown"]
    assert render(template, dana) == "Hi Dana, your shift at Main St starts 9am. {unknown} {stay as typed"
    nameless = BulkRecipient(line=3, number=FICTIONAL)
    assert render("Hi {name}! ({number})", nameless) == f"Hi ! ({FICTIONAL})"
