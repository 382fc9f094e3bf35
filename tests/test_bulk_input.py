"""bridge.bulk_input: the recipients box (numbers, contact names from a real SQLite store) and the CSV file read as
a stream (delimiters, BOM, header, ragged rows, quoting, encoding, the 2 MB limit, flat memory)."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.bulk_input import MAX_CSV_BYTES, ContactLookup, combined, from_box, from_csv, where
from bridge.bulk_model import BulkProblem, BulkRecipient
from bridge.model import Contact
from bridge.storage.engines import open_store
from bridge.storage.port import Store

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
Item = BulkRecipient | BulkProblem


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'bulk.db'}")
    try:
        for name, number in (("Dana Smith", "+15551230001"), ("Dana Jones", "+15551230002"),
                             ("Lee Park", "+15551230003"), ("Ana María Ruiz", "+15551230004")):
            assert (await opened.contact_put(name, number, "U1", NOW)).outcome is not None
        yield opened
    finally:
        await opened.close()


class NoBook:
    """A lookup that must not be asked (a box without entries reads no contacts)."""

    calls = 0

    async def contacts(self, search: str = "", limit: int = 1000) -> Sequence[Contact]:
        self.calls += 1
        return []


async def box(text: str, lookup: ContactLookup, region: str = "US") -> list[Item]:
    return [item async for item in from_box(text, lookup, region)]


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def read(data: bytes, size: int = 65536, region: str = "US", **kw: int) -> list[Item]:
    return [item async for item in from_csv(pieces(data, size), region, **kw)]


def problems(items: Sequence[Item]) -> list[BulkProblem]:
    return [i for i in items if isinstance(i, BulkProblem)]


def recipients(items: Sequence[Item]) -> list[BulkRecipient]:
    return [i for i in items if isinstance(i, BulkRecipient)]


# -- the box -------------------------------------------------------------------------------------------------------

async def test_box_splits_on_newlines_commas_and_semicolons_counting_entries(store: Store) -> None:
    items = await box("+1 555 999 0001, +15559990002;(555) 999-0003\n\n  555.999.0004 ,,;\r\n+15559990005", store)
    assert [(i.line, i.number, i.source) for i in recipients(items)] == [
        (1, "+15559990001", "box"), (2, "+15559990002", "box"), (3, "+15559990003", "box"),
        (4, "+15559990004", "box"), (5, "+15559990005", "box")]
    assert problems(items) == []
    assert where(items[2]) == "entry 3"


async def test_box_reads_national_numbers_in_the_region(store: Store) -> None:
    gb = await box("020 7946 0018", store, region="GB")
    assert [(r.line, r.number) for r in recipients(gb)] == [(1, "+442079460018")]
    us = await box("555 1230001\n020 7946 0018", store)  # the same British number read as American
    assert recipients(us)[0].number == "+15551230001"
    assert [(p.line, p.value) for p in problems(us)] == [(2, "020 7946 0018")]
    assert problems(us)[0].reason == "not a valid phone number: it is too long"


async def test_box_invalid_number_is_a_problem_with_its_entry_number(store: Store) -> None:
    items = await box("+15559990001\n12\n+1555", store)
    assert [(p.line, p.value, p.source, p.fatal) for p in problems(items)] == [(2, "12", "box", False),
                                                                              (3, "+1555", "box", False)]
    assert all(p.reason.startswith("not a valid phone number") for p in problems(items))


async def test_box_names_unique_full_or_first_name_case_insensitive(store: Store) -> None:
    items = await box("dana  SMITH\nLee\n\"Lee Park\"\nana maría ruiz", store)
    assert [(r.line, r.number, r.name) for r in recipients(items)] == [
        (1, "+15551230001", "Dana Smith"), (2, "+15551230003", "Lee Park"), (3, "+15551230003", "Lee Park"),
        (4, "+15551230004", "Ana María Ruiz")]
    assert problems(items) == []


async def test_box_ambiguous_name_names_the_candidates(store: Store) -> None:
    [problem] = await box("Dana", store)
    assert isinstance(problem, BulkProblem) and problem.line == 1 and problem.value == "Dana"
    assert "could be 2 contacts" in problem.reason
    assert "Dana Smith (+1 555-123-0001)" in problem.reason and "Dana Jones (+1 555-123-0002)" in problem.reason


async def test_box_unknown_name_is_a_problem_with_close_names_suggested(store: Store) -> None:
    unknown, typo = await box("Zebulon\nLee Prak", store)
    assert isinstance(unknown, BulkProblem) and unknown.reason == "no contact of that name"
    assert isinstance(typo, BulkProblem) and typo.line == 2
    assert typo.reason.startswith("no contact of that name") and "Lee Park" in typo.reason


async def test_box_number_of_a_contact_carries_its_name(store: Store) -> None:
    items = await box("(555) 123-0003, +15559990001", store)
    assert [(r.number, r.name) for r in recipients(items)] == [("+15551230003", "Lee Park"), ("+15559990001", None)]


async def test_empty_box_reads_no_contacts() -> None:
    lookup = NoBook()
    assert await box(" \n , ;; \n", lookup) == []
    assert lookup.calls == 0
    assert len(await box("+15559990001", lookup)) == 1 and lookup.calls == 1


# -- the CSV file --------------------------------------------------------------------------------------------------

async def test_csv_columns_land_in_fields_and_lines_count_from_the_header() -> None:
    data = b"Number, Name ,Store Name\n+15559990001,Dana Smith,Main St\n\n(555) 999-0002,,Elm\n"
    items = await read(data)
    assert problems(items) == []
    first, second = recipients(items)
    assert (first.line, first.number, first.name, first.source) == (2, "+15559990001", "Dana Smith", "csv")
    assert dict(first.fields) == {"number": "+15559990001", "name": "Dana Smith", "store_name": "Main St"}
    assert (second.line, second.number, second.name) == (4, "+15559990002", None)
    assert where(second) == "CSV line 4"


async def test_csv_phone_column_is_accepted_as_the_number() -> None:
    [item] = await read(b"Mobile,name\n5559990001,Lee\n")
    assert isinstance(item, BulkRecipient) and item.number == "+15559990001" and item.name == "Lee"


async def test_csv_national_numbers_in_the_region() -> None:
    [item] = await read(b"number\n020 7946 0018\n", region="GB")
    assert isinstance(item, BulkRecipient) and item.number == "+442079460018"


async def test_csv_leading_bom_is_dropped_even_split_across_chunks() -> None:
    data = "\ufeffnumber,name\n+15559990001,Zoë\n".encode()
    for size in (1, 2, 65536):
        [item] = await read(data, size=size)
        assert isinstance(item, BulkRecipient), size
        assert item.name == "Zoë" and "number" in item.fields


@pytest.mark.parametrize("delimiter", [";", "\t"])
async def test_csv_semicolon_or_tab_file_is_read_with_its_delimiter(delimiter: str) -> None:
    data = delimiter.join(["name", "number", "note"]).encode() + b"\r\n"
    data += delimiter.join(["Smith, Dana", "+15559990001", "a;b" if delimiter == "\t" else "x"]).encode() + b"\r\n"
    [item] = await read(data)
    assert isinstance(item, BulkRecipient)
    assert (item.number, item.name) == ("+15559990001", "Smith, Dana")
    assert item.fields["note"] == ("a;b" if delimiter == "\t" else "x")


async def test_csv_without_number_column_is_refused_on_line_1_naming_the_columns() -> None:
    items = await read(b"Name,Telephone no\nDana,+15559990001\n")
    assert len(items) == 1
    [problem] = items
    assert isinstance(problem, BulkProblem) and problem.fatal and problem.line == 1 and problem.source == "csv"
    assert "“Name”" in problem.reason and "“Telephone no”" in problem.reason and "number" in problem.reason


async def test_csv_without_header_line_says_so() -> None:
    [problem] = await read(b"+15559990001,Dana\n+15559990002,Lee\n")
    assert isinstance(problem, BulkProblem) and problem.fatal and problem.line == 1
    assert "no header line" in problem.reason


async def test_csv_header_naming_a_column_twice_is_refused() -> None:
    [problem] = await read(b"number,Name,name\n+15559990001,a,b\n")
    assert isinstance(problem, BulkProblem) and problem.fatal and "twice" in problem.reason


async def test_csv_ragged_rows_are_problems_with_their_line() -> None:
    data = (b"number,name,store\n+15559990001,Dana\n+15559990002,Lee,Main,extra\n"
            b"+15559990003,Kim,Elm,,\n,Nobody,Elm\n12,Short,Elm\n")
    items = await read(data)
    assert [(r.line, r.number) for r in recipients(items)] == [(4, "+15559990003")]
    found = [(p.line, p.fatal) for p in problems(items)]
    assert found == [(2, False), (3, False), (5, False), (6, False)]
    reasons = [p.reason for p in problems(items)]
    assert reasons[0] == "expected 3 cells as in the header, found 2"
    assert reasons[1] == "expected 3 cells as in the header, found 4"
    assert reasons[2] == "no phone number in its number column"
    assert reasons[3].startswith("not a valid phone number") and problems(items)[3].value == "12"


@pytest.mark.parametrize("size", [1, 3, 65536])
async def test_csv_quoted_cells_with_commas_and_newlines(size: int) -> None:
    data = (b'number,name,note\r\n+15559990001,"Smith, Dana","first line\r\nsecond, line"\r\n'
            b'+15559990002,"Lee ""the"" Park",plain\r\n+15559990003,Kim,"a\n\nb"\r\n+15559990004,End,x')
    items = await read(data, size=size)
    assert problems(items) == []
    assert [(r.line, r.name) for r in recipients(items)] == [
        (2, "Smith, Dana"), (4, 'Lee "the" Park'), (5, "Kim"), (8, "End")]
    assert recipients(items)[0].fields["note"] == "first line\r\nsecond, line"


@pytest.mark.parametrize("size", [3, 65536])
async def test_csv_badly_quoted_or_oversized_cell_is_a_problem_on_its_line_and_reading_goes_on(size: int) -> None:
    data = (b'number,name\n+15559990001,"Dana"x\n+15559990002,Lee\n+15559990003,' + b"y" * 200_000
            + b"\n+15559990004,Kim\n")
    items = await read(data, size=size)
    assert [(r.line, r.number) for r in recipients(items)] == [(3, "+15559990002"), (5, "+15559990004")]
    assert [(p.line, p.fatal) for p in problems(items)] == [(2, False), (4, False)]
    assert all(p.reason.startswith("not valid CSV") for p in problems(items))
    assert len(problems(items)[1].value) <= 80


async def test_csv_old_mac_line_endings_split_across_chunks_count_lines_right() -> None:
    data = b"number\r+15559990001\r\r+15559990002\r"
    items = await read(data, size=1)
    assert [(r.line, r.number) for r in recipients(items)] == [(2, "+15559990001"), (4, "+15559990002")]


async def test_csv_quote_never_closed_refuses_the_file() -> None:
    items = await read(b'number,name\n+15559990001,"Dana\n+15559990002,Lee\n', size=5)
    assert isinstance(items[-1], BulkProblem) and items[-1].fatal and items[-1].line == 2
    assert "never closed" in items[-1].reason


async def test_csv_invalid_utf8_is_one_fatal_problem_and_stops() -> None:
    data = b"number,name\n+15559990001,Dana\n+15559990002,Ren\xe9\n+15559990003,Kim\n"
    # In small chunks line 2 is yielded before the bad byte arrives (the fatal problem voids it); in one chunk not.
    for size, before in ((4, [2]), (65536, [])):
        items = await read(data, size=size)
        assert [r.line for r in recipients(items)] == before, size
        last = items[-1]
        assert isinstance(last, BulkProblem) and last.fatal and last.line == 3, size
        assert "not UTF-8" in last.reason
        assert len(problems(items)) == 1


async def test_csv_utf16_and_binary_files_are_refused() -> None:
    [utf16] = await read("number\n+15559990001\n".encode("utf-16"))
    assert isinstance(utf16, BulkProblem) and utf16.fatal and "UTF-16" in utf16.reason
    [binary] = await read(b"number\n\x00\x01\x02")
    assert isinstance(binary, BulkProblem) and binary.fatal and "not a text file" in binary.reason


async def test_csv_empty_file_is_refused() -> None:
    for data in (b"", b"\n\n  \n", "\ufeff".encode()):
        [problem] = await read(data)
        assert isinstance(problem, BulkProblem) and problem.fatal and "empty" in problem.reason


async def test_csv_larger_than_2_mb_is_refused_without_reading_the_rest() -> None:
    row = b"+15559990001,Dana Smith,Main Street store\n"
    data = b"number,name,store\n" + row * (MAX_CSV_BYTES // len(row) + 10)
    assert len(data) > MAX_CSV_BYTES
    pulled = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal pulled
        async for chunk in pieces(data + row * 100_000, 65536):
            pulled += 1
            yield chunk

    items = [item async for item in from_csv(counted(), "US")]
    last = items[-1]
    assert isinstance(last, BulkProblem) and last.fatal and last.reason.startswith("the file is larger than 2 MB")
    assert pulled == MAX_CSV_BYTES // 65536 + 1  # stopped at the chunk that crossed the limit
    # Exactly at the limit is still read.
    exact = b"number\n" + b"+15559990001\n" * ((MAX_CSV_BYTES - 7) // 13)
    assert not problems(await read(exact[:MAX_CSV_BYTES]))


async def test_csv_of_40000_rows_is_streamed_in_chunks_with_flat_memory() -> None:
    header = b"number,name,store\n"
    rows = [f"+1212{i:07d},Customer Number {i:05d},Store {i % 97:02d}\n".encode() for i in range(40_000)]
    data = header + b"".join(rows)
    del rows
    assert 1_700_000 < len(data) < MAX_CSV_BYTES
    pulled = 0
    pulled_at_first: int | None = None

    async def counted() -> AsyncIterator[bytes]:
        nonlocal pulled
        for start in range(0, len(data), 65536):
            pulled += 1
            yield data[start:start + 65536]

    count, last_line = 0, 0
    tracemalloc.start()
    try:
        async for item in from_csv(counted(), "US"):
            assert isinstance(item, BulkRecipient)
            if pulled_at_first is None:
                pulled_at_first = pulled
            count, last_line = count + 1, item.line
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 40_000 and last_line == 40_001
    assert pulled_at_first == 1 and pulled == len(data) // 65536 + 1
    assert peak < 5_000_000, peak


# -- both ----------------------------------------------------------------------------------------------------------

async def test_combined_yields_the_box_then_the_csv_with_distinguishable_lines(store: Store) -> None:
    items = [item async for item in combined("Lee, 12", store, "US",
                                             pieces(b"number,name\n+15559990001,Dana\nxx,Bad\n", 7))]
    assert [(type(i).__name__, i.source, i.line) for i in items] == [
        ("BulkRecipient", "box", 1), ("BulkProblem", "box", 2),
        ("BulkRecipient", "csv", 2), ("BulkProblem", "csv", 3)]
    assert [where(i) for i in items] == ["entry 1", "entry 2", "CSV line 2", "CSV line 3"]
    assert [i.line for i in [item async for item in combined("Lee", store, "US")]] == [1]
