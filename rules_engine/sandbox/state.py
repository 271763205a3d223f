"""One running sandbox's state: the engine, the feed, the clock, faults and what clients see.

`build_state` makes it from a config (and a `--state` file, if one exists); `SandboxState`
applies feed ticks and hands every engine event to its listeners (the WebSocket hub).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from rules_engine.core.symbols import SymbolTable
from rules_engine.sandbox import persist
from rules_engine.sandbox.clock import Clock, SystemClock
from rules_engine.sandbox.config import SandboxConfig
from rules_engine.sandbox.deadman import Deadman
from rules_engine.sandbox.deadman import check as check_deadman
from rules_engine.sandbox.engine import Engine, Event, L2Change, Stats, TradeEvent
from rules_engine.sandbox.feeds import CandleFeed, Feed, RecordedFeed, SyntheticFeed
from rules_engine.sandbox.journal import Journal, journal_path, read_journal
from rules_engine.sandbox.ratelimit import RateLimiter

__all__ = ["HISTORY_ROWS", "FeedStats", "History", "SandboxState", "build_state"]

HISTORY_ROWS = 500_000  # per symbol: about 3 hours of a busy synthetic feed


@dataclass
class History:
    """What the market showed (config `record_history`): after each book change, per symbol,
    `(sequence, time_ms, bid, bid_size, ask, ask_size)` as text, with the time on the
    sandbox's unskewed clock; and the most orders that were open at one moment. Soak audits
    check a watcher's decisions against it."""

    books: dict[str, deque[tuple[int, int, str, str, str, str]]] = field(default_factory=dict)
    open_orders_peak: int = 0


@dataclass
class FeedStats:
    """How punctually the feed loop ticks: a tick that starts late means the sandbox lags."""

    ticks: int = 0
    max_lag_ms: float = 0.0
    total_lag_ms: float = 0.0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=1000))

    def record(self, lag_ms: float) -> None:
        self.ticks += 1
        self.max_lag_ms = max(self.max_lag_ms, lag_ms)
        self.total_lag_ms += lag_ms
        self.recent.append(lag_ms)

    def as_dict(self) -> dict[str, float]:
        mean = self.total_lag_ms / self.ticks if self.ticks else 0.0
        ordered = sorted(self.recent)

        def pct(q: float) -> float:
            if not ordered:
                return 0.0
            return round(ordered[min(int(len(ordered) * q), len(ordered) - 1)], 3)

        return {"ticks": self.ticks, "max_lag_ms": round(self.max_lag_ms, 3),
                "mean_lag_ms": round(mean, 3), "p50_lag_ms": pct(0.5), "p99_lag_ms": pct(0.99)}


