"""The closing table of ``make bench``: every goal row the benches recorded, in one place.

Owns: reading the JSON-lines file the benches append to (``BENCH_SUMMARY``, see ``bench.common.record_goal``) and
printing ``figure | engine | baseline | measured | goal | ok?``. A missed goal reads MISSED; the exit status stays 0
(benches report, they are not tests). Must not import: ``tests``, ``handlers``, ``bridge``.

Usage: python -m bench.summary FILE
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.common import print_table

COLUMNS = ("figure", "engine", "baseline", "measured", "goal", "ok")


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m bench.summary FILE")
    path = Path(sys.argv[1])
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows.append([str(row.get(c, "")) for c in COLUMNS])
    if not rows:
        print("\nsummary: no bench recorded a goal row")
        return
    missed = sum(1 for r in rows if r[-1] != "ok")
    print_table(f"summary: {len(rows) - missed} of {len(rows)} goals met", ["figure", "engine", "baseline",
                "measured", "goal", "ok?"], rows, left=2)


if __name__ == "__main__":
    main()
