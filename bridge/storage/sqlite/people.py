"""SQLite storage of issue 12's contacts and templates: migrations 14 and 15 and their ``Store`` methods.

Owns: the ``contact`` table (primary key: the normalised number, so a number belongs to at most one contact; unique
``name_key``, so a name — case and spacing ignored, ``bridge.model.contact_key`` — to at most one number) and the
``sms_template`` table. Mixed into ``bridge.storage.sqlite.store.SqliteStore``, whose ``_one`` / ``_all`` /
``_transaction`` it uses; a put (check the name, then insert or rename) runs whole in one write transaction.
Must not import: aiohttp, Slack packages, ``handlers``, ``bridge.storage.sqlite.store`` (it is imported by it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import aiosqlite

from bridge.model import Contact, ContactChange, ContactOutcome, Template, contact_key
from bridge.storage.sqlite.timefmt import db_time

T = TypeVar("T")


class RolledBack(Exception):
    """Raised inside an import's transaction to undo it: one of its names belongs to another number."""

    def __init__(self, changes: list[ContactChange]) -> None:
        super().__init__("contacts import rolled back")
        self.changes = changes

# 14: the team-wide address book.
CONTACTS_MIGRATION = """
    CREATE TABLE contact (
        number TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        name_key TEXT NOT NULL UNIQUE,
        updated_by TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
"""

# 15: message templates, by (lower-case) name.
TEMPLATES_MIGRATION = """
    CREATE TABLE sms_template (
        name TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        updated_by TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL
    );
"""


def like_pattern(search: str) -> str:
    """``search`` as a LIKE "contains" pattern over ``name_key`` (``\\`` escapes LIKE's own wildcards)."""
    key = contact_key(search).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{key}%"


def _contact(row: aiosqlite.Row | sqlite3.Row) -> Contact:
    return Contact(row["name"], row["number"], row["updated_by"], datetime.fromisoformat(row["updated_at"]))


def _template(row: aiosqlite.Row | sqlite3.Row) -> Template:
    return Template(row["name"], row["body"], row["updated_by"], datetime.fromisoformat(row["updated_at"]))


def _put(conn: sqlite3.Connection, name: str, number: str, user_id: str, now: datetime) -> ContactChange:
    name = " ".join(name.split())
    key, at = contact_key(name), db_time(now)
    holder = conn.execute("SELECT * FROM contact WHERE name_key = ?", (key,)).fetchone()
    if holder is not None and holder["number"] != number:
        return ContactChange(ContactOutcome.NAME_TAKEN, _contact(holder))
    existing = conn.execute("SELECT * FROM contact WHERE number = ?", (number,)).fetchone()
    stored = Contact(name, number, user_id, now)
    if existing is None:
        conn.execute("INSERT INTO contact (number, name, name_key, updated_by, created_at, updated_at) "
                     "VALUES (?, ?, ?, ?, ?, ?)", (number, name, key, user_id, at, at))
        return ContactChange(ContactOutcome.ADDED, stored)
    if existing["name"] == name:
        return ContactChange(ContactOutcome.UNCHANGED, _contact(existing))
    conn.execute("UPDATE contact SET name = ?, name_key = ?, updated_by = ?, updated_at = ? WHERE number = ?",
                 (name, key, user_id, at, number))
    return ContactChange(ContactOutcome.RENAMED, stored, previous_name=str(existing["name"]))


class PeopleSql:
    """Methods of ``Store`` for contacts and templates; the host provides ``_one``, ``_all``, ``_transaction``."""

    async def _one(self, sql: str, params: Sequence[Any]) -> aiosqlite.Row | None:
        raise NotImplementedError

    async def _all(self, sql: str, params: Sequence[Any]) -> list[aiosqlite.Row]:
        raise NotImplementedError

    async def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def contact_put(self, name: str, number: str, user_id: str, now: datetime) -> ContactChange:
        return await self._transaction(lambda conn: _put(conn, name, number, user_id, now))

    async def contacts_import(self, entries: Sequence[tuple[str, str]], user_id: str,
                              now: datetime) -> list[ContactChange]:
        def work(conn: sqlite3.Connection) -> list[ContactChange]:
            changes = [_put(conn, name, number, user_id, now) for name, number in entries]
            if any(c.outcome is ContactOutcome.NAME_TAKEN for c in changes):
                raise RolledBack(changes)  # the batch rolls this body back and hands the exception over
            return changes

        try:
            return await self._transaction(work)
        except RolledBack as undone:
            return undone.changes

    async def contact_remove(self, name: str) -> Contact | None:
        def work(conn: sqlite3.Connection) -> Contact | None:
            row = conn.execute("SELECT * FROM contact WHERE name_key = ?", (contact_key(name),)).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM contact WHERE number = ?", (row["number"],))
            return _contact(row)

        return await self._transaction(work)

    async def contact_by_number(self, number: str) -> Contact | None:
        row = await self._one("SELECT * FROM contact WHERE number = ?", (number,))
        return None if row is None else _contact(row)

    async def contacts(self, search: str = "", limit: int = 1000) -> list[Contact]:
        rows = await self._all("SELECT * FROM contact WHERE name_key LIKE ? ESCAPE '\\' ORDER BY name_key LIMIT ?",
                               (like_pattern(search), max(0, int(limit))))
        return [_contact(r) for r in rows]

    async def contacts_count(self) -> int:
        row = await self._one("SELECT COUNT(*) AS n FROM contact", ())
        return 0 if row is None else int(row["n"])

    async def template_put(self, name: str, body: str, user_id: str, now: datetime) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            new = conn.execute("SELECT 1 FROM sms_template WHERE name = ?", (name.lower(),)).fetchone() is None
            conn.execute("INSERT INTO sms_template (name, body, updated_by, updated_at) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated_by = excluded.updated_by, "
                         "updated_at = excluded.updated_at", (name.lower(), body, user_id, db_time(now)))
            return new

        return await self._transaction(work)

    async def template_remove(self, name: str) -> Template | None:
        def work(conn: sqlite3.Connection) -> Template | None:
            row = conn.execute("SELECT * FROM sms_template WHERE name = ?", (name.lower(),)).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM sms_template WHERE name = ?", (name.lower(),))
            return _template(row)

        return await self._transaction(work)

    async def template_get(self, name: str) -> Template | None:
        row = await self._one("SELECT * FROM sms_template WHERE name = ?", (name.lower(),))
        return None if row is None else _template(row)

    async def templates(self, limit: int = 100) -> list[Template]:
        rows = await self._all("SELECT * FROM sms_template ORDER BY name LIMIT ?", (max(0, int(limit)),))
        return [_template(r) for r in rows]