@dataclass
class SandboxState:
    """Everything one running sandbox holds. The engine is the only place orders live."""

    config: SandboxConfig
    feed: Feed
    clock: Clock = field(default_factory=SystemClock)
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state_file: Path | None = None
    engine: Engine = field(init=False)
    limiter: RateLimiter = field(init=False)
    symbols: SymbolTable = field(init=False)
    listeners: list[Callable[[list[Event]], None]] = field(default_factory=list)
    minute_candles: dict[str, dict[int, list[Decimal]]] = field(default_factory=dict)
    hold_replies: list[asyncio.Future[None]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    feed_stats: FeedStats = field(default_factory=FeedStats)
    recent_trades: dict[str, deque[TradeEvent]] = field(default_factory=dict)
    last_prune_ms: int = 0
    history: History = field(default_factory=History)
    journal: Journal | None = None
    journal_fills: int = 0  # the last fill sequence the journal holds
    journal_ledger: int = 0  # and the last ledger entry id
    deadman: Deadman | None = None  # the armed dead-man switch (DCP), if any
    deadman_fired: list[tuple[int, int]] = field(default_factory=list)  # (time, orders)
    # Minutes of the sandbox's own trades kept for candles and 24 h stats: all of them
    # (None), or those of the last N seconds (a backtest over a year keeps a day and a bit).
    minutes_kept_s: int | None = None

    def __post_init__(self) -> None:
        self.symbols = self.feed.symbols()
        self.clock.offset_ms = self.config.faults.clock_skew_ms
        self.engine = Engine(
            self.symbols, self.config.balances, maker_fee=self.config.maker_fee_rate,
            taker_fee=self.config.taker_fee_rate, id_prefix=self.instance_id[:8],
            retention_ms=self.config.done_order_retention_ms,
            max_open_per_symbol=self.config.max_open_orders_per_symbol,
        )
        self.limiter = RateLimiter(self.config.quotas)
        for symbol in self.symbols:
            history = self.feed.history(symbol)
            if history:
                self.engine.stats[symbol].last = history[-1].close

    def now_ms(self) -> int:
        return self.clock.now_ms()

    def stats_24h(self, symbol: str) -> Stats:
        """Rolling 24 h figures: the feed's history candles, then the sandbox's own trades."""
        return self.stats_window(symbol, 86_400)

    def stats_window(self, symbol: str, seconds: int) -> Stats:
        """Rolling figures over the last `seconds` (1 h, 4 h, 24 h for the snapshot topic)."""
        live = self.minute_candles.get(symbol, {})
        first_live = min(live) if live else None
        start = self.now_ms() // 1000 - seconds
        rows: list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal, Decimal]] = [
            (c.start_s, c.open, c.close, c.high, c.low, c.volume, c.turnover)
            for c in self.feed.history(symbol)
            if c.start_s >= start and (first_live is None or c.start_s + 3600 <= first_live)
        ]
        rows += [(m, *r) for m, r in sorted(live.items()) if m >= start]  # type: ignore[misc]
        current = self.engine.stats[symbol]
        if not rows:
            return current
        return Stats(
            last=current.last or rows[-1][2], last_size=current.last_size, open=rows[0][1],
            high=max(r[3] for r in rows), low=min(r[4] for r in rows),
            vol=sum((r[5] for r in rows), Decimal(0)), vol_value=sum((r[6] for r in rows),
                                                                       Decimal(0)),
        )

    def publish(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, TradeEvent):
                self._candle(event)
                trades = self.recent_trades.get(event.symbol)
                if trades is None:
                    trades = self.recent_trades[event.symbol] = deque(maxlen=100)
                trades.append(event)
        if events and self.config.record_history:
            self._record(events)
        if not events:
            return
        journal = self.journal
        if journal is None:
            self._push(events)
            return
        record = persist.delta(self.engine, events, self.journal_fills, self.journal_ledger)
        if record is not None:
            self.journal_fills = self.engine.fill_counter
            self.journal_ledger = self.engine.ledger_counter
            journal.append(record)
        journal.after(lambda: self._push(events))  # nothing confirms it before its fsync

    def _push(self, events: list[Event]) -> None:
        for listener in list(self.listeners):
            listener(events)

    def set_deadman(self, armed: Deadman | None) -> None:
        """Arm, renew or disarm the dead-man switch; with `--state` it is journaled, so a
        restarted sandbox still fires it."""
        self.deadman = armed
        if self.journal is not None:
            self.journal.append({"deadman": None if armed is None else armed.as_json()})

    async def settled(self) -> None:
        """Return once every change made so far is durable (at once without `--state`)."""
        if self.journal is not None:
            await self.journal.settled()

    async def save(self, *, clean: bool = False) -> None:
        """Write the snapshot and empty the journal (`--state` only)."""
        path = self.state_file
        if path is None:
            return
        if self.journal is None:
            persist.save(self, path, clean=clean)
            return
        await self.journal.compact(lambda n: persist.save(self, path, n, clean=clean))

    def _record(self, events: list[Event]) -> None:
        changed = {e.symbol for e in events if isinstance(e, L2Change)}
        now = self.clock.base_ms()
        for symbol in changed:
            seq, bids, asks = self.engine.snapshot(symbol, 1)
            rows = self.history.books.get(symbol)
            if rows is None:
                rows = self.history.books[symbol] = deque(maxlen=HISTORY_ROWS)
            bid, bid_size = (str(bids[0][0]), str(bids[0][1])) if bids else ("", "")
            ask, ask_size = (str(asks[0][0]), str(asks[0][1])) if asks else ("", "")
            rows.append((seq, now, bid, bid_size, ask, ask_size))
        engine = self.engine
        open_now = sum(len(ids) for ids in engine.open_ids.values()) + sum(
            1 for order in engine.stop_orders.values() if order.active)
        self.history.open_orders_peak = max(self.history.open_orders_peak, open_now)

    def _candle(self, trade: TradeEvent) -> None:
        minute = trade.time_ms // 60_000 * 60
        buckets = self.minute_candles.setdefault(trade.symbol, {})
        row = buckets.get(minute)
        price, size = trade.price, trade.size
        if row is None:
            buckets[minute] = [price, price, price, price, size, price * size]
        else:
            row[1] = price
            row[2] = max(row[2], price)
            row[3] = min(row[3], price)
            row[4] += size
            row[5] += price * size

    def feed_step(self, *, force: bool = False) -> None:
        """Apply one tick of the market feed (and expire GTT orders). A stalled feed
        (`stall_feed` fault) does nothing unless `force` (the book's first seeding). The
        dead-man switch is checked first, stalled or not."""
        check_deadman(self)
        if self.config.faults.stall_feed and not force:
            return
        now = self.now_ms()
        events: list[Event] = []
        for tick in self.feed.step(now):
            events.extend(
                self.engine.apply_feed(tick.symbol, tick.bids, tick.asks, now, tick.trade)
            )
        events.extend(self.engine.expire(now))
        self.publish(events)
        if now - self.last_prune_ms >= 60_000:
            self.last_prune_ms = now
            self.engine.prune(now)
            if self.minutes_kept_s is not None:
                oldest = now // 1000 - self.minutes_kept_s
                for buckets in self.minute_candles.values():
                    for minute in [m for m in buckets if m < oldest]:
                        del buckets[minute]


