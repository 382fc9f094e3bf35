"""PostgreSQL storage of issue 12's contacts and templates (the tables are migrations 14 and 15 in
``bridge.storage.postgres.migrations``).

Owns: the ``contact`` and ``sms_template`` SQL. A put (check the name, then insert or rename) runs in one transaction
under an advisory lock on the address book, so two replicas adding the same number or name take turns; the primary
key (number) and the unique ``name_key`` are the last word.
Must not import: anything in ``bridge`` but ``bridge.model`` and ``bridge.storage``; aiohttp, Slack, ``handlers``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from bridge.model import Contact, ContactChange, ContactOutcome, Template, contact_key
from bridge.storage.postgres.connection import PgBase, lock_key


class RolledBack(Exception):
    """Raised inside an import's transaction to undo it: one of its names belongs to another number."""

    def __init__(self, changes: list[ContactChange]) -> None:
        super().__init__("contacts import rolled back")
        self.changes = changes


def _like(search: str) -> str:
    key = contact_key(search).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{key}%"


def _contact(row: asyncpg.Record) -> Contact:
    return Contact(row["name"], row["number"], row["updated_by"], row["updated_at"])


def _template(row: asyncpg.Record) -> Template:
    return Template(row["name"], row["body"], row["updated_by"], row["updated_at"])


async def _put(conn: asyncpg.Connection, name: str, number: str, user_id: str, now: datetime) -> ContactChange:
    name = " ".join(name.split())
    key = contact_key(name)
    holder = await conn.fetchrow("SELECT * FROM contact WHERE name_key = $1", key)
    if holder is not None and holder["number"] != number:
        return ContactChange(ContactOutcome.NAME_TAKEN, _contact(holder))
    existing = await conn.fetchrow("SELECT * FROM contact WHERE number = $1", number)
    stored = Contact(name, number, user_id, now)
    if existing is None:
        await conn.execute("INSERT INTO contact (number, name, name_key, updated_by, created_at, updated_at) "
                           "VALUES ($1, $2, $3, $4, $5, $5)", number, name, key, user_id, now)
        return ContactChange(ContactOutcome.ADDED, stored)
    if existing["name"] == name:
        return ContactChange(ContactOutcome.UNCHANGED, _contact(existing))
    await conn.execute("UPDATE contact SET name = $1, name_key = $2, updated_by = $3, updated_at = $4 "
                       "WHERE number = $5", name, key, user_id, now, number)
    return ContactChange(ContactOutcome.RENAMED, stored, previous_name=str(existing["name"]))


class PeopleSql(PgBase):
    """Methods of ``Store`` for contacts and templates."""

    async def contact_put(self, name: str, number: str, user_id: str, now: datetime) -> ContactChange:
        async with self._tx() as conn:
            await lock_key(conn, "contact")
            return await _put(conn, name, number, user_id, now)

    async def contacts_import(self, entries: Sequence[tuple[str, str]], user_id: str,
                              now: datetime) -> list[ContactChange]:
        try:
            async with self._tx() as conn:
                await lock_key(conn, "contact")
                changes = [await _put(conn, name, number, user_id, now) for name, number in entries]
                if any(c.outcome is ContactOutcome.NAME_TAKEN for c in changes):
                    raise RolledBack(changes)  # leaving the block with it rolls the transaction back
                return changes
        except RolledBack as undone:
            return undone.changes

    async def contact_remove(self, name: str) -> Contact | None:
        rows = await self._fetch_write("DELETE FROM contact WHERE name_key = $1 RETURNING *", contact_key(name))
        return _contact(rows[0]) if rows else None

    async def contact_by_number(self, number: str) -> Contact | None:
        row = await self._row("SELECT * FROM contact WHERE number = $1", number)
        return None if row is None else _contact(row)

    async def contacts(self, search: str = "", limit: int = 1000) -> list[Contact]:
        rows = await self._read("SELECT * FROM contact WHERE name_key LIKE $1 ESCAPE '\\' ORDER BY name_key "
                                "LIMIT $2", _like(search), max(0, int(limit)))
        return [_contact(r) for r in rows]

    async def contacts_count(self) -> int:
        row = await self._row("SELECT COUNT(*) AS n FROM contact")
        return 0 if row is None else int(row["n"])

    async def template_put(self, name: str, body: str, user_id: str, now: datetime) -> bool:
        rows = await self._fetch_write(
            """INSERT INTO sms_template (name, body, updated_by, updated_at) VALUES ($1, $2, $3, $4)
               ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated_by = excluded.updated_by,
                   updated_at = excluded.updated_at
               RETURNING (xmax = 0) AS inserted""", name.lower(), body, user_id, now)
        return bool(rows[0]["inserted"])

    async def template_remove(self, name: str) -> Template | None:
        rows = await self._fetch_write("DELETE FROM sms_template WHERE name = $1 RETURNING *", name.lower())
        return _template(rows[0]) if rows else None

    async def template_get(self, name: str) -> Template | None:
        row = await self._row("SELECT * FROM sms_template WHERE name = $1", name.lower())
        return None if row is None else _template(row)

    async def templates(self, limit: int = 100) -> list[Template]:
        rows = await self._read("SELECT * FROM sms_template ORDER BY name LIMIT $1", max(0, int(limit)))
        return [_template(r) for r in rows]
