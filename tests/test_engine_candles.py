"""Candle functions over closed candles, and the candle series the watcher keeps.

The indicator values are checked against the real KuCoin BTC-USDT hourly candles shipped with
the sandbox, recomputed here a different way: exactly with fractions (rounded half-even in the
test) and with floats where exact fractions would be slow.
"""

from __future__ import annotations

import decimal
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from rules_engine.adapters.kucoin._market import CANDLE_TYPES
from rules_engine.compiler import model as M
from rules_engine.compiler._vocab import TIMEFRAMES
from rules_engine.core.market import Candle
from rules_engine.engine._candles import (
    SEED_WEIGHT,
    TIMEFRAME_TYPES,
    CandleSeries,
    ema,
    highest,
    history_needed,
    lowest,
    rsi,
    sma,
)
from rules_engine.sandbox.feeds import load_candles
from rules_engine.sandbox.ws import CANDLE_TYPES as SANDBOX_CANDLE_SECONDS

HOUR = timedelta(hours=1)
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _real() -> list[Candle]:
    return [
        Candle(
            "BTC-USDT", "1hour", datetime.fromtimestamp(c.start_s, tz=UTC),
            c.open, c.close, c.high, c.low, c.volume, c.turnover,
        )
        for c in load_candles()
    ]


REAL = _real()
CLOSES = [c.close for c in REAL]


def candle(hours: float, close: str, *, high: str | None = None, low: str | None = None,
           symbol: str = "BTC-USDT", interval: str = "1hour") -> Candle:
    price = Decimal(close)
    return Candle(
        symbol, interval, T0 + timedelta(hours=hours), price, price,
        Decimal(high) if high else price, Decimal(low) if low else price,
        Decimal(1), price,
    )


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def ds(*values: float | str) -> list[Decimal]:
    return [Decimal(str(v)) for v in values]


# ------------------------------------------------------------------ independent references


def _places(closes: list[Decimal]) -> int:
    """Decimal places of the finest close, plus the 8 the module promises."""
    return max(-int(c.as_tuple().exponent) for c in closes) + 8


def _rounded(exact: Fraction, places: int) -> Decimal:
    # round() on a Fraction is half-even, like the module's quantize.
    return Decimal(round(exact * 10**places)).scaleb(-places)


def ref_sma(closes: list[Decimal], n: int) -> Fraction:
    return sum((Fraction(c) for c in closes[-n:]), Fraction(0)) / n


def ref_ema(closes: list[Decimal], n: int) -> Fraction:
    alpha = Fraction(2, n + 1)
    value = sum((Fraction(c) for c in closes[:n]), Fraction(0)) / n
    for c in closes[n:]:
        value = alpha * Fraction(c) + (1 - alpha) * value
    return value


def ref_rsi(closes: list[Decimal], n: int) -> Fraction:
    changes = [Fraction(closes[i + 1]) - Fraction(closes[i]) for i in range(len(closes) - 1)]
    gain = sum((max(c, Fraction(0)) for c in changes[:n]), Fraction(0)) / n
    loss = sum((max(-c, Fraction(0)) for c in changes[:n]), Fraction(0)) / n
    for c in changes[n:]:
        gain = (gain * (n - 1) + max(c, Fraction(0))) / n
        loss = (loss * (n - 1) + max(-c, Fraction(0))) / n
    return 100 * gain / (gain + loss)


def float_ema(closes: list[float], n: int) -> float:
    alpha = 2 / (n + 1)
    value = math.fsum(closes[:n]) / n
    for c in closes[n:]:
        value = alpha * c + (1 - alpha) * value
    return value


def float_rsi(closes: list[float], n: int) -> float:
    changes = [closes[i + 1] - closes[i] for i in range(len(closes) - 1)]
    gain = sum(max(c, 0.0) for c in changes[:n]) / n
    loss = sum(max(-c, 0.0) for c in changes[:n]) / n
    for c in changes[n:]:
        gain = (gain * (n - 1) + max(c, 0.0)) / n
        loss = (loss * (n - 1) + max(-c, 0.0)) / n
    return 100 * gain / (gain + loss)


# ------------------------------------------------------------------ timeframes


