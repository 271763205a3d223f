"""The backtest's speed and memory over a year of BTC-USDT 1-minute candles (525,600).

* **the year**: with no download possible here, the minutes are built from the shipped real
  KuCoin BTC-USDT hourly candles (2025-11-17 to 2026-03-22, 3,000 hours) by a documented,
  seeded path (`minute_candles`): the hours are played forward, then backward in time (each
  candle's open and close swapped), and so on, until the year is full, so the price stays in
  the range the market really had and never jumps; each hour becomes 60 minutes whose path
  starts at the hour's open, reaches its high and its low at two seeded minutes (in the order
  drawn) and ends at its close, with seeded noise between those anchors kept inside the
  hour's range; each minute's open is the previous minute's close, its wicks seeded and
  inside the hour's range; volume is the hour's spread over the minutes with seeded weights.
  Prices are on BTC-USDT's tick (0.1). `random.Random(seed)`, default seed 14.
* **the dip-buy row**: one rule buying a dip and a take-profit chain, `rules-engine backtest`'s
  driver (skipping on) against backtesting.py running the same strategy on the same candles
  in the same run (in its own virtual environment, never a dependency of the project).
* **the mix row**: 20 rules of the examples' mix, skipping against the same run stepping
  every candle (`--no-skip`) over a shorter stretch of the same minutes.
* **memory**: the peak resident memory of the backtest over 1/8, 1/2 and the whole history.

Run: python benchmarks/bench_backtest.py [--quick]
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from rules_engine.core.market import Candle
from rules_engine.history import CandleCache, shipped_candles

YEAR = 525_600
START = datetime(2025, 1, 1, tzinfo=UTC)
TICK = Decimal("0.1")
SIZE_STEP = Decimal("0.00000001")


def _hours() -> Iterator[tuple[float, float, float, float, float]]:
    """The shipped hours forward, then backward, forever (open, high, low, close, volume)."""
    hours = [(float(c.open), float(c.high), float(c.low), float(c.close), float(c.volume))
             for c in shipped_candles()]
    while True:
        yield from hours
        yield from ((c, h, lo, o, v) for o, h, lo, c, v in reversed(hours))


def _tick(value: float) -> Decimal:
    return Decimal(round(value * 10)) * TICK


def minute_candles(count: int = YEAR, seed: int = 14, start: datetime = START
                   ) -> Iterator[Candle]:
    """`count` seeded BTC-USDT 1-minute candles from `start` (see the module's text)."""
    rng = random.Random(seed)
    made = 0
    at = start
    minute = timedelta(minutes=1)
    for o, h, lo, c, v in _hours():
        first, second = rng.sample(range(60), 2)
        t_hi, t_lo = (first, second) if rng.random() < 0.5 else (second, first)
        anchors = sorted([(-1, o), (t_hi, h), (t_lo, lo), (59, c)])
        closes = [0.0] * 60
        for (ta, pa), (tb, pb) in itertools.pairwise(anchors):
            span = tb - ta
            walk = [0.0]
            for _ in range(span):
                walk.append(walk[-1] + rng.gauss(0, 1))
            scale = (h - lo) / 12
            for i in range(1, span + 1):
                bridge = walk[i] - walk[span] * i / span
                value = pa + (pb - pa) * i / span + bridge * scale
                closes[ta + i] = min(max(value, lo), h)
        closes[t_hi], closes[t_lo], closes[59] = h, lo, c
        weights = [rng.random() + 0.5 for _ in range(60)]
        total = sum(weights)
        previous = o
        for m in range(60):
            mo, mc = previous, closes[m]
            wick = (h - lo) / 40
            mh = h if m == t_hi else min(h, max(mo, mc) + rng.random() * wick)
            ml = lo if m == t_lo else max(lo, min(mo, mc) - rng.random() * wick)
            volume = Decimal(round(v * weights[m] / total * 1e8)) * SIZE_STEP
            close = _tick(mc)
            yield Candle("BTC-USDT", "1min", at, _tick(mo), close, _tick(mh), _tick(ml),
                         volume, (volume * close).quantize(SIZE_STEP))
            previous = mc
            at += minute
            made += 1
            if made >= count:
                return


def build_cache(path: Path, count: int = YEAR, seed: int = 14) -> Path:
    """The minutes written into a candle cache page by page (1,500), as a download does."""
    page: list[Candle] = []
    began = int(START.timestamp())
    with CandleCache(path) as cache:
        for candle in minute_candles(count, seed):
            page.append(candle)
            if len(page) == 1500:
                cache.add("BTC-USDT", "1m", page, began, began + 1500 * 60)
                began += 1500 * 60
                page = []
        if page:
            cache.add("BTC-USDT", "1m", page, began, began + len(page) * 60)
    return path
