"""``bot.py copy-db``: move an installation's data from one database to another, any engine to any engine.

Owns: the copy driver over the ``Store`` port only (``table_names``, ``export_rows``, ``import_rows``,
``row_counts``): refusing a target that holds data or runs another schema version, copying table by table in
batches (each batch one transaction), and verifying the row counts of both sides afterwards.
The bot must be stopped while it runs (rows written to the source during the copy would be missed; the count check
then says so). Must not import: ``handlers``, Slack packages, aiohttp, any adapter (stores come from ``open_store``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bridge.storage.engines import open_store
from bridge.storage.port import Store, StoreUnavailable
from bridge.storage.tools import redact_url

BATCH_ROWS = 500


class CopyRefused(RuntimeError):
    """The copy did not start: the target is not empty, or the two schemas differ; the message says which."""


class CopyFailed(RuntimeError):
    """A database failed part-way: the target holds the batches committed so far (empty it before trying again)."""


@dataclass(frozen=True, slots=True)
class TableCount:
    table: str
    source: int
    target: int

    @property
    def ok(self) -> bool:
        return self.source == self.target


@dataclass(frozen=True, slots=True)
class CopyReport:
    counts: tuple[TableCount, ...]

    @property
    def ok(self) -> bool:
        return all(count.ok for count in self.counts)

    def lines(self) -> list[str]:
        width = max([len(c.table) for c in self.counts] + [5])
        out = [f"{'table':<{width}}  {'source':>8}  {'target':>8}"]
        for c in self.counts:
            out.append(f"{c.table:<{width}}  {c.source:>8}  {c.target:>8}{'' if c.ok else '  MISMATCH'}")
        return out


async def copy_store(source: Store, target: Store, *, batch: int = BATCH_ROWS,
                     progress: Callable[[str], None] | None = None) -> CopyReport:
    """Copy every data table of ``source`` into ``target`` (which must hold no rows) and compare the counts."""
    mine, theirs = await source.schema_status(), await target.schema_status()
    if mine.schema_version != theirs.schema_version:
        raise CopyRefused(f"schema versions differ: source {mine.schema_version}, target {theirs.schema_version} "
                          "(run `bot.py migrate` on the older one with this version of sms-bridge)")
    tables = await source.table_names()
    missing = sorted(set(tables) - set(await target.table_names()))
    if missing:
        raise CopyRefused(f"the target has no table(s) {', '.join(missing)}")
    held = {table: n for table, n in (await target.row_counts()).items() if n}
    if held:
        listed = ", ".join(f"{table} ({n})" for table, n in sorted(held.items()))
        raise CopyRefused(f"the target already holds data: {listed}; copy-db only fills an empty database")
    for table in tables:
        copied = 0
        try:
            while rows := await source.export_rows(table, copied, batch):
                copied += await target.import_rows(table, rows)
        except (StoreUnavailable, ValueError) as exc:
            raise CopyFailed(f"copying {table} stopped after {copied} rows: {exc}; the target now holds part of "
                             "the data: empty it (or create a new database) before trying again") from exc
        if progress is not None:
            progress(f"copied {table}: {copied} rows")
    before, after = await source.row_counts(), await target.row_counts()
    return CopyReport(tuple(TableCount(t, before.get(t, 0), after.get(t, 0)) for t in tables))


async def copy_db(source_url: str, target_url: str, *, batch: int = BATCH_ROWS,
                  progress: Callable[[str], None] | None = None) -> CopyReport:
    """Open both databases (creating and migrating the target's schema if needed) and ``copy_store``.

    Raises ``CopyRefused`` before copying anything, ``StoreUnavailable`` if a database cannot be opened or read
    before the copy starts, ``CopyFailed`` if one fails during it."""
    if source_url == target_url:
        raise CopyRefused(f"source and target are the same database: {redact_url(source_url)}")
    source = await open_store(source_url)
    try:
        target = await open_store(target_url)
        try:
            return await copy_store(source, target, batch=batch, progress=progress)
        finally:
            await target.close()
    finally:
        await source.close()
