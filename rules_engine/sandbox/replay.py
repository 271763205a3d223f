"""Recorded candles as a market the sandbox replays under its clock: one rule, shared by the
backtest (in-process) and a sandbox served on a port (the live watcher's side of the parity
test), so both see the same ticks at the same moments.

    price_path(candle)             open, the nearer of high and low, the other, close
    path_ticks(info, candle)       the four (moment in ms, FeedTick) of one candle
    CandleReplay(table, candles)   a `Feed`: `step(now_ms)` returns the ticks of every path
                                   point at or before `now_ms` not yet returned, in order

The book at a point: ten levels a side one tick apart around the point (best bid one tick
under it, best ask one tick over), each holding a tenth of the candle's volume, and a print
of a quarter of the volume at the point (its taker side: buy when the price did not fall
from the previous point of the candle; the open is a buy). The points fall at 0, 1/4, 1/2
and 3/4 of the candle's period. Pure: no IO and no clock; the caller's clock picks the step.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from decimal import ROUND_DOWN, Decimal

from rules_engine.core.market import Candle
from rules_engine.core.symbols import SymbolInfo, SymbolTable
from rules_engine.sandbox.feeds import Candle as HourCandle
from rules_engine.sandbox.feeds import FeedTick, symbol_row

__all__ = ["LEVELS", "CandleReplay", "path_book", "path_ticks", "price_path"]

LEVELS = 10
Level = tuple[Decimal, Decimal]


def price_path(candle: Candle) -> list[Decimal]:
    """open, the nearer of high and low, the other, close (a tie goes to the low first)."""
    if candle.open - candle.low <= candle.high - candle.open:
        return [candle.open, candle.low, candle.high, candle.close]
    return [candle.open, candle.high, candle.low, candle.close]


def _floor(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def path_book(info: SymbolInfo, price: Decimal, volume: Decimal
              ) -> tuple[list[Level], list[Level]]:
    """Ten levels a side one tick apart around `price`, a tenth of `volume` each."""
    tick = info.price_increment
    size = max(_floor(volume / LEVELS, info.base_increment), info.base_min_size)
    bids = [(price - tick * (i + 1), size) for i in range(LEVELS) if price > tick * (i + 1)]
    asks = [(price + tick * (i + 1), size) for i in range(LEVELS)]
    return bids, asks


def path_ticks(info: SymbolInfo, candle: Candle, period_s: int) -> list[tuple[int, FeedTick]]:
    """The candle's four path points as the market at each: (moment in ms, tick)."""
    start = int(candle.open_time.timestamp() * 1000)
    step = period_s * 1000 // 4
    size = max(_floor(candle.volume / 4, info.base_increment), info.base_increment)
    out = []
    previous: Decimal | None = None
    for index, raw in enumerate(price_path(candle)):
        price = max(_floor(raw, info.price_increment), info.price_increment)
        bids, asks = path_book(info, price, candle.volume)
        side = "buy" if previous is None or price >= previous else "sell"
        previous = price
        out.append((start + index * step,
                    FeedTick(candle.symbol, tuple(bids), tuple(asks), (price, size, side))))
    return out


class CandleReplay:
    """A sandbox feed replaying `candles` (time order, `period_s` long each) as price paths:
    the first `step` returns the opening market (`opening()`, the sandbox seeds its books
    with it), each later `step(now_ms)` returns, in order, the ticks of the points whose
    moment is at or before `now_ms` and that no earlier step returned."""

    name = "replay"

    def __init__(self, table: SymbolTable, candles: Iterable[Candle], period_s: int) -> None:
        items = list(candles)
        if not items:
            raise ValueError("a candle replay needs at least one candle")
        symbols = sorted({c.symbol for c in items})
        unknown = [s for s in symbols if s not in table]
        if unknown:
            raise ValueError(f"symbols not in the symbol table ({table.source}): {unknown}")
        self._symbols = SymbolTable(symbols={s: table[s] for s in symbols}, as_of=table.as_of,
                                    source=table.source, derived=table.derived)
        self.period_s = period_s
        self.ticks = [tick for c in items for tick in path_ticks(table[c.symbol], c, period_s)]
        self.ticks.sort(key=lambda t: t[0])  # stable: symbols keep their order in a moment
        self.cursor = 0
        self.opened = False

    def opening(self) -> FeedTick:
        """The market before the start: the first point's tick."""
        return self.ticks[0][1]

    def moments(self) -> Iterator[int]:
        """The moments (ms) at which the market moves, each once, in order."""
        seen = None
        for at, _ in self.ticks:
            if at != seen:
                seen = at
                yield at

    def step(self, now_ms: int) -> list[FeedTick]:
        if not self.opened:  # the sandbox's first step seeds its books: the opening market
            self.opened = True
            return [self.opening()]
        out = []
        while self.cursor < len(self.ticks) and self.ticks[self.cursor][0] <= now_ms:
            out.append(self.ticks[self.cursor][1])
            self.cursor += 1
        return out

    def symbols(self) -> SymbolTable:
        return self._symbols

    def symbol_rows(self) -> list[dict[str, object]]:
        return [symbol_row(info) for info in self._symbols.symbols.values()]

    def history(self, symbol: str) -> list[HourCandle]:
        return []
