"""ATR, Bollinger bands, MACD, VWAP, candle volume and `change(n, tf)` over closed candles.

Each is checked against a reference computed another way on the real KuCoin BTC-USDT hourly
candles shipped with the sandbox: exactly, with fractions (square roots with integer
arithmetic), over the same window, rounded half-even as the module promises; and, where the
module's fixed window differs from the textbook (an EMA or Wilder average run from the first
candle of all history), with floats over all history before the value, which it must match to
the seed weight it allows.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise

import pytest

from rules_engine.compiler import model as M
from rules_engine.core.market import Candle
from rules_engine.engine._candles import CandleSeries
from rules_engine.engine._indicators import (
    atr,
    bollinger,
    change,
    history_needed,
    macd,
    vwap,
)
from rules_engine.sandbox.feeds import load_candles

D = Decimal
HOUR = timedelta(hours=1)

REAL = [
    Candle("BTC-USDT", "1hour", datetime.fromtimestamp(c.start_s, tz=UTC),
           c.open, c.close, c.high, c.low, c.volume, c.turnover)
    for c in load_candles()
]
CLOSES = [c.close for c in REAL]
ENDS = range(200, len(REAL) + 1, 331)  # windows ending all over the shipped history


def places(prices: list[Decimal]) -> int:
    return max(-int(p.as_tuple().exponent) for p in prices) + 8


def rounded(exact: Fraction, n: int) -> Decimal:
    return Decimal(round(exact * 10**n)).scaleb(-n)  # round() on a Fraction is half-even


def prices_of(candles: list[Candle]) -> list[Decimal]:
    return [p for c in candles for p in (c.high, c.low, c.close)]


def least_steps(keep: Fraction) -> int:
    """The fewest k with keep**k <= 1/1000, by counting."""
    k, weight = 0, Fraction(1)
    while weight > Fraction(1, 1000):
        weight *= keep
        k += 1
    return k


# ------------------------------------------------------------------ warm-ups


def test_warm_ups_are_the_documented_counts() -> None:
    ema_need = {n: n + least_steps(Fraction(n - 1, n + 1)) for n in (9, 26)}
    assert history_needed("macd", 12, (D(26), D(9))) == ema_need[26] + ema_need[9] - 1 == 155
    assert history_needed("macd_hist", 12, (D(26), D(9))) == 155
    assert history_needed("atr", 14) == 14 + 1 + least_steps(Fraction(13, 14)) == 109
    assert history_needed("bb_upper", 20, (D(2),)) == history_needed("bb_middle", 20) == 20
    assert history_needed("vwap", 24) == 24
    assert history_needed("change", 24) == 25
    assert history_needed("volume") == 1
    with pytest.raises(ValueError, match="below its slow one"):
        history_needed("macd", 26, (D(12), D(9)))


# ------------------------------------------------------------------ exact references


def ref_atr(candles: list[Candle], n: int) -> Fraction:
    ranges = []
    for i in range(1, len(candles)):
        h, lo, prev = (Fraction(x) for x in (candles[i].high, candles[i].low,
                                             candles[i - 1].close))
        ranges.append(max(h - lo, abs(h - prev), abs(lo - prev)))
    value = sum(ranges[:n], Fraction(0)) / n
    for r in ranges[n:]:
        value = (value * (n - 1) + r) / n
    return value


def exact_sqrt(x: Fraction, digits: int) -> Fraction:
    """sqrt(x) truncated to `digits` decimals, with integers only."""
    scale = 10**digits
    return Fraction(math.isqrt(x.numerator * scale * scale // x.denominator), scale)


def ref_bands(closes: list[Decimal], n: int, k: Fraction) -> tuple[Fraction, ...]:
    window = [Fraction(c) for c in closes[-n:]]
    mean = sum(window, Fraction(0)) / n
    deviation = exact_sqrt(sum(((c - mean) ** 2 for c in window), Fraction(0)) / n, 30)
    return mean - k * deviation, mean, mean + k * deviation


def ema_series(values: list[Fraction], n: int) -> list[Fraction | None]:
    """The EMA at every index, None before its seed (the mean of the first n)."""
    out: list[Fraction | None] = [None] * (n - 1)
    value = sum(values[:n], Fraction(0)) / n
    out.append(value)
    for v in values[n:]:
        value += Fraction(2, n + 1) * (v - value)
        out.append(value)
    return out


def ref_macd(closes: list[Decimal], fast: int, slow: int, signal: int) -> tuple[Fraction, ...]:
    values = [Fraction(c) for c in closes]
    fasts, slows = ema_series(values, fast), ema_series(values, slow)
    first = slow + least_steps(Fraction(slow - 1, slow + 1)) - 1
    lines = [f - s for f, s in zip(fasts[first:], slows[first:], strict=True)
             if f is not None and s is not None]
    signals = ema_series(lines, signal)
    assert signals[-1] is not None
    return lines[-1], signals[-1]


def test_atr_is_wilders_average_true_range_over_its_window() -> None:
    for n in (1, 5, 14):
        need = history_needed("atr", n)
        for end in ENDS:
            window = REAL[end - need : end]
            assert atr(window, n) == rounded(ref_atr(window, n), places(prices_of(window)))
    assert atr(REAL[: history_needed("atr", 14) - 1], 14) is None


def test_bollinger_bands_are_k_population_deviations_around_the_sma() -> None:
    for n, k in ((20, "2"), (5, "2.5"), (50, "1")):
        for end in ENDS:
            closes = CLOSES[:end]
            step = places(closes[-n:])
            expected = tuple(rounded(x, step) for x in ref_bands(closes, n, Fraction(k)))
            assert bollinger(closes, n, D(k)) == expected
    assert bollinger(CLOSES[:19], 20, D(2)) is None
    flat = [D("100.5")] * 20  # no deviation: the bands close on the mean
    assert bollinger(flat, 20, D(2)) == (D("100.500000000"),) * 3


def test_macd_line_signal_and_histogram_over_its_window() -> None:
    for fast, slow, signal in ((12, 26, 9), (5, 35, 5), (3, 10, 16)):
        need = history_needed("macd", fast, (D(slow), D(signal)))
        for end in ENDS:
            window = CLOSES[max(0, end - need) : end]
            got = macd(window, fast, slow, signal)
            assert got is not None
            line, sig = (rounded(x, places(window)) for x in ref_macd(window, fast, slow, signal))
            assert (got.line, got.signal) == (line, sig)
            assert got.histogram == got.line - got.signal  # exactly
    assert macd(CLOSES[:154], 12, 26, 9) is None


def test_vwap_is_the_volume_weighted_typical_price() -> None:
    for n in (1, 24, 168):
        for end in ENDS:
            window = REAL[end - n : end]
            volume = sum((Fraction(c.volume) for c in window), Fraction(0))
            weighted = sum((Fraction(c.high + c.low + c.close) / 3 * Fraction(c.volume)
                            for c in window), Fraction(0))
            assert vwap(window, n) == rounded(weighted / volume, places(prices_of(window)))
    quiet = [c._replace(volume=D(0)) for c in REAL[:3]]
    assert vwap(quiet, 3) is None  # nothing traded: no price to weigh


def test_change_is_the_close_over_the_close_n_candles_before() -> None:
    for n in (1, 24, 168):
        for end in ENDS:
            exact = Fraction(CLOSES[end - 1]) / Fraction(CLOSES[end - 1 - n]) - 1
            assert change(CLOSES[:end], n) == rounded(exact, 12)
    assert change(CLOSES[:24], 24) is None


# ------------------------------------------------------------------ the textbook, unwindowed


def float_wilder(values: list[float], n: int) -> float:
    avg = math.fsum(values[:n]) / n
    for v in values[n:]:
        avg = (avg * (n - 1) + v) / n
    return avg


def float_ema(values: list[float], n: int) -> list[float]:
    out = [math.fsum(values[:n]) / n]
    for v in values[n:]:
        out.append(out[-1] + 2 / (n + 1) * (v - out[-1]))
    return out


def test_windowed_atr_and_macd_match_the_textbook_run_over_all_history() -> None:
    """TA-Lib and TradingView run these from the first candle they have; the window keeps the
    seed's weight at or under 0.1%, so the values agree to a small fraction of a price move."""
    for end in ENDS:
        history = REAL[:end]
        ranges = [max(c.high - c.low, abs(c.high - b.close), abs(c.low - b.close))
                  for b, c in pairwise(history)]
        textbook = float_wilder([float(r) for r in ranges], 14)
        windowed = atr(history[-history_needed("atr", 14):], 14)
        assert windowed is not None
        assert abs(float(windowed) - textbook) <= 0.002 * textbook

        closes = [float(c) for c in CLOSES[:end]]
        fast, slow = float_ema(closes, 12), float_ema(closes, 26)
        lines = [f - s for f, s in zip(fast[14:], slow, strict=True)]
        signal = float_ema(lines, 9)[-1]
        got = macd(CLOSES[end - 155 : end], 12, 26, 9)
        assert got is not None
        scale = float(atr(history[-109:], 14) or 1)  # a typical hourly move
        assert abs(float(got.line) - lines[-1]) <= 0.002 * scale
        assert abs(float(got.signal) - signal) <= 0.002 * scale


