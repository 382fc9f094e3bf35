"""A fake Slack Web API and response-URL endpoint, served by a real aiohttp app, for tests and the demo.

Owns: ``FakeSlack`` (channel, thread, reaction, ephemeral and view state; a record of every Web API call;
queued faults and outages; a human-readable transcript) and ``create_app(fake)`` serving
``POST|GET /api/{method}`` and ``POST /respond/{key}``.
Must not import: ``bridge``, ``handlers``, ``bot``, ``sw_api`` — it plays Slack and must not know the app.

Point ``slack_sdk``'s ``AsyncWebClient(base_url=<server>/api/)`` at it. Requests are read the way Slack reads
them: query string, form body (``blocks``/``attachments``/``view`` may be JSON strings) or JSON body, token in
``Authorization: Bearer`` (or a ``token`` field). Errors come back like Slack's: HTTP 200 with
``{"ok": false, "error": ...}``; faults queued with ``add_response`` or ``outage`` use the given status.
The fake is deliberately a little stricter than Slack where leniency would hide a bug in the app: a
``thread_ts`` that names no message is ``thread_not_found`` rather than a silent orphan.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

from demo.fake_slack_downloads import FakeFiles

_DATE_TOKEN = re.compile(r"<!date\^[^|>]*\|([^>]*)>")
logger = logging.getLogger(__name__)

DEFAULT_USERS: Final[Mapping[str, str]] = MappingProxyType(
    {"UBOT": "sms-bridge", "U0ALICE": "alice", "U0BOB": "bob", "U0CAROL": "carol"}
)
DEFAULT_CHANNELS: Final[Mapping[str, str]] = MappingProxyType(
    {"C0GENERAL": "general", "C0SUPPORT": "support", "G0PRIVATE": "ops-private"}
)
RESPONSE_URL: Final = "response_url"
"""Pseudo method name for ``add_response``: queues a fault for the next POSTs to a response URL."""

# 2023-11-15 10:00:00 UTC, so transcripts read as a morning's session; each new ts is one second later,
# which keeps ts unique, increasing and the rendered times deterministic.
_EPOCH: Final = 1_700_042_400
_MAX_TEXT: Final = 40_000
_MAX_MESSAGE_BLOCKS: Final = 50
_MAX_VIEW_BLOCKS: Final = 100
_RESPONSE_URL_USES: Final = 5
_JSON_FIELDS: Final = ("blocks", "attachments", "view", "metadata", "options")

# Which bot scope each method needs (any one of the set). Only enforced when FakeSlack(scopes=...) is given.
_SCOPES: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "chat.postMessage": frozenset({"chat:write"}),
        "chat.update": frozenset({"chat:write"}),
        "chat.delete": frozenset({"chat:write"}),
        "chat.postEphemeral": frozenset({"chat:write"}),
        "reactions.add": frozenset({"reactions:write"}),
        "reactions.remove": frozenset({"reactions:write"}),
        "users.info": frozenset({"users:read"}),
        "conversations.info": frozenset({"channels:read", "groups:read", "im:read", "mpim:read"}),
        "conversations.join": frozenset({"channels:join"}),
        "conversations.history": frozenset({"channels:history", "groups:history", "im:history", "mpim:history"}),
        "conversations.replies": frozenset({"channels:history", "groups:history", "im:history", "mpim:history"}),
        "files.info": frozenset({"files:read"}),  # -- issue 11
        "conversations.open": frozenset({"im:write"}),  # -- issue 12: the DM a contacts import / export goes to
    }
)


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One Web API request as the fake received it (``at`` is ``time.monotonic()``; token removed)."""

    method: str
    payload: dict[str, Any]
    at: float
    status: int
    http_verb: str = "POST"


