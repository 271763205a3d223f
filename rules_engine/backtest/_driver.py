"""The backtest: the live watcher's parts, unchanged, over a candle history on a virtual
clock, against the sandbox's matching engine in the same process.

    candles (streamed) -> price path -> sandbox Engine (apply_feed: fills resting orders)
                       -> Hub frames -> the adapter's handlers -> Watcher (Feeds, Firing,
                          OrderManager, HeldOrders) -> KucoinVenue -> in-process transport
                          -> sandbox handlers -> Engine
    virtual clock: each path point, and every moment a timer falls due between them, runs
    the watcher's jobs (clock, cancels, lookups, reconciliation, heartbeat, why-not-yet)
    through the scheduler's guard

The price path of a candle (`sandbox/replay.py`, shared with a served sandbox): open, then
the nearer of high and low, then the other, then close, at 0, 1/4, 1/2 and 3/4 of its
period (the open is nearer the low: open, low, high, close). At each point the market is a
book of ten levels a side one tick apart around the point (best bid one tick under, best ask
one tick over), each holding a tenth of the candle's volume, and a print of a quarter of its
volume at the point. So a resting limit order fills
when the path trades through its price (by one tick); a market order walks those levels.

Skipping: a candle whose range (with the last price applied) crosses no threshold a rule
reads, no resting order's price or stop, while no order is unproven, being cancelled or held
by the engine, and during which no timer falls due, is not applied at all: no rule could
decide anything else on it (`RuleIndex.affected` answers for the thresholds). A symbol whose
rules read anything else of it (candles, 24h stats, book sizes or depth, or a rule that is
not a threshold rule) is never skipped.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from rules_engine.adapters.kucoin import Credentials, KucoinRest, Secret
from rules_engine.backtest._local import (
    InProcessSession,
    LocalFeed,
    LocalVenue,
    capture,
)
from rules_engine.backtest._record import Recorder
from rules_engine.compiler import CompiledRule
from rules_engine.compiler import model as M
from rules_engine.core.market import Candle
from rules_engine.core.symbols import SymbolTable
from rules_engine.runtime._config import WatcherConfig
from rules_engine.runtime._reload import traded_symbols
from rules_engine.runtime._watcher import Watcher
from rules_engine.sandbox.clock import ManualClock
from rules_engine.sandbox.config import DEMO_KEY, DEMO_PASSPHRASE, DEMO_SECRET, SandboxConfig
from rules_engine.sandbox.feeds import ExternalFeed, Feed, FeedTick
from rules_engine.sandbox.replay import path_ticks, price_path
from rules_engine.sandbox.state import build_state
from rules_engine.sandbox.ws import CANDLE_TYPES
from rules_engine.store import Store

__all__ = ["PRICE_FIELDS", "BacktestError", "Run", "Samples", "Settings", "next_due",
           "price_path", "run_backtest"]

PRICE_FIELDS = frozenset({"last", "bid", "ask", "mid", "spread"})
FAR = datetime.max.replace(tzinfo=UTC)
History = Callable[[str, str, datetime, datetime], list[Candle]]


class BacktestError(Exception):
    """The backtest cannot run: the message says why and what to do."""


@dataclass
class Settings:
    start: datetime
    end: datetime
    timeframe_s: int
    balances: dict[str, Decimal]
    maker_fee: Decimal = Decimal("0.001")
    taker_fee: Decimal = Decimal("0.001")
    db: str = "sqlite://"
    skip: bool = True
    # The open orders' REST lookups (live: every 60 s, a net for a lost push); the
    # in-process stream loses nothing, so a backtest runs them once a simulated hour.
    reconcile_interval_s: float = 3600.0
    # The why-not-yet rows (live: every 5 s, for `status`): a backtest's store is read
    # afterwards if at all, so once a simulated day (a run of it costs about 0.6 ms); the
    # job still runs, as it runs live.
    why_interval_s: float = 86400.0
    progress: Callable[[datetime], None] | None = None


class Samples:
    """A series at candle closes in bounded memory: every point while there are at most
    `2 x limit`, then every `stride`-th (a power of two, doubled as the history grows),
    always with the last."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self.points: list[tuple[datetime, Decimal]] = []
        self.stride = 1
        self.seen = 0
        self.last: tuple[datetime, Decimal] | None = None

    def add(self, at: datetime, value: Decimal) -> None:
        point = (at, value)
        if self.seen % self.stride == 0:
            self.points.append(point)
            if len(self.points) > 2 * self.limit:
                del self.points[1::2]
                self.stride *= 2
        self.last = point
        self.seen += 1

    def series(self) -> list[tuple[datetime, Decimal]]:
        out = list(self.points)
        if self.last is not None and (not out or out[-1] is not self.last):
            out.append(self.last)
        return out

    def __iter__(self) -> Iterator[tuple[datetime, Decimal]]:
        return iter(self.series())

    def __len__(self) -> int:
        return len(self.series())


