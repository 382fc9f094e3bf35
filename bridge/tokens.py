"""Per-message callback tokens: a status callback proves which message it is about, even without a signing key.

Owns: ``CallbackTokens`` (HMAC of the ref with the stored secret, the callback URL, the constant-time check) and
``STATUS_PATH``. Must not import: anything from ``bridge``.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

STATUS_PATH = "/signalwire/status"


class CallbackTokens:
    """Per-message tokens so a status callback authenticates itself even without a SignalWire signing key."""

    def __init__(self, secret: bytes, public_url: str) -> None:
        self._secret = secret
        self._public_url = public_url.rstrip("/")

    def token(self, ref: str) -> str:
        return hmac.new(self._secret, ref.encode(), hashlib.sha256).hexdigest()[:32]

    def url(self, ref: str) -> str:
        return f"{self._public_url}{STATUS_PATH}?{urlencode({'ref': ref, 't': self.token(ref)})}"

    def valid(self, ref: str, token: str) -> bool:
        """Constant-time check. Any string is an answer, never an error: ours are ASCII hex, and
        ``compare_digest`` raises TypeError on non-ASCII text (``t=é``), so anything else is simply wrong."""
        if not (ref.isascii() and token.isascii()):
            return False
        return hmac.compare_digest(self.token(ref), token)
