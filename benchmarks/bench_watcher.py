"""Watcher latency and memory (the watcher issue's figures), through the watcher's own code.

1. Decision latency, WITHOUT the durable commit: a raw WebSocket frame (the text KuCoin sends,
   decoded with orjson as `KucoinWs.on_text` does), the public stream's message handler
   (`KucoinFeed.stream`: `parse_ws_message`, then `Feeds.on_event`), the book/ticker update,
   `MarketState.refresh`, `Firing.apply` (`RuleIndex.affected`, `step`), `Firing.fire`
   (`resolve_order`, risk limits, the KuCoin body, the fenced commit), then the spawned
   `OrderManager.send` task, which checks the lease's fence, serialises the body as
   `KucoinRest.call` does and signs it with the client's own `Signer` and server time. The
   time stops when the signed request exists. `Store.fire` is overridden to record the moment
   and return without a transaction (the only override on the decision path besides
   `OrderManager.send`, which records instead of POSTing; `Context.spawn` records when the
   send is spawned, one clock read). A real `Watcher` with 10,000 rules over 100 symbols, its
   lease acquired, its states loaded by its own `RuleSet.load` into a SQLite file, its books
   made live from a level2 snapshot, the feed live. Each firing frame crosses exactly one
   rule's threshold (checked: one signed order per firing frame, the expected rule, none
   after the other frames). Baselines in the same run: the same frames' shape moving the
   value between two thresholds (decode + handler, nothing fires), and `orjson.loads` alone.
   Goal: p50 < 25 us, p99 < 100 us. Then where the time goes: the same run on a second
   watcher with a timer wrapped around each of the parts' functions on the path (mean a
   firing frame, own and total; the bookkeeping that runs after the send is spawned, and so
   still before the send task can run, is marked), and the collector's pauses.
2. The full path on loopback, WITH the durable commit: an in-process sandbox (real clock, feed
   driven by the benchmark through an `ExternalFeed`), a real `Watcher` started as
   `rules_engine/runtime/_run.py` starts it (demo credentials, server time synced, symbols read
   from the venue, rules compiled against them, a SQLite file in a temp dir: WAL,
   synchronous=FULL as the store sets it). Each measurement pushes one book change (a lower
   ask: a level2 message) or one trade print (a ticker message) and steps the feed; the time
   runs from the sandbox starting to write the frame on the watcher's WebSocket (a wrapper of
   the server side `WebSocketResponse.send_str`, in this process, same clock) to the sandbox's
   REST layer having read the order's body (a middleware put in front of its handlers). Goal:
   p50 < 1.5 ms (issue 12; 2.5 ms before), p99 < 15 ms. The path is split at the watcher's
   `Store.fire` call (timed by wrapping the store object's method). Baselines in the same
   run: a bare aiohttp client on the same sandbox that answers each level2 frame at once with
   a signed order (the loopback floor: WebSocket out + HTTP in, no decision, no commit), and
   `Store.fire` alone on the same file, synchronous=FULL against a second store on that file
   with synchronous=OFF (what the power-loss durability costs), back to back and after the
   same idle pause as the loopback run leaves between two firings, with the SQL statements a
   firing sends.
3. Memory of a watcher with 10,000 rules (compiled rules, states, index, market state with live
   books), with tracemalloc. Goal: < 200 MB.

Rule mix (10,000 rules, 100 USDT symbols of the shipped snapshot, 100 a symbol, thresholds 10
price increments apart, every order a passive limit buy so that no order moves the market):
half on the level2 book's `ask` (falling asks fire them), half on the ticker's `last`
(falling trade prints fire them); of each half, 40% one-line `< L` thresholds placing `at bid`,
20% two-value conditions (`ask < L and bid > F`, `last < L and ask > F`; `F` far below)
placing `at ask - 1% post-only` / `at last - 2%`, 20% `crosses below L` placing at L - 3%
(written as a price), 20% one-line `<= L` placing at L - 3% `hidden`. Every rule fires once.

Run: `.venv/bin/python benchmarks/bench_watcher.py [--json] [--loopback 400] [--profile]`
(about 65 s; `--profile` adds cProfile listings, about 10 s). Figures are printed; nothing
asserts on timing (the run asserts only that each change fired exactly the expected rule).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import gc
import io
import json
import pstats
import random
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from sqlalchemy import event

from rules_engine.adapters.kucoin._book import Level2Book
from rules_engine.adapters.kucoin._market import KucoinMarket
from rules_engine.adapters.kucoin._rest import KucoinRest
from rules_engine.adapters.kucoin._signing import Credentials, Secret, Signer
from rules_engine.adapters.kucoin._venue import KucoinVenue
from rules_engine.compiler import CompiledRule, Compiler, shipped_symbols
from rules_engine.core.symbols import SymbolTable
from rules_engine.dsl import SourceFile
from rules_engine.engine import dump_state, initial_state
from rules_engine.runtime._config import WatcherConfig
from rules_engine.runtime._orders import Tracked
from rules_engine.runtime._watcher import Watcher, utc_now
from rules_engine.sandbox.config import DEMO_KEY, DEMO_PASSPHRASE, DEMO_SECRET, SandboxConfig
from rules_engine.sandbox.feeds import ExternalFeed
from rules_engine.sandbox.server import create_app
from rules_engine.sandbox.state import build_state
from rules_engine.store import Store
from rules_engine.store._repo import StateRow, client_oid, engine_prefix

D = Decimal
SYMBOLS = 100
PER_KIND = 50  # rules a symbol on `ask`, and as many on `last`
RULES = SYMBOLS * PER_KIND * 2
GAP = 10  # price increments between two thresholds of one value
BID_BELOW = 2000  # the best bid sits this many increments under the start price
BOOK_LEVELS = 20
SEQ0 = 1_000_000
AFTER = "after the spawn: "  # the attribution's label of bookkeeping run after the send's spawn
DEMO = Credentials(DEMO_KEY, Secret(DEMO_SECRET), Secret(DEMO_PASSPHRASE), "2")


# ==================================================================== the market and the rules


@dataclass
class Sym:
    symbol: str
    inc: Decimal
    price: Decimal  # start price: best ask and last
    size: Decimal  # order size (passes baseMinSize and minFunds at every price used)
    floor: Decimal  # far below every price the run shows
    rules: dict[tuple[str, int], int] = field(default_factory=dict)  # (kind, k) -> rule index

    def level(self, k: int) -> Decimal:
        """Threshold k (1..PER_KIND) of either value: GAP increments a step under the start."""
        return self.price - self.inc * GAP * k

    def bids(self) -> list[tuple[Decimal, Decimal]]:
        top = self.price - self.inc * BID_BELOW
        return [(top - self.inc * j, self.size * 50) for j in range(BOOK_LEVELS)]

    def asks(self) -> list[tuple[Decimal, Decimal]]:
        return [(self.price + self.inc * j, self.size * 50) for j in range(BOOK_LEVELS)]


def plan(table: SymbolTable, seed: int = 3) -> list[Sym]:
    rng = random.Random(seed)
    usdt = sorted(s for s, i in table.items() if i.quote_currency == "USDT" and i.enable_trading)
    out = []
    for symbol in usdt[:SYMBOLS]:
        info = table[symbol]
        price = info.price_increment * rng.randint(100_000, 150_000)
        lowest = price * D("0.9")
        need = max(D(2), info.min_funds or D(0), info.quote_min_size) / lowest  # >= 2 USDT
        size = max(info.base_min_size * 10,
                   (need / info.base_increment).to_integral_value(ROUND_CEILING)
                   * info.base_increment)
        out.append(Sym(symbol, info.price_increment, price, size,
                       (price * D("0.9")).quantize(info.price_increment)))
    return out


def rules_text(syms: list[Sym]) -> str:
    lines: list[str] = []
    for s in syms:
        for kind in ("ask", "last"):
            for k in range(1, PER_KIND + 1):
                n = len(lines)
                s.rules[(kind, k)] = n
                level = s.level(k)
                q = s.size
                under = (level * D("0.97")).quantize(s.inc, ROUND_DOWN)  # level - 3%
                variant = k % 5
                if variant in (0, 1):
                    lines.append(f"when {s.symbol} {kind} < {level} place limit buy {q} at bid\n")
                elif variant == 2:
                    other = "bid" if kind == "ask" else "ask"
                    price = "ask - 1% post-only" if kind == "ask" else "last - 2%"
                    lines.append(f"rule r{n} on {s.symbol}:\n    when {kind} < {level} and "
                                 f"{other} > {s.floor}\n    place limit buy {q} at {price}\n")
                elif variant == 3:
                    lines.append(f"rule r{n} on {s.symbol}:\n    when {kind} crosses below "
                                 f"{level}\n    place limit buy {q} at {under}\n")
                else:
                    lines.append(f"when {s.symbol} {kind} <= {level} place limit buy {q} at "
                                 f"{under} hidden\n")
    return "".join(lines)


def compile_rules(table: SymbolTable, text: str) -> tuple[CompiledRule, ...]:
    program = Compiler(table).compile([SourceFile("bench.rules", text)])
    assert len(program.rules) == RULES, program.errors[:3]
    return program.rules


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)]


def stats_us(ns: list[int]) -> dict[str, float]:
    if not ns:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "n": 0}
    us = [v / 1000 for v in ns]
    return {"p50": pct(us, 0.5), "p99": pct(us, 0.99), "max": max(us), "n": len(us)}


# ==================================================================== 1. decision latency


class NoCommitStore(Store):
    """`fire` records when it is called and returns: no transaction, nothing committed."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.calls: list[tuple[str, int, str | None]] = []

    def fire(self, identity: str, number: int, *, version: int, inputs: dict[str, Any],
             intent: dict[str, Any] | None, order: dict[str, Any] | None, state: StateRow,
             now: datetime, blocked: str | None = None, **more: Any) -> Any:
        self.calls.append((identity, time.perf_counter_ns(), blocked))
        return None


