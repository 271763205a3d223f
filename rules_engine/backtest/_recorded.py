"""`backtest --recorded SESSION`: a recorded WebSocket session replayed as it came, instead
of candles.

    the session's level2 updates and tickers (sandbox `RecordedFeed`, in time order, not
    looping) -> the sandbox's books and last price at each recorded moment -> the same
    watcher, venue and frames as a candle backtest (`_driver.py`)

At each moment a recorded message of a symbol the rules read arrived, in order: the timers
due before it run (the virtual clock stops at each), then the watcher's jobs, then the
sandbox applies every message up to that moment: level2 changes by KuCoin's sequence rules,
a ticker as the print that moves the last price (other symbols' messages wait for the next
such moment: no rule reads them). So a market order walks the book as it was recorded at
that moment, and a resting limit order fills when recorded liquidity crosses it. Nothing is
skipped. The watcher starts once every symbol it trades has had a recorded ticker (its last
price is not known before). The equity is sampled at every moment (each symbol marked at its
last price).

SESSION is `2021-04-25` (the shipped 31-second KuCoin session of ten symbols, from the
cryptofeed project, with its REST order-book snapshots) or a file of the same form: NDJSON
lines `{"ts": SECONDS, "dir": "in", "msg": FRAME}` as KuCoin sent them; its books start
empty and are built from its level2 updates.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Collection
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from rules_engine.backtest._driver import (
    BacktestError,
    History,
    Run,
    Samples,
    Settings,
    _Driver,
)
from rules_engine.compiler import CompiledRule
from rules_engine.core.symbols import SymbolTable
from rules_engine.sandbox.clock import ManualClock
from rules_engine.sandbox.engine import Engine
from rules_engine.sandbox.feeds import RecordedFeed
from rules_engine.sandbox.state import SandboxState

__all__ = ["SHIPPED_SESSION", "load_session", "moments", "open_market", "run_recorded",
           "session_span"]

SHIPPED_SESSION = "2021-04-25"


def load_session(session: str) -> RecordedFeed:
    """The session's replay, starting at its own first moment; BacktestError naming the
    fix when it cannot be read."""
    if session == SHIPPED_SESSION:
        return _at_start(RecordedFeed(start_ms=0, loop=False))
    path = Path(session)
    try:
        text = path.read_text("utf-8")
    except OSError as err:
        raise BacktestError(f"--recorded {session}: cannot read it ({err.strerror}); give "
                            f"{SHIPPED_SESSION} (the shipped session) or an NDJSON file of "
                            "recorded KuCoin WebSocket frames") from None
    for number, line in enumerate(text.splitlines(), 1):
        try:
            record = json.loads(line)
            float(record["ts"])
            str(record["dir"])
        except (ValueError, TypeError, KeyError):
            raise BacktestError(
                f"--recorded {session}, line {number}: not a recorded frame; each line is "
                '{"ts": SECONDS, "dir": "in", "msg": {...the frame...}}') from None
        problem = _bad_frame(record.get("msg"))
        if problem is not None:
            raise BacktestError(f"--recorded {session}, line {number}: {problem}")
    try:
        feed = RecordedFeed(start_ms=0, loop=False, session=text, snapshots="")
    except (IndexError, KeyError, ValueError, TypeError, ArithmeticError) as err:
        raise BacktestError(f"--recorded {session}: no usable level2 or ticker message "
                            f"({type(err).__name__}: {err})") from None
    return _at_start(feed)


def _bad_frame(msg: object) -> str | None:
    """What is wrong with a level2 update or ticker frame the replay would apply (None:
    nothing, or not such a frame: it is not replayed)."""
    if not isinstance(msg, dict) or msg.get("type") != "message":
        return None
    subject, data = msg.get("subject"), msg.get("data")
    if subject not in ("trade.l2update", "trade.ticker"):
        return None
    topic = str(msg.get("topic", ""))
    if ":" not in topic or not isinstance(data, dict):
        return f"a {subject} frame needs a topic with its symbol and a data object"
    try:
        if subject == "trade.ticker":
            for name in ("price", "size", "bestAsk"):
                if not Decimal(str(data[name])).is_finite():
                    raise ValueError(name)
            return None
        int(data["sequenceEnd"])
        for side in ("asks", "bids"):
            for price, size, sequence in data["changes"][side]:
                Decimal(price), Decimal(size), int(sequence)
    except (KeyError, ValueError, TypeError, ArithmeticError):
        if subject == "trade.ticker":
            return "a ticker needs price, size and bestAsk as numbers"
        return ("a level2 update needs sequenceEnd and changes.asks / changes.bids as "
                "[price, size, sequence] triples")
    return None


def _at_start(feed: RecordedFeed) -> RecordedFeed:
    """The replay's clock: the session's own time (its first message's moment)."""
    start = math.floor(feed.t0 * 1000)
    feed.start_ms = start
    feed._reset(start)
    return feed


def moments(feed: RecordedFeed, symbols: Collection[str] | None = None) -> list[int]:
    """Each moment (ms) a recorded message (of one of `symbols`, if given) arrives, once, in
    order: a step at it applies it and every message before it."""
    out: list[int] = []
    for ts, msg in feed.records:
        if symbols is not None and str(msg["topic"]).partition(":")[2] not in symbols:
            continue
        at = feed.start_ms + math.ceil(round((ts - feed.t0) * 1000, 6))
        if not out or at != out[-1]:
            out.append(at)
    return out


def session_span(feed: RecordedFeed) -> tuple[datetime, datetime]:
    """The session's first moment and one second past its last."""
    times = moments(feed)
    return (datetime.fromtimestamp(times[0] / 1000, UTC),
            datetime.fromtimestamp(times[-1] / 1000 + 1, UTC))


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _mark(engine: Engine, symbol: str) -> Decimal | None:
    last = engine.stats[symbol].last
    if last:
        return last
    book = engine.books[symbol]
    bid, ask = book.best("bids"), book.best("asks")
    return (bid + ask) / 2 if bid is not None and ask is not None else None


def open_market(state: SandboxState, feed: RecordedFeed, symbols: list[str], start: datetime,
                end: datetime) -> list[int]:
    """The market at the start (the snapshots, every message before it, and on until each of
    `symbols` has had a ticker: before it, its last price is not known), applied to `state`
    on its (manual) clock; the moments left to step, those of `symbols`' messages."""
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    times = [m for m in moments(feed, symbols) if start_ms <= m < end_ms]
    clock = state.clock
    assert isinstance(clock, ManualClock)
    clock.current_ms = max(start_ms, feed.start_ms)
    state.feed_step(force=True)
    stats = state.engine.stats
    while times and any(not stats[s].last for s in symbols):
        clock.current_ms = times.pop(0)
        state.feed_step(force=True)
    silent = [s for s in symbols if not stats[s].last]
    if silent or not times:
        raise BacktestError(f"the session has no ticker of {', '.join(silent or symbols)} "
                            "between --from and --to to start from")
    return times


async def run_recorded(rules: list[CompiledRule], table: SymbolTable, feed: RecordedFeed,
                       history: History, settings: Settings) -> Run:
    driver = _Driver(rules, table, history, settings, market=feed)
    driver.run.unit = "updates"
    return await _go(driver, feed)


async def _go(d: _Driver, feed: RecordedFeed) -> Run:
    run, engine, settings = d.run, d.engine, d.settings
    began = time.monotonic()
    end_ms = int(settings.end.timestamp() * 1000)
    if not [m for m in moments(feed) if settings.start <= _at(m) < settings.end]:
        first, last = session_span(feed)
        raise BacktestError(f"the session has no message between --from and --to: it runs "
                            f"from {first.isoformat()} to {last.isoformat()}")
    for symbol in d.symbols:
        base = d.table[symbol].base_currency
        run.start_balances[base] = engine.account.total(base)
    run.start_balances[d.quote] = engine.account.total(d.quote)
    times = open_market(d.state, feed, d.symbols, settings.start, settings.end)
    d.conn.sink.clear()
    await d.watcher.start()
    await d.drain()
    for symbol in d.symbols:
        mark = _mark(engine, symbol)
        if mark is not None:
            run.first_open[symbol] = mark
        run.prices[symbol] = Samples()
    progress = settings.progress
    try:
        for at in times:
            run.candles += 1
            run.stepped += 1
            await d.advance_to(at)
            await d.jobs()
            d.state.feed_step(force=True)
            await d.drain()
            holdings = d.holdings()
            moment = _at(at)
            for symbol in d.symbols:
                mark = _mark(engine, symbol)
                if mark is None:
                    continue
                run.first_open.setdefault(symbol, mark)
                d.marks[symbol] = mark
            lead = d.symbols[0]  # its price is the run's price series
            if lead in d.marks:
                for symbol in d.symbols[1:]:
                    if symbol in d.marks:
                        run.last_close[symbol] = d.marks[symbol]
                d.record(moment, lead, d.marks[lead], holdings)
            if progress is not None:
                progress(moment)
        await d.advance_to(end_ms)
    finally:
        run.stop_reason = d.watcher.stop_reason
        await d.watcher.close()
        d.store.close()
    d._collect()
    run.seconds = time.monotonic() - began
    return run
