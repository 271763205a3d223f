"""Market data in: the public stream's events into books, tickers, 24h stats and candle
series, kept in the `MarketState`; each symbol that moved is handed to `on_changed`.

    frame -> MarketFeed (parsed to core events) -> book / ticker / stats / candle
          -> MarketState.refresh (only fresh values) -> on_changed(changes)

A sequence gap or a malformed level2 message means "fetch a fresh snapshot", never "patch
it up": the book is marked stale (its values unknown) until a snapshot joins the deltas.

A stream that reports `stalled` (this process did not run for longer than the feed's ping
window: what it reads now is that old) makes the feed stale like a drop, recorded as
`feed.stalled` with the stall's length, until the stream proves itself current again (a pong
to a ping sent after the stall); then every book is resynced as after a reconnect. `check()`
asks the stream first, before any decision on the market (`Firing.evaluate`, the clock), so a
timer that fires on resume before any frame is read decides on nothing stale either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from rules_engine.adapters.kucoin import BookDelta, BookState, Level2Book, Step
from rules_engine.compiler import model as M
from rules_engine.core.market import Candle, Stats24h, Ticker
from rules_engine.core.outcome import Outcome
from rules_engine.engine._candles import TIMEFRAME_TYPES, CandleSeries, history_needed
from rules_engine.ports import Stream
from rules_engine.runtime._context import Context
from rules_engine.runtime._market import MarketState

__all__ = ["Feeds"]


class Feeds:
    def __init__(self, ctx: Context, market: MarketState, extra_books: list[str],
                 on_changed: Callable[[str, list[Any], datetime], None],
                 on_market: Callable[[str], None] | None = None) -> None:
        """`extra_books`: symbols whose book is followed even if no rule reads it;
        `on_changed(symbol, changes, now)`: a symbol moved (its refreshed values);
        `on_market(symbol)`: called first (paper mode hands the book to the local venue)."""
        self.ctx = ctx
        self.market = market
        self.extra_books = list(dict.fromkeys(extra_books))
        self.on_changed = on_changed
        self.on_market = on_market
        self.books: dict[str, Level2Book] = {}
        self.series: dict[tuple[str, str], CandleSeries] = {}
        self.lag_s: dict[str, float] = {}  # per symbol: its latest ticker's delay
        self.last_event: dict[str, datetime] = {}  # per symbol: its latest public event
        self.followed: set[str] = set()
        self.public: Stream | None = None
        self._fetching: set[str] = set()

    # ------------------------------------------------------------ subscriptions

    def new_topics(self) -> list[str]:
        """The public topics the rules need that are not followed yet (all of them at start;
        after a reload, the new ones), with a book for each new level2 symbol."""
        now = self.ctx.now()
        books = [s for s in dict.fromkeys([*self.market.book_symbols(), *self.extra_books])
                 if s not in self.books]
        for symbol in books:
            book = Level2Book(symbol, now)
            self.books[symbol] = book
            self.market.set_book(symbol, book)
        every = list(dict.fromkeys([*self.market.symbols, *self.extra_books]))
        tickers = [s for s in every if s not in self.followed]
        self.followed.update(tickers)
        stats = [s for s in every
                 if self.market.needs_stats(s) and f"stats:{s}" not in self.followed]
        candles = [(s, TIMEFRAME_TYPES[tf].type) for s, tf in self.series
                   if f"candles:{s}:{tf}" not in self.followed]
        self.followed.update(f"stats:{s}" for s in stats)
        self.followed.update(f"candles:{s}:{tf}" for s, tf in self.series)
        return self.ctx.feed.topics(tickers, books, stats, candles)

    def start(self) -> None:
        public = self.ctx.feed.stream(self.on_event, self.on_bad, self.on_state)
        public.subscribe(self.new_topics())
        self.public = public
        self.ctx.spawn(public.run(self.ctx.stop))

    async def resubscribe(self) -> None:
        """After a reload: the new topics, and fresh snapshots of every book."""
        topics = self.new_topics()
        if topics and self.public is not None:
            self.public.subscribe(topics)
            await self.public.reconnect()

    async def load_candles(self, read: Callable[[str, Callable[[], Awaitable[Outcome]]],
                                                Awaitable[Outcome]]) -> None:
        """The closed-candle history each candle value needs, read with the start's
        patience (`read(what, call)`); a series already loaded is kept when it holds enough
        candles for every value now read of it."""
        now = self.ctx.now()
        for (symbol, timeframe), reads in self.market.candle_leaves().items():
            kind, seconds = TIMEFRAME_TYPES[timeframe]
            count = max(
                history_needed(leaf.kind, leaf.period, leaf.params)
                if isinstance(leaf, M.Indicator)
                else history_needed(leaf.kind)
                for leaf in reads
            )
            loaded = self.series.get((symbol, timeframe))
            if loaded is not None and loaded.keep >= count:
                continue  # a reload that adds a longer warm-up loads the series again
            if count > 1400:
                self.ctx.event("candles.error", {
                    "symbol": symbol, "timeframe": timeframe,
                    "error": f"{count} candles needed, more than KuCoin serves in one "
                             "request (1500)"})
            series = CandleSeries(symbol, timeframe, keep=max(count, 10))
            start = now - timedelta(seconds=seconds * (min(count, 1400) + 2))
            reply = await read(f"{symbol}'s {timeframe} candles",
                               partial(self.ctx.feed.candles_reply, symbol, kind, start, now))
            candles = self.ctx.feed.candles_of(symbol, kind, reply)
            if isinstance(candles, str):
                self.ctx.event("candles.error", {"symbol": symbol, "timeframe": timeframe,
                                                 "error": candles})
            else:
                series.load(candles, now)
            self.series[(symbol, timeframe)] = series
            self.market.set_candles(symbol, timeframe, series)

    # ------------------------------------------------------------ the stream

    def check(self) -> None:
        """Before a decision on the market: a stream that did not prove itself current
        within its window (the process stalled) is reported `stalled` now (`on_state`)."""
        if self.public is not None and self.market.live:
            self.public.check()

    def on_state(self, state: str, reason: str) -> None:
        now = self.ctx.now()
        live = state == "live"
        if live == self.market.live and not live:
            return
        self.market.live = live
        if live:
            self.ctx.event("feed.live", {})
            for symbol in self.books:
                self.resync(symbol, "feed (re)connected")
            # A quiet symbol sends no ticker until it trades: start from REST level1.
            self.ctx.spawn(self._level1(list(self.market.symbols)))
        else:
            if state == "stalled":
                stalled_s = self.public.stalled_s if self.public is not None else None
                self.ctx.event("feed.stalled", {"stalled_s": stalled_s, "reason": reason})
            else:
                self.ctx.event("feed.stale", {"reason": reason})
            for book in self.books.values():
                book.mark_stale(reason, now)
        self.on_changed("", self.market.refresh_all(now), now)

    def on_bad(self, topic: str, error: str) -> None:
        """A payload that did not parse: logged; a level2 one makes its book resync."""
        now = self.ctx.now()
        self.ctx.event("feed.bad_payload", {"topic": topic, "error": error})
        if topic.startswith("/market/level2:"):
            symbol = topic.split(":", 1)[1]
            book = self.books.get(symbol)
            if book is not None:
                book.mark_stale("a malformed level2 message", now)
                book.state = BookState.SYNCING
                self.resync(symbol, "malformed level2 message")
                self.changed(symbol, now)

    def on_event(self, symbol: str, event: object) -> None:
        """One public event (a frame's payload as a core value)."""
        try:
            self._on_event(symbol, event)
        except Exception as error:  # a bug: stop cleanly with the reason, never loop on it
            self.ctx.fail_on(error)

    def _on_event(self, symbol: str, event: object) -> None:
        now = self.ctx.now()
        if symbol:
            self.last_event[symbol] = now
        if isinstance(event, BookDelta):
            book = self.books.get(symbol)
            if book is None:
                return
            result = book.on_delta(event, now)
            if result is Step.RESYNC:
                self.ctx.event("book.gap", {"symbol": symbol, "reason": book.reason})
                self.resync(symbol, book.reason)
                self.changed(symbol, now)
            elif result is Step.BUFFERED and book.state is not BookState.LIVE:
                self.resync(symbol, book.reason)
            elif result is Step.APPLIED:
                self.changed(symbol, now)
        elif isinstance(event, Ticker):
            # The feed's lag: from the exchange's time of the ticker to its arrival here.
            self.lag_s[event.symbol] = round((now - event.time).total_seconds(), 3)
            self.market.on_ticker(event, now)
            self.changed(event.symbol, now)
        elif isinstance(event, Stats24h):
            self.market.on_stats(event, now)
            self.changed(event.symbol, now)
        elif isinstance(event, Candle):
            for (name, timeframe), series in self.series.items():
                same = name == event.symbol and TIMEFRAME_TYPES[timeframe].type == event.interval
                if same and series.update(event, now):
                    self.changed(name, now)

    def changed(self, symbol: str, now: datetime) -> None:
        if self.on_market is not None:
            self.on_market(symbol)
        self.on_changed(symbol, self.market.refresh(symbol, now), now)

    def advance(self, now: datetime) -> list[Any]:
        """The clock's part: candles that closed, values past their age limit."""
        self.check()
        changes: list[Any] = []
        for (symbol, _), series in self.series.items():
            if series.advance(now):
                changes.extend(self.market.refresh(symbol, now))
        if self.market.max_age:
            changes.extend(self.market.refresh_all(now))
        changes.extend(self.market.lapsed(now))
        return changes

    # ------------------------------------------------------------ REST reads

    async def _level1(self, symbols: list[str]) -> None:
        for symbol in symbols:
            ticker = await self.ctx.feed.level1(symbol)
            entry = self.market.ticker(symbol)
            if isinstance(ticker, Ticker) and (entry is None or (
                ticker.sequence is not None and entry.sequence is not None
                and ticker.sequence > entry.sequence
            )):  # never older than what the feed already sent
                self.market.on_ticker(ticker, self.ctx.now())
                self.changed(symbol, self.ctx.now())

    def resync(self, symbol: str, reason: str) -> None:
        if symbol in self._fetching or self.ctx.stop.is_set():
            return
        self._fetching.add(symbol)
        self.ctx.spawn(self._snapshot(symbol, reason))

    async def _snapshot(self, symbol: str, reason: str) -> None:
        try:
            snapshot = await self.ctx.feed.snapshot(symbol, 100)
            book = self.books[symbol]
            now = self.ctx.now()
            if isinstance(snapshot, str):
                self.ctx.event("book.snapshot_failed", {"symbol": symbol, "error": snapshot})
                return
            result = book.on_snapshot(snapshot.sequence, snapshot.bids, snapshot.asks, now)
            self.ctx.event("book.resync", {"symbol": symbol, "reason": reason,
                                           "sequence": snapshot.sequence, "live": book.fresh})
            if result is Step.APPLIED:
                self.changed(symbol, now)
        finally:
            self._fetching.discard(symbol)
        if self.books[symbol].state is not BookState.LIVE and not self.ctx.stop.is_set():
            await asyncio.sleep(0.2)
            self.resync(symbol, "the snapshot did not join the deltas")