class SigningWatcher(Watcher):
    """Its `OrderManager._send` (the spawned task of a firing's `Send` command) checks the
    lease's fence as the real one does, then makes the exact request `KucoinVenue.place` ->
    `KucoinOrders.place` -> `KucoinRest.call` would send (body serialised the same way,
    signed by the client's Signer with its server time) and records the moment instead of
    sending it. `on_frame` is the public stream's message handler (`KucoinFeed.stream`:
    parse, then `Feeds.on_event`), what `KucoinWs.on_text` calls with each decoded frame."""

    signed: list[tuple[str, int, int, dict[str, str]]]  # identity, task start, signed, headers

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.signed = []
        self.orders._send = self._sign  # type: ignore[method-assign]
        self.on_frame = self.frame_handler()

    def frame_handler(self) -> Callable[[dict[str, Any]], None]:
        feeds = self.feeds
        return self.ctx.feed.stream(feeds.on_event, feeds.on_bad, feeds.on_state).on_message  # type: ignore[attr-defined,no-any-return]

    async def _sign(self, tracked: Tracked) -> None:
        started = time.perf_counter_ns()
        self.orders.check_fence()
        assert tracked.body is not None and tracked.identity is not None
        path = "/api/v1/hf/orders" if tracked.family == "hf" else "/api/v1/orders"
        raw = json.dumps(tracked.body, separators=(",", ":")).encode()
        venue = self.ctx.venue
        assert isinstance(venue, KucoinVenue)
        signer = venue.rest._signer
        assert signer is not None
        request = signer.sign("POST", path, timestamp_ms=venue.rest.server_ms(), body=raw)
        self.signed.append((tracked.identity, started, time.perf_counter_ns(), request.headers))


def l2_frame(symbol: str, seq: int, price: Decimal, size: Decimal, ms: int) -> str:
    return orjson.dumps({
        "type": "message", "topic": f"/market/level2:{symbol}", "subject": "trade.l2update",
        "data": {"changes": {"asks": [[str(price), str(size), str(seq)]], "bids": []},
                 "sequenceStart": seq, "sequenceEnd": seq, "symbol": symbol, "time": ms},
    }).decode()


def ticker_frame(s: Sym, seq: int, price: Decimal, ask: Decimal, ms: int) -> str:
    bid = s.price - s.inc * BID_BELOW
    return orjson.dumps({
        "type": "message", "topic": f"/market/ticker:{s.symbol}", "subject": "trade.ticker",
        "data": {"sequence": str(seq), "price": str(price), "size": str(s.size),
                 "bestAsk": str(ask), "bestAskSize": str(s.size * 50), "bestBid": str(bid),
                 "bestBidSize": str(s.size * 50), "time": ms},
    }).decode()


@dataclass
class Frame:
    text: str
    kind: str  # "level2" | "ticker"
    rule: int | None  # the rule index it must fire, None: nothing may fire


def frames_for(syms: list[Sym]) -> list[Frame]:
    """For each step k: over all symbols, a level2 delta moving the ask between thresholds
    (nothing fires); over all symbols, one crossing ask threshold k; then the same with ticker
    frames and `last`. So every frame follows a frame of another symbol (no frame finds its
    book warm from the frame before)."""
    ms = int(time.time() * 1000)
    seq = {s.symbol: SEQ0 for s in syms}
    out: list[Frame] = []

    def level2(s: Sym, price: Decimal, rule: int | None) -> None:
        seq[s.symbol] += 1
        out.append(Frame(l2_frame(s.symbol, seq[s.symbol], price, s.size * 50, ms), "level2",
                         rule))

    def ticker(s: Sym, price: Decimal, rule: int | None) -> None:
        ask = s.level(k) - s.inc
        out.append(Frame(ticker_frame(s, seq[s.symbol], price, ask, ms), "ticker", rule))

    for k in range(1, PER_KIND + 1):
        for s in syms:  # k - 1 = 0: the start price
            level2(s, s.level(k - 1) - s.inc * 5, None)
        for s in syms:
            level2(s, s.level(k) - s.inc, s.rules[("ask", k)])
        for s in syms:
            ticker(s, s.level(k - 1) - s.inc * 5, None)
        for s in syms:
            ticker(s, s.level(k) - s.inc, s.rules[("last", k)])
    return out


