"""Issue 12, item 5, the watcher's side: `rules-engine run` whose SQLite store fills its disk
while it trades stops with exit status 2 and one line naming the cause and the fix, no
traceback; once space is freed, the next start on the same store recovers every order sent
before, and their `cancel after` runs.

Everything is real: a 16 MiB tmpfs mounted here for the store (skipped when mounting is not
permitted), the sandbox and both watchers as their own processes over loopback sockets. The
disk is filled by a file written until the kernel answers ENOSPC, while repeating rules keep
committing firings.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from crash_support import read_store
from lifecycle_support import fault_run, resting_rule, until

from rules_engine.store._repo import FINAL_ORDERS

# Repeating limit buys 5% under the bid on the busy synthetic feed (seed 5): each re-arms once
# its book condition was false again, so each fires every second or two.
RULES = {
    "d0": ("BTC-USDT", "bid_size > 0.05", "0.0001"),
    "d1": ("BTC-USDT", "ask_size > 0.05", "0.0001"),
    "d2": ("BTC-USDT", "bid_size < 0.05", "0.0001"),
    "d3": ("ETH-USDT", "bid_size > 0.7", "0.005"),
    "d4": ("ETH-USDT", "ask_size > 0.7", "0.005"),
    "d5": ("ETH-USDT", "bid_size < 0.4", "0.005"),
}
CANCEL_AFTER_S = 12


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "mnt"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs",
                           str(folder)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount rights): "
                    f"{done.stderr.strip()[:200]}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path) -> Path:
    """Write a file until the file system has no byte left."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out:
        for chunk in (1 << 20, 1 << 12, 1 << 9):
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * chunk)
    assert os.statvfs(folder).f_bavail == 0 or _full(folder), "the tmpfs is not full"
    return filler


def _full(folder: Path) -> bool:
    try:
        with (folder / "probe").open("wb", buffering=0) as probe:
            probe.write(b"\0" * 4096)
    except OSError as err:
        return err.errno == errno.ENOSPC
    return False


def _open_in_store(db: str, prefix: str) -> set[str]:
    store = read_store(db)
    return {oid for oid, o in store.orders.items() if oid.startswith(prefix)
            and o.status not in FINAL_ORDERS | {"not_placed", "held"}}


@pytest.mark.slow
def test_a_full_disk_stops_the_watcher_with_exit_2_and_the_next_start_recovers_every_order(
    tmp_path: Path, tmpfs: Path,
) -> None:
    asyncio.run(_disk_full(tmp_path, tmpfs))


async def _disk_full(tmp: Path, mnt: Path) -> None:
    path = mnt / "store.sqlite"
    async with fault_run(tmp, seed=5, db=f"sqlite:///{path}") as run:
        sandbox, db, where = run.sandbox, run.db, run.where
        rules = run.rules_file("filling.rules", "\n".join(
            resting_rule(name, symbol, size, when=when, below="5%",
                         extra=f"repeat every 1s\ncancel after {CANCEL_AFTER_S}s")
            for name, (symbol, when, size) in RULES.items()))
        run.configure(reload_interval_s=0)
        first = await run.watch("first", [rules])
        assert await first.wait_count("acknowledged", 4, 30), (
            f"the watcher did not trade ({where}):\n{first.tail()}")

        filler = _fill(mnt)  # the disk fills while the rules keep firing
        code = await first.exit(30)
        assert code == 2, f"exit {code} ({where}):\n{first.tail(15)}"
        text = first.text()
        assert "Traceback" not in text, first.tail(30)
        plain = [line for line in text.splitlines() if line.strip()
                 and not line.startswith("{")]
        assert len(plain) == 1, f"not one line: {plain}"
        [line] = plain
        assert "the disk is full" in line and "free space" in line, line
        assert str(path) in line, line

        filler.unlink()  # space freed: the same store starts again
        store = read_store(db)
        prefix = store.prefix
        sent = await sandbox.orders_of(prefix)  # every order that reached the exchange
        assert sent, f"nothing reached the exchange ({where})"
        unknown = sorted(set(sent) - set(store.orders))
        assert not unknown, f"orders on the exchange the store never recorded: {unknown}"
        open_then = await sandbox.open_oids(prefix)
        assert open_then, f"no order was open when the watcher stopped ({where})"
        print(f"{len(sent)} orders sent before the failure, {len(open_then)} open")

        second = await run.watch("second", [rules])
        assert await second.wait_for("recovered", 30), (
            f"the second start did not recover ({where}):\n{second.tail()}")

        # After recovery the store holds open exactly what the exchange holds open.
        async def agree() -> bool:
            return _open_in_store(db, prefix) == await sandbox.open_oids(prefix)

        if not await until(agree, 10, 0.25):
            on_exchange = await sandbox.open_oids(prefix)
            in_store = _open_in_store(db, prefix)
            raise AssertionError(
                f"after recovery: open on the exchange, not in the store: "
                f"{sorted(on_exchange - in_store)}; open in the store, not on the exchange: "
                f"{sorted(in_store - on_exchange)} ({where})")

        # Every order sent before the failure is cancelled by its `cancel after` (those still
        # open when the first watcher stopped included).
        async def all_cancelled() -> bool:
            return not (set(sent) & await sandbox.open_oids(prefix))

        assert await until(all_cancelled, CANCEL_AFTER_S + 15, 0.5), (
            f"orders sent before the failure still open on the exchange "
            f"{CANCEL_AFTER_S + 15} s after the restart: "
            f"{sorted(set(sent) & await sandbox.open_oids(prefix))} ({where})")

        def settled() -> bool:
            orders = read_store(db).orders
            return all(orders[oid].status in FINAL_ORDERS for oid in sent)

        assert await until(settled, 10, 0.5), {
            oid: read_store(db).orders[oid].status for oid in sent}
        assert second.inc.proc.returncode is None, second.tail()