def test_every_language_timeframe_maps_to_a_kucoin_candle_type_of_the_right_length() -> None:
    assert tuple(TIMEFRAME_TYPES) == TIMEFRAMES
    assert {tf: (t.type, t.seconds) for tf, t in TIMEFRAME_TYPES.items()} == {
        "1m": ("1min", 60), "5m": ("5min", 300), "15m": ("15min", 900),
        "1h": ("1hour", 3600), "4h": ("4hour", 14400), "1d": ("1day", 86400),
    }
    for t in TIMEFRAME_TYPES.values():
        assert t.type in CANDLE_TYPES
        assert SANDBOX_CANDLE_SECONDS[t.type] == t.seconds


def test_the_shipped_candles_are_hourly_and_contiguous() -> None:
    assert len(REAL) > 2000
    assert all(REAL[i + 1].open_time - REAL[i].open_time == HOUR for i in range(len(REAL) - 1))


# ------------------------------------------------------------------ sma


def test_sma_is_the_mean_of_the_last_n_closes() -> None:
    assert sma(ds(1, 2, 3, 4), 2) == Decimal("3.50000000")
    assert sma(ds(1, 2, 3, 4), 4) == Decimal("2.5")
    assert sma(ds("10.5"), 1) == Decimal("10.5")


def test_sma_is_rounded_half_even_to_eight_places_beyond_the_finest_close() -> None:
    assert sma(ds(1, 1, 2), 3) == Decimal("1.33333333")
    assert sma(ds("0.1", "0.2", "0.2"), 3) == Decimal("0.166666667")
    assert sma(ds("1.00", 2, 2), 3) == Decimal("1.6666666667")
    assert str(sma(ds(1, 2), 2)) == "1.50000000"


def test_sma_matches_exact_fractions_on_real_btc_candles() -> None:
    for n in (1, 2, 7, 20, 200, 1000):
        for end in (n, n + 1, 1500, len(CLOSES)):
            window = CLOSES[:end]
            expected = _rounded(ref_sma(window, n), _places(window[-n:]))
            assert sma(window, n) == expected, (n, end)


def test_sma_without_n_closes_is_unknown() -> None:
    assert sma(CLOSES[:19], 20) is None
    assert sma([], 1) is None


def test_a_period_below_one_is_refused() -> None:
    for function in (sma, ema, rsi):
        with pytest.raises(ValueError, match="at least 1"):
            function(CLOSES, 0)


# ------------------------------------------------------------------ ema


def test_ema_by_hand_seeded_with_the_sma_of_the_first_n_closes() -> None:
    # ema(3): alpha 1/2; seed (1+2+3)/3 = 2; ten closes of 4 halve the distance each time:
    # 4 - 2/2**10 = 3.998046875, rounded half-even to 8 places.
    assert history_needed("ema", 3) == 13
    assert ema(ds(1, 2, 3, *[4] * 10), 3) == Decimal("3.99804688")
    assert ema(ds(5, 5, 5, *[5] * 10), 3) == Decimal("5.00000000")
    assert ema(ds(7), 1) == Decimal(7)
    assert ema(ds(7, 9), 1) == Decimal(9)


def test_ema_matches_exact_fractions_on_real_btc_candles() -> None:
    for n in (2, 10, 14):
        for end in (history_needed("ema", n), 400, len(CLOSES)):
            window = CLOSES[end - history_needed("ema", n) : end]
            expected = _rounded(ref_ema(window, n), _places(window))
            assert ema(window, n) == expected, (n, end)


def test_ema_matches_floats_on_real_btc_candles_for_long_periods() -> None:
    for n in (50, 200, 600):
        window = CLOSES[-history_needed("ema", n) :]
        value = ema(window, n)
        assert value is not None
        assert math.isclose(float(value), float_ema([float(c) for c in window], n),
                            rel_tol=1e-12)


def test_ema_needs_enough_closes_for_its_seed_to_weigh_at_most_a_thousandth() -> None:
    for n in (2, 3, 14, 200, 600):
        need = history_needed("ema", n)
        keep = Fraction(n - 1, n + 1)
        assert keep ** (need - n) <= SEED_WEIGHT < keep ** (need - n - 1)
        assert ema(CLOSES[:need], n) is not None
        assert ema(CLOSES[: need - 1], n) is None
    assert [history_needed("ema", n) for n in (1, 14, 200, 1000)] == [1, 63, 891, 4454]