def build_watcher(rules: tuple[CompiledRule, ...], table: SymbolTable, syms: list[Sym],
                  db: str, marks: list[tuple[str, int]] | None = None) -> SigningWatcher:
    """A watcher as `start` leaves it, without the network: store migrated, its lease
    acquired (the fence every send checks), engine id, states loaded by `RuleSet.load`,
    books made live from a level2 snapshot, a first ticker each."""
    def mark(what: str) -> None:
        if marks is not None:
            marks.append((what, tracemalloc.get_traced_memory()[0]))

    store = NoCommitStore(db)
    store.migrate()
    rest = KucoinRest("https://api.kucoin.com", DEMO)
    config = WatcherConfig(view="off", log_format="json", order_family="hf")
    watcher = SigningWatcher(rules, symbols=table, store=store, rest=rest, config=config)
    mark("watcher: index and market state")
    now = utc_now()
    ctx = watcher.ctx
    watcher.epoch = store.acquire_lease(watcher.owner, now,
                                        timedelta(seconds=config.lease_stale_s))
    watcher.orders.fenced()
    ctx.engine_id = store.engine_id()
    ctx.prefix = engine_prefix(ctx.engine_id)
    ctx.venue.family = "hf"
    watcher.rules.load(store, watcher.sources, now)
    mark("rule states (loaded by RuleSet.load)")
    watcher.market.live = True  # what Feeds.on_state("live") sets
    by_symbol = {s.symbol: s for s in syms}
    for symbol in watcher.market.book_symbols():  # as Feeds.new_topics and _snapshot do
        book = Level2Book(symbol, now)
        watcher.feeds.books[symbol] = book
        watcher.market.set_book(symbol, book)
        s = by_symbol[symbol]
        book.on_snapshot(SEQ0, [[str(p), str(q)] for p, q in s.bids()],
                         [[str(p), str(q)] for p, q in s.asks()], now)
        watcher.firing.apply(watcher.market.refresh(symbol, now), now)
    ms = int(time.time() * 1000)
    for s in syms:
        watcher.on_frame(orjson.loads(ticker_frame(s, SEQ0, s.price, s.price, ms)))
    mark("live books and tickers")
    assert not watcher.signed and not store.calls, "priming fired a rule"
    return watcher


class GcPauses:
    """The collector's pauses while a measurement runs (gc.callbacks): count and longest, per
    generation."""

    def __init__(self) -> None:
        self.spans: list[tuple[int, int]] = []  # (generation, ns)
        self._began = 0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter_ns()
        else:
            self.spans.append((info["generation"], time.perf_counter_ns() - self._began))

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for gen in (0, 1, 2):
            spans = [ns for g, ns in self.spans if g == gen]
            out[f"gen{gen}"] = {"n": len(spans), "max_ms": max(spans) / 1e6 if spans else 0.0}
        return out


async def run_frames(watcher: SigningWatcher, frames: list[Frame], rules: tuple[CompiledRule, ...],
                     each: Callable[[bool], None] | None = None) -> dict[str, list[int]]:
    """Feed every frame as KucoinWs.on_text does (orjson.loads, then the stream's message
    handler), let the spawned send task run, and check that exactly the expected rule fired
    (or none)."""
    store = watcher.store
    assert isinstance(store, NoCommitStore)
    loads, clock, on_frame = orjson.loads, time.perf_counter_ns, watcher.on_frame
    out: dict[str, list[int]] = {k: [] for k in (
        "signed_level2", "signed_ticker", "to_fire", "to_spawn", "after_spawn", "switch", "sign",
        "idle_level2", "idle_ticker")}
    spawned: list[int] = []
    spawn = watcher.ctx.spawn
    if each is None:  # the moment the send is spawned (one clock read; not in the attribution)
        def spawn_marked(coro: Any) -> None:
            spawned.append(clock())
            spawn(coro)
        watcher.ctx.spawn = spawn_marked  # type: ignore[method-assign]
    for frame in frames:
        identity = rules[frame.rule].identity if frame.rule is not None else None
        calls, signed = len(store.calls), len(watcher.signed)
        t0 = clock()
        on_frame(loads(frame.text))
        t1 = clock()
        await asyncio.sleep(0)  # the spawned send task runs: body serialised and signed
        if each is not None:
            each(identity is not None)
        if identity is None:
            assert len(watcher.signed) == signed and len(store.calls) == calls, "a rule fired"
            out[f"idle_{frame.kind}"].append(t1 - t0)
            continue
        assert len(watcher.signed) == signed + 1 and len(store.calls) == calls + 1, (
            f"{len(watcher.signed) - signed} orders for one firing frame")
        fired, at, blocked = store.calls[-1]
        assert fired == identity and blocked is None, (fired, identity, blocked)
        who, started, done, headers = watcher.signed[-1]
        assert who == identity and "KC-API-SIGN" in headers
        out["to_fire"].append(at - t0)
        if spawned:
            out["to_spawn"].append(spawned[-1] - t0)
            out["after_spawn"].append(t1 - spawned[-1])
        out[f"signed_{frame.kind}"].append(done - t0)
        out["switch"].append(started - t1)
        out["sign"].append(done - started)
    return out


async def decision(rules: tuple[CompiledRule, ...], table: SymbolTable, syms: list[Sym],
                   tmp: Path) -> dict[str, Any]:
    watcher = build_watcher(rules, table, syms, f"sqlite:///{tmp / 'decision.sqlite'}")
    frames = frames_for(syms)
    gc.collect()
    with GcPauses() as pauses:
        ns = await run_frames(watcher, frames, rules)
    decode_ns = []
    loads, clock = orjson.loads, time.perf_counter_ns
    for frame in frames:
        t0 = clock()
        loads(frame.text)
        decode_ns.append(clock() - t0)
    t0 = clock()
    gc.collect()  # what one full collection of this heap costs, whenever it comes
    full_gc = (clock() - t0) / 1e6
    out = {
        "signed": stats_us(ns["signed_level2"] + ns["signed_ticker"]),
        "signed_level2": stats_us(ns["signed_level2"]),
        "signed_ticker": stats_us(ns["signed_ticker"]),
        "to_fire_call": stats_us(ns["to_fire"]),
        "to_spawn": stats_us(ns["to_spawn"]),
        "after_spawn": stats_us(ns["after_spawn"]),
        "switch": stats_us(ns["switch"]),
        "sign": stats_us(ns["sign"]),
        "idle": stats_us(ns["idle_level2"] + ns["idle_ticker"]),
        "idle_level2": stats_us(ns["idle_level2"]),
        "idle_ticker": stats_us(ns["idle_ticker"]),
        "decode": stats_us(decode_ns),
        "firings": len(ns["to_fire"]),
        "gc": pauses.summary(),
        "full_gc_ms": full_gc,
        "gc_objects": len(gc.get_objects()),
    }
    watcher.store.close()
    return out


