"""`rules-engine market SYMBOL... [--exchange-url URL] [--depth N] [--once] [--format text|json]`.

The live ticker and the synced level2 book of each symbol, as the watcher sees them, with
their freshness state. With `--once`, prints one report as soon as every book is live (or
after 10 s, with the states as they are) and exits; without it, refreshes every second until
interrupted. Exit 2 for a usage error or an exchange that cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rules_engine.adapters.kucoin._book import BookState, Delta, Level2Book, Step
from rules_engine.adapters.kucoin._errors import Action
from rules_engine.adapters.kucoin._parsing import PayloadError, parse_level2, parse_ws_message
from rules_engine.adapters.kucoin._rest import KucoinRest
from rules_engine.adapters.kucoin._ws import KucoinWs, batched_topics
from rules_engine.core.market import Ticker

__all__ = ["register"]

DEFAULT_EXCHANGE = "https://api.kucoin.com"
ONCE_TIMEOUT = 10.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "market",
        help="show the live ticker and synced book of symbols, with their freshness",
        description="Follow the ticker and level2 book of each SYMBOL as the watcher does.",
    )
    parser.add_argument("symbols", nargs="+", metavar="SYMBOL")
    parser.add_argument("--exchange-url", default=DEFAULT_EXCHANGE)
    parser.add_argument("--depth", type=int, default=10, help="book levels to show (default 10)")
    parser.add_argument("--once", action="store_true", help="print one report and exit")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    bad = [s for s in args.symbols if s.upper() != s or "-" not in s]
    if bad:
        print(
            f"rules-engine market: error: symbols are written BASE-QUOTE in upper case, "
            f"such as BTC-USDT: {', '.join(bad)}",
            file=sys.stderr,
        )
        return 2
    if not args.exchange_url.startswith(("http://", "https://")):
        print(
            "rules-engine market: error: --exchange-url must start with http:// or https://",
            file=sys.stderr,
        )
        return 2
    if args.depth < 1:
        print("rules-engine market: error: --depth must be 1 or more", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args))
    except _Fatal as err:
        print(f"rules-engine market: error: {err}", file=sys.stderr)
        return 2


class _Fatal(Exception):
    pass


class _Market:
    """Books and tickers of several symbols, fed by the WebSocket client and REST snapshots."""

    def __init__(self, rest: KucoinRest, symbols: list[str]) -> None:
        now = datetime.now(UTC)
        self.rest = rest
        self.books = {s: Level2Book(s, now) for s in symbols}
        self.tickers: dict[str, Ticker] = {}
        self.connected = False
        self._fetching: set[str] = set()

    def on_state(self, state: str, reason: str) -> None:
        now = datetime.now(UTC)
        self.connected = state == "live"
        for symbol, book in self.books.items():
            if state == "live":
                self.resync(symbol)  # every (re)connection starts from a fresh snapshot
            else:
                book.mark_stale(reason, now)

    def on_message(self, frame: dict[str, Any]) -> None:
        """A level2 delta or a ticker, parsed as the watcher parses them; anything malformed
        is dropped (a malformed delta makes its book resync)."""
        topic = str(frame.get("topic", ""))
        prefix, _, symbol = topic.partition(":")
        try:
            event = parse_ws_message(frame)
        except PayloadError:
            book = self.books.get(symbol) if prefix == "/market/level2" else None
            if book is not None:
                book.mark_stale("a malformed level2 message", datetime.now(UTC))
                book.state = BookState.SYNCING
                self.resync(symbol)
            return
        if isinstance(event, Delta):
            book = self.books.get(symbol)
            if book is None:
                return
            step = book.on_delta(event, datetime.now(UTC))
            if step is Step.RESYNC or (step is Step.BUFFERED and book.state is not BookState.LIVE):
                self.resync(book.symbol)
        elif isinstance(event, Ticker) and event.symbol in self.books:
            self.tickers[event.symbol] = event

    def resync(self, symbol: str) -> None:
        if symbol not in self._fetching:
            self._fetching.add(symbol)
            asyncio.get_running_loop().create_task(self._snapshot(symbol))

    async def _snapshot(self, symbol: str) -> None:
        try:
            outcome = await self.rest.call(
                "GET", "/api/v1/market/orderbook/level2_100", params=[("symbol", symbol)]
            )
            if outcome.action is Action.OK:
                try:
                    sequence, bids, asks = parse_level2(outcome.data)
                except PayloadError as err:
                    self.books[symbol].reason = f"a malformed snapshot: {err}"
                else:
                    self.books[symbol].on_snapshot(sequence, bids, asks, datetime.now(UTC))
            elif outcome.action in (Action.REJECT, Action.STOP):
                self.books[symbol].reason = f"the exchange refused the snapshot: {outcome.message}"
        finally:
            self._fetching.discard(symbol)

    def report(self, depth: int) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for symbol, book in self.books.items():
            ticker = self.tickers.get(symbol)
            bids, asks = book.depth(depth) if book.fresh else ([], [])
            best_bid = bids[0][0] if bids else ticker.best_bid if ticker else None
            best_ask = asks[0][0] if asks else ticker.best_ask if ticker else None
            out[symbol] = {
                "state": book.state.value,
                "reason": book.reason,
                "since": book.since.isoformat(),
                "sequence": book.sequence if book.fresh else None,
                "bid": _str(best_bid),
                "ask": _str(best_ask),
                "last": _str(ticker.price) if ticker else None,
                "bids": [[str(p), str(s)] for p, s in bids],
                "asks": [[str(p), str(s)] for p, s in asks],
            }
        return out


def _str(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


async def _run(args: argparse.Namespace) -> int:
    async with KucoinRest(args.exchange_url, attempts=3) as rest:
        probe = await rest.call("GET", "/api/v1/timestamp")
        if probe.action is not Action.OK:
            raise _Fatal(f"cannot reach {args.exchange_url}: {probe.message}")
        market = _Market(rest, list(dict.fromkeys(args.symbols)))
        for symbol in market.books:  # the ticker's first value, until the feed sends one
            level1 = await rest.call(
                "GET", "/api/v1/market/orderbook/level1", params=[("symbol", symbol)]
            )
            if level1.action is Action.OK and isinstance(level1.data, dict):
                with contextlib.suppress(PayloadError):  # the feed's first ticker will do
                    first = parse_ws_message({"topic": f"/market/ticker:{symbol}",
                                              "data": level1.data})
                    if isinstance(first, Ticker):
                        market.tickers.setdefault(symbol, first)
        ws = KucoinWs(rest, on_message=market.on_message, on_state=market.on_state)
        ws.subscribe(batched_topics("/market/level2:", market.books))
        ws.subscribe(batched_topics("/market/ticker:", market.books))
        stop = asyncio.Event()
        task = asyncio.create_task(ws.run(stop))
        try:
            if args.once:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + ONCE_TIMEOUT
                while loop.time() < deadline and not all(b.fresh for b in market.books.values()):
                    await asyncio.sleep(0.05)
                _print(market.report(args.depth), args.format)
                return 0
            while True:
                _print(market.report(args.depth), args.format)
                await asyncio.sleep(1.0)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)


def _print(report: dict[str, dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(report), flush=True)
        return
    for symbol, row in report.items():
        why = f" ({row['reason']})" if row["reason"] else ""
        print(
            f"{symbol}  {row['state']}{why}  seq {row['sequence']}  bid {row['bid']}  "
            f"ask {row['ask']}  last {row['last']}"
        )
        for (bp, bs), (ap, asz) in zip(row["bids"], row["asks"], strict=False):
            print(f"    {bs:>16} {bp:>14} | {ap:<14} {asz:<16}")
    print(flush=True)
