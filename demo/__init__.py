"""Offline Slack for tests and ``python bot.py demo``: a Web API stand-in and a signed-request driver.

Owns: ``demo.fake_slack`` (answers the bot's Web API calls and response URLs like Slack, keeps channel,
thread and view state, injects faults, renders a transcript) and ``demo.slack_driver`` (plays Slack towards
the bot: signed slash commands, interactivity payloads and Events API envelopes).
Must not import: ``bridge``, ``handlers``, ``bot`` — the fake knows Slack, never the app under test.
Nothing is re-exported here so that importing the package stays free of side effects.
"""
