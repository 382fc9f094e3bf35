"""Tests of bridge.compose: the ``/sms`` grammar and the validation shared by the command and the modal."""

from __future__ import annotations

import pytest

from bridge.compose import ComposeError, SlashInput, parse_media, parse_slash_text, validate_all, validate_send
from sw_api.text import MAX_BODY_CHARS, MAX_MEDIA

SENDERS = ("+15557770000", "+15557770001")


# --- /sms grammar ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "number", "text"),
    [
        ("+15551234567 hi", "+15551234567", "hi"),
        ("+1 555 123 4567 Running 10 min late", "+1 555 123 4567", "Running 10 min late"),
        ("(555) 123-4567 hi", "(555) 123-4567", "hi"),
        ("+1 (555) 123-4567 hi", "+1 (555) 123-4567", "hi"),
        ("+1-555-123-4567 hi", "+1-555-123-4567", "hi"),
        ("555.123.4567 hi", "555.123.4567", "hi"),
        # Slack turns a typed number into a tel: link; the link's target is the number.
        ("<tel:+15551234567|+1 555 123 4567> hi", "+15551234567", "hi"),
        # Digits that start the message stay in the message.
        ("+15551234567 10 min late", "+15551234567", "10 min late"),
        ("+1 555 123 4567 10 min late", "+1 555 123 4567", "10 min late"),
        ("(555) 123-4567 5 min", "(555) 123-4567", "5 min"),
        ("<tel:+15551234567|+1 555 123 4567> 10 min late", "+15551234567", "10 min late"),
        ("5551234567 2 more", "5551234567", "2 more"),
        ("+15551234567 +15550000000 is my other phone", "+15551234567", "+15550000000 is my other phone"),
        # Slack escapes &, <, > in what the user typed; the SMS gets what they typed.
        ("+15551234567 &lt;b&gt; Tom &amp; Jerry", "+15551234567", "<b> Tom & Jerry"),
        ("+15551234567 &amp;lt; stays", "+15551234567", "&lt; stays"),
        # The message keeps its own spacing and line breaks.
        ("  +15551234567   two  spaces ", "+15551234567", "two  spaces"),
        ("+15551234567\nline one\n\nline three", "+15551234567", "line one\n\nline three"),
        ("+15551234567", "+15551234567", ""),
    ],
)
def test_quick_send(raw: str, number: str, text: str) -> None:
    assert parse_slash_text(raw, "US") == SlashInput("send", number=number, text=text)


def test_number_typed_as_one_word_ends_at_the_space_in_variable_length_plans() -> None:
    # German numbers vary in length: "+493012345675" is valid too, but the user ended the number at the space.
    parsed = parse_slash_text("+49301234567 5 min late", "DE")
    assert (parsed.number, parsed.text) == ("+49301234567", "5 min late")


def test_national_number_in_other_default_region() -> None:
    parsed = parse_slash_text("020 7946 0958 on my way", "GB")
    assert (parsed.number, parsed.text) == ("020 7946 0958", "on my way")


@pytest.mark.parametrize("raw", ["help", "HELP", " help ", "--help", "-h", "?"])
def test_help(raw: str) -> None:
    assert parse_slash_text(raw, "US").kind == "help"


@pytest.mark.parametrize("raw", ["", "   ", "\n"])
def test_empty_opens_the_modal(raw: str) -> None:
    assert parse_slash_text(raw, "US").kind == "modal"


def test_help_as_a_message_is_still_a_message() -> None:
    assert parse_slash_text("+15551234567 help", "US") == SlashInput("send", "+15551234567", "help")


@pytest.mark.parametrize("raw", ["hello there", "call +15551234567", "<@U123> hi", "&lt;b&gt;"])
def test_not_starting_with_a_number(raw: str) -> None:
    with pytest.raises(ComposeError) as info:
        parse_slash_text(raw, "US")
    assert info.value.field == "to"
    assert "is not a phone number" in info.value.message
    assert "/sms help" in info.value.message


@pytest.mark.parametrize("raw", ["123 hi", "555 1234 hi", "+1 555 hi", "+999 12345678 hi"])
def test_number_that_is_not_a_phone_number(raw: str) -> None:
    with pytest.raises(ComposeError) as info:
        parse_slash_text(raw, "US")
    assert info.value.field == "to"
    # The whole thing the user meant as the number is quoted back, with the way to fix it.
    assert raw.removesuffix(" hi") in info.value.message
    assert "country code" in info.value.message


def test_too_short_number_says_so() -> None:
    with pytest.raises(ComposeError, match="too short"):
        parse_slash_text("123 hi", "US")


def test_number_only_then_validate_says_the_message_is_empty() -> None:
    parsed = parse_slash_text("+15551234567", "US")
    with pytest.raises(ComposeError) as info:
        validate_send(
            to=parsed.number, body=parsed.text, from_=None, from_numbers=SENDERS, default_region="US",
            user_id="U1", channel_id="C1",
        )
    assert info.value.field == "body"
    assert "empty" in info.value.message


