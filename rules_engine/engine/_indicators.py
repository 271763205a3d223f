"""The candle functions as pure functions over closed candles, and their warm-ups. Pure.

Each takes the closed candles (or their closes), oldest first, and returns None without enough
of them. `CandleSeries.value` (engine/_candles.py) always hands a function exactly its
`history_needed` newest candles, so every value is a function of a fixed window: the same
after a restart as after a week of running.

* `sma(closes, n)`: the mean of the last n closes.
* `ema(closes, n)`: alpha = 2/(n+1), seeded with the SMA of the first n closes given, then run
  over the rest. The seed's weight in it is ((n-1)/(n+1))**k after k further closes; `ema`
  requires that weight to be at most 0.1% (`SEED_WEIGHT`), about 3.45(n+1) closes after the
  seed (ema(14): 63 closes, ema(200): 891).
* `rsi(closes, n)`: Wilder's smoothing: the averages of the first n changes seed the average
  gain and loss, then avg = (prev*(n-1)+cur)/n; RSI = 100 - 100/(1 + gain/loss), 100 when
  there were no losses, 0 when there were no gains, 50 (neutral) when neither (libraries
  disagree there: TradingView says 100 and TA-Lib 0, and either would let a flat market fire an
  overbought or oversold rule). The seed's weight is ((n-1)/n)**k after k further changes, held
  to 0.1% as for `ema`: about 6.9n changes after the seed (rsi(14): 109 closes).
* `highest(candles, n)` / `lowest(candles, n)`: the highest high / lowest low of the last n.
* `atr(candles, n)`: Wilder's average true range. The true range of a candle is the largest of
  high - low, |high - previous close| and |low - previous close|, so it needs the candle before;
  the mean of the first n true ranges seeds the average, then avg = (prev*(n-1)+tr)/n, with
  the seed held to 0.1% as for `rsi` (warm-up as `rsi`: atr(14): 109 candles).
* `bollinger(closes, n, k)`: (lower, middle, upper): the middle is sma(n); the bands are k
  population standard deviations of the last n closes below and above it (Bollinger's own
  definition divides by n, as TradingView and TA-Lib do). Warm-up n.
* `macd(closes, fast, slow, signal)`: (line, signal, histogram). The line is
  ema(fast) - ema(slow), both run from the start of the window; the signal is the EMA(signal)
  of the line, seeded with the mean of its first `signal` values, the first of which is taken
  once the slow EMA's seed weighs at most 0.1%; the histogram is line - signal, exactly (both
  are rounded first). Warm-up: ema's warm-up for slow, plus ema's warm-up for signal, less one.
  MACD(12, 26, 9): 155 closes.
* `vwap(candles, n)`: the volume-weighted mean of the typical price (high + low + close) / 3
  of the last n candles, weighted by their base volume: a rolling VWAP, not one anchored to a
  session. None when the n candles traded nothing. Warm-up n.
* `change(closes, n)`: the change rate of the close over n candles: close / (the close n
  candles before) - 1; 0.05 is +5%. Warm-up n + 1.

Arithmetic runs in a local decimal context of 50 digits (`ROUND_HALF_EVEN`, traps on), never
the caller's. Prices (SMA, EMA, ATR, the bands, the MACD values, VWAP) are rounded half-even
to 8 decimal places more than the finest price they read (closes in 0.1 give 9 places): far
finer than any price increment, and independent of how the sum was formed. RSI is rounded
half-even to 8 decimal places (it lies in 0..100), `change` to 12 (a rate).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
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
from typing import NamedTuple

from rules_engine.core.market import Candle

__all__ = [
    "BAND_KINDS",
    "CANDLE_KINDS",
    "CLOSE_KINDS",
    "FIELD_KINDS",
    "INDICATOR_KINDS",
    "MACD_KINDS",
    "SEED_WEIGHT",
    "Macd",
    "atr",
    "bollinger",
    "change",
    "ema",
    "highest",
    "history_needed",
    "lowest",
    "macd",
    "rsi",
    "sma",
    "vwap",
]

BAND_KINDS = frozenset({"bb_upper", "bb_middle", "bb_lower"})
MACD_KINDS = frozenset({"macd", "macd_signal", "macd_hist"})
# Functions of closes only, and functions that read whole candles (highs, lows, volumes).
CLOSE_KINDS = frozenset({"sma", "ema", "rsi", "change"}) | BAND_KINDS | MACD_KINDS
CANDLE_KINDS = frozenset({"highest", "lowest", "atr", "vwap"})
INDICATOR_KINDS = CLOSE_KINDS | CANDLE_KINDS
FIELD_KINDS = frozenset({"high", "low", "close", "volume"})  # of the last closed candle

SEED_WEIGHT = Fraction(1, 1000)  # the most the seed of an EMA, RSI or ATR may weigh
EXTRA_PLACES = 8  # prices: decimal places beyond the finest price read
RSI_QUANTUM = Decimal("1E-8")
RATE_QUANTUM = Decimal("1E-12")

CONTEXT = Context(
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
    with localcontext(CONTEXT) as ctx:
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


def _ema_needed(n: int) -> int:
    return n + _decay_steps(Fraction(n - 1, n + 1))


def _macd_periods(fast: int, params: Sequence[Decimal]) -> tuple[int, int]:
    if len(params) != 2 or any(p != p.to_integral_value() or p < 1 for p in params):
        raise ValueError(f"MACD takes slow and signal periods after fast, not {params!r}")
    slow, signal = (int(p) for p in params)
    if not fast < slow:
        raise ValueError(f"MACD's fast period ({fast}) must be below its slow one ({slow})")
    return slow, signal


def history_needed(kind: str, period: int | None = None, params: Sequence[Decimal] = ()) -> int:
    """How many closed candles the value of `kind` (with `period`, and `params` for the bands'
    width and MACD's slow and signal periods) needs.

    sma, highest, lowest, vwap, the bands: n. change: n + 1.
    ema(n): n, plus the closes after the seed that bring its weight to 0.1%.
    rsi(n), atr(n): n + 1 (n changes or true ranges for the seed), plus the steps that bring
    its weight to 0.1%.
    macd(fast, slow, signal): ema's warm-up for slow, plus ema's warm-up for signal, less one.
    high, low, close, volume: 1 (they take no period).
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
    if kind in MACD_KINDS:
        slow, signal = _macd_periods(period, params)
        return _ema_needed(slow) + _ema_needed(signal) - 1
    if kind == "ema":
        return _ema_needed(period)
    if kind in ("rsi", "atr"):
        return period + 1 + _decay_steps(Fraction(period - 1, period))
    if kind == "change":
        return period + 1
    return period


# ------------------------------------------------------------------ rounding


def places(prices: Iterable[Decimal]) -> Decimal:
    """The rounding step of a price-valued indicator: 8 places finer than the finest price."""
    finest: int | None = None
    for price in prices:
        exponent = price.as_tuple().exponent
        if not isinstance(exponent, int):
            raise ValueError(f"a price must be a finite number, not {price}")
        finest = exponent if finest is None else min(finest, exponent)
    assert finest is not None  # callers pass at least one price
    return Decimal(1).scaleb(finest - EXTRA_PLACES)


def _prices(candles: Iterable[Candle]) -> Iterable[Decimal]:
    for c in candles:
        yield c.high
        yield c.low
        yield c.close


# ------------------------------------------------------------------ of closes


def sma(closes: Sequence[Decimal], n: int) -> Decimal | None:
    """The mean of the last `n` closes, or None with fewer than `n`."""
    _check_period(n)
    if len(closes) < n:
        return None
    window = closes[len(closes) - n :]
    with localcontext(CONTEXT):
        mean = sum(window, _ZERO) / n
        return mean.quantize(places(window))


def ema(closes: Sequence[Decimal], n: int) -> Decimal | None:
    """The EMA of all `closes` (alpha = 2/(n+1), seeded with the SMA of the first n), or None
    with fewer than `history_needed("ema", n)` (the seed would weigh more than 0.1%)."""
    _check_period(n)
    if len(closes) < history_needed("ema", n):
        return None
    with localcontext(CONTEXT):
        alpha = Decimal(2) / (n + 1)
        average = sum(closes[:n], _ZERO) / n
        for close in islice(closes, n, None):
            average += alpha * (close - average)
        return average.quantize(places(closes))


def rsi(closes: Sequence[Decimal], n: int) -> Decimal | None:
    """Wilder's RSI of all `closes`, or None with fewer than `history_needed("rsi", n)`."""
    _check_period(n)
    if len(closes) < history_needed("rsi", n):
        return None
    with localcontext(CONTEXT):
        gains: list[Decimal] = []
        losses: list[Decimal] = []
        for before, after in pairwise(closes):
            step = after - before
            gains.append(step if step > 0 else _ZERO)
            losses.append(-step if step < 0 else _ZERO)
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


def bollinger(
    closes: Sequence[Decimal], n: int, k: Decimal
) -> tuple[Decimal, Decimal, Decimal] | None:
    """(lower, middle, upper) of the last `n` closes, `k` population standard deviations
    apart from their mean; None with fewer than `n`."""
    _check_period(n)
    if not k > 0:
        raise ValueError(f"a band's width is a positive number of deviations, not {k}")
    if len(closes) < n:
        return None
    window = closes[len(closes) - n :]
    step = places(window)
    with localcontext(CONTEXT):
        mean = sum(window, _ZERO) / n
        deviation = (sum(((c - mean) ** 2 for c in window), _ZERO) / n).sqrt()
        width = k * deviation
        return (
            (mean - width).quantize(step),
            mean.quantize(step),
            (mean + width).quantize(step),
        )


class Macd(NamedTuple):
    line: Decimal
    signal: Decimal
    histogram: Decimal


def macd(closes: Sequence[Decimal], fast: int, slow: int, signal: int) -> Macd | None:
    """MACD(fast, slow, signal) of all `closes`, or None with fewer than its warm-up."""
    for n in (fast, slow, signal):
        _check_period(n)
    need = history_needed("macd", fast, (Decimal(slow), Decimal(signal)))
    if len(closes) < need:
        return None
    first_line = _ema_needed(slow) - 1  # the index of the first line value the signal reads
    with localcontext(CONTEXT):
        alpha_fast, alpha_slow = Decimal(2) / (fast + 1), Decimal(2) / (slow + 1)
        fast_avg = sum(closes[:fast], _ZERO) / fast
        slow_avg = sum(closes[:slow], _ZERO) / slow
        lines: list[Decimal] = []
        for i, close in enumerate(closes):
            if i >= fast:
                fast_avg += alpha_fast * (close - fast_avg)
            if i >= slow:
                slow_avg += alpha_slow * (close - slow_avg)
            if i >= first_line:
                lines.append(fast_avg - slow_avg)
        alpha_signal = Decimal(2) / (signal + 1)
        signal_avg = sum(lines[:signal], _ZERO) / signal
        for line in islice(lines, signal, None):
            signal_avg += alpha_signal * (line - signal_avg)
        step = places(closes)
        line_q, signal_q = lines[-1].quantize(step), signal_avg.quantize(step)
        return Macd(line_q, signal_q, line_q - signal_q)


def change(closes: Sequence[Decimal], n: int) -> Decimal | None:
    """close / (the close `n` candles before) - 1, or None with fewer than n + 1 closes."""
    _check_period(n)
    if len(closes) < n + 1:
        return None
    base = closes[len(closes) - n - 1]
    if base <= 0:
        return None
    with localcontext(CONTEXT):
        return (closes[-1] / base - 1).quantize(RATE_QUANTUM)


# ------------------------------------------------------------------ of whole candles


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


def atr(candles: Sequence[Candle], n: int) -> Decimal | None:
    """Wilder's average true range of all `candles`, or None with fewer than
    `history_needed("atr", n)`."""
    _check_period(n)
    if len(candles) < history_needed("atr", n):
        return None
    with localcontext(CONTEXT):
        ranges = [
            max(c.high - c.low, abs(c.high - before.close), abs(c.low - before.close))
            for before, c in pairwise(candles)
        ]
        average = sum(ranges[:n], _ZERO) / n
        for true_range in islice(ranges, n, None):
            average = (average * (n - 1) + true_range) / n
        return average.quantize(places(_prices(candles)))


def vwap(candles: Sequence[Candle], n: int) -> Decimal | None:
    """The volume-weighted typical price of the last `n` candles; None with fewer than `n`,
    or when they traded nothing."""
    _check_period(n)
    if len(candles) < n:
        return None
    window = candles[len(candles) - n :]
    with localcontext(CONTEXT):
        volume = sum((c.volume for c in window), _ZERO)
        if volume <= 0:
            return None
        weighted = sum(((c.high + c.low + c.close) * c.volume for c in window), _ZERO)
        return (weighted / (3 * volume)).quantize(places(_prices(window)))
