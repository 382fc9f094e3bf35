"""Reading a bulk send's recipients (issue 13): the modal's recipients box and its CSV file, line by line.

Owns: ``from_box`` (the box: numbers or contact names), ``from_csv`` (the CSV file, read as a stream), ``combined``
(the box's entries, then the CSV's rows), ``where`` (how a line is named to the sender: "entry 3", "CSV line 7")
and the wording of every problem. Each yields ``BulkRecipient`` / ``BulkProblem`` one at a time, in input order;
duplicates, opt-outs, blocks and the recipient limit are the preview's business, not this module's.

The box: entries are separated by newlines, commas and semicolons; blank entries are skipped and not counted, so
``line`` is the entry's place among the non-blank ones ("entry 3": the third number or name typed). An entry is a
phone number (national numbers read in the deployment's ``DEFAULT_REGION``) or a contact's name — its full name or
a first name only one contact has, case and spacing ignored, as ``/sms Dana …`` reads it. A name can therefore
not contain a comma or a semicolon (put such contacts in the CSV, or type their number). A number that is in the
address book carries its contact's name (for ``{name}`` / ``{first_name}``).

The CSV: UTF-8 (a leading byte-order mark is dropped), a header line naming the columns, one of them ``number``
(also accepted: ``phone``, ``phone_number``, ``mobile``, ``mobile_number``, ``cell``; the first of these in that
order wins), optionally ``name``; every column lands in ``fields`` under its ``column_key`` (usable as
``{column}``). A header with no comma but with semicolons or tabs (Excel's export in many locales, a TSV) is read
with that delimiter. ``line`` is the physical line a row starts on (the header is line 1; a quoted cell may span
lines). Blank rows are skipped. A row with fewer cells than the header, or more that are not blank, is a problem.
A fatal problem (``BulkProblem.fatal``) refuses the whole input: the file is larger than ``max_bytes``, not
UTF-8, not text, has no header or no ``number`` column, or leaves a quote open at its end. Recipients yielded
before it are void too: the caller discards everything.

The file is never held whole: bytes are decoded incrementally, complete lines are handed to the ``csv`` module
as they arrive and each row is yielded at once; only the current incomplete record is kept.

Pure but for the contact lookups (one read of the address book per box, through ``ContactLookup``, which the
store satisfies; ``StoreUnavailable`` propagates to the caller).
Must not import: aiohttp, Slack packages, ``handlers``, a storage adapter.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from typing import Protocol

from bridge.bulk_model import BulkProblem, BulkRecipient
from bridge.bulk_text import column_key
from bridge.contacts import match, suggestions
from bridge.model import Contact
from bridge.people import MAX_CONTACTS_SCANNED
from sw_api.text import InvalidNumber, format_number, normalize_number

MAX_CSV_BYTES = 2_000_000
# The columns read as the number, in order of preference (``column_key`` form).
NUMBER_COLUMNS = ("number", "phone", "phone_number", "mobile", "mobile_number", "cell")
# A value longer than this is shortened in a problem (the preview lists values as typed).
MAX_SHOWN = 80

_BOX_SEPARATORS = re.compile(r"[\r\n,;]")
_QUOTES = "\"'“”‘’"
_LETTER = re.compile(r"[^\W\d_]")
_EOL = re.compile(r"\r\n|\r|\n")


class ContactLookup(Protocol):
    """Where names are looked up: the store (``Store.contacts``) or anything that reads the address book alike."""

    async def contacts(self, search: str = "", limit: int = 1000) -> Sequence[Contact]: ...


def where(item: BulkRecipient | BulkProblem) -> str:
    """How the sender is told which line: "entry 3" (the box) or "CSV line 7"."""
    return f"CSV line {item.line}" if item.source == "csv" else f"entry {item.line}"


def _shown(value: str) -> str:
    value = " ".join(value.split())
    return value if len(value) <= MAX_SHOWN else value[: MAX_SHOWN - 1] + "…"


def _number_problem(exc: InvalidNumber) -> str:
    """"not a valid phone number: it is too short" (the value itself is in the problem already)."""
    why = str(exc).rsplit(": ", 1)
    return f"not a valid phone number: {why[1]}" if len(why) == 2 else "not a valid phone number"


def _label(contact: Contact) -> str:
    return f"{contact.name} ({format_number(contact.number)})"


# -- the box -------------------------------------------------------------------------------------------------------

async def from_box(text: str, people_lookup: ContactLookup, region: str) -> AsyncIterator[BulkRecipient | BulkProblem]:
    """The recipients box, entry by entry (see the module docstring). The address book is read once, on the first
    entry, and not at all for an empty box."""
    entries = [value for value in (raw.strip() for raw in _BOX_SEPARATORS.split(text.replace("\ufeff", "")))
               if value]
    if not entries:
        return
    book = await people_lookup.contacts("", MAX_CONTACTS_SCANNED)
    by_number = {c.number: c for c in book}
    for entry, value in enumerate(entries, 1):
        try:
            number = normalize_number(value, region)
        except InvalidNumber as exc:
            if not _LETTER.search(value):
                yield BulkProblem(entry, _shown(value), _number_problem(exc))
                continue
        else:
            known = by_number.get(number)
            yield BulkRecipient(entry, number, known.name if known else None)
            continue
        spoken = value.strip(_QUOTES).strip()
        found = match(spoken, book)
        if len(found) == 1:
            yield BulkRecipient(entry, found[0].number, found[0].name)
        elif found:
            yield BulkProblem(entry, _shown(value), f"could be {len(found)} contacts: "
                              + ", ".join(_label(c) for c in found) + "; type the full name or the number")
        else:
            close = suggestions(spoken, book)
            hint = f" (did you mean {', '.join(_label(c) for c in close)}?)" if close else ""
            yield BulkProblem(entry, _shown(value), "no contact of that name" + hint)


# -- the CSV file --------------------------------------------------------------------------------------------------

class _Starved(Exception):
    """The csv reader wants a line that has not arrived yet: the record is parsed again when it has."""


class _Lines:
    """The complete lines received so far, handed to ``csv.reader`` one at a time; ``taken`` are those of the
    record being read (put back if it turns out to be incomplete)."""

    def __init__(self) -> None:
        self.queue: deque[str] = deque()
        self.taken: list[str] = []
        self.final = False

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self.queue:
            line = self.queue.popleft()
            self.taken.append(line)
            return line
        if self.final:
            raise StopIteration
        raise _Starved

    def put_back(self) -> None:
        self.queue.extendleft(reversed(self.taken))
        self.taken = []


def _split_lines(text: str, final: bool) -> tuple[list[str], str]:
    """Complete lines (each with its line ending) and the rest. A trailing ``\\r`` waits for the next chunk: it may
    be the first half of ``\\r\\n``."""
    lines: list[str] = []
    start = 0
    for eol in _EOL.finditer(text):
        if not final and eol.end() == len(text) and eol[0] == "\r":
            break
        lines.append(text[start:eol.end()])
        start = eol.end()
    rest = text[start:]
    if final and rest:
        lines.append(rest)
        rest = ""
    return lines, rest


def _delimiter(header_line: str) -> str:
    """Comma, unless the header has none but has tabs or semicolons (then the more frequent of them)."""
    if "," in header_line:
        return ","
    tabs, semicolons = header_line.count("\t"), header_line.count(";")
    if tabs or semicolons:
        return "\t" if tabs >= semicolons else ";"
    return ","


def _is_number(value: str, region: str) -> bool:
    try:
        normalize_number(value, region)
    except InvalidNumber:
        return False
    return bool(value.strip()) and not _LETTER.search(value)


class _CsvRows:
    """The parser's state between chunks: lines handed to ``csv``, the header once read, the line count."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.lines = _Lines()
        self.reader: Iterator[list[str]] | None = None
        self.delimiter = ","
        self.line = 1            # the physical line the next record starts on
        self.keys: list[str] | None = None
        self.number_at = 0

    def fatal(self, line: int, value: str, reason: str) -> BulkProblem:
        return BulkProblem(line, _shown(value), reason, source="csv", fatal=True)

    def feed(self, lines: list[str], final: bool) -> Iterator[BulkRecipient | BulkProblem]:
        """Every row completed by ``lines`` (all remaining rows if ``final``); stops after a fatal problem."""
        self.lines.queue.extend(lines)
        self.lines.final = final
        while True:
            if self.reader is None:
                if self.keys is None:  # blank lines before the header are skipped; the header picks the delimiter
                    while self.lines.queue and not self.lines.queue[0].strip():
                        self.lines.queue.popleft()
                        self.line += 1
                    if self.lines.queue:
                        self.delimiter = _delimiter(self.lines.queue[0])
                if not self.lines.queue:
                    if final and self.keys is None:
                        yield self.fatal(1, "", "the file is empty: its first line must name the columns, one "
                                                "of them number (number,name,…)")
                    return
                self.reader = csv.reader(self.lines, delimiter=self.delimiter, strict=True)
            self.lines.taken = []
            try:
                row = next(self.reader)
            except StopIteration:
                self.reader = None
                continue
            except _Starved:
                self.lines.put_back()
                self.reader = None  # the record is read again, whole, by a fresh reader
                return
            except csv.Error as exc:
                start, self.line = self.line, self.line + len(self.lines.taken)
                self.reader = None
                value = "".join(self.lines.taken)
                if final and not self.lines.queue and "unexpected end of data" in str(exc):
                    yield self.fatal(start, value, "a quote opened on this line is never closed, so the rest of "
                                                   "the file cannot be read; close it or remove it")
                    return
                yield BulkProblem(start, _shown(value), f"not valid CSV ({exc})", source="csv")
                continue
            start, self.line = self.line, self.line + len(self.lines.taken)
            for item in self.row(start, row):
                yield item
                if isinstance(item, BulkProblem) and item.fatal:
                    return

    def row(self, line: int, row: list[str]) -> Iterator[BulkRecipient | BulkProblem]:
        cells = [cell.strip() for cell in row]
        if not any(cells):
            return
        shown = self.delimiter.join(row)
        if self.keys is None:
            yield from self.header(line, cells, shown)
            return
        width = len(self.keys)
        if len(cells) < width or any(cells[width:]):
            yield BulkProblem(line, _shown(shown), f"expected {width} cells as in the header, found {len(cells)}",
                              source="csv")
            return
        fields = {key: cell for key, cell in zip(self.keys, cells, strict=False) if key}
        typed = cells[self.number_at]
        if not typed:
            yield BulkProblem(line, _shown(shown), "no phone number in its number column", source="csv")
            return
        try:
            number = normalize_number(typed, self.region)
        except InvalidNumber as exc:
            yield BulkProblem(line, _shown(typed), _number_problem(exc), source="csv")
            return
        yield BulkRecipient(line, number, fields.get("name") or None, fields, source="csv")

    def header(self, line: int, cells: list[str], shown: str) -> Iterator[BulkProblem]:
        keys = [column_key(cell) for cell in cells]
        seen: set[str] = set()
        for key, cell in zip(keys, cells, strict=True):
            if key and key in seen:
                yield self.fatal(line, shown, f"the header names the column “{cell}” twice; rename one of them")
                return
            seen.add(key)
        at = next((keys.index(name) for name in NUMBER_COLUMNS if name in keys), None)
        if at is None:
            if any(_is_number(cell, self.region) for cell in cells):
                reason = ("the file has no header line: its first line must name the columns, one of them number "
                          "(for example number,name)")
            else:
                found = ", ".join(f"“{cell}”" for cell in cells if cell)
                reason = (f"no number column: the header has {found}; one column must be named number "
                          "(or phone, mobile)")
            yield self.fatal(line, shown, reason)
            return
        self.keys, self.number_at = keys, at