@dataclass
class Run:
    """What happened: the watcher's decisions (its output lines), the orders it sent, the
    engine's fills, and the account's equity at each candle close."""

    quote: str
    decisions: list[dict[str, Any]] = field(default_factory=list)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    fills: list[dict[str, Any]] = field(default_factory=list)
    outcomes: dict[str, tuple[str, str, Decimal]] = field(default_factory=dict)
    unit: str = "candles"  # what the run stepped through: candles, or recorded updates
    # The equity and each symbol's close at candle closes, sampled (`Samples`) so memory
    # does not grow with the history; what the report needs of them is kept exactly.
    equity: Samples = field(default_factory=Samples)
    prices: dict[str, Samples] = field(default_factory=dict)
    end_equity: Decimal | None = None
    peak: Decimal | None = None
    max_drawdown: Decimal = Decimal(0)
    closes: int = 0
    exposed_closes: int = 0  # candle closes with more of a traded base than at the start
    last_close: dict[str, Decimal] = field(default_factory=dict)
    start_balances: dict[str, Decimal] = field(default_factory=dict)
    end_balances: dict[str, Decimal] = field(default_factory=dict)
    first_open: dict[str, Decimal] = field(default_factory=dict)
    candles: int = 0
    stepped: int = 0
    skipped: int = 0
    seconds: float = 0.0
    stop_reason: str = ""


def next_due(watcher: Watcher) -> datetime | None:
    """The first moment a timer of `watcher` falls due: a timed rule, a `cancel after`, a
    deferred firing, an `exit after` deadline, a TWAP slice. A clock that is moved stops at
    each (the backtest's, and the parity test's live watcher's)."""
    firing = watcher.firing
    times = [t for t in (watcher.rules.timers.earliest(), watcher.orders.next_cancel_after(),
                         min(firing.deferred.values()) if firing.deferred else None,
                         watcher.held_orders.next_exit(), firing.slices.next_due())
             if t is not None]
    return min(times) if times else None


