"""The failover harness shared by `tests/test_standby.py` and `benchmarks/bench_standby.py`.

A sandbox process with a busy synthetic feed (`crash_support.SandboxProcess`), one active
watcher and N standby watchers (`rules-engine run --standby`), all `rules-engine run`
processes on one store (PostgreSQL in the test) with short leases. At random moments of the
busy session the active watcher is killed with SIGKILL (or, with `freeze`, stopped with
SIGSTOP, as a standby on another machine sees any failure: it cannot prove the process gone
and must wait for the lease to expire; the frozen one is killed once another took over). A
standby takes over; a new standby is started in the killed one's place. At the end the market
is stalled, the active watcher catches up, every process is stopped with SIGTERM, and the
exchange's record is audited:

* the crash test's `check()` (duplicates, untracked, lost and stuck), whole;
* late orders: an order the exchange accepted after its deadline (the HF window the
  takeover's recovery relies on);
* engine-held stops: every bracket stop-loss held in the store at a kill whose trigger the
  last price passed (sampled from the exchange every 0.1 s) once the next watcher was ready
  must have left `held` within `HELD_GRACE_S` of that price;
* takeovers: who took over, how long after the kill its `watcher.took_over` line came, and
  the figures it logged.

Everything is real: processes, loopback sockets, the database. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from crash_support import (
    Checked,
    Incarnation,
    SandboxProcess,
    _clean_env,
    check,
    read_store,
    rules_text,
    settled,
)

__all__ = ["FailoverResult", "FailoverSession", "Switch", "failover_rules", "watcher_config"]

HELD_GRACE_S = 3.0  # a passed trigger reaches a ready watcher's fresh `last` within this

# Brackets whose take-profit is far (it rests) and whose stop-loss is near: their stop-losses
# are held by the engine for seconds, across kills, until the walk passes them.
GUARD_RULES = """
rule guard_dip_btc on BTC-USDT:
    when spread > 0.2
    place market buy 0.0002
    repeat every 2s

rule guard_btc on BTC-USDT:
    after guard_dip_btc filled
    place limit sell filled_size at fill_price + 3%
    stop-loss at fill_price - 0.005%
"""


def failover_rules(btc_bid: Decimal, eth_bid: Decimal) -> str:
    """The crash test's busy session without its `cancel all` sweeps (they would cancel the
    guards' resting take-profits, and with them their stop-losses), plus `GUARD_RULES`."""
    blocks = rules_text(btc_bid, eth_bid).split("\n\n")
    kept = [b for b in blocks if "cancel all" not in b]
    return "\n\n".join(kept) + "\n" + GUARD_RULES


def watcher_config(lease_stale_s: float, heartbeat_s: float, order_window_ms: int) -> str:
    return (f"order_window_ms = {order_window_ms}\nrequest_timeout_s = 2.0\n"
            f"resolve_interval_s = 0.5\npoll_interval_s = 1.0\nreconcile_interval_s = 2.0\n"
            f"heartbeat_s = {heartbeat_s}\nlease_stale_s = {lease_stale_s}\n"
            'start_patience_s = 20.0\nlog_format = "json"\nview = "off"\n')


@dataclass
class Switch:
    """One failover: the watcher stopped, the one that took over, and the times."""

    killed: int
    how: str  # "SIGKILL" or "SIGSTOP"
    at: float  # wall time of the signal
    taker: int | None = None
    kill_to_ready_s: float | None = None  # the signal to the taker's `watcher.took_over`
    logged: dict[str, Any] = field(default_factory=dict)  # what `watcher.took_over` says
    held_checked: int = 0  # stop-losses held at the kill whose trigger the price then passed
    held_fired: int = 0  # of those, triggered by the watcher that took over


@dataclass
class FailoverResult:
    switches: list[Switch] = field(default_factory=list)
    checked: Checked = field(default_factory=Checked)
    late: list[str] = field(default_factory=list)
    held_missed: list[str] = field(default_factory=list)
    exits: dict[int, int | None] = field(default_factory=dict)  # watcher -> exit status
    problems: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def failures(self) -> list[str]:
        out = [f"{kind}: {message}" for kind in ("duplicates", "untracked", "lost", "stuck")
               for message in self.checked.problems.get(kind, ())]
        out += [f"late: {m}" for m in self.late]
        out += [f"held stop not fired: {m}" for m in self.held_missed]
        return out + self.problems