async def profile_decision(rules: tuple[CompiledRule, ...], table: SymbolTable,
                           syms: list[Sym], tmp: Path) -> str:
    """cProfile of the same run on a fresh watcher (--profile), by own time."""
    watcher = build_watcher(rules, table, syms, f"sqlite:///{tmp / 'profile.sqlite'}")
    frames = frames_for(syms)
    gc.collect()
    profiler = cProfile.Profile()
    profiler.enable()
    await run_frames(watcher, frames, rules)
    profiler.disable()
    watcher.store.close()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
    return text.getvalue()


# Where a firing frame's time goes: the watcher's parts' functions, each timed by a wrapper
# put on it (module names as the part's module imports them, or the instance's attribute),
# in a second watcher, so that the figures above are measured without wrappers.
# Indentation: callee. The stream's handler is rebuilt after the wrapping (it holds
# `Feeds.on_event` bound at its creation).
STAGES: list[tuple[str, str, str]] = [
    # (label, parent label, where)
    ("KucoinFeed stream: on_message", "", "watcher.on_frame"),
    ("parse_ws_message", "KucoinFeed stream: on_message", "venue_module.parse_ws_message"),
    ("Feeds.on_event", "KucoinFeed stream: on_message", "feeds.on_event"),
    ("Level2Book.on_delta", "Feeds.on_event", "books.on_delta"),
    ("MarketState.on_ticker", "Feeds.on_event", "market.on_ticker"),
    ("MarketState.refresh", "Feeds.on_event", "market.refresh"),
    ("Watcher._on_changed", "Feeds.on_event", "feeds.on_changed"),
    ("HeldOrders.on_price", "Watcher._on_changed", "held.on_price"),
    ("Firing.apply", "Watcher._on_changed", "firing.apply"),
    ("RuleIndex.affected", "Firing.apply", "index.affected"),
    ("Firing.evaluate", "Firing.apply", "firing.evaluate"),
    ("step", "Firing.evaluate", "firing_module.step"),
    ("_cross_verdicts", "step", "evaluate._cross_verdicts"),
    ("truth (the condition)", "step", "evaluate.truth"),
    ("_order_inputs_fresh", "step", "evaluate._order_inputs_fresh"),
    ("_inputs (decision inputs as text)", "step", "evaluate._inputs"),
    ("_move (state transition)", "step", "evaluate._move"),
    ("Firing.fire", "Firing.evaluate", "firing.fire"),
    ("client_oid (sha256 x2)", "Firing.fire", "firing_module.client_oid"),
    ("Firing._decide_order", "Firing.fire", "firing._decide_order"),
    ("resolve_order", "Firing._decide_order", "firing_module.resolve_order"),
    ("Firing._limits (risk limits)", "Firing._decide_order", "firing._limits"),
    ("Firing._stop_loss", "Firing._decide_order", "firing._stop_loss"),
    ("Firing._children_inverted", "Firing._decide_order", "firing._children_inverted"),
    ("Firing._inputs (the firing's record)", "Firing.fire", "firing._inputs"),
    ("RuleSet.arms (after R fired)", "Firing.fire", "rules.arms"),
    ("Actions.cancels", "Firing.fire", "actions.cancels"),
    ("Firing._place", "Firing.fire", "firing._place"),
    ("KucoinVenue.server_ms", "Firing._place", "venue.server_ms"),
    ("order_body", "Firing._place", "firing_module.order_body"),
    ("deadline", "Firing._place", "firing_module.deadline"),
    ("_num (Decimal -> text) x5", "Firing._place", "firing_module._num"),
    ("Firing._commit", "Firing._place", "firing._commit"),
    ("RuleSet.row (dump_state)", "Firing._commit", "rules.row"),
    ("Store.fire (no commit here)", "Firing._commit", "store.fire"),
    ("OrderManager.fenced", "Firing._commit", "orders.fenced"),
    ("Tracked (dataclass)", "Firing._place", "firing_module.Tracked"),
    ("place (the order table's first move)", "Firing._place", "firing_module.place"),
    ("OrderManager.start: the send spawned", "Firing._place", "orders.start"),
    (AFTER + "Exposure.add", "Firing._place", "exposure.add"),
    (AFTER + "Exposure.fired", "Firing._place", "exposure.fired"),
    (AFTER + "Context.emit (a no-op here)", "Firing._place", "ctx.emit"),
    (AFTER + "Actions.notify", "Firing.fire", "actions.notify"),
    (AFTER + "Firing._armed", "Firing.fire", "firing._armed"),
]


async def attribute(watcher: SigningWatcher, frames: list[Frame],
                    rules: tuple[CompiledRule, ...]) -> dict[str, Any]:
    import rules_engine.adapters.kucoin._venue as venue_module
    import rules_engine.engine._evaluate as evaluate_module
    import rules_engine.runtime._firing as firing_module

    spent: dict[str, int] = dict.fromkeys((label for label, _, _ in STAGES), 0)
    firing: dict[str, int] = dict.fromkeys(spent, 0)
    quiet: dict[str, int] = dict.fromkeys(spent, 0)
    clock = time.perf_counter_ns

    def timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] += clock() - t0
        return wrapper

    undo: list[Callable[[], None]] = []
    modules = {"venue_module": venue_module, "evaluate": evaluate_module,
               "firing_module": firing_module}
    holders: dict[str, object] = {
        **modules, "watcher": watcher, "feeds": watcher.feeds, "market": watcher.market,
        "held": watcher.held_orders, "firing": watcher.firing, "index": watcher.rules.index,
        "rules": watcher.rules, "actions": watcher.actions, "venue": watcher.ctx.venue,
        "store": watcher.store, "orders": watcher.orders, "ctx": watcher.ctx,
        "exposure": watcher.orders.exposure}
    for label, _, where in STAGES:
        owner, name = where.split(".")
        if owner == "books":
            for book in watcher.books.values():
                setattr(book, name, timed(label, getattr(book, name)))
            continue
        target = holders[owner]
        original = getattr(target, name)
        setattr(target, name, timed(label, original))
        if owner in modules:
            undo.append(functools.partial(setattr, target, name, original))
    # the stream's handler again, now holding the wrapped Feeds.on_event
    watcher.on_frame = timed("KucoinFeed stream: on_message", watcher.frame_handler())
    # the wrapper's own cost, to read the figures with
    probe = timed("probe", lambda: None)
    spent["probe"] = 0
    t0 = clock()
    for _ in range(10_000):
        probe()
    overhead = (clock() - t0) / 10_000
    snapshot = dict(spent)

    def each(fired: bool) -> None:
        into = firing if fired else quiet
        for key, value in spent.items():
            if key in into:
                into[key] += value - snapshot[key]
            snapshot[key] = value

    gc.collect()
    try:
        ns = await run_frames(watcher, frames, rules, each)
    finally:
        for restore in undo:
            restore()
    count = len(ns["to_fire"])
    quiet_count = len(ns["idle_level2"]) + len(ns["idle_ticker"])
    rows = list({label: parent for label, parent, _ in STAGES}.items())
    self_time = {label: firing[label] / count / 1000 for label, _ in rows}
    for label, parent in rows:
        if parent:
            self_time[parent] -= firing[label] / count / 1000
    return {
        "rows": [(label, parent, firing[label] / count / 1000, self_time[label],
                  quiet[label] / quiet_count / 1000) for label, parent in rows],
        "sign_us": pct([v / 1000 for v in ns["sign"]], 0.5),
        "switch_us": pct([v / 1000 for v in ns["switch"]], 0.5),
        "after_spawn_us": sum(firing[label] for label, _ in rows if label.startswith(AFTER))
        / count / 1000,
        "wrapper_us": overhead / 1000,
        "wrapped_p50_us": pct([v / 1000 for v in ns["signed_level2"] + ns["signed_ticker"]],
                              0.5),
    }


