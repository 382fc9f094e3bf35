"""Templates end to end over real HTTP (issue 12): ``/sms template add|remove``, ``/sms templates``, sending one by
name or number with ``key=value`` words, the errors naming what is missing (nothing sent), and the compose modal's
template select filling the message through ``views.update`` with the counter kept right; plus the pure filling.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge import templates as tpl
from bridge.model import Contact, Template
from demo.harness import Harness, running_bridge

GENERAL = "C0GENERAL"
DANA, JO = "+15551234567", "+15559876543"
LATE = "Running {minutes} min late, sorry {first_name}!"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bridge(tmp_path, env={"SMS_ALLOWED_USERS": "U0ALICE,U0BOB"}) as harness:
        yield harness


async def command(h: Harness, text: str, user: str = "U0ALICE") -> str:
    before = len(h.slack.responses)
    answer = await h.driver.slash_command(text, user_id=user)
    await h.settle()
    assert answer.status == 200
    if answer.body.strip():
        return str(json.loads(answer.body).get("text", "")) if answer.body.startswith("{") else answer.body
    new = h.slack.responses[before:]
    return str(new[0]["text"]) if new else ""


def sent(h: Harness) -> list[tuple[str, str | None]]:
    return [(m.to, m.body) for m in h.simulator.messages.values() if m.status.value != "received"]


async def test_add_list_replace_remove(h: Harness) -> None:
    told = await command(h, f"template add late {LATE}")
    assert "Saved template `#late`" in told and "{minutes}" in told and "minutes=…" in told
    assert "Replaced" in await command(h, "template add LATE Late by {minutes}", user="U0BOB")
    await command(h, "template add here I am here.")
    listing = await command(h, "templates")
    assert "`#here`: I am here." in listing and "`#late`: Late by {minutes}" in listing
    assert "Removed template `#late`" in await command(h, "template remove late")
    assert "no template `#late`" in await command(h, "template remove #late")
    assert "not a template name" in await command(h, "template add bad! text")
    assert "needs a text" in await command(h, "template add empty")
    assert "SMS_ALLOWED_USERS" in await command(h, "templates", user="U0CAROL")
    assert not h.slack.called("chat.postMessage")


async def test_send_by_name_and_by_number_filled_from_contact_and_values(h: Harness) -> None:
    await command(h, "contact add Dana Smith +1 555 123 4567")
    await command(h, f"template add late {LATE}")
    await command(h, "template add where Meet at {place}, {name}")
    await command(h, "Dana #late minutes=10")
    await command(h, '+1 555 123 4567 #where place="the usual spot"')
    await command(h, "+15559876543 #where place=home name=friend")
    await command(h, "+15559876543 #1 priority")  # not a stored template: sent as typed
    assert sent(h) == [(DANA, "Running 10 min late, sorry Dana!"), (DANA, "Meet at the usual spot, Dana Smith"),
                       (JO, "Meet at home, friend"), (JO, "#1 priority")]
    assert "Dana Smith (+1 555-123-4567)" in h.slack.messages(GENERAL)[0].text


async def test_missing_values_and_unknown_templates_send_nothing(h: Harness) -> None:
    await command(h, "contact add Dana Smith +1 555 123 4567")
    await command(h, f"template add late {LATE}")
    told = await command(h, "Dana #late")
    assert "needs a value for {minutes}" in told and "minutes=…" in told and "Nothing was sent" in told
    told = await command(h, "+15559876543 #late minutes=5")
    assert "{first_name}" in told and "is not a contact" in told and "Nothing was sent" in told
    assert "no template `#lat`" in await command(h, "Dana #lat minutes=5")
    assert "not a `key=value` word" in await command(h, "Dana #late minutes=5 extra words")
    assert "has no {colour}" in await command(h, "Dana #late minutes=5 colour=red")
    assert sent(h) == []


async def test_the_form_template_select_fills_the_message_and_the_counter(h: Harness) -> None:
    await command(h, "contact add Dana Smith +1 555 123 4567")
    await command(h, f"template add late {LATE}")
    await h.driver.slash_command("")
    await h.settle()
    [view] = h.slack.views.values()
    [select] = [b for b in view["blocks"] if b.get("block_id") == "template"]
    assert select["dispatch_action"] is True and select["element"]["type"] == "static_select"
    option = select["element"]["options"][0]
    assert option["value"] == "late"
    state: dict[str, Any] = {"to": {"to": {"type": "plain_text_input", "value": "Dana"}},
                             "template": {"template": {"type": "static_select", "selected_option": option}}}
    await h.driver.block_action("template", None, block_id="template", view={**view, "state": {"values": state}},
                                selected_option=option)
    await h.settle()
    assert h.slack.call_count("views.update") == 1
    updated = h.slack.views[view["id"]]
    [body] = [b for b in updated["blocks"] if b.get("block_id") == "body"]
    filled = "Running {minutes} min late, sorry Dana!"
    assert body["element"]["initial_value"] == filled and body["element"]["action_id"] == "body_1"
    [counter] = [b for b in updated["blocks"] if b.get("block_id") == "counter"]
    assert counter["elements"][0]["text"].startswith(f"{len(filled)} / 1600 characters")
    # Sending with the placeholder still there is refused inline; filled in, it goes.
    values = {"to": {"to": {"type": "plain_text_input", "value": "Dana"}},
              "body": {"body_1": {"type": "plain_text_input", "value": filled}},
              "channel": {"channel": {"type": "conversations_select", "selected_conversation": GENERAL}}}
    errors = (await h.driver.view_submission(updated, values)).json()
    assert "Fill in {minutes}" in errors["errors"]["body"]
    values["body"] = {"body_1": {"type": "plain_text_input", "value": filled.replace("{minutes}", "10")}}
    ok = await h.driver.view_submission(updated, values)
    assert ok.status == 200 and not ok.body.strip()
    await h.settle()
    assert sent(h) == [(DANA, "Running 10 min late, sorry Dana!")]


def test_fill_and_parse_use() -> None:
    template = Template("late", LATE, "U1", datetime(2026, 1, 1, tzinfo=UTC))
    dana = Contact("Dana Smith", DANA, "U1", datetime(2026, 1, 1, tzinfo=UTC))
    use = tpl.parse_use('#late minutes="10 or so"')
    assert use == tpl.TemplateUse("late", {"minutes": "10 or so"})
    assert tpl.fill(template, use.values, DANA, dana) == "Running 10 or so min late, sorry Dana!"
    assert tpl.parse_use("# not one") is None and tpl.parse_use("hello") is None
    with pytest.raises(tpl.TemplateError, match=r"\{minutes\}"):
        tpl.fill(template, {}, DANA, dana)
    assert tpl.fill(template, {"minutes": "5", "first_name": "pal"}, JO, None) == "Running 5 min late, sorry pal!"
    assert tpl.fill_contact(template, dana) == "Running {minutes} min late, sorry Dana!"
    assert tpl.placeholders("{a} {b} {a}") == ["a", "b"]


async def test_a_template_picked_before_the_recipient_gets_the_contact_names_on_send(h: Harness) -> None:
    await command(h, "contact add Dana Smith +1 555 123 4567")
    await command(h, f"template add late {LATE}")
    await h.driver.slash_command("")
    await h.settle()
    [view] = h.slack.views.values()
    [select] = [b for b in view["blocks"] if b.get("block_id") == "template"]
    option = select["element"]["options"][0]
    state = {"template": {"template": {"type": "static_select", "selected_option": option}}}
    await h.driver.block_action("template", None, block_id="template", view={**view, "state": {"values": state}},
                                selected_option=option)
    await h.settle()
    updated = h.slack.views[view["id"]]
    [body] = [b for b in updated["blocks"] if b.get("block_id") == "body"]
    assert body["element"]["initial_value"] == LATE, "no recipient yet: the names stay placeholders"
    values = {"to": {"to": {"type": "plain_text_input", "value": "+1 555 123 4567"}},
              "body": {"body_1": {"type": "plain_text_input", "value": LATE.replace("{minutes}", "5")}},
              "channel": {"channel": {"type": "conversations_select", "selected_conversation": GENERAL}}}
    ok = await h.driver.view_submission(updated, values)
    assert ok.status == 200 and not ok.body.strip()
    await h.settle()
    assert sent(h) == [(DANA, "Running 5 min late, sorry Dana!")]
