"""Every method of the ``Store`` port is called by a contract test: a method added to the port without one fails here.

The port's methods come from ``bridge.storage.port.Store`` (inspect); the calls from the contract test files (ast:
``<something>.<method>(...)`` where the method is a port method, e.g. ``store.claim_message(...)``,
``one.outbox_claim(...)``). Only the files below count: they run on every engine.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from bridge.storage.port import Store

TESTS = Path(__file__).parent
CONTRACT_FILES = sorted(TESTS.glob("test_store*.py")) + [
    TESTS / name for name in (
        "test_announce_store.py", "test_reply_claims.py", "test_retention.py", "test_audit.py",
        "test_media_store.py",  # -- issue 11: outbound MMS
    )
]


def port_methods() -> set[str]:
    return {name for name, member in inspect.getmembers(Store, inspect.isfunction) if not name.startswith("_")}


def called_attributes(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {node.func.attr for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}


def test_the_port_is_what_this_test_expects() -> None:
    methods = port_methods()
    assert len(methods) >= 53
    assert {"ping", "claim_message", "outbox_claim", "outbox_renew", "export_rows", "import_rows"} <= methods
    assert "outbox_release_all" not in methods


def test_every_port_method_is_called_by_a_contract_test() -> None:
    called: set[str] = set()
    for path in CONTRACT_FILES:
        assert path.is_file(), f"contract test file missing: {path.name}"
        called |= called_attributes(path)
    missing = sorted(port_methods() - called)
    assert missing == [], f"port methods without a contract test (add one to tests/test_store_*.py): {missing}"
