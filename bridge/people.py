"""Contacts and templates (issue 12) against the store: the answers to ``/sms contact…`` / ``/sms template…``,
finding a recipient by name, filling a template, CSV import / export, and the names shown for numbers.

Owns: ``People`` (every operation above, each turning ``StoreUnavailable`` into a plain "nothing changed" answer)
and ``ContactNames`` — a number's contact name read from the store when a post is rendered, kept in memory for a
few seconds only as a cache (the store is the truth: another replica may rename a contact at any time).
Must not import: aiohttp, Slack packages, ``handlers``, a storage adapter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bridge import contacts as book
from bridge import templates as tpl
from bridge.model import Contact, ContactOutcome, Template
from bridge.ports import utcnow
from bridge.storage.port import Store, StoreUnavailable
from sw_api.text import InvalidNumber, mask_number, normalize_number

log = logging.getLogger("bridge.people")

NOT_RECORDED = ("⚠️ Nothing changed: sms-bridge could not reach its database. Try again in a minute; if it keeps "
                "happening, tell whoever runs sms-bridge.")
# How long a name read from the store is reused before it is read again (a rename shows within this time).
NAME_CACHE_SECONDS = 5.0
MAX_CONTACTS_SCANNED = 10_000


class ContactNames:
    """``name_of(number)``: the contact name to show for a number, or None. A short-lived cache over the store."""

    def __init__(self, store: Store, ttl: float = NAME_CACHE_SECONDS) -> None:
        self.store = store
        self.ttl = ttl
        self._cache: dict[str, tuple[float, str | None]] = {}

    async def name_of(self, number: str) -> str | None:
        hit = self._cache.get(number)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        try:
            contact = await self.store.contact_by_number(number)
        except StoreUnavailable:
            # A post without the name is better than no post: the number alone is always right.
            log.warning("contact name of %s not read; showing the number", mask_number(number))
            return None
        name = contact.name if contact is not None else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[number] = (time.monotonic(), name)
        return name

    async def names_of(self, numbers: Iterable[str]) -> dict[str, str]:
        """The names of those of ``numbers`` that are in the contact book (each looked up once, through the cache)."""
        names: dict[str, str] = {}
        for number in set(numbers):
            if (name := await self.name_of(number)) is not None:
                names[number] = name
        return names

    def forget(self, number: str) -> None:
        self._cache.pop(number, None)

    async def label(self, number: str) -> str:
        return book.labelled(number, await self.name_of(number))


@dataclass(frozen=True, slots=True)
class Found:
    """A recipient found by name: exactly one contact (``contact``), several (``candidates``), or an error."""

    rest: str = ""
    contact: Contact | None = None
    candidates: list[Contact] = field(default_factory=list)
    error: str | None = None
    spoken: str = ""


class People:
    def __init__(self, store: Store, default_region: str, names: ContactNames | None = None) -> None:
        self.store = store
        self.default_region = default_region
        self.names = names or ContactNames(store)

    # -- /sms contact add|remove, /sms contacts ----------------------------------------------------------------

    async def contact_command(self, command: book.ContactCommand, user_id: str) -> str:
        try:
            if command.action == "add":
                change = await self.store.contact_put(command.name, command.number, user_id, utcnow())
                self.names.forget(command.number)
                log.info("contact %s %s by %s", change.outcome, mask_number(command.number), user_id)
                return book.change_text(change)
            if command.action == "remove":
                removed = await self.store.contact_remove(command.name)
                if removed is not None:
                    self.names.forget(removed.number)
                    log.info("contact of %s removed by %s", mask_number(removed.number), user_id)
                return book.removed_text(removed, command.name)
            found = await self.store.contacts(command.name, book.MAX_LISTED + 1)
            return book.listing_text(found, command.name, await self.store.contacts_count())
        except StoreUnavailable:
            log.exception("contact %s not done", command.action)
            return NOT_RECORDED

    async def add_contact(self, name: str, number: str, user_id: str) -> tuple[bool, str]:
        """The App Home's Add form: (False, why) if nothing could change (the name is another number's)."""
        try:
            change = await self.store.contact_put(name, number, user_id, utcnow())
        except StoreUnavailable:
            log.exception("contact add not done")
            return False, NOT_RECORDED
        self.names.forget(number)
        return change.outcome is not ContactOutcome.NAME_TAKEN, book.change_text(change)

    # -- /sms template add|remove, /sms templates ----------------------------------------------------------------

    async def template_command(self, command: tpl.TemplateCommand, user_id: str) -> str:
        try:
            if command.action == "add":
                new = await self.store.template_put(command.name, command.body, user_id, utcnow())
                wanted = tpl.placeholders(command.body)
                fills = (" Placeholders: " + ", ".join("{" + p + "}" for p in wanted) + ".") if wanted else ""
                verb = "Saved" if new else "Replaced"
                example = "".join(f" {p}=…" for p in wanted if p not in tpl.CONTACT_FIELDS)
                return (f"🧩 {verb} template `#{command.name}`.{fills} "
                        f"Send it with `/sms Dana #{command.name}{example}`.")
            if command.action == "remove":
                removed = await self.store.template_remove(command.name)
                if removed is None:
                    return f"There is no template `#{command.name}`; nothing changed."
                return f"🗑️ Removed template `#{command.name}`."
            return tpl.listing_text(await self.store.templates())
        except StoreUnavailable:
            log.exception("template %s not done", command.action)
            return NOT_RECORDED

    async def templates(self) -> list[Template]:
        return await self.store.templates()

    async def template(self, name: str) -> Template | None:
        return await self.store.template_get(name)

    # -- recipients by name, template bodies ---------------------------------------------------------------------

    async def find(self, text: str, *, outcome: str | None = "Nothing was sent.") -> Found:
        """The contact ``text`` starts with (``Dana …``, ``"Dana Smith" …``, ``Dana Smith …``). ``outcome`` is the
        sentence an error closes with, saying what did not happen (None: none)."""
        everyone = await self.store.contacts("", MAX_CONTACTS_SCANNED)
        resolution = book.resolve(text, everyone)
        if resolution is None:
            closing = f" {outcome}" if outcome else ""
            return Found(error=f"⚠️ The quoted name has no closing quote.{closing} "
                               'Write it like `/sms "Dana Smith" Running late`.')
        if not resolution.candidates:
            close = book.suggestions(resolution.spoken, everyone)
            return Found(error=book.no_match_text(resolution.spoken, close, outcome=outcome),
                         spoken=resolution.spoken)
        if len(resolution.candidates) > 1:
            return Found(rest=resolution.rest, candidates=resolution.candidates, spoken=resolution.spoken)
        return Found(rest=resolution.rest, contact=resolution.candidates[0], spoken=resolution.spoken)

    async def recipient_number(self, typed: str) -> tuple[str | None, str | None]:
        """The modal's ``to`` field: (a number to send to, or None with the error to show under the field; None
        and None: ``typed`` is a mistyped number, whose own error stands)."""
        try:
            normalize_number(typed, self.default_region)
            return typed, None
        except InvalidNumber:
            if not book.starts_with_name(typed):
                return None, None  # a mistyped number: its own error stands
        # Under a form field the form itself says nothing was sent: no closing sentence.
        found = await self.find(typed, outcome=None)
        if found.error is not None:
            return None, found.error
        if found.rest:
            return None, f"Only a name or a number goes here; “{found.rest}” is more than that."
        if found.candidates:
            return None, book.ambiguous_text(found.spoken, found.candidates,
                                             outcome="Type the full name or the number.")
        assert found.contact is not None
        return found.contact.number, None

    async def body(self, number: str, text: str) -> str:
        """``text`` as typed, or the template it names (``#late minutes=10``) filled for ``number``;
        ``TemplateError`` saying what is missing. ``#word`` that is no stored template is a typo (an error) when
        only ``key=value`` words follow it, else an ordinary message sent as typed (``#1 priority``)."""
        name = tpl.named(text)
        if name is None:
            return text
        template = await self.store.template_get(name)
        if template is None:
            try:
                tpl.parse_use(text)
            except tpl.TemplateError:
                return text  # "#1 priority": not a template, an ordinary message
            # Only values follow the name: a mistyped template, never to be texted as it is.
            raise tpl.TemplateError(tpl.no_template_text(name, await self.store.templates()))
        use = tpl.parse_use(text)
        assert use is not None
        contact = await self.store.contact_by_number(number)
        return tpl.fill(template, use.values, number, contact)

    # -- CSV -------------------------------------------------------------------------------------------------------

    async def import_csv(self, data: bytes, user_id: str) -> str:
        """Import a ``name,number`` CSV: every line or, if any line is refused, none (each refusal reported)."""
        try:
            read = book.parse_csv(data, self.default_region)
        except book.CsvFileError as exc:
            return f"⚠️ Nothing was imported: {exc.message}"
        if read.refused:
            try:  # the other lines' own problems too, so one round of fixes is enough
                taken = book.name_conflicts(read.lines, await self.store.contacts("", MAX_CONTACTS_SCANNED))
            except StoreUnavailable:
                taken = []
            return book.import_report(book.CsvRead(read.lines, [*read.refused, *taken]), [])
        try:
            changes = await self.store.contacts_import([(ln.name, ln.number) for ln in read.lines], user_id,
                                                       utcnow())
        except StoreUnavailable:
            log.exception("contacts import not done")
            return NOT_RECORDED.replace("Nothing changed", "Nothing was imported")
        for line in read.lines:
            self.names.forget(line.number)
        log.info("contacts import by %s: %d lines", user_id, len(read.lines))
        return book.import_report(read, changes)

    async def export_csv(self) -> tuple[str, int]:
        """The address book as CSV text and how many contacts it holds."""
        everyone = await self.store.contacts("", MAX_CONTACTS_SCANNED)
        return book.export_csv(everyone), len(everyone)

    async def all_contacts(self) -> Sequence[Contact]:
        return await self.store.contacts("", MAX_CONTACTS_SCANNED)
