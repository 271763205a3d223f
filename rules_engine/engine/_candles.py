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

Indicators, all over closes of closed candles, all None without enough of them:

* `sma(closes, n)`: the mean of the last n closes.
* `ema(closes, n)`: alpha = 2/(n+1), seeded with the SMA of the first n closes given, then run
  over the rest. The result depends on how many closes it is given: the seed's weight in it is
  ((n-1)/(n+1))**k after k further closes. `ema` requires that weight to be at most 0.1%
  (`SEED_WEIGHT`), about 3.45(n+1) closes after the seed (ema(14): 63 closes, ema(200): 891).
* `rsi(closes, n)`: Wilder's smoothing: the averages of the first n changes seed the average
  gain and loss, then avg = (prev*(n-1)+cur)/n; RSI = 100 - 100/(1 + gain/loss), 100 when
  there were no losses, 0 when there were no gains, 50 (neutral) when neither (libraries
  disagree there: TradingView says 100 and TA-Lib 0, and either would let a flat market fire an
  overbought or oversold rule). The seed's weight is ((n-1)/n)**k after k further changes, held
  to 0.1% as for `ema`: about 6.9n changes after the seed (rsi(14): 109 closes, rsi(200):
  1580).
* `high`, `low`, `close`: of the last closed candle, exactly as KuCoin gave them.

`CandleSeries.value` always hands `ema` and `rsi` exactly `history_needed` closes (the newest
ones), so their value is a function of a fixed window: the same after a restart as after a
week of running, whatever `keep` is.

Arithmetic runs in a local decimal context of 50 digits (`ROUND_HALF_EVEN`, traps on), never
the caller's. SMA and EMA are rounded half-even to 8 decimal places more than the finest close
they read (closes in 0.1 give 9 places): far finer than any price increment, and independent of
how the sum was formed. RSI is rounded half-even to 8 decimal places (it lies in 0..100).

