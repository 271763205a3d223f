"""A store another process holds locked, and a lease that expired while its watcher was
frozen (the fault soak, seed 7 with `--pause`: a watcher stopped with SIGSTOP inside a commit
held SQLite's write lock; the watcher started to take over gave up after the 5 s busy timeout
and exited, leaving nothing running).

* A start owns nothing until it holds the lease: it waits for a locked store with the start's
  patience (`store.locked` lines), then goes on as soon as the lock is gone.
* A watcher frozen past its lease does not renew it when it resumes: another may be taking
  the store over at that moment (the start above, a standby), so it stops as when it finds
  the lease taken (exit 2, `cause: lease`), sending nothing.

Everything is real: watcher processes, the sandbox process on loopback, an SQLite file, and
the lock held by a plain sqlite3 connection in a write transaction.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import pytest
from lifecycle_support import FaultRun, WatcherRun, fault_run, lease_owner, resting_rule

from rules_engine.store import Store

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"),
                                reason="SIGSTOP and SIGCONT need a POSIX system")

QUIET = resting_rule("quiet", "BTC-USDT", "0.0001", when="bid < 1")  # never true


def _owns(run: FaultRun, watcher: WatcherRun) -> bool:
    """The store's lease is `watcher`'s."""
    owner = lease_owner(run.db)
    return owner is not None and f":{watcher.pid}:" in f"{owner}:"


async def test_a_start_waits_for_a_locked_store_and_goes_on_once_it_is_free(
        tmp_path: Path) -> None:
    async with fault_run(tmp_path, seed=3) as run:
        run.configure(heartbeat_s=0.5, lease_stale_s=3.0, reload_interval_s=0)
        rules = run.rules_file("quiet.rules", QUIET)
        made = Store(run.db)  # the store exists, as after an earlier run
        made.migrate()
        made.close()

        lock = sqlite3.connect(str(tmp_path / "store.sqlite"), isolation_level=None)
        try:
            lock.execute("BEGIN IMMEDIATE")  # the write lock, as a commit in progress has
            watcher = await run.watch("watcher", [rules])
            assert await watcher.wait_for("store.locked", 30), (
                f"the start did not say it waits for the lock ({run.where}):\n"
                f"{watcher.tail()}")
            locked = watcher.events("store.locked")[0]
            assert "locked" in locked["why"] and locked["fix"] and locked["retry_in_s"] > 0
            # The line comes after a first try met SQLite's 5 s busy timeout: the start is
            # past it, and still waits.
            await asyncio.sleep(1)
            assert watcher.inc.proc.returncode is None, (
                f"the start gave up on a locked store ({run.where}):\n{watcher.tail()}")
            assert watcher.count("recovered") == 0
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert await watcher.wait_for("recovered", 30), (
            f"the start did not go on once the lock was gone ({run.where}):\n"
            f"{watcher.tail()}")
        assert _owns(run, watcher), lease_owner(run.db)
        assert "Traceback" not in watcher.text(), watcher.tail()


async def test_a_watcher_frozen_past_its_lease_does_not_renew_it_and_stops(
        tmp_path: Path) -> None:
    async with fault_run(tmp_path, seed=4) as run:
        run.configure(heartbeat_s=0.5, lease_stale_s=3.0, reload_interval_s=0)
        rules = run.rules_file("quiet.rules", QUIET)
        a = await run.watch("a", [rules])
        assert await a.wait_for("recovered", 30), a.tail()
        a.signal(signal.SIGSTOP)
        await asyncio.sleep(3.0 + 1.0)  # past the lease: anyone may take the store now
        a.signal(signal.SIGCONT)
        code = await a.exit(15)
        assert code == 2, (f"a watcher resumed past its lease ran on (exit {code}; "
                           f"{run.where}):\n{a.tail()}")
        stops = a.events("error") + a.events("watcher.stopped")
        assert stops and all(e.get("cause") == "lease" for e in stops), a.tail()
        assert "Traceback" not in a.text(), a.tail()
        # ... and a watcher started now takes the store over at once.
        b = await run.watch("b", [rules])
        assert await b.wait_for("recovered", 30), b.tail()
        assert _owns(run, b), lease_owner(run.db)