def test_ema_over_the_warm_up_window_is_near_the_ema_over_the_whole_history() -> None:
    spread = float(max(CLOSES) - min(CLOSES))
    for n in (10, 20, 50, 200):
        short = ema(CLOSES[-history_needed("ema", n) :], n)
        assert short is not None
        full = float_ema([float(c) for c in CLOSES], n)
        # The seed's weight is at most 0.001, and the seed is off by less than the spread.
        assert abs(float(short) - full) <= float(SEED_WEIGHT) * spread, n


# ------------------------------------------------------------------ rsi


def test_rsi_by_hand_with_wilders_smoothing() -> None:
    # rsi(2): changes +2, -1 seed gain 1 and loss 0.5; ten flat changes shrink both alike,
    # so RS stays 2 and RSI = 100 - 100/3.
    assert history_needed("rsi", 2) == 13
    assert rsi(ds(10, 12, 11, *[11] * 10), 2) == Decimal("66.66666667")
    # Nine flat changes, then a gain of 3: gain = (1/2**9 + 3)/2, loss = (0.5/2**9)/2, so
    # RS = 3074 and RSI = 100 - 100/3075.
    assert rsi(ds(10, 12, 11, *[11] * 9, 14), 2) == Decimal("99.96747967")


def test_rsi_of_one_period_is_the_direction_of_the_last_change() -> None:
    assert history_needed("rsi", 1) == 2
    assert rsi(ds(10, 11), 1) == Decimal(100)
    assert rsi(ds(11, 10), 1) == Decimal(0)
    assert rsi(ds(10, 11, 10), 1) == Decimal(0)


def test_rsi_is_100_with_only_gains_0_with_only_losses_and_50_when_flat() -> None:
    need = history_needed("rsi", 14)
    rising = [Decimal(100 + i) for i in range(need)]
    assert rsi(rising, 14) == Decimal(100)
    assert rsi(rising[::-1], 14) == Decimal(0)
    assert rsi([Decimal(100)] * need, 14) == Decimal(50)
    assert str(rsi(rising, 14)) == "100.00000000"


def test_rsi_matches_exact_fractions_on_real_btc_candles() -> None:
    for n in (2, 14):
        need = history_needed("rsi", n)
        for end in (need, 777, len(CLOSES)):
            window = CLOSES[end - need : end]
            assert rsi(window, n) == _rounded(ref_rsi(window, n), 8), (n, end)


def test_rsi_matches_floats_on_real_btc_candles_for_long_periods() -> None:
    for n in (50, 200):
        window = CLOSES[-history_needed("rsi", n) :]
        value = rsi(window, n)
        assert value is not None
        assert abs(float(value) - float_rsi([float(c) for c in window], n)) < 1e-8


def test_rsi_needs_enough_changes_for_its_seed_to_weigh_at_most_a_thousandth() -> None:
    for n in (2, 14, 200):
        need = history_needed("rsi", n)
        keep = Fraction(n - 1, n)
        steps = need - n - 1
        assert keep**steps <= SEED_WEIGHT < keep ** (steps - 1)
        assert rsi(CLOSES[:need], n) is not None
        assert rsi(CLOSES[: need - 1], n) is None
    assert [history_needed("rsi", n) for n in (14, 200, 1000)] == [109, 1580, 7906]


def test_rsi_over_the_warm_up_window_is_near_the_rsi_over_the_whole_history() -> None:
    for n in (14, 50):
        short = rsi(CLOSES[-history_needed("rsi", n) :], n)
        assert short is not None
        assert abs(float(short) - float_rsi([float(c) for c in CLOSES], n)) < 0.05, n


def test_indicators_ignore_the_callers_decimal_context() -> None:
    window = CLOSES[-history_needed("rsi", 14) :]
    expected = (sma(window, 20), ema(window, 14), rsi(window, 14))
    with decimal.localcontext(prec=3, rounding=decimal.ROUND_DOWN):
        assert (sma(window, 20), ema(window, 14), rsi(window, 14)) == expected


# ------------------------------------------------------------------ history_needed


def test_history_needed_counts_closed_candles_per_function() -> None:
    assert history_needed("sma", 200) == 200
    assert history_needed("ema", 14) == 63
    assert history_needed("rsi", 14) == 109
    for kind in ("high", "low", "close"):
        assert history_needed(kind) == 1


