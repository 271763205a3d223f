"""Candle history: the local cache `data download` fills and `backtest` reads.

    download(feed, cache, symbols, timeframe, start, end)   paged GET /api/v1/market/candles
    CandleCache(path)    SQLite: candles and the ranges already asked for (resumable)
    read_candles(...)    a streamed series: the cache, else the shipped BTC-USDT hourly candles
"""

from rules_engine.history._cache import CandleCache, default_cache_path
from rules_engine.history._download import PAGE, DownloadError, download
from rules_engine.history._series import (
    TIMEFRAMES,
    HistoryError,
    parse_when,
    read_candles,
    shipped_candles,
)

__all__ = [
    "PAGE",
    "TIMEFRAMES",
    "CandleCache",
    "DownloadError",
    "HistoryError",
    "default_cache_path",
    "download",
    "parse_when",
    "read_candles",
    "shipped_candles",
]
