"""Property-based conformance of the simulator to the vendored SignalWire spec, with schemathesis.

Schemathesis generates valid and invalid create requests from the spec; every answer must be documented for
the operation, match its response schema, and never be a server error. The simulator runs on port 0 in a
background thread with its own event loop, because schemathesis' pytest integration calls it synchronously.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from sw_api.simulator import Simulator, SimulatorConfig, create_app

SPEC_PATH = Path(__file__).parent / "schemas" / "signalwire-messaging.openapi.yaml"
CONFIG = SimulatorConfig(step_delay=0.01)
AUTH = aiohttp.encode_basic_auth(CONFIG.project_id, CONFIG.api_token)
# One case in this many keeps the Authorization header schemathesis generated (so 401 is exercised too).
KEEP_GENERATED_AUTH_EVERY = 10
# The spec types `to`/`from` as bare strings, so generated ones are never phone numbers and every case would
# stop at 422. Two cases in three get real numbers (the rest of the body stays generated) to reach 201.
KEEP_GENERATED_NUMBERS_EVERY = 3

schema = schemathesis.openapi.from_path(SPEC_PATH)
_case_numbers = itertools.count()


class ThreadedSimulator:
    """The simulator served on 127.0.0.1:0 from a private event loop in a daemon thread."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self.base_url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="simulator", daemon=True)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        runner = web.AppRunner(create_app(self.simulator), access_log=None)
        try:
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            self.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        except BaseException as exc:  # reported to the test thread, which re-raises it
            self._error = exc
            self._ready.set()
            await runner.cleanup()
            return
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> ThreadedSimulator:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the simulator did not start within 10 s")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture(scope="module")
def simulator_url() -> Iterator[str]:
    simulator = Simulator(CONFIG)
    # Generated status_callback URLs point anywhere on the internet: never call them.
    simulator.drop_callbacks = True
    with ThreadedSimulator(simulator) as served:
        yield served.base_url


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_simulator_conforms_to_the_spec(case: Any, simulator_url: str) -> None:
    if case.headers is None:
        case.headers = {}
    number = next(_case_numbers)
    if number % KEEP_GENERATED_AUTH_EVERY:
        case.headers["Authorization"] = AUTH
    if isinstance(case.body, dict) and number % KEEP_GENERATED_NUMBERS_EVERY:
        case.body.update({"to": "+15551234567", "from": "+15550100000"})
    response = case.call(base_url=simulator_url, timeout=10)
    case.validate_response(
        response, checks=[not_a_server_error, status_code_conformance, response_schema_conformance]
    )