# ------------------------------------------------------------------ the series


def test_a_series_serves_every_new_leaf_from_its_closed_candles_only() -> None:
    series = CandleSeries("BTC-USDT", "1h", keep=300)
    history = REAL[:301]  # the last one is still open at `now`
    series.load(history, history[-1].open_time + HOUR / 2)
    closed = REAL[:300]
    closes = [c.close for c in closed]

    def leaf(kind: str, period: int, *params: str) -> M.Indicator:
        return M.Indicator("BTC-USDT", kind, period, "1h", tuple(D(p) for p in params))

    assert series.value_of(leaf("atr", 14)) == atr(closed[-109:], 14)
    bands = bollinger(closes, 20, D("2.5"))
    assert bands is not None
    assert series.value_of(leaf("bb_lower", 20, "2.5")) == bands[0]
    assert series.value_of(leaf("bb_middle", 20)) == bands[1]
    assert series.value_of(leaf("bb_upper", 20, "2.5")) == bands[2]
    got = macd(closes[-155:], 12, 26, 9)
    assert got is not None
    assert series.value_of(leaf("macd", 12, "26", "9")) == got.line
    assert series.value_of(leaf("macd_signal", 12, "26", "9")) == got.signal
    assert series.value_of(leaf("macd_hist", 12, "26", "9")) == got.histogram
    assert series.value_of(leaf("vwap", 24)) == vwap(closed, 24)
    assert series.value_of(leaf("change", 24)) == change(closes, 24)
    assert series.value_of(M.CandleField("BTC-USDT", "volume", "1h")) == closed[-1].volume
    assert REAL[300].volume != closed[-1].volume  # the open candle's volume is not read
    with pytest.raises(ValueError, match="needs 155 closed candles"):
        CandleSeries("BTC-USDT", "1h", keep=100).value_of(leaf("macd", 12, "26", "9"))
