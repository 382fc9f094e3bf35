"""Plays Slack towards the bot: signed slash commands, interactivity payloads and Events API envelopes.

Owns: ``SlackDriver`` (builds request bodies shaped like Slack's, signs them with Slack's v0 scheme and POSTs
them to the bot's ``/slack/events``) and ``DriverResponse``.
Must not import: ``bridge``, ``handlers``, ``bot`` — it is the outside world as far as the app knows.

Signing goes through ``slack_sdk.signature.SignatureVerifier.generate_signature`` so a mismatch with what
Bolt verifies cannot creep in. The aiohttp session is the caller's; the driver never closes it.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlencode

import aiohttp
from slack_sdk.signature import SignatureVerifier

from demo.fake_slack import DEFAULT_CHANNELS, DEFAULT_USERS

FORM: Final = "application/x-www-form-urlencoded"
JSON: Final = "application/json"


@dataclass(frozen=True, slots=True)
class DriverResponse:
    """The bot's answer to one request; ``elapsed_ms`` is wall time until the body was read."""

    status: int
    body: str
    elapsed_ms: float
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


class SlackDriver:
    """Sends what Slack would send. ``bot_url`` is the bot's root URL or its full ``/slack/events`` URL.

    ``response_url_base`` (normally ``FakeSlack.response_url_base``) makes the response URLs in slash
    commands and message actions land on the fake; each carries the channel, user and source message so the
    fake can show ephemeral replies and replace originals. Without it they point at hooks.slack.com.
    With it (and ``show_acks``), a slash command's non-empty ack body is also shown in the fake as the
    ephemeral reply Slack would display (``source == "ack"``); it is not added to ``FakeSlack.responses``.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        bot_url: str,
        signing_secret: str,
        *,
        team_id: str = "T0001",
        response_url_base: str | None = None,
        api_app_id: str = "A0001",
        team_domain: str = "fake-workspace",
        bot_user_id: str = "UBOT",
        verification_token: str = "fake-verification-token",
        channel_names: Mapping[str, str] = DEFAULT_CHANNELS,
        user_names: Mapping[str, str] = DEFAULT_USERS,
        show_acks: bool = True,
    ) -> None:
        self._session = session
        stripped = bot_url.rstrip("/")
        self.url = stripped if stripped.endswith("/slack/events") else stripped + "/slack/events"
        self._verifier = SignatureVerifier(signing_secret)
        self._secret = signing_secret.encode()
        self.team_id = team_id
        self.team_domain = team_domain
        self.api_app_id = api_app_id
        self.bot_user_id = bot_user_id
        self.response_url_base = response_url_base.rstrip("/") if response_url_base else None
        self._token = verification_token
        self._channel_names = dict(channel_names)
        self._user_names = dict(user_names)
        self._counter = itertools.count(1)
        self.last_response_url: str | None = None
        self.last_trigger_id: str | None = None
        self.show_acks = show_acks

    # ----- request kinds ----------------------------------------------------------------------------

    async def slash_command(
        self,
        text: str,
        *,
        user_id: str = "U0ALICE",
        user_name: str = "alice",
        channel_id: str = "C0GENERAL",
        command: str = "/sms",
        trigger_id: str | None = None,
    ) -> DriverResponse:
        """A slash command, form-encoded with exactly the fields Slack sends."""
        fields = {
            "token": self._token,
            "team_id": self.team_id,
            "team_domain": self.team_domain,
            "channel_id": channel_id,
            "channel_name": self._channel_name(channel_id),
            "user_id": user_id,
            "user_name": user_name,
            "command": command,
            "text": text,
            "api_app_id": self.api_app_id,
            "is_enterprise_install": "false",
            "response_url": self._response_url(channel_id, user_id, None),
            "trigger_id": trigger_id or self._trigger_id(),
        }
        response = await self.raw(urlencode(fields).encode(), FORM)
        if self.show_acks and self.response_url_base and response.status == 200 and response.body.strip():
            await self._show_ack(fields["response_url"], response)
        return response

    async def view_submission(
        self,
        view: Mapping[str, Any],
        values: Mapping[str, Any],
        *,
        user_id: str = "U0ALICE",
        user_name: str | None = None,
        trigger_id: str | None = None,
    ) -> DriverResponse:
        """Submit a modal. ``view`` is typically ``FakeSlack.views[id]``; ``values`` is
        ``{block_id: {action_id: {"type": ..., "value": ...}}}`` and becomes ``view.state.values``."""
        payload = {
            "type": "view_submission",
            "team": self._team(),
            "user": self._user(user_id, user_name),
            "api_app_id": self.api_app_id,
            "token": self._token,
            "trigger_id": trigger_id or self._trigger_id(),
            "view": self._full_view(view, values),
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        return await self._interactive(payload)

    async def view_closed(
        self, view: Mapping[str, Any], *, user_id: str = "U0ALICE", user_name: str | None = None
    ) -> DriverResponse:
        """The user dismissed a modal opened with ``notify_on_close``."""
        payload = {
            "type": "view_closed",
            "team": self._team(),
            "user": self._user(user_id, user_name),
            "api_app_id": self.api_app_id,
            "token": self._token,
            "view": self._full_view(view, {}),
            "is_cleared": False,
            "is_enterprise_install": False,
            "enterprise": None,
        }
        return await self._interactive(payload)

    async def block_action(
        self,
        action_id: str,
        value: str | None,
        *,
        block_id: str | None = None,
        view: Mapping[str, Any] | None = None,
        message: Mapping[str, Any] | None = None,
        channel_id: str = "C0GENERAL",
        user_id: str = "U0ALICE",
        user_name: str | None = None,
        action_type: str | None = None,
        selected_option: Mapping[str, Any] | None = None,
        trigger_id: str | None = None,
    ) -> DriverResponse:
        """A click on a button (or a select with ``selected_option``) in a message or a view.

        ``block_id`` defaults to the block holding ``action_id`` in the given message or view. With neither
        a message nor a view the click comes from an ephemeral message, which Slack does not echo back.
        """
        source_blocks = (view or message or {}).get("blocks") or []
        action: dict[str, Any] = {
            "action_id": action_id,
            "block_id": block_id or _find_block_id(source_blocks, action_id) or "actions",
            "type": action_type or ("static_select" if selected_option is not None else "button"),
            "action_ts": f"{time.time():.6f}",
        }
        if selected_option is not None:
            action["selected_option"] = dict(selected_option)
        else:
            action["text"] = {"type": "plain_text", "text": _button_label(source_blocks, action_id), "emoji": True}
            if value is not None:
                action["value"] = value
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": self._user(user_id, user_name),
            "api_app_id": self.api_app_id,
            "token": self._token,
            "trigger_id": trigger_id or self._trigger_id(),
            "team": self._team(),
            "enterprise": None,
            "is_enterprise_install": False,
            "actions": [action],
        }
        if view is not None:
            full = self._full_view(view, (view.get("state") or {}).get("values", {}))
            payload["container"] = {"type": "view", "view_id": full["id"]}
            payload["view"] = full
            payload["state"] = full["state"]
        else:
            message_ts = str(message["ts"]) if message is not None else None
            payload["container"] = {
                "type": "message",
                "message_ts": message_ts or f"{time.time():.6f}",
                "channel_id": channel_id,
                "is_ephemeral": message is None,
            }
            payload["channel"] = {"id": channel_id, "name": self._channel_name(channel_id)}
            if message is not None:
                payload["message"] = dict(message)
            payload["state"] = {"values": {}}
            payload["response_url"] = self._response_url(channel_id, user_id, message_ts)
        return await self._interactive(payload)

    async def event(
        self,
        event: Mapping[str, Any],
        *,
        retry_num: int | None = None,
        retry_reason: str | None = None,
        event_id: str | None = None,
    ) -> DriverResponse:
        """An Events API ``event_callback``; a retry repeats ``event_id`` and carries X-Slack-Retry-*."""
        envelope = {
            "token": self._token,
            "team_id": self.team_id,
            "context_team_id": self.team_id,
            "context_enterprise_id": None,
            "api_app_id": self.api_app_id,
            "event": dict(event),
            "type": "event_callback",
            "event_id": event_id or f"Ev{next(self._counter):010d}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": f"4-{secrets.token_urlsafe(24)}",
        }
        headers: dict[str, str] = {}
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
        return await self.raw(json.dumps(envelope).encode(), JSON, headers=headers)

    async def app_home_opened(self, user_id: str, *, tab: str = "home", channel_id: str = "D0HOME") -> DriverResponse:
        """-- issue 12: the user opened the app's Home (or Messages) tab."""
        return await self.event({"type": "app_home_opened", "user": user_id, "channel": channel_id, "tab": tab,
                                 "event_ts": f"{time.time():.6f}"})

    async def url_verification(self, challenge: str = "fake-challenge") -> DriverResponse:
        """The handshake Slack performs when the Events request URL is saved."""
        body = {"token": self._token, "challenge": challenge, "type": "url_verification"}
        return await self.raw(json.dumps(body).encode(), JSON)

    async def raw(
        self,
        body: bytes,
        content_type: str,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> DriverResponse:
        """POST ``body`` signed for ``timestamp`` (default now); pass ``signature`` to forge one."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        sig = signature if signature is not None else self.sign(body, ts)
        sent = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sig,
            **(headers or {}),
        }
        started = time.perf_counter()
        async with self._session.post(self.url, data=body, headers=sent) as resp:
            text = await resp.text()
            elapsed_ms = (time.perf_counter() - started) * 1000
            return DriverResponse(resp.status, text, elapsed_ms, dict(resp.headers))

    def sign(self, body: bytes, timestamp: str) -> str:
        # Slack signs the exact bytes sent; the verifier's API takes str, so bytes that are not UTF-8 (used to
        # test the bot's refusal of garbage) are signed here directly, exactly as Slack's v0 scheme says.
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            digest = hmac.new(self._secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
            return "v0=" + digest.hexdigest()
        signature = self._verifier.generate_signature(timestamp=timestamp, body=text)
        if signature is None:  # only when the secret is empty, which would make every request forgeable
            raise ValueError("signing_secret must not be empty")
        return signature

    # ----- helpers ----------------------------------------------------------------------------------

    async def _show_ack(self, response_url: str, response: DriverResponse) -> None:
        # Slack shows a slash command's ack body to the user like a response; mirror it to the fake so
        # transcripts include it. `via=ack` keeps it out of FakeSlack.responses (the app never POSTed it).
        try:
            body = response.json()
        except ValueError:
            body = {"text": response.body}
        if isinstance(body, dict):
            async with self._session.post(f"{response_url}&via=ack", json=body) as resp:
                await resp.read()

    async def _interactive(self, payload: Mapping[str, Any]) -> DriverResponse:
        # Interactivity arrives form-encoded with the JSON in a single `payload` field.
        return await self.raw(urlencode({"payload": json.dumps(payload)}).encode(), FORM)

    def _team(self) -> dict[str, str]:
        return {"id": self.team_id, "domain": self.team_domain}

    def _user(self, user_id: str, user_name: str | None) -> dict[str, str]:
        name = user_name or self._user_names.get(user_id, user_id.lower())
        return {"id": user_id, "username": name, "name": name, "team_id": self.team_id}

    def _channel_name(self, channel_id: str) -> str:
        if channel_id in self._channel_names:
            return self._channel_names[channel_id]
        # What Slack sends for conversations that have no public name.
        return {"D": "directmessage", "G": "privategroup"}.get(channel_id[:1], channel_id.lower())

    def _trigger_id(self) -> str:
        self.last_trigger_id = f"{10_000_000_000 + next(self._counter)}.{self.team_id}.{secrets.token_hex(16)}"
        return self.last_trigger_id

    def _response_url(self, channel_id: str, user_id: str, message_ts: str | None) -> str:
        n = next(self._counter)
        if self.response_url_base is None:
            url = f"https://hooks.slack.com/actions/{self.team_id}/{n}/{secrets.token_urlsafe(18)}"
        else:
            query = {"channel": channel_id, "user": user_id, **({"message_ts": message_ts} if message_ts else {})}
            url = f"{self.response_url_base}/r{n}?{urlencode(query)}"
        self.last_response_url = url
        return url

    def _full_view(self, view: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
        view_id = str(view.get("id") or f"V{next(self._counter):010d}")
        full: dict[str, Any] = {
            "id": view_id,
            "team_id": self.team_id,
            "type": "modal",
            "blocks": [],
            "private_metadata": "",
            "callback_id": "",
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "title": {"type": "plain_text", "text": "Modal"},
            "clear_on_close": False,
            "notify_on_close": False,
            "close": None,
            "submit": None,
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": self.api_app_id,
            "external_id": "",
            "app_installed_team_id": self.team_id,
            "bot_id": "B0001",
        }
        full.update({k: v for k, v in view.items() if k != "state"})
        full["state"] = {"values": dict(values)}
        return full


def _iter_elements(blocks: Any) -> list[tuple[str | None, dict[str, Any]]]:
    found: list[tuple[str | None, dict[str, Any]]] = []
    for block in blocks if isinstance(blocks, list) else []:
        if not isinstance(block, dict):
            continue
        candidates = [*(block.get("elements") or []), block.get("accessory"), block.get("element")]
        found += [(block.get("block_id"), e) for e in candidates if isinstance(e, dict)]
    return found


def _find_block_id(blocks: Any, action_id: str) -> str | None:
    return next((bid for bid, e in _iter_elements(blocks) if e.get("action_id") == action_id), None)


def _button_label(blocks: Any, action_id: str) -> str:
    for _, element in _iter_elements(blocks):
        if element.get("action_id") == action_id and isinstance(element.get("text"), dict):
            return str(element["text"].get("text", action_id))
    return action_id
