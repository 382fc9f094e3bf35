"""Every error the SignalWire layer raises, and what it means for the caller.

The tree (``NotSent`` vs ``OutcomeUnknown`` is the distinction callers act on)::

    SignalWireError
    ├── NotSent                    certainly nothing was created; correcting input / retrying later is safe
    │   ├── ConnectError           the connection could not be established (refused, DNS, TLS handshake)
    │   └── ClientError            a 4xx answer; ``status``, ``headers``, ``body``
    │       ├── BadRequest         400 {"error": "Bad Request"}: malformed JSON
    │       ├── Unauthorized       401 {"error": "Unauthorized"}: wrong project id or API token
    │       ├── NotFound           404: e.g. an unknown id in /logs/{id}
    │       ├── ValidationFailed   422 {"errors": [...]}: ``errors`` holds every ``ApiErrorItem``
    │       └── RateLimited        429: ``retry_after`` seconds when the answer said so
    ├── OutcomeUnknown             the request may have created a message: NEVER re-POST blindly,
    │   │                          reconcile through the logs API first
    │   ├── ServerError            a 5xx answer; ``status``, ``headers``, ``body``
    │   ├── ResponseTimeout        the request was written but no answer came in time
    │   ├── ConnectionLost         the connection broke after the request was (maybe) written
    │   └── InvalidResponse        a 2xx answer whose body is not the documented shape
    └── WebhookError               a webhook we received is not acceptable
        ├── SignatureMismatch      missing or wrong X-SignalWire-Signature
        └── MalformedWebhook       the body is not a status callback / inbound message

``HTTPError`` is a mixin carried by ``ClientError`` and ``ServerError``: anything with an HTTP status.
Messages never contain credentials: the client builds them from status, SignalWire's own text and the path.

Must not import: aiohttp, Slack packages, ``bridge``, ``handlers``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sw_api.models import ApiErrorItem


class SignalWireError(Exception):
    """Base of everything this package raises."""


class NotSent(SignalWireError):
    """Certainly not sent: nothing was created on SignalWire's side."""


class OutcomeUnknown(SignalWireError):
    """The request may or may not have created a message. Reconcile via the logs before trying again.

    ``kind`` says what went wrong, so the people waiting can be told at once (``bridge.render`` words it):
    ``"server_error"`` (``status`` is SignalWire's 5xx), ``"timeout"`` (no answer in time), ``"connection_lost"``
    (the connection broke or the answer was cut off) or ``"invalid_response"`` (a 2xx we cannot read).
    """

    kind: str = "unknown"

    @property
    def http_status(self) -> int | None:
        """SignalWire's HTTP status when it answered at all (5xx, or 2xx with an unreadable body), else None."""
        status = getattr(self, "status", None)
        return status if isinstance(status, int) else None


class HTTPError(SignalWireError):
    """An HTTP answer with an error status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: str = "",
    ) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.detail = message
        self.headers: Mapping[str, str] = dict(headers or {})
        self.body = body


class ConnectError(NotSent):
    """The TCP/TLS connection could not be established: the request never left."""


class ClientError(HTTPError, NotSent):
    """A 4xx answer."""


class BadRequest(ClientError):
    """400: SignalWire could not read the request (malformed JSON)."""


class Unauthorized(ClientError):
    """401: wrong project id or API token (or the token lacks the Messaging scope)."""


class NotFound(ClientError):
    """404: no such resource (e.g. an unknown message id in the logs)."""


class ValidationFailed(ClientError):
    """422: one or more parameters were refused; ``errors`` carries SignalWire's own explanations."""

    def __init__(
        self,
        errors: Sequence[ApiErrorItem],
        *,
        headers: Mapping[str, str] | None = None,
        body: str = "",
    ) -> None:
        self.errors: tuple[ApiErrorItem, ...] = tuple(errors)
        text = "; ".join(
            f"{e.attribute}: {e.message}" if e.attribute else e.message for e in self.errors
        ) or "invalid parameters"
        super().__init__(422, text, headers=headers, body=body)


class RateLimited(ClientError):
    """429: too many requests. ``retry_after`` is the number of seconds SignalWire asked for, if any."""

    def __init__(
        self,
        retry_after: float | None,
        *,
        headers: Mapping[str, str] | None = None,
        body: str = "",
    ) -> None:
        self.retry_after = retry_after
        hint = f"retry after {retry_after:g} s" if retry_after is not None else "back off and retry"
        super().__init__(429, f"Too Many Requests ({hint})", headers=headers, body=body)


class ServerError(HTTPError, OutcomeUnknown):
    """A 5xx answer: SignalWire may have created the message before failing."""

    kind = "server_error"


class ResponseTimeout(OutcomeUnknown):
    """No answer within the timeout after the request was sent."""

    kind = "timeout"


class ConnectionLost(OutcomeUnknown):
    """The connection broke after the request was (possibly) written."""

    kind = "connection_lost"


class InvalidResponse(OutcomeUnknown):
    """A success status whose body is not the documented shape."""

    kind = "invalid_response"


class WebhookError(SignalWireError):
    """A webhook request we cannot accept."""


class SignatureMismatch(WebhookError):
    """The ``X-SignalWire-Signature`` header is missing or does not match."""


class MalformedWebhook(WebhookError, ValueError):
    """The webhook body is not a valid status callback or inbound message; the message says which field."""