async def from_csv(chunks: AsyncIterable[bytes], region: str, *,
                   max_bytes: int = MAX_CSV_BYTES) -> AsyncIterator[BulkRecipient | BulkProblem]:
    """The CSV file's rows, read from ``chunks`` as they arrive (see the module docstring); national numbers in
    ``region``. Ends after a fatal problem."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    rows = _CsvRows(region)
    size, head = 0, b""
    pending: list[str] = []  # the incomplete last line, in pieces (joined once an end of line arrives)
    limit = f"{max_bytes / 1_000_000:g} MB"
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            yield rows.fatal(1, "", f"the file is larger than {limit}; split it or send fewer columns")
            return
        if len(head) < 2:
            head += chunk[: 2 - len(head)]
            if head in (b"\xff\xfe", b"\xfe\xff"):
                yield rows.fatal(1, "", "the file is UTF-16 text; save it as CSV (UTF-8) and try again")
                return
        data = decoder.getstate()[0] + chunk
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            bom = 3 if size == len(chunk) and data.startswith(codecs.BOM_UTF8) else 0  # its offset skips the BOM
            yield _not_utf8(rows.line + len(rows.lines.queue), "".join(pending), data[bom: bom + exc.start])
            return
        if "\x00" in text:
            before = "".join(pending) + text[: text.index("\x00")]
            at = rows.line + len(rows.lines.queue) + len(_EOL.findall(before))
            yield rows.fatal(at, "", "the file is not a text file; export it as CSV (UTF-8)")
            return
        if "\n" not in text and "\r" not in text:
            pending.append(text)  # no line completed: nothing for the parser yet
            continue
        lines, rest = _split_lines("".join(pending) + text, final=False)
        pending = [rest]
        if not lines:
            continue  # only a trailing "\r", held back
        for item in rows.feed(lines, final=False):
            yield item
            if isinstance(item, BulkProblem) and item.fatal:
                return
    try:
        text = decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        yield _not_utf8(rows.line + len(rows.lines.queue), "".join(pending), b"")
        return
    lines, _ = _split_lines("".join(pending) + text, final=True)
    for item in rows.feed(lines, final=True):
        yield item
        if isinstance(item, BulkProblem) and item.fatal:
            return


def _not_utf8(line: int, rest: str, valid: bytes) -> BulkProblem:
    """The fatal problem of a byte that is not UTF-8, on the line it sits on (counted from the lines read)."""
    before = rest + valid.decode("utf-8", errors="ignore")
    at = line + len(_EOL.findall(before))
    return BulkProblem(at, "", "the file is not UTF-8 text (a byte on this line is not); save it as CSV (UTF-8) "
                               "and try again", source="csv", fatal=True)


async def combined(text: str, people_lookup: ContactLookup, region: str, chunks: AsyncIterable[bytes] | None = None,
                   *, max_bytes: int = MAX_CSV_BYTES) -> AsyncIterator[BulkRecipient | BulkProblem]:
    """The box's entries (``source="box"``), then the CSV's rows (``source="csv"``) if a file was given."""
    async for item in from_box(text, people_lookup, region):
        yield item
    if chunks is not None:
        async for item in from_csv(chunks, region, max_bytes=max_bytes):
            yield item
