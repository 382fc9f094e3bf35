"""The simulator's settings and scripted behaviour: who may call it, how it answers, how messages end.

Owns: ``SimulatorConfig`` (credentials, callback pacing, inbound target), ``Outcome`` (how a destination's
message ends), ``Fault`` (a one-shot failure of the create endpoint) and the built-in outcome rules.
Must not import: aiohttp, Slack packages, ``bridge``, ``handlers``. Pure data.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sw_api.models import MessageStatus

DEFAULT_PROJECT_ID = "1f0e9c52-5d6f-4a3e-9a77-2b6c0d9e8f10"
DEFAULT_API_TOKEN = "PTsimulator-token"
DEFAULT_SIGNING_KEY = "PSKsimulator-signing-key"


def _mask(secret: str) -> str:
    # Enough to tell two keys apart in a log, never enough to use one.
    return f"{secret[:2]}…({len(secret)} chars)" if secret else "''"


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything the simulator is started with. ``repr`` masks the API token and the signing key."""

    project_id: str = DEFAULT_PROJECT_ID
    api_token: str = DEFAULT_API_TOKEN
    signing_key: str = DEFAULT_SIGNING_KEY
    step_delay: float = 0.15
    inbound_url: str | None = None
    inbound_format: Literal["json", "form"] = "json"
    owned_numbers: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        return (
            f"SimulatorConfig(project_id={self.project_id!r}, api_token={_mask(self.api_token)}, "
            f"signing_key={_mask(self.signing_key)}, step_delay={self.step_delay!r}, "
            f"inbound_url={self.inbound_url!r}, inbound_format={self.inbound_format!r}, "
            f"owned_numbers={sorted(self.owned_numbers)!r})"
        )

    @property
    def masked_api_token(self) -> str:
        return _mask(self.api_token)

    @property
    def masked_signing_key(self) -> str:
        return _mask(self.signing_key)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SimulatorConfig:
        """Read ``SIGNALWIRE_PROJECT_ID`` / ``SIGNALWIRE_API_TOKEN`` / ``SIGNALWIRE_SIGNING_KEY``.

        Unset or empty variables fall back to the built-in (non-secret) defaults. Raises ``ValueError``
        naming the variable when the project id is not a UUID, as SignalWire's always are.
        """
        project_id = environ.get("SIGNALWIRE_PROJECT_ID") or DEFAULT_PROJECT_ID
        try:
            uuid.UUID(project_id)
        except ValueError:
            raise ValueError(
                "SIGNALWIRE_PROJECT_ID must be a UUID such as 1f0e9c52-5d6f-4a3e-9a77-2b6c0d9e8f10"
            ) from None
        return cls(
            project_id=project_id,
            api_token=environ.get("SIGNALWIRE_API_TOKEN") or DEFAULT_API_TOKEN,
            signing_key=environ.get("SIGNALWIRE_SIGNING_KEY") or DEFAULT_SIGNING_KEY,
        )


DEFAULT_CONFIG = SimulatorConfig()


@dataclass(frozen=True)
class Outcome:
    """How a message to a destination ends. ``SENT`` means the carrier never sends a receipt."""

    status: MessageStatus = MessageStatus.DELIVERED
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class Fault:
    """A failure of ``POST /api/messaging/messages`` applied to the next ``count`` valid create requests.

    ``status``: answer that HTTP status; ``hang``: wait ``hang_seconds`` before answering; ``reset``: close the
    connection without an answer. With ``create=True`` the message is created first (and its callbacks flow),
    which is exactly the case a client must reconcile through the logs.
    """

    kind: Literal["status", "hang", "reset"]
    status: int = 500
    create: bool = False
    retry_after: float | None = None
    hang_seconds: float = 30.0
    count: int = 1


DELIVERED = Outcome(MessageStatus.DELIVERED)

# Suffix of the destination number → outcome. Kept as data so the CLI can print exactly what applies.
DEFAULT_RULES: tuple[tuple[str, Outcome], ...] = (
    ("0003", Outcome(MessageStatus.UNDELIVERED, "30003", "Unreachable destination handset")),
    ("0007", Outcome(MessageStatus.UNDELIVERED, "30007", "Message filtered by carrier")),
    ("1610", Outcome(MessageStatus.FAILED, "21610", "Recipient has opted out (STOP)")),
)


def default_outcome(to: str) -> Outcome:
    """The built-in rule for a destination that has not been scripted."""
    for suffix, outcome in DEFAULT_RULES:
        if to.endswith(suffix):
            return outcome
    return DELIVERED


def describe_rules() -> list[str]:
    """One line per built-in rule, for the start-up banner and the docs."""
    lines = [
        f"  to ending in {suffix}: {o.status.value} (error {o.error_code}: {o.error_message})"
        for suffix, o in DEFAULT_RULES
    ]
    lines.append("  anything else: delivered (MMS stops at sent: carriers send no MMS receipts)")
    return lines
