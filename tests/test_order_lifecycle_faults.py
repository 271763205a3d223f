"""The order lifecycle under faults, over real processes and real sockets (issue 12).

Each test reproduces a defect an adversarial run found on main (664a658), where each failed
for the reason the issue gives, and checks the behaviour the fix promises.

- Item 1, lease fencing: a watcher stopped (SIGSTOP) past its lease, taken over by a second
  one, then resumed (SIGCONT), sends nothing more, and exits 2 saying it lost the lease.
- Item 3, cancels retried and a halt that tells the truth: with the exchange answering 5xx,
  `halt` names the orders still open and exits 1; the cancels are retried once it answers
  again, `cancel after` included.
- Item 6, the store's open orders reconciled: orders an exchange forgot (a sandbox killed with
  SIGKILL and restarted from an older state file) become `vanished`, with an event, and stop
  counting against the risk limits.

The sandbox, the watchers and the commands run as their own processes (`rules-engine sandbox`,
`rules-engine run`, `rules-engine halt|status`); what the exchange holds is read from the
sandbox's own record over its signed REST API. Every file of a run (store, rules, each
process's stderr) stays in pytest's temporary directory, named in the failure messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
from decimal import Decimal
from pathlib import Path

import pytest
from crash_support import read_store
from lifecycle_support import (
    FaultRun,
    WatcherRun,
    cli,
    fault_run,
    free_port,
    lease_owner,
    resting_rule,
    until,
)

from rules_engine.store._repo import FINAL_ORDERS, client_oid


def _cannot_run() -> str | None:
    if os.name != "posix" or not hasattr(signal, "SIGSTOP"):
        return "SIGSTOP, SIGCONT and SIGKILL need a POSIX system"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
    except OSError as err:
        return f"cannot bind a loopback socket: {err}"
    return None


@pytest.fixture(autouse=True)
def _posix_and_loopback() -> None:
    reason = _cannot_run()
    if reason is not None:
        pytest.skip(reason)


def _not_final(status: str) -> bool:
    return status not in FINAL_ORDERS | {"not_placed"}


# ====================================================================== item 1: lease fencing

# Ten repeating rules, each re-arming once its condition was false again: book sizes and
# spreads flip every few ticks of the busy synthetic feed (50 ms), so each fires about every
# second or two. Every order is a limit buy 5% under the bid: it rests until cancelled.
FENCED_RULES = {
    "a0": ("BTC-USDT", "bid_size > 0.05", "0.0001"),
    "a1": ("BTC-USDT", "ask_size > 0.05", "0.0001"),
    "a2": ("BTC-USDT", "bid_size < 0.05", "0.0001"),
    "a3": ("BTC-USDT", "ask_size < 0.04", "0.0001"),
    "a4": ("BTC-USDT", "spread > 0.15", "0.0001"),
    "a5": ("ETH-USDT", "bid_size > 0.7", "0.005"),
    "a6": ("ETH-USDT", "ask_size > 0.7", "0.005"),
    "a7": ("ETH-USDT", "bid_size < 0.4", "0.005"),
    "a8": ("ETH-USDT", "ask_size < 0.4", "0.005"),
    "a9": ("ETH-USDT", "spread > 0.02", "0.005"),
}
B_RULES = ("a0", "a1", "a2", "a5", "a6")  # the second watcher runs these five
A_ONLY = tuple(sorted(set(FENCED_RULES) - set(B_RULES)))


def _fenced_text(names: tuple[str, ...] | list[str]) -> str:
    return "\n".join(
        resting_rule(n, FENCED_RULES[n][0], FENCED_RULES[n][2], when=FENCED_RULES[n][1],
                     below="5%", extra="repeat every 1s")
        for n in names)


@pytest.mark.slow
def test_a_watcher_that_lost_its_lease_sends_nothing_more_and_exits_2(tmp_path: Path) -> None:
    asyncio.run(_lease_fencing(tmp_path))


async def _lease_fencing(tmp: Path) -> None:
    async with fault_run(tmp, seed=5) as run:
        sandbox, db, where = run.sandbox, run.db, run.where
        run.configure(heartbeat_s=0.5, lease_stale_s=3.0, reload_interval_s=0)
        all_rules = run.rules_file("all.rules", _fenced_text(sorted(FENCED_RULES)))
        b_rules = run.rules_file("five.rules", _fenced_text(list(B_RULES)))

        a = await run.watch("watcher-a", [all_rules])
        assert await a.wait_for("recovered", 30), f"A did not start ({where}):\n{a.tail()}"
        assert await a.wait_count("acknowledged", 10, 20), f"A is not busy ({where})"
        store = read_store(db)
        prefix, engine_id = store.prefix, store.engine_id
        a_only_oids = {client_oid(engine_id, name, n): name
                       for name in A_ONLY for n in range(1, 500)}

        a.signal(signal.SIGSTOP)
        await asyncio.sleep(3.0 + 1.5)  # past the lease: its heartbeat is stale
        b = await run.watch("watcher-b", [b_rules])
        b_spawned_ms = int(b.started_wall * 1000)  # B owns the store only after this moment
        assert await b.wait_for("recovered", 30), f"B did not start ({where}):\n{b.tail()}"
        owner = lease_owner(db)  # B holds the lease now: A is still stopped
        assert owner is not None and f":{b.pid}:" in f"{owner}:", (owner, b.pid)
        a.signal(signal.SIGCONT)

        a_exit = await a.exit(15)
        await asyncio.sleep(2.0)  # B settles what it sees; A's last replies come back

        # Nothing from A reached the exchange after B took the store: no order of a rule only
        # A runs was created after B started (A was stopped from before B's start until B
        # owned the lease, so only a send after SIGCONT can have made one).
        orders = await sandbox.orders_of(prefix)
        late = sorted(f"{a_only_oids[oid]} {oid} created {o['createdAt']} "
                      f"({o['createdAt'] - b_spawned_ms} ms after B started)"
                      for oid, o in orders.items()
                      if oid in a_only_oids and int(o["createdAt"]) > b_spawned_ms)
        assert not late, (f"A sent {len(late)} orders after B took the store over "
                          f"({where}; A pid {a.pid}, B pid {b.pid}):\n"
                          + "\n".join(late))

        # A stops on its own, exit 2, one line that says it lost the lease.
        assert a_exit == 2, f"A: exit {a_exit} ({where}):\n{a.tail()}"
        last = a.text().strip().splitlines()[-1]
        assert not last.startswith("{") and "lease" in last.lower(), a.tail()
        assert "Traceback" not in a.text(), a.tail()
        # ... and says why as a field a supervisor can read, whatever the wording.
        stops = a.events("error") + a.events("watcher.stopped")
        assert stops and all(e.get("cause") == "lease" for e in stops), stops

        # Every order of this engine open on the exchange is one B's store holds open. The
        # exchange is read first: an order is in the store before it is sent, so one B places
        # between the two reads is in the store's (later) read, never a false alarm.
        async def untracked_now() -> list[str]:
            open_on_exchange = await sandbox.open_oids(prefix)
            now_store = read_store(db)
            return sorted(oid for oid in open_on_exchange
                          if oid not in now_store.orders
                          or not _not_final(now_store.orders[oid].status))

        untracked = await untracked_now()
        if untracked:  # one filled between the two reads is not untracked: look once more
            await asyncio.sleep(1.0)
            untracked = sorted(set(untracked) & set(await untracked_now()))
        assert not untracked, (f"{len(untracked)} orders open on the exchange the store does "
                               f"not hold open ({where}): {untracked[:10]}")

        # The kill switch on B's store: acknowledged, and nothing of this engine stays open.
        assert b.inc.proc.returncode is None, f"B stopped ({where}):\n{b.tail(3)}"
        halt = await cli("halt", "--db", db, timeout=40)
        assert halt.code == 0, f"{halt} ({where})"
        still_open = await sandbox.open_oids(prefix)
        assert not still_open, (f"halt exited 0 but {len(still_open)} orders stay open "
                                f"({where}): {sorted(still_open)[:10]}")


# ============================================ item 3: cancels retried, a halt that tells the truth


def _resting_text(count: int) -> str:
    """`count` one-shot limit buys 10% under the bid, half on BTC-USDT, half on ETH-USDT."""
    return "\n".join(
        resting_rule(f"r{i:02d}", "BTC-USDT" if i % 2 == 0 else "ETH-USDT",
                     "0.0001" if i % 2 == 0 else "0.005")
        for i in range(count))


async def _resting_watcher(run: FaultRun, rules: str) -> WatcherRun:
    run.configure(reload_interval_s=0)
    return await run.watch("watcher", [run.rules_file("resting.rules", rules)])


RESTING = 12


@pytest.mark.slow
def test_halt_names_the_orders_it_could_not_cancel_and_they_are_cancelled_once_the_exchange_answers(
    tmp_path: Path,
) -> None:
    asyncio.run(_halt_under_5xx(tmp_path))


async def _halt_under_5xx(tmp: Path) -> None:
    async with fault_run(tmp, seed=9) as run:
        sandbox, db, where = run.sandbox, run.db, run.where
        watcher = await _resting_watcher(run, _resting_text(RESTING))
        assert await watcher.wait_count("acknowledged", RESTING, 30), (
            f"not every order was acknowledged ({where}):\n{watcher.tail()}")
        prefix = read_store(db).prefix
        resting = await sandbox.open_oids(prefix)
        assert len(resting) == RESTING, (resting, where)

        await sandbox.faults(http_5xx=True)  # every REST request now answers 503
        try:
            halt = await cli("halt", "--db", db, "--wait", "3", timeout=40)
        finally:
            await sandbox.faults(http_5xx=False)
        # Not one cancel could be confirmed: halt says so, exit 1, naming each order.
        assert halt.code == 1, f"{halt} ({where})"
        named = {oid for oid in resting if oid in halt.out + halt.err}
        assert named == resting, (f"halt named {len(named)} of the {RESTING} open orders:\n"
                                  f"{halt}")

        # The exchange answers again: the watcher's retried cancels go through.
        async def all_cancelled() -> bool:
            return not await sandbox.open_oids(prefix)

        assert await until(all_cancelled, 15, 0.5), (
            f"still open on the exchange 15 s after the fault was lifted ({where}): "
            f"{sorted(await sandbox.open_oids(prefix))}")
        store = read_store(db)
        statuses = {oid: store.orders[oid].status for oid in resting}
        assert set(statuses.values()) == {"canceled"}, statuses

        again = await cli("halt", "--db", db, timeout=40)
        assert again.code == 0, f"{again} ({where})"
        status = await cli("status", "--db", db, "--format", "json", timeout=40)
        assert status.code == 0, status
        report = json.loads(status.out)
        assert not [o for o in report["open_orders"] if o["client_oid"] in resting], report


@pytest.mark.slow
def test_a_halt_during_a_passing_5xx_fault_says_done_only_once_every_order_is_cancelled(
    tmp_path: Path,
) -> None:
    """The issue's own reproduction: the exchange answers 5xx for about 8 s around a plain
    `halt` (default wait). Whatever halt answers must be true when it answers: exit 0 only
    with nothing of this engine open on the exchange, exit 1 naming every order still open;
    and the cancels go through once the exchange answers again."""
    asyncio.run(_halt_across_a_passing_fault(tmp_path))


async def _halt_across_a_passing_fault(tmp: Path) -> None:
    async with fault_run(tmp, seed=9) as run:
        sandbox, db, where = run.sandbox, run.db, run.where
        watcher = await _resting_watcher(run, _resting_text(RESTING))
        assert await watcher.wait_count("acknowledged", RESTING, 30), (
            f"not every order was acknowledged ({where}):\n{watcher.tail()}")
        prefix = read_store(db).prefix
        resting = await sandbox.open_oids(prefix)
        assert len(resting) == RESTING, (resting, where)

        await sandbox.faults(http_5xx=True)
        halting = asyncio.ensure_future(cli("halt", "--db", db, timeout=40))
        try:
            await asyncio.wait({halting}, timeout=6.0)
        finally:
            await sandbox.faults(http_5xx=False)
        lifted = asyncio.get_running_loop().time()
        halt = await halting
        open_then = await sandbox.open_oids(prefix)  # what was open when halt answered
        if halt.code == 0:
            assert not open_then, (f"halt exited 0 with {len(open_then)} orders still open "
                                   f"on the exchange ({where}): {sorted(open_then)}\n{halt}")
        else:
            assert halt.code == 1, f"{halt} ({where})"
            unnamed = {oid for oid in open_then if oid not in halt.out + halt.err}
            assert not unnamed, f"halt did not name {sorted(unnamed)} ({where}):\n{halt}"

        async def all_cancelled() -> bool:
            return not await sandbox.open_oids(prefix)

        assert await until(all_cancelled, 15, 0.5), (
            f"still open 15 s after the fault was lifted ({where}): "
            f"{sorted(await sandbox.open_oids(prefix))}")
        print(f"all cancelled {asyncio.get_running_loop().time() - lifted:.1f} s after the "
              f"fault was lifted; halt: exit {halt.code}")
        store = read_store(db)
        assert {store.orders[oid].status for oid in resting} == {"canceled"}


@pytest.mark.slow
def test_a_cancel_after_that_falls_due_while_the_exchange_fails_is_retried(
    tmp_path: Path,
) -> None:
    asyncio.run(_cancel_after_under_5xx(tmp_path))


async def _cancel_after_under_5xx(tmp: Path) -> None:
    rule = resting_rule("timed", "BTC-USDT", "0.0001", extra="cancel after 2s")
    async with fault_run(tmp, seed=9) as run:
        sandbox, db, where = run.sandbox, run.db, run.where
        watcher = await _resting_watcher(run, rule)
        assert await watcher.wait_count("acknowledged", 1, 30), (
            f"the order was not acknowledged ({where}):\n{watcher.tail()}")
        prefix = read_store(db).prefix
        [oid] = await sandbox.open_oids(prefix)
        # The fault covers the moment the cancel falls due (2 s after the order) and more.
        await sandbox.faults(http_5xx=True)
        await asyncio.sleep(5.0)
        fault_lifted = asyncio.get_running_loop().time()
        await sandbox.faults(http_5xx=False)

        async def cancelled() -> bool:
            return oid not in await sandbox.open_oids(prefix)

        assert await until(cancelled, 6, 0.25), (
            f"{oid} still open 6 s after the exchange answered again ({where}):\n"
            f"{watcher.tail(8)}")
        waited = asyncio.get_running_loop().time() - fault_lifted
        [order] = [o for o in (await sandbox.orders_of(prefix)).values()]
        assert not order["active"] and order["cancelExist"], order
        assert await until(lambda: read_store(db).orders[oid].status == "canceled", 5), (
            f"the store does not show {oid} cancelled ({where})")
        print(f"cancelled {waited:.1f} s after the fault was lifted")


# ========================================= item 6: the store's open orders reconciled

FORGOTTEN = 4


@pytest.mark.slow
def test_orders_the_exchange_forgot_become_vanished_and_free_their_share_of_the_limits(
    tmp_path: Path,
) -> None:
    asyncio.run(_forgotten_orders(tmp_path))


async def _forgotten_orders(tmp: Path) -> None:
    state = tmp / "sandbox-state.json"
    async with fault_run(tmp, seed=13, port=free_port(), state=state) as run:
        sandbox, db, where = run.sandbox, run.db, run.where
        await sandbox.admin("POST", "save")  # the exchange as it was before the orders
        older = tmp / "sandbox-state.older.json"
        shutil.copyfile(state, older)

        folder = tmp / "rules"
        folder.mkdir()
        (folder / "base.rules").write_text("\n".join(
            resting_rule(f"v{i}", "BTC-USDT", "0.0001") for i in range(FORGOTTEN)),
            encoding="utf-8")
        run.configure(reconcile_interval_s=2.0, reload_interval_s=0.5,
                      risk={"max_open_orders": FORGOTTEN})
        watcher = await run.watch("watcher", [folder])
        assert await watcher.wait_count("acknowledged", FORGOTTEN, 30), (
            f"the orders were not acknowledged ({where}):\n{watcher.tail()}")
        prefix = read_store(db).prefix
        placed = await sandbox.open_oids(prefix)
        assert len(placed) == FORGOTTEN, (placed, where)

        # The exchange loses its last seconds: killed, and back from the older state file
        # without the journal that would replay them (a real exchange never does this; the
        # sandbox does not either unless its journal is lost, as here).
        await sandbox.kill()
        shutil.copyfile(older, state)
        state.with_name(state.name + ".journal").unlink(missing_ok=True)
        await sandbox.start()
        assert not await sandbox.orders_of(prefix), "the restarted sandbox still knows them"

        def vanished() -> bool:
            store = read_store(db)
            return all(store.orders[oid].status == "vanished" for oid in placed)

        assert await until(vanished, 15, 0.5), (
            f"15 s after the exchange forgot them the store holds "
            f"{ {oid: read_store(db).orders[oid].status for oid in placed} } ({where})")
        store = read_store(db)
        logged = [str(e.client_oid) for e in store.events if e.kind == "order.vanished"]
        assert sorted(logged) == sorted(placed), logged

        # Their share of max_open_orders is free again: a new rule's firing goes through.
        (folder / "later.rules").write_text(resting_rule("v_later", "BTC-USDT", "0.0001"),
                                            encoding="utf-8")
        assert await watcher.wait_count("acknowledged", FORGOTTEN + 1, 15), (
            f"the new rule did not get an order through ({where}):\n{watcher.tail(10)}")
        later = [f for f in read_store(db).firings if f.identity == "v_later"]
        assert [f.status for f in later] == ["acknowledged"], later

        status = await cli("status", "--db", db, timeout=40)
        assert status.code == 0, status
        for oid in placed:
            lines = [x for x in status.out.splitlines() if oid in x]
            assert lines and all("vanished" in x for x in lines), (oid, status.out)


# =============================== item 7: a firing's cancel never reaches its own order


async def test_cancel_all_in_a_rule_that_places_spares_the_order_its_own_firing_placed(
    tmp_path: Path,
) -> None:
    """In-process (the watcher driven as tests/test_watcher.py drives it, the sandbox on port
    0 with the books the test pushes): `sweep`'s firing cancels `old`'s resting order and
    places its own, which stays open on the exchange and in the store."""
    from test_watcher import rig, settle
    from test_watcher import until as until_true

    rules = ("rule old on BTC-USDT:\n    when bid < 60000\n    place limit buy 0.001 at 50000\n"
             "\nrule sweep on BTC-USDT:\n    when bid < 58500\n"
             "    place limit buy 0.001 at 50100\n    cancel all\n")
    async with rig(tmp_path, rules) as r:
        await until_true(lambda: len(r.orders()) == 1 and not r.watcher.pending)
        r.push("58400", "58410", trade="58405")  # sweep's condition: it fires once
        await until_true(lambda: len(r.orders()) == 2 and not r.watcher.pending)
        await settle(1.0)  # the cancels it asked for are answered and pushed back
        by_price = {o.req.price: o for o in r.orders()}
        old, own = by_price[Decimal(50000)], by_price[Decimal(50100)]
        assert not old.active, "the other rule's order was not cancelled"
        assert own.active, "sweep cancelled the order its own firing placed"
        store = r.store()
        statuses = {o.client_oid: o.status for o in store.orders()}
        store.close()
        assert statuses[own.req.client_oid] == "open", statuses
        assert statuses[old.req.client_oid] == "canceled", statuses
