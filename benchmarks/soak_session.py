"""The fault-injection soak behind `benchmarks/soak`: the crash harness (`tests/crash_support.py`)
with a few hundred rules, every fault of the sandbox switched on and off at random while
watchers run and are killed, and an audit of the sandbox's record against the store.

What runs (everything real: processes, loopback sockets, SQLite on disk):

* a sandbox process (`rules-engine sandbox`, busy synthetic feed) configured with a non-demo
  key made up for this run, pings every 3 s with a 2 s timeout, and `record_history` (the
  book's best levels after every change, on the sandbox's unskewed clock);
* watchers (`rules-engine run`) on one SQLite store, signing with that key (from the
  environment, as a user would), with risk limits, each killed with SIGKILL: at the crash
  test's moments (start-up, recovery, right after `fired` and `order.filled` lines, a busy
  moment), or after a longer life of 6 to 20 s (so that faults play out inside one process);
* a fault injector that, every 0.3 to 2 s, turns one fault on for a while: WebSocket drops,
  sequence gaps (level2 messages dropped), duplicated level2 messages, a stalled feed, a silent
  connection (no data and no pongs: only the ping timeout reveals it), 429 storms, 5xx replies,
  HTML error pages, orders accepted whose reply never comes, slow replies, and the server
  clock moved by up to 30 s either way.

At the end every fault is turned off and held replies are released, the market is stalled, a
last watcher catches up and is stopped with SIGTERM, and the audit counts, each of which must
be 0:

* duplicate orders, lost firings, untracked orders and stuck firings: the crash test's
  `check()`, the store against the exchange's signed REST record;
* fires on stale data: a firing whose book was not live, or whose book sequence the sandbox
  had moved past more than pingInterval + pingTimeout + 1 s before the decision (the longest a
  live connection can be silently behind);
* fires on data the exchange never showed: a firing whose recorded book sequence is not one
  the sandbox's book passed through, or whose bid, ask or their sizes differ from the
  sandbox's at that sequence;
* limit breaches, from the exchange's record: an order above `max_order_notional`, the capped
  rules' orders above `max_rule_notional`, more open orders at one moment than
  `max_open_orders`, an order on a symbol outside `allowed_symbols`;
* secrets: the key's secret and passphrase (and the passphrase as signed) found in any
  watcher's output, the sandbox's output, the rule and config files or the store's files;
* watchers that ended on their own, and orders from a watcher that lost its lease: see
  `soak_watchers.py` (with `--pause`, a watcher is also stopped past its lease and resumed).

With `--standby N`, N standby watchers (`rules-engine run --standby`) wait beside the active
one under every fault: each watcher after the first is the standby that took the lease over
when the one before was killed (or paused past its lease), and a new standby takes its place;
the standbys still waiting at the end are stopped with SIGTERM and must exit 0. The report
adds how many takeovers there were and how long they took.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import json
import os
import random
import secrets
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, select, text

from rules_engine.runtime._market import BOOK_FIELDS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from crash_support import (  # the shared harness, in tests/
    SANDBOX_CONFIG,
    WATCHER_TOML,
    CrashSession,
    Incarnation,
    StoreRecord,
    _clean_env,
    _sign,
    read_store,
    rules_text,
)
from soak_faults import FAULTS, FaultInjector  # beside this module
from soak_watchers import (
    LOST_LEASE_ORDERS,
    SELF_EXITS,
    Life,
    audit_lease,
    audit_store_stops,
    ending,
)

__all__ = ["SoakResult", "SoakSession", "run_soak"]


PING_INTERVAL_MS = 3000
PING_TIMEOUT_MS = 2000
# The longest a live connection may be silently behind the market: a ping is due at most
# one interval after the last sign of life, and the connection is dead a timeout later.
STALE_BOUND_MS = PING_INTERVAL_MS + PING_TIMEOUT_MS + 1000

MAX_ORDER_NOTIONAL = Decimal(40)
MAX_RULE_NOTIONAL = Decimal(60)  # for the rules of capped.rules
MAX_OPEN_ORDERS = 150
ALLOWED_SYMBOLS = ("BTC-USDT", "ETH-USDT")
# The soak's watchers hold the store's lease for a short time (the default is 15 s), so that
# `--pause` can outwait it quickly. It stays above the HF order window (2 s, WATCHER_TOML).
LEASE_STALE_S = 4.0
# `--pause`: how long a resumed watcher has to notice that it lost its lease and stop.
PAUSE_GRACE_S = 10.0

# A market order by size is valued by walking the book at the decision; the book it meets on
# the exchange may have moved a little since. Its traded value may exceed the cap by this.
WALK_TOLERANCE = Decimal("1.05")

def extra_rules(btc: Decimal, eth: Decimal) -> str:
    """About 300 rules beside the crash test's busy ones: thresholds far from the market
    (evaluated on every tick, never true), level crossings in a band around the price (each
    fires once as the walk passes it), `for` runs with `cancel after`, and rules whose orders
    break `max_order_notional` (they must be blocked, never sent)."""
    out = ["# Generated by benchmarks/soak_session.py: the soak's quiet majority.", ""]
    for i in range(120):
        out += [f"rule far_btc_{i} on BTC-USDT:",
                f"    when bid < {(btc * Decimal('0.5') - i).quantize(Decimal('0.1'))}",
                "    place limit buy 0.0001 at bid - 1%", ""]
    for i in range(120):
        out += [f"rule far_eth_{i} on ETH-USDT:",
                f"    when ask > {(eth * 2 + i).quantize(Decimal('0.01'))}",
                "    place limit sell 0.001 at ask + 1%", ""]
    for i in range(1, 21):
        up = (btc * (1 + Decimal(i) / 4000)).quantize(Decimal("0.1"))
        down = (btc * (1 - Decimal(i) / 4000)).quantize(Decimal("0.1"))
        out += [f"rule band_up_{i} on BTC-USDT:", f"    when last crosses above {up}",
                "    place market buy 11 USDT", "",
                f"rule band_down_{i} on BTC-USDT:", f"    when last crosses below {down}",
                "    place market sell 0.0002", ""]
    for i in range(10):
        out += [f"rule held_{i} on ETH-USDT:",
                f"    when spread >= {Decimal('0.01') * (i + 1)} for 2s",
                "    place limit buy 0.002 at bid - 4%",
                "    cancel after 4s",
                "    repeat every 5s", ""]
    out += ["rule too_big_market on BTC-USDT:", "    when bid_size > 0.05",
            "    place market buy 80 USDT", "    repeat every 2s", "",
            "rule too_big_limit on ETH-USDT:", "    when ask_size > 0.5",
            "    place limit buy 0.05 at bid - 3%", "    repeat every 2s", ""]
    return "\n".join(out)


CAPPED_RULES = """\
# Generated by benchmarks/soak_session.py: rules under max_rule_notional (risk_files).

