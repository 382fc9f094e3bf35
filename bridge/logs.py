"""Logging set-up: one logfmt line per event, tagged with the request id, and a filter that keeps secrets and full
phone numbers out of every line.

Owns: the log format (``LogfmtFormatter``: ``ts=… level=… logger=… request_id=… msg="…"``), the request id
(``REQUEST_ID`` contextvar, ``bind_request_id`` / ``RequestIdFilter``; tasks created inside a request copy it) and
the redaction rules (Slack tokens, our configured secrets, E.164 numbers → masked).
Must not import: aiohttp, Slack packages, ``handlers`` (the aiohttp middleware in ``handlers.server`` calls
``bind_request_id``).
"""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO

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


def logfmt_value(value: str) -> str:
    """A logfmt value: bare when it can be, else double-quoted with ``\\``, ``"`` and line breaks escaped."""
    if not _NEEDS_QUOTES.search(value) and value.isprintable():
        return value
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
               .replace("\t", "\\t"))
    return f'"{escaped}"'


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


def log_handler(stream: TextIO | None = None, secrets: Iterable[str] = ()) -> logging.Handler:
    """A stream handler with the bridge's format, request ids and redaction (tests attach it to capture logs)."""
    handler: logging.Handler = logging.StreamHandler(stream)
    handler.setFormatter(LogfmtFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactingFilter(secrets))
    return handler


def setup_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    handler = log_handler(secrets=secrets)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # slack_sdk logs full request bodies at DEBUG; keep them out even when the app runs at DEBUG.
    logging.getLogger("slack_sdk").setLevel(max(logging.INFO, root.level))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
