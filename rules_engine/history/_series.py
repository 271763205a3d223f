"""A history to replay: from the cache, else the shipped BTC-USDT hourly candles.

The shipped candles are real KuCoin BTC-USDT 1h candles, 2025-11-17 to 2026-03-22, package
data of the sandbox (`rules_engine/sandbox/data/NOTICE.md` holds their licence): a backtest
over them needs no download.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType

from rules_engine.core.market import Candle
from rules_engine.engine._candles import TIMEFRAME_TYPES, Timeframe
from rules_engine.history._cache import CandleCache

__all__ = ["TIMEFRAMES", "HistoryError", "parse_when", "read_candles", "shipped_candles"]

TIMEFRAMES: Mapping[str, Timeframe] = MappingProxyType(dict(TIMEFRAME_TYPES))
SHIPPED = ("BTC-USDT", "1h")


class HistoryError(Exception):
    """No history for what was asked: the message says what to run."""


def parse_when(text: str, what: str) -> datetime:
    """`2026-01-05` (midnight UTC) or an ISO time (`2026-01-05T12:00`, UTC unless it says)."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise HistoryError(f"{what} {text!r} is not a date: write 2026-01-05 or "
                           "2026-01-05T12:00 (UTC)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def shipped_candles() -> list[Candle]:
    from rules_engine.sandbox.feeds import load_candles

    return [Candle("BTC-USDT", "1hour", datetime.fromtimestamp(c.start_s, UTC), c.open,
                   c.close, c.high, c.low, c.volume, c.turnover) for c in load_candles()]


def read_candles(cache: CandleCache | None, symbol: str, timeframe: str, start: datetime,
                 end: datetime) -> Iterator[Candle]:
    """The candles of `[start, end)`, oldest first, streamed from the cache; the shipped
    BTC-USDT hourly candles when the cache has none of that series."""
    kind = TIMEFRAMES[timeframe].type
    a, b = int(start.timestamp()), int(end.timestamp())
    if cache is not None and cache.covered(symbol, timeframe):
        return cache.read(symbol, timeframe, kind, a, b)
    if (symbol, timeframe) == SHIPPED:
        return iter([c for c in shipped_candles() if start <= c.open_time < end])
    raise HistoryError(
        f"no {timeframe} candles of {symbol} in the cache"
        f"{'' if cache is None else f' ({cache.path})'}: run `rules-engine data download "
        f"{symbol} --timeframe {timeframe} --from {start.date()} --to "
        f"{(end - timedelta(seconds=1)).date() + timedelta(days=1)}` first (only BTC-USDT 1h "
        "ships with the package)")