class _Driver:
    def __init__(self, rules: list[CompiledRule], table: SymbolTable, history: History,
                 settings: Settings, market: Feed | None = None) -> None:
        """`market`: the sandbox's feed when it is not the candles the driver pushes (a
        recorded session, `_recorded.py`)."""
        self.settings = settings
        self.table = table
        self.symbols = traded_symbols(rules)
        missing = [s for s in self.symbols if s not in table]
        if missing:
            raise BacktestError(f"symbols not in the symbol table: {', '.join(missing)}")
        quotes = {table[s].quote_currency for s in self.symbols}
        if len(quotes) != 1:
            raise BacktestError("the rules trade symbols of several quote currencies "
                                f"({', '.join(sorted(quotes))}): backtest one quote at a time")
        self.quote = quotes.pop()
        self.clock = ManualClock(current_ms=int(settings.start.timestamp() * 1000))
        self.feed = ExternalFeed(table, self.symbols)
        config = SandboxConfig(balances=settings.balances, maker_fee_rate=settings.maker_fee,
                               taker_fee_rate=settings.taker_fee,
                               max_open_orders_per_symbol=10_000)
        if market is not None:
            unknown = [s for s in self.symbols if s not in market.symbols()]
            if unknown:
                raise BacktestError(
                    f"the recorded market has no {', '.join(unknown)}; it has "
                    f"{', '.join(sorted(market.symbols().symbols))}")
        self.state = build_state(config, feed=market or self.feed, clock=self.clock)
        # The sandbox's own minute candles serve its 24 h stats: a day and an hour is enough,
        # so memory does not grow with the history.
        self.state.minutes_kept_s = 90_000
        self.engine = self.state.engine
        self.conn = capture(self.state)
        self.session = InProcessSession(self.state)
        credentials = Credentials(DEMO_KEY, Secret(DEMO_SECRET), Secret(DEMO_PASSPHRASE))
        self.rest = KucoinRest("http://backtest.invalid", credentials,
                               session=self.session,  # type: ignore[arg-type]
                               attempts=1, wall_ms=self.clock.now_ms)
        self.venue = LocalVenue(self.rest, self.conn)
        self.local_feed = LocalFeed(self.rest, self.conn, history)
        self.store = Store(settings.db, durable=False)
        self.run = Run(self.quote)
        self.recorder = Recorder(self._now)
        self.run.decisions, self.run.orders, self.run.fills = (
            self.recorder.decisions, self.recorder.orders, self.recorder.fills)
        self.watcher = Watcher(
            rules, symbols=table, store=self.store,
            config=WatcherConfig(mode="sandbox", order_family="hf",
                                 reconcile_interval_s=settings.reconcile_interval_s),
            venue=self.venue, feed=self.local_feed, emit=self.recorder.emit, now=self._now,
            scheduled=False)
        self.last: dict[str, Decimal] = {}  # the last price applied to the venue
        self.marks: dict[str, Decimal] = {}  # the last close, for equity
        self.partial: dict[tuple[str, str], list[Any]] = {}
        self.reconcile_at: datetime | None = None
        self.why_at: datetime | None = None
        self.bands: dict[str, tuple[Decimal, Decimal, datetime] | None] = {}

    # ------------------------------------------------------------ the watcher's side

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.current_ms / 1000, UTC)

    def _deliver(self) -> bool:
        sink = self.conn.sink
        if not sink:
            return False
        frames, self.conn.sink = sink, []
        private, public = self.venue.handler, self.local_feed.handler
        for raw in frames:
            frame = orjson.loads(raw)
            topic = str(frame.get("topic", ""))
            handler = private if topic.startswith(("/spotMarket/", "/account/")) else public
            if handler is not None:
                handler(frame)
        return True

    async def drain(self) -> None:
        """Until nothing moves: frames delivered, then the tasks they spawned (sends,
        snapshots, lookups) run to their end."""
        ctx = self.watcher.ctx
        for _ in range(10_000):
            moved = self._deliver()
            tasks = [t for t in ctx.tasks if not t.done()]
            if tasks:
                _, running = await asyncio.wait(tasks, timeout=30)
                if running:
                    raise BacktestError("a task of the watcher did not finish within 30 s "
                                        "of real time: " + ", ".join(map(str, running)))
                continue
            if not moved:
                self._take_fills()
                return
        raise BacktestError("the watcher and the venue kept answering each other")

    def next_due(self) -> datetime | None:
        return next_due(self.watcher)

    async def jobs(self) -> None:
        """The jobs a live watcher's scheduler runs, at this virtual moment, each run as the
        scheduler runs it (one that fails stops the watcher with the reason)."""
        w = self.watcher
        run = w.jobs.run_once
        now = self._now()
        await run(w.jobs.clock_job)
        await self.drain()
        await run(w.orders.timer_job)  # cancels asked again, lookups, `cancel after` due
        await self.drain()
        if time.monotonic() - w.orders.lease_renewed > 1.0:
            await run(w.jobs.heartbeat_job)
        config = w.ctx.config
        if self.reconcile_at is None or now >= self.reconcile_at:
            self.reconcile_at = now + timedelta(seconds=config.reconcile_interval_s)
            if w.orders.tracked:
                await run(w.jobs.reconcile_job)
                await self.drain()
        if self.why_at is None or now >= self.why_at:
            self.why_at = now + timedelta(seconds=self.settings.why_interval_s)
            await run(w.jobs.why_job)
        if w.ctx.stop.is_set():
            raise BacktestError(f"the watcher stopped: {w.ctx.stop_reason}")

    async def advance_to(self, ms: int) -> None:
        """Move the clock to `ms`, stopping at every moment a timer falls due before it."""
        while True:
            due = self.next_due()
            if due is None:
                break
            due_ms = int(due.timestamp() * 1000)
            if due_ms >= ms:
                break
            self.clock.current_ms = max(due_ms, self.clock.current_ms)
            await self.jobs()
            if self.next_due() == due:  # nothing consumed it: do not spin on it
                break
        self.clock.current_ms = max(ms, self.clock.current_ms)

    # ------------------------------------------------------------ the market's side

    async def point(self, candle: Candle, tick: FeedTick, at_ms: int, share: int) -> None:
        """One point of the candle's path (`sandbox/replay.py`): the timers due before it,
        the jobs at it, then its market."""
        symbol = candle.symbol
        await self.advance_to(at_ms)
        await self.jobs()
        assert tick.trade is not None
        self.feed.push(symbol, tick.bids, tick.asks, trade=tick.trade)
        self.last[symbol] = price = tick.trade[0]
        self.state.feed_step(force=True)
        await self.drain()
        if self.local_feed.public is not None and self.local_feed.public.candles:
            self._candle_frames(symbol, candle, price, share)
            await self.drain()

    def _candle_frames(self, symbol: str, candle: Candle, price: Decimal, share: int) -> None:
        """The candle topics the watcher follows, as KuCoin pushes them: the open candle so
        far (the data candle's path up to this point, within its own timeframe's bucket)."""
        assert self.local_feed.public is not None
        start = int(candle.open_time.timestamp())
        seen = price_path(candle)[:share]
        high, low = max(seen), min(seen)
        volume = candle.volume * share / 4
        turnover = candle.turnover * share / 4
        for name, kind in self.local_feed.public.candles:
            if name != symbol:
                continue
            granularity = CANDLE_TYPES[kind]
            bucket = start - start % granularity
            done = self.partial.get((name, kind))
            if done is None or done[0] != bucket:
                row = [bucket, candle.open, price, high, low, volume, turnover]
            else:
                row = [bucket, done[1], price, max(done[3], high), min(done[4], low),
                       done[5] + volume, done[6] + turnover]
            if share == 4:
                self.partial[(name, kind)] = row
            self.conn.sink.append(orjson.dumps({
                "topic": f"/market/candles:{name}_{kind}", "type": "message",
                "subject": "trade.candles.update",
                "data": {"symbol": name, "candles": [str(row[0])] + [str(v) for v in row[1:]],
                         "time": self.clock.current_ms * 1_000_000}}))

    def unskippable(self) -> set[str]:
        """Symbols whose rules read something a skipped candle would change."""
        out = set()
        index = self.watcher.rules.index
        for leaf in index.leaves():
            symbol = getattr(leaf, "symbol", None)
            other = not isinstance(leaf, M.Field) or leaf.name not in PRICE_FIELDS
            # A non-threshold rule reading the value is selected by any move of it.
            if other or index.affected(leaf, Decimal(1), Decimal(1)):
                out.add(str(symbol))
        if self.local_feed.public is not None:
            out.update(s for s, _ in self.local_feed.public.candles)
        return out

    def band(self, symbol: str, never: set[str]) -> tuple[Decimal, Decimal, datetime] | None:
        """The quiet band of `symbol` (None: no candle of it may be skipped now): a candle
        whose low and high lie strictly inside `(low, high)` (the nearest threshold of a rule
        and resting order price on either side of the last price applied, two ticks in) and
        that ends by `until` (the first timer due) is quiet. Nothing a skipped candle does
        changes any of these, so the band holds until a candle is stepped."""
        w = self.watcher
        if (not self.settings.skip or symbol in never or symbol not in self.last
                or w.orders.pending or w.orders.busy() or w.held_orders.held
                or w.held_orders.legs):
            return None
        last = self.last[symbol]
        below: Decimal | None = None
        above: Decimal | None = None
        index = w.rules.index
        engine = self.engine
        prices = [engine.orders[oid].req.price for oid in engine.open_ids.get(symbol, ())]
        for name in PRICE_FIELDS:
            prices.extend(index.around(M.Field(symbol, name), last))
        for price in prices:
            if price is None or price == last:
                return None
            if price < last:
                below = price if below is None else max(below, price)
            else:
                above = price if above is None else min(above, price)
        if any(s.symbol == symbol for s in engine.stops(self.clock.current_ms, symbol)):
            return None
        firing = w.firing
        dues = [d for d in (w.orders.next_cancel_after(),
                            min(firing.deferred.values()) if firing.deferred else None,
                            # A rule's moment already due (a rule cooling past its re-arm
                            # time while its chain is in flight) was stepped at the last
                            # point, and a rule's state changes with time only at its due
                            # moments: stepping it again later decides the same.
                            w.rules.timers.earliest_after(self._now()))
                if d is not None]
        tick = self.table[symbol].price_increment * 2
        return (below + tick if below is not None else Decimal("-Infinity"),
                above - tick if above is not None else Decimal("Infinity"),
                min(dues) if dues else FAR)

    def quiet(self, candle: Candle, period_s: int, never: set[str]) -> bool:
        """No rule, order or timer could act on `candle` (see `band`)."""
        bands = self.bands
        symbol = candle.symbol
        if symbol not in bands:
            bands[symbol] = self.band(symbol, never)
        band = bands[symbol]
        return (band is not None and band[0] < candle.low and candle.high < band[1]
                and candle.open_time + timedelta(seconds=period_s) <= band[2])

    # ------------------------------------------------------------ the run

    def holdings(self) -> tuple[Decimal, list[tuple[str, Decimal]], bool]:
        """The quote held, each symbol's base held (when any), and whether more of a traded
        base is held than at the start: constant while candles are skipped."""
        account, run = self.engine.account, self.run
        bases = []
        exposed = False
        for symbol in self.symbols:
            base = self.table[symbol].base_currency
            held = account.total(base)
            if held:
                bases.append((symbol, held))
            exposed = exposed or held > run.start_balances.get(base, Decimal(0))
        return account.total(self.quote), bases, exposed

    def record(self, end: datetime, symbol: str, close: Decimal,
               holdings: tuple[Decimal, list[tuple[str, Decimal]], bool]) -> None:
        """One candle close: the equity (quote + each base at its last close), its peak and
        drawdown, the time in the market, the sampled series."""
        run = self.run
        quote, bases, exposed = holdings
        equity = quote
        marks = self.marks
        for name, held in bases:
            mark = marks.get(name)
            if mark is not None:
                equity += held * mark
        if run.peak is None:
            run.peak = max(equity, self.start_equity())
        elif equity > run.peak:
            run.peak = equity
        if run.peak > 0 and equity < run.peak:
            drawdown = (run.peak - equity) / run.peak
            run.max_drawdown = max(run.max_drawdown, drawdown)
        run.end_equity = equity
        run.closes += 1
        run.exposed_closes += exposed
        run.equity.add(end, equity)
        run.prices[symbol].add(end, close)
        run.last_close[symbol] = close

    def start_equity(self) -> Decimal:
        """The starting balances at each symbol's first open (quote + bases)."""
        run = self.run
        total = run.start_balances.get(run.quote, Decimal(0))
        for symbol, price in run.first_open.items():
            total += run.start_balances.get(self.table[symbol].base_currency,
                                            Decimal(0)) * price
        return total

    async def go(self, candles: Iterator[Candle]) -> Run:
        run = self.run
        began = time.monotonic()
        period = self.settings.timeframe_s
        step_ms = period * 1000 // 4
        first = next(candles, None)
        if first is None:
            raise BacktestError("no candles in the period asked for")
        for symbol in self.symbols:
            run.start_balances[self.table[symbol].base_currency] = self.engine.account.total(
                self.table[symbol].base_currency)
        run.start_balances[self.quote] = self.engine.account.total(self.quote)
        # The market before the start: the first candle's open, so the start reads a book.
        self.clock.current_ms = int(first.open_time.timestamp() * 1000)
        _, opening = path_ticks(self.table[first.symbol], first, period)[0]
        assert opening.trade is not None
        self.feed.push(first.symbol, opening.bids, opening.asks, trade=opening.trade)
        self.state.feed_step(force=True)
        self.last[first.symbol] = opening.trade[0]
        self.conn.sink.clear()
        await self.watcher.start()
        await self.drain()
        never = self.unskippable()
        quiet, progress, length = self.quiet, self.settings.progress, timedelta(seconds=period)
        holdings = self.holdings()
        try:
            for candle in _chain(first, candles):
                run.candles += 1
                symbol = candle.symbol
                if symbol not in run.first_open:
                    run.first_open[symbol] = candle.open
                    run.prices[symbol] = Samples()
                if quiet(candle, period, never):
                    run.skipped += 1
                    at = int(candle.open_time.timestamp() * 1000)
                    self.clock.current_ms = max(self.clock.current_ms, at + 3 * step_ms)
                else:
                    run.stepped += 1
                    info = self.table[symbol]
                    for share, (at, tick) in enumerate(path_ticks(info, candle, period), 1):
                        await self.point(candle, tick, at, share)
                    self.bands.clear()
                    holdings = self.holdings()
                end = candle.open_time + length
                self.marks[symbol] = candle.close
                self.record(end, symbol, candle.close, holdings)
                if progress is not None:
                    progress(end)
            await self.advance_to(int(self.settings.end.timestamp() * 1000))
        finally:
            run.stop_reason = self.watcher.stop_reason
            await self.watcher.close()
            self.store.close()
        self._collect()
        run.seconds = time.monotonic() - began
        return run

    def _take_fills(self) -> None:
        self.recorder.take_fills(self.engine)

    def _collect(self) -> None:
        run = self.run
        self._take_fills()
        run.outcomes = self.recorder.outcomes(self.engine)
        for currency in {*run.start_balances, *self.engine.account.totals}:
            run.end_balances[currency] = self.engine.account.total(currency)


def _chain(first: Candle, rest: Iterator[Candle]) -> Iterator[Candle]:
    yield first
    yield from rest


def merged(series: list[Iterator[Candle]]) -> Iterator[Candle]:
    """Several symbols' candles in time order."""
    if len(series) == 1:
        return series[0]
    return heapq.merge(*series, key=lambda c: (c.open_time, c.symbol))


async def run_backtest(rules: list[CompiledRule], table: SymbolTable, candles: Iterator[Candle],
                       history: History, settings: Settings) -> Run:
    driver = _Driver(rules, table, history, settings)
    return await driver.go(candles)
