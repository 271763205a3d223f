"""`rules-engine backtest RULES... --from DATE --to DATE [--timeframe 1h] [--balance
"1000 USDT,0.1 BTC"] [--fees MAKER,TAKER] [--cache FILE] [--db URL] [--json FILE]
[--chart FILE.png] [--html FILE.html] [--no-skip] [--quiet]`, or `rules-engine backtest
RULES... --recorded SESSION [--from DATE --to DATE] ...` over a recorded WebSocket session.

The rules, compiled as `run` compiles them, driven by the live watcher's parts on a virtual
clock over the candle history, against the sandbox's matching engine in this process
(`rules_engine.backtest`). The report goes to stdout; progress (the simulated date and an
ETA) to stderr when it is a terminal. The store is a temporary SQLite file unless `--db`.
Exit 0 after a report, 1 when the rule files have errors, 2 for a usage error or a history
that is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from rules_engine.history import (
    TIMEFRAMES,
    CandleCache,
    HistoryError,
    default_cache_path,
    parse_when,
    read_candles,
)

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "backtest", help="what the rules would have done over candle history",
        description="Run the rules through the live watcher's code on a virtual clock over "
                    "candle history, against the sandbox's matching engine in-process.")
    parser.add_argument("rules", nargs="+", type=Path, metavar="RULES")
    parser.add_argument("--from", dest="start", metavar="DATE",
                        help="start (UTC); with --recorded, default: the session's start")
    parser.add_argument("--to", dest="end", metavar="DATE",
                        help="end, not included (UTC); with --recorded, default: the "
                        "session's end")
    parser.add_argument("--recorded", metavar="SESSION", default=None,
                        help="replay a recorded WebSocket session (ticker and level2 as they "
                        "came) instead of candles: 2021-04-25 (the shipped KuCoin session) "
                        "or an NDJSON file of recorded frames")
    parser.add_argument("--timeframe", default="1h", help=f"one of {', '.join(TIMEFRAMES)} "
                        "(default 1h: the shipped BTC-USDT candles)")
    parser.add_argument("--balance", default="10000 USDT",
                        help='starting balances, such as "1000 USDT,0.1 BTC"')
    parser.add_argument("--fees", default="0.001,0.001", metavar="MAKER,TAKER",
                        help="fee rates (default 0.001,0.001: 0.1%%)")
    parser.add_argument("--cache", type=Path, default=None,
                        help=f"the candle cache (default {default_cache_path()})")
    parser.add_argument("--db", default=None, help="keep the backtest's store at this URL")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="every decision, order and fill, and the report, as JSON")
    parser.add_argument("--chart", type=Path, default=None, metavar="FILE.png",
                        help="the price with every fill marked, and the equity under it, as "
                        "PNG (needs the chart extra: pip install 'rules-engine[chart]')")
    parser.add_argument("--html", type=Path, default=None, metavar="FILE.html",
                        help="the same as an interactive page that works offline (needs the "
                        "html extra: pip install 'rules-engine[html]')")
    parser.add_argument("--no-skip", action="store_true",
                        help="step every candle (slower; decides the same)")
    parser.add_argument("--quiet", action="store_true", help="no progress, no report")
    parser.set_defaults(handler=_handle)


def _fail(message: str) -> int:
    print(f"rules-engine backtest: error: {message}", file=sys.stderr)
    return 2


def parse_balances(text: str) -> dict[str, Decimal]:
    """`"1000 USDT, 0.1 BTC"` -> {"USDT": 1000, "BTC": 0.1}; ValueError naming the part."""
    out: dict[str, Decimal] = {}
    for part in text.split(","):
        words = part.split()
        if len(words) != 2 or not words[1].isalpha():
            raise ValueError(f"--balance part {part.strip()!r}: write AMOUNT CURRENCY, such "
                             'as "1000 USDT,0.1 BTC"')
        try:
            amount = Decimal(words[0])
        except InvalidOperation:
            raise ValueError(f"--balance part {part.strip()!r}: {words[0]!r} is not a "
                             "number") from None
        if not amount.is_finite() or amount < 0:
            raise ValueError(f"--balance part {part.strip()!r}: the amount must be 0 or more")
        out[words[1].upper()] = out.get(words[1].upper(), Decimal(0)) + amount
    return out


def parse_fees(text: str) -> tuple[Decimal, Decimal]:
    parts = text.split(",")
    try:
        maker, taker = (Decimal(p.strip()) for p in parts) if len(parts) == 2 else (None, None)
    except InvalidOperation:
        maker = taker = None
    if maker is None or taker is None or not (0 <= maker < 1 and 0 <= taker < 1):
        raise ValueError(f"--fees {text!r}: write two rates MAKER,TAKER between 0 and 1, "
                         "such as 0.001,0.001 (0.1%)")
    return maker, taker


def _handle(args: argparse.Namespace) -> int:
    from rules_engine.backtest import (
        BacktestError,
        Settings,
        merged,
        run_backtest,
        summary,
        text,
    )
    from rules_engine.compiler._snapshot import shipped_symbols
    from rules_engine.runtime._reload import RuleFiles, RulesRejected, traded_symbols

    if args.timeframe not in TIMEFRAMES:
        return _fail(f"--timeframe {args.timeframe!r} is not one of {', '.join(TIMEFRAMES)}")
    session = None
    if args.recorded is not None:
        from rules_engine.backtest._recorded import load_session, session_span

        try:
            session = load_session(args.recorded)
        except BacktestError as err:
            return _fail(str(err))
        first, last = session_span(session)
        args.start = args.start or first.isoformat()
        args.end = args.end or last.isoformat()
    if args.start is None or args.end is None:
        return _fail("give --from DATE and --to DATE (or --recorded SESSION)")
    try:
        start, end = parse_when(args.start, "--from"), parse_when(args.end, "--to")
        balances = parse_balances(args.balance)
        maker, taker = parse_fees(args.fees)
    except (HistoryError, ValueError) as err:
        return _fail(str(err))
    if end <= start:
        return _fail(f"--to ({args.end}) must be after --from ({args.start})")
    if args.chart is not None:
        try:
            import matplotlib  # noqa: F401  (fail before the run, not after it)
        except ImportError:
            return _fail("--chart needs matplotlib: pip install 'rules-engine[chart]'")
    if args.html is not None:
        try:
            import plotly  # noqa: F401  (fail before the run, not after it)
        except ImportError:
            return _fail("--html needs plotly: pip install 'rules-engine[html]'")
    table = shipped_symbols()
    try:
        rules, _ = RuleFiles(list(args.rules), table, ()).load()
    except RulesRejected as err:
        print(err.report, file=sys.stderr)
        return 1
    if not rules:
        return _fail("the rule files hold no rule")
    cache_path = args.cache or default_cache_path()
    cache = CandleCache(cache_path) if cache_path.exists() or args.cache else None
    timeframe = args.timeframe
    seconds = TIMEFRAMES[timeframe].seconds

    def history(symbol: str, kind: str, a: datetime, b: datetime) -> list[Any]:
        return _aggregate(list(read_candles(cache, symbol, timeframe, a, b)), kind, seconds)

    try:
        series = ([] if session is not None else
                  [read_candles(cache, s, timeframe, start, end) for s in traded_symbols(rules)])
    except HistoryError as err:
        return _fail(str(err))
    tty = sys.stderr.isatty() and not args.quiet
    began = time.monotonic()
    shown = [0.0]

    def progress(at: datetime) -> None:
        now = time.monotonic()
        if not tty or now - shown[0] < 0.2:
            return
        shown[0] = now
        share = (at - start) / (end - start)
        spent = now - began
        eta = spent / share - spent if share > 0 else 0.0
        print(f"\r{at:%Y-%m-%d %H:%M} {min(share, 1.0):6.1%}  eta {eta:5.0f} s", end="",
              file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="rules-engine-backtest-") as folder:
        db = args.db or f"sqlite:///{Path(folder) / 'backtest.sqlite'}"
        settings = Settings(start, end, seconds, balances, maker, taker, db=db,
                            skip=not args.no_skip, progress=progress)
        try:
            if session is not None:
                from rules_engine.backtest._recorded import run_recorded

                settings.timeframe_s = 1
                run = asyncio.run(run_recorded(list(rules), table, session,
                                               lambda *_: [], settings))
            else:
                run = asyncio.run(run_backtest(list(rules), table, merged(series), history,
                                               settings))
        except (BacktestError, HistoryError) as err:
            return _fail(str(err))
        finally:
            if cache is not None:
                cache.close()
    if tty:
        print(file=sys.stderr)
    report = summary(run)
    names = {r.identity: r.name or r.identity[:12] for r in rules}
    if not args.quiet:
        print(text(report, names))
    if args.json is not None:
        document = {"from": start.isoformat(), "to": end.isoformat(),
                    "timeframe": timeframe if session is None else None,
                    "recorded": args.recorded,
                    "decisions": run.decisions, "orders": run.orders, "fills": run.fills,
                    "equity": [[t.isoformat(), v] for t, v in run.equity],
                    "report": report, "names": names}
        try:
            args.json.write_text(json.dumps(document, default=_plain, indent=1))
        except OSError as err:
            return _fail(f"cannot write {args.json}: {err}")
    if args.chart is not None:
        from rules_engine.backtest import ChartError, write_chart

        try:
            write_chart(run, args.chart)
        except ChartError as err:
            return _fail(str(err))
    if args.html is not None:
        from rules_engine.backtest._html import write_html

        try:
            write_html(run, args.html)
        except OSError as err:
            return _fail(f"cannot write {args.html}: {err.strerror or err}")
    return 0


def _plain(value: object) -> object:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _aggregate(candles: list[Any], kind: str, seconds: int) -> list[Any]:
    """Data candles grouped into the candle type a rule reads (`kind`), oldest first."""
    from rules_engine.core.market import Candle
    from rules_engine.sandbox.ws import CANDLE_TYPES

    granularity = CANDLE_TYPES.get(kind, seconds)
    if granularity == seconds:
        return candles
    out: list[Candle] = []
    for c in candles:
        at = int(c.open_time.timestamp())
        bucket = c.open_time - timedelta(seconds=at % granularity)
        if out and out[-1].open_time == bucket:
            last = out[-1]
            out[-1] = last._replace(close=c.close, high=max(last.high, c.high),
                                    low=min(last.low, c.low), volume=last.volume + c.volume,
                                    turnover=last.turnover + c.turnover)
        else:
            out.append(c._replace(interval=kind, open_time=bucket))
    return out
