"""How the SQLite store writes and reads timestamps (one format for every table).

Owns: the text form of a ``datetime`` in the database — UTC, ISO 8601, always with microseconds, so that text
order is time order in range scans and comparisons. Must not import: anything from ``bridge`` (the storage
modules all import this one).
"""

from __future__ import annotations

from datetime import UTC, datetime


def db_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def py_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