# --- validation -----------------------------------------------------------------------------------------


def errors(**changes: str | None) -> dict[str, str]:
    fields: dict[str, str | None] = {"to": "+15551234567", "body": "hi", "from_": None, "media_text": ""}
    fields.update(changes)
    return validate_all(
        to=fields["to"] or "", body=fields["body"] or "", from_=fields["from_"], from_numbers=SENDERS,
        default_region="US", media_text=fields["media_text"] or "",
    )


def test_valid_input_has_no_errors() -> None:
    assert errors() == {}
    assert errors(body="a" * MAX_BODY_CHARS) == {}
    assert errors(from_="+15557770001") == {}
    assert errors(from_="(555) 777-0001") == {}
    assert errors(body="", media_text="https://example.com/a.png") == {}
    assert errors(media_text="\n".join(f"https://example.com/{i}.png" for i in range(MAX_MEDIA))) == {}


@pytest.mark.parametrize("to", ["", "123", "hello", "+1 555"])
def test_bad_to(to: str) -> None:
    found = errors(to=to)
    assert set(found) == {"to"}
    assert "+1 555 123 4567" in found["to"]


@pytest.mark.parametrize("body", ["", "   \n "])
def test_empty_body(body: str) -> None:
    found = errors(body=body)
    assert set(found) == {"body"}
    assert "empty" in found["body"]


def test_body_one_char_too_long() -> None:
    found = errors(body="a" * (MAX_BODY_CHARS + 1))
    assert set(found) == {"body"}
    assert "1601 characters" in found["body"]
    assert "Shorten it by 1" in found["body"]


def test_surrounding_whitespace_does_not_count_towards_the_limit() -> None:
    assert errors(body=" " + "a" * MAX_BODY_CHARS + "\n") == {}


@pytest.mark.parametrize("sender", ["+15550000000", "12345", "not a number"])
def test_from_not_configured(sender: str) -> None:
    found = errors(from_=sender)
    assert set(found) == {"from"}
    assert sender in found["from"]
    # Lists the numbers that would work.
    assert "+1 555-777-0000" in found["from"] and "+1 555-777-0001" in found["from"]


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.png", "example.com/a.png", "javascript:alert(1)", "https://", "file:///etc/passwd"]
)
def test_media_not_http(url: str) -> None:
    found = errors(media_text=f"https://example.com/ok.png\n{url}")
    assert set(found) == {"media"}
    assert url in found["media"]


def test_too_many_media() -> None:
    found = errors(media_text="\n".join(f"https://example.com/{i}.png" for i in range(MAX_MEDIA + 1)))
    assert set(found) == {"media"}
    assert f"{MAX_MEDIA + 1} media URLs" in found["media"]
    assert f"at most {MAX_MEDIA}" in found["media"]


def test_every_problem_is_reported_at_once() -> None:
    found = errors(to="1", body="", from_="+15550000000", media_text="ftp://x/y")
    # A media URL (even a bad one) makes an empty body acceptable; the other three fields are each wrong.
    assert set(found) == {"to", "from", "media"}
    assert set(errors(to="1", body="", from_="+15550000000")) == {"to", "body", "from"}


def test_parse_media_skips_blank_lines_and_spaces() -> None:
    assert parse_media("  https://a.example/1.png \n\n\thttps://a.example/2.png\n") == (
        "https://a.example/1.png", "https://a.example/2.png",
    )


# --- validate_send --------------------------------------------------------------------------------------


def test_validate_send_picks_the_default_sender_and_normalises() -> None:
    request = validate_send(
        to="(555) 123-4567", body="  hi there \n", from_=None, from_numbers=SENDERS, default_region="US",
        user_id="U1", channel_id="C1", team_id="T1",
    )
    assert request.to == "+15551234567"
    assert request.from_ == "+15557770000"
    assert request.body == "hi there"
    assert (request.user_id, request.channel_id, request.team_id) == ("U1", "C1", "T1")
    assert (request.media, request.send_as_mms, request.origin) == ((), False, "command")


def test_validate_send_uses_the_chosen_sender_and_media() -> None:
    request = validate_send(
        to="+15551234567", body="", from_="+1 555 777 0001", from_numbers=SENDERS, default_region="US",
        user_id="U1", channel_id="C1", media_text="https://example.com/a.png", send_as_mms=True, origin="modal",
    )
    assert request.from_ == "+15557770001"
    assert request.media == ("https://example.com/a.png",)
    assert (request.send_as_mms, request.origin) == (True, "modal")


def test_validate_send_raises_the_first_error_with_its_field() -> None:
    with pytest.raises(ComposeError) as info:
        validate_send(
            to="+15551234567", body="x" * 2000, from_=None, from_numbers=SENDERS, default_region="US",
            user_id="U1", channel_id="C1",
        )
    assert info.value.field == "body"
    assert str(info.value) == info.value.message
