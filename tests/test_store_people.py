"""The storage contract of issue 12's contacts and templates (migrations 14 and 15), on every engine: a number belongs
to at most one contact (adding it again renames), a name (case and spacing ignored) to at most one number, an import
is all or nothing, two replicas adding the same number at once leave one contact, templates by name.

Uses the ``store`` / ``store_pair`` fixtures of tests/conftest.py (SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bridge.model import ContactOutcome
from bridge.storage.port import Store

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DANA, JO = "+15551234567", "+15559876543"


async def test_add_rename_unchanged_and_name_taken(store: Store) -> None:
    added = await store.contact_put("Dana  Smith", DANA, "U1", T0)
    assert added.outcome is ContactOutcome.ADDED and added.contact.name == "Dana Smith"
    same = await store.contact_put("Dana Smith", DANA, "U1", T0)
    assert same.outcome is ContactOutcome.UNCHANGED
    renamed = await store.contact_put("Dana Jones", DANA, "U2", T0 + timedelta(seconds=1))
    assert renamed.outcome is ContactOutcome.RENAMED and renamed.previous_name == "Dana Smith"
    taken = await store.contact_put("dana JONES", JO, "U1", T0)
    assert taken.outcome is ContactOutcome.NAME_TAKEN and taken.contact.number == DANA
    assert await store.contact_by_number(JO) is None
    stored = await store.contact_by_number(DANA)
    assert stored is not None and (stored.name, stored.updated_by) == ("Dana Jones", "U2")
    assert await store.contacts_count() == 1


async def test_search_remove_and_like_wildcards_are_literal(store: Store) -> None:
    await store.contact_put("Dana Smith", DANA, "U1", T0)
    await store.contact_put("Jo 100% Real", JO, "U1", T0)
    assert [c.name for c in await store.contacts()] == ["Dana Smith", "Jo 100% Real"]
    assert [c.name for c in await store.contacts("SMI")] == ["Dana Smith"]
    assert [c.name for c in await store.contacts("0%")] == ["Jo 100% Real"]
    assert await store.contacts("_") == []
    removed = await store.contact_remove("dana smith")
    assert removed is not None and removed.number == DANA
    assert await store.contact_remove("Dana Smith") is None
    assert await store.contacts_count() == 1


async def test_import_is_all_or_nothing(store: Store) -> None:
    await store.contact_put("Dana Smith", DANA, "U1", T0)
    changes = await store.contacts_import([("Jo", JO), ("Dana Smith", "+15550001111")], "U1", T0)
    assert [c.outcome for c in changes] == [ContactOutcome.ADDED, ContactOutcome.NAME_TAKEN]
    assert await store.contact_by_number(JO) is None, "one refused name: nothing of the import is kept"
    changes = await store.contacts_import([("Jo", JO), ("Dana S", DANA)], "U1", T0)
    assert [c.outcome for c in changes] == [ContactOutcome.ADDED, ContactOutcome.RENAMED]
    assert await store.contacts_count() == 2


async def test_two_replicas_adding_the_same_number_leave_one_contact(store_pair: tuple[Store, Store]) -> None:
    first, second = store_pair
    results = await asyncio.gather(*(s.contact_put(f"Name {i}", DANA, "U1", T0)
                                     for i, s in enumerate([first, second, first, second])))
    assert sum(r.outcome is ContactOutcome.ADDED for r in results) == 1
    assert await first.contacts_count() == 1


async def test_templates(store: Store) -> None:
    assert await store.template_put("Late", "Running {minutes} min late", "U1", T0)
    assert not await store.template_put("late", "Late by {minutes}", "U2", T0)
    got = await store.template_get("LATE")
    assert got is not None and (got.name, got.body, got.updated_by) == ("late", "Late by {minutes}", "U2")
    await store.template_put("arrived", "Here!", "U1", T0)
    assert [t.name for t in await store.templates()] == ["arrived", "late"]
    removed = await store.template_remove("late")
    assert removed is not None and removed.body == "Late by {minutes}"
    assert await store.template_remove("late") is None and await store.template_get("late") is None
