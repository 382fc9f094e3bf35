"""The bridge's configuration: one frozen object built from the environment, read in exactly this place.

Owns: every environment variable's name, default, validation and example value; masking secrets in ``repr``.
Must not import: aiohttp, Slack packages, ``handlers``. ``bot.py`` calls ``Config.from_env`` once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import phonenumbers

from bridge.compliance import (
    DEFAULT_BRAND,
    DEFAULT_CONTACT,
    DEFAULT_HELP_TEXT,
    DEFAULT_START_TEXT,
    DEFAULT_STOP_TEXT,
    ComplianceTexts,
)
from bridge.model import AutoReplyKind
from bridge.quiet_hours import DEFAULT_QUIET_HOURS, QuietHours, parse_quiet_hours
from sw_api.media_policy import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT_SECONDS, MB, parse_media_hosts
from sw_api.sansio import base_url_for_space
from sw_api.text import InvalidNumber, normalize_sender

SIMULATOR = "simulator"


class ConfigError(ValueError):
    """One variable is missing or malformed. ``str()`` is the one line start-up prints."""

    def __init__(self, name: str, problem: str, example: str) -> None:
        super().__init__(f"{name} {problem} (example: {name}={example})")
        self.name = name


def _secret_repr(value: str) -> str:
    return "''" if not value else f"'{value[:4]}…'"


@dataclass(frozen=True)
class Config:
    slack_bot_token: str = field(repr=False)
    slack_signing_secret: str = field(repr=False)
    signalwire_space_url: str
    signalwire_project_id: str
    signalwire_api_token: str = field(repr=False)
    from_numbers: tuple[str, ...]
    public_url: str
    slack_app_token: str = field(default="", repr=False)
    slack_api_url: str = "https://slack.com/api/"
    signalwire_signing_key: str = field(default="", repr=False)
    # SIGNALWIRE_ALLOW_UNSIGNED_WEBHOOKS=true: the operator accepts unsigned webhooks (warned at every start).
    allow_unsigned_webhooks: bool = False
    host: str = "0.0.0.0"
    port: int = 3000
    database_url: str = "sqlite:///data/sms-bridge.db"
    default_region: str = "US"
    inbound_channel: str = ""
    number_channels: Mapping[str, str] = field(default_factory=dict)
    allowed_users: tuple[str, ...] = ()  # empty: everyone may send
    allowed_channels: tuple[str, ...] = ()  # empty: every channel
    rate_limit_per_user: int = 20  # sends per user per sliding minute
    signalwire_timeout: float = 15.0
    reconcile_grace: float = 60.0
    stuck_after: float = 900.0
    sweep_interval: float = 2.0
    reply_resume_after: float = 30.0  # a thread reply stored but unfinished this long (its process died) is resumed
    lease_seconds: float = 30.0  # a replica's claim on a message / outbox item, renewed every third of it while alive
    # Retention (bridge.recovery prunes in small batches); 0 keeps rows forever.
    retention_days: int = 90          # inbound claims, Slack event ids, status-callback history
    audit_retention_days: int = 365   # the audit trail
    # Slow or abusive clients (handlers.server): time to send the request headers, and then the body.
    request_read_timeout: float = 10.0
    max_connections: int = 500        # open client connections at once; more are answered 503 and closed
    # Slack calls (bridge.outbox): statuses of one message received within this many seconds share one thread reply.
    receipt_coalesce_seconds: float = 2.0
    # Slack takes about one chat.postMessage per second per channel and tolerates short bursts: posts into a channel
    # are paced to this rate (0: not paced) with bursts of this many (a new SMS's parent plus its receipt, or a
    # couple of sends at once, go without waiting; a run of 100 settles to the rate).
    slack_channel_posts_per_second: float = 1.0
    slack_channel_post_burst: int = 4
    # -- issue 11: outbound MMS. Per-picture cap (bytes) of a Slack file sent as MMS; how long /media links live.
    mms_max_bytes: int = 1024 * 1024
    media_retention_days: int = 7
    # -- issue 11: mms-in — inbound MMS pictures (sw_api.media): besides the space's own origin, these hosts (https
    # only) may serve media; each picture is downloaded up to this size and within this time, else shown as a link.
    signalwire_media_hosts: tuple[str, ...] = ()
    media_max_inbound_bytes: int = DEFAULT_MAX_BYTES
    media_fetch_timeout: float = DEFAULT_TIMEOUT_SECONDS
    # -- issue 11: compliance (STOP / START / HELP auto-replies; bridge.compliance)
    compliance_auto_reply: bool = True  # COMPLIANCE_AUTO_REPLY=false: no auto-reply (the carrier answers itself)
    brand_name: str = DEFAULT_BRAND
    help_contact: str = DEFAULT_CONTACT
    stop_reply_text: str = DEFAULT_STOP_TEXT
    start_reply_text: str = DEFAULT_START_TEXT
    help_reply_text: str = DEFAULT_HELP_TEXT
    # -- issue 12: scheduled sends (bridge.scheduler). A send due while the bot was down goes on start if at most
    # this late, else it is marked missed; admins may cancel anyone's scheduled send (the scheduler always may).
    schedule_grace_minutes: int = 60
    admin_users: tuple[str, ...] = ()
    # -- issue 13: bulk sends (bridge.bulk). Segments per second per sending number (shared by every replica and the
    # ordinary /sms traffic); the allowed local-time window for bulk texts (None = off); who may bulk-send (empty =
    # nobody: bulk is disabled); the most recipients one batch may have.
    signalwire_mps: float = 1.0
    quiet_hours: QuietHours | None = DEFAULT_QUIET_HOURS
    bulk_allowed_users: tuple[str, ...] = ()
    bulk_max_recipients: int = 10000

    @property
    def compliance(self) -> ComplianceTexts:
        """The auto-replies as ``bridge.two_way`` sends them."""
        return ComplianceTexts(enabled=self.compliance_auto_reply, brand=self.brand_name, contact=self.help_contact,
                               stop_text=self.stop_reply_text, start_text=self.start_reply_text,
                               help_text=self.help_reply_text)

    def __repr__(self) -> str:
        return (
            f"Config(space={self.signalwire_space_url!r}, project_id={self.signalwire_project_id!r}, "
            f"from_numbers={self.from_numbers!r}, public_url={self.public_url!r}, host={self.host!r}, "
            f"port={self.port}, database_url={self.database_url!r}, socket_mode={self.socket_mode}, "
            f"slack_bot_token={_secret_repr(self.slack_bot_token)}, "
            f"signalwire_api_token={_secret_repr(self.signalwire_api_token)}, "
            f"signing_key={'set' if self.signalwire_signing_key else 'unset'}"
            f"{', unsigned webhooks allowed' if self.allow_unsigned_webhooks else ''})"
        )

    @property
    def outbox_pacing(self) -> dict[str, float]:
        """``SlackOutbox`` options for coalescing receipts and pacing posts per channel."""
        rate = self.slack_channel_posts_per_second
        return {"receipt_window": self.receipt_coalesce_seconds, "post_interval": 1 / rate if rate > 0 else 0.0,
                "post_burst": self.slack_channel_post_burst}

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)

    @property
    def simulated(self) -> bool:
        """True when SignalWire is the built-in simulator: no real SMS leaves this process."""
        return self.signalwire_space_url == SIMULATOR

    @property
    def default_from(self) -> str:
        return self.from_numbers[0]

    @property
    def sqlite_path(self) -> Path | None:
        if self.database_url.startswith("sqlite:///"):
            return Path(self.database_url.removeprefix("sqlite:///"))
        return None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Config:
        """Build and validate; raises ``ConfigError`` naming the first bad variable."""

        def get(name: str, default: str = "") -> str:
            return environ.get(name, default).strip()

        def required(name: str, example: str) -> str:
            value = get(name)
            if not value:
                raise ConfigError(name, "is not set", example)
            return value

        bot_token = required("SLACK_BOT_TOKEN", "xoxb-1234-5678-abcdef")
        if not bot_token.startswith("xoxb-"):
            raise ConfigError("SLACK_BOT_TOKEN", "must be a bot token starting with xoxb-", "xoxb-1234-5678-abcdef")
        app_token = get("SLACK_APP_TOKEN")
        if app_token and not app_token.startswith("xapp-"):
            raise ConfigError("SLACK_APP_TOKEN", "must be an app-level token starting with xapp-", "xapp-1-A0-1-ab")
        signing_secret = get("SLACK_SIGNING_SECRET")
        if not signing_secret and not app_token:
            raise ConfigError("SLACK_SIGNING_SECRET", "is not set (needed unless SLACK_APP_TOKEN enables Socket Mode)",
                              "8f742231b10e8888abcd99yyyzzz85a5")

        space = required("SIGNALWIRE_SPACE_URL", "example.signalwire.com")
        if space != SIMULATOR:
            try:
                base_url_for_space(space)
            except ValueError as exc:
                raise ConfigError("SIGNALWIRE_SPACE_URL", f"is not a space name or URL ({exc})",
                                  "example.signalwire.com") from exc
        simulated = space == SIMULATOR
        project_id = get("SIGNALWIRE_PROJECT_ID") if simulated else required(
            "SIGNALWIRE_PROJECT_ID", "1f0e9c52-5d6f-4a3e-9a77-2b6c0d9e8f10")
        api_token = get("SIGNALWIRE_API_TOKEN") if simulated else required("SIGNALWIRE_API_TOKEN", "PTabc123…")

        signing_key = get("SIGNALWIRE_SIGNING_KEY")
        allow_unsigned = _allow_unsigned(get("SIGNALWIRE_ALLOW_UNSIGNED_WEBHOOKS"))
        # Without a signing key anyone who can reach /signalwire/inbound can forge texts, STOPs and STARTs: only an
        # explicit opt-in runs like that. The simulator signs with its own key, which the server fills in.
        if not signing_key and not simulated and not allow_unsigned:
            raise ConfigError(
                "SIGNALWIRE_SIGNING_KEY",
                "is not set: without it anyone can forge SignalWire webhooks (to run unsigned anyway, set "
                "SIGNALWIRE_ALLOW_UNSIGNED_WEBHOOKS=true)",
                "PSKyour-signing-key",
            )

        region = get("DEFAULT_REGION", "US").upper()
        # Two letters is not enough: an unknown region ("ZZ") would surface later as every national number failing.
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ConfigError("DEFAULT_REGION", "must be a two-letter ISO country code", "US")

        raw_numbers = [n for n in get("SIGNALWIRE_FROM_NUMBERS").split(",") if n.strip()]
        if not raw_numbers:
            if not simulated:
                raise ConfigError("SIGNALWIRE_FROM_NUMBERS", "is not set", "+15557770000,+15557770001")
            raw_numbers = ["+15557770000"]
        from_numbers: list[str] = []
        for raw in raw_numbers:
            try:
                number = normalize_sender(raw, region)
            except InvalidNumber as exc:
                raise ConfigError("SIGNALWIRE_FROM_NUMBERS", f"has a bad entry: {exc}", "+15557770000") from exc
            if number not in from_numbers:
                from_numbers.append(number)

        public_url = get("PUBLIC_URL").rstrip("/")
        if public_url:
            parts = urlsplit(public_url)
            # Callback paths are appended to it: a query or #fragment would swallow them.
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
                raise ConfigError("PUBLIC_URL", "must be an http(s) base URL without a query or fragment",
                                  "https://sms.example.com")
        elif not simulated:
            raise ConfigError("PUBLIC_URL", "is not set (SignalWire must reach /signalwire/status)",
                              "https://sms.example.com")

        port_text = get("PORT", "3000")
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ConfigError("PORT", "must be a TCP port number", "3000")

        database_url = get("DATABASE_URL", "sqlite:///data/sms-bridge.db")
        if not database_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ConfigError("DATABASE_URL", "must be a sqlite:/// or postgresql:// URL", "sqlite:///data/sms-bridge.db")

        inbound_channel = get("INBOUND_CHANNEL")
        if inbound_channel and not re.fullmatch(r"[CGD][A-Z0-9]{2,}", inbound_channel):
            raise ConfigError("INBOUND_CHANNEL", "must be a Slack channel id", "C0123456789")
        number_channels: dict[str, str] = {}
        for entry in filter(None, (e.strip() for e in get("NUMBER_CHANNELS").split(","))):
            number, sep, channel = entry.partition(":")
            try:
                key = normalize_sender(number, region)
            except InvalidNumber as exc:
                raise ConfigError("NUMBER_CHANNELS", f"has a bad number: {exc}", "+15557770000:C123") from exc
            if not sep or not re.fullmatch(r"[CGD][A-Z0-9]{2,}", channel.strip()):
                raise ConfigError("NUMBER_CHANNELS", f"entry {entry!r} is not NUMBER:CHANNEL_ID", "+15557770000:C123")
            number_channels[key] = channel.strip()

        def decimal(name: str, default: str, low: float, high: float, what: str) -> float:
            text = get(name, default)
            try:
                value = float(text)
            except ValueError:
                value = float("nan")
            if not low <= value <= high:  # also refuses nan
                raise ConfigError(name, f"must be a number of {what}", default)
            return value

        def seconds(name: str, default: str, low: float, high: float) -> float:
            return decimal(name, default, low, high, f"seconds between {low:g} and {high:g}")

        durations = {
            "signalwire_timeout": seconds("SIGNALWIRE_TIMEOUT_SECONDS", "15", 0.5, 120),
            "reconcile_grace": seconds("RECONCILE_GRACE_SECONDS", "60", 0, 86400),
            "stuck_after": seconds("STUCK_AFTER_SECONDS", "900", 1, 7 * 86400),
            "sweep_interval": seconds("SWEEP_INTERVAL_SECONDS", "2", 0.05, 3600),
            "reply_resume_after": seconds("REPLY_RESUME_SECONDS", "30", 1, 3600),
            "lease_seconds": seconds("LEASE_SECONDS", "30", 1, 600),
        }

        allowed_users = _slack_ids(get("SMS_ALLOWED_USERS"), "SMS_ALLOWED_USERS", r"[UW][A-Z0-9]{2,}",
                                   "a Slack user id", "U0123ABCD,U0456EFGH")
        allowed_channels = _slack_ids(get("SMS_ALLOWED_CHANNELS"), "SMS_ALLOWED_CHANNELS", r"[CGD][A-Z0-9]{2,}",
                                      "a Slack channel id", "C0123456789,G0123456789")
        rate_text = get("SMS_RATE_LIMIT_PER_USER", "20")
        if not rate_text.isdigit() or int(rate_text) < 1:
            raise ConfigError("SMS_RATE_LIMIT_PER_USER", "must be a positive whole number of messages per minute",
                              "20")

        def whole(name: str, default: str, low: int, high: int, what: str) -> int:
            text = get(name, default)
            if not text.isdigit() or not low <= int(text) <= high:
                raise ConfigError(name, f"must be a whole number of {what} between {low} and {high}", default)
            return int(text)

        days = "days (0 keeps rows forever)"
        retention_days = whole("RETENTION_DAYS", "90", 0, 36500, days)
        audit_retention_days = whole("AUDIT_RETENTION_DAYS", "365", 0, 36500, days)
        request_read_timeout = seconds("REQUEST_READ_TIMEOUT_SECONDS", "10", 0.5, 300)
        max_connections = whole("MAX_CONNECTIONS", "500", 1, 100000, "connections")
        receipt_coalesce = seconds("RECEIPT_COALESCE_SECONDS", "2.0", 0, 60)
        posts_per_second = decimal("SLACK_CHANNEL_POSTS_PER_SECOND", "1", 0, 1000,
                                   "posts per second between 0 (not paced) and 1000")
        post_burst = whole("SLACK_CHANNEL_POST_BURST", "4", 1, 1000, "posts")
        # -- issue 11: outbound MMS
        mms_max_bytes = whole("MMS_MAX_BYTES", "1048576", 1024, 100 * 1024 * 1024, "bytes")
        media_retention_days = whole("MEDIA_RETENTION_DAYS", "7", 1, 365, "days")

        # -- issue 11: mms-in
        try:
            media_hosts = parse_media_hosts(get("SIGNALWIRE_MEDIA_HOSTS"))
        except ValueError as exc:
            raise ConfigError("SIGNALWIRE_MEDIA_HOSTS", f"has a bad {exc}", "media.example-carrier.com") from exc
        media_max_bytes = whole("MEDIA_MAX_INBOUND_BYTES", str(DEFAULT_MAX_BYTES), 1024, 100 * MB, "bytes")
        media_timeout = seconds("MEDIA_FETCH_TIMEOUT_SECONDS", "20", 1, 300)

        texts = _compliance(get)
        # -- issue 12: scheduled sends
        schedule_grace = whole("SCHEDULE_GRACE_MINUTES", "60", 0, 7 * 24 * 60, "minutes")
        admin_users = _slack_ids(get("SMS_ADMIN_USERS"), "SMS_ADMIN_USERS", r"[UW][A-Z0-9]{2,}", "a Slack user id",
                                 "U0123ABCD,U0456EFGH")
        # -- issue 13: bulk sends
        mps = decimal("SIGNALWIRE_MPS", "1", 0.1, 1000, "segments per second between 0.1 and 1000")
        try:
            quiet = parse_quiet_hours(get("QUIET_HOURS", "08:00-21:00"))
        except ValueError as exc:
            raise ConfigError("QUIET_HOURS", str(exc), "08:00-21:00") from exc
        bulk_users = _slack_ids(get("SMS_BULK_ALLOWED_USERS"), "SMS_BULK_ALLOWED_USERS", r"[UW][A-Z0-9]{2,}",
                                "a Slack user id", "U0123ABCD,U0456EFGH")
        bulk_max = whole("BULK_MAX_RECIPIENTS", "10000", 1, 1000000, "recipients")
        return cls(
            signalwire_mps=mps, quiet_hours=quiet, bulk_allowed_users=bulk_users, bulk_max_recipients=bulk_max,
            schedule_grace_minutes=schedule_grace, admin_users=admin_users,
            compliance_auto_reply=texts.enabled, brand_name=texts.brand, help_contact=texts.contact,
            stop_reply_text=texts.stop_text, start_reply_text=texts.start_text, help_reply_text=texts.help_text,
            **durations,
            signalwire_media_hosts=media_hosts,
            media_max_inbound_bytes=media_max_bytes,
            media_fetch_timeout=media_timeout,
            retention_days=retention_days,
            audit_retention_days=audit_retention_days,
            request_read_timeout=request_read_timeout,
            max_connections=max_connections,
            receipt_coalesce_seconds=receipt_coalesce,
            slack_channel_posts_per_second=posts_per_second,
            slack_channel_post_burst=post_burst,
            mms_max_bytes=mms_max_bytes,
            media_retention_days=media_retention_days,
            slack_bot_token=bot_token,
            slack_signing_secret=signing_secret,
            slack_app_token=app_token,
            slack_api_url=get("SLACK_API_URL", "https://slack.com/api/").rstrip("/") + "/",
            signalwire_space_url=space,
            signalwire_project_id=project_id,
            signalwire_api_token=api_token,
            signalwire_signing_key=signing_key,
            allow_unsigned_webhooks=allow_unsigned and not signing_key,
            from_numbers=tuple(from_numbers),
            public_url=public_url,
            host=get("HOST", "0.0.0.0"),
            port=int(port_text),
            database_url=database_url,
            default_region=region,
            inbound_channel=inbound_channel,
            number_channels=number_channels,
            allowed_users=allowed_users,
            allowed_channels=allowed_channels,
            rate_limit_per_user=int(rate_text),
        )


def _allow_unsigned(text: str) -> bool:
    """``SIGNALWIRE_ALLOW_UNSIGNED_WEBHOOKS``: only exactly ``true`` opts in; unset or ``false`` requires signatures,
    anything else (``yes``, ``1``, ``True``) is a typo worth stopping for rather than guessing which was meant."""
    if text not in ("", "true", "false"):
        raise ConfigError("SIGNALWIRE_ALLOW_UNSIGNED_WEBHOOKS",
                          "must be exactly true, or false / unset to require SIGNALWIRE_SIGNING_KEY", "true")
    return text == "true"


def _slack_ids(text: str, name: str, pattern: str, what: str, example: str) -> tuple[str, ...]:
    """A comma-separated list of Slack ids; an empty list means "everyone" (the server warns about it)."""
    ids: list[str] = []
    for entry in filter(None, (e.strip() for e in text.split(","))):
        if not re.fullmatch(pattern, entry):
            raise ConfigError(name, f"entry {entry!r} is not {what}", example)
        if entry not in ids:
            ids.append(entry)
    return tuple(ids)


# -- issue 11: compliance -------------------------------------------------------------------------------------

_TEXT_VARIABLES = {AutoReplyKind.STOP: "STOP_REPLY_TEXT", AutoReplyKind.START: "START_REPLY_TEXT",
                   AutoReplyKind.HELP: "HELP_REPLY_TEXT"}
_TEXT_DEFAULTS = {AutoReplyKind.STOP: DEFAULT_STOP_TEXT, AutoReplyKind.START: DEFAULT_START_TEXT,
                  AutoReplyKind.HELP: DEFAULT_HELP_TEXT}


def _compliance(get: Callable[[str, str], str]) -> ComplianceTexts:
    """``COMPLIANCE_AUTO_REPLY``, ``BRAND_NAME``, ``HELP_CONTACT`` and the three texts, each checked now: an unknown
    ``{placeholder}`` or a text too long for an SMS stops the start, naming its variable."""
    switch = get("COMPLIANCE_AUTO_REPLY", "true")
    if switch not in ("true", "false"):
        raise ConfigError("COMPLIANCE_AUTO_REPLY", "must be exactly true or false", "false")
    brand = get("BRAND_NAME", DEFAULT_BRAND)
    if not brand:
        raise ConfigError("BRAND_NAME", "must not be empty: carriers expect every auto-reply to name the sender",
                          "Acme Bikes")
    texts = ComplianceTexts(
        enabled=switch == "true", brand=brand, contact=get("HELP_CONTACT", DEFAULT_CONTACT),
        stop_text=get("STOP_REPLY_TEXT", DEFAULT_STOP_TEXT), start_text=get("START_REPLY_TEXT", DEFAULT_START_TEXT),
        help_text=get("HELP_REPLY_TEXT", DEFAULT_HELP_TEXT))
    for kind, problem in texts.problems().items():
        raise ConfigError(_TEXT_VARIABLES[kind], problem, repr(_TEXT_DEFAULTS[kind]))
    return texts
