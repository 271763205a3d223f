"""The hot standby's takeover time: the failover harness (`tests/standby_support.py`), one
active and two standby watchers against a sandbox process with a busy feed, the store in
PostgreSQL (`--pg URL`, or $RULES_ENGINE_TEST_PG_URL; else a SQLite file: same host).

Two runs, each audited as the failover test is (no duplicate, lost, untracked or late order;
engine-held stops fired after each takeover when the price passed them):

* `SIGKILL` of the active watcher: on one host a standby proves the process gone (its pid)
  and takes over at once, without waiting for the lease to expire;
* `SIGSTOP` of the active watcher: a hung process, or what a standby on another machine sees
  of any failure: it must wait for the lease's time to live to run out.

The takeover time is from the signal to the new watcher's `watcher.took_over` line (it is
ready: recovered, feeds subscribed, engine-held orders resumed); p50 and max over the
failovers of each run, beside the lease's time to live.

Run: `.venv/bin/python benchmarks/bench_standby.py [--kills 5] [--freezes 3] [--pg URL]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from standby_support import FailoverSession  # the shared harness, in tests/

LEASE_STALE_S = 3.0
HEARTBEAT_S = 0.5


@contextmanager
def _database(pg_url: str | None, folder: Path, name: str) -> Iterator[str]:
    if pg_url is None:
        yield f"sqlite:///{folder / (name + '.sqlite')}"
        return
    schema = f"bench_standby_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    joiner = "&" if "?" in pg_url else "?"
    try:
        yield f"{pg_url}{joiner}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _p50_max(values: list[float]) -> tuple[float | None, float | None]:
    ordered = sorted(values)
    if not ordered:
        return None, None
    return ordered[len(ordered) // 2], ordered[-1]


def measure(kills: int, freezes: int, seed: int, workdir: Path, *, pg_url: str | None = None,
            log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    out: dict[str, Any] = {"lease_stale_s": LEASE_STALE_S, "heartbeat_s": HEARTBEAT_S,
                           "store": "postgresql" if pg_url else "sqlite", "failures": []}
    for how, count, freeze in (("kill", kills, False), ("freeze", freezes, True)):
        if count <= 0:
            continue
        folder = workdir / how
        folder.mkdir(parents=True, exist_ok=True)
        with _database(pg_url, folder, how) as db:
            session = FailoverSession(folder, db_url=db, kills=count, standbys=2, seed=seed,
                                      lease_stale_s=LEASE_STALE_S, heartbeat_s=HEARTBEAT_S,
                                      order_window_ms=1000, freeze=freeze, log=log)
            result = asyncio.run(session.run())
        times = [s.kill_to_ready_s for s in result.switches if s.kill_to_ready_s is not None]
        starts = [float(s.logged["start_s"]) for s in result.switches if "start_s" in s.logged]
        p50, worst = _p50_max(times)
        out[how] = {"failovers": len(times), "p50_s": p50, "max_s": worst,
                    "start_p50_s": _p50_max(starts)[0],
                    "held_checked": sum(s.held_checked for s in result.switches),
                    "held_fired": sum(s.held_fired for s in result.switches),
                    "exchange_orders": result.checked.figures.get("exchange orders"),
                    "elapsed_s": round(result.elapsed_s, 1)}
        out["failures"] += [f"{how}: {f}" for f in result.failures()]
        if len(times) < count:
            out["failures"].append(f"{how}: {len(times)} failovers of {count}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--freezes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--pg", default=os.environ.get("RULES_ENGINE_TEST_PG_URL"))
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-standby-"))
    print(f"work directory {workdir}", flush=True)
    result = measure(args.kills, args.freezes, args.seed, workdir, pg_url=args.pg,
                     log=lambda line: print(line, flush=True))
    for how in ("kill", "freeze"):
        if how in result:
            r = result[how]
            print(f"{how}: {r['failovers']} failovers, takeover p50 {r['p50_s']} s, max "
                  f"{r['max_s']} s (lease time to live {LEASE_STALE_S} s); start p50 "
                  f"{r['start_p50_s']} s; held stops checked {r['held_checked']}, fired "
                  f"{r['held_fired']}")
    for failure in result["failures"]:
        print(f"  FAILED: {failure}")
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