def build_state(config: SandboxConfig, *, feed_name: str | None = None,
                feed: Feed | None = None, seed: int = 1, speed: float = 1.0,
                clock: Clock | None = None, state_file: Path | None = None) -> SandboxState:
    """A state around a built-in feed (`feed_name`: synthetic, the default, candles or
    recorded; `seed` and `speed` tune it) or around a feed object given by the caller (`feed`,
    such as an `ExternalFeed`, whose symbol table becomes the sandbox's)."""
    clock = clock or SystemClock()
    start = clock.now_ms()
    if feed is not None:
        if feed_name is not None and feed_name != feed.name:
            raise ValueError(f"feed_name {feed_name!r} does not match the feed given "
                             f"({feed.name!r})")
    elif feed_name == "external":
        raise ValueError("the external feed is driven by its caller: build an "
                         "ExternalFeed(table, symbols) and pass it as feed=")
    elif feed_name not in (None, "synthetic", "candles", "recorded"):
        raise ValueError(f"unknown feed {feed_name!r}")
    elif feed_name == "recorded":
        feed = RecordedFeed(start_ms=start, level_count=config.level_count, speed=speed)
    elif feed_name == "candles":
        feed = CandleFeed(seed=seed, start_ms=start, interval_ms=config.feed_interval_ms,
                          level_count=config.level_count, speed=speed if speed != 1.0 else 60.0,
                          symbols=config.synthetic_symbols)
    else:
        feed = SyntheticFeed(seed=seed, start_ms=start, interval_ms=config.feed_interval_ms,
                             level_count=config.level_count, speed=speed,
                             symbols=config.synthetic_symbols)
    if state_file is None:
        return SandboxState(config=config, feed=feed, clock=clock)
    saved = persist.load(state_file) if state_file.exists() else None
    lines = read_journal(journal_path(state_file))
    state = SandboxState(config=config, feed=feed, clock=clock, state_file=state_file,
                         **({"instance_id": saved["instance_id"]} if saved else {}))
    if saved is None and lines:
        saved = persist.empty_document(state.instance_id)
        saved["clean"] = False
    last_n = persist.restore(state, saved, lines) if saved else 0
    state.journal_fills = state.engine.fill_counter
    state.journal_ledger = state.engine.ledger_counter
    state.journal = Journal(journal_path(state_file), last_n)
    # Start from one snapshot holding everything: the journal begins empty.
    state.journal.compact_now(lambda n: persist.save(state, state_file, n))
    return state
