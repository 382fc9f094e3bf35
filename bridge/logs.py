"""Logging set-up: one line per event, and a filter that keeps secrets and full phone numbers out of every line.

Owns: the log format and the redaction rules (Slack tokens, our configured secrets, E.164 numbers → masked).
Must not import: aiohttp, Slack packages, ``handlers``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from sw_api.text import mask_number

_SLACK_TOKEN = re.compile(r"xox[abposr]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+")
_PHONE = re.compile(r"(?<![\w•])\+[1-9][0-9]{7,14}(?![0-9])")
# Form bodies and query strings carry "+" as %2B (Twilio-compatible callbacks: To=%2B15551234567).
_PHONE_URLENCODED = re.compile(r"%2B([1-9][0-9]{7,14})(?![0-9])", re.I)
# "Authorization: Basic …", {'Authorization': 'Basic …'} and ('Authorization', 'Basic …') all name the header.
_BASIC_AUTH = re.compile(r"(Authorization['\"]?\s*[:=,]\s*['\"]?)(Basic|Bearer)\s+[A-Za-z0-9+/=._~-]+", re.I)
# A credential logged without its header name ('Basic dXNlcjpwYXNz'). It must hold a character prose words lack
# (digit, capital, +/=) so that "Basic authentication failed" stays readable.
_BARE_AUTH = re.compile(r"\b(Basic|Bearer) (?=[A-Za-z0-9+/=._~-]*[A-Z0-9+/=])[A-Za-z0-9+/=._~-]{8,}")


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
        return _PHONE.sub(lambda m: mask_number(m.group(0)), text)

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


def setup_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # slack_sdk logs full request bodies at DEBUG; keep them out even when the app runs at DEBUG.
    logging.getLogger("slack_sdk").setLevel(max(logging.INFO, root.level))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