def test_history_needed_refuses_unknown_kinds_and_misplaced_periods() -> None:
    with pytest.raises(ValueError, match="not a candle function"):
        history_needed("wma", 3)
    with pytest.raises(ValueError, match="needs a period"):
        history_needed("sma")
    with pytest.raises(ValueError, match="takes no period"):
        history_needed("close", 3)


# ------------------------------------------------------------------ the series: load


def loaded(candles: list[Candle], now: datetime, keep: int = 500) -> CandleSeries:
    series = CandleSeries("BTC-USDT", "1h", keep=keep)
    assert series.load(candles, now)
    return series


def test_a_series_is_unusable_until_loaded() -> None:
    series = CandleSeries("BTC-USDT", "1h", keep=10)
    assert not series.usable
    assert series.problem == "not loaded"
    assert series.value("close") is None


def test_load_keeps_the_candle_still_open_at_now_as_current() -> None:
    history = [candle(h, str(100 + h)) for h in range(5)]
    series = loaded(history, at(4.5))
    assert series.closed == tuple(history[:4])
    assert series.current == history[4]
    assert series.value("close") == Decimal(103)
    assert series.usable


def test_load_closes_the_last_candle_once_its_interval_is_over() -> None:
    history = [candle(h, str(100 + h)) for h in range(5)]
    series = loaded(history, at(5))
    assert series.closed == tuple(history)
    assert series.current is None
    assert series.value("close") == Decimal(104)


def test_load_counts_a_candle_with_a_later_one_as_closed_even_if_the_clock_lags() -> None:
    history = [candle(h, str(100 + h)) for h in range(5)]
    series = loaded(history, at(3.999))  # the local clock behind KuCoin's
    assert series.closed == tuple(history[:4])
    assert series.current == history[4]


def test_load_keeps_only_the_last_keep_closed_candles() -> None:
    series = loaded(REAL, REAL[-1].open_time + HOUR / 2, keep=300)
    assert series.closed == tuple(REAL[-301:-1])
    assert series.current == REAL[-1]


def test_loading_the_same_history_again_changes_nothing() -> None:
    now = REAL[99].open_time + HOUR / 2
    series = loaded(REAL[:100], now)
    assert not series.load(REAL[:100], now)


def test_load_of_history_out_of_order_makes_the_series_unusable() -> None:
    history = [candle(0, "1"), candle(2, "3"), candle(1, "2")]
    series = CandleSeries("BTC-USDT", "1h", keep=10)
    change = series.load(history, at(2.5))
    assert not change
    assert change.note is not None and "out of order" in change.note
    assert not series.usable
    assert series.value("close") is None


def test_a_hole_in_the_history_makes_the_series_unusable_until_a_whole_history_loads() -> None:
    now = REAL[-1].open_time + HOUR / 2
    holed = REAL[:1000] + REAL[1001:]
    series = CandleSeries("BTC-USDT", "1h", keep=3000)
    change = series.load(holed, now)
    assert change.note is not None and "1 candle(s) missing" in change.note
    assert series.problem == change.note
    assert series.value("sma", 20) is None
    assert series.value("close") is None
    assert series.load(REAL, now)
    assert series.usable
    assert series.value("close") == REAL[-2].close


def test_a_hole_older_than_the_kept_candles_does_not_matter() -> None:
    now = REAL[-1].open_time + HOUR / 2
    series = loaded(REAL[:10] + REAL[12:], now, keep=100)
    assert series.usable


def test_history_whose_newest_candle_is_a_whole_interval_old_is_a_hole() -> None:
    history = [candle(h, "100") for h in range(5)]
    series = CandleSeries("BTC-USDT", "1h", keep=10)
    change = series.load(history, at(6))  # the candle of hour 5 should be closed by now
    assert not series.usable
    assert change.note is not None and "no candle for the interval" in change.note


# ------------------------------------------------------------------ the series: update


def test_an_open_candle_never_counts() -> None:
    series = loaded([candle(h, "100") for h in range(20)], at(19.5))
    before = series.value("sma", 19), series.value("close"), series.value("high")
    change = series.update(candle(19, "500", high="900"), at(19.6))
    assert not change
    assert series.current is not None and series.current.close == Decimal(500)
    assert (series.value("sma", 19), series.value("close"), series.value("high")) == before
    assert series.value("sma", 20) is None  # only 19 closed candles


