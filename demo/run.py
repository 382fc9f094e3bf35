"""``python bot.py demo``: the whole bridge offline, a short scripted session, and what Slack would show.

Owns: the script (a quick send that is delivered, a modal send, a send that fails with a carrier error, a picture
sent from a thread as MMS, a picture arriving by MMS) and printing the resulting channel and threads. Needs no
credentials and no network beyond loopback.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from demo.harness import FROM_NUMBER, Harness, running_bridge
from sw_api.simulator import media_fetch

CHANNEL = "C0GENERAL"
INBOUND = "C0INBOUND"


def _step(text: str) -> None:
    print(f"▶ {text}")


async def _modal_send(h: Harness, to: str, body: str, user_id: str) -> None:
    await h.driver.slash_command("", user_id=user_id, user_name="bob")
    await h.settle()  # the form opens after the ack
    view: dict[str, Any] = list(h.slack.views.values())[-1]
    values = {
        "to": {"to": {"type": "plain_text_input", "value": to}},
        "body": {"body": {"type": "plain_text_input", "value": body}},
        "channel": {"channel": {"type": "conversations_select", "selected_conversation": CHANNEL}},
    }
    response = await h.driver.view_submission(view, values, user_id=user_id)
    if response.status != 200 or response.body not in ("", "{}"):
        raise RuntimeError(f"modal submission refused: {response.status} {response.body}")


# -- issue 11: a 1×1 PNG: the picture someone attaches in Slack, and the one the stranger sends.
_PICTURE = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


async def _picture_goes_out(h: Harness) -> None:
    """-- issue 11: alice answers the stranger's thread with a photo: an MMS whose picture SignalWire fetches."""
    _step("alice replies in that thread with a photo of the opening hours → sent as MMS")
    [parent] = h.slack.messages(INBOUND)
    photo = h.slack.files.add_file(_PICTURE, "opening-hours.png", "image/png")
    await h.driver.event(h.slack.files.file_share_event(INBOUND, "U0ALICE", "Yes, until 6pm. Here are our hours",
                                                        [photo], thread_ts=parent.ts))
    await h.settle()
    fetched = media_fetch.fetches(h.simulator)
    for fetch in fetched:
        print(f"  SignalWire fetched {fetch.url.rsplit('/', 1)[-1]}: {fetch.status} {fetch.content_type}, "
              f"{fetch.length} bytes")
    if not fetched:
        print("  (no picture was fetched!)")
async def _picture_arrives(h: Harness) -> None:
    """An MMS with a picture: the simulator hosts it like a SignalWire space, the bot downloads it from there and
    uploads it into the conversation's thread, after the text."""
    _step("the stranger sends a photo “This is the storefront”: the picture appears in their thread")
    media = [{"content_type": "image/png", "data_base64": base64.b64encode(_PICTURE).decode(),
              "filename": "storefront.png"}]
    request = {"from": "+15552220199", "to": FROM_NUMBER, "body": "This is the storefront", "media": media,
               "url": f"{h.bot_url}/signalwire/inbound"}
    async with h.session.post(f"{h.sim_url}/_sim/inbound", json=request) as resp:
        resp.raise_for_status()
    await h.settle()
    parent = h.slack.messages(INBOUND)[-1]
    shared = h.slack.uploads.shared_in(INBOUND, parent.ts)
    print(f"  uploaded into the thread: {', '.join(f'{f.filename} ({f.length} bytes)' for f in shared) or 'nothing!'}")


async def _scheduled_send_fires(h: Harness) -> None:
    """-- issue 12: alice schedules a text with the form's "Send at" two seconds ahead: the parent says when, with
    Cancel, and at its time the SMS goes and the same parent becomes its receipt thread."""
    _step("alice opens /sms, types “Your table is ready” and picks Send at = in 2 seconds → a scheduled parent")
    await h.driver.slash_command("", user_id="U0ALICE", user_name="alice")
    await h.settle()
    view: dict[str, Any] = list(h.slack.views.values())[-1]
    due = int(time.time()) + 3
    values = {
        "to": {"to": {"type": "plain_text_input", "value": "+1 555 123 4567"}},
        "body": {"body": {"type": "plain_text_input", "value": "Your table is ready"}},
        "send_at": {"send_at": {"type": "datetimepicker", "selected_date_time": due}},
        "channel": {"channel": {"type": "conversations_select", "selected_conversation": CHANNEL}},
    }
    response = await h.driver.view_submission(view, values, user_id="U0ALICE")
    if response.status != 200 or response.body not in ("", "{}"):
        raise RuntimeError(f"scheduled form refused: {response.status} {response.body}")
    await h.settle()
    print(f"  {h.slack.messages(CHANNEL)[-1].text}")
    deadline = time.monotonic() + 15
    while not any(m.body == "Your table is ready" for m in h.simulator.messages.values()):
        if time.monotonic() > deadline:
            raise RuntimeError("the scheduled SMS did not go out")
        await asyncio.sleep(0.1)
    await h.settle()
    print("  at its time: sent, and the same parent shows the receipts")


