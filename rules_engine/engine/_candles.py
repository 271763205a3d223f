"""Candle functions over closed candles only, and the candle series the watcher keeps. Pure.

The language says candle functions (`sma`, `ema`, `rsi`, `high`, `low`, `close`) read closed
candles only. A `CandleSeries` holds one symbol's closed candles of one timeframe (the last
`keep` of them) and, apart from them, the candle that is still open. It is fed from KuCoin's
REST history at start (`load`), then from the WebSocket topic `/market/candles:SYMBOL_TYPE`,
which pushes the current candle again and again as it changes (`update`), and by the clock
(`advance`). A candle is closed once a candle with a later open time arrives, or once the
clock reaches its open time plus its interval. No method reads the clock: `now` is passed in.

Every feeding method returns a `Change`, true when the values may differ now (the closed
candles of a usable series changed, or the series became usable or unusable), so the watcher
re-reads values only then; its `note` says why a candle was ignored or why the series broke.

A hole (a missing interval between closed candles, or a whole interval that passed with no
candle) makes the series unusable until the next `load`: an average over a hole is wrong, and
so is `close(tf)` when the newest closed candle is missing. Its values are then None (unknown,
never fires) and `problem` says why. KuCoin publishes no candle for an interval without trades,
so an illiquid symbol's series breaks at its first quiet interval, and a re-load from REST
shows the same hole: the series stays unusable until candles are contiguous again.

The candle functions themselves (`sma`, `ema`, `rsi`, `highest`, `lowest`, `atr`, the
Bollinger bands, MACD, `vwap`, `change`) and their warm-ups are in engine/_indicators.py;
`high`, `low`, `close` and `volume` are those of the last closed candle, exactly as KuCoin
gave them. `CandleSeries.value` always hands a function exactly `history_needed` candles (the
newest ones), so its value is a function of a fixed window, whatever `keep` is.

`history_needed(kind, period, params)` is the number of closed candles a value needs; the watcher
fetches that many intervals before the current one, plus the current one (KuCoin returns at
most 1500 candles a request, so long warm-ups take several pages). Long warm-ups on slow
timeframes may reach further back than a symbol's history: rsi(1000, 1d) needs 7906 days. Such
a value stays None.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import islice, pairwise
from types import MappingProxyType
from typing import NamedTuple

from rules_engine.compiler import model as M
from rules_engine.core.market import Candle
from rules_engine.engine._indicators import (
    BAND_KINDS,
    FIELD_KINDS,
    INDICATOR_KINDS,
    MACD_KINDS,
    SEED_WEIGHT,
    atr,
    bollinger,
    change,
    ema,
    highest,
    history_needed,
    lowest,
    macd,
    rsi,
    sma,
    vwap,
)

__all__ = [
    "FIELD_KINDS",
    "INDICATOR_KINDS",
    "SEED_WEIGHT",
    "TIMEFRAME_TYPES",
    "CandleSeries",
    "Change",
    "Timeframe",
    "ema",
    "highest",
    "history_needed",
    "lowest",
    "rsi",
    "sma",
]


class Timeframe(NamedTuple):
    """A language timeframe as KuCoin knows it: its candle type and its length in seconds."""

    type: str
    seconds: int


TIMEFRAME_TYPES: Mapping[str, Timeframe] = MappingProxyType(
    {
        "1m": Timeframe("1min", 60),
        "5m": Timeframe("5min", 300),
        "15m": Timeframe("15min", 900),
        "1h": Timeframe("1hour", 3600),
        "4h": Timeframe("4hour", 14_400),
        "1d": Timeframe("1day", 86_400),
    }
)


def _compute(
    kind: str, window: list[Candle], period: int, params: tuple[Decimal, ...]
) -> Decimal | None:
    """The value of indicator `kind` over exactly its warm-up window of closed candles."""
    if kind in ("highest", "lowest", "atr", "vwap"):
        return {"highest": highest, "lowest": lowest, "atr": atr, "vwap": vwap}[kind](
            window, period
        )
    closes = [c.close for c in window]
    if kind in BAND_KINDS:
        width = params[0] if params else Decimal(2)
        bands = bollinger(closes, period, width)
        return None if bands is None else bands[("bb_lower", "bb_middle", "bb_upper").index(kind)]
    if kind in MACD_KINDS:
        slow, signal = (int(p) for p in params)
        values = macd(closes, period, slow, signal)
        return None if values is None else values[("macd", "macd_signal", "macd_hist").index(kind)]
    return {"sma": sma, "ema": ema, "rsi": rsi, "change": change}[kind](closes, period)


# ------------------------------------------------------------------ the series


@dataclass(frozen=True, slots=True)
class Change:
    """What `load`, `update` or `advance` did. True when the values may differ now (the closed
    candles of a usable series changed, or the series became usable or unusable); `note` says
    why a candle was ignored or why the series is unusable."""

    changed: bool
    note: str | None = None

    def __bool__(self) -> bool:
        return self.changed


class CandleSeries:
    """One symbol's candles of one timeframe: the last `keep` closed ones and the open one.

    Unusable (every value None, `problem` saying why) until the first `load`, and again from a
    hole until the next `load`.
    """

    def __init__(self, symbol: str, timeframe: str, *, keep: int) -> None:
        if timeframe not in TIMEFRAME_TYPES:
            raise ValueError(f"timeframe must be one of {', '.join(TIMEFRAME_TYPES)}")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep is a whole number of candles, at least 1, not {keep!r}")
        self.symbol = symbol
        self.timeframe = timeframe
        self.type, seconds = TIMEFRAME_TYPES[timeframe]
        self.interval = timedelta(seconds=seconds)
        self.keep = keep
        self._closed: deque[Candle] = deque(maxlen=keep)
        self._current: Candle | None = None
        self._problem: str | None = "not loaded"
        self._version = 0  # bumped whenever the closed candles change
        self._cache: dict[tuple[str, int | None, tuple[Decimal, ...]], Decimal | None] = {}

    # -------------------------------------------------------------- reading

    @property
    def closed(self) -> tuple[Candle, ...]:
        """The closed candles held, oldest first."""
        return tuple(self._closed)

    @property
    def current(self) -> Candle | None:
        """The candle still open, if one has been seen; it never counts in a value."""
        return self._current

    @property
    def problem(self) -> str | None:
        """Why the series is unusable, or None when it is usable."""
        return self._problem

    @property
    def usable(self) -> bool:
        return self._problem is None

    def value(
        self, kind: str, period: int | None = None, params: tuple[Decimal, ...] = ()
    ) -> Decimal | None:
        """The value of a candle function over the closed candles, None when unknown.

        Raises ValueError when the series keeps too few candles to ever have it.
        """
        need = history_needed(kind, period, params)
        if need > self.keep:
            shown = kind if period is None else f"{kind}({period})"
            raise ValueError(f"{shown} needs {need} closed candles; this series keeps {self.keep}")
        if self._problem is not None:
            return None
        key = (kind, period, params)
        if key in self._cache:
            return self._cache[key]
        result: Decimal | None
        if kind in FIELD_KINDS:
            result = getattr(self._closed[-1], kind) if self._closed else None
        else:
            assert period is not None  # history_needed checked it
            start = max(0, len(self._closed) - need)
            result = _compute(kind, list(islice(self._closed, start, None)), period, params)
        self._cache[key] = result
        return result

    def value_of(self, leaf: M.Indicator | M.CandleField) -> Decimal | None:
        """The value of a compiled leaf of this series' symbol and timeframe."""
        if leaf.symbol != self.symbol or leaf.timeframe != self.timeframe:
            raise ValueError(f"{leaf!r} is not of {self.symbol} {self.timeframe}")
        if isinstance(leaf, M.Indicator):
            return self.value(leaf.kind, leaf.period, leaf.params)
        return self.value(leaf.kind)

    # -------------------------------------------------------------- feeding

    def load(self, history: Iterable[Candle], now: datetime) -> Change:
        """Replace everything with REST history (oldest first). Every candle but the last is
        closed (a later one exists); the last is closed too unless it is still open at `now`."""
        candles = list(history)
        for candle in candles:
            self._check(candle)
        usable_before = self._problem is None
        problem: str | None = None
        for before, after in pairwise(candles):
            if after.open_time <= before.open_time:
                problem = (
                    f"history out of order: {_at(after.open_time)} after {_at(before.open_time)}"
                )
                break
        current = None
        if candles and candles[-1].open_time + self.interval > now:
            current = candles.pop()
        closed = candles[-self.keep :]
        moved = closed != list(self._closed)
        if moved:
            self._version += 1
        self._closed = deque(closed, maxlen=self.keep)
        self._current = current
        self._problem = problem
        if self._problem is None:
            self._problem = self._hole_in_closed() or self._quiet(now)
        self._cache.clear()
        usable = self._problem is None
        return Change(usable != usable_before or (usable and moved), self._problem)

    def update(self, candle: Candle, now: datetime) -> Change:
        """A WebSocket candle: the open candle again (replaces it), a later one (the open one
        closes; more than one interval later is a hole), or an older one (ignored, said in the
        note). A candle whose interval is already over at `now` closes at once."""
        self._check(candle)
        before = self._state()
        note: str | None = None
        current, last = self._current, self._closed[-1] if self._closed else None
        if current is not None and candle.open_time == current.open_time:
            self._current = candle
        elif current is not None and candle.open_time < current.open_time:
            note = (
                f"ignored a candle of {_at(candle.open_time)}: older than the open candle of "
                f"{_at(current.open_time)}"
            )
        elif current is None and last is not None and candle.open_time <= last.open_time:
            note = (
                f"ignored a candle of {_at(candle.open_time)}: the candle of "
                f"{_at(last.open_time)} is already closed"
            )
        else:
            previous = current if current is not None else last
            if current is not None:
                self._append(current)
            self._current = candle
            if previous is not None:
                note = self._follows(previous.open_time, candle.open_time)
        self._close_due(now)
        quiet = self._quiet(now)
        return self._change(before, note or quiet)

    def advance(self, now: datetime) -> Change:
        """Close the open candle once its interval is over at `now`; a whole interval without
        any candle is a hole."""
        before = self._state()
        self._close_due(now)
        return self._change(before, self._quiet(now))

    # -------------------------------------------------------------- internals

    def _check(self, candle: Candle) -> None:
        if candle.symbol != self.symbol or candle.interval != self.type:
            raise ValueError(
                f"a {candle.symbol} {candle.interval} candle fed to the {self.symbol} "
                f"{self.type} series"
            )

    def _state(self) -> tuple[int, bool]:
        # While unusable every value is None, whatever the candles do.
        usable = self._problem is None
        return (self._version if usable else -1), usable

    def _change(self, before: tuple[int, bool], note: str | None) -> Change:
        changed = self._state() != before
        if changed:
            self._cache.clear()
        return Change(changed, note)

    def _append(self, candle: Candle) -> None:
        self._closed.append(candle)
        self._version += 1

    def _close_due(self, now: datetime) -> None:
        current = self._current
        if current is not None and current.open_time + self.interval <= now:
            self._append(current)
            self._current = None

    def _break(self, reason: str) -> str:
        if self._problem is None:
            self._problem = reason
        return reason

    def _follows(self, earlier: datetime, later: datetime) -> str | None:
        """None when `later` opens one interval after `earlier`; else the hole, now recorded."""
        step = later - earlier
        if step == self.interval:
            return None
        missing, rest = divmod(step, self.interval)
        if rest:
            reason = (
                f"a candle of {_at(later)} is not a whole number of intervals after "
                f"{_at(earlier)}"
            )
        else:
            reason = f"{missing - 1} candle(s) missing between {_at(earlier)} and {_at(later)}"
        return self._break(reason)

    def _hole_in_closed(self) -> str | None:
        chain = [*self._closed, *([self._current] if self._current is not None else [])]
        for before, after in pairwise(chain):
            reason = self._follows(before.open_time, after.open_time)
            if reason is not None:
                return reason
        return None

    def _quiet(self, now: datetime) -> str | None:
        """A hole when no candle came for a whole interval after the last closed one."""
        if self._problem is not None or self._current is not None or not self._closed:
            return None
        expected = self._closed[-1].open_time + self.interval
        if expected + self.interval <= now:
            return self._break(f"no candle for the interval from {_at(expected)}")
        return None


def _at(moment: datetime) -> str:
    return moment.isoformat()