def test_an_update_of_the_open_candle_replaces_it() -> None:
    series = loaded([candle(0, "100"), candle(1, "101")], at(1.1))
    assert not series.update(candle(1, "102"), at(1.2))
    assert not series.update(candle(1, "99", low="98"), at(1.3))
    assert series.current == candle(1, "99", low="98")
    assert series.closed == (candle(0, "100"),)


def test_a_later_candle_closes_the_open_one_as_last_seen() -> None:
    series = loaded([candle(0, "100"), candle(1, "101")], at(1.1))
    series.update(candle(1, "105", high="106"), at(1.5))
    change = series.update(candle(2, "104"), at(2.01))
    assert change
    assert change.note is None
    assert series.closed[-1] == candle(1, "105", high="106")
    assert series.current == candle(2, "104")
    assert series.value("close") == Decimal(105)
    assert series.value("high") == Decimal(106)


def test_an_older_candle_is_ignored_and_reported() -> None:
    series = loaded([candle(h, str(100 + h)) for h in range(5)], at(4.5))
    change = series.update(candle(3, "1"), at(4.6))
    assert not change
    assert change.note is not None and "ignored" in change.note and "older" in change.note
    assert series.closed[-1] == candle(3, "103")
    assert series.current == candle(4, "104")
    assert series.usable


def test_a_late_update_of_a_candle_closed_by_the_clock_is_ignored_and_reported() -> None:
    series = loaded([candle(h, "100") for h in range(5)], at(4.5))
    assert series.advance(at(5))
    change = series.update(candle(4, "120"), at(5.001))
    assert not change
    assert change.note is not None and "already closed" in change.note
    assert series.value("close") == Decimal(100)


def test_an_update_skipping_an_interval_is_a_hole() -> None:
    series = loaded([candle(h, "100") for h in range(5)], at(4.5))
    change = series.update(candle(6, "100"), at(6.1))
    assert change  # the series became unusable: values must be re-read
    assert change.note is not None and "1 candle(s) missing" in change.note
    assert not series.usable
    assert series.value("close") is None
    assert not series.update(candle(7, "100"), at(7.1))  # still unusable, nothing new to say
    assert series.load([candle(h, "100") for h in range(8)], at(7.2))
    assert series.usable


def test_a_candle_not_aligned_on_the_interval_is_a_hole() -> None:
    series = loaded([candle(h, "100") for h in range(5)], at(4.5))
    series.update(candle(5.5, "100"), at(5.6))
    assert series.problem is not None and "whole number of intervals" in series.problem


def test_a_candle_arriving_after_its_interval_is_closed_at_once() -> None:
    series = loaded([candle(h, "100") for h in range(5)], at(5))
    assert series.current is None
    change = series.update(candle(5, "110"), at(6.0))
    assert change
    assert series.current is None
    assert series.value("close") == Decimal(110)


def test_a_candle_of_another_symbol_or_type_is_refused() -> None:
    series = loaded([candle(0, "100")], at(0.5))
    with pytest.raises(ValueError, match="ETH-USDT"):
        series.update(candle(1, "1", symbol="ETH-USDT"), at(1.1))
    with pytest.raises(ValueError, match="1min"):
        series.update(candle(1, "1", interval="1min"), at(1.1))


# ------------------------------------------------------------------ the series: advance


def test_advance_closes_the_open_candle_exactly_when_its_interval_is_over() -> None:
    series = loaded([candle(h, str(100 + h)) for h in range(5)], at(4.5))
    assert not series.advance(at(4.999))
    assert series.value("close") == Decimal(103)
    change = series.advance(at(5))
    assert change
    assert series.current is None
    assert series.value("close") == Decimal(104)
    assert not series.advance(at(5.5))


def test_a_whole_interval_without_any_candle_is_a_hole() -> None:
    series = loaded([candle(h, "100") for h in range(5)], at(4.5))
    series.advance(at(5))
    assert not series.advance(at(5.99))
    change = series.advance(at(6))
    assert change
    assert change.note is not None and "no candle for the interval" in change.note
    assert series.value("close") is None


