"""Tests of bridge.logs: a real logger whose handler carries RedactingFilter, writing to a StringIO."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from bridge.logs import (
    REQUEST_ID,
    REQUEST_ID_HEADER,
    LogfmtFormatter,
    RedactingFilter,
    bind_request_id,
    log_handler,
    sane_request_id,
    setup_logging,
)
from demo.harness import FROM_NUMBER, running_bridge

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
API_TOKEN = "PTsecretapitoken0123456789abcdef"


class Captured:
    def __init__(self, logger: logging.Logger, stream: io.StringIO) -> None:
        self.logger = logger
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def log(request: pytest.FixtureRequest) -> Iterator[Captured]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    # No logger name in the line: test ids (and so logger names) contain the very values under test.
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter([SIGNING_SECRET, API_TOKEN, "", "short"]))
    logger = logging.getLogger(f"test_logs.{request.node.name}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield Captured(logger, stream)
    logger.removeHandler(handler)


def test_configured_secrets_are_removed(log: Captured) -> None:
    log.logger.info("signing with %s and token=%s", SIGNING_SECRET, API_TOKEN)
    assert SIGNING_SECRET not in log.text
    assert API_TOKEN not in log.text
    assert log.text.count("[redacted]") == 2


def test_secret_inside_a_longer_string(log: Captured) -> None:
    log.logger.warning(f"url=https://x.example/?k={API_TOKEN}&z=1")
    assert API_TOKEN not in log.text
    assert "&z=1" in log.text


def test_very_short_secrets_are_not_used_for_redaction(log: Captured) -> None:
    # Secrets under 6 characters would blank ordinary words all over the logs.
    log.logger.info("a short note")
    assert "a short note" in log.text


@pytest.mark.parametrize(
    "token",
    ["xoxb-1111-2222-abcDEF123", "xoxp-1-2-3-abc", "xoxa-2-abc", "xapp-1-A0123-4567-abcdef"],
)
def test_slack_tokens_are_removed(log: Captured, token: str) -> None:
    log.logger.info("client token=%s ready", token)
    assert token not in log.text
    assert "token=[redacted-token] ready" in log.text


@pytest.mark.parametrize(
    ("line", "credential"),
    [
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ("authorization=Bearer abc.def-ghi_jkl", "abc.def-ghi_jkl"),
        ("headers {'Authorization': 'Basic dXNlcjpwYXNzd29yZA=='}", "dXNlcjpwYXNzd29yZA=="),
        ('headers {"Authorization": "Bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0"}', "eyJhbGciOi.eyJzdWIi.c2lnbmF0"),
        ("headers [('Authorization', 'Basic dXNlcjpwYXNzd29yZA==')]", "dXNlcjpwYXNzd29yZA=="),
        ("auth='Basic dXNlcjpwYXNzd29yZA=='", "dXNlcjpwYXNzd29yZA=="),
    ],
)
def test_basic_and_bearer_credentials_are_removed(log: Captured, line: str, credential: str) -> None:
    log.logger.debug("%s", line)
    assert credential not in log.text
    assert "[redacted]" in log.text


def test_prose_about_authentication_stays_readable(log: Captured) -> None:
    log.logger.info("Basic authentication failed; Bearer token missing")
    assert "Basic authentication failed; Bearer token missing" in log.text


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("+15551234567", "+1555•••4567"),
        ("+447911123456", "+4479•••3456"),
    ],
)
def test_e164_numbers_are_masked(log: Captured, raw: str, masked: str) -> None:
    log.logger.info("send to=%s (%s)", raw, raw)
    assert raw not in log.text
    assert f"to={masked} ({masked})" in log.text


def test_url_encoded_numbers_are_masked(log: Captured) -> None:
    log.logger.info("callback body %s", "To=%2B15551234567&From=%2b15557770000&Body=hi")
    assert "15551234567" not in log.text and "15557770000" not in log.text
    assert "To=%2B1555•••4567" in log.text


def test_other_numbers_are_left_alone(log: Captured) -> None:
    log.logger.info("segments=12345 ts=1700000000.000100 short=+1234 already=+1555•••4567")
    assert "segments=12345 ts=1700000000.000100 short=+1234 already=+1555•••4567" in log.text


def test_exception_tracebacks_are_redacted(log: Captured) -> None:
    try:
        raise RuntimeError(f"send to +15551234567 failed with xoxb-1-2-secret and {API_TOKEN}")
    except RuntimeError:
        log.logger.exception("while sending to %s", "+15551234567")
    assert "Traceback" in log.text
    assert "RuntimeError: send to +1555•••4567 failed with [redacted-token] and [redacted]" in log.text
    assert "+15551234567" not in log.text
    assert API_TOKEN not in log.text
    assert "xoxb-1-2-secret" not in log.text


def test_chained_exception_is_redacted(log: Captured) -> None:
    try:
        try:
            raise ValueError(f"inner {SIGNING_SECRET}")
        except ValueError as inner:
            raise RuntimeError("outer +15551234567") from inner
    except RuntimeError:
        log.logger.error("failed", exc_info=True)
    assert SIGNING_SECRET not in log.text
    assert "+15551234567" not in log.text
    assert "ValueError: inner [redacted]" in log.text


def test_traceback_cached_by_an_earlier_handler_is_redacted_too(log: Captured) -> None:
    # Another handler formatting first caches record.exc_text unredacted; our filter must still clean it.
    plain = logging.StreamHandler(io.StringIO())
    plain.setFormatter(logging.Formatter("%(message)s"))
    log.logger.handlers.insert(0, plain)
    try:
        try:
            raise RuntimeError(f"boom {API_TOKEN}")
        except RuntimeError:
            log.logger.exception("x")
    finally:
        log.logger.removeHandler(plain)
    assert API_TOKEN not in log.text
    assert "RuntimeError: boom [redacted]" in log.text


def test_stack_info_is_redacted(log: Captured) -> None:
    # Stack lines quote source code; the comment on the next line puts the secret and a number in it.
    log.logger.info("here", stack_info=True)  # PTsecretapitoken0123456789abcdef +15551234567
    assert "Stack (most recent call last)" in log.text
    assert 'log.logger.info("here", stack_info=True)  # [redacted] +1555•••4567' in log.text
    assert API_TOKEN not in log.text


def test_bad_format_arguments_do_not_raise_or_leak(log: Captured) -> None:
    log.logger.info("two %s %s", "+15551234567")
    assert "+1555•••4567" in log.text
    assert "+15551234567" not in log.text


def test_setup_logging_installs_the_filter_on_the_root_handler(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        setup_logging("DEBUG", secrets=[API_TOKEN])
        logging.getLogger("third.party").info("to %s with %s", "+15551234567", API_TOKEN)
        for name in ("slack_sdk", "slack_bolt", "aiosqlite"):
            assert logging.getLogger(name).getEffectiveLevel() >= logging.INFO, name
        err = capsys.readouterr().err
        assert "to +1555•••4567 with [redacted]" in err
        assert API_TOKEN not in err
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        for name in ("slack_sdk", "slack_bolt", "aiosqlite", "aiohttp.access"):
            logging.getLogger(name).setLevel(logging.NOTSET)


# --- the line format and the request id -------------------------------------------------------------------------


def _record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad\nvalue")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("bridge.test", logging.WARNING, __file__, 1, msg, args, exc_info)


def _fields(line: str) -> dict[str, str]:
    """Parse one logfmt line the way a log shipper would (shlex honours the quoting and the escapes)."""
    import shlex

    return dict(part.split("=", 1) for part in shlex.split(line))


def test_logfmt_line_has_every_field_in_order() -> None:
    line = LogfmtFormatter().format(_record("send accepted ref=%s", "abc"))
    assert "\n" not in line
    assert re.fullmatch(r'ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=warning logger=bridge\.test '
                        r'request_id=- msg="send accepted ref=abc"', line), line


@pytest.mark.parametrize(
    "message",
    ['plain', 'with "quotes" and = signs', "two\nlines\r\tand tab", "back\\slash", "", "ünïcode ✓"],
)
def test_logfmt_values_round_trip_through_a_parser(message: str) -> None:
    line = LogfmtFormatter().format(_record("%s", message))
    assert "\n" not in line and "\r" not in line
    assert _fields(line)["msg"] == message.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r") or (
        _fields(line)["msg"] == message)


def test_logfmt_keeps_a_traceback_on_the_same_line() -> None:
    line = LogfmtFormatter().format(_record("failed", exc=True))
    assert "\n" not in line
    fields = _fields(line)
    assert fields["msg"] == "failed"
    assert fields["exc"].startswith("Traceback (most recent call last):\\n")
    assert "ValueError: bad\\nvalue" in fields["exc"]


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("abc123", True),
        ("0f8e2c1a-9b7d-4e5f-8a6b-1c2d3e4f5a6b", True),
        ("Root=1-67891233-abcdef012345678912345678", True),
        ("", False),
        (None, False),
        ("x" * 65, False),
        ("has space", False),
        ('quote"d', False),
        ("line\nbreak", False),
        ("+15551234567", False),
    ],
)
def test_incoming_request_ids_are_kept_only_when_plain(incoming: str | None, kept: bool) -> None:
    request_id = sane_request_id(incoming)
    assert (request_id == incoming) is kept
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:=-]{0,63}", request_id)


async def test_request_id_reaches_records_of_tasks_started_inside_the_request() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("test_logs.request_id")
    handler = log_handler(stream)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        async def background() -> None:
            await asyncio.sleep(0.01)
            logger.info("later")

        request_id, token = bind_request_id("req-1")
        task = asyncio.get_running_loop().create_task(background())
        logger.info("now")
        REQUEST_ID.reset(token)
        logger.info("outside")
        await task
    finally:
        logger.removeHandler(handler)
    lines = {_fields(line)["msg"]: _fields(line)["request_id"] for line in stream.getvalue().splitlines()}
    assert request_id == "req-1"
    assert lines == {"now": "req-1", "later": "req-1", "outside": "-"}


# --- the whole bridge at DEBUG: nothing secret, ever ----------------------------------------------------------


async def test_full_send_at_debug_leaks_no_secret_and_no_number(tmp_path: Path) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved_level = root.level
    async with running_bridge(tmp_path) as h:
        config = h.config
        secrets = [config.slack_bot_token, config.slack_signing_secret, config.signalwire_api_token,
                   config.signalwire_signing_key]
        handler = log_handler(stream, secrets)
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            response = await h.driver.raw(
                urlencode({"command": "/sms", "text": "+1 555 123 4567 Secret plan", "user_id": "U0ALICE",
                           "channel_id": "C0GENERAL", "team_id": "T0001", "trigger_id": "1.2.3",
                           "response_url": f"{h.slack.response_url_base}/C0GENERAL/U0ALICE"}).encode(),
                "application/x-www-form-urlencoded", headers={REQUEST_ID_HEADER: "e2e-send-1"})
            await h.settle()
            [sms] = h.simulator.messages.values()
            sent = await h.bridge.store.find_by_sw_id(sms.id)
            assert sent is not None
            tokens = [h.bridge.tokens.token(sent.ref)]
            # The inbound leg too: a reply from the phone, signed like SignalWire's, in both webhook formats.
            for fmt in ("json", "form"):
                delivery = await h.simulator.inject_inbound("+15551234567", FROM_NUMBER, f"ok ({fmt})",
                                                            url=h.bot_url + "/signalwire/inbound", fmt=fmt)
                assert delivery.status == 200
            await h.settle()
        finally:
            root.removeHandler(handler)
            root.setLevel(saved_level)
    text = stream.getvalue()
    headers = {k.lower(): v for k, v in response.headers.items()}
    assert response.status == 200 and headers.get(REQUEST_ID_HEADER.lower()) == "e2e-send-1"
    assert sms.status == "delivered"
    assert len(text.splitlines()) > 20, "DEBUG logging was not captured"
    assert all(line.startswith("ts=") for line in text.splitlines())
    for secret in [*secrets, *tokens, h.simulator.config.api_token, h.simulator.config.signing_key]:
        assert secret not in text, f"secret {secret[:4]}… leaked"
    for digits in ("15551234567", "5551234567", "555-123-4567", "555) 123-4567"):
        assert digits not in text, f"full number leaked as {digits}"
    assert "+1555•••4567" in text
    # The send itself ran in a task spawned by the slash command: its lines carry that request's id.
    [requested] = [line for line in text.splitlines() if "send requested" in line]
    assert _fields(requested)["request_id"] == "e2e-send-1"


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("+1 555-123-4567", "+1555•••4567"),
        ("+1 (555) 123-4567", "+1555•••4567"),
        ("+44 7911 123456", "+4479•••3456"),
        ("+33 6 12 34 56 78", "+3361•••5678"),
        ("+1.555.123.4567", "+1555•••4567"),
    ],
)
def test_formatted_numbers_are_masked(log: Captured, raw: str, masked: str) -> None:
    log.logger.info("text: 'SMS to %s: hi'", raw)
    assert raw not in log.text
    assert f"SMS to {masked}: hi" in log.text


def test_formatted_looking_non_numbers_are_left_alone(log: Captured) -> None:
    line = "at 2026-11-27T06:17:51.741666+00:00 version +1 2 retry +3 s short=+1 555"
    log.logger.info(line)
    assert line in log.text


async def test_every_answer_echoes_a_request_id_even_a_413(tmp_path: Path) -> None:
    async with running_bridge(tmp_path) as h:
        async def post(path: str, body: bytes, request_id: str | None) -> tuple[int, str | None]:
            headers = {"Content-Type": "application/json"}
            if request_id is not None:
                headers[REQUEST_ID_HEADER] = request_id
            async with h.session.post(h.bot_url + path, data=body, headers=headers) as response:
                await response.read()
                return response.status, response.headers.get(REQUEST_ID_HEADER)

        oversized = b'{"pad": "' + b"x" * (256 * 1024) + b'"}'
        assert await post("/signalwire/inbound", oversized, "big-1") == (413, "big-1")
        status, generated = await post("/signalwire/status", b"{}", "has space; x=1")
        assert status == 401 and generated is not None and re.fullmatch(r"[0-9a-f]{12}", generated)
        async with h.session.get(h.bot_url + "/healthz") as response:
            assert response.status == 200 and re.fullmatch(r"[0-9a-f]{12}", response.headers[REQUEST_ID_HEADER])
        assert h.simulator.created_count() == 0 and not h.slack.called("chat.postMessage")


async def test_full_send_at_debug_logs_no_message_body_and_no_callback_secret(tmp_path: Path) -> None:
    """``LOG_LEVEL=DEBUG`` as bot.py sets it up, from before the first start (when the callback secret is created):
    third-party loggers that print SQL parameters or request bodies (aiosqlite, slack_sdk, slack_bolt) stay quiet,
    so neither an SMS body nor the callback HMAC secret reaches the log."""
    from bridge.logs import PARAMETER_LOGGERS
    from sw_api.simulator import SimulatorConfig

    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    sim = SimulatorConfig()
    body, reply = "Secret plan: meet at the old mill", "Confidential reply about the mill"
    try:
        setup_logging("DEBUG", ["xoxb-fake", "demo-slack-signing-secret", sim.api_token, sim.signing_key], stream)
        async with running_bridge(tmp_path) as h:
            logging.getLogger("test_logs").debug("debug logging is on")
            await h.driver.slash_command(f"+1 555 123 4567 {body}")
            await h.settle()
            [sms] = h.simulator.messages.values()
            assert sms.status == "delivered" and sms.body == body
            delivery = await h.simulator.inject_inbound("+15551234567", FROM_NUMBER, reply,
                                                        url=h.bot_url + "/signalwire/inbound", fmt="json")
            assert delivery.status == 200
            await h.settle()
            callback_secret = (await h.bridge.store.secret("callback")).hex()
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        for name in PARAMETER_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
        logging.getLogger("aiohttp.access").setLevel(logging.NOTSET)
    text = stream.getvalue()
    assert "debug logging is on" in text and len(text.splitlines()) > 15, "DEBUG logging was not captured"
    for word in ("Secret plan", "old mill", "Confidential reply"):
        assert word not in text, f"message body leaked: {word!r}"
    assert callback_secret not in text, "the callback HMAC secret leaked"
    assert "logger=aiosqlite" not in text


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\x85", "\x1b", "\x0b", "\x0c", "\x1c", "\x00", "\x7f",
                                  "\u200b", "\ufeff", "\U000e0001"])
def test_logfmt_escapes_every_non_printable_character(char: str) -> None:
    line = LogfmtFormatter().format(_record("a%sb [31mred", char))
    assert len(line.splitlines()) == 1 and line.isprintable(), repr(line)
    assert char not in line
    code = ord(char)
    escaped = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    assert _fields(line)["msg"] == f"a{escaped}b [31mred"


def test_logfmt_keeps_printable_unicode_and_escapes_it_inside_tracebacks_too() -> None:
    assert LogfmtFormatter().format(_record("%s", "héllo ✓ 👋")).endswith('msg="héllo ✓ 👋"')
    try:
        raise ValueError("bad\u2028value\x1b[2J")
    except ValueError:
        import sys

        record = logging.LogRecord("bridge.test", logging.ERROR, __file__, 1, "x", None, sys.exc_info())
    line = LogfmtFormatter().format(record)
    assert len(line.splitlines()) == 1 and line.isprintable()
    assert "ValueError: bad\\u2028value\\x1b[2J" in _fields(line)["exc"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_repeated_identical_lines_are_limited_and_counted() -> None:
    from bridge.logs import RepeatLimiter

    clock = FakeClock()
    stream = io.StringIO()
    logger = logging.getLogger("test_logs.repeat")
    handler = log_handler(stream, limiter=RepeatLimiter(limit=3, window=60, clock=clock))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        for _ in range(1000):
            logger.error("socket.accept() out of system resource")
        logger.warning("another line")
        for n in range(3):
            logger.info("distinct %d", n)
        assert stream.getvalue().count("out of system resource") == 3
        clock.now = 61.0
        logger.info("a minute later")
        logger.error("socket.accept() out of system resource")
    finally:
        logger.removeHandler(handler)
    msgs = [_fields(line)["msg"] for line in stream.getvalue().splitlines()]
    summary = "suppressed 997 identical lines in 60s (logger=test_logs.repeat): socket.accept() out of system resource"
    assert msgs == ["socket.accept() out of system resource"] * 3 + [
        "another line", "distinct 0", "distinct 1", "distinct 2", summary, "a minute later",
        "socket.accept() out of system resource"]


def test_suppressed_lines_are_counted_at_close() -> None:
    from bridge.logs import RepeatLimiter

    stream = io.StringIO()
    handler = log_handler(stream, limiter=RepeatLimiter(limit=2, window=60, clock=FakeClock()))
    logger = logging.getLogger("test_logs.repeat_close")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for _ in range(5):
            logger.warning("same")
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert [_fields(line)["msg"] for line in stream.getvalue().splitlines()] == [
        "same", "same", "suppressed 3 identical lines in 60s (logger=test_logs.repeat_close): same"]
