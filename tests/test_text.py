"""Tests of sw_api.text: segment counting at every boundary carriers care about, numbers, masking."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sw_api.text import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    InvalidNumber,
    format_number,
    is_e164,
    is_gsm7,
    is_passthrough,
    is_short_code,
    mask_number,
    normalize_number,
    normalize_sender,
    segment_info,
)

EMOJI = "😀"  # outside the BMP: a UTF-16 surrogate pair, two UCS-2 units
CYR = "ж"  # in the BMP but not in GSM-7: forces UCS-2 at one unit


# --- segments --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 0),
        ("a", "GSM-7", 1, 1),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("^{}", "GSM-7", 6, 1),
        ("€", "GSM-7", 2, 1),
        ("€" * 80, "GSM-7", 160, 1),
        ("€" * 81, "GSM-7", 162, 2),
        ("a" * 159 + "€", "GSM-7", 161, 2),
        ("a" * 158 + "€", "GSM-7", 160, 1),
        ("\f", "GSM-7", 2, 1),
        ("line\nbreak", "GSM-7", 10, 1),
        ("ÄÖÑÜäöñüà é", "GSM-7", 11, 1),
        ("naïve", "UCS-2", 5, 1),
        ("\t", "UCS-2", 1, 1),
        (CYR * 70, "UCS-2", 70, 1),
        (CYR * 71, "UCS-2", 71, 2),
        (CYR * 134, "UCS-2", 134, 2),
        (CYR * 135, "UCS-2", 135, 3),
        (EMOJI, "UCS-2", 2, 1),
        (EMOJI * 35, "UCS-2", 70, 1),
        (EMOJI * 36, "UCS-2", 72, 2),
        ("a" * 69 + EMOJI, "UCS-2", 71, 2),
        # In UCS-2 the euro sign is an ordinary one-unit character.
        (CYR + "€" * 69, "UCS-2", 70, 1),
    ],
)
def test_segment_info(text: str, encoding: str, units: int, segments: int) -> None:
    info = segment_info(text)
    assert (info.encoding, info.units, info.segments) == (encoding, units, segments)
    assert info.characters == len(text)


def test_an_escape_pair_never_straddles_a_segment() -> None:
    # 306 units would fit two 153-unit parts, but the ^ escape pair sits on the boundary: it moves whole.
    text = "a" * 152 + "^" + "a" * 152
    info = segment_info(text)
    assert info.units == 306
    assert info.segments == 3


def test_a_surrogate_pair_never_straddles_a_segment() -> None:
    text = CYR * 66 + EMOJI + CYR * 66
    info = segment_info(text)
    assert info.units == 134
    assert info.segments == 3


def test_per_segment_follows_single_or_concatenated_limits() -> None:
    assert segment_info("a" * 160).per_segment == 160
    assert segment_info("a" * 161).per_segment == 153
    assert segment_info(CYR * 70).per_segment == 70
    assert segment_info(CYR * 71).per_segment == 67


def test_alphabet_sanity() -> None:
    assert "€" in GSM7_EXTENSION and "€" not in GSM7_BASIC
    assert is_gsm7("Hello @ £5!") and not is_gsm7("naïve")


_gsm_chars = st.sampled_from(sorted(GSM7_BASIC))


@given(st.text(alphabet=_gsm_chars, max_size=800))
def test_plain_gsm_text_matches_the_textbook_formula(text: str) -> None:
    n = len(text)
    expected = 0 if n == 0 else 1 if n <= 160 else math.ceil(n / 153)
    assert segment_info(text).segments == expected


@given(st.text(max_size=400))
def test_segments_are_bounded_for_any_text(text: str) -> None:
    info = segment_info(text)
    if not text:
        assert info.segments == 0
        return
    single, multi = (160, 153) if info.encoding == "GSM-7" else (70, 67)
    # Never fewer parts than the naive count; a moved pair wastes at most one unit per part.
    naive = 1 if info.units <= single else math.ceil(info.units / multi)
    assert naive <= info.segments
    assert info.segments <= (1 if info.units <= single else math.ceil(info.units / (multi - 1)))


# --- numbers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+15551234567", "US", "+15551234567"),
        ("+1 555-123-4567", "US", "+15551234567"),
        ("(555) 123-4567", "US", "+15551234567"),
        ("555.123.4567", "US", "+15551234567"),
        ("  +1 (555) 123 4567  ", "US", "+15551234567"),
        ("07700 900123", "GB", "+447700900123"),
        ("020 7946 0018", "GB", "+442079460018"),
        ("+44 7700 900123", "US", "+447700900123"),
        ("+15551234567", "GB", "+15551234567"),
    ],
)
def test_normalize_number(raw: str, region: str, expected: str) -> None:
    assert normalize_number(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "no phone number was given"),
        ("   ", "no phone number was given"),
        ("hello", "`hello` is not a phone number"),
        ("123", "too short"),
        ("+1 555 123 45678901", "too long"),
        ("555-1234", "no area code"),
        ("+999 1234567", "is not a phone number"),
    ],
)
def test_invalid_numbers_say_why(raw: str, why: str) -> None:
    with pytest.raises(InvalidNumber, match=why):
        normalize_number(raw)


def test_invalid_number_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        normalize_number("nope")


def test_uk_national_number_is_not_read_as_us() -> None:
    # Without the region the same digits are not a US number.
    with pytest.raises(InvalidNumber):
        normalize_number("07700 900123", "US")


def test_normalize_sender_keeps_short_codes() -> None:
    assert normalize_sender("12345") == "12345"
    assert normalize_sender("654321") == "654321"
    assert normalize_sender("(555) 010-0000") == "+15550100000"


@pytest.mark.parametrize(
    ("value", "e164", "short", "passthrough"),
    [
        ("+15551234567", True, False, False),
        ("+12345", True, False, False),
        ("+1234", False, False, False),
        ("+123456789012345678", False, False, False),
        ("15551234567", False, False, False),
        ("12345", False, True, False),
        ("1234567", False, False, False),
        ("988", False, False, True),
        ("+988", False, False, True),
    ],
)
def test_number_predicates(value: str, e164: bool, short: bool, passthrough: bool) -> None:
    assert (is_e164(value), is_short_code(value), is_passthrough(value)) == (e164, short, passthrough)


def test_format_number() -> None:
    assert format_number("+15551234567") == "+1 555-123-4567"
    assert format_number("+447700900123") == "+44 7700 900123"
    assert format_number("12345") == "12345"


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+15551234567", "+1555•••4567"),
        ("+447700900123", "+4477•••0123"),
        ("988", "9•••"),
        ("7", "•••"),
        ("", "-"),
        (None, "-"),
    ],
)
def test_mask_number(number: str | None, masked: str) -> None:
    assert mask_number(number) == masked


@given(st.from_regex(r"\+[1-9][0-9]{9,14}", fullmatch=True))
def test_mask_never_shows_the_middle_digits(number: str) -> None:
    masked = mask_number(number)
    assert masked == number[:5] + "•••" + number[-4:]
    assert sum(ch.isdigit() for ch in masked) == 8


def test_trailing_newline_is_not_e164_or_a_short_code() -> None:
    from sw_api.text import is_e164, is_short_code

    assert not is_e164("+15551234567\n")
    assert not is_short_code("12345\n")
