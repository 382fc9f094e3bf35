"""Answering Slack the moment a listener calls ``ack()``, instead of at Bolt's next 10 ms poll.

Owns: ``PromptAckRunner``, Bolt's listener runner for ``process_before_response=False`` with one change: the HTTP
answer waits on the ``ack()`` call itself. Bolt's own runner starts the listener as a task and then checks
``ack.response`` every 10 ms (``asyncio.sleep(0.01)``), so every Slack request (a ``/sms`` send, ``/sms help``, a
Retry click, a modal submit) cost up to 10 ms — on this machine about twice a bare aiohttp request — on top of
its real work. Everything else is Bolt's: the start, completion and error handlers, the automatic ack of events,
the ``ack_timeout`` and its warning, and lazy listeners (handed to Bolt's runner unchanged).
Must not import: ``bridge`` or anything below it (this is Slack plumbing only).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.listener.async_listener import AsyncListener
from slack_bolt.listener.asyncio_runner import AsyncioListenerRunner
from slack_bolt.logger.messages import warning_did_not_call_ack
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse


class SignallingAck(AsyncAck):
    """Bolt's ``ack``, which also resolves ``called`` with the response of its first call.

    Kept apart from ``response``: Bolt's error path resets ``ack.response`` to None when a listener fails after
    its ack, and Slack must still get the ack it was given."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.called: asyncio.Future[BoltResponse] = asyncio.get_running_loop().create_future()

    async def __call__(self, *args: Any, **kwargs: Any) -> BoltResponse:
        response = await super().__call__(*args, **kwargs)
        if not self.called.done():
            self.called.set_result(response)
        return response


class PromptAckRunner(AsyncioListenerRunner):
    """``AsyncioListenerRunner`` whose wait for ``ack()`` is an awaited future, not a 10 ms poll.

    The listener tasks it starts are kept (``tasks``) until they end, so none is collected mid-run and shutdown
    can wait for them (``drain``)."""

    def __init__(self, base: AsyncioListenerRunner) -> None:
        super().__init__(
            logger=base.logger, process_before_response=base.process_before_response,
            listener_error_handler=base.listener_error_handler, listener_start_handler=base.listener_start_handler,
            listener_completion_handler=base.listener_completion_handler,
            lazy_listener_runner=base.lazy_listener_runner,
        )
        self.tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def install(cls, app: AsyncApp) -> PromptAckRunner:
        """Replace ``app``'s runner (before ``@app.error`` is registered: that sets the runner's error handler)."""
        runner = cls(app.listener_runner)
        app._async_listener_runner = runner  # Bolt has no public setter; its dispatch reads this attribute
        return runner

    async def run(self, request: AsyncBoltRequest, response: BoltResponse | None, listener_name: str,
                  listener: AsyncListener, starting_time: float | None = None) -> BoltResponse | None:
        original = request.context.ack
        if (self.process_before_response or request.lazy_only or listener.lazy_functions
                or original.response is not None):
            return await super().run(request, response, listener_name, listener,  # type: ignore[arg-type]
                                     starting_time)
        starting_time = starting_time if starting_time is not None else time.time()
        ack = SignallingAck()
        request.context["ack"] = ack  # the listener's ``ack`` argument is read from here
        if listener.auto_acknowledgement:
            await ack()  # events: acknowledged at once, as Bolt does
        task = asyncio.ensure_future(self._run_listener(ack, request, response, listener))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        # Wait for the ack call, or for the listener to end (one that fails before acking gets its 500 set as
        # ``ack.response`` by the error path, without a call), within Bolt's ``ack_timeout``.
        deadline = starting_time + listener.ack_timeout
        waits: set[asyncio.Future[Any]] = {ack.called, task}
        while ack.response is None and not ack.called.done() and waits and (remaining := deadline - time.time()) > 0:
            done, _ = await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                break
            waits -= done
        if response is not None:
            return response  # as Bolt does: a response left by a middleware wins (ours leave none)
        answer = ack.called.result() if ack.called.done() else ack.response
        if answer is None:
            self.logger.warning(warning_did_not_call_ack(listener_name))
            return None
        self._debug_log_completion(starting_time, answer)
        return answer

    async def _run_listener(self, ack: AsyncAck, request: AsyncBoltRequest, response: BoltResponse | None,
                            listener: AsyncListener) -> None:
        """Bolt's ``run_ack_function_asynchronously``, unchanged."""
        try:
            await self.listener_start_handler.handle(request=request, response=response)
            await listener.run_ack_function(request=request, response=response)  # type: ignore[arg-type]
        except Exception as e:
            if response is None:
                response = BoltResponse(status=500)
            response.status = 500
            if ack.response is not None:  # already acknowledged
                response = None
            await self.listener_error_handler.handle(error=e, request=request, response=response)
            ack.response = response
        finally:
            await self.listener_completion_handler.handle(request=request, response=response)

    async def drain(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) for the listeners still running after their ack."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout)
