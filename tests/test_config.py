"""Tests of bridge.config: every variable's validation, the simulator and Socket Mode shortcuts, secret-free repr."""

from __future__ import annotations

import pytest

from bridge.config import Config, ConfigError

BOT_TOKEN = "xoxb-1111-2222-SuperSecretBotToken"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5secret"
API_TOKEN = "PTsecretapitoken0123456789abcdef"
SIGNING_KEY = "PSKsecretsigningkey0123456789"
APP_TOKEN = "xapp-1-A0123-4567-SecretAppLevelToken"

BASE = {
    "SLACK_BOT_TOKEN": BOT_TOKEN,
    "SLACK_SIGNING_SECRET": SIGNING_SECRET,
    "SIGNALWIRE_SPACE_URL": "example.signalwire.com",
    "SIGNALWIRE_PROJECT_ID": "1f0e9c52-5d6f-4a3e-9a77-2b6c0d9e8f10",
    "SIGNALWIRE_API_TOKEN": API_TOKEN,
    "SIGNALWIRE_SIGNING_KEY": SIGNING_KEY,
    "SIGNALWIRE_FROM_NUMBERS": "+15557770000, (555) 777-0001,+15557770000",
    "PUBLIC_URL": "https://sms.example.com/",
}


def env(**changes: str | None) -> dict[str, str]:
    """BASE with some variables changed (``None`` removes one)."""
    result = dict(BASE)
    for name, value in changes.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def error_for(environ: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Config.from_env(environ)
    return info.value


# --- a good configuration -------------------------------------------------------------------------------


def test_valid_environment() -> None:
    config = Config.from_env(env())
    assert config.slack_bot_token == BOT_TOKEN
    assert config.signalwire_api_token == API_TOKEN
    # Normalised to E.164, de-duplicated, order kept; the first is the default sender.
    assert config.from_numbers == ("+15557770000", "+15557770001")
    assert config.default_from == "+15557770000"
    assert config.public_url == "https://sms.example.com"
    assert (config.port, config.host, config.default_region) == (3000, "0.0.0.0", "US")
    assert config.sqlite_path is not None and config.sqlite_path.name == "sms-bridge.db"
    assert config.socket_mode is False
    assert config.simulated is False
    assert config.slack_api_url == "https://slack.com/api/"


def test_optional_values() -> None:
    config = Config.from_env(env(
        PORT=" 8080 ", HOST="127.0.0.1", DEFAULT_REGION="gb", DATABASE_URL="postgresql://db/sms",
        INBOUND_CHANNEL="C0123456789", NUMBER_CHANNELS="+15557770000:C0AAA, +15557770001:G0BBB",
        SLACK_API_URL="http://127.0.0.1:9999/api",
    ))
    assert (config.port, config.host, config.default_region) == (8080, "127.0.0.1", "GB")
    assert config.sqlite_path is None
    assert config.inbound_channel == "C0123456789"
    assert dict(config.number_channels) == {"+15557770000": "C0AAA", "+15557770001": "G0BBB"}
    assert config.slack_api_url == "http://127.0.0.1:9999/api/"


def test_short_code_sender_is_kept() -> None:
    assert Config.from_env(env(SIGNALWIRE_FROM_NUMBERS="12345")).from_numbers == ("12345",)


def test_national_sender_numbers_read_in_default_region() -> None:
    config = Config.from_env(env(DEFAULT_REGION="GB", SIGNALWIRE_FROM_NUMBERS="07911 123456"))
    assert config.from_numbers == ("+447911123456",)


# --- missing variables ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "example"),
    [
        ("SLACK_BOT_TOKEN", "xoxb-"),
        ("SLACK_SIGNING_SECRET", "SLACK_SIGNING_SECRET="),
        ("SIGNALWIRE_SPACE_URL", "example.signalwire.com"),
        ("SIGNALWIRE_PROJECT_ID", "SIGNALWIRE_PROJECT_ID="),
        ("SIGNALWIRE_API_TOKEN", "SIGNALWIRE_API_TOKEN="),
        ("SIGNALWIRE_FROM_NUMBERS", "+1555777000"),
        ("PUBLIC_URL", "https://"),
    ],
)
@pytest.mark.parametrize("how", ["absent", "blank"])
def test_missing_required_variable(name: str, example: str, how: str) -> None:
    error = error_for(env(**{name: None if how == "absent" else "   "}))
    assert error.name == name
    message = str(error)
    assert message.startswith(f"{name} ")
    assert "not set" in message
    assert f"(example: {name}=" in message
    assert example in message


def test_errors_never_quote_secrets() -> None:
    error = error_for(env(SLACK_BOT_TOKEN="xoxp-user-token-SECRETVALUE"))
    assert "SECRETVALUE" not in str(error)