`history_needed(kind, period)` is the number of closed candles a value needs; the watcher
fetches that many intervals before the current one, plus the current one (KuCoin returns at
most 1500 candles a request, so long warm-ups take several pages). Long warm-ups on slow
timeframes may reach further back than a symbol's history: rsi(1000, 1d) needs 7906 days. Such
a value stays None.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import (
    ROUND_CEILING,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from fractions import Fraction
from itertools import islice, pairwise
from types import MappingProxyType
from typing import NamedTuple

from rules_engine.compiler import model as M
from rules_engine.core.market import Candle

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

INDICATOR_KINDS = frozenset({"sma", "ema", "rsi", "highest", "lowest"})
EXTREME_KINDS = frozenset({"highest", "lowest"})  # over candles' highs and lows, not closes
FIELD_KINDS = frozenset({"high", "low", "close"})

SEED_WEIGHT = Fraction(1, 1000)  # the most the seed of an EMA or RSI may weigh in its value
EXTRA_PLACES = 8  # SMA and EMA: decimal places beyond the finest close
RSI_QUANTUM = Decimal("1E-8")

_CONTEXT = Context(
    prec=50,
    rounding=ROUND_HALF_EVEN,
    Emin=-999_999,
    Emax=999_999,
    traps=[InvalidOperation, DivisionByZero, Overflow],
)
_ZERO = Decimal(0)
_HUNDRED = Decimal(100)


# ------------------------------------------------------------------ warm-up


def _check_period(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"a period is a whole number of candles, at least 1, not {n!r}")


@functools.cache
def _decay_steps(keep: Fraction) -> int:
    """The fewest steps k with keep**k <= SEED_WEIGHT, for 0 <= keep < 1 (exact)."""
    if keep == 0:
        return 0
    with localcontext(_CONTEXT) as ctx:
        estimate = Decimal(SEED_WEIGHT.numerator).ln() - Decimal(SEED_WEIGHT.denominator).ln()
        estimate /= Decimal(keep.numerator).ln() - Decimal(keep.denominator).ln()
        k = int(estimate.to_integral_value(rounding=ROUND_CEILING, context=ctx))

    def enough(steps: int) -> bool:
        return keep**steps <= SEED_WEIGHT

    # The logarithms only estimate; exact rational powers decide.
    while not enough(k):
        k += 1
    while k > 0 and enough(k - 1):
        k -= 1
    return k


def history_needed(kind: str, period: int | None = None) -> int:
    """How many closed candles the value of `kind` (with `period` for an indicator) needs.

    sma(n), highest(n), lowest(n): n.
    ema(n): n, plus the closes after the seed that bring its weight to 0.1%.
    rsi(n): n + 1 (n changes for the seed), plus the changes that bring its weight to 0.1%.
    high, low, close: 1 (they take no period).
    """
    if kind in FIELD_KINDS:
        if period is not None:
            raise ValueError(f"{kind} takes no period")
        return 1
    if kind not in INDICATOR_KINDS:
        raise ValueError(f"not a candle function: {kind!r}")
    if period is None:
        raise ValueError(f"{kind} needs a period")
    _check_period(period)
    if kind == "sma" or kind in EXTREME_KINDS:
        return period
    if kind == "ema":
        return period + _decay_steps(Fraction(period - 1, period + 1))
    return period + 1 + _decay_steps(Fraction(period - 1, period))


# ------------------------------------------------------------------ indicators


def _places(closes: Iterable[Decimal]) -> Decimal:
    """The rounding step of an SMA or EMA: 8 decimal places finer than the finest close."""
    finest: int | None = None
    for close in closes:
        exponent = close.as_tuple().exponent
        if not isinstance(exponent, int):
            raise ValueError(f"a close must be a finite number, not {close}")
        finest = exponent if finest is None else min(finest, exponent)
    assert finest is not None  # callers pass at least one close
    return Decimal(1).scaleb(finest - EXTRA_PLACES)


def sma(closes: Sequence[Decimal], n: int) -> Decimal | None:
    """The mean of the last `n` closes, or None with fewer than `n`."""
    _check_period(n)
    if len(closes) < n:
        return None
    window = closes[len(closes) - n :]
    with localcontext(_CONTEXT):
        mean = sum(window, _ZERO) / n
        return mean.quantize(_places(window))


def ema(closes: Sequence[Decimal], n: int) -> Decimal | None:
    """The EMA of all `closes` (alpha = 2/(n+1), seeded with the SMA of the first n), or None
    with fewer than `history_needed("ema", n)` (the seed would weigh more than 0.1%)."""
    _check_period(n)
    if len(closes) < history_needed("ema", n):
        return None
    with localcontext(_CONTEXT):
        alpha = Decimal(2) / (n + 1)
        average = sum(closes[:n], _ZERO) / n
        for close in islice(closes, n, None):
            average += alpha * (close - average)
        return average.quantize(_places(closes))


def rsi(closes: Sequence[Decimal], n: int) -> Decimal | None:
    """Wilder's RSI of all `closes`, or None with fewer than `history_needed("rsi", n)`."""
    _check_period(n)
    if len(closes) < history_needed("rsi", n):
        return None
    with localcontext(_CONTEXT):
        gains: list[Decimal] = []
        losses: list[Decimal] = []
        for before, after in pairwise(closes):
            change = after - before
            gains.append(change if change > 0 else _ZERO)
            losses.append(-change if change < 0 else _ZERO)
        gain = sum(gains[:n], _ZERO) / n
        loss = sum(losses[:n], _ZERO) / n
        for up, down in zip(gains[n:], losses[n:], strict=True):
            gain = (gain * (n - 1) + up) / n
            loss = (loss * (n - 1) + down) / n
        if loss == 0:
            result = _HUNDRED if gain > 0 else Decimal(50)
        elif gain == 0:
            result = _ZERO
        else:
            result = _HUNDRED - _HUNDRED / (1 + gain / loss)
        return result.quantize(RSI_QUANTUM)


def highest(candles: Sequence[Candle], n: int) -> Decimal | None:
    """The highest high of the last `n` closed candles, or None with fewer than `n`."""
    _check_period(n)
    if len(candles) < n:
        return None
    return max(c.high for c in candles[len(candles) - n :])


def lowest(candles: Sequence[Candle], n: int) -> Decimal | None:
    """The lowest low of the last `n` closed candles, or None with fewer than `n`."""
    _check_period(n)
    if len(candles) < n:
        return None
    return min(c.low for c in candles[len(candles) - n :])


_INDICATORS: Mapping[str, Callable[[Sequence[Decimal], int], Decimal | None]] = {
    "sma": sma,
    "ema": ema,
    "rsi": rsi,
}


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
        self._cache: dict[tuple[str, int | None], Decimal | None] = {}

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

    def value(self, kind: str, period: int | None = None) -> Decimal | None:
        """The value of a candle function over the closed candles, None when unknown.

        Raises ValueError when the series keeps too few candles to ever have it.
        """
        need = history_needed(kind, period)
        if need > self.keep:
            shown = kind if period is None else f"{kind}({period})"
            raise ValueError(f"{shown} needs {need} closed candles; this series keeps {self.keep}")
        if self._problem is not None:
            return None
        key = (kind, period)
        if key in self._cache:
            return self._cache[key]
        result: Decimal | None
        if kind in FIELD_KINDS:
            result = getattr(self._closed[-1], kind) if self._closed else None
        elif kind in EXTREME_KINDS:
            assert period is not None
            start = max(0, len(self._closed) - need)
            window = list(islice(self._closed, start, None))
            result = (highest if kind == "highest" else lowest)(window, period)
        else:
            assert period is not None  # history_needed checked it
            start = max(0, len(self._closed) - need)
            closes = [c.close for c in islice(self._closed, start, None)]
            result = _INDICATORS[kind](closes, period)
        self._cache[key] = result
        return result

    def value_of(self, leaf: M.Indicator | M.CandleField) -> Decimal | None:
        """The value of a compiled leaf of this series' symbol and timeframe."""
        if leaf.symbol != self.symbol or leaf.timeframe != self.timeframe:
            raise ValueError(f"{leaf!r} is not of {self.symbol} {self.timeframe}")
        if isinstance(leaf, M.Indicator):
            return self.value(leaf.kind, leaf.period)
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
