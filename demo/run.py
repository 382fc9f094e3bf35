"""``python bot.py demo``: the whole bridge offline, a short scripted session, and what Slack would show.

Owns: the script (a quick send that is delivered, a modal send, a send that fails with a carrier error) and
printing the resulting channel and threads. Needs no credentials and no network beyond loopback.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from demo.harness import Harness, running_bridge

CHANNEL = "C0GENERAL"


def _step(text: str) -> None:
    print(f"▶ {text}")


async def _modal_send(h: Harness, to: str, body: str, user_id: str) -> None:
    await h.driver.slash_command("", user_id=user_id, user_name="bob")
    view: dict[str, Any] = list(h.slack.views.values())[-1]
    values = {
        "to": {"to": {"type": "plain_text_input", "value": to}},
        "body": {"body": {"type": "plain_text_input", "value": body}},
        "channel": {"channel": {"type": "conversations_select", "selected_conversation": CHANNEL}},
    }
    response = await h.driver.view_submission(view, values, user_id=user_id)
    if response.status != 200 or response.body not in ("", "{}"):
        raise RuntimeError(f"modal submission refused: {response.status} {response.body}")


async def run_demo() -> int:
    print("sms-bridge offline demo: real bot + SignalWire simulator + local stand-in for Slack (no real SMS).\n")
    with tempfile.TemporaryDirectory(prefix="sms-bridge-demo-") as tmp:
        async with running_bridge(Path(tmp), step_delay=0.05) as h:
            _step("alice types: /sms +1 555 123 4567 Running 10 min late")
            response = await h.driver.slash_command("+1 555 123 4567 Running 10 min late")
            print(f"  Slack got its ack in {response.elapsed_ms:.0f} ms")
            await h.settle()

            _step("bob types /sms, fills in the form: to (555) 987-6543, “Your order is ready for pickup”")
            await _modal_send(h, "(555) 987-6543", "Your order is ready for pickup", "U0BOB")
            await h.settle()

            _step("alice types: /sms +1 555 010 0003 Are you there? (the simulator makes …0003 unreachable)")
            await h.driver.slash_command("+1 555 010 0003 Are you there?")
            await h.settle()

            print("\nWhat the Slack channel shows:\n")
            print(h.slack.transcript(CHANNEL))
            statuses = sorted(m.status for m in h.simulator.messages.values())
            expected = sorted(["delivered", "delivered", "undelivered"])
            if statuses != expected:
                print(f"\ndemo FAILED: simulator statuses {statuses}, expected {expected}", file=sys.stderr)
                return 1
            print(f"\n{len(statuses)} messages, {h.slack.call_count('chat.postMessage')} Slack posts, "
                  f"{h.slack.call_count('chat.update')} parent updates. Run `make test` for the test suite.")
    return 0
