"""The market as the rules see it: per symbol ticker, level2 book, 24h stats and candles, each
value with its freshness verdict. Pure: no IO, no clock (`now` is an argument).

`MarketState.values` is the evaluator's `Market`: a mapping from the compiled leaves the rules
read to their current value, holding only values that are proven fresh. A value is fresh when

* its connection is alive (the public feed is `live`: welcomed, subscribed, answering pings,
  and proven current: a process that did not run for longer than the ping window reads old
  frames on resume, so its channel reports `stalled` and `live` is False until a ping sent
  after the stall is answered; adapters/kucoin/_ws.py);
* for book values (`bid ask mid spread bid_size ask_size`, `bid_depth`/`ask_depth`) of a
  symbol whose book is followed, the book is live: in sequence and not crossed. Such a symbol's
  bid and ask come from the book only, never from the ticker, so an out-of-sync book makes
  them unknown (the brief: "bid/ask come from the synced book when there is one");
* it is younger than the per-field age limit the config sets, if any (a quiet market on a live
  connection is fresh; without a limit, age alone never makes a value stale);
* candle values: the series is loaded, has no gap, and has enough closed candles.

`refresh(symbol, now)` recomputes the leaves of one symbol after an update and returns the
ones that changed, as `(leaf, old, new)` (None: unknown), which is what `RuleIndex.affected`
takes.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from rules_engine.compiler import model as M
from rules_engine.core.market import Stats24h, Ticker
from rules_engine.engine._values import epoch_seconds

__all__ = ["BOOK_FIELDS", "BookView", "CandleView", "MarketState", "needs_book", "put"]

BOOK_FIELDS = frozenset({"bid", "ask", "mid", "spread", "bid_size", "ask_size"})
_TWO = Decimal(2)


class BookView(Protocol):
    """What the market state reads of a level2 book (the adapter's `Level2Book`)."""

    bids: Any  # SortedDict price -> size
    asks: Any

    @property
    def fresh(self) -> bool: ...

    def best_bid(self) -> tuple[Decimal, Decimal] | None: ...

    def best_ask(self) -> tuple[Decimal, Decimal] | None: ...


class CandleView(Protocol):
    """What the market state reads of a candle series (`engine._candles.CandleSeries`)."""

    def value_of(self, leaf: M.Indicator | M.CandleField) -> Decimal | None: ...


def needs_book(leaf: object) -> str | None:
    """The symbol whose level2 book a leaf needs, or None."""
    if isinstance(leaf, M.Depth):
        return leaf.symbol
    if isinstance(leaf, M.Field) and leaf.name in BOOK_FIELDS:
        return leaf.symbol
    return None


class _Symbol:
    __slots__ = ("book", "candles", "leaves", "stats", "stats_at", "ticker", "ticker_at")

    def __init__(self) -> None:
        self.leaves: list[object] = []
        self.ticker: Ticker | None = None
        self.ticker_at: datetime | None = None
        self.stats: Stats24h | None = None
        self.stats_at: datetime | None = None
        self.book: BookView | None = None
        self.candles: dict[str, CandleView] = {}


class Change(NamedTuple):
    leaf: object
    old: Decimal | None
    new: Decimal | None


class MarketState:
    def __init__(
        self, leaves: Iterable[object], *, max_age: Mapping[str, float] | None = None
    ) -> None:
        self.values: dict[object, Decimal] = {}
        self.live = False  # the public feed's connection
        self.max_age = {k: timedelta(seconds=v) for k, v in (max_age or {}).items()}
        self._symbols: dict[str, _Symbol] = {}
        self._lapses: list[tuple[datetime, str]] = []  # (when a signal's window ends, name)
        self.add_leaves(leaves)

    def add_leaves(self, leaves: Iterable[object]) -> list[object]:
        """Follow more values (a reload); returns the ones that are new."""
        added = []
        for leaf in leaves:
            symbol = getattr(leaf, "symbol", None)
            if isinstance(symbol, str) and not isinstance(leaf, M.Chain):  # a rule's own
                entry = self._symbols.setdefault(symbol, _Symbol())
                if leaf not in entry.leaves:
                    entry.leaves.append(leaf)
                    added.append(leaf)
        return added

    @property
    def symbols(self) -> list[str]:
        return list(self._symbols)

    def book_symbols(self) -> list[str]:
        return [s for s, e in self._symbols.items() if any(needs_book(x) for x in e.leaves)]

    def candle_leaves(self) -> dict[tuple[str, str], list[M.Indicator | M.CandleField]]:
        """`(symbol, timeframe)` -> the candle values the rules read of it."""
        needs: dict[tuple[str, str], list[M.Indicator | M.CandleField]] = {}
        for symbol, entry in self._symbols.items():
            for leaf in entry.leaves:
                if isinstance(leaf, M.Indicator | M.CandleField):
                    needs.setdefault((symbol, leaf.timeframe), []).append(leaf)
        return needs

    def needs_stats(self, symbol: str) -> bool:
        entry = self._symbols.get(symbol)
        return entry is not None and any(
            isinstance(x, M.Field) and x.name in ("volume", "change") for x in entry.leaves
        )

    # ------------------------------------------------------------ inputs

    def set_book(self, symbol: str, book: BookView) -> None:
        self._entry(symbol).book = book

    def set_candles(self, symbol: str, timeframe: str, series: CandleView) -> None:
        self._entry(symbol).candles[timeframe] = series

    def ticker(self, symbol: str) -> Ticker | None:
        entry = self._symbols.get(symbol)
        return None if entry is None else entry.ticker

    def on_ticker(self, ticker: Ticker, now: datetime) -> None:
        entry = self._symbols.get(ticker.symbol)
        if entry is not None:
            entry.ticker, entry.ticker_at = ticker, now

    def on_stats(self, stats: Stats24h, now: datetime) -> None:
        entry = self._symbols.get(stats.symbol)
        if entry is not None:
            entry.stats, entry.stats_at = stats, now

    def _entry(self, symbol: str) -> _Symbol:
        return self._symbols.setdefault(symbol, _Symbol())

    # ------------------------------------------------------------ inbound signals

    def signal(self, name: str, at: datetime, windows: Iterable[int]) -> list[Change]:
        """An accepted `POST /signal` of `name` at `at`: its leaf's new value, and the moments
        its windows lapse (when `lapsed` says the leaf changed, so `not signal` rules see
        it). A signal is kept, never made unknown: its age decides, not a freshness limit."""
        leaf = M.Signal(name)
        old = self.values.get(leaf)
        new = epoch_seconds(at)
        self.values[leaf] = new
        for seconds in set(windows):
            heapq.heappush(self._lapses, (at + timedelta(seconds=seconds, microseconds=1),
                                          name))
        return [Change(leaf, old, new)]

    def lapsed(self, now: datetime) -> list[Change]:
        """Signals whose window (of some rule) passed since the last call: a change of their
        leaf in name only, so the index steps the rules that read it."""
        changes: list[Change] = []
        seen: set[str] = set()
        while self._lapses and self._lapses[0][0] <= now:
            _, name = heapq.heappop(self._lapses)
            value = self.values.get(M.Signal(name))
            if name not in seen and value is not None:
                seen.add(name)
                changes.append(Change(M.Signal(name), value, value))
        return changes

    # ------------------------------------------------------------ values

    def refresh(self, symbol: str, now: datetime) -> list[Change]:
        """Recompute the leaves of `symbol`; the ones whose value or freshness changed."""
        entry = self._symbols.get(symbol)
        if entry is None:
            return []
        changes: list[Change] = []
        for leaf in entry.leaves:
            put(self.values, leaf, self._compute(entry, leaf, now) if self.live else None,
                changes)
        return changes

    def refresh_all(self, now: datetime) -> list[Change]:
        changes: list[Change] = []
        for symbol in self._symbols:
            changes.extend(self.refresh(symbol, now))
        return changes

    def unknown_reason(self, leaf: object, now: datetime) -> str:
        """Why a ticker, book or stats value is not in `values` (for why-not-yet)."""
        if not self.live:
            return "the market feed is not live"
        symbol = getattr(leaf, "symbol", None)
        entry = self._symbols.get(symbol) if isinstance(symbol, str) else None
        if entry is None:
            return "not followed"
        name = leaf.name if isinstance(leaf, M.Field) else "depth"
        if name in ("volume", "change"):
            return self._age_reason(name, entry.stats_at, now, "no 24h stats from the feed yet")
        if name == "last" or entry.book is None:
            return self._age_reason("last" if name == "last" else "bid", entry.ticker_at, now,
                                    "no ticker from the feed yet")
        if not entry.book.fresh:
            return f"the {symbol} level2 book is not live (out of sequence, crossed or resyncing)"
        return "the book has no bid or no ask"

    def _age_reason(self, name: str, at: datetime | None, now: datetime, never: str) -> str:
        if at is None:
            return never
        limit = self.max_age.get(name)
        age = (now - at).total_seconds()
        if limit is not None and now - at > limit:
            return (f"its last update is {age:.1f} s old, over max_age.{name} "
                    f"{limit.total_seconds():g} s")
        return "unknown"

    def _young(self, name: str, at: datetime | None, now: datetime) -> bool:
        if at is None:
            return False
        limit = self.max_age.get(name)
        return limit is None or now - at <= limit

    def _compute(self, entry: _Symbol, leaf: object, now: datetime) -> Decimal | None:
        if isinstance(leaf, M.Field):
            return self._field(entry, leaf.name, now)
        if isinstance(leaf, M.Depth):
            return self._depth(entry, leaf, now)
        if isinstance(leaf, M.Indicator | M.CandleField):
            series = entry.candles.get(leaf.timeframe)
            return None if series is None else series.value_of(leaf)
        return None

    def _sides(
        self, entry: _Symbol, now: datetime
    ) -> tuple[tuple[Decimal, Decimal] | None, tuple[Decimal, Decimal] | None]:
        book = entry.book
        if book is not None:
            if not book.fresh:
                return None, None
            return book.best_bid(), book.best_ask()
        ticker = entry.ticker
        if ticker is None or not self._young("bid", entry.ticker_at, now):
            return None, None
        bid = (
            (ticker.best_bid, ticker.best_bid_size or Decimal(0))
            if ticker.best_bid is not None
            else None
        )
        ask = (
            (ticker.best_ask, ticker.best_ask_size or Decimal(0))
            if ticker.best_ask is not None
            else None
        )
        return bid, ask

    def _field(self, entry: _Symbol, name: str, now: datetime) -> Decimal | None:
        if name == "last":
            ticker = entry.ticker
            if ticker is None or not self._young("last", entry.ticker_at, now):
                return None
            return ticker.price
        if name in ("volume", "change"):
            stats = entry.stats
            if stats is None or not self._young(name, entry.stats_at, now):
                return None
            return stats.volume if name == "volume" else stats.change_rate
        bid, ask = self._sides(entry, now)
        if name == "bid":
            return None if bid is None else bid[0]
        if name == "ask":
            return None if ask is None else ask[0]
        if name == "bid_size":
            return None if bid is None else bid[1]
        if name == "ask_size":
            return None if ask is None else ask[1]
        if bid is None or ask is None:
            return None
        if name == "mid":
            return (bid[0] + ask[0]) / _TWO
        if name == "spread":
            return ask[0] - bid[0]
        return None

    def _depth(self, entry: _Symbol, leaf: M.Depth, now: datetime) -> Decimal | None:
        book = entry.book
        if book is None or not book.fresh:
            return None
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None:
            return None
        mid = (bid[0] + ask[0]) / _TWO
        total = Decimal(0)
        if leaf.side == "bid":
            floor = mid * (1 - leaf.pct)
            for price in reversed(book.bids):
                if price < floor:
                    break
                total += book.bids[price]
        else:
            ceiling = mid * (1 + leaf.pct)
            for price in book.asks:
                if price > ceiling:
                    break
                total += book.asks[price]
        return total


def put(values: dict[Any, Decimal], leaf: Any, new: Decimal | None,
        changes: list[Change]) -> None:
    """Set one leaf of the values the rules read (None: unknown, so absent), and note the
    change when its value or freshness changed."""
    old = values.get(leaf)
    if new != old:
        if new is None:
            del values[leaf]
        else:
            values[leaf] = new
        changes.append(Change(leaf, old, new))
