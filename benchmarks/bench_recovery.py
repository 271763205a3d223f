"""Recovery after a crash: a real watcher's start-up on a store with 100,000 past orders and 100
open ones, against a sandbox whose own record holds the same orders.

Seeded in bulk, outside the timing:

* the store: a SQLite file (WAL, synchronous=FULL, as the store sets it), migrated by
  `Store.migrate`; the 100 rules' versions by `Store.load_rules` and their states by
  `Store.save_states` (each rule `repeat every 1m`, 1,001 firings so far); then, with SQLAlchemy
  Core bulk inserts into the store's own tables, per past order its firing (acknowledged,
  with its inputs and intent as the watcher writes them) and its order row (half filled with
  a fill row, half canceled); per open order its firing and order row; the lease of the
  watcher that crashed (alive, its heartbeat a minute old) and the venue it traded on.
  ClientOids are the store's own `client_oid(engine id, rule, firing)`. The events table is
  left empty unless `--events` (recovery never reads it): then five rows a past order (fired,
  firing.sent, firing.acknowledged, order.open, order.filled | order.canceled), which adds
  about 20 s of seeding.
* the sandbox (in-process, `rules_engine.sandbox.testing.serve`, feed not running): the 100
  open orders placed through its matching engine (resting limit buys far under the market,
  their funds held), and the 100,000 done ones written straight into its engine's state (the
  same clientOids and exchange ids as the store, done within its retention), so its REST
  endpoints serve them as they serve any order.

Timed: `rules_engine.runtime._run.run_watcher`, as `rules-engine run --exchange-url URL --db
URL` starts it (REST client, server time, the venue's symbols, the rule file compiled, the
store, `Watcher.run`), from the call to the watcher's `recovered` event; the watcher is then
stopped. Recovery reads the firings not final, the open orders (each looked up on the
exchange), the risk limits' usage (every order and firing), every clientOid the store knows,
and on the exchange every page of active orders and the ten most recent pages of done HF
orders of each symbol (operations.md, "Recovery"). The run checks that the watcher recovered
the 100 open orders, adopted nothing and fired nothing.

Baselines in the same run: the same shape with no past orders (100 open ones only), and with
1,000 past orders. Where the time goes: the watcher's REST calls (awaited time, the sandbox's
work included: it runs in this process) and the store's methods, timed by wrappers.

Run: `.venv/bin/python benchmarks/bench_recovery.py [--past 100000] [--open 100] [--json]`
(about 60 s). Figures are printed; nothing asserts on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, insert

from rules_engine.adapters.kucoin._venue import KucoinVenue
from rules_engine.compiler import CompiledRule
from rules_engine.engine import dump_state, initial_state
from rules_engine.runtime._config import WatcherConfig
from rules_engine.runtime._reload import RuleFiles
from rules_engine.runtime._run import run_watcher
from rules_engine.runtime._watcher import Watcher
from rules_engine.sandbox.config import SandboxConfig
from rules_engine.sandbox.engine import Order as ExchangeOrder
from rules_engine.sandbox.engine import OrderRequest
from rules_engine.sandbox.state import SandboxState, build_state
from rules_engine.sandbox.testing import serve
from rules_engine.store import Store, client_oid
from rules_engine.store._repo import StateRow
from rules_engine.store._schema import Event, Fill, Firing, Lease, Meta, Order

D = Decimal
ZERO = D(0)
RULES = 100
PAST = 100_000
OPEN = 100
SYMBOLS = {"BTC-USDT": (D("1000"), D("0.1"), D("0.001")),  # level, step, size
           "ETH-USDT": (D("100"), D("0.01"), D("0.01"))}
CHUNK = 20_000  # rows a bulk insert


def _table(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


def rules_text() -> str:
    """100 rules (half on each symbol) that never fire here: a bid far under the market."""
    lines = []
    names = list(SYMBOLS)
    for k in range(RULES):
        symbol = names[k % len(names)]
        level, step, size = SYMBOLS[symbol]
        price = level + step * k
        lines.append(f"rule recover_{k:03d} on {symbol}:\n    when bid < {price}\n"
                     f"    place limit buy {size} at {price}\n    repeat every 1m\n")
    return "\n".join(lines)


class _Spec:
    """One rule's order, as its text says (`at P`, a fixed size), and what its firings record:
    the intent the watcher writes (the deadline apart) and the input that fired it."""

    def __init__(self, rule: CompiledRule) -> None:
        assert rule.order is not None
        self.identity = rule.identity
        self.symbol = rule.order.symbol
        level, step, self.size = SYMBOLS[self.symbol]
        self.price = level + step * int(rule.identity.rsplit("_", 1)[1])
        self.value = self.price * self.size
        self.fee = self.value * D("0.001")
        self.values = {f"{self.symbol} bid": format(self.price - step, "f")}
        self.intent = {"symbol": self.symbol, "side": "buy", "type": "limit",
                       "size": format(self.size, "f"), "funds": None,
                       "price": format(self.price, "f"), "stop_price": None, "trail": None,
                       "family": "hf", "deadline": None, "notional": format(self.value, "f")}


def seed(state: SandboxState, db: str, rule_file: Path, past: int, open_count: int, *,
         events: bool = False) -> dict[str, float]:
    """The store and the sandbox's record, in bulk (see the module's docstring); returns
    how long each part took and how many store rows were written."""
    timings: dict[str, float] = {}
    began = time.perf_counter()
    rules, texts = RuleFiles([rule_file], state.symbols).load()
    assert len(rules) == RULES
    per_rule_past = past // RULES
    assert per_rule_past * RULES == past and open_count <= RULES
    store = Store(db)
    store.migrate()
    engine_id = store.engine_id()
    now_ms = state.now_ms()
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    loaded = store.load_rules(
        [(r.identity, r.fingerprint, r.canonical, r.path, texts.get(r.identity)) for r in rules],
        now)
    states = []
    for position, rule in enumerate(rules):
        firings = per_rule_past + (1 if position < open_count else 0)
        st = initial_state(rule, now)._replace(firings=firings)
        states.append(StateRow(rule.identity, loaded[rule.identity][0], st.status, firings,
                               dump_state(st), None))
    store.save_states(states, now, [])
    timings["rules"] = time.perf_counter() - began

    specs = [_Spec(rule) for rule in rules]
    engine = state.engine
    firing_rows: list[dict[str, Any]] = []
    order_rows: list[dict[str, Any]] = []
    fill_rows: list[dict[str, Any]] = []
    event_rows: list[dict[str, Any]] = []
    window = timedelta(seconds=15)

    def add(spec: _Spec, number: int, at_ms: int, status: str, exchange_id: str) -> None:
        """The store's rows of one order: its firing, the order, its fill, its events."""
        n = len(firing_rows) + 1
        at = datetime.fromtimestamp(at_ms / 1000, UTC)
        oid = client_oid(engine_id, spec.identity, number)
        intent = {**spec.intent, "deadline": (at + window).isoformat()}
        inputs = {"values": spec.values, "books": {}, "at": at.isoformat()}
        firing_rows.append({"id": n, "identity": spec.identity, "number": number,
                            "version": 1, "client_oid": oid, "inputs": inputs,
                            "intent": intent, "status": "acknowledged", "created_at": at})
        filled = status == "filled"
        order_rows.append({
            "client_oid": oid, "firing_id": n, "exchange_id": exchange_id,
            "symbol": spec.symbol, "side": "buy", "order_type": "limit", "price": spec.price,
            "size": spec.size, "funds": None, "status": status,
            "filled_size": spec.size if filled else ZERO,
            "filled_value": spec.value if filled else ZERO, "family": "hf",
            "deadline": at + window, "updated_at": at})
        if filled:
            fill_rows.append({"trade_id": f"t{n}", "client_oid": oid, "price": spec.price,
                              "size": spec.size, "fee": spec.fee, "fee_currency": "USDT",
                              "time": at})
        if events:
            life = [("fired", spec.identity, {"number": number, "version": 1,
                                              "inputs": inputs, "intent": intent}),
                    ("firing.sent", spec.identity, {}),
                    ("firing.acknowledged", spec.identity, {"order_id": exchange_id}),
                    ("order.open", None, {})]
            if status != "open":
                life.append((f"order.{status}", None, {}))
            event_rows.extend({"at": at, "kind": kind, "identity": who, "client_oid": oid,
                               "payload": payload} for kind, who, payload in life)

    # The exchange's record (the store's orders carry its ids): the past orders written into
    # its state, oldest first, one every half second up to just before now; rule k % 100,
    # its firing k // 100 + 1.
    t0 = time.perf_counter()
    total = past + open_count
    for k in range(past):
        spec = specs[k % RULES]
        number = k // RULES + 1
        at_ms = now_ms - (total - k) * 500
        status = "filled" if k % 2 == 0 else "canceled"
        oid = client_oid(engine_id, spec.identity, number)
        req = OrderRequest(symbol=spec.symbol, side="buy", type="limit", client_oid=oid,
                           price=spec.price, size=spec.size)
        order = ExchangeOrder(engine._next_id(), req, at_ms, at_ms + 200, status="done",
                              done_reason=status)
        if status == "filled":
            order.deal_size, order.deal_funds, order.fee = spec.size, spec.value, spec.fee
        else:
            order.canceled_size = spec.size
        engine.orders[order.id] = order
        engine.by_client_oid[oid] = order.id
        add(spec, number, at_ms, status, order.id)
    # The open ones go through the matching engine: resting, their funds held.
    for spec in specs[:open_count]:
        number = per_rule_past + 1
        req = OrderRequest(symbol=spec.symbol, side="buy", type="limit",
                           client_oid=client_oid(engine_id, spec.identity, number),
                           price=spec.price, size=spec.size)
        placed, _ = engine.place(req, state.now_ms())
        assert isinstance(placed, ExchangeOrder) and placed.active, placed
        add(spec, number, placed.created_at, "open", placed.id)
    timings["exchange_and_rows"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    with store.engine.begin() as connection:
        for model, batch in ((Firing, firing_rows), (Order, order_rows), (Fill, fill_rows),
                             (Event, event_rows)):
            for start in range(0, len(batch), CHUNK):
                connection.execute(insert(_table(model)), batch[start:start + CHUNK])
        # The crashed watcher's lease (alive, heartbeat a minute old) and the venue it traded on.
        connection.execute(insert(_table(Lease)), {
            "id": 1, "owner": "crashed-host:1:00000000", "alive": True,
            "heartbeat": now - timedelta(minutes=1)})
        connection.execute(insert(_table(Meta)), {
            "key": "venue_instance",
            "value": f"sandbox {state.instance_id} uid {state.config.uid}"})
    store.close()
    timings["store_insert"] = time.perf_counter() - t0
    timings["rows"] = len(firing_rows) + len(order_rows) + len(fill_rows) + len(event_rows)
    timings["total"] = time.perf_counter() - began
    return timings


class Timed:
    """Wrappers adding up the time of each call (async or not) under a name."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def _add(self, name: str, seconds: float) -> None:
        self.spent[name] = self.spent.get(name, 0.0) + seconds
        self.calls[name] = self.calls.get(name, 0) + 1

    def wrap(self, owner: object, attr: str, name: str) -> None:
        fn = getattr(owner, attr)
        if asyncio.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    self._add(name, time.perf_counter() - t0)
            setattr(owner, attr, timed_async)
        else:
            @functools.wraps(fn)
            def timed(*args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    self._add(name, time.perf_counter() - t0)
            setattr(owner, attr, timed)


STORE_METHODS = ("migrate", "acquire_lease", "engine_id", "check_venue", "load_rules",
                 "save_states", "open_firings", "orders", "firings_by_id", "exposure_rows",
                 "order_oids", "settle", "add_fill", "adopt_order", "log")


async def recover_once(past: int, open_count: int, folder: Path, *, events: bool = False
                       ) -> dict[str, Any]:
    """Seed a store and a sandbox, then time a watcher's start-up to `recovered`."""
    config = SandboxConfig.model_validate({
        "quotas": {"spot": 10**9, "public": 10**9, "management": 10**9},
        "max_open_orders_per_symbol": 10**6})
    state = build_state(config)
    state.feed_step(force=True)
    rule_file = folder / "recover.rules"
    rule_file.write_text(rules_text())
    db = f"sqlite:///{folder / f'recover-{past}.sqlite'}"
    seeding = seed(state, db, rule_file, past, open_count, events=events)
    marks: dict[str, float] = {}
    counts = {"adopted": 0, "fired": 0}
    timed = Timed()
    stop = asyncio.Event()
    recovered: dict[str, Any] = {}
    at_recovered: dict[str, tuple[float, int]] = {}

    def started(watcher: Watcher) -> None:
        marks["built"] = time.perf_counter()
        for name in STORE_METHODS:
            timed.wrap(watcher.store, name, f"store.{name}")
        venue = watcher.ctx.venue
        assert isinstance(venue, KucoinVenue)
        timed.wrap(venue.rest, "call", "rest")  # every REST call of the venue's client
        timed.wrap(watcher.recovery, "_adopt_unknown", "adopt_unknown")
        timed.wrap(watcher.orders, "_look_up", "poll_open_orders")
        timed.wrap(watcher.recovery, "load_exposure", "load_exposure")
        recover = watcher.recovery.recover

        async def timed_recover() -> None:
            marks["recover"] = time.perf_counter()
            await recover()

        watcher.recovery.recover = timed_recover  # type: ignore[method-assign]

        def emit(kind: str, data: dict[str, Any]) -> None:
            if kind == "recovered":
                marks["recovered"] = time.perf_counter()
                recovered.update(data)
                at_recovered.update({k: (v, timed.calls[k]) for k, v in timed.spent.items()})
                asyncio.get_running_loop().create_task(settle_then_stop(watcher))
            elif kind == "order.adopted":
                counts["adopted"] += 1
            elif kind == "fired":
                counts["fired"] += 1

        watcher.ctx.emit = emit

    async def settle_then_stop(watcher: Watcher) -> None:
        """Stop once the start-up is over and the private feed is live (so no REST polling
        job is left running into the shutdown), or after 10 s."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (watcher.ctx.ready.is_set()
                                                   and watcher.jobs.private_live):
            await asyncio.sleep(0.01)
        stop.set()

    watcher_config = WatcherConfig(exchange_url=None, db=db, view="off", log_format="json")
    async with serve(state=state, run_feed=False) as box:
        watcher_config = watcher_config.model_copy(update={"exchange_url": box.url})
        marks["call"] = time.perf_counter()
        await asyncio.wait_for(run_watcher(watcher_config, [rule_file], stop, started), 300)
    assert "recovered" in marks, "the watcher stopped before it recovered"
    assert recovered.get("open_orders") == open_count, recovered
    assert recovered.get("pending") == 0, recovered
    assert counts == {"adopted": 0, "fired": 0}, counts
    store = Store(db)
    assert not store.events("rule.new_version"), "the seeded rule versions were not the ones run"
    store.close()
    total = marks["recovered"] - marks["call"]
    rest_s, rest_calls = at_recovered.get("rest", (0.0, 0))
    return {
        "past": past, "open": open_count, "seconds": total,
        "before_watcher_s": marks["built"] - marks["call"],
        "start_before_recover_s": marks["recover"] - marks["built"],
        "recover_s": marks["recovered"] - marks["recover"],
        "rest_s": rest_s, "rest_calls": rest_calls,
        "parts": {k: round(v, 4) for k, (v, _) in sorted(at_recovered.items(),
                                                         key=lambda kv: -kv[1][0])},
        "calls": {k: n for k, (_, n) in at_recovered.items()},
        "seeding": seeding, "recovered": recovered,
        "exchange_orders": len(state.engine.orders),
    }


async def measure(past: int = PAST, open_count: int = OPEN,
                  baselines: tuple[int, ...] = (0, 1_000), *, events: bool = False,
                  say: Callable[[str], None] = print) -> dict[str, Any]:
    """Recovery with `past` past orders, and with each of `baselines` past orders (the
    first is the baseline of the ratio); `events`: seed the event rows too."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        for n in dict.fromkeys((*baselines, past)):  # each size once
            run = await recover_once(n, open_count, Path(folder), events=events)
            say(_line(run))
            out[str(n)] = run
    main_run, base = out[str(past)], out[str(baselines[0])] if baselines else None
    return {"runs": out, "seconds": main_run["seconds"],
            "baseline_seconds": base["seconds"] if base else None,
            "ratio": main_run["seconds"] / base["seconds"] if base else None,
            "past": past, "open": open_count, "baseline_past": baselines[0] if baselines else None}


def _line(run: dict[str, Any]) -> str:
    parts = ", ".join(f"{k} {v:.2f} s" for k, v in list(run["parts"].items())[:8])
    seeding = run["seeding"]
    return (f"  {run['past']:>7,} past + {run['open']} open orders: start -> recovered "
            f"{run['seconds']:.2f} s (before the watcher {run['before_watcher_s']:.2f} s, "
            f"its start before recovery {run['start_before_recover_s']:.2f} s, Recovery.recover "
            f"{run['recover_s']:.2f} s; {run['rest_calls']} REST calls "
            f"{run['rest_s']:.2f} s)\n    where: {parts}\n    seeded {seeding['rows']:,} store "
            f"rows and {run['exchange_orders']:,} exchange orders in {seeding['total']:.1f} s")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--past", type=int, default=PAST)
    parser.add_argument("--open", type=int, default=OPEN)
    parser.add_argument("--events", action="store_true",
                        help="also seed the events table (five rows a past order)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    print(f"recovery benchmark: {RULES} rules, {args.open} open orders, Python "
          f"{sys.version.split()[0]}")
    result = await measure(args.past, args.open, events=args.events)
    print(f"  ratio {args.past:,} past / none: {result['ratio']:.2f}x")
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "runs"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