# ==================================================================== 3. memory


def memory(table: SymbolTable, syms: list[Sym], text: str, tmp: Path
           ) -> tuple[tuple[CompiledRule, ...], list[tuple[str, float]], float, SigningWatcher]:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    marks: list[tuple[str, int]] = []
    rules = compile_rules(table, text)
    gc.collect()
    marks.append(("compiled rules", tracemalloc.get_traced_memory()[0]))
    watcher = build_watcher(rules, table, syms, f"sqlite:///{tmp / 'memory.sqlite'}", marks)
    gc.collect()
    total, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    steps, before = [], base
    for what, at in marks:
        steps.append((what, (at - before) / 1e6))
        before = at
    steps.append(("total", (total - base) / 1e6))
    return rules, steps, (peak - base) / 1e6, watcher


# ==================================================================== 2. the loopback path


@dataclass
class Watch:
    """The measurement under way: which frame starts it, when it was sent, when the order came."""

    needle: str
    sent: int | None = None
    orders: list[tuple[str, int]] = field(default_factory=list)


class Probe:
    """Instruments the sandbox side: the server WebSocket's send_str and an order middleware."""

    def __init__(self) -> None:
        self.watch: Watch | None = None
        self.all_orders = 0
        self._original = web.WebSocketResponse.send_str

    def install(self) -> None:
        original, probe = self._original, self

        async def send_str(ws: web.WebSocketResponse, data: str, compress: Any = None) -> None:
            watch = probe.watch
            if watch is not None and watch.sent is None and watch.needle in data:
                watch.sent = time.perf_counter_ns()
            await original(ws, data, compress=compress)

        web.WebSocketResponse.send_str = send_str  # type: ignore[method-assign,assignment]

    def uninstall(self) -> None:
        web.WebSocketResponse.send_str = self._original  # type: ignore[method-assign]

    def middleware(self) -> Any:
        probe = self

        @web.middleware
        async def orders_in(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.method == "POST" and request.path in ("/api/v1/hf/orders",
                                                             "/api/v1/orders"):
                raw = await request.read()  # cached: the handler reads the same bytes
                at = time.perf_counter_ns()
                probe.all_orders += 1
                if probe.watch is not None:
                    probe.watch.orders.append((str(orjson.loads(raw).get("clientOid")), at))
            reply: web.StreamResponse = await handler(request)
            return reply

        return orders_in


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.0005)


class Market:
    """The benchmark's side of the external feed: each symbol's pushed book and last price."""

    def __init__(self, feed: ExternalFeed, syms: list[Sym]) -> None:
        self.feed = feed
        self.low_ask: dict[str, Decimal | None] = {s.symbol: None for s in syms}

    def push(self, s: Sym, *, ask: Decimal | None = None,
             trade: Decimal | None = None) -> None:
        if ask is not None:
            self.low_ask[s.symbol] = ask
        asks = s.asks()
        low = self.low_ask[s.symbol]
        if low is not None:
            asks = [(low, s.size * 50), *asks]
        self.feed.push(s.symbol, s.bids(), asks,
                       trade=(trade, s.size, "sell") if trade is not None else None)


