"""``/sms bulk`` over real HTTP (issue 13): the modal and its block ids, the sender select with several numbers, the
private refusal when bulk is off or the user is not on the list, field errors on submit (no recipients, no message,
a placeholder no column provides), the live counter, ``/sms help``, and the CSV read from Slack as a stream
(``SlackFiles.stream_data`` into ``bulk_input.from_csv``). The preview and confirm need the engine (``bridge.bulk``):
tested with it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bridge.bulk_input import from_csv
from bridge.bulk_model import BulkProblem, BulkRecipient
from demo.harness import FROM_NUMBER, Harness, running_bridge
from handlers.bulk import CALLBACK_ID
from handlers.slack_files import SlackFiles

GENERAL = "C0GENERAL"
OTHER_NUMBER = "+15557770001"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    env = {"SMS_BULK_ALLOWED_USERS": "U0ALICE", "SIGNALWIRE_FROM_NUMBERS": f"{FROM_NUMBER},{OTHER_NUMBER}"}
    async with running_bridge(tmp_path, env=env) as harness:
        yield harness


async def told(h: Harness, text: str, user: str = "U0ALICE") -> str:
    """Run ``/sms <text>``; the ack's text ("" for an empty ack)."""
    answer = await h.driver.slash_command(text, user_id=user)
    await h.settle()
    assert answer.status == 200
    body = answer.body.strip()
    return str(json.loads(body).get("text", "")) if body.startswith("{") else body


async def open_form(h: Harness) -> dict[str, Any]:
    before = set(h.slack.views)
    assert await told(h, "bulk") == ""
    [view] = [v for k, v in h.slack.views.items() if k not in before]
    return view


def _blocks(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["block_id"]: b for b in view["blocks"] if "block_id" in b}


def _values(*, recipients: str = "", body: str = "", files: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "recipients": {"bulk_recipients": {"type": "plain_text_input", "value": recipients or None}},
        "csv": {"bulk_csv": {"type": "file_input", "files": files or []}},
        "body": {"bulk_body": {"type": "plain_text_input", "value": body or None}},
        "sender": {"bulk_sender": {"type": "static_select", "selected_option": {"value": OTHER_NUMBER}}},
        "channel": {"bulk_channel": {"type": "conversations_select", "selected_conversation": GENERAL}},
    }


async def test_sms_bulk_opens_the_form(h: Harness) -> None:
    view = await open_form(h)
    assert view["callback_id"] == CALLBACK_ID
    blocks = _blocks(view)
    assert list(blocks) == ["recipients", "csv", "body", "counter", "sender", "channel"]
    recipients, csv_file, body = blocks["recipients"], blocks["csv"], blocks["body"]
    assert recipients["optional"] and recipients["element"]["multiline"]
    assert csv_file["optional"] and csv_file["element"]["type"] == "file_input"
    assert csv_file["element"]["filetypes"] == ["csv", "txt"] and csv_file["element"]["max_files"] == 1
    assert not body["optional"] and body["element"]["multiline"] and "{first_name}" in body["hint"]["text"]
    assert [o["value"] for o in blocks["sender"]["element"]["options"]] == [FROM_NUMBER, OTHER_NUMBER]
    channel = blocks["channel"]["element"]
    assert channel["type"] == "conversations_select" and channel["initial_conversation"] == GENERAL
    assert not h.slack.ephemerals and not h.simulator.messages


async def test_the_counter_follows_the_message_and_the_compose_form_is_not_touched(h: Harness) -> None:
    view = await open_form(h)
    counter = _blocks(view)["counter"]["elements"][0]["text"]
    assert counter.startswith("0 / 1600 characters")
    typed = {"body": {"bulk_body": {"type": "plain_text_input", "value": "Hi {first_name}, closed €"}}}
    await h.driver.block_action("bulk_body", None, block_id="body", view={**view, "state": {"values": typed}},
                                action_type="plain_text_input")
    await h.settle()
    assert h.slack.call_count("views.update") == 1
    updated = h.slack.views[view["id"]]
    assert updated["callback_id"] == CALLBACK_ID
    assert _blocks(updated)["counter"]["elements"][0]["text"] == \
        "25 / 1600 characters · GSM-7 · 1 segment · before placeholders are filled"