@dataclass(slots=True)
class SlackMessage:
    """A message in a channel or thread. ``edited`` counts ``chat.update`` calls; ``reactions`` maps
    emoji name to the users who added it."""

    channel: str
    ts: str
    text: str
    user: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    thread_ts: str | None = None
    replies: list[SlackMessage] = field(default_factory=list)
    reactions: dict[str, list[str]] = field(default_factory=dict)
    edited: int = 0
    bot_id: str | None = None
    metadata: dict[str, Any] | None = None
    reply_broadcast: bool = False
    team: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The message object as Slack returns it (and as it appears in a block_actions ``message``)."""
        out: dict[str, Any] = {"type": "message", "ts": self.ts, "text": self.text, "user": self.user}
        if self.team:
            out["team"] = self.team
        if self.bot_id:
            out["bot_id"] = self.bot_id
            out["app_id"] = "A0001"
        if self.blocks:
            out["blocks"] = self.blocks
        if self.attachments:
            out["attachments"] = self.attachments
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        if self.replies:
            out["reply_count"] = len(self.replies)
            out["latest_reply"] = self.replies[-1].ts
        if self.edited:
            out["edited"] = {"user": self.user, "ts": self.ts}
        if self.reactions:
            out["reactions"] = [
                {"name": name, "users": list(users), "count": len(users)} for name, users in self.reactions.items()
            ]
        if self.metadata:
            out["metadata"] = self.metadata
        return out


@dataclass(slots=True)
class _Channel:
    id: str
    name: str
    is_member: bool = False
    messages: list[SlackMessage] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


class SlackError(Exception):
    """Raised inside method handlers to answer ``{"ok": false, "error": code, **extra}``."""

    def __init__(self, code: str, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.extra = extra


def _default_fault_body(status: int) -> dict[str, Any]:
    if status == 429:
        return {"ok": False, "error": "ratelimited"}
    if status == 200:
        return {"ok": True}
    if status >= 500:
        return {"ok": False, "error": "service_unavailable" if status == 503 else "fatal_error"}
    return {"ok": False, "error": f"http_{status}"}


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes"}
    return bool(value)


def _ts_key(ts: str) -> tuple[int, int]:
    whole, _, frac = ts.partition(".")
    return int(whole), int(frac or 0)


def _invalid(messages: list[str], code: str) -> None:
    if messages:
        raise SlackError(code, response_metadata={"messages": messages})


def _plain_len(obj: Any) -> int:
    return len(obj.get("text", "")) if isinstance(obj, dict) else 0


def _check_blocks(blocks: Any, limit: int, pointer: str) -> list[str]:
    """The Block Kit limits the app is most likely to trip, reported in Slack's ``[ERROR] ...`` style."""
    if not isinstance(blocks, list):
        return [f"[ERROR] must be an array [json-pointer:{pointer}]"]
    errors: list[str] = []
    if len(blocks) > limit:
        errors.append(f"[ERROR] no more than {limit} items allowed [json-pointer:{pointer}]")
    seen_block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"{pointer}/{i}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            errors.append(f"[ERROR] missing required field: type [json-pointer:{where}]")
            continue
        block_id = block.get("block_id")
        if isinstance(block_id, str) and len(block_id) > 255:
            errors.append(f"[ERROR] must be less than 256 characters [json-pointer:{where}/block_id]")
        if isinstance(block_id, str):
            if block_id in seen_block_ids:
                errors.append(f"[ERROR] duplicate block_id [json-pointer:{where}/block_id]")
            seen_block_ids.add(block_id)
        kind = block["type"]
        if kind == "section":
            if "text" not in block and "fields" not in block:
                errors.append(f"[ERROR] must provide text or fields [json-pointer:{where}]")
            if _plain_len(block.get("text")) > 3000:
                errors.append(f"[ERROR] must be less than 3001 characters [json-pointer:{where}/text/text]")
            fields = block.get("fields")
            if fields is not None:
                if not isinstance(fields, list) or len(fields) > 10:
                    errors.append(f"[ERROR] no more than 10 items allowed [json-pointer:{where}/fields]")
                else:
                    for j, item in enumerate(fields):
                        if _plain_len(item) > 2000:
                            errors.append(f"[ERROR] must be less than 2001 characters "
                                          f"[json-pointer:{where}/fields/{j}/text]")
        elif kind == "context":
            elements = block.get("elements", [])
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                errors.append(f"[ERROR] must have 1 to 10 elements [json-pointer:{where}/elements]")
                continue
            for j, element in enumerate(elements):
                if _plain_len(element) > 3000:
                    errors.append(f"[ERROR] must be less than 3001 characters [json-pointer:{where}/elements/{j}/text]")
        elif kind == "header" and _plain_len(block.get("text")) > 150:
            errors.append(f"[ERROR] must be less than 151 characters [json-pointer:{where}/text/text]")
        elif kind == "actions":
            elements = block.get("elements", [])
            if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
                errors.append(f"[ERROR] must have 1 to 25 elements [json-pointer:{where}/elements]")
                continue
            action_ids = [e.get("action_id") for e in elements if isinstance(e, dict) and e.get("action_id")]
            if len(action_ids) != len(set(action_ids)):
                errors.append(f"[ERROR] duplicate action_id [json-pointer:{where}/elements]")
            for j, element in enumerate(elements):
                if isinstance(element, dict) and _plain_len(element.get("text")) > 75:
                    pointer_j = f"{where}/elements/{j}/text/text"
                    errors.append(f"[ERROR] must be less than 76 characters [json-pointer:{pointer_j}]")
                if isinstance(element, dict) and len(str(element.get("value", ""))) > 2000:
                    pointer_j = f"{where}/elements/{j}/value"
                    errors.append(f"[ERROR] must be less than 2001 characters [json-pointer:{pointer_j}]")
        elif kind == "input" and "element" not in block:
            errors.append(f"[ERROR] missing required field: element [json-pointer:{where}]")
    return errors


def _check_view(view: Any) -> dict[str, Any]:
    if not isinstance(view, dict):
        raise SlackError("invalid_arguments", response_metadata={"messages": ["[ERROR] missing view"]})
    errors: list[str] = []
    kind = view.get("type")
    if kind not in {"modal", "home"}:
        errors.append("[ERROR] must be one of modal, home [json-pointer:/view/type]")
    if kind == "modal":
        if not isinstance(view.get("title"), dict):
            errors.append("[ERROR] missing required field: title [json-pointer:/view/title]")
        for key in ("title", "submit", "close"):
            if _plain_len(view.get(key)) > 24:
                errors.append(f"[ERROR] must be less than 25 characters [json-pointer:/view/{key}/text]")
        blocks = view.get("blocks", [])
        if (
            isinstance(blocks, list)
            and "submit" not in view
            and any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
        ):
            errors.append("[ERROR] submit is required when an input block is used [json-pointer:/view/submit]")
    errors += _check_blocks(view.get("blocks", []), _MAX_VIEW_BLOCKS, "/view/blocks")
    if len(str(view.get("private_metadata", ""))) > 3000:
        errors.append("[ERROR] must be less than 3001 characters [json-pointer:/view/private_metadata]")
    for key in ("callback_id", "external_id"):
        if len(str(view.get(key, ""))) > 255:
            errors.append(f"[ERROR] must be less than 256 characters [json-pointer:/view/{key}]")
    _invalid(errors, "invalid_arguments")
    return view


DEFAULT_TZ = "America/New_York"


def _tz_offset(name: str) -> int:
    """Seconds east of UTC right now in zone ``name`` (Slack's ``tz_offset``)."""
    offset = datetime.now(ZoneInfo(name)).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


