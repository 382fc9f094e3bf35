"""Contacts end to end over real HTTP (issue 12): ``/sms contact add|remove``, ``/sms contacts``, sending by name
(first name, quoted and unquoted full name), close-name suggestions, the ambiguity buttons and their click, names in
parents and inbound posts (escaped), the compose modal's ``to`` taking a name; plus the pure core (``labelled``,
``resolve``, ``edit_distance``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge import contacts as book
from bridge.model import Contact
from demo.harness import FROM_NUMBER, Harness, running_bridge
from handlers.people import PICK_PREFIX
from tests.pg import throwaway_database

GENERAL = "C0GENERAL"
INBOUND = "C0INBOUND"
DANA, DANA_J, JO = "+15551234567", "+15552223333", "+15559876543"
DANA_SHOWN = "Dana Smith (+1 555-123-4567)"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    env = {"INBOUND_CHANNEL": INBOUND, "SMS_ALLOWED_USERS": "U0ALICE,U0BOB"}
    async with running_bridge(tmp_path, env=env) as harness:
        yield harness


async def command(h: Harness, text: str, user: str = "U0ALICE") -> str:
    """Run ``/sms <text>``; what the user was told (the ack, else the one private response that followed)."""
    before = len(h.slack.responses)
    answer = await h.driver.slash_command(text, user_id=user)
    await h.settle()
    assert answer.status == 200
    if answer.body.strip():
        body = answer.body
        return str(json.loads(body).get("text", "")) if body.lstrip().startswith("{") else body
    new = h.slack.responses[before:]
    if not new:
        return ""  # a send: the parent and its thread tell the rest
    assert len(new) == 1, new
    assert new[0].get("response_type") == "ephemeral", new[0]
    return str(new[0]["text"])


def sent(h: Harness) -> list[tuple[str, str | None]]:
    return [(m.to, m.body) for m in h.simulator.messages.values() if m.status.value != "received"]


async def test_add_rename_refuse_list_search_and_remove(h: Harness) -> None:
    told = await command(h, "contact add Dana Smith +1 555 123 4567")
    assert told == f"📇 Added {DANA_SHOWN}."
    told = await command(h, "contact add Dana Jones (555) 123-4567")
    assert "Renamed" in told and "Dana Smith" in told and "Dana Jones" in told
    await command(h, "contact add Jo Bloggs +15559876543")
    taken = await command(h, "contact add JO BLOGGS +15552223333", user="U0BOB")
    assert "Nothing changed" in taken and "+1 555-987-6543" in taken
    listing = await command(h, "contacts")
    assert "Dana Jones (+1 555-123-4567)" in listing and "Jo Bloggs (+1 555-987-6543)" in listing
    assert "(2)" in listing
    search = await command(h, "contacts blog")
    assert "Jo Bloggs" in search and "Dana" not in search
    assert "Removed Dana Jones" in await command(h, "contact remove dana jones")
    assert "No contact is named" in await command(h, "contact remove Dana Jones")
    assert not h.slack.called("chat.postMessage"), "the address book is private: nothing posted in a channel"
    assert "not a valid phone number" in await command(h, "contact add Bad 12")
    assert "No phone number" in await command(h, "contact add Nobody")
    assert "cannot start with" in await command(h, "contact add Help Desk +15550001111")
    assert "SMS_ALLOWED_USERS" in await command(h, "contacts", user="U0CAROL")


async def test_send_by_first_name_quoted_and_unquoted_full_name_with_the_name_in_the_parent(h: Harness) -> None:
    await command(h, "contact add Dana Smith +1 555 123 4567")
    await command(h, "contact add Jo Bloggs +15559876543")
    await command(h, "Dana Running late")
    await command(h, '"Jo Bloggs" On my way')
    await command(h, "jo bloggs see you soon")
    assert sent(h) == [(DANA, "Running late"), (JO, "On my way"), (JO, "see you soon")]
    parents = h.slack.messages(GENERAL)
    assert DANA_SHOWN in parents[0].text
    assert all("Jo Bloggs (+1 555-987-6543)" in p.text for p in parents[1:])
    assert any(DANA_SHOWN in json.dumps(b) for b in parents[0].blocks)
    # Numbers and help work exactly as before.
    await command(h, "+1 555 000 1111 by number")
    assert sent(h)[-1] == ("+15550001111", "by number")
    assert "/sms +1 555 123 4567" in await command(h, "help")


async def test_no_match_suggests_close_names_and_sends_nothing(h: Harness) -> None:
    await command(h, "contact add Dana Smith +1 555 123 4567")
    await command(h, "contact add Jo Bloggs +15559876543")
    told = await command(h, "Dnaa hello")
    assert "No contact is named *Dnaa*" in told and "Nothing was sent" in told
    assert "Did you mean: Dana Smith (+1 555-123-4567)?" in told
    assert "Jo Bloggs (+1 555-987-6543)" in await command(h, "Jos hello")
    assert "Did you mean" not in await command(h, "Zebedee hello")
    assert "no closing quote" in await command(h, '"Dana Smith hello')
    assert sent(h) == []


async def test_two_matches_offer_buttons_and_the_click_sends_that_one_once(h: Harness) -> None:
    await command(h, "contact add Dana Smith +1 555 123 4567")
    await command(h, "contact add Dana Jones +1 555 222 3333")
    answer = await h.driver.slash_command("dana Running late, sorry")
    await h.settle()
    ack = answer.json()
    assert "could be 2 contacts" in ack["text"] and sent(h) == []
    [actions] = [b for b in ack["blocks"] if b["type"] == "actions"]
    buttons = {b["text"]["text"]: b for b in actions["elements"]}
    assert set(buttons) == {"Dana Smith (+15551234567)", "Dana Jones (+15552223333)"}
    jones = buttons["Dana Jones (+15552223333)"]
    assert jones["action_id"].startswith(PICK_PREFIX) and len(jones["value"]) <= 2000
    click = await h.driver.block_action(jones["action_id"], jones["value"])
    assert click.status == 200
    await h.settle()
    assert sent(h) == [(DANA_J, "Running late, sorry")]
    [parent] = h.slack.messages(GENERAL)
    assert "Dana Jones (+1 555-222-3333)" in parent.text
    assert any("Texting Dana Jones" in str(r.get("text")) for r in h.slack.responses)


async def test_a_click_is_checked_again_for_access(h: Harness) -> None:
    await command(h, "contact add Dana Smith +1 555 123 4567")
    await command(h, "contact add Dana Jones +1 555 222 3333")
    ack = (await h.driver.slash_command("Dana hi")).json()
    [actions] = [b for b in ack["blocks"] if b["type"] == "actions"]
    button = actions["elements"][0]
    await h.driver.block_action(button["action_id"], button["value"], user_id="U0CAROL")
    await h.settle()
    assert sent(h) == []
    assert any("SMS_ALLOWED_USERS" in str(r.get("text")) for r in h.slack.responses)


async def test_a_stranger_learns_nothing_of_the_address_book(h: Harness) -> None:
    await command(h, "contact add Dana Smith +1 555 123 4567")
    told = await command(h, "Dan hello", user="U0CAROL")
    assert "Dana" not in told and "SMS_ALLOWED_USERS" in told


async def test_inbound_and_new_conversation_posts_name_the_contact_escaped(h: Harness) -> None:
    await command(h, "contact add <!here> *Boss* & @here +1 555 123 4567")
    delivery = await h.simulator.inject_inbound(DANA, FROM_NUMBER, "hi there", [],
                                                url=h.bot_url + "/signalwire/inbound")
    assert delivery.status == 200
    await h.settle()
    [parent] = h.slack.messages(INBOUND)
    assert "New conversation" in parent.text
    assert "&lt;!here&gt; ∗Boss∗ &amp; @\u2060here (+1 555-123-4567)" in parent.text
    assert "<!here>" not in parent.text and "*Boss*" not in parent.text
    await h.simulator.inject_inbound(DANA, FROM_NUMBER, "again", [], url=h.bot_url + "/signalwire/inbound")
    await h.settle()
    [reply] = h.slack.thread(INBOUND, parent.ts)[-1:]
    assert "(+1 555-123-4567)* replied" in reply.text and "∗Boss∗" in reply.text
    await h.simulator.inject_inbound(DANA, FROM_NUMBER, "STOP", [], url=h.bot_url + "/signalwire/inbound")
    await h.settle()
    assert any("@\u2060here (+1 555-123-4567) opted out" in m.text for m in h.slack.thread(INBOUND, parent.ts))


def _modal_values(to: str, body: str) -> dict[str, Any]:
    return {
        "to": {"to": {"type": "plain_text_input", "value": to}},
        "body": {"body": {"type": "plain_text_input", "value": body}},
        "channel": {"channel": {"type": "conversations_select", "selected_conversation": GENERAL}},
    }


async def test_the_compose_modal_takes_a_name(h: Harness) -> None:
    await command(h, "contact add Dana Smith +1 555 123 4567")
    await command(h, "contact add Dana Jones +1 555 222 3333")
    await h.driver.slash_command("")
    await h.settle()
    [view] = h.slack.views.values()
    assert "contact" in view["blocks"][0]["hint"]["text"]
    errors = (await h.driver.view_submission(view, _modal_values("Dana", "hi"))).json()
    assert errors["response_action"] == "errors" and "could be 2 contacts" in errors["errors"]["to"]
    errors = (await h.driver.view_submission(view, _modal_values("Danny Smithers", "hi"))).json()
    assert "No contact is named" in errors["errors"]["to"]
    ok = await h.driver.view_submission(view, _modal_values("dana smith", "from the form"))
    assert ok.status == 200 and not ok.body.strip()
    await h.settle()
    assert sent(h) == [(DANA, "from the form")]


async def test_on_postgresql_replicas_share_the_book_and_a_double_click_sends_once(tmp_path: Path) -> None:
    async with throwaway_database() as url, contextlib.AsyncExitStack() as stack:
        env = {"INBOUND_CHANNEL": INBOUND, "DATABASE_URL": url}
        one = await stack.enter_async_context(running_bridge(tmp_path / "one", env=env))
        two = await stack.enter_async_context(running_bridge(tmp_path / "two", env=env))
        await command(one, "contact add Dana Smith +1 555 123 4567")
        await command(two, "contact add Dana Jones +1 555 222 3333")
        await command(two, "Dana Smith hello from two")
        assert sent(two) == [(DANA, "hello from two")]
        assert DANA_SHOWN in two.slack.messages(GENERAL)[0].text
        ack = (await one.driver.slash_command("dana pick me")).json()
        [actions] = [b for b in ack["blocks"] if b["type"] == "actions"]
        button = actions["elements"][0]
        offered = {"ts": "1700000000.000100", "blocks": ack["blocks"], "text": ack["text"]}
        # The same click delivered to both replicas at once (a retry landing elsewhere): one send.
        await asyncio.gather(*(h.driver.block_action(button["action_id"], button["value"], message=offered)
                               for h in (one, two)))
        await one.settle()
        await two.settle()
        assert len(sent(one)) + len(sent(two)) == 2, "one send for the click, besides the earlier one"


# -- the pure core ---------------------------------------------------------------------------------------------------

def _c(name: str, number: str = DANA) -> Contact:
    from datetime import UTC, datetime
    return Contact(name, number, "U1", datetime(2026, 1, 1, tzinfo=UTC))


def test_labelled_is_the_one_way_a_contact_is_shown() -> None:
    assert book.labelled(DANA, "Dana Smith") == DANA_SHOWN
    assert book.labelled(DANA, None) == "+1 555-123-4567"
    assert book.labelled(DANA, "  ") == "+1 555-123-4567"
    assert book.labelled(DANA, "A <b> & `x` _y_ ~z~") == "A &lt;b&gt; &amp; ˋxˋ ＿y＿ ∼z∼ (+1 555-123-4567)"


def test_resolve_prefers_full_names_then_unique_first_names() -> None:
    people = [_c("Dana Smith"), _c("Dana Jones", DANA_J), _c("Jo Bloggs", JO)]
    found = book.resolve("Dana Smith Running late", people)
    assert found is not None and [c.name for c in found.candidates] == ["Dana Smith"]
    assert found.rest == "Running late"
    found = book.resolve("dana hi", people)
    assert found is not None and len(found.candidates) == 2 and found.rest == "hi"
    found = book.resolve("“Jo Bloggs” line one\nline two", people)
    assert found is not None and found.candidates[0].number == JO and found.rest == "line one\nline two"
    assert book.resolve('"Jo', people) is None


def test_edit_distance_and_suggestions() -> None:
    assert book.edit_distance("dana", "dnaa") == 2
    assert book.edit_distance("kitten", "sitting") == 3
    assert book.edit_distance("", "ab") == 2
    people = [_c("Dana Smith"), _c("Jo Bloggs", JO)]
    assert [c.name for c in book.suggestions("Dan", people)] == ["Dana Smith"]
    assert [c.name for c in book.suggestions("Jon", people)] == ["Jo Bloggs"]
    assert book.suggestions("Xavier", people) == []