class FailoverSession:
    def __init__(self, workdir: Path, *, db_url: str, kills: int = 5, standbys: int = 2,
                 seed: int = 1, lease_stale_s: float = 3.0, heartbeat_s: float = 0.5,
                 order_window_ms: int = 1000, freeze: bool = False,
                 busy_s: tuple[float, float] = (2.0, 4.0),
                 log: Callable[[str], None] = lambda line: None) -> None:
        self.workdir = workdir
        self.db_url = db_url
        self.kills = kills
        self.standbys = standbys
        self.rng = random.Random(seed)
        self.seed = seed
        self.lease_stale_s = lease_stale_s
        self.heartbeat_s = heartbeat_s
        self.order_window_ms = order_window_ms
        self.freeze = freeze
        self.busy_s = busy_s
        self.log = log
        self.sandbox = SandboxProcess(workdir, seed)
        self.rules = workdir / "failover.rules"
        self.config = workdir / "watcher.toml"
        self.procs: dict[int, Incarnation] = {}
        self.n = 0
        self.prices: list[tuple[float, Decimal]] = []  # (wall time, BTC-USDT last)
        self.result = FailoverResult()
        self._pending_held: tuple[Switch, dict[str, Decimal]] | None = None

    async def run(self) -> FailoverResult:
        started = time.monotonic()
        await self.sandbox.start()
        sampler: asyncio.Task[None] | None = None
        try:
            btc = await self.sandbox.public("/api/v1/market/orderbook/level1",
                                            {"symbol": "BTC-USDT"})
            eth = await self.sandbox.public("/api/v1/market/orderbook/level1",
                                            {"symbol": "ETH-USDT"})
            self.rules.write_text(failover_rules(Decimal(btc["bestBid"]),
                                                 Decimal(eth["bestBid"])), encoding="utf-8")
            self.config.write_text(watcher_config(self.lease_stale_s, self.heartbeat_s,
                                                  self.order_window_ms), encoding="utf-8")
            sampler = asyncio.create_task(self._sample())
            active = await self._spawn(standby=False)
            if not await self.procs[active].wait_for("recovered", 30):
                raise RuntimeError("the first watcher did not start: "
                                   + " | ".join(self.procs[active].tail[-5:]))
            waiting = [await self._spawn(standby=True) for _ in range(self.standbys)]
            for n in waiting:
                if not await self.procs[n].wait_for("standby.waiting", 30):
                    raise RuntimeError(f"standby {n} did not start: "
                                       + " | ".join(self.procs[n].tail[-5:]))
            for _ in range(self.kills):
                await asyncio.sleep(self.rng.uniform(*self.busy_s))
                active, waiting = await self._switch(active, waiting)
            await asyncio.sleep(HELD_GRACE_S + 1)
            self._judge_held()
            await self._final(active)
        finally:
            if sampler is not None:
                sampler.cancel()
                await asyncio.gather(sampler, return_exceptions=True)
            for n, inc in self.procs.items():  # whatever still runs (a failed test)
                if inc.proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        inc.proc.send_signal(signal.SIGCONT)
                    inc.kill()
                    self.result.exits.setdefault(n, await inc.finish())
            await self.sandbox.stop()
            self.result.elapsed_s = time.monotonic() - started
        return self.result

    async def _spawn(self, *, standby: bool) -> int:
        self.n += 1
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rules_engine", "run", str(self.rules),
            "--exchange-url", self.sandbox.url, "--db", self.db_url,
            "--config", str(self.config), *(["--standby"] if standby else []),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env=_clean_env(), limit=1 << 22)
        self.procs[self.n] = Incarnation(proc, self.workdir / f"watcher-{self.n:02d}.log")
        return self.n

    async def _sample(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a missed sample only checks less
                level1 = await self.sandbox.public("/api/v1/market/orderbook/level1",
                                                   {"symbol": "BTC-USDT"})
                self.prices.append((time.time(), Decimal(level1["price"])))
            await asyncio.sleep(0.1)

    async def _switch(self, active: int, waiting: list[int]) -> tuple[int, list[int]]:
        """Stop the active watcher; wait for a standby's `watcher.took_over`; start a new
        standby in the stopped one's place."""
        self._judge_held()
        held = self._held_now()
        inc = self.procs[active]
        how = "SIGSTOP" if self.freeze else "SIGKILL"
        at = time.time()
        if self.freeze:
            inc.proc.send_signal(signal.SIGSTOP)
        else:
            inc.kill()
        switch = Switch(active, how, at)
        self.result.switches.append(switch)
        self._pending_held = (switch, held)
        deadline = time.monotonic() + self.lease_stale_s + 30
        taker = None
        while taker is None and time.monotonic() < deadline:
            taker = next((n for n in waiting if self.procs[n].seen["watcher.took_over"].is_set()),
                         None)
            await asyncio.sleep(0.02)
        if self.freeze:
            inc.kill()
        self.result.exits[active] = await inc.finish()
        if taker is None:
            raise RuntimeError(f"no standby took over within {self.lease_stale_s + 30} s of "
                               f"the {how} of watcher {active}: "
                               + "; ".join(" | ".join(self.procs[n].tail[-3:]) for n in waiting))
        line = next(e for e in _events(self.procs[taker]) if e.get("event") == "watcher.took_over")
        switch.taker = taker
        switch.logged = {k: v for k, v in line.items() if k not in ("event",)}
        switch.kill_to_ready_s = round(_wall(str(line["at"])) - at, 3)
        self.log(f"  {how} watcher {active}; watcher {taker} ready {switch.kill_to_ready_s} s "
                 f"later (logged takeover_s {line.get('takeover_s')}, start_s "
                 f"{line.get('start_s')})")
        others = [n for n in waiting if n != taker]
        losers = [n for n in others if self.procs[n].proc.returncode is not None]
        for n in losers:
            self.result.problems.append(f"standby {n} ended while waiting: "
                                        + " | ".join(self.procs[n].tail[-3:]))
        fresh = await self._spawn(standby=True)
        if not await self.procs[fresh].wait_for("standby.waiting", 30):
            raise RuntimeError(f"standby {fresh} did not start")
        return taker, [*others, fresh]

    def _held_now(self) -> dict[str, Decimal]:
        """The bracket stop-losses held by the engine right now: clientOid -> trigger."""
        store = read_store(self.db_url)
        return {oid: o.price for oid, o in store.orders.items()
                if o.order_type == "stop-loss" and o.status == "held" and o.price is not None}

    def _judge_held(self) -> None:
        """The stop-losses held at the last kill: each whose trigger the last price passed
        after the next watcher was ready must have left `held` within HELD_GRACE_S."""
        pending = self._pending_held
        if pending is None:
            return
        self._pending_held = None
        switch, held = pending
        if switch.taker is None or not held:
            return
        ready = _wall(str(switch.logged["at"]))
        store = read_store(self.db_url)
        triggered = {e.client_oid: e.at for e in store.events
                     if e.kind == "stop_loss.triggered" and e.client_oid}
        now = time.time()
        for oid, trigger in held.items():
            row = store.orders.get(oid)
            passed = next((t for t, price in self.prices
                           if t > ready and price <= trigger), None)
            if passed is None or row is None:
                continue  # the price never passed it after the takeover (as sampled)
            if passed + HELD_GRACE_S > now:
                continue  # too recent to judge
            switch.held_checked += 1
            at = triggered.get(oid)
            if at is not None and _wall(at) >= ready - 0.5:
                switch.held_fired += 1
            if row.status == "held":
                self.result.held_missed.append(
                    f"{oid} (trigger {trigger}) held at the {switch.how} of watcher "
                    f"{switch.killed}; last {trigger} or below at {_iso(passed)}, after "
                    f"watcher {switch.taker} was ready ({_iso(ready)}); still held")

    async def _final(self, active: int) -> None:
        """Stall the market; the active watcher catches up; SIGTERM to all; the audit."""
        await self.sandbox.admin("POST", "faults", {"stall_feed": True})
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            store = read_store(self.db_url)
            if settled(store):
                checked = check(store, await self.sandbox.record(), datetime.now(UTC))
                if not checked.behind and not checked.count("stuck"):
                    break
            await asyncio.sleep(1.0)
        for inc in self.procs.values():
            if inc.proc.returncode is None:
                inc.proc.send_signal(signal.SIGTERM)
        for n, inc in self.procs.items():
            if n not in self.result.exits:
                try:
                    self.result.exits[n] = await asyncio.wait_for(inc.finish(), 30)
                except TimeoutError:
                    inc.kill()
                    self.result.exits[n] = await inc.finish()
                if self.result.exits[n] != 0:
                    self.result.problems.append(
                        f"watcher {n} did not stop cleanly on SIGTERM (exit "
                        f"{self.result.exits[n]}): " + " | ".join(inc.tail[-3:]))
        store = read_store(self.db_url)
        record = await self.sandbox.record()
        self.result.checked = check(store, record, datetime.now(UTC))
        deadlines = {oid: o.deadline for oid, o in store.orders.items()}
        for order in record.orders.values():
            oid = str(order.get("clientOid") or "")
            due = deadlines.get(oid)
            if due is None:
                continue
            due_ms = _wall(due) * 1000
            if int(order.get("createdAt") or 0) > due_ms:
                self.result.late.append(f"{oid} accepted at {order.get('createdAt')} ms, "
                                        f"after its deadline {_iso(due_ms / 1000)}")


def _events(inc: Incarnation) -> list[dict[str, Any]]:
    if not inc.log.closed:
        inc.log.flush()
    out = []
    for line in Path(inc.log.name).read_text(encoding="utf-8").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def _wall(at: str | datetime) -> float:
    moment = datetime.fromisoformat(at) if isinstance(at, str) else at
    if moment.tzinfo is None:  # SQLite gives a stored UTC time back naive
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
