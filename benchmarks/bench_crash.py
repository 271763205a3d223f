"""The watcher's crash benchmark: the crash test's harness (`tests/crash_support.py`) with many
more kills. A sandbox process with a busy synthetic feed, watchers killed with SIGKILL at
seeded random moments (start-up, recovery, right after `fired` and `order.filled` lines,
mid-session) and restarted on the same store, a last clean run on a stalled market, then the
store checked against the sandbox's own record.

Run: `.venv/bin/python benchmarks/bench_crash.py [--kills 200] [--seed N] [--workdir DIR]`
(about 2 s per kill). Prints the counts (kills, firings, exchange orders, duplicates,
untracked, lost, stuck) and every problem found; exits 1 if duplicates, untracked, lost or
stuck is not zero, or if fewer kills were delivered than asked. The session's files (store,
rules, each watcher's stderr) stay in the work directory, printed at the start.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from crash_support import run_crash_session  # the shared harness, in tests/


def measure(kills: int, seed: int, workdir: Path,
            log: Callable[[str], None] = lambda line: None) -> tuple[Any, dict[str, Any]]:
    """One crash session; returns the harness's result and its counts."""
    result = run_crash_session(workdir, kills=kills, seed=seed, log=log)
    figures = result.checked.figures
    failures = result.failures()
    if result.kills < kills:
        failures.append(f"only {result.kills} kills delivered of {kills}")
    return result, {
        "kills": result.kills, "seed": seed,
        "watchers": result.kills + len(result.self_exits) + len(result.missed) + 1,
        "firings": figures.get("firings"),
        "firings_with_order": figures.get("firings with an order"),
        "exchange_orders": figures.get("exchange orders"),
        "exchange_fills": figures.get("exchange fills"), "store_fills": figures.get("store fills"),
        "duplicates": result.duplicates, "untracked": result.untracked, "lost": result.lost,
        "stuck": result.stuck, "elapsed_s": result.elapsed_s, "failures": failures,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--quiet", action="store_true", help="no line per watcher")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-crash-"))
    print(f"seed {seed}, {args.kills} kills, work directory {workdir}", flush=True)
    result, counts = measure(
        args.kills, seed, workdir,
        (lambda line: None) if args.quiet else (lambda line: print(line, flush=True)),
    )
    print()
    print(result.summary())
    print()
    print(f"kills          {counts['kills']}")
    print(f"watchers       {counts['watchers']}")
    print(f"firings        {counts['firings']} ({counts['firings_with_order']} with an order)")
    print(f"exchange orders {counts['exchange_orders']}")
    print(f"exchange fills {counts['exchange_fills']} (store {counts['store_fills']})")
    print(f"duplicates     {counts['duplicates']}")
    print(f"untracked      {counts['untracked']}")
    print(f"lost           {counts['lost']}")
    print(f"stuck          {counts['stuck']}")
    print(f"elapsed        {counts['elapsed_s']:.1f} s")
    failures = counts["failures"]
    if failures:
        print(f"\n{len(failures)} problem(s):")
        for line in failures:
            print(f"  {line}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
