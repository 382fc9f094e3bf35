"""SMS text rules shared by the bridge and the simulator: segment counting and phone-number handling.

Owns: GSM-7 / UCS-2 segment arithmetic, E.164 normalisation (via ``phonenumbers``), display formatting and
masking of numbers for logs.
Must not import: aiohttp, Slack packages, ``bridge``, ``handlers``. Pure functions only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import phonenumbers

MAX_BODY_CHARS = 1600
MAX_MEDIA = 8

# The GSM 03.38 default alphabet (without ESC) and its extension table. No library on PyPI exposes these as
# data with a maintained segment counter, so they are spelled out here from the standard.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

Encoding = Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """How a body will travel: its encoding, size in encoding units, and the number of billed segments."""

    encoding: Encoding
    characters: int
    units: int
    segments: int

    @property
    def per_segment(self) -> int:
        """Units that fit one segment at the current length (single-part limit or concatenated limit)."""
        single, multi = _LIMITS[self.encoding]
        return single if self.segments <= 1 else multi


_LIMITS: dict[Encoding, tuple[int, int]] = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _unit_costs(text: str, encoding: Encoding) -> list[int]:
    if encoding == "GSM-7":
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    # UCS-2 as carriers implement it is UTF-16: characters outside the BMP (most emoji) take two units.
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def segment_info(text: str) -> SegmentInfo:
    """Count segments the way carriers split: an escape pair or a surrogate pair never straddles two parts."""
    encoding: Encoding = "GSM-7" if is_gsm7(text) else "UCS-2"
    costs = _unit_costs(text, encoding)
    units = sum(costs)
    single, multi = _LIMITS[encoding]
    if units == 0:
        segments = 0
    elif units <= single:
        segments = 1
    else:
        segments, used = 1, 0
        for cost in costs:
            if used + cost > multi:
                segments += 1
                used = 0
            used += cost
    return SegmentInfo(encoding=encoding, characters=len(text), units=units, segments=segments)


class InvalidNumber(ValueError):
    """A phone number that cannot be turned into E.164; the message says why, in words for a user."""


# fullmatch, not ``$``: ``$`` also matches before a trailing newline.
_E164 = re.compile(r"\+[0-9]{5,17}")
_SHORT_CODE = re.compile(r"[0-9]{5,6}")
_PASSTHROUGH = frozenset({"988", "+988"})

_REASONS = {
    phonenumbers.ValidationResult.TOO_SHORT: "it is too short",
    phonenumbers.ValidationResult.TOO_LONG: "it is too long",
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "its country code is unknown",
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "it has no area code",
    phonenumbers.ValidationResult.INVALID_LENGTH: "it has the wrong number of digits",
}


def is_e164(value: str) -> bool:
    """The API's own syntax rule for ``to``/``from``: ``+`` then 5–17 digits."""
    return bool(_E164.fullmatch(value))


def is_short_code(value: str) -> bool:
    return bool(_SHORT_CODE.fullmatch(value))


def is_passthrough(value: str) -> bool:
    return value in _PASSTHROUGH


def normalize_number(raw: str, default_region: str = "US") -> str:
    """Read a number as people type it (``(555) 123-4567``, ``+1 555-123-4567``) and return E.164.

    National numbers are read in ``default_region``. Numbers that are possible but not assigned (such as the
    fictional 555 range) are accepted: carriers, not we, decide reachability.
    """
    text = raw.strip()
    if not text:
        raise InvalidNumber("no phone number was given")
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(f"`{text}` is not a phone number ({exc._msg})") from exc
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        why = _REASONS.get(reason, "it is not a possible number")
        raise InvalidNumber(f"`{text}` is not a valid phone number: {why}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalize_sender(raw: str, default_region: str = "US") -> str:
    """Like ``normalize_number`` but short codes (5–6 digits) are kept as they are."""
    text = raw.strip()
    return text if is_short_code(text) else normalize_number(text, default_region)


def format_number(number: str) -> str:
    """E.164 → international display form (``+1 555-123-4567``); anything else is returned unchanged."""
    if not is_e164(number):
        return number
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def mask_number(number: str | None) -> str:
    """For logs: keep the country/area prefix and the last four digits (``+1555•••4567``)."""
    if not number:
        return "-"
    digits = number.strip()
    if len(digits) <= 6:
        return digits[:1] + "•••" if len(digits) > 1 else "•••"
    return f"{digits[:5]}•••{digits[-4:]}"
