"""PostgreSQL side of the store's administration methods (``bot.py check`` / ``migrate`` / ``copy-db``, ``/readyz``,
``/metrics``).

Owns: ``schema_status``, ``table_names``, ``export_rows``, ``import_rows``, ``row_counts``, ``outbox_stats``. Rows
cross engines as plain values (str, int, float, bytes, None, timezone-aware ``datetime``) under SQLite's column
names; the internal ``rowid`` columns (see ``bridge.storage.postgres.migrations``) are neither exported nor imported.
Import accepts any engine's export (a time column may also come as ISO text or Unix seconds) and moves the outbox's
id sequence past the imported ids.
Must not import: anything in ``bridge`` but ``bridge.model`` and ``bridge.storage``; aiohttp, Slack, ``handlers``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bridge.model import OutboxStats, SchemaStatus
from bridge.storage.postgres.connection import PgBase
from bridge.storage.postgres.migrations import LATEST

_NOT_DATA = frozenset({"schema_version"})
_HIDDEN = frozenset({"rowid"})
_TIME = "timestamp with time zone"


def _quoted(names: Sequence[str]) -> str:
    """Column names as SQL identifiers (they come from the catalog, checked against it, never raw from a caller)."""
    return ", ".join(f'"{name}"' for name in names)


def _to_pg(value: Any, column: str, data_type: str) -> Any:
    if value is None:
        return None
    if data_type == _TIME:
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError(f"column {column}: a naive datetime cannot be stored (rows carry aware times)")
            return value
        if isinstance(value, int | float):
            return datetime.fromtimestamp(float(value), UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
        raise ValueError(f"column {column}: not a time: {type(value).__name__}")
    if data_type in ("integer", "bigint") and isinstance(value, bool):
        return int(value)
    if data_type == "double precision" and isinstance(value, int):
        return float(value)
    return value


class AdminSql(PgBase):
    """The administration methods of ``Store`` for PostgreSQL."""

    async def schema_status(self) -> SchemaStatus:
        row = await self._row("SELECT current_setting('server_version') AS v, "
                              "(SELECT MAX(version) FROM schema_version) AS n")
        assert row is not None
        return SchemaStatus(engine="postgresql", server_version=str(row["v"]).split()[0],
                            schema_version=int(row["n"] or 0), latest_version=LATEST)

    async def table_names(self) -> list[str]:
        """Data tables, each after the tables its foreign keys point at (then by name), like SQLite's."""
        rows = await self._read(
            """SELECT c.relname AS name, COALESCE(array_agg(DISTINCT p.relname)
                       FILTER (WHERE p.relname IS NOT NULL AND p.relname <> c.relname), '{}') AS parents
               FROM pg_class c
               LEFT JOIN pg_constraint k ON k.conrelid = c.oid AND k.contype = 'f'
               LEFT JOIN pg_class p ON p.oid = k.confrelid
               WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace
               GROUP BY c.relname ORDER BY c.relname""")
        parents = {str(r["name"]): set(r["parents"]) for r in rows if r["name"] not in _NOT_DATA}
        names = sorted(parents)
        ordered: list[str] = []
        while len(ordered) < len(names):
            ready = [n for n in names if n not in ordered and parents[n] <= set(ordered)]
            ordered.extend(ready or [n for n in names if n not in ordered])
        return ordered

    async def _columns(self, table: str) -> dict[str, str]:
        """Column name → data type of a data table, in column order; ValueError for anything else."""
        if table not in await self.table_names():
            raise ValueError(f"not a data table: {table!r}")
        rows = await self._read(
            """SELECT column_name, data_type FROM information_schema.columns
               WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position""", table)
        return {str(r["column_name"]): str(r["data_type"]) for r in rows if r["column_name"] not in _HIDDEN}

    async def _order(self, table: str) -> str:
        """A stable order: arrival (``rowid``) where the table has one, else its primary key."""
        rows = await self._read(
            """SELECT a.attname AS name FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
               WHERE i.indrelid = $1::regclass AND i.indisprimary
               ORDER BY array_position(i.indkey, a.attnum)""", f'public."{table}"')
        has_rowid = await self._row(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 "
            "AND column_name = 'rowid'", table)
        keys = ["rowid"] if has_rowid is not None else [str(r["name"]) for r in rows]
        return _quoted(keys)

    async def export_rows(self, table: str, after: int, limit: int) -> list[dict[str, Any]]:
        columns = await self._columns(table)
        rows = await self._read(
            f'SELECT {_quoted(list(columns))} FROM "{table}" ORDER BY {await self._order(table)} LIMIT $1 OFFSET $2',
            max(0, int(limit)), max(0, int(after)))
        return [dict(r.items()) for r in rows]

    async def import_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        if not rows:
            return 0
        columns = await self._columns(table)
        names = [n for n in rows[0] if n not in _HIDDEN]
        unknown = [n for n in names if n not in columns]
        if unknown:
            raise ValueError(f"table {table} has no column(s) {', '.join(unknown)}")
        values = [tuple(_to_pg(row[n], n, columns[n]) for n in names) for row in rows]
        marks = ", ".join(f"${i}" for i in range(1, len(names) + 1))
        async with self._tx() as conn:
            await conn.executemany(f'INSERT INTO "{table}" ({_quoted(names)}) VALUES ({marks})', values)
            if table == "slack_outbox" and "id" in names:
                # Ids given explicitly do not move the identity sequence: new items must come after them.
                await conn.execute(
                    """SELECT setval(pg_get_serial_sequence('slack_outbox', 'id'),
                                     GREATEST((SELECT COALESCE(MAX(id), 0) FROM slack_outbox), 1),
                                     (SELECT MAX(id) IS NOT NULL FROM slack_outbox))""")
        return len(values)

    async def row_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for table in await self.table_names():
            row = await self._row(f'SELECT COUNT(*) AS n FROM "{table}"')
            counts[table] = 0 if row is None else int(row["n"])
        return counts

    async def outbox_stats(self, now: datetime) -> OutboxStats:
        row = await self._row(
            "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM slack_outbox "
            "WHERE done_at IS NULL AND failed_at IS NULL")
        assert row is not None
        oldest = row["oldest"]
        age = None if oldest is None else max(0.0, (now - oldest).total_seconds())
        return OutboxStats(depth=int(row["n"]), oldest_age=age)
