"""`python -m bench [SCENARIO ...]`: start chatroom, load it with Python clients, print a table.

    python -m bench                      # every scenario, SQLite (the default backend)
    python -m bench fanout100 idle2000 --backend memory
    python -m bench --processes 2        # receivers over 2 worker processes
    python -m bench storm10000           # 10,000 clients of one room at once (not in the default run)

The reference measurements, against other servers and with a Go load generator, are in
docs/performance.md; this one needs nothing but the project's own test dependencies.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from bench.scenarios import SCENARIOS, Fanout, run_fanout, run_history, run_idle
from bench.server import chatroom
from bench.storm import Storm, run_storm


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    by_default = [name for name in SCENARIOS if name != "storm10000"]  # 10,000 descriptors: where the machine allows
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, []], default=by_default)
    parser.add_argument("--backend", default="sqlite", help="memory, sqlite, or a backend URL (default sqlite)")
    parser.add_argument("--processes", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="receiver processes")
    args = parser.parse_args()
    for name in args.scenarios:
        with (
            tempfile.TemporaryDirectory(prefix="chatroom-bench-") as workdir,
            chatroom(Path(workdir), args.backend) as server,
        ):
            shape = SCENARIOS[name]
            if isinstance(shape, Fanout):
                row = asyncio.run(run_fanout(server, shape, args.processes))
            elif isinstance(shape, Storm):
                row = run_storm(server, shape.clients, args.processes)
            elif name.startswith("idle"):
                row = asyncio.run(run_idle(server, shape, args.processes))
            else:
                row = asyncio.run(run_history(server, shape))
        print(f"{name}: " + "  ".join(f"{key} {_format(value)}" for key, value in row.items()), flush=True)


def _format(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


if __name__ == "__main__":
    main()
