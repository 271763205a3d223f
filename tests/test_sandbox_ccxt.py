"""ccxt 4.5.90 (sync, async and pro), default options, only the base URL changed."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import ccxt
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
import pytest
from sandbox_support import demo_credentials, point_ccxt_at, threaded


def test_sync_ccxt_loads_markets_reads_books_and_trades() -> None:
    with threaded() as box:
        ex = point_ccxt_at(ccxt.kucoin(demo_credentials()), box.url)
        markets = ex.load_markets()
        assert {"BTC/USDT", "ETH/USDT"} <= set(markets)
        assert markets["BTC/USDT"]["precision"]["price"] == 0.1
        assert ex.options["hf"] is True
        ticker = ex.fetch_ticker("BTC/USDT")
        assert ticker["last"] > 10000 and ticker["bid"] < ticker["ask"]
        assert len(ex.fetch_tickers()) == 2
        book = ex.fetch_order_book("BTC/USDT", 20)
        assert len(book["bids"]) == 20 and book["bids"][0][0] < book["asks"][0][0]
        full = ex.fetch_order_book("ETH/USDT")
        assert len(full["asks"]) >= 40
        before = ex.fetch_balance()
        assert before["USDT"]["free"] == 100000

        low = round(book["bids"][-1][0] - 500, 1)
        cid = "ccxt-" + uuid.uuid4().hex[:12]
        order = ex.create_order("BTC/USDT", "limit", "buy", 0.001, low, {"clientOid": cid})
        fetched = ex.fetch_order(order["id"], "BTC/USDT")
        assert fetched["status"] == "open" and fetched["clientOrderId"] == cid
        by_cid = ex.fetch_order(None, "BTC/USDT", {"clientOid": cid})
        assert by_cid["id"] == order["id"]
        assert [o["id"] for o in ex.fetch_open_orders("BTC/USDT")] == [order["id"]]
        ex.cancel_order(None, "BTC/USDT", {"clientOid": cid})
        assert ex.fetch_order(order["id"], "BTC/USDT")["status"] == "canceled"

        second = ex.create_order("BTC/USDT", "limit", "buy", 0.001, low)
        ex.cancel_order(second["id"], "BTC/USDT")
        closed = ex.fetch_closed_orders("BTC/USDT")
        assert {order["id"], second["id"]} <= {o["id"] for o in closed}

        market = ex.create_order("BTC/USDT", "market", "buy", 0.01)
        done = ex.fetch_order(market["id"], "BTC/USDT")
        assert done["status"] == "closed" and done["filled"] == 0.01
        trades = ex.fetch_my_trades("BTC/USDT")
        assert sum(t["amount"] for t in trades if t["order"] == market["id"]) == 0.01
        after = ex.fetch_balance()
        assert Decimal(str(after["BTC"]["total"])) == Decimal("1.01")
        assert after["USDT"]["total"] < before["USDT"]["total"] - 500

        with pytest.raises(ccxt.InsufficientFunds):
            ex.create_order("BTC/USDT", "market", "sell", 50)
        with pytest.raises(ccxt.OrderNotFound):
            ex.cancel_order(market["id"], "BTC/USDT")


def test_sync_ccxt_on_the_legacy_order_endpoints() -> None:
    with threaded() as box:
        ex = point_ccxt_at(ccxt.kucoin(demo_credentials()), box.url)
        ex.load_markets()
        legacy = {"hf": False}
        low = round(ex.fetch_order_book("BTC/USDT", 20)["bids"][-1][0] - 500, 1)
        order = ex.create_order("BTC/USDT", "limit", "buy", 0.001, low, dict(legacy))
        assert box.state.engine.orders[order["id"]].req.hf is False
        fetched = ex.fetch_order(order["id"], "BTC/USDT", dict(legacy))
        assert fetched["status"] == "open" and fetched["price"] == low
        assert [o["id"] for o in ex.fetch_open_orders("BTC/USDT", None, None, dict(legacy))] == [
            order["id"]]
        ex.cancel_order(order["id"], "BTC/USDT", dict(legacy))
        assert ex.fetch_order(order["id"], "BTC/USDT", dict(legacy))["status"] == "canceled"
        market = ex.create_order("BTC/USDT", "market", "sell", 0.002, None, dict(legacy))
        assert ex.fetch_order(market["id"], "BTC/USDT", dict(legacy))["filled"] == 0.002
        trades = ex.fetch_my_trades("BTC/USDT", None, None, dict(legacy))
        assert sum(t["amount"] for t in trades if t["order"] == market["id"]) == 0.002


def test_sync_ccxt_with_wrong_password_gets_an_authentication_error() -> None:
    with threaded() as box:
        creds = demo_credentials() | {"password": "wrong"}
        ex = point_ccxt_at(ccxt.kucoin(creds), box.url)
        with pytest.raises(ccxt.AuthenticationError):
            ex.fetch_balance()


async def test_async_ccxt_places_and_cancels() -> None:
    with threaded() as box:
        ex = point_ccxt_at(ccxt_async.kucoin(demo_credentials()), box.url)
        try:
            await ex.load_markets()
            book = await ex.fetch_order_book("ETH/USDT", 20)
            price = round(book["asks"][-1][0] + 50, 2)
            order = await ex.create_order("ETH/USDT", "limit", "sell", 0.01, price)
            assert (await ex.fetch_order(order["id"], "ETH/USDT"))["status"] == "open"
            await ex.cancel_order(order["id"], "ETH/USDT")
            assert (await ex.fetch_order(order["id"], "ETH/USDT"))["status"] == "canceled"
            filled = await ex.create_order("ETH/USDT", "market", "sell", 0.5)
            got = await ex.fetch_order(filled["id"], "ETH/USDT")
            assert got["status"] == "closed" and got["filled"] == 0.5
            assert (await ex.fetch_balance())["ETH"]["total"] == 9.5
        finally:
            await ex.close()


async def test_ccxt_pro_streams_tickers_and_order_books() -> None:
    with threaded() as box:
        ex = point_ccxt_at(ccxt_pro.kucoin(demo_credentials()), box.url)
        try:
            ticker = await asyncio.wait_for(ex.watch_ticker("BTC/USDT"), 10)
            assert ticker["symbol"] == "BTC/USDT" and ticker["bid"] < ticker["ask"]
            for _ in range(3):
                book = await asyncio.wait_for(ex.watch_order_book("BTC/USDT"), 10)
            assert book["bids"][0][0] < book["asks"][0][0]
            assert len(book["bids"]) >= 20
            # Stop the market, let ccxt catch up, then its book must be the sandbox's book.
            box.state.config.faults.stall_feed = True
            await asyncio.sleep(0.3)
            seq, bids, asks = box.state.engine.snapshot("BTC-USDT")
            ours = ex.orderbooks["BTC/USDT"]
            assert ours["nonce"] == seq
            assert [[float(p), float(s)] for p, s in bids] == [list(x[:2]) for x in ours["bids"]]
            assert [[float(p), float(s)] for p, s in asks] == [list(x[:2]) for x in ours["asks"]]
        finally:
            await ex.close()


async def test_ccxt_pro_private_streams_follow_a_market_order() -> None:
    with threaded() as box:
        ex = point_ccxt_at(ccxt_pro.kucoin(demo_credentials()), box.url)
        try:
            await ex.load_markets()
            orders = asyncio.create_task(ex.watch_orders("BTC/USDT"))
            balance = asyncio.create_task(ex.watch_balance())
            mine = asyncio.create_task(ex.watch_my_trades("BTC/USDT"))
            await asyncio.sleep(0.3)
            placed = await ex.create_order("BTC/USDT", "market", "buy", 0.001)
            got_orders = await asyncio.wait_for(orders, 5)
            assert {o["id"] for o in got_orders} == {placed["id"]}
            got_balance = await asyncio.wait_for(balance, 5)
            assert got_balance["info"]["relationContext"]["orderId"] == placed["id"]
            got_trades = await asyncio.wait_for(mine, 5)
            assert got_trades[0]["order"] == placed["id"] and got_trades[0]["amount"] > 0
        finally:
            await ex.close()
