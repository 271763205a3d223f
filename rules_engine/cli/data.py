"""`rules-engine data download SYMBOL... --timeframe 1m --from DATE --to DATE [--cache FILE]
[--exchange-url URL] [--quiet]`.

Candles from KuCoin's public `GET /api/v1/market/candles` into the local cache
(`rules_engine.history`), page by page; a download stopped halfway resumes where it stopped.
Progress on stderr while it runs (one refreshed line on a terminal), then one line per
symbol. Exit 0 when every symbol is stored, 2 for a usage error or a refused download.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time
from pathlib import Path

from rules_engine.adapters.kucoin import KucoinFeed, KucoinRest
from rules_engine.history import (
    TIMEFRAMES,
    CandleCache,
    DownloadError,
    HistoryError,
    default_cache_path,
    download,
    parse_when,
)

__all__ = ["register"]

DEFAULT_EXCHANGE = "https://api.kucoin.com"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "data", help="download candle history for backtests",
        description="Candle history in the local cache that `backtest` reads.")
    inner = parser.add_subparsers(dest="data_command", metavar="ACTION")
    inner.required = True
    down = inner.add_parser(
        "download", help="download candles of SYMBOLs into the cache",
        description="Download candles from KuCoin's public API into the local cache "
                    "(resumable: what is stored is not asked for again).")
    down.add_argument("symbols", nargs="+", metavar="SYMBOL")
    down.add_argument("--timeframe", default="1m", help=f"one of {', '.join(TIMEFRAMES)}")
    down.add_argument("--from", dest="start", required=True, metavar="DATE",
                      help="first day (UTC), 2026-01-05 or 2026-01-05T12:00")
    down.add_argument("--to", dest="end", required=True, metavar="DATE",
                      help="end, not included (UTC)")
    down.add_argument("--cache", type=Path, default=None,
                      help=f"the cache file (default {default_cache_path()})")
    down.add_argument("--exchange-url", default=DEFAULT_EXCHANGE)
    down.add_argument("--quiet", action="store_true", help="no progress, no summary")
    down.set_defaults(handler=_download)


def _fail(message: str) -> int:
    print(f"rules-engine data download: error: {message}", file=sys.stderr)
    return 2


def _download(args: argparse.Namespace) -> int:
    bad = [s for s in args.symbols if s.upper() != s or "-" not in s]
    if bad:
        return _fail("symbols are written BASE-QUOTE in upper case, such as BTC-USDT: "
                     + ", ".join(bad))
    if args.timeframe not in TIMEFRAMES:
        return _fail(f"--timeframe {args.timeframe!r} is not one of {', '.join(TIMEFRAMES)}")
    if not args.exchange_url.startswith(("http://", "https://")):
        return _fail("--exchange-url must start with http:// or https://")
    try:
        start = parse_when(args.start, "--from")
        end = parse_when(args.end, "--to")
    except HistoryError as err:
        return _fail(str(err))
    if end <= start:
        return _fail(f"--to ({args.end}) must be after --from ({args.start})")
    path = args.cache or default_cache_path()
    try:
        cache = CandleCache(path)
    except (OSError, sqlite3.Error) as err:  # a folder that cannot be made, not a database
        return _fail(f"cannot open the cache {path}: {err}; give another file with --cache")
    tty = sys.stderr.isatty() and not args.quiet
    began = time.monotonic()

    def progress(symbol: str, done: int, total: int, stored: int) -> None:
        if not tty:
            return
        share = done / total if total else 1.0
        spent = time.monotonic() - began
        eta = spent / share - spent if share > 0 else 0.0
        print(f"\r{symbol} {args.timeframe}: {share:6.1%}  {stored} candles  "
              f"eta {eta:5.0f} s", end="", file=sys.stderr, flush=True)

    async def run() -> dict[str, int]:
        async with KucoinRest(args.exchange_url, None, attempts=6) as rest:
            return await download(KucoinFeed(rest), cache, list(args.symbols),
                                  timeframe=args.timeframe, start=start, end=end,
                                  progress=progress)

    try:
        stored = asyncio.run(run())
    except DownloadError as err:
        cache.close()
        if tty:
            print(file=sys.stderr)
        return _fail(f"{err}; what was stored is kept: run the same command again to resume")
    if tty:
        print(file=sys.stderr)
    if not args.quiet:
        for symbol, count in stored.items():
            print(f"{symbol} {args.timeframe}: {count} candles stored, "
                  f"{cache.count(symbol, args.timeframe)} in {path}", file=sys.stderr)
    cache.close()
    return 0
