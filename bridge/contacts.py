"""Contacts (issue 12), the pure part: how a contact is shown, the ``/sms contact…`` grammar, finding the contact a
``/sms`` text starts with, close-name suggestions, and the CSV form of the address book.

Owns: ``labelled`` — the ONE way a number is shown in Slack when it may be a contact ("Dana Smith (+1 555-123-4567)",
the name Slack-escaped) — ``parse_contact_command``, ``split_recipient`` / ``match``, ``suggestions``, ``parse_csv``
/ ``export_csv`` and the wording of their answers.
Must not import: aiohttp, Slack packages, storage, ``handlers``. Pure functions.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from bridge.model import Contact, ContactChange, ContactOutcome, contact_key
from bridge.slack_text import escape_mrkdwn, replace_tel_links, unescape_slack
from sw_api.text import InvalidNumber, format_number, normalize_number

MAX_NAME = 80
MAX_CSV_ROWS = 5000
MAX_LISTED = 50
# The longest leading run of words tried as a full name (``/sms Dana Maria Smith Running late``).
MAX_NAME_WORDS = 5

# Slack mrkdwn's formatting markers, swapped for look-alikes so a name never bolds, strikes or codes the text
# around it (``<``, ``>``, ``&`` are escaped as Slack documents); "@" gets a word joiner so "@here" stays text.
_INERT = str.maketrans({"*": "∗", "_": "＿", "~": "∼", "`": "ˋ", "@": "@\u2060"})
_NUMBER_WORD = re.compile(r"^[+(]?[0-9][0-9().\-]*$|^\+$")


def safe_name(name: str) -> str:
    """A contact name as inert mrkdwn: no mention, link, ping or formatting can come out of it."""
    return escape_mrkdwn(" ".join(name.split())).translate(_INERT)


def labelled(number: str, name: str | None) -> str:
    """"Dana Smith (+1 555-123-4567)" for a contact, else the formatted number. Pure: the caller reads the name."""
    shown = escape_mrkdwn(format_number(number))
    return f"{safe_name(name)} ({shown})" if name and name.strip() else shown


# The first words of ``/sms`` that are commands, not names (help, issue 11's block list, issue 12's).
PEOPLE_WORDS = frozenset({"contact", "contacts", "template", "templates"})
RESERVED_WORDS = frozenset({"help", "block", "unblock", "blocked", "schedule", "scheduled", "bulk", *PEOPLE_WORDS})


def command_word(raw: str) -> tuple[str, str] | None:
    """(``contact`` | ``contacts`` | ``template`` | ``templates``, the rest) if ``/sms`` text is one of ours."""
    text = unescape_slack(replace_tel_links(raw)).strip()
    word, _, rest = text.partition(" ")
    return (word.lower(), rest) if word.lower() in PEOPLE_WORDS else None


def starts_with_name(raw: str) -> bool:
    """The ``/sms`` text does not start with a number (nor a command word): its first word may be a name."""
    text = unescape_slack(replace_tel_links(raw)).strip()
    if not text:
        return False
    first = text.split(None, 1)[0]
    return first.lower() not in RESERVED_WORDS and not _NUMBER_WORD.match(first)


def clean_text(raw: str) -> str:
    """``/sms`` text as the user typed it (Slack's escapes and tel: links undone), like ``bridge.compose``."""
    return unescape_slack(replace_tel_links(raw)).strip()


# -- /sms contact add NAME NUMBER, /sms contact remove NAME, /sms contacts [search] -------------------------------

class ContactCommandError(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class ContactCommand:
    action: str  # "add" | "remove" | "list"
    name: str = ""
    number: str = ""  # E.164


CONTACT_USAGE = ("Use `/sms contact add Dana Smith +1 555 123 4567`, `/sms contact remove Dana Smith` or "
                 "`/sms contacts [search]`.")


def check_name(name: str) -> str:
    """The name as stored (spacing collapsed), or ``ContactCommandError`` saying what is wrong with it."""
    cleaned = " ".join(name.split())
    if not cleaned:
        raise ContactCommandError("The contact needs a name.")
    if len(cleaned) > MAX_NAME:
        raise ContactCommandError(f"That name is {len(cleaned)} characters; at most {MAX_NAME} are allowed.")
    if cleaned.split()[0].lower() in RESERVED_WORDS:
        raise ContactCommandError(f"A contact name cannot start with `{cleaned.split()[0]}`: `/sms "
                                  f"{cleaned.split()[0].lower()} …` is a command.")
    if cleaned.startswith(('"', "“", "#")) or _NUMBER_WORD.match(cleaned.split()[0]):
        raise ContactCommandError(f"A contact name cannot start with a digit, `+`, `#` or a quote (`{cleaned}`): "
                                  "`/sms NAME …` would not find it.")
    return cleaned


def split_number_tail(text: str, default_region: str) -> tuple[str, str]:
    """``Dana Smith +1 555 123 4567`` → (``Dana Smith``, ``+15551234567``): the longest trailing run of number-like
    words that reads as a number (``555 123 4567`` alone would read as a national number and leave "+1")."""
    words = list(re.finditer(r"\S+", text))
    start = len(words)
    while start > 0 and _NUMBER_WORD.match(words[start - 1].group()):
        start -= 1
    if start == len(words):
        raise ContactCommandError(f"No phone number at the end. {CONTACT_USAGE}")
    last_error: InvalidNumber | None = None
    for begin in range(start, len(words)):
        try:
            number = normalize_number(text[words[begin].start():], default_region)
        except InvalidNumber as exc:
            last_error = exc
            continue
        return text[: words[begin].start()].strip() if begin else "", number
    try:
        return "", normalize_number(text[words[start].start():], default_region)
    except InvalidNumber as exc:
        raise ContactCommandError(f"{exc}. Type it with its country code, e.g. `+1 555 123 4567`.") from (
            last_error or exc)


def parse_contact_command(word: str, rest: str, default_region: str) -> ContactCommand:
    """``word`` is ``contact`` or ``contacts``; ``rest`` what follows it."""
    if word == "contacts":
        return ContactCommand("list", name=rest.strip())
    verb, _, tail = rest.strip().partition(" ")
    verb = verb.lower()
    if verb == "add":
        name, number = split_number_tail(tail, default_region)
        return ContactCommand("add", name=check_name(name), number=number)
    if verb in ("remove", "delete", "rm"):
        name = " ".join(tail.split())
        if not name:
            raise ContactCommandError(f"Which contact? {CONTACT_USAGE}")
        return ContactCommand("remove", name=name)
    if verb in ("", "list"):
        return ContactCommand("list", name=tail.strip())
    raise ContactCommandError(f"`/sms contact {verb}` is not a command. {CONTACT_USAGE}")


def change_text(change: ContactChange) -> str:
    c = change.contact
    if change.outcome is ContactOutcome.ADDED:
        return f"📇 Added {labelled(c.number, c.name)}."
    if change.outcome is ContactOutcome.RENAMED:
        return (f"📇 Renamed: {format_number(c.number)} was *{safe_name(change.previous_name or '')}*, now "
                f"*{safe_name(c.name)}* (a number belongs to one contact).")
    if change.outcome is ContactOutcome.UNCHANGED:
        return f"📇 {labelled(c.number, c.name)} is in the contacts already; nothing changed."
    return (f"⚠️ Nothing changed: the name *{safe_name(c.name)}* belongs to {format_number(c.number)} already "
            "(names are unique, whatever their case). Pick another name, or remove that contact first.")


def removed_text(removed: Contact | None, name: str) -> str:
    if removed is None:
        return f"No contact is named *{safe_name(name)}*; nothing changed. `/sms contacts` lists them."
    return f"🗑️ Removed {labelled(removed.number, removed.name)} from the contacts."


def listing_text(contacts: Sequence[Contact], search: str, total: int) -> str:
    if not contacts:
        if search:
            return f"No contact matches *{safe_name(search)}*."
        return "No contacts yet. Add one with `/sms contact add Dana Smith +1 555 123 4567`."
    head = (f"*Contacts matching {safe_name(search)}*" if search else f"*Contacts* ({total})")
    lines = [head, *(f"• {labelled(c.number, c.name)}" for c in contacts[:MAX_LISTED])]
    if len(contacts) > MAX_LISTED:
        lines.append(f"_…and {len(contacts) - MAX_LISTED} more; narrow it with `/sms contacts SEARCH`._")
    return "\n".join(lines)


# -- sending by name -----------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Recipient:
    """What a ``/sms`` text that does not start with a number names, and the text after it."""

    spoken: str  # the name as typed
    rest: str
    quoted: bool = False


def split_recipient(text: str) -> Recipient | None:
    """``"Dana Smith" Running late`` → ("Dana Smith", "Running late"); ``Dana Running late`` → ("Dana", …).
    None for an unterminated quote. Unquoted, ``resolve`` also tries longer leading runs as full names."""
    text = text.strip()
    if text[:1] in ('"', "“", "”"):
        end = re.search(r"[\"“”]", text[1:])
        if end is None:
            return None
        return Recipient(text[1:end.start() + 1].strip(), text[end.start() + 2:].strip(), quoted=True)
    words = text.split(None, 1)
    return Recipient(words[0], words[1].strip() if len(words) > 1 else "")


def _first_name(contact: Contact) -> str:
    return contact_key(contact.name).split(" ", 1)[0]


def match(spoken: str, contacts: Sequence[Contact]) -> list[Contact]:
    """Contacts ``spoken`` names: the one whose full name it is, else those whose first name it is."""
    key = contact_key(spoken)
    if not key:
        return []
    exact = [c for c in contacts if contact_key(c.name) == key]
    if exact:
        return exact
    return [c for c in contacts if _first_name(c) == key]


@dataclass(frozen=True, slots=True)
class Resolution:
    spoken: str
    rest: str
    candidates: list[Contact] = field(default_factory=list)


def resolve(text: str, contacts: Sequence[Contact]) -> Resolution | None:
    """Which contact(s) ``text`` starts with: quoted, a longest leading run of words that is a full name, or its
    first word (full or first name). None: the quote is not closed."""
    recipient = split_recipient(text)
    if recipient is None:
        return None
    if not recipient.quoted:
        words = list(re.finditer(r"\S+", text.strip()))
        stripped = text.strip()
        for n in range(min(MAX_NAME_WORDS, len(words)), 1, -1):
            spoken = stripped[: words[n - 1].end()]
            exact = [c for c in contacts if contact_key(c.name) == contact_key(spoken)]
            if exact:
                return Resolution(spoken, stripped[words[n - 1].end():].strip(), exact)
    return Resolution(recipient.spoken, recipient.rest, match(recipient.spoken, contacts))


def edit_distance(a: str, b: str, limit: int = 2) -> int:
    """Levenshtein distance, stopping early past ``limit``. Written here because no installed library offers it
    (no rapidfuzz / python-Levenshtein in the environment; difflib only has similarity ratios) and a dependency
    for twenty lines is not worth it."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def suggestions(spoken: str, contacts: Sequence[Contact], limit: int = 5) -> list[Contact]:
    """Close names: same prefix (either way round, full or first name), or within two edits."""
    key = contact_key(spoken)
    found: list[Contact] = []
    for c in contacts:
        full, first = contact_key(c.name), _first_name(c)
        if (full.startswith(key) or first.startswith(key) or (len(first) >= 2 and key.startswith(first))
                or edit_distance(key, full) <= 2 or edit_distance(key, first) <= 2):
            found.append(c)
    return found[:limit]


def _closing(outcome: str | None) -> str:
    """`` <outcome>`` after a sentence, or nothing: callers say what did not happen in their own words."""
    return f" {outcome}" if outcome else ""


def no_match_text(spoken: str, close: Sequence[Contact], *, outcome: str | None = "Nothing was sent.") -> str:
    """``outcome`` closes the first line (None: no closing sentence, as under the compose form's field)."""
    head = f"⚠️ No contact is named *{safe_name(spoken)}*, and it is not a phone number.{_closing(outcome)}"
    if close:
        return head + "\nDid you mean: " + ", ".join(labelled(c.number, c.name) for c in close) + "?"
    return head + "\nStart with the number (`/sms +1 555 123 4567 Running late`) or a name from `/sms contacts`."


def ambiguous_text(spoken: str, candidates: Sequence[Contact], *,
                   outcome: str | None = "Pick one; nothing is sent until you do.") -> str:
    """``outcome`` is the closing sentence: what to do next, or what did not happen (None: none)."""
    return (f"*{safe_name(spoken)}* could be {len(candidates)} contacts: "
            + ", ".join(labelled(c.number, c.name) for c in candidates) + "." + _closing(outcome))


# -- CSV import / export -------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CsvLine:
    line: int
    name: str
    number: str


@dataclass(frozen=True, slots=True)
class CsvRead:
    lines: list[CsvLine]
    refused: list[tuple[int, str]]  # (line number, reason)


class CsvFileError(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _is_header(row: Sequence[str]) -> bool:
    cells = [c.strip().lower() for c in row[:2]]
    return len(cells) == 2 and cells[0] in ("name", "contact") and cells[1] in ("number", "phone", "phone number")


def parse_csv(data: bytes, default_region: str) -> CsvRead:
    """Lines of ``name,number`` (header optional, national numbers read in ``default_region``): the good ones and
    each bad one with its reason. ``CsvFileError`` for a file that is not such a CSV at all."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvFileError("The file is not UTF-8 text; save it as CSV (UTF-8) and try again.") from exc
    if "\x00" in text:
        raise CsvFileError("The file is not a text file; export it as CSV (UTF-8).")
    reader = csv.reader(io.StringIO(text, newline=""))
    lines: list[CsvLine] = []
    refused: list[tuple[int, str]] = []
    numbers: dict[str, int] = {}
    names: dict[str, int] = {}
    rows = 0
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            rows += 1
            if rows > MAX_CSV_ROWS:
                raise CsvFileError(f"The file has more than {MAX_CSV_ROWS} lines; split it.")
            if rows == 1 and _is_header(row):
                continue
            if len(row) < 2 or any(cell.strip() for cell in row[2:]):
                refused.append((line, f"expected 2 columns (name,number), found {len(row)}"))
                continue
            cell = row[0][1:] if row[0][:1] == "'" and row[0][1:2] in ("=", "-", "@") else row[0]  # export_csv's
            try:
                name = check_name(cell)
            except ContactCommandError as exc:
                refused.append((line, exc.message))
                continue
            try:
                number = normalize_number(row[1], default_region)
            except InvalidNumber as exc:
                refused.append((line, f"{exc}"))
                continue
            if number in numbers:
                refused.append((line, f"{format_number(number)} is on line {numbers[number]} already"))
                continue
            if contact_key(name) in names:
                refused.append((line, f"the name {name} is on line {names[contact_key(name)]} already"))
                continue
            numbers[number], names[contact_key(name)] = line, line
            lines.append(CsvLine(line, name, number))
    except csv.Error as exc:
        raise CsvFileError(f"Line {reader.line_num} is not valid CSV ({exc}).") from exc
    if not lines and not refused:
        raise CsvFileError("The file has no contacts in it (columns: name,number).")
    return CsvRead(lines, refused)


def taken_text(name: str, holder: Contact) -> str:
    return f"the name {name} belongs to {format_number(holder.number)} already"


def name_conflicts(lines: Sequence[CsvLine], existing: Sequence[Contact]) -> list[tuple[int, str]]:
    """Lines whose name another number holds (read outside the import's transaction: for the report only)."""
    holders = {contact_key(c.name): c for c in existing}
    return [(ln.line, taken_text(ln.name, holder)) for ln in lines
            if (holder := holders.get(contact_key(ln.name))) is not None and holder.number != ln.number]


def import_report(read: CsvRead, changes: Sequence[ContactChange]) -> str:
    """What the person who imported is told. Nothing is imported if any line is refused (see ``bridge.people``)."""
    refused = list(read.refused)
    for line, change in zip(read.lines, changes, strict=False):
        if change.outcome is ContactOutcome.NAME_TAKEN:
            refused.append((line.line, taken_text(line.name, change.contact)))
    refused.sort()
    if refused:
        lines = [f"⚠️ *Nothing was imported*: {len(refused)} line{'s' if len(refused) != 1 else ''} refused. "
                 "Fix them and import the file again (nothing is half-imported)."]
        lines += [f"• line {n}: {escape_mrkdwn(why)}" for n, why in refused[:MAX_LISTED]]
        if len(refused) > MAX_LISTED:
            lines.append(f"_…and {len(refused) - MAX_LISTED} more._")
        return "\n".join(lines)
    count = {o: sum(1 for c in changes if c.outcome is o) for o in ContactOutcome}
    return (f"📇 Contacts imported: {count[ContactOutcome.ADDED]} added, {count[ContactOutcome.RENAMED]} renamed, "
            f"{count[ContactOutcome.UNCHANGED]} unchanged, 0 refused.")


def export_csv(contacts: Sequence[Contact]) -> str:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["name", "number"])
    for c in contacts:
        # A leading = + - @ would make a spreadsheet run the cell as a formula; names cannot start with + (or a
        # digit), numbers are E.164 and start with + on purpose: quote-prefix only names.
        name = "'" + c.name if c.name[:1] in ("=", "-", "@") else c.name
        writer.writerow([name, c.number])
    return out.getvalue()
