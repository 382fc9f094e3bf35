"""Logging set-up: one logfmt line per event, tagged with the request id, and a filter that keeps secrets and full
phone numbers out of every line.

Owns: the log format (``LogfmtFormatter``: ``ts=… level=… logger=… request_id=… msg="…"``), the request id
(``REQUEST_ID`` contextvar, ``bind_request_id`` / ``RequestIdFilter``; tasks created inside a request copy it) and
the redaction rules (Slack tokens, our configured secrets, E.164 numbers → masked), the repeat limit
(``RepeatLimiter``: a flood of one identical line becomes a few lines and a count) and which third-party loggers
stay at INFO because they print parameters at DEBUG (``PARAMETER_LOGGERS``).
Must not import: aiohttp, Slack packages, ``handlers`` (the aiohttp middleware in ``handlers.server`` calls
``bind_request_id``).
"""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from sw_api.text import mask_number

_SLACK_TOKEN = re.compile(r"xox[abposr]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+")
_PHONE = re.compile(r"(?<![\w•])\+[1-9][0-9]{7,14}(?![0-9])")
# Form bodies and query strings carry "+" as %2B (Twilio-compatible callbacks: To=%2B15551234567).
_PHONE_URLENCODED = re.compile(r"%2B([1-9][0-9]{7,14})(?![0-9])", re.I)
# Numbers as people read them (what bridge messages show, and so what slack_sdk logs at DEBUG): "+1 555-123-4567",
# "+44 7911 123456", "+1 (555) 123-4567". The digit count is checked in ``_mask_formatted``.
_PHONE_FORMATTED = re.compile(r"(?<![\w•])\+[1-9]\d{0,3}(?:[ .\-\u00a0]\(?\d{1,6}\)?){1,6}(?![\d•])")
# "Authorization: Basic …", {'Authorization': 'Basic …'} and ('Authorization', 'Basic …') all name the header.
_BASIC_AUTH = re.compile(r"(Authorization['\"]?\s*[:=,]\s*['\"]?)(Basic|Bearer)\s+[A-Za-z0-9+/=._~-]+", re.I)
# A credential logged without its header name ('Basic dXNlcjpwYXNz'). It must hold a character prose words lack
# (digit, capital, +/=) so that "Basic authentication failed" stays readable.
_BARE_AUTH = re.compile(r"\b(Basic|Bearer) (?=[A-Za-z0-9+/=._~-]*[A-Z0-9+/=])[A-Za-z0-9+/=._~-]{8,}")