# --- malformed values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SLACK_BOT_TOKEN", "xoxp-1111-2222-user-token"),
        ("SLACK_BOT_TOKEN", "1111-2222"),
        ("SLACK_APP_TOKEN", "xoxb-1111-not-an-app-token"),
        ("PORT", "abc"),
        ("PORT", "-1"),
        ("PORT", "65536"),
        ("PORT", "80.5"),
        ("PUBLIC_URL", "sms.example.com"),
        ("PUBLIC_URL", "ftp://sms.example.com"),
        ("PUBLIC_URL", "https://sms.example.com/?next=1"),
        ("PUBLIC_URL", "https://sms.example.com/#top"),
        ("PUBLIC_URL", "https://"),
        ("SIGNALWIRE_FROM_NUMBERS", "+15557770000,not-a-number"),
        ("SIGNALWIRE_FROM_NUMBERS", "+1555777000"),  # one digit short
        ("SIGNALWIRE_FROM_NUMBERS", "555 0000"),  # no area code
        ("DEFAULT_REGION", "USA"),
        ("DEFAULT_REGION", "1"),
        ("DEFAULT_REGION", "ZZ"),  # two letters, but no such region
        ("NUMBER_CHANNELS", "+15557770000"),
        ("NUMBER_CHANNELS", "+15557770000:general"),
        ("NUMBER_CHANNELS", "not-a-number:C0123"),
        ("NUMBER_CHANNELS", "+15557770000:C0123,+15557770001"),
        ("INBOUND_CHANNEL", "#general"),
        ("DATABASE_URL", "mysql://localhost/sms"),
        ("SIGNALWIRE_SPACE_URL", "https://example.signalwire.com/api/laml"),
        ("SIGNALWIRE_SPACE_URL", "not a space!"),
    ],
)
def test_malformed_value_names_the_variable(name: str, value: str) -> None:
    error = error_for(env(**{name: value}))
    assert error.name == name
    assert str(error).startswith(f"{name} ")
    assert f"(example: {name}=" in str(error)


def test_bad_from_number_entry_is_quoted() -> None:
    error = error_for(env(SIGNALWIRE_FROM_NUMBERS="+15557770000, 12-34"))
    assert "12-34" in str(error)


@pytest.mark.parametrize("port", ["0", "1", "65535"])
def test_port_bounds(port: str) -> None:
    assert Config.from_env(env(PORT=port)).port == int(port)


# --- modes ----------------------------------------------------------------------------------------------


def test_socket_mode_needs_no_signing_secret() -> None:
    config = Config.from_env(env(SLACK_SIGNING_SECRET=None, SLACK_APP_TOKEN=APP_TOKEN))
    assert config.socket_mode is True
    assert config.slack_signing_secret == ""
    assert config.slack_app_token == APP_TOKEN


def test_simulator_needs_no_signalwire_credentials_numbers_or_public_url() -> None:
    config = Config.from_env(env(
        SIGNALWIRE_SPACE_URL="simulator", SIGNALWIRE_PROJECT_ID=None, SIGNALWIRE_API_TOKEN=None,
        SIGNALWIRE_SIGNING_KEY=None, SIGNALWIRE_FROM_NUMBERS=None, PUBLIC_URL=None,
    ))
    assert config.simulated is True
    assert config.signalwire_api_token == ""
    assert len(config.from_numbers) == 1 and config.default_from.startswith("+")
    assert config.public_url == ""


def test_simulator_still_validates_what_is_given() -> None:
    error = error_for(env(SIGNALWIRE_SPACE_URL="simulator", SIGNALWIRE_FROM_NUMBERS="nope"))
    assert error.name == "SIGNALWIRE_FROM_NUMBERS"


# --- repr -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("socket", [False, True])
def test_repr_never_contains_secrets(socket: bool) -> None:
    config = Config.from_env(env(SLACK_APP_TOKEN=APP_TOKEN) if socket else env())
    for text in (repr(config), str(config), f"{config}", f"{config!r}"):
        for secret in (BOT_TOKEN, SIGNING_SECRET, API_TOKEN, SIGNING_KEY, APP_TOKEN):
            assert secret not in text
        # Enough to tell configurations apart in a support thread.
        assert "example.signalwire.com" in text
        assert "+15557770000" in text


def test_receipt_coalescing_and_channel_pacing_have_defaults_and_are_validated() -> None:
    config = Config.from_env(env())
    assert (config.receipt_coalesce_seconds, config.slack_channel_posts_per_second,
            config.slack_channel_post_burst) == (2.0, 1.0, 4)
    assert config.outbox_pacing == {"receipt_window": 2.0, "post_interval": 1.0, "post_burst": 4}
    tuned = Config.from_env(env(RECEIPT_COALESCE_SECONDS="0", SLACK_CHANNEL_POSTS_PER_SECOND="0.5",
                                SLACK_CHANNEL_POST_BURST="1"))
    assert tuned.outbox_pacing == {"receipt_window": 0.0, "post_interval": 2.0, "post_burst": 1}
    assert Config.from_env(env(SLACK_CHANNEL_POSTS_PER_SECOND="0")).outbox_pacing["post_interval"] == 0.0
    for name, bad in (("RECEIPT_COALESCE_SECONDS", "-1"), ("RECEIPT_COALESCE_SECONDS", "soon"),
                      ("SLACK_CHANNEL_POSTS_PER_SECOND", "nan"), ("SLACK_CHANNEL_POSTS_PER_SECOND", "-2"),
                      ("SLACK_CHANNEL_POST_BURST", "0"), ("SLACK_CHANNEL_POST_BURST", "2.5")):
        assert error_for(env(**{name: bad})).name == name
