"""Checks manifest.yml, the one-paste Slack install, against Slack's published manifest schema.

Owns: schema validity of manifest.yml and the pinned routes, flags and bot scopes.
Must not import: the bot, ``bridge``, ``handlers`` (the manifest is data; nothing here needs the app).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "manifest.yml"
SCHEMA = Path(__file__).resolve().parent / "schemas" / "slack-manifest.schema.1.0.0.json"
EVENTS_URL = "https://sms-bridge.example.com/slack/events"

# Adding a scope widens what every install grants, so it must be a deliberate edit here as well.
EXPECTED_BOT_SCOPES = {
    "commands",
    "chat:write",
    "chat:write.public",
    "users:read",
    "channels:history",
    "groups:history",
    "reactions:write",
    "files:read",  # -- issue 11: outbound MMS (download the pictures of thread replies and the form)
    "files:write",  # issue 11: mms-in (inbound MMS pictures uploaded into the thread)
    "im:write",  # issue 12: contacts (conversations.open for the import report / export DM)
}


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    data = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_manifest_validates_against_slack_schema(manifest: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator_cls = jsonschema.validators.validator_for(schema)
    # The schema declares draft-07; check that is what we validate with, not a silent default.
    assert validator_cls is jsonschema.Draft7Validator
    validator_cls.check_schema(schema)
    errors = sorted(validator_cls(schema).iter_errors(manifest), key=lambda e: list(e.path))
    assert errors == [], "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_schema_rejects_a_broken_manifest(manifest: dict[str, Any]) -> None:
    # Guards the test above against a schema that accepts anything.
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    broken = json.loads(json.dumps(manifest))
    broken["features"]["slash_commands"][0]["command"] = "sms"
    broken["settings"]["surprise"] = True
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(broken))
    assert len(errors) == 2


def test_sms_command_points_at_slack_events(manifest: dict[str, Any]) -> None:
    commands = manifest["features"]["slash_commands"]
    assert [c["command"] for c in commands] == ["/sms"]
    sms = commands[0]
    assert sms["url"] == EVENTS_URL
    assert sms["should_escape"] is False
    assert sms["usage_hint"] == "[+1 555 123 4567 message] | help"
    assert sms["description"]


def test_interactivity_and_events_share_the_route(manifest: dict[str, Any]) -> None:
    settings = manifest["settings"]
    assert settings["interactivity"] == {"is_enabled": True, "request_url": EVENTS_URL}
    events = settings["event_subscriptions"]
    assert events["request_url"] == EVENTS_URL
    assert set(events["bot_events"]) == {"message.channels", "message.groups", "app_home_opened"}  # issue 12: home
    assert settings["org_deploy_enabled"] is False
    assert settings["socket_mode_enabled"] is False
    assert settings["token_rotation_enabled"] is False


def test_bot_scopes_are_exactly_the_expected_set(manifest: dict[str, Any]) -> None:
    scopes = manifest["oauth_config"]["scopes"]
    assert set(scopes) == {"bot"}, "no user scopes: the app acts only as its bot user"
    bot = scopes["bot"]
    assert len(bot) == len(set(bot))
    assert set(bot) == EXPECTED_BOT_SCOPES


def test_display_information(manifest: dict[str, Any]) -> None:
    assert manifest["display_information"]["name"] == "SMS Bridge"
    assert manifest["features"]["bot_user"]["display_name"]


def test_every_scope_has_a_reason_comment() -> None:
    # The YAML comments are the only place a reviewer sees why a scope exists; keep one per scope.
    lines = MANIFEST.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("- ") and stripped[2:] in EXPECTED_BOT_SCOPES:
            assert lines[i - 1].strip().startswith("#"), f"scope {stripped[2:]} has no reason comment"
