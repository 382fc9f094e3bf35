"""A SignalWire messaging simulator: a real aiohttp server for tests, the offline demo and curious users.

Owns: nothing itself; re-exports the public API of ``config``, ``engine`` and ``app``.
Must not import: Slack packages, ``bridge``, ``handlers`` (nor may any module of this package).

Built-in outcome rules for destinations that were not scripted with ``Simulator.script``:
    to ending in 0003 → undelivered, error 30003 "Unreachable destination handset"
    to ending in 0007 → undelivered, error 30007 "Message filtered by carrier"
    to ending in 1610 → failed,      error 21610 "Recipient has opted out (STOP)"  (queued → failed, never sent)
    anything else     → delivered    (queued → sent → delivered; an MMS stops at sent: no carrier receipts)

Use in-process::

    simulator = Simulator(SimulatorConfig(step_delay=0.01))
    runner = web.AppRunner(create_app(simulator)); ...  # base URL = SIGNALWIRE_SPACE_URL

or out of process: ``python -m sw_api.simulator --port 0`` and the ``/_sim/`` control routes (see ``app``).
"""

from sw_api.simulator.app import SIMULATOR_KEY, create_app
from sw_api.simulator.config import DEFAULT_RULES, Fault, Outcome, SimulatorConfig, default_outcome
from sw_api.simulator.engine import CallbackAttempt, InboundDelivery, SimMessage, Simulator

__all__ = [
    "DEFAULT_RULES",
    "SIMULATOR_KEY",
    "CallbackAttempt",
    "Fault",
    "InboundDelivery",
    "Outcome",
    "SimMessage",
    "Simulator",
    "SimulatorConfig",
    "create_app",
    "default_outcome",
]
