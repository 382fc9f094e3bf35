"""The App Home's contact buttons over real HTTP (issue 12): Add (a modal), Import CSV (a modal with a
``file_input``; the file downloaded with the bot token; the report in the person's DM: added / renamed / refused with
line numbers; nothing imported if any line is refused), Export CSV (uploaded into the DM, and read back in: a round
trip); plus ``parse_csv`` itself (header optional, national numbers in ``DEFAULT_REGION``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge import contacts as book
from demo.harness import Harness, running_bridge
from handlers.contacts_actions import ADD_FORM, IMPORT_FORM

DM = "DU0ALICE"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bridge(tmp_path, env={"SMS_ALLOWED_USERS": "U0ALICE,U0BOB"}) as harness:
        yield harness


async def _open(h: Harness, action: str, user: str = "U0ALICE") -> dict[str, Any]:
    before = set(h.slack.views)
    assert (await h.driver.block_action(action, None, user_id=user)).status == 200
    await h.settle()
    [new] = [v for k, v in h.slack.views.items() if k not in before]
    return new


async def _import(h: Harness, data: bytes, name: str = "contacts.csv") -> str:
    view = await _open(h, "contacts_import")
    assert view["callback_id"] == IMPORT_FORM
    [file_block] = [b for b in view["blocks"] if b.get("block_id") == "file"]
    assert file_block["element"]["type"] == "file_input"
    file = h.slack.files.add_file(data, name, "text/csv")
    before = len(h.slack.messages(DM)) if h.slack.called("conversations.open") else 0
    answer = await h.driver.view_submission(view, {"file": {"file": {"type": "file_input", "files": [file]}}})
    assert answer.status == 200 and not answer.body.strip()
    await h.settle()
    reports = h.slack.messages(DM)[before:]
    assert len(reports) == 1, reports
    return reports[0].text


async def test_import_with_header_national_numbers_and_renames(h: Harness) -> None:
    await h.driver.slash_command("contact add Dee +1 555 222 3333")
    await h.settle()
    report = await _import(h, b"name,number\nDana Smith,(555) 123-4567\n\nJo Bloggs,+44 20 7946 0958\n"
                              b"Dee Jones,555-222-3333\n")
    assert "2 added, 1 renamed, 0 unchanged, 0 refused" in report
    names = {c.number: c.name for c in await h.bridge.store.contacts()}
    assert names == {"+15551234567": "Dana Smith", "+442079460958": "Jo Bloggs", "+15552223333": "Dee Jones"}
    assert all(d.authorized for d in h.slack.files.downloads), "the file is fetched with the bot token"


async def test_import_without_header(h: Harness) -> None:
    report = await _import(h, "Zoë Ångström,5551234567\r\nBob,+15559876543\r\n".encode())
    assert "2 added" in report
    assert {c.name for c in await h.bridge.store.contacts()} == {"Zoë Ångström", "Bob"}


async def test_bad_lines_are_reported_with_line_numbers_and_nothing_is_imported(h: Harness) -> None:
    await h.driver.slash_command("contact add Taken Name +1 555 000 9999")
    await h.settle()
    data = (b"name,number\nDana,+15551234567\nNo Number,12\n,+15552223333\nDana Again,(555) 123-4567\n"
            b"Taken Name,+15553334444\nThree,+15554445555,extra\n")
    report = await _import(h, data)
    assert "Nothing was imported" in report and "5 lines refused" in report
    assert "line 3: " in report and "not a valid phone number" in report
    assert "line 4: The contact needs a name." in report
    assert "line 5: +1 555-123-4567 is on line 2 already" in report
    assert "line 6: the name Taken Name belongs to +1 555-000-9999 already" in report
    assert "line 7: expected 2 columns" in report
    assert [c.name for c in await h.bridge.store.contacts()] == ["Taken Name"], "nothing half-imported"
    assert "not UTF-8" in await _import(h, b"\xff\xfe\x00bad")


async def test_export_uploads_a_csv_to_the_dm_and_it_reads_back_unchanged(h: Harness) -> None:
    for line in ("contact add Dana Smith +1 555 123 4567", "contact add =Sneaky +1 555 987 6543"):
        await h.driver.slash_command(line)
    await h.settle()
    assert (await h.driver.block_action("contacts_export", None)).status == 200
    await h.settle()
    [upload] = list(h.slack.uploads.files.values())
    assert upload.filename == "contacts.csv" and upload.data is not None
    assert [share[0] for share in upload.shares] == [DM]
    text = upload.data.decode()
    assert text.splitlines() == ["name,number", "'=Sneaky,+15559876543", "Dana Smith,+15551234567"]
    report = await _import(h, upload.data)
    assert "0 added, 0 renamed, 2 unchanged, 0 refused" in report


async def test_add_form_and_who_may_use_the_buttons(h: Harness) -> None:
    view = await _open(h, "contacts_add")
    assert view["callback_id"] == ADD_FORM
    bad = (await h.driver.view_submission(view, {"name": {"name": {"type": "plain_text_input", "value": " "}},
                                                 "number": {"number": {"type": "plain_text_input",
                                                                       "value": "12"}}})).json()
    assert set(bad["errors"]) == {"name", "number"}
    ok = await h.driver.view_submission(view, {"name": {"name": {"type": "plain_text_input", "value": "Dana"}},
                                               "number": {"number": {"type": "plain_text_input",
                                                                     "value": "555 123 4567"}}})
    assert ok.status == 200 and not ok.body.strip()
    await h.settle()
    assert "Added Dana (+1 555-123-4567)" in h.slack.messages(DM)[-1].text
    assert (await h.driver.block_action("contacts_export", None, user_id="U0CAROL")).status == 200
    await h.settle()
    assert "SMS_ALLOWED_USERS" in h.slack.messages("DU0CAROL")[-1].text
    assert not h.slack.uploads.files


def test_parse_csv_reads_national_numbers_in_the_default_region() -> None:
    read = book.parse_csv(b"Name,Phone\nAnna,020 7946 0958\n", "GB")
    assert [(ln.line, ln.name, ln.number) for ln in read.lines] == [(2, "Anna", "+442079460958")]
    with pytest.raises(book.CsvFileError, match="no contacts"):
        book.parse_csv(b"name,number\n", "US")


async def test_the_home_tab_counts_contacts_and_names_them_in_its_conversations(h: Harness) -> None:
    await h.driver.slash_command("contact add Dana Smith +1 555 123 4567")
    await h.driver.slash_command("+1 555 123 4567 hello")
    await h.settle()
    assert (await h.driver.app_home_opened("U0ALICE")).status == 200
    await h.settle()
    view = json.dumps(h.slack.get_payload("views.publish")["view"])
    assert "*1* contact in the team" in view
    assert "Dana Smith" in view and "contacts_import" in view
