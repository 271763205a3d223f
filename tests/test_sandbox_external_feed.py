"""The external feed: books pushed in by a caller (the watcher's paper mode), served and matched
by a sandbox over real sockets.

The books are real KuCoin levels: the BCHSV-USDT REST snapshot of the recorded 2021-04-25
session shipped in `rules_engine/sandbox/data/` (the recording holds no BTC-USDT), with that
symbol's row of KuCoin's 2021 symbol list.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest
from sandbox_support import Sandbox, running
from test_sandbox_ws import _connect, _drain, _subscribe

from rules_engine.core.symbols import SymbolTable, parse_symbols_reply
from rules_engine.sandbox.clock import ManualClock
from rules_engine.sandbox.config import SandboxConfig
from rules_engine.sandbox.engine import Event
from rules_engine.sandbox.feeds import Candle, ExternalFeed, FeedTick
from rules_engine.sandbox.server import build_state

D = Decimal
SYMBOL = "BCHSV-USDT"
OTHER = "FET-BTC"
Levels = list[tuple[Decimal, Decimal]]


def _data(name: str) -> str:
    return resources.files("rules_engine.sandbox").joinpath("data", name).read_text("utf-8")


def _rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(_data("recorded_symbols_2021-04-25.json"))["data"]
    return rows


def _table() -> SymbolTable:
    return parse_symbols_reply({"code": "200000", "data": _rows()}, source="KuCoin 2021-04-25")


def _snapshot(symbol: str, depth: int = 20) -> tuple[Levels, Levels]:
    """The first `depth` levels a side of the recorded REST snapshot of `symbol`."""
    name = "cryptofeed_kucoin_rest_orderbook_level2_snapshots_2021-04-25.ndjson"
    for line in _data(name).splitlines():
        record = json.loads(line)
        if record["url"].endswith(f"symbol={symbol}"):
            data = record["response"]["data"]
            bids = [(D(p), D(s)) for p, s in data["bids"][:depth]]
            asks = [(D(p), D(s)) for p, s in data["asks"][:depth]]
            return bids, asks
    raise AssertionError(f"no recorded snapshot of {symbol}")


def _feed() -> ExternalFeed:
    return ExternalFeed(_table(), [SYMBOL, OTHER], rows=_rows())


@asynccontextmanager
async def _sandbox(feed: ExternalFeed | None = None, **kw: Any) -> AsyncIterator[Sandbox]:
    async with running(clock=ManualClock(), feed=feed or _feed(), **kw) as box:
        yield box


def _rows_of(levels: Levels) -> list[list[str]]:
    return [[str(p), str(s)] for p, s in levels]


async def _full_book(box: Sandbox, symbol: str = SYMBOL) -> dict[str, Any]:
    book: dict[str, Any] = await box.ok("GET", "/api/v3/market/orderbook/level2",
                                        {"symbol": symbol})
    return book


async def _order(box: Sandbox, order_id: str) -> dict[str, Any]:
    order: dict[str, Any] = await box.ok("GET", f"/api/v1/hf/orders/{order_id}",
                                         {"symbol": SYMBOL})
    return order


# ---- serving the pushed market ------------------------------------------------------------


async def test_the_symbols_endpoints_serve_the_external_feeds_symbol_table() -> None:
    async with _sandbox() as box:
        listed = await box.ok("GET", "/api/v2/symbols", signed=False)
        assert [r["symbol"] for r in listed] == [SYMBOL, OTHER]
        row = await box.ok("GET", f"/api/v2/symbols/{SYMBOL}", signed=False)
        assert row == next(r for r in _rows() if r["symbol"] == SYMBOL)  # the caller's row
        assert row["name"] == "BSV-USDT" and row["priceIncrement"] == "0.001"
        status, body, _ = await box.call("GET", "/api/v2/symbols/BTC-USDT", signed=False)
        assert body["code"] == "900001", (status, body)


async def test_the_rest_level2_snapshot_shows_the_pushed_levels() -> None:
    bids, asks = _snapshot(SYMBOL)
    async with _sandbox() as box:
        before = await _full_book(box)
        box.state.feed.push(SYMBOL, bids, asks)  # type: ignore[attr-defined]
        box.state.feed_step()
        book = await _full_book(box)
        assert book["bids"] == _rows_of(bids) and book["asks"] == _rows_of(asks)
        assert int(book["sequence"]) == int(before["sequence"]) + len(bids) + len(asks)
        top = await box.ok("GET", "/api/v1/market/orderbook/level1", {"symbol": SYMBOL},
                           signed=False)
        assert (top["bestBid"], top["bestAsk"]) == ("242.649", "242.951")
        other = await _full_book(box, OTHER)  # not pushed: still empty
        assert other["bids"] == [] and other["asks"] == []


async def test_the_latest_push_between_two_steps_is_the_book_served() -> None:
    bids, asks = _snapshot(SYMBOL)
    async with _sandbox() as box:
        feed: ExternalFeed = box.state.feed  # type: ignore[assignment]
        feed.push(SYMBOL, bids, asks)
        feed.push(SYMBOL, bids[:3], asks[:2])
        box.state.feed_step()
        book = await _full_book(box)
        assert book["bids"] == _rows_of(bids[:3]) and book["asks"] == _rows_of(asks[:2])


# ---- matching against the pushed market ---------------------------------------------------


async def test_a_signed_limit_buy_at_or_above_the_pushed_best_ask_fills_against_it() -> None:
    bids, asks = _snapshot(SYMBOL)
    (best_ask, best_size), (second_ask, _) = asks[0], asks[1]
    async with _sandbox() as box:
        box.state.feed.push(SYMBOL, bids, asks)  # type: ignore[attr-defined]
        box.state.feed_step()
        at = await box.ok("POST", "/api/v1/hf/orders", body={
            "clientOid": "at-ask", "symbol": SYMBOL, "side": "buy", "type": "limit",
            "price": str(best_ask), "size": "1"})
        above = await box.ok("POST", "/api/v1/hf/orders", body={
            "clientOid": "above-ask", "symbol": SYMBOL, "side": "buy", "type": "limit",
            "price": str(second_ask - D("0.001")), "size": "1"})
        for placed in (at, above):
            order = await _order(box, placed["orderId"])
            assert order["active"] is False and order["dealSize"] == "1"
            assert D(order["dealFunds"]) == best_ask  # both took the best ask, 1 BSV each
        fills = await box.ok("GET", "/api/v1/hf/fills", {"symbol": SYMBOL})
        assert {(f["price"], f["size"], f["liquidity"]) for f in fills["items"]} == {
            (str(best_ask), "1", "taker")}
        book = await _full_book(box)
        assert book["asks"][0] == [str(best_ask), str(best_size - 2)]
        accounts = {a["currency"]: a for a in await box.ok("GET", "/api/v1/accounts")}
        assert D(accounts["BSV"]["balance"]) == 2


async def test_a_limit_buy_below_the_best_bid_rests_until_a_push_moves_the_asks_through_it(
) -> None:
    bids, asks = _snapshot(SYMBOL)
    price = bids[5][0] - D("0.5")  # 241.848: well inside the bids, 1.103 below the best ask
    async with _sandbox() as box:
        feed: ExternalFeed = box.state.feed  # type: ignore[assignment]
        feed.push(SYMBOL, bids, asks)
        box.state.feed_step()
        placed = await box.ok("POST", "/api/v1/hf/orders", body={
            "clientOid": "rests", "symbol": SYMBOL, "side": "buy", "type": "limit",
            "price": str(price), "size": "0.5"})
        order = await _order(box, placed["orderId"])
        assert order["active"] is True and order["inOrderBook"] is True
        for _ in range(3):  # the same real market pushed again, and steps: nothing happens
            feed.push(SYMBOL, bids, asks)
            box.state.feed_step()
        assert (await _order(box, placed["orderId"]))["dealSize"] == "0"
        # The market falls by 1 USDT: the asks come down to 241.951, still above the order.
        down1 = [(p - 1, s) for p, s in bids], [(p - 1, s) for p, s in asks]
        feed.push(SYMBOL, *down1)
        box.state.feed_step()
        assert (await _order(box, placed["orderId"]))["active"] is True
        # Another 2 USDT: the best ask (239.951) is through the order, which fills as maker.
        down3 = [(p - 3, s) for p, s in bids], [(p - 3, s) for p, s in asks]
        feed.push(SYMBOL, *down3)
        box.state.feed_step()
        order = await _order(box, placed["orderId"])
        assert order["active"] is False and order["dealSize"] == "0.5"
        fills = await box.ok("GET", "/api/v1/hf/fills", {"symbol": SYMBOL})
        assert [(f["price"], f["size"], f["liquidity"]) for f in fills["items"]] == [
            (str(price), "0.5", "maker")]
        book = await _full_book(box)
        best_ask, best_size = down3[1][0]
        assert book["asks"][0] == [str(best_ask), str(best_size - D("0.5"))]
        assert book["bids"] == _rows_of(down3[0])


async def test_a_pushed_trade_print_moves_the_last_price_and_streams_on_the_match_topic(
) -> None:
    bids, asks = _snapshot(SYMBOL)
    async with _sandbox() as box:
        feed: ExternalFeed = box.state.feed  # type: ignore[assignment]
        ws = await _connect(box)
        await _subscribe(ws, f"/market/match:{SYMBOL}")
        feed.push(SYMBOL, bids, asks, trade=(asks[0][0], D("0.25"), "buy"))
        box.state.feed_step()
        messages = await _drain(ws, 0.1)
        assert [(m["data"]["price"], m["data"]["size"], m["data"]["side"]) for m in messages] == [
            (str(asks[0][0]), "0.25", "buy")]
        top = await box.ok("GET", "/api/v1/market/orderbook/level1", {"symbol": SYMBOL},
                           signed=False)
        assert top["price"] == str(asks[0][0])
        await ws.close()


# ---- refusals -----------------------------------------------------------------------------


async def test_crossed_and_non_positive_pushes_are_refused_naming_the_symbol() -> None:
    bids, asks = _snapshot(SYMBOL)
    async with _sandbox() as box:
        feed: ExternalFeed = box.state.feed  # type: ignore[assignment]
        feed.push(SYMBOL, bids, asks)
        box.state.feed_step()
        served = await _full_book(box)
        crossed_bids = [(asks[0][0], D("1")), *bids]
        with pytest.raises(ValueError, match=f"{SYMBOL}: crossed book, best bid 242.951 >= "
                                             "best ask 242.951"):
            feed.push(SYMBOL, crossed_bids, asks)
        bad: list[tuple[Levels, Levels]] = [
            ([(D(0), D(1)), *bids[1:]], asks),  # zero price
            (bids, [(asks[0][0], D(0)), *asks[1:]]),  # zero size
            (bids, [(asks[0][0], D("-1")), *asks[1:]]),  # negative size
            (bids, [(asks[0][0], D("NaN")), *asks[1:]]),  # not finite
            (list(reversed(bids)), asks),  # bids low to high
            (bids, [asks[0], asks[0], *asks[1:]]),  # a price twice
        ]
        for bad_bids, bad_asks in bad:
            with pytest.raises(ValueError, match=SYMBOL):
                feed.push(SYMBOL, bad_bids, bad_asks)
        with pytest.raises(TypeError, match=SYMBOL):
            feed.push(SYMBOL, [("242.649", "5")], asks)  # type: ignore[list-item]
        with pytest.raises(ValueError, match="side"):
            feed.push(SYMBOL, bids, asks, trade=(asks[0][0], D(1), "up"))
        # Nothing refused was stored: steps change nothing, the served book is the last good one.
        assert feed.step(box.state.now_ms()) == []
        box.state.feed_step()
        assert await _full_book(box) == served


async def test_a_symbol_the_feed_does_not_carry_is_refused_and_the_feed_keeps_running(
) -> None:
    bids, asks = _snapshot(SYMBOL)
    config = SandboxConfig(feed_interval_ms=10)
    async with _sandbox(config=config, run_feed=True) as box:
        feed: ExternalFeed = box.state.feed  # type: ignore[assignment]
        with pytest.raises(ValueError, match="'BTC-USDT' is not carried"):
            feed.push("BTC-USDT", bids, asks)
        with pytest.raises(ValueError, match="'BTC-USDT' is not carried"):
            feed.set_history("BTC-USDT", [])
        feed.push(SYMBOL, bids, asks)  # the timer's next tick applies it
        for _ in range(200):
            book = await _full_book(box)
            if book["bids"]:
                break
            await asyncio.sleep(0.01)
        assert book["bids"] == _rows_of(bids) and book["asks"] == _rows_of(asks)
        stats = await box.ok("GET", "/sandbox/admin/stats", signed=False)
        assert stats["feed"]["ticks"] >= 1


def test_an_external_feed_over_symbols_missing_from_its_table_is_refused() -> None:
    with pytest.raises(ValueError, match=r"not in the symbol table .*\['BTC-USDT'\]"):
        ExternalFeed(_table(), [SYMBOL, "BTC-USDT"])
    with pytest.raises(ValueError, match="at least one symbol"):
        ExternalFeed(_table(), [])


def test_build_state_takes_the_feed_object_and_refuses_external_by_name_alone() -> None:
    feed = _feed()
    state = build_state(SandboxConfig(), feed=feed, clock=ManualClock())
    assert state.feed is feed and list(state.symbols) == [SYMBOL, OTHER]
    assert build_state(SandboxConfig(), feed_name="external", feed=_feed()).feed.name == "external"
    with pytest.raises(ValueError, match="pass it as feed="):
        build_state(SandboxConfig(), feed_name="external")
    with pytest.raises(ValueError, match="does not match"):
        build_state(SandboxConfig(), feed_name="recorded", feed=_feed())
    assert build_state(SandboxConfig(), clock=ManualClock()).feed.name == "synthetic"


# ---- nothing new, nothing published -------------------------------------------------------


async def test_a_step_with_no_push_publishes_no_level2_message() -> None:
    bids, asks = _snapshot(SYMBOL)
    async with _sandbox() as box:
        feed: ExternalFeed = box.state.feed  # type: ignore[assignment]
        published: list[Event] = []
        box.state.listeners.append(published.extend)
        ws = await _connect(box)
        await _subscribe(ws, f"/market/level2:{SYMBOL}")
        feed.push(SYMBOL, bids, asks)
        box.state.feed_step()
        first = await _drain(ws, 0.1)
        assert [m["topic"] for m in first] == [f"/market/level2:{SYMBOL}"]
        sequence = (await _full_book(box))["sequence"]
        assert first[0]["data"]["sequenceEnd"] == int(sequence)
        published.clear()
        for _ in range(5):
            box.state.feed_step()  # no push
        feed.push(SYMBOL, bids, asks)  # the same book again: the market did not move
        box.state.feed_step()
        assert await _drain(ws, 0.1) == []
        assert published == []
        assert (await _full_book(box))["sequence"] == sequence
        # One level moves: one message with that one change.
        moved = [(asks[0][0], asks[0][1] + 1), *asks[1:]]
        feed.push(SYMBOL, bids, moved)
        box.state.feed_step()
        changes = [m["data"]["changes"] for m in await _drain(ws, 0.1)]
        assert changes == [{"asks": [[str(asks[0][0]), str(asks[0][1] + 1),
                                      str(int(sequence) + 1)]], "bids": []}]
        await ws.close()


async def test_before_any_push_the_books_are_empty_and_steps_publish_nothing() -> None:
    async with _sandbox() as box:
        feed: ExternalFeed = box.state.feed  # type: ignore[assignment]
        assert not feed.has_book(SYMBOL)
        published: list[Event] = []
        box.state.listeners.append(published.extend)
        before = await _full_book(box)
        for _ in range(3):
            box.state.feed_step()
        assert published == [] and await _full_book(box) == before
        assert before["bids"] == [] and before["asks"] == []
        # Orders still work: a limit buy rests on the empty book and a later push fills it.
        placed = await box.ok("POST", "/api/v1/hf/orders", body={
            "clientOid": "early", "symbol": SYMBOL, "side": "buy", "type": "limit",
            "price": "240", "size": "1"})
        assert (await _order(box, placed["orderId"]))["active"] is True
        bids, asks = _snapshot(SYMBOL)
        feed.push(SYMBOL, [(p - 3, s) for p, s in bids], [(p - 3, s) for p, s in asks])
        assert feed.has_book(SYMBOL)
        box.state.feed_step()
        assert (await _order(box, placed["orderId"]))["dealSize"] == "1"


# ---- the pure feed ------------------------------------------------------------------------


def test_the_feed_steps_only_the_symbols_whose_book_or_print_changed() -> None:
    feed = _feed()
    bids, asks = _snapshot(SYMBOL, 5)
    other_bids, other_asks = _snapshot(OTHER, 5)
    assert feed.step(0) == []
    feed.push(SYMBOL, bids, asks)
    feed.push(OTHER, other_bids, other_asks)
    assert [t.symbol for t in feed.step(1)] == [SYMBOL, OTHER]
    feed.push(SYMBOL, bids, asks)
    feed.push(OTHER, other_bids[1:], other_asks)
    assert feed.step(2) == [FeedTick(OTHER, tuple(other_bids[1:]), tuple(other_asks))]
    feed.push(SYMBOL, bids, asks, trade=(asks[0][0], D("0.1"), "buy"))
    feed.push(SYMBOL, bids, asks)  # a print not yet stepped survives a later book
    assert feed.step(3) == [FeedTick(SYMBOL, tuple(bids), tuple(asks),
                                     (asks[0][0], D("0.1"), "buy"))]
    assert feed.step(4) == []
    capped = ExternalFeed(_table(), [SYMBOL], level_count=2)
    capped.push(SYMBOL, bids, asks)
    assert capped.step(0) == [FeedTick(SYMBOL, tuple(bids[:2]), tuple(asks[:2]))]


def test_history_is_empty_unless_candles_were_given_and_sets_the_last_price() -> None:
    feed = _feed()
    assert feed.history(SYMBOL) == []
    candles = [Candle(1_619_373_600 + 3600 * i, D("240"), D(240 + i), D(241 + i), D("239"),
                      D("10"), D("2400")) for i in (1, 0)]
    feed.set_history(SYMBOL, candles)
    assert [c.start_s for c in feed.history(SYMBOL)] == [1_619_373_600, 1_619_377_200]
    state = build_state(SandboxConfig(), feed=feed, clock=ManualClock())
    assert state.engine.stats[SYMBOL].last == D(241)
    assert feed.history(OTHER) == []


def test_rows_missing_from_the_caller_are_made_from_the_symbol_table() -> None:
    feed = ExternalFeed(_table(), [SYMBOL])
    (row,) = feed.symbol_rows()
    assert row["symbol"] == SYMBOL and row["baseCurrency"] == "BSV"
    assert row["baseIncrement"] == "0.00000001" and row["priceIncrement"] == "0.001"
    again = parse_symbols_reply({"code": "200000", "data": [row]}, source="served")
    assert again[SYMBOL] == _table()[SYMBOL]
