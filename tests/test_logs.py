"""Tests of bridge.logs: a real logger whose handler carries RedactingFilter, writing to a StringIO."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from bridge.logs import RedactingFilter, setup_logging

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
        assert logging.getLogger("slack_sdk").getEffectiveLevel() >= logging.INFO
        err = capsys.readouterr().err
        assert "to +1555•••4567 with [redacted]" in err
        assert API_TOKEN not in err
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        logging.getLogger("slack_sdk").setLevel(logging.NOTSET)
        logging.getLogger("aiohttp.access").setLevel(logging.NOTSET)
