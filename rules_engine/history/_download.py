"""`data download`: candles from `GET /api/v1/market/candles`, page by page, into the cache.

KuCoin answers at most 1,500 candles a call, newest first, for `[startAt, endAt)` in
seconds; a minute without trades has no candle (a gap, not an error). The range is cut into
windows of 1,500 candles, the oldest first; each window's candles and the window itself are
stored in one transaction, so an interrupted download resumes with the first window not
stored. The public pool's weight (3 a call) is the REST client's business: it waits for the
pool's reset rather than earn a 429.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from rules_engine.history._cache import CandleCache
from rules_engine.history._series import TIMEFRAMES
from rules_engine.ports import MarketFeed

__all__ = ["PAGE", "DownloadError", "download"]

PAGE = 1500

Progress = Callable[[str, int, int, int], None]  # symbol, seconds done, seconds in all, candles


class DownloadError(Exception):
    """The exchange refused or failed a page: the message names it; what is stored stays."""


async def download(feed: MarketFeed, cache: CandleCache, symbols: list[str], *,
                   timeframe: str, start: datetime, end: datetime,
                   progress: Progress | None = None) -> dict[str, int]:
    """Download what the cache lacks of `[start, end)`; the candles stored, per symbol."""
    kind, seconds = TIMEFRAMES[timeframe]
    a = int(start.timestamp()) // seconds * seconds
    b = -(-int(end.timestamp()) // seconds) * seconds
    stored: dict[str, int] = {}
    for symbol in symbols:
        stored[symbol] = 0
        todo = cache.missing(symbol, timeframe, a, b)
        total = sum(y - x for x, y in todo)
        done = 0
        for x, y in todo:
            cursor = x
            while cursor < y:
                upto = min(cursor + PAGE * seconds, y)
                reply = await feed.candles_reply(symbol, kind, _at(cursor), _at(upto))
                candles = feed.candles_of(symbol, kind, reply)
                if isinstance(candles, str):
                    raise DownloadError(
                        f"{symbol} {timeframe} candles from {_at(cursor).isoformat()}: "
                        f"{candles}")
                inside = [c for c in candles if cursor <= c.open_time.timestamp() < upto]
                stored[symbol] += cache.add(symbol, timeframe, inside, cursor, upto)
                done += upto - cursor
                cursor = upto
                if progress is not None:
                    progress(symbol, done, total, stored[symbol])
    return stored


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