def _mask_formatted(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return mask_number("+" + digits) if 8 <= len(digits) <= 15 else match.group(0)


class RedactingFilter(logging.Filter):
    """Rewrites each record's final message; applied on the handler so third-party loggers are covered too."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        text = _SLACK_TOKEN.sub("[redacted-token]", text)
        text = _BASIC_AUTH.sub(r"\1\2 [redacted]", text)
        text = _BARE_AUTH.sub(r"\1 [redacted]", text)
        text = _PHONE_URLENCODED.sub(lambda m: "%2B" + mask_number("+" + m.group(1))[1:], text)
        text = _PHONE.sub(lambda m: mask_number(m.group(0)), text)
        return _PHONE_FORMATTED.sub(_mask_formatted, text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            # A bad format string must not escape into the caller (logging itself would only report it), nor
            # reach logging's error report, which prints the raw arguments.
            message = f"{record.msg} (unformattable log arguments: {record.args!r})"
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        redacted = self.redact(message)
        record.msg, record.args = redacted, None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
REQUEST_ID_HEADER = "X-Request-Id"
# Ours are 12 hex digits; a proxy's (UUIDs, "Root=1-…" trace ids) fit this too. Anything else is not trusted into logs.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=-]{0,63}")


def new_request_id() -> str:
    return secrets.token_hex(6)


def sane_request_id(incoming: str | None) -> str:
    """The caller's id when it is short and plain, else a fresh one (a log line must not carry arbitrary input)."""
    if incoming and _SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return new_request_id()


def bind_request_id(incoming: str | None) -> tuple[str, contextvars.Token[str | None]]:
    """Set the id for the current request (and every task it spawns); reset the token when the request ends."""
    request_id = sane_request_id(incoming)
    return request_id, REQUEST_ID.set(request_id)


class RequestIdFilter(logging.Filter):
    """Stamps ``record.request_id`` ("-" outside a request, e.g. start-up and timers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        return True


_NEEDS_QUOTES = re.compile(r'[\s"=\\]|^$')
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def logfmt_value(value: str) -> str:
    """A logfmt value: bare when it can be, else double-quoted with ``\\``, ``"`` and every non-printable character
    escaped (``\\n``, ``\\x1b``, ``\\u2028``…), so no value can end a line or move a terminal's cursor."""
    if not _NEEDS_QUOTES.search(value) and value.isprintable():
        return value
    return '"' + "".join(map(_escape_char, value)) + '"'


class LogfmtFormatter(logging.Formatter):
    """One line per event, tracebacks included (escaped), so that a log shipper never splits an event."""

    def format(self, record: logging.LogRecord) -> str:
        fields = [
            ("ts", datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"),
            ("level", record.levelname.lower()),
            ("logger", record.name),
            ("request_id", str(getattr(record, "request_id", None) or REQUEST_ID.get() or "-")),
            ("msg", record.getMessage()),
        ]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            fields.append(("exc", record.exc_text))
        if record.stack_info:
            fields.append(("stack", self.formatStack(record.stack_info)))
        return " ".join(f"{key}={logfmt_value(value)}" for key, value in fields)


# Third-party loggers that print request bodies or SQL parameters (message bodies, the callback secret) at DEBUG.
PARAMETER_LOGGERS = ("slack_sdk", "slack_bolt", "aiosqlite")

REPEAT_LIMIT = 10          # identical lines let through per window…
REPEAT_WINDOW = 60.0       # …of this many seconds; the rest are counted and reported in one line
_REPEAT_KEYS = 1000        # windows remembered at once (distinct lines beyond this are never held back)


class RepeatLimiter:
    """Lets the first ``limit`` identical lines (same logger, level and message) through per ``window`` seconds and
    counts the rest; when a window with suppressed lines ends, one "suppressed K identical lines" line says so.

    A flood of one error (asyncio's "socket.accept() out of system resource" at the file-descriptor limit, a client
    hammering a broken route) costs ``limit`` lines a minute instead of the disk.
    """

    def __init__(self, limit: int = REPEAT_LIMIT, window: float = REPEAT_WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        # key → [window start, lines seen in the window, a record to name the summary after]; oldest window first.
        self._windows: OrderedDict[tuple[str, int, str], list[Any]] = OrderedDict()

    def check(self, record: logging.LogRecord) -> tuple[bool, list[logging.LogRecord]]:
        """(let this record through?, summary records of windows that have ended, to be written first)."""
        now = self._clock()
        summaries = self._expire(now)
        key = (record.name, record.levelno, record.getMessage())
        entry = self._windows.get(key)
        if entry is None:
            if len(self._windows) >= _REPEAT_KEYS:
                summaries.extend(self._close(*self._windows.popitem(last=False)))
            self._windows[key] = [now, 1, record]
            return True, summaries
        entry[1] += 1
        return entry[1] <= self.limit, summaries

    def flush(self) -> list[logging.LogRecord]:
        """Summaries of every open window (at shutdown)."""
        summaries: list[logging.LogRecord] = []
        while self._windows:
            summaries.extend(self._close(*self._windows.popitem(last=False)))
        return summaries

    def _expire(self, now: float) -> list[logging.LogRecord]:
        summaries: list[logging.LogRecord] = []
        while self._windows:
            key, entry = next(iter(self._windows.items()))
            if now - entry[0] < self.window:
                break
            del self._windows[key]
            summaries.extend(self._close(key, entry))
        return summaries

    def _close(self, key: tuple[str, int, str], entry: list[Any]) -> list[logging.LogRecord]:
        suppressed = entry[1] - self.limit
        if suppressed <= 0:
            return []
        name, level, message = key
        first = message.splitlines()[0] if message else ""
        summary = logging.LogRecord(
            "bridge.logs", max(level, logging.WARNING), __file__, 0,
            "suppressed %d identical lines in %.0fs (logger=%s): %s", (suppressed, self.window, name, first[:200]),
            None,
        )
        summary.request_id = "-"
        return [summary]


class BridgeLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The bridge's stream handler: filters (request id, redaction) first, then the repeat limiter."""

    def __init__(self, stream: TextIO | None = None, limiter: RepeatLimiter | None = None) -> None:
        super().__init__(stream)
        self.limiter = limiter or RepeatLimiter()

    def handle(self, record: logging.LogRecord) -> bool:
        if not self.filter(record):  # redaction runs before the limiter: identical means identical once redacted
            return False
        self.acquire()
        try:
            allowed, summaries = self.limiter.check(record)
            for summary in summaries:
                self.emit(summary)
            if allowed:
                self.emit(record)
        finally:
            self.release()
        return allowed

    def close(self) -> None:
        self.acquire()
        try:
            for summary in self.limiter.flush():
                self.emit(summary)
        finally:
            self.release()
        super().close()


def log_handler(stream: TextIO | None = None, secrets: Iterable[str] = (),
                limiter: RepeatLimiter | None = None) -> logging.Handler:
    """A stream handler with the bridge's format, request ids, redaction and repeat limit (tests attach it)."""
    handler = BridgeLogHandler(stream, limiter)
    handler.setFormatter(LogfmtFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactingFilter(secrets))
    return handler


def setup_logging(level: str = "INFO", secrets: Iterable[str] = (), stream: TextIO | None = None) -> None:
    handler = log_handler(stream, secrets=secrets)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # These print request bodies or SQL parameters (SMS bodies, the callback secret) at DEBUG: keep them at INFO
    # even when the app runs at DEBUG.
    for name in PARAMETER_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
