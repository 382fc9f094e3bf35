"""Fault-injection suite: real ``python bot.py`` processes against the simulator and the fake Slack with faults."""
