"""handlers.prompt_ack: Bolt answers as soon as the listener acks — never by polling — and otherwise as Bolt does."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest

from handlers.prompt_ack import PromptAckRunner


async def _authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
    return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token="xoxb-test", bot_user_id="UBOT")


def _app() -> tuple[AsyncApp, PromptAckRunner]:
    app = AsyncApp(authorize=_authorize, request_verification_enabled=False, process_before_response=False,
                   raise_error_for_unhandled_request=False)
    runner = PromptAckRunner.install(app)
    return app, runner


def _command(text: str) -> AsyncBoltRequest:
    body = urlencode({"command": "/sms", "text": text, "user_id": "U1", "channel_id": "C1", "team_id": "T1",
                      "trigger_id": "t", "response_url": "http://127.0.0.1:9/r"})
    return AsyncBoltRequest(body=body, headers={"content-type": ["application/x-www-form-urlencoded"]})


@pytest.fixture
def no_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bolt's own runner waits for ack() with ``asyncio.sleep(0.01)`` in a loop: make any such poll fail."""
    import slack_bolt.listener.asyncio_runner as bolt_runner

    class NoSleep:
        def __getattr__(self, name: str) -> Any:
            if name == "sleep":
                raise AssertionError("Bolt's runner polled for the ack")
            return getattr(asyncio, name)

    monkeypatch.setattr(bolt_runner, "asyncio", NoSleep())


async def test_the_answer_is_the_ack_and_does_not_wait_for_the_rest_of_the_listener(no_polling: None) -> None:
    app, runner = _app()
    release = asyncio.Event()
    finished: list[str] = []

    @app.command("/sms")
    async def handle(ack: AsyncAck, command: dict[str, Any]) -> None:
        await ack(text=f"got {command['text']}")
        await release.wait()
        finished.append(command["text"])

    response = await app.async_dispatch(_command("hello"))
    assert (response.status, response.body) == (200, "got hello")
    assert finished == [] and len(runner.tasks) == 1  # still running after the answer, and owned
    release.set()
    await runner.drain(timeout=5)
    assert finished == ["hello"] and not runner.tasks


async def test_a_listener_failing_before_its_ack_gets_slack_a_500_at_once(no_polling: None,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    app, _ = _app()

    @app.command("/sms")
    async def handle(ack: AsyncAck) -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR):
        response = await app.async_dispatch(_command("x"))
    assert response.status == 500
    assert any("boom" in (r.exc_text or r.getMessage()) or r.exc_info for r in caplog.records)


async def test_a_listener_failing_after_its_ack_keeps_the_ack_and_reaches_the_error_handler(no_polling: None) -> None:
    app, runner = _app()
    errors: list[str] = []

    @app.error
    async def on_error(error: Exception) -> None:
        errors.append(str(error))

    @app.command("/sms")
    async def handle(ack: AsyncAck) -> None:
        await ack(text="ok")
        raise RuntimeError("after the ack")

    response = await app.async_dispatch(_command("x"))
    assert (response.status, response.body) == (200, "ok")
    await runner.drain(timeout=5)
    assert errors == ["after the ack"]


async def test_events_are_acknowledged_before_their_listener_runs(no_polling: None) -> None:
    app, runner = _app()
    seen: list[str] = []

    @app.event("app_mention")
    async def mention(event: dict[str, Any]) -> None:
        seen.append(event["text"])

    body = {"type": "event_callback", "team_id": "T1", "api_app_id": "A1", "event_id": "Ev1", "event_time": 1,
            "event": {"type": "app_mention", "user": "U1", "text": "hi", "ts": "1.0", "channel": "C1"}}
    response = await app.async_dispatch(AsyncBoltRequest(body=json.dumps(body),
                                                         headers={"content-type": ["application/json"]}))
    assert response.status == 200
    await runner.drain(timeout=5)
    assert seen == ["hi"]