rule capped_a on BTC-USDT:
    when bid_size > 0.05
    place market buy 11 USDT
    repeat every 1s

rule capped_b on ETH-USDT:
    when ask_size > 0.5
    place market buy 11 USDT
    repeat every 1s

rule capped_c on BTC-USDT:
    when spread > 0.1
    place market buy 11 USDT
    repeat every 2s
"""


@dataclass
class Audit:
    problems: dict[str, list[str]] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)

    def add(self, kind: str, message: str) -> None:
        self.problems.setdefault(kind, []).append(message)

    def count(self, kind: str) -> int:
        return len(self.problems.get(kind, ()))


AUDIT_KINDS = ("duplicate orders", "lost firings", "untracked orders", "stuck firings",
               "fires on stale data", "fires on data the exchange never showed",
               "limit breaches", "secrets found", SELF_EXITS, LOST_LEASE_ORDERS)


@dataclass
class SoakResult:
    seed: int
    seconds: float
    faults: Counter[str] = field(default_factory=Counter)
    audit: Audit = field(default_factory=Audit)
    kills: int = 0
    kill_modes: Counter[str] = field(default_factory=Counter)
    watchers: int = 0
    elapsed_s: float = 0.0
    caught_up_s: float | None = None  # the last watcher, until the store matched the exchange
    workdir: Path | None = None
    pauses: Counter[str] = field(default_factory=Counter)  # `--pause`: how each one ended
    pauses_locked: int = 0  # ... of them, stopped holding SQLite's write lock

    def counts(self) -> dict[str, int]:
        return {kind: self.audit.count(kind) for kind in AUDIT_KINDS}

    def failed(self) -> bool:
        return any(self.counts().values())


class SoakSession(CrashSession):
    """A crash session that runs for a time, with faults, a non-demo key and risk limits."""

    def __init__(self, workdir: Path, *, seconds: float, seed: int,
                 log: Callable[[str], None] = print, pg_url: str | None = None,
                 pause: bool = False, standby: int = 0) -> None:
        self.seconds = seconds
        self.pause = pause
        self.standby = standby
        self.pool: list[Incarnation] = []  # `--standby N`: standbys waiting for the lease
        self.finishing = False
        self.lives: list[Life] = []
        self.key = f"soak-key-{secrets.token_hex(4)}"
        self.secret = f"soak-secret-{secrets.token_hex(16)}"
        self.passphrase = f"soak-pass-{secrets.token_hex(8)}"
        # The last run may wait out a deadline set while the clock was 30 s ahead.
        super().__init__(workdir, kills=1, seed=seed, log=log, converge_timeout=90.0)
        self.capped = workdir / "capped.rules"
        self.rule_paths = [self.rules, self.capped]
        self.injector = FaultInjector(self.sandbox, random.Random(seed ^ 0x5EED), log)
        self.injecting: asyncio.Task[None] | None = None
        self.started = 0.0
        self.soak = SoakResult(seed, seconds, workdir=workdir)
        self.pg_url = pg_url
        self.schema = f"soak_{secrets.token_hex(4)}"
        if pg_url is not None:
            joiner = "&" if "?" in pg_url else "?"
            self.db_url = f"{pg_url}{joiner}options=-csearch_path%3D{self.schema}"

    # ---- the crash harness's hooks

    def sandbox_config(self) -> dict[str, Any]:
        config = copy.deepcopy(SANDBOX_CONFIG)
        # The demo key replaced by this run's own; the harness's read-only key kept.
        config["keys"] = [
            {"api_key": self.key, "api_secret": self.secret, "api_passphrase": self.passphrase,
             "permissions": ["General", "Spot"], "remark": "soak (not the demo key)"},
            *(key for key in config["keys"] if not key.get("demo")),
        ]
        config["ping_interval_ms"] = PING_INTERVAL_MS
        config["ping_timeout_ms"] = PING_TIMEOUT_MS
        config["record_history"] = True
        return config

    def write_files(self, btc_bid: Decimal, eth_bid: Decimal) -> None:
        self.rules.write_text(rules_text(btc_bid, eth_bid) + "\n" + extra_rules(btc_bid, eth_bid),
                              encoding="utf-8")
        self.capped.write_text(CAPPED_RULES, encoding="utf-8")
        allowed = ", ".join(f'"{s}"' for s in ALLOWED_SYMBOLS)
        self.config.write_text(
            WATCHER_TOML + f"lease_stale_s = {LEASE_STALE_S}\n"
            + f"\n[risk]\nmax_order_notional = {MAX_ORDER_NOTIONAL}\n"
            f"max_open_orders = {MAX_OPEN_ORDERS}\nallowed_symbols = [{allowed}]\n"
            f'\n[risk_files."{self.capped}"]\nmax_rule_notional = {MAX_RULE_NOTIONAL}\n',
            encoding="utf-8")

    def watcher_env(self) -> dict[str, str]:
        env = _clean_env()
        env["RULES_ENGINE_API_KEY"] = self.key
        env["RULES_ENGINE_API_SECRET"] = self.secret
        env["RULES_ENGINE_API_PASSPHRASE"] = self.passphrase
        return env

    def more(self) -> bool:
        if not self.started:
            self.started = time.monotonic()
            self.injecting = asyncio.ensure_future(self.injector.run())
        return time.monotonic() - self.started < self.seconds

    def progress(self) -> str:
        return (f"kills {self.result.kills}, {time.monotonic() - self.started:.0f} of "
                f"{self.seconds:g} s")

    async def _cycle(self) -> None:
        left = self.seconds - (time.monotonic() - self.started)
        # `--pause`: the first watcher, then one in four.
        if self.pause and left > LEASE_STALE_S + 4 and (
                not self.soak.pauses or self.rng.random() < 0.25):
            await self._paused_pair()
        elif self.rng.random() < 0.3:
            await self._long_life()
        else:
            await super()._cycle()

    async def _spawn(self) -> Incarnation:
        if not self.standby:
            return await self._start_one(standby=False)
        # `--standby N`: the next watcher is the standby that takes the lease over (the one
        # before it has just been killed or stopped); a new standby fills its place.
        while len(self.pool) < self.standby + (0 if self.finishing else 1):
            self.pool.append(await self._start_one(standby=True))
        deadline = time.monotonic() + LEASE_STALE_S + 30
        while time.monotonic() < deadline:
            taker = next((inc for inc in self.pool if inc.seen["standby.acquired"].is_set()),
                         None)
            if taker is not None:
                self.pool.remove(taker)
                return taker
            for gone in [inc for inc in self.pool if inc.eof.is_set()]:
                self.pool.remove(gone)  # ended while waiting: its Life says how
                life = next(life for life in self.lives if life.inc is gone)
                life.ended_ms, life.code, life.how = _now_ms(), await gone.finish(), "standby"
                life.inc = None
                life.read()
                why = ending(life)
                if why is not None:
                    self.result.self_exits.append(why)
                self.pool.append(await self._start_one(standby=True))
            await asyncio.sleep(0.02)
        raise RuntimeError(f"no standby took the lease over within {LEASE_STALE_S + 30} s")

    async def _start_one(self, *, standby: bool) -> Incarnation:
        self.n += 1
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rules_engine", "run", *map(str, self.rule_paths),
            "--exchange-url", self.sandbox.url, "--db", self.db_url,
            "--config", str(self.config), *(["--standby"] if standby else []),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env=self.watcher_env(), limit=1 << 22,
        )
        inc = Incarnation(proc, self.workdir / f"watcher-{self.n:04d}.log")
        self.lives.append(Life(self.n, self.workdir / f"watcher-{self.n:04d}.log", _now_ms(),
                               inc=inc))
        return inc

    async def _stop_pool(self) -> None:
        """`--standby N`: the standbys still waiting at the end, stopped with SIGTERM: each
        must exit 0 having done nothing (judged as the last watcher is)."""
        for inc in self.pool:
            if inc.proc.returncode is None:
                inc.proc.send_signal(signal.SIGTERM)
        for inc in self.pool:
            life = next(life for life in self.lives if life.inc is inc)
            try:
                code = await asyncio.wait_for(inc.finish(), 30)
            except TimeoutError:
                inc.kill()
                code = await inc.finish()
            life.final, life.code, life.ended_ms, life.inc = True, code, _now_ms(), None
            life.how = "standby at the end"
            life.read()
        self.pool.clear()

    async def _account(self, inc: Incarnation, how: str, t0: float) -> None:
        """Wait for a watcher the soak ended to end, and judge how it ended
        (`soak_watchers.ending`): its exit status, its output, not only whether the SIGKILL
        found it alive."""
        code = await inc.finish()
        life = next(life for life in self.lives if life.inc is inc)
        life.ended_ms, life.code, life.kill_sent, life.how = _now_ms(), code, inc.kill_sent, how
        life.inc = None
        life.read()
        why = ending(life)
        if why is not None:
            self.result.self_exits.append(why)
        elif code == -signal.SIGKILL:
            self.result.kills += 1
            self.result.kill_modes[how] += 1
        self.log(f"  watcher {life.n:3d}: {how:<24} after {time.monotonic() - t0:5.2f} s -> "
                 f"exit {code}{'' if why is None else ' ON ITS OWN'}; fired "
                 f"{inc.counts['fired']}, acknowledged {inc.counts['acknowledged']}, fills "
                 f"{inc.counts['fill']} ({self.progress()})")

    async def _paused_pair(self) -> None:
        """`--pause` (issue 12, item 1): watcher A is stopped with SIGSTOP for longer than
        its lease lives, watcher B starts and takes the lease over, A gets SIGCONT. A must
        stop on its own, having sent nothing after B took over (the lease audit checks the
        exchange's record); then B lives a few seconds and is killed."""
        first = await self._spawn()
        life = self.lives[-1]
        t0 = time.monotonic()
        if not await first.wait_for("recovered", 30) or await _ended(
                first, self.rng.uniform(0.5, 3)):
            first.kill()
            await self._account(first, "pause (not running)", t0)
            return
        os.kill(first.proc.pid, signal.SIGSTOP)
        life.paused = True
        try:
            await asyncio.sleep(LEASE_STALE_S + 1.5)
            second = await self._spawn()
            t1 = time.monotonic()
            # A stopped inside a commit holds SQLite's write lock: B's start then waits for
            # it (`store.locked`) until A resumes, finds its lease expired and stops.
            took = await second.wait_for("recovered", 30, "store.locked")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(first.proc.pid, signal.SIGCONT)
        if took and not second.seen["recovered"].is_set():
            self.soak.pauses_locked += 1
            took = await second.wait_for("recovered", 30)
        stopped = await _ended(first, PAUSE_GRACE_S)
        first.kill()
        await self._account(first, "paused, lease taken", t0)
        if life.lost_its_lease() and ending(life) is None:
            self.soak.pauses["stopped on losing its lease"] += 1
        elif not stopped:
            self.soak.pauses["ran on after losing its lease (SIGKILL)"] += 1
        else:
            self.soak.pauses["ended otherwise (counted above)"] += 1
        if took:
            await _ended(second, self.rng.uniform(2, 8))
        second.kill()
        await self._account(second, "took over a paused one" if took
                            else "took over (no recovered line)", t1)

    async def _long_life(self) -> None:
        """A watcher that lives 6 to 20 s (faults play out inside it), then SIGKILL."""
        inc = await self._spawn()
        t0 = time.monotonic()
        how = "long life"
        if await inc.wait_for("recovered", 30):
            left = self.seconds - (time.monotonic() - self.started)
            await asyncio.wait([asyncio.ensure_future(inc.eof.wait())],
                               timeout=max(min(self.rng.uniform(6, 20), left), 0.5))
        else:
            how = "long life (no recovered line)"
        inc.kill()
        await self._account(inc, how, t0)

    async def before_final(self) -> None:
        self.finishing = True  # the last watcher takes over without a new standby behind it
        if self.injecting is not None:
            await self.injector.stop()
            await self.injecting
        self.log(f"  faults off after {time.monotonic() - self.started:.1f} s: "
                 f"{dict(sorted(self.injector.counts.items()))}")

    # ---- the audit

    async def audit(self) -> Audit:
        out = Audit()
        checked = self.result.checked
        for mine, theirs in (("duplicate orders", "duplicates"), ("lost firings", "lost"),
                             ("untracked orders", "untracked"), ("stuck firings", "stuck")):
            for message in checked.problems.get(theirs, ()):
                out.add(mine, message)
        for message in self.result.self_exits:
            out.add(SELF_EXITS, message)
        # The last watcher, stopped with SIGTERM by `_final` (with standbys: the last to take
        # the lease; the standbys stopped at the end are judged in `_stop_pool`).
        final = next(life for life in reversed(self.lives) if life.inc is not None)
        final.final, final.code, final.ended_ms, final.inc = True, self.result.final_exit, \
            _now_ms(), None
        final.read()
        why = ending(final)
        if why is not None:
            out.add(SELF_EXITS, why)
        store = read_store(self.db_url)
        exchange = await self.sandbox.record()
        counted = {life.n for life in self.lives if ending(life) is not None}
        out.figures["stop rows in the store"] = audit_store_stops(
            self.lives, store.events, out.add, counted)
        out.figures.update(audit_lease(self.lives, exchange.orders.values(), store.prefix,
                                       self.injector.skews, out.add))
        history = {s: await self.sandbox.admin("GET", f"history?symbol={s}")
                   for s in ALLOWED_SYMBOLS}
        self._audit_data(store, history, out)
        self._audit_limits(store, exchange.orders, history, out)
        self._audit_secrets(out)
        out.figures.update(checked.figures)
        if self.standby:
            out.figures.update(_takeovers(self.lives))
        return out

    def _audit_data(self, store: StoreRecord, history: dict[str, Any], out: Audit) -> None:
        rows = {s: h["rows"] for s, h in history.items()}
        seqs = {s: [int(r[0]) for r in rs] for s, rs in rows.items()}
        checked = unchecked = 0
        worst_ms = 0
        for firing in store.firings:
            inputs = firing.inputs or {}
            books = inputs.get("books") or {}
            at = inputs.get("at")
            if not books or not at:
                continue
            at_ms = int(datetime.fromisoformat(at).timestamp() * 1000)
            values = inputs.get("values") or {}
            name = f"{firing.identity}#{firing.number}"
            for symbol, book in books.items():
                if symbol not in seqs or not any(
                        f"{symbol} {f}" in values for f in BOOK_FIELDS):
                    continue  # the decision read nothing of this book (a fill price, say)
                if book.get("state") != "live":
                    out.add("fires on stale data",
                            f"{name}: the {symbol} book was {book.get('state')}")
                    continue
                seq = int(book["sequence"])
                known = seqs[symbol]
                if not known or seq < known[0]:
                    unchecked += 1  # older than the history kept
                    continue
                i = bisect.bisect_left(known, seq)
                if i >= len(known) or known[i] != seq:
                    out.add("fires on data the exchange never showed",
                            f"{name}: the {symbol} book never had sequence {seq}")
                    continue
                checked += 1
                row = rows[symbol][i]
                for field_, column in (("bid", 2), ("bid_size", 3), ("ask", 4),
                                       ("ask_size", 5)):
                    seen = values.get(f"{symbol} {field_}")
                    if seen is not None and row[column] and Decimal(seen) != Decimal(row[column]):
                        out.add("fires on data the exchange never showed",
                                f"{name}: {symbol} {field_} {seen}, the exchange's at "
                                f"sequence {seq} was {row[column]}")
                if i + 1 < len(known):
                    behind = at_ms - int(rows[symbol][i + 1][1])
                    worst_ms = max(worst_ms, behind)
                    if behind > STALE_BOUND_MS:
                        out.add("fires on stale data",
                                f"{name}: decided on {symbol} sequence {seq}, which the "
                                f"exchange had moved past {behind} ms earlier (bound "
                                f"{STALE_BOUND_MS} ms)")
        out.figures["book inputs checked"] = checked
        out.figures["book inputs older than the history"] = unchecked
        out.figures["most a firing's book was behind (ms)"] = worst_ms

    def _audit_limits(self, store: StoreRecord, orders: dict[str, dict[str, Any]],
                      history: dict[str, Any], out: Audit) -> None:
        prefix = store.prefix
        rule_of = {f.client_oid: f.identity for f in store.firings if f.client_oid}
        by_rule: dict[str, Decimal] = {}
        capped = {"capped_a", "capped_b", "capped_c"}
        for order in orders.values():
            oid = str(order.get("clientOid") or "")
            if not oid.startswith(prefix):
                continue
            symbol = order.get("symbol")
            if symbol not in ALLOWED_SYMBOLS:
                out.add("limit breaches", f"order {oid} on {symbol}, not in allowed_symbols")
            value, cap = _value(order)
            if value > cap:
                out.add("limit breaches", f"order {oid} worth {value} USDT, above "
                        f"max_order_notional {MAX_ORDER_NOTIONAL}")
            rule = rule_of.get(oid, "")
            if rule in capped:  # a named rule's identity is its name
                by_rule[rule] = by_rule.get(rule, Decimal(0)) + value
        for rule, total in sorted(by_rule.items()):
            if total > MAX_RULE_NOTIONAL:
                out.add("limit breaches", f"the orders of {rule} total {total} USDT, above "
                        f"max_rule_notional {MAX_RULE_NOTIONAL}")
        peak = max(int(h["open_orders_peak"]) for h in history.values())
        if peak > MAX_OPEN_ORDERS:
            out.add("limit breaches", f"{peak} orders were open at one moment, above "
                    f"max_open_orders {MAX_OPEN_ORDERS}")
        out.figures["capped rules' totals (USDT)"] = {r: str(t) for r, t in by_rule.items()}
        out.figures["open orders at the peak"] = peak
        out.figures["blocked firings"] = sum(1 for f in store.firings if f.status == "blocked")

    def _audit_secrets(self, out: Audit) -> None:
        needles = {"the API secret": self.secret, "the passphrase": self.passphrase,
                   "the signed passphrase": _sign(self.secret, self.passphrase)}
        scanned = 0
        if Path(self.db).exists() or self.pg_url is not None:
            # Every row of every table, as text (for PostgreSQL, the only way to read it;
            # for SQLite, on top of the raw file bytes below).
            engine = create_engine(self.db_url)
            try:
                meta = MetaData()
                meta.reflect(engine)
                with engine.connect() as conn:
                    for table in meta.sorted_tables:
                        dump = "\n".join(repr(tuple(row)) for row in conn.execute(select(table)))
                        scanned += len(dump)
                        for what, needle in needles.items():
                            if needle in dump:
                                out.add("secrets found", f"{what} is in the store's table "
                                        f"{table.name}")
            finally:
                engine.dispose()
        for path in sorted(self.workdir.iterdir()):
            if path.name == "sandbox.json" or not path.is_file():
                continue  # the exchange's own key file: where the secret belongs
            data = path.read_bytes()
            scanned += len(data)
            for what, needle in needles.items():
                hits = data.count(needle.encode())
                if hits:
                    out.add("secrets found", f"{what} is in {path.name} ({hits} times)")
        out.figures["bytes scanned for secrets"] = scanned

    async def after_final(self) -> None:
        await self._stop_pool()
        self.soak.audit = await self.audit()

    def _schema(self, statement: str) -> None:
        """Run one schema statement on PostgreSQL (`--pg`); nothing on SQLite."""
        if self.pg_url is None:
            return
        engine = create_engine(self.pg_url)
        try:
            with engine.begin() as conn:
                conn.execute(text(statement))
        finally:
            engine.dispose()

    async def run_soak(self) -> SoakResult:
        started = time.monotonic()
        self._schema(f"CREATE SCHEMA {self.schema}")
        if self.pg_url is not None:
            self.log(f"  store: PostgreSQL schema {self.schema}")
        try:
            result = await self.run()
        finally:
            self._schema(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        self.soak.faults = self.injector.counts
        self.soak.kills = result.kills
        self.soak.kill_modes = result.kill_modes
        self.soak.watchers = self.n
        self.soak.caught_up_s = result.converged_s
        self.soak.elapsed_s = time.monotonic() - started
        return self.soak


def _takeovers(lives: list[Life]) -> dict[str, Any]:
    """`--standby N`: the standbys' `watcher.took_over` lines: how many, and the time from
    the old lease's last heartbeat to the new watcher being ready (p50, max)."""
    took = []
    for life in lives:
        if not life.log.exists():
            continue
        for line in life.log.read_text(encoding="utf-8", errors="replace").splitlines():
            if '"watcher.took_over"' in line:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    took.append(float(json.loads(line)["since_heartbeat_s"]))
    took.sort()
    return {"takeovers by a standby": len(took),
            "takeover from the last heartbeat, p50 / max (s)":
                [took[len(took) // 2], took[-1]] if took else None}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _ended(inc: Incarnation, seconds: float) -> bool:
    """Wait up to `seconds` for the watcher's output to end; True if it did."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(inc.eof.wait(), seconds)
    return inc.eof.is_set()


def _value(order: dict[str, Any]) -> tuple[Decimal, Decimal]:
    """An exchange order's quote value and the cap it is held to."""
    def dec(key: str) -> Decimal:
        raw = order.get(key)
        return Decimal(str(raw)) if raw not in (None, "") else Decimal(0)

    if order.get("type") == "limit":
        return dec("price") * dec("size"), MAX_ORDER_NOTIONAL
    if dec("funds") > 0:
        return dec("funds"), MAX_ORDER_NOTIONAL
    return dec("dealFunds"), MAX_ORDER_NOTIONAL * WALK_TOLERANCE


def run_soak(workdir: Path, *, seconds: float, seed: int, log: Callable[[str], None] = print,
             pg_url: str | None = None, pause: bool = False, standby: int = 0) -> SoakResult:
    workdir.mkdir(parents=True, exist_ok=True)
    session = SoakSession(workdir, seconds=seconds, seed=seed, log=log, pg_url=pg_url,
                          pause=pause, standby=standby)
    return asyncio.run(session.run_soak())


def report(result: SoakResult) -> str:
    counts = result.counts()
    faults = result.faults
    width = max(len(k) for k in (*counts, *(n for n, _ in FAULTS)))
    lines = [f"seed {result.seed}, {result.seconds:g} s of faults, {result.watchers} watchers, "
             f"{result.kills} killed with SIGKILL, total {result.elapsed_s:.1f} s; the last "
             f"watcher caught up in {result.caught_up_s} s", "",
             f"{'fault injected':<{width}}  count"]
    lines += [f"{name:<{width}}  {faults.get(name, 0)}" for name, _ in FAULTS]
    lines += [f"{'SIGKILL of the watcher':<{width}}  {result.kills} (by moment: "
              f"{dict(sorted(result.kill_modes.items()))})"]
    if result.pauses:
        lines.append(f"{'SIGSTOP past the lease':<{width}}  {sum(result.pauses.values())} "
                     f"({dict(sorted(result.pauses.items()))}"
                     + (f"; {result.pauses_locked} stopped holding the store's write lock, "
                        "waited for by the next start" if result.pauses_locked else "")
                     + ")")
    lines += ["",
              f"{'audit (each must be 0)':<{width}}  count"]
    lines += [f"{kind:<{width}}  {n}" for kind, n in counts.items()]
    f = result.audit.figures
    lines += ["", "figures: " + json.dumps({k: f[k] for k in (
        "firings", "firings with an order", "firing statuses", "exchange orders",
        "exchange fills", "store fills", "adopted", "blocked firings", "book inputs checked",
        "book inputs older than the history", "most a firing's book was behind (ms)",
        "open orders at the peak", "capped rules' totals (USDT)", "bytes scanned for secrets",
        "orders checked against the lease", "orders no watcher's output names",
        "watchers that took the lease", "least time from an order to the next lease taken (ms)",
        "stop rows in the store", "takeovers by a standby",
        "takeover from the last heartbeat, p50 / max (s)")
        if k in f}, default=str)]
    for kind in AUDIT_KINDS:
        for message in result.audit.problems.get(kind, ())[:20]:
            lines.append(f"  {kind}: {message}")
    return "\n".join(lines)
