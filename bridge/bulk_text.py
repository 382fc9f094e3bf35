"""The placeholders of a bulk message (issue 13): ``{name}``, ``{first_name}`` and any CSV ``{column}``.

Owns: ``column_key`` (how a CSV header becomes a placeholder name: trimmed, lower case, spaces as ``_``),
``placeholders`` (the names a template uses, in order), ``unknown_placeholders`` (those no column provides — the
modal refuses them before anything is stored) and ``render`` (one recipient's text; a known placeholder without a
value for this recipient becomes empty, so "Hi {first_name}," reads "Hi ,": the preview's sample shows it).
Only ``{word}`` is a placeholder; any other brace is kept as typed (no ``str.format``: a stray ``{`` must not fail).
Pure. Must not import: anything in ``bridge`` but ``bridge.bulk_model``; storage, aiohttp, Slack packages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bridge.bulk_model import BulkRecipient

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
BUILT_IN = ("name", "first_name", "number")


def column_key(header: str) -> str:
    return re.sub(r"\s+", "_", header.strip().lower())


def placeholders(template: str) -> list[str]:
    seen: dict[str, None] = {}
    for match in _PLACEHOLDER.finditer(template):
        seen.setdefault(match[1].lower())
    return list(seen)


def unknown_placeholders(template: str, columns: Iterable[str]) -> list[str]:
    known = set(BUILT_IN) | {column_key(c) for c in columns}
    return [name for name in placeholders(template) if name not in known]


def render(template: str, recipient: BulkRecipient) -> str:
    fields = {column_key(k): v for k, v in recipient.fields.items()}
    name = (recipient.name or fields.get("name") or "").strip()
    values = {**fields, "name": name, "first_name": name.split()[0] if name else "", "number": recipient.number}

    def value(match: re.Match[str]) -> str:
        key = match[1].lower()
        return values.get(key, match[0]).strip() if key in values else match[0]

    return _PLACEHOLDER.sub(value, template)