# ------------------------------------------------------------------ the series: values


def test_series_values_are_the_functions_over_its_closed_candles() -> None:
    now = REAL[-1].open_time + HOUR / 2
    series = loaded(REAL, now, keep=2000)
    closed = CLOSES[:-1]
    assert series.value("sma", 200) == sma(closed, 200)
    assert series.value("ema", 14) == ema(closed[-history_needed("ema", 14) :], 14)
    assert series.value("rsi", 14) == rsi(closed[-history_needed("rsi", 14) :], 14)
    assert series.value("high") == REAL[-2].high
    assert series.value("low") == REAL[-2].low
    assert series.value("close") == REAL[-2].close
    assert series.value_of(M.Indicator("BTC-USDT", "rsi", 14, "1h")) == series.value("rsi", 14)
    assert series.value_of(M.CandleField("BTC-USDT", "low", "1h")) == REAL[-2].low


def test_series_values_need_enough_closed_candles() -> None:
    series = loaded(REAL[:63], REAL[62].open_time + HOUR / 2)  # 62 closed
    assert series.value("ema", 14) is None
    assert series.value("sma", 62) is not None
    assert series.value("sma", 63) is None
    series.advance(REAL[62].open_time + HOUR)
    assert series.value("ema", 14) is not None


def test_a_value_the_series_can_never_hold_is_refused() -> None:
    series = loaded(REAL[:10], REAL[9].open_time, keep=100)
    with pytest.raises(ValueError, match="rsi\\(14\\) needs 109"):
        series.value("rsi", 14)
    with pytest.raises(ValueError, match="not of"):
        series.value_of(M.CandleField("BTC-USDT", "close", "4h"))


def test_values_are_the_same_after_a_restart_as_after_running_for_days() -> None:
    keep = history_needed("rsi", 14) + 50
    running = loaded(REAL[:2000], REAL[1999].open_time + HOUR / 2, keep=keep)
    for c in REAL[2000:2400]:
        # The current candle is pushed several times before the next one opens.
        partial = c._replace(close=c.open, high=c.open, low=c.open)
        running.update(partial, c.open_time + timedelta(minutes=1))
        running.update(c, c.open_time + timedelta(minutes=59))
    restarted = loaded(REAL[2399 - keep : 2400], REAL[2399].open_time + timedelta(minutes=59),
                       keep=keep)
    assert running.closed == restarted.closed
    for kind, period in (("sma", 20), ("ema", 14), ("rsi", 14), ("close", None)):
        assert running.value(kind, period) == restarted.value(kind, period) is not None


def test_values_are_re_read_only_when_the_closed_candles_change() -> None:
    series = loaded(REAL[:200], REAL[199].open_time + HOUR / 2)
    first = series.value("ema", 14)
    assert not series.update(REAL[199]._replace(close=Decimal(1)), REAL[199].open_time + HOUR / 2)
    assert series.value("ema", 14) == first
    assert series.update(REAL[200], REAL[200].open_time)
    assert series.value("ema", 14) != first


# ------------------------------------------------------------------ highest and lowest


def test_highest_and_lowest_match_a_sorted_reference_on_the_shipped_candles() -> None:
    for n in (1, 2, 20, 200):
        for end in range(n, len(REAL) + 1, 97):
            window = REAL[:end]
            highs = sorted(c.high for c in window[-n:])
            lows = sorted(c.low for c in window[-n:])
            assert highest(window, n) == highs[-1]
            assert lowest(window, n) == lows[0]
    assert highest(REAL[:4], 5) is None and lowest(REAL[:4], 5) is None
    assert history_needed("highest", 20) == 20 and history_needed("lowest", 7) == 7


def test_a_series_gives_highest_and_lowest_of_its_closed_candles_only() -> None:
    series = CandleSeries("BTC-USDT", "1h", keep=10)
    history = [candle(h, "100", high=str(100 + h), low=str(100 - h)) for h in range(3)]
    series.load(history, at(3.5))
    series.update(candle(3, "100", high="500", low="1"), at(3.5))  # still open: not counted
    leaf = M.Indicator("BTC-USDT", "highest", 3, "1h")
    assert series.value_of(leaf) == Decimal(102)
    assert series.value_of(leaf._replace(kind="lowest")) == Decimal(98)