async def _send_by_name(h: Harness) -> None:
    """-- issue 12: a contact, then a text by name from a template; the parent names the contact."""
    _step("alice adds a contact and a template, then types: /sms Dana #late minutes=10")
    for line in ("contact add Dana Smith +1 555 123 4567",
                 "template add late Running {minutes} min late, sorry {first_name}!", "Dana #late minutes=10"):
        await h.driver.slash_command(line)
        await h.settle()
    print(f"  the phone received: {[m.body for m in h.simulator.messages.values()][-1]}")


async def run_demo() -> int:
    print("sms-bridge offline demo: real bot + SignalWire simulator + local stand-in for Slack (no real SMS).\n")
    with tempfile.TemporaryDirectory(prefix="sms-bridge-demo-") as tmp:
        async with running_bridge(Path(tmp), step_delay=0.05, env={"INBOUND_CHANNEL": INBOUND}) as h:
            _step("alice types: /sms +1 555 123 4567 Running 10 min late")
            response = await h.driver.slash_command("+1 555 123 4567 Running 10 min late")
            print(f"  Slack got its ack in {response.elapsed_ms:.0f} ms")
            await h.settle()

            _step("the phone replies “Great, see you soon 👍”: it lands in the same thread")
            await h.simulator.inject_inbound("+15551234567", FROM_NUMBER, "Great, see you soon 👍",
                                             url=f"{h.bot_url}/signalwire/inbound")
            await h.settle()

            _step("bob answers in that thread: “Thanks :wave: <@U0ALICE> will meet you” → texted back")
            parent = h.slack.messages(CHANNEL)[0]
            event = h.slack.post_user_message(CHANNEL, "U0BOB", "Thanks :wave: <@U0ALICE> will meet you",
                                              thread_ts=parent.ts)
            await h.driver.event(event)
            await h.settle()
            texted = [m.body for m in h.simulator.messages.values() if m.body and m.body.startswith("Thanks")]
            print(f"  the phone received: {texted[-1] if texted else '(nothing!)'}")

            _step("bob types /sms, fills in the form: to (555) 987-6543, “Your order is ready for pickup”")
            await _modal_send(h, "(555) 987-6543", "Your order is ready for pickup", "U0BOB")
            await h.settle()

            _step("alice types: /sms +1 555 010 0003 Are you there? (the simulator makes …0003 unreachable)")
            await h.driver.slash_command("+1 555 010 0003 Are you there?")
            await h.settle()

            _step("a stranger texts our number “Hi, is the shop open today?”: a new thread in #inbound")
            await h.simulator.inject_inbound("+15552220199", FROM_NUMBER, "Hi, is the shop open today?",
                                             url=f"{h.bot_url}/signalwire/inbound")
            await h.settle()
            await _picture_goes_out(h)
            await _picture_arrives(h)
            await _scheduled_send_fires(h)  # -- issue 12
            await _send_by_name(h)

            print("\nWhat Slack shows:\n")
            print(h.slack.transcript(CHANNEL))
            print(h.slack.transcript(INBOUND))
            outbound = [m for m in h.simulator.messages.values() if m.status != "received"]
            statuses = sorted(m.status for m in outbound)
            # sent: the MMS; the fourth and fifth delivered: issue 12's scheduled send and send by name
            expected = sorted(["delivered", "delivered", "delivered", "delivered", "delivered", "undelivered", "sent"])
            if statuses != expected:
                print(f"\ndemo FAILED: simulator statuses {statuses}, expected {expected}", file=sys.stderr)
                return 1
            print(f"\n{len(statuses)} messages, {h.slack.call_count('chat.postMessage')} Slack posts, "
                  f"{h.slack.call_count('chat.update')} parent updates. Run `make test` for the test suite.")
    return 0