async def test_one_number_means_no_sender_select(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, env={"SMS_BULK_ALLOWED_USERS": "U0ALICE"}) as h:
        assert "sender" not in _blocks(await open_form(h))


async def test_bulk_off_or_not_allowed_is_refused_privately_without_a_form(tmp_path: Path) -> None:
    async with running_bridge(tmp_path / "off", env={"SMS_BULK_ALLOWED_USERS": ""}) as h:
        refusal = await told(h, "bulk")
        assert "Bulk sending is turned off" in refusal and "SMS_BULK_ALLOWED_USERS" in refusal
        assert not h.slack.called("views.open") and not h.slack.views
    async with running_bridge(tmp_path / "list", env={"SMS_BULK_ALLOWED_USERS": "U0ALICE"}) as h:
        refusal = await told(h, "BULK", user="U0BOB")
        assert "not on the list" in refusal
        assert not h.slack.called("views.open")


async def test_submit_without_recipients_or_message_shows_field_errors(h: Harness) -> None:
    view = await open_form(h)
    answer = (await h.driver.view_submission(view, _values())).json()
    assert answer["response_action"] == "errors"
    assert set(answer["errors"]) == {"recipients", "body"}
    assert "CSV" in answer["errors"]["recipients"]
    answer = (await h.driver.view_submission(view, _values(recipients="+1 555 123 4567", body="  "))).json()
    assert set(answer["errors"]) == {"body"}
    answer = (await h.driver.view_submission(view, _values(recipients="+1 555 123 4567",
                                                           body="Hi {first_name}, table {table}"))).json()
    assert set(answer["errors"]) == {"body"} and "{table}" in answer["errors"]["body"]
    await h.settle()
    assert not h.slack.ephemerals and not h.simulator.messages


async def test_a_user_removed_from_the_list_cannot_submit(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, env={"SMS_BULK_ALLOWED_USERS": "U0ALICE"}) as h:
        view = await open_form(h)
        answer = (await h.driver.view_submission(view, _values(recipients="+1 555 123 4567", body="hi"),
                                                 user_id="U0BOB")).json()
        assert answer["response_action"] == "errors" and "not on the list" in answer["errors"]["body"]


async def test_help_mentions_bulk_and_bulk_is_no_contact_name(h: Harness) -> None:
    assert "`/sms bulk`" in await told(h, "help")
    refusal = await told(h, "contact add Bulk Smith +1 555 123 4567")
    assert "cannot start with `Bulk`" in refusal


async def test_the_csv_is_streamed_from_slack_with_the_token(h: Harness) -> None:
    data = b"number,name\n" + b"+1 555 123 4567,Dana Smith\n(555) 222-3333,Jo\nnope,Bad\n" * 200
    file = h.slack.files.add_file(data, "list.csv", "text/csv")
    client = AsyncWebClient(token=h.config.slack_bot_token, base_url=f"{h.slack_url}/api/")
    files = SlackFiles.from_config(h.config)
    items: list[BulkRecipient | BulkProblem] = [
        item async for item in from_csv(files.stream_data(client, file["id"], chunk_size=1000), "US")]
    recipients = [i for i in items if isinstance(i, BulkRecipient)]
    problems = [i for i in items if isinstance(i, BulkProblem)]
    assert len(recipients) == 400 and len(problems) == 200
    assert (recipients[0].number, recipients[0].name, recipients[0].line) == ("+15551234567", "Dana Smith", 2)
    assert problems[-1].line == 601 and not problems[-1].fatal
    assert [d.authorized for d in h.slack.files.downloads] == [True]
