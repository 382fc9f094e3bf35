"""SQLite side of the store's administration methods (``bot.py check`` / ``migrate`` / ``copy-db``, ``/readyz``,
``/metrics``).

Owns: ``SqliteAdmin`` — ``schema_status``, ``table_names``, ``export_rows``, ``import_rows``, ``row_counts``,
``outbox_stats`` — and ``applied_version`` (peek at a file's schema without opening a store, i.e. without
migrating it). Rows cross engines as plain values: every time column (``at``, ``*_at``, ``*_until``) leaves as a
timezone-aware ``datetime`` whether SQLite keeps it as ISO text (``bridge.storage.sqlite.timefmt``) or as REAL Unix
seconds (the outbox's scheduling columns), and goes back in the column's own form.
Mixed into ``bridge.storage.sqlite.store.SqliteStore``, which provides ``_db``, ``_write_lock``, ``_all``,
``_check_open``, ``_version`` and ``schema_latest``.
Must not import: aiohttp, Slack packages, ``handlers``, ``bridge.storage.sqlite.store`` (it is imported by it).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import aiosqlite

from bridge.model import OutboxStats, SchemaStatus
from bridge.storage.port import StoreUnavailable
from bridge.storage.sqlite.timefmt import db_time, py_time

# Bookkeeping, not data: never listed, exported or counted.
_NOT_DATA = frozenset({"schema_version", "sqlite_sequence"})
_DB_ERRORS = (sqlite3.Error, ValueError)


def is_time_column(name: str) -> bool:
    return name == "at" or name.endswith(("_at", "_until"))


def applied_version(path: str) -> int | None:
    """The newest migration applied to the SQLite file at ``path``, read-only; None if there is no such file or
    it has no schema yet. Used by ``bot.py migrate`` to show the version before opening (which migrates)."""
    if not Path(path).is_file():
        return None
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_version'").fetchone() is None:
                return None
            row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"cannot read SQLite database {path}: {exc}") from exc
    return None if row is None or row[0] is None else int(row[0])


def _quoted(names: Sequence[str] | Mapping[str, str]) -> str:
    """Column names as SQL identifiers (they come from the schema itself, never from a caller)."""
    return ", ".join(f'"{name}"' for name in names)


def _to_python(value: Any, declared: str) -> Any:
    if value is None:
        return None
    if declared == "REAL":
        return datetime.fromtimestamp(float(value), UTC)
    return py_time(str(value))


def _to_sqlite(value: Any, declared: str, column: str) -> Any:
    if not isinstance(value, datetime):
        return value  # None, or a value already in SQLite's form
    if value.tzinfo is None:
        raise ValueError(f"column {column}: a naive datetime cannot be stored (rows carry timezone-aware times)")
    return value.timestamp() if declared == "REAL" else db_time(value)


class SqliteAdmin:
    """The administration methods of ``Store`` for SQLite."""

    schema_latest: ClassVar[int]  # the newest migration this code knows (set by SqliteStore from MIGRATIONS)
    _db: aiosqlite.Connection
    _write_lock: asyncio.Lock

    async def _all(self, sql: str, params: Sequence[Any]) -> list[aiosqlite.Row]:
        raise NotImplementedError

    def _check_open(self) -> None:
        raise NotImplementedError

    async def _version(self) -> int:
        raise NotImplementedError

    async def schema_status(self) -> SchemaStatus:
        self._check_open()
        try:
            version = await self._version()
            [row] = await self._all("SELECT sqlite_version()", ())
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"SQLite query failed: {exc}") from exc
        return SchemaStatus(engine="sqlite", server_version=str(row[0]), schema_version=version,
                            latest_version=self.schema_latest)

    async def table_names(self) -> list[str]:
        """Data tables, each after the tables its foreign keys point at (then by name)."""
        rows = await self._all("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name", ())
        names = [str(r["name"]) for r in rows if r["name"] not in _NOT_DATA]
        parents: dict[str, set[str]] = {}
        for name in names:
            refs = await self._all("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list(?)", (name,))
            parents[name] = {str(r[0]) for r in refs} - {name}
        ordered: list[str] = []
        while len(ordered) < len(names):
            ready = [n for n in names if n not in ordered and parents[n] <= set(ordered)]
            if not ready:  # a cycle (none in this schema): keep the rest in name order
                ready = [n for n in names if n not in ordered]
            ordered.extend(ready)
        return ordered

    async def _columns(self, table: str) -> dict[str, str]:
        """Column name → declared type (upper case) of a data table; ValueError for anything else."""
        if table not in await self.table_names():
            raise ValueError(f"not a data table: {table!r}")
        rows = await self._all("SELECT name, type FROM pragma_table_info(?) ORDER BY cid", (table,))
        return {str(r["name"]): str(r["type"]).upper() for r in rows}

    async def export_rows(self, table: str, after: int, limit: int) -> list[dict[str, Any]]:
        columns = await self._columns(table)
        rows = await self._all(f'SELECT {_quoted(columns)} FROM "{table}" ORDER BY rowid LIMIT ? OFFSET ?',
                               (max(0, int(limit)), max(0, int(after))))
        return [
            {c: _to_python(row[c], t) if is_time_column(c) else row[c] for c, t in columns.items()}
            for row in rows
        ]

    async def import_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        if not rows:
            return 0
        columns = await self._columns(table)
        names = list(rows[0])
        unknown = [n for n in names if n not in columns]
        if unknown:
            raise ValueError(f"table {table} has no column(s) {', '.join(unknown)}")
        values = [
            tuple(_to_sqlite(row[n], columns[n], n) if is_time_column(n) else row[n] for n in names)
            for row in rows
        ]
        sql = f'INSERT INTO "{table}" ({_quoted(names)}) VALUES ({", ".join("?" for _ in names)})'
        self._check_open()
        try:
            async with self._write_lock:
                await self._db.execute("BEGIN IMMEDIATE")
                try:
                    await self._db.executemany(sql, values)
                    await self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        await self._db.execute("ROLLBACK")
                    raise
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"SQLite import into {table} failed: {exc}") from exc
        return len(values)

    async def row_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for table in await self.table_names():
            [row] = await self._all(f'SELECT COUNT(*) FROM "{table}"', ())
            counts[table] = int(row[0])
        return counts

    async def outbox_stats(self, now: datetime) -> OutboxStats:
        [row] = await self._all(
            "SELECT COUNT(*), MIN(created_at) FROM slack_outbox WHERE done_at IS NULL AND failed_at IS NULL", ())
        oldest = py_time(row[1])
        age = None if oldest is None else max(0.0, (now - oldest).total_seconds())
        return OutboxStats(depth=int(row[0]), oldest_age=age)