class FakeSlack:
    """Slack's side of the conversation: state, call log, faults. Serve it with ``create_app(fake)``.

    ``users`` maps user id to display name (the bot's own id included); ``channels`` maps channel id to
    name. Channel ids not listed are accepted on first use if they start with C, G or D, as Slack would
    for channels the app can see. ``scopes``, when given, makes methods answer ``missing_scope`` like a
    real install that lacks them. Set ``base_url`` (the server's root URL) before asking for
    ``response_url``.
    """

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-fake",
        team_id: str = "T0001",
        bot_user_id: str = "UBOT",
        users: Mapping[str, str] = DEFAULT_USERS,
        channels: Mapping[str, str] = DEFAULT_CHANNELS,
        bot_id: str = "B0001",
        team_domain: str = "fake-workspace",
        scopes: Iterable[str] | None = None,
    ) -> None:
        self.bot_token = bot_token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.team_domain = team_domain
        self.users: dict[str, str] = dict(users)
        self.users.setdefault(bot_user_id, "sms-bridge")
        # -- issue 12: each user's IANA time zone as users.info gives it (``set_user_tz``); default New York.
        self.user_tz: dict[str, str] = {}
        self.scopes: frozenset[str] | None = frozenset(scopes) if scopes is not None else None
        self.base_url: str | None = None
        self.calls: list[ApiCall] = []
        self.ephemerals: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []
        self.views: dict[str, dict[str, Any]] = {}
        self._channels: dict[str, _Channel] = {cid: _Channel(cid, name) for cid, name in channels.items()}
        self._index: dict[tuple[str, str], SlackMessage] = {}
        self._faults: dict[str, deque[_Reply]] = {}
        self._outage_until = 0.0
        self._outage_status = 503
        self._tick = itertools.count(1)
        self._ids = itertools.count(1)
        self._response_url_uses: dict[str, int] = {}
        self._home_views: dict[str, str] = {}
        # Socket Mode: apps.connections.open (app-level token) hands out /socket; envelopes go down, acks come up.
        self.app_token = "xapp-fake"
        self.socket_acks: dict[str, Any] = {}
        self._sockets: list[web.WebSocketResponse] = []
        self._ack_waiters: dict[str, asyncio.Future[Any]] = {}
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "users.info": self._users_info,
            "conversations.info": self._conversations_info,
            "conversations.join": self._conversations_join,
            "conversations.open": self._conversations_open,  # -- issue 12
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
        }
        self.files = FakeFiles(self)  # -- issue 11: file hosting (demo.fake_slack_downloads)
        # -- issue 11: mms-in. The upload flow lives in its own module (which imports this one, hence imported here).
        from demo.fake_slack_uploads import FakeUploads

        self.uploads = FakeUploads(self)

    # ----- inspection -------------------------------------------------------------------------------

    def set_user_tz(self, user_id: str, tz: str) -> None:
        """-- issue 12: what ``users.info`` says ``user_id``'s time zone is (an IANA name); adds unknown users."""
        self.users.setdefault(user_id, user_id.lower())
        self.user_tz[user_id] = tz

    def called(self, method: str) -> bool:
        return any(c.method == method for c in self.calls)

    def call_count(self, method: str) -> int:
        return sum(1 for c in self.calls if c.method == method)

    def get_payload(self, method: str, index: int = -1) -> dict[str, Any]:
        """Payload of the ``index``-th call of ``method`` (negative counts from the latest)."""
        matching = [c.payload for c in self.calls if c.method == method]
        if not matching:
            raise LookupError(f"{method} was never called; calls so far: {[c.method for c in self.calls]}")
        return matching[index]

    def home_view(self, user: str) -> dict[str, Any] | None:
        """-- issue 12: the Home tab last published for ``user`` with views.publish (None if never)."""
        view_id = self._home_views.get(user)
        return None if view_id is None else self.views[view_id]

    def messages(self, channel: str) -> list[SlackMessage]:
        """Top-level messages of a channel (id, name or #name), oldest first; unknown channel → []."""
        found = self._lookup_channel(channel)
        return list(found.messages) if found else []

    def thread(self, channel: str, ts: str) -> list[SlackMessage]:
        """Replies under the message ``ts`` (the parent itself excluded), oldest first."""
        found = self._lookup_channel(channel)
        parent = self._index.get((found.id, ts)) if found else None
        return list(parent.replies) if parent else []

    def message(self, channel: str, ts: str) -> SlackMessage | None:
        found = self._lookup_channel(channel)
        return self._index.get((found.id, ts)) if found else None

    @property
    def response_url_base(self) -> str:
        """Prefix for response URLs; give it to ``SlackDriver(response_url_base=...)``."""
        if self.base_url is None:
            raise RuntimeError("set FakeSlack.base_url to the server's root URL first")
        return self.base_url.rstrip("/") + "/respond"

    def response_url(
        self,
        key: str = "r1",
        *,
        channel: str | None = None,
        user: str | None = None,
        message_ts: str | None = None,
    ) -> str:
        """An absolute URL on this server that records POSTs like a Slack response_url.

        ``channel``/``user`` say where an ephemeral reply shows; ``message_ts`` is the message that
        ``replace_original``/``delete_original`` act on (a block action's source message).
        """
        query = {k: v for k, v in (("channel", channel), ("user", user), ("message_ts", message_ts)) if v}
        return f"{self.response_url_base}/{key}" + (f"?{urlencode(query)}" if query else "")

    # ----- faults -----------------------------------------------------------------------------------

    def add_response(
        self,
        method: str,
        *,
        status: int = 200,
        body: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        count: int = 1,
    ) -> None:
        """Answer the next ``count`` calls of ``method`` with this instead of the normal behaviour.

        Nothing changes state while a canned answer is served. A 429 without a ``Retry-After`` header
        gets ``Retry-After: 1`` as Slack always sends one. ``method`` may be ``RESPONSE_URL``.
        """
        merged = dict(headers or {})
        if status == 429 and not any(k.lower() == "retry-after" for k in merged):
            merged["Retry-After"] = "1"
        reply = _Reply(status, body if body is not None else _default_fault_body(status), merged)
        self._faults.setdefault(method, deque()).extend([reply] * count)

    def outage(self, seconds: float, status: int = 503) -> None:
        """Every Web API method fails with ``status`` for the next ``seconds`` (response URLs unaffected)."""
        self._outage_until = time.monotonic() + seconds
        self._outage_status = status

    def clear_faults(self) -> None:
        self._faults.clear()
        self._outage_until = 0.0

    # ----- scripting the humans ---------------------------------------------------------------------

    def post_user_message(self, channel: str, user: str, text: str, *, thread_ts: str | None = None) -> dict[str, Any]:
        """A person posts in Slack; returns the Events API ``message`` event for ``SlackDriver.event``."""
        chan = self._channel(channel)
        parent = self._parent(chan.id, thread_ts) if thread_ts else None
        msg = SlackMessage(chan.id, self._next_ts(), text, user, team=self.team_id)
        msg.blocks = [
            {
                "type": "rich_text",
                "block_id": f"rt{next(self._ids)}",
                "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}],
            }
        ]
        self._store(chan, msg, parent)
        event: dict[str, Any] = {
            "type": "message",
            "channel": chan.id,
            "user": user,
            "text": text,
            "ts": msg.ts,
            "event_ts": msg.ts,
            "channel_type": {"C": "channel", "G": "group", "D": "im"}.get(chan.id[:1], "channel"),
            "team": self.team_id,
            "client_msg_id": f"00000000-0000-4000-8000-{next(self._ids):012d}",
            "blocks": msg.blocks,
        }
        if parent is not None:
            event["thread_ts"] = parent.ts
            event["parent_user_id"] = parent.user
        return event

    # ----- dispatch (used by the aiohttp handlers) --------------------------------------------------

    def handle(self, method: str, payload: dict[str, Any], token: str | None, http_verb: str = "POST") -> _Reply:
        """Answer one Web API call and record it."""
        reply = self._answer(method, payload, token)
        self.calls.append(ApiCall(method, payload, time.monotonic(), reply.status, http_verb))
        logger.debug("fake slack %s -> %s %s", method, reply.status, reply.body.get("error", "ok"))
        return reply

    def _answer(self, method: str, payload: dict[str, Any], token: str | None) -> _Reply:
        now = time.monotonic()
        if now < self._outage_until:
            headers: dict[str, str] = {}
            if self._outage_status == 429:
                headers["Retry-After"] = str(max(1, math.ceil(self._outage_until - now)))
            return _Reply(self._outage_status, _default_fault_body(self._outage_status), headers)
        queued = self._faults.get(method)
        if queued:
            return queued.popleft()
        if method == "apps.connections.open":
            if token != self.app_token:
                return _Reply(200, {"ok": False, "error": "invalid_auth"})
            if self.base_url is None:
                raise RuntimeError("set FakeSlack.base_url before using Socket Mode")
            return _Reply(200, {"ok": True, "url": self.base_url.replace("http", "ws", 1).rstrip("/") + "/socket"})
        if not token:
            return _Reply(200, {"ok": False, "error": "not_authed"})
        if token != self.bot_token:
            return _Reply(200, {"ok": False, "error": "invalid_auth"})
        handler = self._handlers.get(method)
        if handler is None:
            return _Reply(200, {"ok": False, "error": "unknown_method", "req_method": method})
        needed = _SCOPES.get(method)
        if self.scopes is not None and needed and not needed & self.scopes:
            return _Reply(
                200,
                {
                    "ok": False,
                    "error": "missing_scope",
                    "needed": ",".join(sorted(needed)),
                    "provided": ",".join(sorted(self.scopes)),
                },
            )
        try:
            return _Reply(200, {"ok": True, **handler(payload)})
        except SlackError as err:
            return _Reply(200, {"ok": False, "error": err.code, **err.extra})

    def handle_response_url(self, key: str, context: Mapping[str, str], body: Any) -> _Reply:
        """A POST to a response URL, as Bolt's ``respond()`` sends it.

        ``via=ack`` in the query marks the driver showing a slash command's ack body, which Slack displays
        like a response but which the app never POSTed: it is shown, not counted in ``responses``.
        """
        is_ack = context.get("via") == "ack"
        queued = None if is_ack else self._faults.get(RESPONSE_URL)
        if queued:
            return queued.popleft()
        if not is_ack:
            uses = self._response_url_uses.get(key, 0) + 1
            self._response_url_uses[key] = uses
            if uses > _RESPONSE_URL_USES:
                return _Reply(404, {"ok": False, "error": "used_url"})
        if not isinstance(body, dict):
            return _Reply(400, {"ok": False, "error": "invalid_payload"})
        channel, user, source_ts = context.get("channel"), context.get("user"), context.get("message_ts")
        if not is_ack:
            self.responses.append({**body, "key": key, "channel": channel, "user": user})
        source = self._index.get((channel, source_ts)) if channel and source_ts else None
        blocks = body.get("blocks") or []
        if _truthy(body.get("delete_original")) and source is not None:
            self._delete(source)
        elif _truthy(body.get("replace_original")) and source is not None:
            source.text = str(body.get("text", ""))
            source.blocks = list(blocks)
            source.edited += 1
        elif body.get("response_type") == "in_channel" and channel:
            chan = self._channel(channel)
            parent = self._parent(chan.id, body["thread_ts"]) if body.get("thread_ts") else None
            msg = SlackMessage(chan.id, self._next_ts(), str(body.get("text", "")), self.bot_user_id)
            msg.blocks, msg.bot_id, msg.team = list(blocks), self.bot_id, self.team_id
            self._store(chan, msg, parent)
        else:
            self.ephemerals.append(
                {
                    "channel": channel,
                    "user": user,
                    "text": body.get("text", ""),
                    "blocks": blocks,
                    "ts": self._next_ts(),
                    "thread_ts": None,
                    "source": "ack" if is_ack else RESPONSE_URL,
                }
            )
        return _Reply(200, {"ok": True})

    # ----- state helpers ----------------------------------------------------------------------------

    def _next_ts(self) -> str:
        return f"{_EPOCH + next(self._tick)}.000100"

    def _lookup_channel(self, ref: str) -> _Channel | None:
        ref = ref.lstrip("#")
        if ref in self._channels:
            return self._channels[ref]
        return next((c for c in self._channels.values() if c.name == ref), None)

    def _channel(self, ref: Any) -> _Channel:
        if not isinstance(ref, str) or not ref:
            raise SlackError("channel_not_found")
        found = self._lookup_channel(ref)
        if found is not None:
            return found
        if ref[0] in "CGD" and ref[1:].isalnum() and ref.upper() == ref:
            created = _Channel(ref, ref.lower())
            self._channels[ref] = created
            return created
        raise SlackError("channel_not_found")

    def _parent(self, channel_id: str, thread_ts: Any) -> SlackMessage:
        found = self._index.get((channel_id, str(thread_ts)))
        if found is None:
            raise SlackError("thread_not_found")
        # Replying to a reply lands in the same thread, as in Slack.
        if found.thread_ts and found.thread_ts != found.ts:
            return self._index[(channel_id, found.thread_ts)]
        return found

    def _store(self, chan: _Channel, msg: SlackMessage, parent: SlackMessage | None) -> None:
        if parent is None:
            chan.messages.append(msg)
        else:
            msg.thread_ts = parent.ts
            parent.thread_ts = parent.ts
            parent.replies.append(msg)
        self._index[(chan.id, msg.ts)] = msg

    def _delete(self, msg: SlackMessage) -> None:
        chan = self._channels[msg.channel]
        self._index.pop((msg.channel, msg.ts), None)
        if msg.thread_ts and msg.thread_ts != msg.ts:
            parent = self._index.get((msg.channel, msg.thread_ts))
            if parent is not None:
                parent.replies.remove(msg)
        else:
            chan.messages.remove(msg)
            for reply in msg.replies:
                self._index.pop((msg.channel, reply.ts), None)

    def _existing(self, payload: dict[str, Any], ts_field: str) -> SlackMessage:
        chan = self._channel(payload.get("channel"))
        msg = self._index.get((chan.id, str(payload.get(ts_field, ""))))
        if msg is None:
            raise SlackError("message_not_found")
        return msg

    def _channel_info(self, chan: _Channel) -> dict[str, Any]:
        kind = chan.id[:1]
        return {
            "id": chan.id,
            "name": chan.name,
            "is_channel": kind == "C",
            "is_group": kind == "G",
            "is_im": kind == "D",
            "is_private": kind in "GD",
            "is_archived": False,
            "is_general": chan.name == "general",
            "is_member": chan.is_member,
            "context_team_id": self.team_id,
            "created": _EPOCH,
        }

    # ----- Web API methods --------------------------------------------------------------------------

    def _auth_test(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": "Fake Workspace",
            "user": self.users[self.bot_user_id],
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _message_content(self, payload: dict[str, Any], *, required: bool) -> tuple[str, list[Any], list[Any]]:
        text, blocks, attachments = payload.get("text"), payload.get("blocks"), payload.get("attachments")
        if required and not text and not blocks and not attachments:
            raise SlackError("no_text")
        if text is not None and len(str(text)) > _MAX_TEXT:
            raise SlackError("msg_too_long")
        if blocks is not None:
            if isinstance(blocks, str):  # a form field that was not valid JSON
                raise SlackError("invalid_blocks_format")
            _invalid(_check_blocks(blocks, _MAX_MESSAGE_BLOCKS, "/blocks"), "invalid_blocks")
        if attachments is not None and not isinstance(attachments, list):
            raise SlackError("invalid_attachments")
        return str(text or ""), list(blocks or []), list(attachments or [])

    def _chat_post_message(self, payload: dict[str, Any]) -> dict[str, Any]:
        chan = self._channel(payload.get("channel"))
        if (
            self.scopes is not None
            and chan.id.startswith("C")
            and not chan.is_member
            and "chat:write.public" not in self.scopes
        ):
            raise SlackError("not_in_channel")
        text, blocks, attachments = self._message_content(payload, required=True)
        parent = self._parent(chan.id, payload["thread_ts"]) if payload.get("thread_ts") else None
        msg = SlackMessage(
            chan.id,
            self._next_ts(),
            text,
            self.bot_user_id,
            blocks=blocks,
            attachments=attachments,
            bot_id=self.bot_id,
            metadata=payload.get("metadata") if isinstance(payload.get("metadata"), dict) else None,
            reply_broadcast=_truthy(payload.get("reply_broadcast")),
            team=self.team_id,
        )
        self._store(chan, msg, parent)
        return {"channel": chan.id, "ts": msg.ts, "message": msg.as_dict()}

    def _chat_update(self, payload: dict[str, Any]) -> dict[str, Any]:
        msg = self._existing(payload, "ts")
        if msg.user != self.bot_user_id:
            raise SlackError("cant_update_message")
        text, blocks, attachments = self._message_content(payload, required=False)
        if "text" in payload:
            msg.text = text
        if "blocks" in payload:
            msg.blocks = blocks
        if "attachments" in payload:
            msg.attachments = attachments
        msg.edited += 1
        return {"channel": msg.channel, "ts": msg.ts, "text": msg.text, "message": msg.as_dict()}

    def _chat_delete(self, payload: dict[str, Any]) -> dict[str, Any]:
        msg = self._existing(payload, "ts")
        if msg.user != self.bot_user_id:
            raise SlackError("cant_delete_message")
        self._delete(msg)
        return {"channel": msg.channel, "ts": msg.ts}

    def _chat_post_ephemeral(self, payload: dict[str, Any]) -> dict[str, Any]:
        chan = self._channel(payload.get("channel"))
        user = payload.get("user")
        if not user:
            raise SlackError("user_not_found")
        text, blocks, _ = self._message_content(payload, required=True)
        ts = self._next_ts()
        self.ephemerals.append(
            {
                "channel": chan.id,
                "user": user,
                "text": text,
                "blocks": blocks,
                "ts": ts,
                "thread_ts": payload.get("thread_ts"),
                "source": "chat.postEphemeral",
            }
        )
        return {"message_ts": ts}

    def _chat_get_permalink(self, payload: dict[str, Any]) -> dict[str, Any]:
        msg = self._existing(payload, "message_ts")
        link = f"https://{self.team_domain}.slack.com/archives/{msg.channel}/p{msg.ts.replace('.', '')}"
        if msg.thread_ts and msg.thread_ts != msg.ts:
            link += f"?thread_ts={msg.thread_ts}&cid={msg.channel}"
        return {"channel": msg.channel, "permalink": link}

    def _new_view(self, view: dict[str, Any], *, view_id: str | None = None, root: str | None = None) -> dict[str, Any]:
        view_id = view_id or f"V{next(self._ids):010d}"
        stored = {
            "id": view_id,
            "team_id": self.team_id,
            "type": view.get("type"),
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{_EPOCH + next(self._tick)}.{next(self._ids):08x}",
            "title": view.get("title"),
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "close": view.get("close"),
            "submit": view.get("submit"),
            "previous_view_id": None,
            "root_view_id": root or view_id,
            "app_id": "A0001",
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        self.views[view_id] = stored
        return stored

    def _require_trigger(self, payload: dict[str, Any]) -> None:
        if not payload.get("trigger_id"):
            raise SlackError("invalid_trigger_id")

    def _views_open(self, payload: dict[str, Any]) -> dict[str, Any]:
        self._require_trigger(payload)
        return {"view": self._new_view(_check_view(payload.get("view")))}

    def _views_push(self, payload: dict[str, Any]) -> dict[str, Any]:
        self._require_trigger(payload)
        return {"view": self._new_view(_check_view(payload.get("view")))}

    def _views_update(self, payload: dict[str, Any]) -> dict[str, Any]:
        view = _check_view(payload.get("view"))
        view_id, external_id = payload.get("view_id"), payload.get("external_id")
        if not view_id and not external_id:
            raise SlackError("invalid_arguments", response_metadata={"messages": ["view_id or external_id"]})
        current = (
            self.views.get(str(view_id))
            if view_id
            else next((v for v in self.views.values() if external_id and v.get("external_id") == external_id), None)
        )
        if current is None:
            raise SlackError("not_found")
        if payload.get("hash") and payload["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        if "external_id" not in view:  # an update that omits it keeps the view addressable by it
            view = {**view, "external_id": current["external_id"]}
        return {"view": self._new_view(view, view_id=current["id"], root=current["root_view_id"])}

    def _views_publish(self, payload: dict[str, Any]) -> dict[str, Any]:
        user = payload.get("user_id")
        if not user:
            raise SlackError("invalid_arguments", response_metadata={"messages": ["missing user_id"]})
        view = _check_view(payload.get("view"))
        stored = self._new_view(view, view_id=self._home_views.get(user))
        self._home_views[user] = stored["id"]
        return {"view": stored}

    def _reaction_target(self, payload: dict[str, Any]) -> tuple[SlackMessage, str]:
        msg = self._existing(payload, "timestamp")
        name = str(payload.get("name", ""))
        # Slack wants the bare name ("white_check_mark"); ":white_check_mark:" is invalid_name.
        if not name or ":" in name or any(ch.isspace() for ch in name):
            raise SlackError("invalid_name")
        return msg, name

    def _reactions_add(self, payload: dict[str, Any]) -> dict[str, Any]:
        msg, name = self._reaction_target(payload)
        users = msg.reactions.setdefault(name, [])
        if self.bot_user_id in users:
            raise SlackError("already_reacted")
        users.append(self.bot_user_id)
        return {}

    def _reactions_remove(self, payload: dict[str, Any]) -> dict[str, Any]:
        msg, name = self._reaction_target(payload)
        users = msg.reactions.get(name, [])
        if self.bot_user_id not in users:
            raise SlackError("no_reaction")
        users.remove(self.bot_user_id)
        if not users:
            del msg.reactions[name]
        return {}

    def _users_info(self, payload: dict[str, Any]) -> dict[str, Any]:
        user_id = payload.get("user")
        if not isinstance(user_id, str) or user_id not in self.users:
            raise SlackError("user_not_found")
        display = self.users[user_id]
        is_bot = user_id == self.bot_user_id
        return {
            "user": {
                "id": user_id,
                "team_id": self.team_id,
                "name": display.lower().replace(" ", "."),
                "deleted": False,
                "real_name": display.title() if not is_bot else display,
                "tz": self.user_tz.get(user_id, DEFAULT_TZ),
                "tz_offset": _tz_offset(self.user_tz.get(user_id, DEFAULT_TZ)),
                "is_bot": is_bot,
                "is_admin": False,
                "profile": {
                    "display_name": display,
                    "display_name_normalized": display,
                    "real_name": display.title() if not is_bot else display,
                    "real_name_normalized": display.title() if not is_bot else display,
                    "team": self.team_id,
                    **({"bot_id": self.bot_id} if is_bot else {}),
                },
            }
        }

    def _conversations_info(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"channel": self._channel_info(self._channel(payload.get("channel")))}

    def _conversations_join(self, payload: dict[str, Any]) -> dict[str, Any]:
        chan = self._channel(payload.get("channel"))
        if not chan.id.startswith("C"):
            raise SlackError("method_not_supported_for_channel_type")
        already = chan.is_member
        chan.is_member = True
        out: dict[str, Any] = {"channel": self._channel_info(chan)}
        if already:
            out["warning"] = "already_in_channel"
            out["response_metadata"] = {"warnings": ["already_in_channel"]}
        return out

    def _conversations_open(self, payload: dict[str, Any]) -> dict[str, Any]:
        """-- issue 12: the bot's DM with one user (``users``): the same ``D…`` id every time."""
        users = str(payload.get("users") or "")
        if not users or "," in users:
            raise SlackError("invalid_arguments" if not users else "not_implemented")
        if users not in self.users:
            raise SlackError("user_not_found")
        chan = self._channel(f"D{users}")
        already = chan.is_member
        chan.is_member = True
        out: dict[str, Any] = {"channel": {"id": chan.id}}
        if already:
            out["already_open"] = True
        return out

    def _listing(self, messages: list[SlackMessage], payload: dict[str, Any]) -> dict[str, Any]:
        # Newest first, like Slack; metadata only with include_all_metadata, like Slack.
        with_metadata = _truthy(payload.get("include_all_metadata"))
        limit = int(payload.get("limit") or 100)
        listed = []
        for msg in sorted(messages, key=lambda m: _ts_key(m.ts), reverse=True)[:limit]:
            item = msg.as_dict()
            if not with_metadata:
                item.pop("metadata", None)
            listed.append(item)
        return {"messages": listed, "has_more": len(messages) > limit}

    def _conversations_history(self, payload: dict[str, Any]) -> dict[str, Any]:
        chan = self._channel(payload.get("channel"))
        return self._listing(list(chan.messages), payload)

    def _conversations_replies(self, payload: dict[str, Any]) -> dict[str, Any]:
        chan = self._channel(payload.get("channel"))
        parent = self._parent(chan.id, payload.get("ts"))
        return self._listing([parent, *parent.replies], payload)

    # ----- transcript -------------------------------------------------------------------------------

    def transcript(self, channel: str | None = None) -> str:
        """What a person would see: channels, threads (↳), reactions, edits and ephemerals, in ts order."""
        if channel is not None:
            found = self._lookup_channel(channel)
            chans = [found] if found else []
        else:
            chans = [c for c in self._channels.values() if c.messages or self._ephemerals_in(c.id)]
            chans.sort(key=self._first_activity)
        sections = [self._render_channel(c) for c in chans]
        if channel is None:
            stray = [e for e in self.ephemerals if not e.get("channel")]
            if stray:
                sections.append("\n".join(["(no channel)", *(self._render_ephemeral(e, "") for e in stray)]))
        return "\n\n".join(sections) + ("\n" if sections else "")

    def _first_activity(self, chan: _Channel) -> tuple[int, int]:
        stamps = [m.ts for m in chan.messages] + [e["ts"] for e in self._ephemerals_in(chan.id)]
        return min(_ts_key(ts) for ts in stamps)

    def _ephemerals_in(self, channel_id: str) -> list[dict[str, Any]]:
        return [e for e in self.ephemerals if e.get("channel") == channel_id]

    def _render_channel(self, chan: _Channel) -> str:
        lines = [f"#{chan.id}"]
        ephemerals = self._ephemerals_in(chan.id)
        in_thread: dict[str, list[dict[str, Any]]] = {}
        top: list[tuple[tuple[int, int], SlackMessage | dict[str, Any]]] = [(_ts_key(m.ts), m) for m in chan.messages]
        for eph in ephemerals:
            parent_ts = eph.get("thread_ts")
            if parent_ts and (chan.id, parent_ts) in self._index:
                in_thread.setdefault(parent_ts, []).append(eph)
            else:
                top.append((_ts_key(eph["ts"]), eph))
        for _, item in sorted(top, key=lambda pair: pair[0]):
            if isinstance(item, SlackMessage):
                lines.append(self._render_message(item, ""))
                thread: list[tuple[tuple[int, int], SlackMessage | dict[str, Any]]] = [
                    (_ts_key(r.ts), r) for r in item.replies
                ]
                thread += [(_ts_key(e["ts"]), e) for e in in_thread.get(item.ts, [])]
                for _, sub in sorted(thread, key=lambda pair: pair[0]):
                    if isinstance(sub, SlackMessage):
                        lines.append(self._render_message(sub, "    ↳ "))
                    else:
                        lines.append(self._render_ephemeral(sub, "    ↳ "))
            else:
                lines.append(self._render_ephemeral(item, ""))
        return "\n".join(lines)

    def _render_message(self, msg: SlackMessage, prefix: str) -> str:
        when = datetime.fromtimestamp(_ts_key(msg.ts)[0], UTC).strftime("%H:%M:%S")
        author = self.users.get(msg.user, msg.user)
        body = (
            msg.text
            or "\n".join(_blocks_text(msg.blocks))
            or "\n".join(str(a.get("fallback") or a.get("text") or "") for a in msg.attachments)
        )
        # Slack shows a date token in the reader's time zone; a transcript shows its fallback text.
        body = _DATE_TOKEN.sub(lambda m: m.group(1), body)
        buttons = _button_labels(msg.blocks)
        if buttons:
            body = f"{body} {buttons}" if body else buttons
        if msg.edited:
            body += " (edited)"
        if msg.reply_broadcast and msg.thread_ts and msg.thread_ts != msg.ts:
            body += " (also sent to the channel)"
        if msg.reactions:
            body += "  " + " ".join(
                f":{name}: {', '.join(self.users.get(u, u) for u in users)}" for name, users in msg.reactions.items()
            )
        return _indent_continuation(f"{prefix}[{when}] {author}: ", body)

    def _render_ephemeral(self, eph: dict[str, Any], prefix: str) -> str:
        body = str(eph.get("text") or "") or "\n".join(_blocks_text(eph.get("blocks") or []))
        buttons = _button_labels(eph.get("blocks") or [])
        if buttons:
            body = f"{body} {buttons}" if body else buttons
        return _indent_continuation(f"{prefix}(ephemeral to {eph.get('user')}) ", body)


def _indent_continuation(head: str, body: str) -> str:
    first, *rest = body.split("\n") or [""]
    pad = " " * len(head)
    return "\n".join([head + first, *(pad + line for line in rest)])


def _text_of(obj: Any) -> str:
    return str(obj.get("text", "")) if isinstance(obj, dict) else ""


def _alt_text(obj: Any) -> str:
    return f"[{obj['alt_text']}]" if isinstance(obj, dict) and obj.get("alt_text") else ""


def _rich_text(element: Any) -> str:
    if isinstance(element, dict):
        if element.get("type") in {"text", "link"}:
            return str(element.get("text") or element.get("url") or "")
        if element.get("type") == "emoji":
            return f":{element.get('name', '')}:"
        return "".join(_rich_text(e) for e in element.get("elements", []))
    return ""


def _blocks_text(blocks: list[Any]) -> list[str]:
    """Visible text of section, header, context and rich_text blocks (buttons are rendered separately)."""
    lines: list[str] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind in {"section", "header"}:
            parts = [_text_of(block.get("text"))] + [_text_of(f) for f in block.get("fields", [])]
            lines.append(" | ".join(p for p in parts if p))
        elif kind == "context":
            parts = [_text_of(e) or _alt_text(e) for e in block.get("elements", [])]
            lines.append(" ".join(p for p in parts if p))
        elif kind == "rich_text":
            lines.append(_rich_text(block))
        elif kind == "image":
            lines.append(f"[image: {block.get('alt_text', '')}]")
    return [line for line in lines if line]


def _button_labels(blocks: list[Any]) -> str:
    labels: list[str] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        elements = list(block.get("elements", [])) if block.get("type") == "actions" else []
        if block.get("type") == "section" and isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        for element in elements:
            if isinstance(element, dict) and element.get("type") == "button":
                labels.append(f"[{_text_of(element.get('text'))}]")
    return " ".join(labels)


# ----- HTTP ----------------------------------------------------------------------------------------------

FAKE_SLACK: Final = web.AppKey("fake_slack", FakeSlack)


async def socket_send(fake: FakeSlack, kind: str, payload: dict[str, Any], timeout: float = 5.0) -> Any:
    """Push one Socket Mode envelope (e.g. ``slash_commands``) to the connected app and return its ack payload."""
    deadline = time.monotonic() + timeout
    while not fake._sockets:
        if time.monotonic() > deadline:
            raise TimeoutError("no Socket Mode client connected")
        await asyncio.sleep(0.02)
    envelope_id = f"env-{next(fake._ids)}"
    waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    fake._ack_waiters[envelope_id] = waiter
    await fake._sockets[-1].send_json({
        "envelope_id": envelope_id, "type": kind, "payload": payload, "accepts_response_payload": True,
        "retry_attempt": 0, "retry_reason": "",
    })
    return await asyncio.wait_for(waiter, timeout)


async def _socket(request: web.Request) -> web.WebSocketResponse:
    fake = request.app[FAKE_SLACK]
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    fake._sockets.append(ws)
    await ws.send_json({"type": "hello", "num_connections": 1, "debug_info": {"host": "fake"}})
    try:
        async for frame in ws:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                continue
            ack = json.loads(frame.data)
            envelope_id = str(ack.get("envelope_id"))
            fake.socket_acks[envelope_id] = ack.get("payload")
            waiter = fake._ack_waiters.pop(envelope_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(ack.get("payload"))
    finally:
        fake._sockets.remove(ws)
    return ws


def _decode_json_fields(payload: dict[str, Any]) -> dict[str, Any]:
    # Form-encoded calls carry blocks/attachments/view as JSON strings; Slack parses them, so do we.
    for key in _JSON_FIELDS:
        value = payload.get(key)
        if isinstance(value, str) and value[:1] in "[{":
            with contextlib.suppress(ValueError):
                payload[key] = json.loads(value)
    return payload


async def _read_payload(request: web.Request) -> dict[str, Any]:
    payload: dict[str, Any] = dict(request.query)
    if request.method != "POST" or not request.can_read_body:
        return _decode_json_fields(payload)
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise SlackError("invalid_json") from None
        if not isinstance(body, dict):
            raise SlackError("invalid_json")
        payload.update(body)
    else:
        form = await request.post()
        payload.update({k: v for k, v in form.items() if isinstance(v, str)})
    return _decode_json_fields(payload)


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def _api(request: web.Request) -> web.Response:
    fake = request.app[FAKE_SLACK]
    method = request.match_info["method"]
    try:
        payload = await _read_payload(request)
    except SlackError as err:
        fake.calls.append(ApiCall(method, {}, time.monotonic(), 200, request.method))
        return web.json_response({"ok": False, "error": err.code})
    form_token = payload.pop("token", None)
    token = _bearer(request) or (form_token if isinstance(form_token, str) else None)
    reply = fake.handle(method, payload, token, request.method)
    return web.json_response(reply.body, status=reply.status, headers=dict(reply.headers))


async def _respond(request: web.Request) -> web.Response:
    fake = request.app[FAKE_SLACK]
    try:
        body: Any = await request.json()
    except ValueError:
        body = None
    reply = fake.handle_response_url(request.match_info["key"], request.query, body)
    return web.json_response(reply.body, status=reply.status, headers=dict(reply.headers))


def create_app(fake: FakeSlack) -> web.Application:
    """The fake's HTTP face: ``/api/{method}`` (GET or POST, like slack.com/api) and ``/respond/{key}``."""
    app = web.Application()
    app[FAKE_SLACK] = fake
    app.router.add_route("POST", "/api/{method}", _api)
    app.router.add_route("GET", "/api/{method}", _api)
    app.router.add_post("/respond/{key}", _respond)
    app.router.add_get("/socket", _socket)
    fake.files.install(app)  # -- issue 11: GET /files/{id}/{name}
    fake.uploads.add_routes(app)  # issue 11: mms-in
    return app
