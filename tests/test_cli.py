"""The operator's commands as real processes: ``bot.py migrate`` (engine, server version, schema before/after),
``bot.py check`` (the database engine and schema lines) and the ``sms-bridge`` console script ``pip install .``
puts next to the interpreter."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from dataclasses import replace
from pathlib import Path

from bridge.storage.sqlite.store import MIGRATIONS
from demo.harness import running_bridge
from handlers.check import run_check

REPO = Path(__file__).resolve().parents[1]
LATEST = max(MIGRATIONS)


async def _run(*command: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *command, cwd=REPO, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _bot(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return await _run(sys.executable, str(REPO / "bot.py"), *args, env=env)


async def test_migrate_creates_the_schema_then_has_nothing_to_apply(database_url: str) -> None:
    # The URL comes from DATABASE_URL, as in the bot's own environment; no Slack or SignalWire settings needed.
    env = {"DATABASE_URL": database_url, "SLACK_BOT_TOKEN": "", "SLACK_SIGNING_SECRET": ""}
    code, out, err = await _bot("migrate", env=env)
    assert code == 0, err
    engine = database_url.split(":", 1)[0]
    assert f"engine: {engine} " in out
    assert "schema: " in out and "(current; created)" in out
    code, out, err = await _bot("migrate", env=env)
    assert code == 0, err
    assert "(current; nothing to apply)" in out


async def test_migrate_upgrades_an_old_sqlite_file_and_says_from_which_version(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # an installation from before migrations 9 and later
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for version in range(1, 9):
            db.executescript(MIGRATIONS[version])
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    code, out, err = await _bot("migrate", "--database-url", f"sqlite:///{path}")
    assert code == 0, err
    assert out.splitlines() == [
        f"database: sqlite:///{path}",
        f"engine: sqlite {sqlite3.sqlite_version}",
        f"schema: {LATEST} (current; migrated from 8)",
    ]


async def test_migrate_fails_cleanly_without_showing_the_password() -> None:
    code, out, err = await _bot("migrate", "--database-url", "postgresql://bob:pw-s3cret@127.0.0.1:1/none")
    assert code == 1
    assert "migrate failed" in err
    assert "pw-s3cret" not in out + err and "bob:***@127.0.0.1:1/none" in out


async def test_check_reports_the_engine_its_version_and_the_schema(tmp_path: Path) -> None:
    async with running_bridge(tmp_path) as h:
        lines: list[str] = []
        assert await run_check(h.config, lines) == 0
    assert f"ok   Database engine: sqlite {sqlite3.sqlite_version}, schema {LATEST} (current)" in lines, lines


async def test_check_names_the_database_it_could_not_open_without_its_password(tmp_path: Path) -> None:
    async with running_bridge(tmp_path) as h:
        lines: list[str] = []
        bad = replace(h.config, database_url="postgresql://bob:pw-s3cret@127.0.0.1:1/none")
        assert await run_check(bad, lines) == 1
    [line] = [line for line in lines if "Database" in line]
    assert line.startswith("FAIL Database: postgresql://bob:***@127.0.0.1:1/none")
    assert "pw-s3cret" not in "\n".join(lines)


async def test_the_console_script_is_installed_and_lists_the_commands() -> None:
    script = Path(sys.executable).parent / "sms-bridge"
    assert script.is_file(), "pip install . should create it ([project.scripts] in pyproject.toml)"
    code, out, err = await _run(str(script), "--help")
    assert code == 0, err
    assert out.startswith("usage: sms-bridge")
    for command in ("serve", "demo", "check", "migrate", "copy-db"):
        assert command in out
    code, out, _ = await _run(str(script), "copy-db", "--help")
    assert code == 0 and "--from URL" in out and "--to URL" in out