async def loopback(text: str, syms: list[Sym], tmp: Path, count: int, floor_count: int
                   ) -> dict[str, Any]:
    table = shipped_symbols()
    feed = ExternalFeed(table, [s.symbol for s in syms])
    market = Market(feed, syms)
    for s in syms:
        market.push(s, trade=s.price)
    config = SandboxConfig.model_validate({
        "quotas": {"spot": 10**9, "public": 10**9, "management": 10**9},
        "balances": {"USDT": "1000000000000"}, "max_open_orders_per_symbol": 10**9,
    })
    state = build_state(config, feed=feed)
    probe = Probe()
    app = create_app(state, run_feed=False)
    app.middlewares.insert(0, probe.middleware())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    probe.install()
    db_path = tmp / "watcher.sqlite"
    db = f"sqlite:///{db_path}"
    started = time.perf_counter()
    try:
        result = await _watcher_run(url, db, text, syms, market=market, state=state,
                                    probe=probe, count=count)
        result["startup_s"] = result.pop("startup")
        result["floor"] = await _floor(url, syms, market=market, state=state, probe=probe,
                                       count=floor_count)
    finally:
        probe.uninstall()
        await runner.cleanup()
    unfired = result.pop("unfired")  # each measured firing takes a rule not fired yet
    result["commit"] = commit_alone(db, result.pop("sample"), unfired,
                                    count=max(1, min(100, (len(unfired) - 101) // 4)))
    result["phase_s"] = time.perf_counter() - started
    return result


async def _watcher_run(url: str, db: str, text: str, syms: list[Sym], *, market: Market,
                       state: Any, probe: Probe, count: int) -> dict[str, Any]:
    """As `run_watcher` assembles it: REST client with the demo key, server time, the venue's
    symbols, rules compiled against them, the store on a file, `Watcher.run`."""
    began = time.perf_counter()
    config = WatcherConfig(exchange_url=url, db=db, view="off", log_format="json")
    async with KucoinRest(url, DEMO, timeout=config.request_timeout_s, attempts=4) as rest:
        synced = await rest.sync_time()
        assert synced.action.name == "OK", synced
        symbols = await KucoinMarket(rest).symbols()
        rules = compile_rules(symbols, text)
        store = Store(db)
        fire_spans: list[tuple[int, int]] = []
        real_fire = store.fire

        def timed_fire(*args: Any, **kwargs: Any) -> Any:  # the durable commit, timed
            t0 = time.perf_counter_ns()
            try:
                return real_fire(*args, **kwargs)
            finally:
                fire_spans.append((t0, time.perf_counter_ns()))

        store.fire = timed_fire  # type: ignore[method-assign]
        watcher = Watcher(rules, symbols=symbols, store=store, rest=rest, config=config)
        stop = asyncio.Event()
        task = asyncio.create_task(watcher.run(stop))
        try:
            await until(lambda: watcher.ctx.ready.is_set() or task.done(), 120, "the watcher")
            if task.done():
                task.result()
            await until(lambda: watcher.market.live and len(watcher.books) == len(syms)
                        and all(b.fresh for b in watcher.books.values()), 30, "live books")
            await asyncio.sleep(0.2)
            startup = time.perf_counter() - began
            assert probe.all_orders == 0, "a rule fired at start"
            total: list[int] = []
            kinds: dict[str, list[int]] = {"level2": [], "ticker": []}
            to_fire: list[int] = []
            commit: list[int] = []
            after_commit: list[int] = []
            step = {s.symbol: {"ask": 0, "last": 0} for s in syms}
            pauses = GcPauses().__enter__()
            for n in range(count):
                s = syms[n % len(syms)]
                kind = "ask" if (n // len(syms)) % 2 == 0 else "last"
                k = step[s.symbol][kind] = step[s.symbol][kind] + 1
                identity = rules[s.rules[(kind, k)]].identity
                topic = "level2" if kind == "ask" else "ticker"
                watch = Watch(f'"topic":"/market/{topic}:{s.symbol}"')
                spans = len(fire_spans)
                probe.watch = watch
                if kind == "ask":
                    market.push(s, ask=s.level(k) - s.inc)
                else:
                    market.push(s, trade=s.level(k) - s.inc)
                state.feed_step()
                await until(functools.partial(bool, watch.orders), 5, f"the order of {identity}")
                await until(functools.partial(_acknowledged, watcher, identity), 5,
                            "the acknowledgement")
                await asyncio.sleep(0.005)  # private events and the bid's move, then quiet
                probe.watch = None
                assert len(watch.orders) == 1, f"{len(watch.orders)} orders for one change"
                assert len(fire_spans) == spans + 1
                assert watch.sent is not None
                oid, at = watch.orders[0]
                assert oid == client_oid(watcher.ctx.engine_id, identity, 1), (oid, identity)
                total.append(at - watch.sent)
                kinds[topic].append(at - watch.sent)
                f0, f1 = fire_spans[-1]
                to_fire.append(f0 - watch.sent)
                commit.append(f1 - f0)
                after_commit.append(at - f1)
            pauses.__exit__()
            await asyncio.sleep(0.2)
            assert probe.all_orders == count, f"{probe.all_orders} orders for {count} changes"
            fired = watcher.fired
            sample = store.firings()[0]
            unfired = [r for r in rules if watcher.states[r.identity].firings == 0]
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            store.close()
    assert fired == count, (fired, count)
    return {
        "total": stats_us(total), "level2": stats_us(kinds["level2"]),
        "ticker": stats_us(kinds["ticker"]), "to_fire": stats_us(to_fire),
        "commit_in_path": stats_us(commit), "after_commit": stats_us(after_commit),
        "startup": startup, "sample": sample, "unfired": unfired, "gc": pauses.summary(),
    }


def _acknowledged(watcher: Watcher, identity: str) -> bool:
    return identity not in watcher.pending and watcher.states[identity].firings == 1


async def _floor(url: str, syms: list[Sym], *, market: Market, state: Any, probe: Probe,
                 count: int) -> dict[str, float]:
    """The loopback floor: a bare client that answers the frame with a pre-built order."""
    signer = Signer(DEMO)
    samples: list[int] = []
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/api/v1/bullet-public") as r:
            data = (await r.json())["data"]
        endpoint = data["instanceServers"][0]["endpoint"]
        async with http.ws_connect(f"{endpoint}?token={data['token']}&connectId=floor") as ws:
            await ws.receive()
            topic = "/market/level2:" + ",".join(s.symbol for s in syms)
            await ws.send_str(orjson.dumps({"id": "1", "type": "subscribe", "topic": topic,
                                            "response": True}).decode())
            while orjson.loads((await ws.receive()).data).get("type") != "ack":
                pass
            for n in range(count):
                s = syms[n % len(syms)]
                watch = Watch(f'"topic":"/market/level2:{s.symbol}"')
                probe.watch = watch
                market.push(s, ask=s.level(PER_KIND) - s.inc * (3 + n // len(syms)))
                state.feed_step()
                while True:
                    frame = orjson.loads((await ws.receive()).data)
                    if frame.get("topic") == f"/market/level2:{s.symbol}":
                        break
                body = json.dumps({
                    "clientOid": f"floor{n}", "symbol": s.symbol, "side": "buy",
                    "type": "limit", "price": str(s.floor), "size": str(s.size),
                    "timeInForce": "GTC", "clientTimestamp": int(time.time() * 1000),
                    "allowMaxTimeWindow": 10_000}, separators=(",", ":")).encode()
                signed = signer.sign("POST", "/api/v1/hf/orders",
                                     timestamp_ms=int(time.time() * 1000), body=body)
                async with http.post(url + signed.url_path, data=body,
                                     headers=signed.headers) as r:
                    reply = await r.json()
                assert reply["code"] == "200000", reply
                probe.watch = None
                assert watch.sent is not None and len(watch.orders) == 1
                samples.append(watch.orders[0][1] - watch.sent)
                await asyncio.sleep(0.002)
    return stats_us(samples)


IDLE_GAP_S = 0.005  # the loopback run's pause between two measurements


def commit_alone(db: str, sample: Any, unfired: list[CompiledRule], count: int = 100
                 ) -> dict[str, Any]:
    """`Store.fire` on the watcher's file: synchronous=FULL (the store's setting) against a
    second store on the same file whose connections set synchronous=OFF, alternately; back to
    back ("hot") and after the same idle pause as in the loopback run. Then where a FULL
    firing's time goes: SQL statements sent, and a cProfile of the calls (sqlite3's execute
    and commit, which includes the WAL write and its fsync, against everything else)."""
    full = Store(db)
    off = Store(db)

    def no_sync(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.close()

    event.listen(off.engine, "connect", no_sync)  # runs after the store's own pragmas
    full.acquire_lease("bench", utc_now(), timedelta(seconds=3600))  # `fire` is fenced
    off._fence = full.fence  # the same lease, so both fire through the one fence
    with full.engine.connect() as c:
        sync_full = c.exec_driver_sql("PRAGMA synchronous").scalar()
    with off.engine.connect() as c:
        sync_off = c.exec_driver_sql("PRAGMA synchronous").scalar()
    assert (sync_full, sync_off) == (2, 0), (sync_full, sync_off)
    now = utc_now()
    order = sample.intent
    todo = iter(unfired)

    def fire(store: Store) -> int:
        rule = next(todo)
        state = initial_state(rule, now)._replace(status="done", firings=1)
        row = {
            "exchange_id": None, "symbol": order["symbol"], "side": order["side"],
            "order_type": order["type"], "price": D(order["price"]), "size": D(order["size"]),
            "funds": None, "status": "pending", "filled_size": D(0), "filled_value": D(0),
            "family": order["family"], "deadline": datetime.fromisoformat(order["deadline"]),
        }
        t0 = time.perf_counter_ns()
        store.fire(rule.identity, 1, version=1, inputs=sample.inputs, intent=order,
                   order=row, state=StateRow(rule.identity, 1, "done", 1, dump_state(state),
                                             None), now=now)
        return time.perf_counter_ns() - t0

    times: dict[str, list[int]] = {k: [] for k in ("full", "off", "full_idle", "off_idle")}
    for n in range(count * 2):
        times["full" if n % 2 == 0 else "off"].append(fire(full if n % 2 == 0 else off))
    for n in range(count * 2):
        time.sleep(IDLE_GAP_S)
        times["full_idle" if n % 2 == 0 else "off_idle"].append(fire(full if n % 2 == 0 else off))
    statements: list[str] = []

    def count_sql(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        statements.append(sql.split(None, 1)[0].upper())

    event.listen(full.engine, "before_cursor_execute", count_sql)
    fire(full)
    event.remove(full.engine, "before_cursor_execute", count_sql)
    profiler = cProfile.Profile()
    profiled = 50
    plain = sorted(fire(full) for _ in range(profiled))[profiled // 2]
    profiler.enable()
    for _ in range(profiled):
        fire(full)
    profiler.disable()
    listing = io.StringIO()
    pstats.Stats(profiler, stream=listing).sort_stats("tottime").print_stats(15)
    by_name: dict[str, float] = {}
    for (_file, _line, name), row in pstats.Stats(profiler).stats.items():  # type: ignore[attr-defined]
        by_name[name] = by_name.get(name, 0.0) + row[2]  # tottime
    commit_s = by_name.get("<method 'commit' of 'sqlite3.Connection' objects>", 0.0) / profiled
    execute_s = by_name.get("<method 'execute' of 'sqlite3.Cursor' objects>", 0.0) / profiled
    full.close()
    off.close()
    kinds: dict[str, int] = {}
    for word in statements:
        kinds[word] = kinds.get(word, 0) + 1
    return {**{k: stats_us(v) for k, v in times.items()},
            "statements": kinds, "plain_ms": plain / 1e6, "profile": listing.getvalue(),
            "sqlite_commit_ms": commit_s * 1000, "sqlite_execute_ms": execute_s * 1000}


# ==================================================================== the report


def _emit_cost() -> float | None:
    """What the CLI's JSON-lines output (`_run.Output`) adds a firing: one `fired` event."""
    try:
        from rules_engine.runtime._run import Output
    except ImportError:
        return None
    with tempfile.TemporaryFile("w+") as stream:
        output = Output(WatcherConfig(view="off", log_format="json"), stream=stream)
        data = {"rule": "x" * 64, "firing": 1, "client_oid": "re12345678-" + "a" * 26,
                "order": {"symbol": "BTC-USDT", "side": "buy", "type": "limit",
                          "size": "0.001", "price": "60000", "family": "hf",
                          "deadline": "2026-01-01T00:00:00+00:00"}}
        t0 = time.perf_counter_ns()
        for _ in range(2000):
            output("fired", data)
        return (time.perf_counter_ns() - t0) / 2000 / 1000


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _line(label: str, v: dict[str, float], unit: str = "us", goal: str = "") -> str:
    scale = 1000 if unit == "ms" else 1
    return (f"  {label:<44} p50 {v['p50'] / scale:8.2f} {unit}  p99 {v['p99'] / scale:8.2f} "
            f"{unit}  max {v['max'] / scale:8.2f} {unit}{goal}")


def _gc(summary: dict[str, Any]) -> str:
    return ", ".join(f"{k} x{v['n']} (longest {v['max_ms']:.1f} ms)" for k, v in summary.items())


async def measure(*, loopback_count: int = 400, floor_count: int = 200,
                  attribution: bool = True, profile: bool = False,
                  memory_traced: bool = True) -> dict[str, Any]:
    """Every part's results: `memory` (a watcher's memory, traced: the compile is about 4x
    slower under tracemalloc), `decision`, `attribution` (a second watcher with timers),
    `profile` (cProfile listings), `loopback`; "figures" holds the JSON figures."""
    began = time.perf_counter()
    table = shipped_symbols()
    syms = plan(table)
    text = rules_text(syms)
    phases: dict[str, float] = {}

    def phase(name: str) -> None:
        phases[name] = time.perf_counter() - began - sum(phases.values())

    mem_steps: list[tuple[str, float]] = []
    mem_peak: float | None = None
    where: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        spare: SigningWatcher | None = None
        if memory_traced:
            rules, mem_steps, mem_peak, spare = memory(table, syms, text, tmp)
            phase("memory")
        else:
            rules = compile_rules(table, text)
            phase("compile")
        dec = await decision(rules, table, syms, tmp)
        phase("decision")
        if attribution:
            if spare is None:
                spare = build_watcher(rules, table, syms, f"sqlite:///{tmp / 'spare.sqlite'}")
            where = await attribute(spare, frames_for(syms), rules)
            phase("attribution")
        if spare is not None:
            spare.store.close()
            del spare
        if profile:
            dec["profile"] = await profile_decision(rules, table, syms, tmp)
            phase("profile")
        loop = await loopback(text, syms, tmp, loopback_count, floor_count)
        phase("loopback")
    emit_us = _emit_cost()
    elapsed = time.perf_counter() - began
    result: dict[str, Any] = {
        "phases": phases, "elapsed": elapsed, "memory_steps": mem_steps,
        "memory_peak": mem_peak, "decision": dec, "attribution": where, "loopback": loop,
        "emit_us": emit_us,
    }
    result["figures"] = figures(result)
    return result


def figures(result: dict[str, Any]) -> dict[str, Any]:
    """The figures `--json` prints."""
    dec, loop = result["decision"], result["loopback"]
    s, idle, dcd = dec["signed"], dec["idle"], dec["decode"]
    t, fl, cm = loop["total"], loop["floor"], loop["commit"]
    mem = result["memory_steps"][-1][1] if result["memory_steps"] else None
    peak = result["memory_peak"]
    return {
        "decision_p50_us": round(s["p50"], 1), "decision_p99_us": round(s["p99"], 1),
        "decision_max_us": round(s["max"], 1),
        "decision_to_fire_p50_us": round(dec["to_fire_call"]["p50"], 1),
        "decision_to_spawn_p50_us": round(dec["to_spawn"]["p50"], 1),
        "decision_after_spawn_p50_us": round(dec["after_spawn"]["p50"], 1),
        "decision_switch_p50_us": round(dec["switch"]["p50"], 1),
        "decision_sign_p50_us": round(dec["sign"]["p50"], 1),
        "baseline_idle_p50_us": round(idle["p50"], 1),
        "baseline_idle_p99_us": round(idle["p99"], 1),
        "baseline_decode_p50_us": round(dcd["p50"], 2),
        "decision_ratio": round(s["p50"] / idle["p50"], 2),
        "loopback_p50_ms": round(t["p50"] / 1000, 3),
        "loopback_p99_ms": round(t["p99"] / 1000, 3),
        "loopback_max_ms": round(t["max"] / 1000, 3),
        "loopback_to_fire_p50_ms": round(loop["to_fire"]["p50"] / 1000, 3),
        "loopback_commit_p50_ms": round(loop["commit_in_path"]["p50"] / 1000, 3),
        "loopback_after_commit_p50_ms": round(loop["after_commit"]["p50"] / 1000, 3),
        "loopback_floor_p50_ms": round(fl["p50"] / 1000, 3),
        "loopback_floor_p99_ms": round(fl["p99"] / 1000, 3),
        "loopback_ratio": round(t["p50"] / fl["p50"], 2),
        **{f"fire_{k}_{q}_ms": round(cm[k][q] / 1000, 3)
           for k in ("full", "off", "full_idle", "off_idle") for q in ("p50", "p99")},
        "fire_sql_statements": sum(cm["statements"].values()),
        "full_gc_ms": round(dec["full_gc_ms"], 1),
        "memory_mb": round(mem, 1) if mem is not None else None,
        "memory_peak_mb": round(peak, 1) if peak is not None else None,
        "rules": RULES, "firings_decision": dec["firings"], "firings_loopback": t["n"],
        "seconds": round(result["elapsed"], 1),
    }


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--loopback", type=int, default=400, help="loopback measurements")
    parser.add_argument("--floor", type=int, default=200, help="loopback floor measurements")
    parser.add_argument("--profile", action="store_true",
                        help="also print cProfile listings (decision run, Store.fire)")
    args = parser.parse_args()
    result = await measure(loopback_count=args.loopback, floor_count=args.floor,
                           profile=args.profile)
    phases, elapsed = result["phases"], result["elapsed"]
    mem_steps, mem_peak = result["memory_steps"], result["memory_peak"]
    dec, where, loop = result["decision"], result["attribution"], result["loopback"]
    emit_us = result["emit_us"]
    s, idle, dcd = dec["signed"], dec["idle"], dec["decode"]
    ratio = s["p50"] / idle["p50"]
    t, fl, cm = loop["total"], loop["floor"], loop["commit"]
    mem = mem_steps[-1][1]
    print(f"watcher benchmark: {RULES:,} rules over {SYMBOLS} symbols, Python "
          f"{sys.version.split()[0]}, {elapsed:.0f} s ("
          + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()) + ")")
    print(f"1. decision latency: raw frame -> signed order, no durable commit "
          f"({dec['firings']:,} firings, each frame fires exactly one rule)")
    print(_line("frame -> signed order", s, goal=f"   goal p50 < 25 us: {verdict(s['p50'] < 25)},"
                f" p99 < 100 us: {verdict(s['p99'] < 100)}"))
    print(_line("  level2 frames (book -> ask)", dec["signed_level2"]))
    print(_line("  ticker frames (last)", dec["signed_ticker"]))
    print(_line("  frame -> Store.fire called (decided)", dec["to_fire_call"]))
    print(_line("  frame -> send task spawned", dec["to_spawn"]))
    print(_line("  spawned -> handler returned (bookkeeping)", dec["after_spawn"]))
    print(_line("  handler returned -> send task runs", dec["switch"]))
    print(_line("  send task: fence, body to JSON, Signer.sign", dec["sign"]))
    print(_line("baseline: decode + handler, nothing fires", idle)
          + f"   ratio {ratio:.1f}x")
    print(_line("  level2 frames", dec["idle_level2"]))
    print(_line("  ticker frames", dec["idle_ticker"]))
    print(_line("baseline: orjson.loads alone", dcd) + f"   ratio {s['p50'] / dcd['p50']:.0f}x")
    print(f"  collector during the run: {_gc(dec['gc'])}; one full collection of this heap "
          f"({dec['gc_objects']:,} objects tracked) takes {dec['full_gc_ms']:.0f} ms")
    if emit_us is not None:
        print(f"  not included: the CLI's JSON-lines output (`_run.Output`), {emit_us:.1f} us "
              "per event; `Firing._place` emits one after it spawns the send, before the send "
              "task runs")
    print(f"  where a firing frame's time goes (mean us a firing frame, each function wrapped "
          f"by a timer costing {where['wrapper_us']:.2f} us a call; with the wrappers p50 "
          f"{where['wrapped_p50_us']:.1f} us):")
    depth = {"": -1}
    print(f"    {'function':<46} {'firing frame':>12} {'of it own':>10} {'quiet frame':>12}")
    for label, parent, total, own, calm in where["rows"]:
        depth[label] = depth[parent] + 1
        print(f"    {'  ' * depth[label] + label:<46} {total:9.1f} us {own:7.1f} us "
              f"{calm:9.1f} us")
    print(f"    {'send task: switch, then fence, JSON + sign':<46} "
          f"{where['switch_us'] + where['sign_us']:7.1f} us (p50)")
    print(f"    the bookkeeping after the spawn (rows marked '{AFTER}') still runs before the "
          f"send task can: {where['after_spawn_us']:.1f} us a firing frame, with wrappers")
    print(f"2. loopback: sandbox frame out -> order in, durable commit included "
          f"({t['n']} firings; rules compiled and watcher started in {loop['startup_s']:.1f} s)")
    print(_line("frame out -> order in", t, "ms",
                f"   goal p50 < 1.5 ms: {verdict(t['p50'] < 1500)}, p99 < 15 ms: "
                f"{verdict(t['p99'] < 15000)}"))
    print(_line("  level2 frames", loop["level2"], "ms"))
    print(_line("  ticker frames", loop["ticker"], "ms"))
    print(_line("  frame out -> Store.fire called", loop["to_fire"], "ms"))
    print(_line("  Store.fire, in the path", loop["commit_in_path"], "ms"))
    print(_line("  Store.fire returned -> order in", loop["after_commit"], "ms"))
    print(_line("baseline: loopback floor (bare client, no decision)", fl, "ms")
          + f"   ratio {t['p50'] / fl['p50']:.1f}x")
    print(f"  collector during the run: {_gc(loop['gc'])}")
    print(f"  Store.fire alone on that file ({cm['full']['n']} calls each, alternating):")
    print(_line("  synchronous=FULL, back to back", cm["full"], "ms"))
    print(_line("  synchronous=OFF, back to back", cm["off"], "ms")
          + f"   FULL/OFF {cm['full']['p50'] / cm['off']['p50']:.2f}x")
    print(_line(f"  synchronous=FULL, after {IDLE_GAP_S * 1000:.0f} ms idle", cm["full_idle"],
                "ms"))
    print(_line(f"  synchronous=OFF, after {IDLE_GAP_S * 1000:.0f} ms idle", cm["off_idle"],
                "ms") + f"   FULL/OFF {cm['full_idle']['p50'] / cm['off_idle']['p50']:.2f}x")
    sql = ", ".join(f"{n} {k}" for k, n in sorted(cm["statements"].items()))
    print(f"  one FULL firing: {sum(cm['statements'].values())} SQL statements ({sql}); "
          f"profiled: sqlite3 commit (WAL write + fsync) {cm['sqlite_commit_ms']:.2f} ms, "
          f"sqlite3 execute {cm['sqlite_execute_ms']:.2f} ms, of {cm['plain_ms']:.2f} ms "
          "unprofiled (the rest is SQLAlchemy's ORM in Python)")
    print(f"3. memory of a watcher with {RULES:,} rules: {mem:.1f} MB (goal < 200 MB: "
          f"{verdict(mem < 200)}; peak while building {mem_peak:.1f} MB)")
    for what, mb in mem_steps[:-1]:
        print(f"  {what:<44} {mb:7.1f} MB")
    if args.json:
        print(json.dumps(result["figures"]))
    if args.profile:
        print("cProfile of the decision run on a fresh watcher (10,000 firing and 10,000 quiet "
              "frames), by own time:")
        print(dec["profile"])
        print("cProfile of Store.fire (synchronous=FULL), by own time:")
        print(cm["profile"])
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
