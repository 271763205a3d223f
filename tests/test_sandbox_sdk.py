"""The official kucoin-universal-sdk 1.3.2, default options, configured only with the sandbox URL.

It signs every request (public ones too) with key version 3 and repeats path values in the query;
the sandbox must accept all of that unmodified.
"""

from __future__ import annotations

import threading
import uuid
import warnings
from decimal import Decimal
from typing import Any

import pytest
from sandbox_support import threaded

from rules_engine.sandbox.config import DEMO_KEY, DEMO_PASSPHRASE, DEMO_SECRET

# The SDK's own models use a pydantic feature deprecated since v2; that warning is the SDK's,
# not ours, and the suite turns warnings into errors.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kucoin_universal_sdk.api import DefaultClient
    from kucoin_universal_sdk.generate.account.account import GetSpotAccountListReqBuilder
    from kucoin_universal_sdk.generate.spot.market import (
        GetFullOrderBookReqBuilder,
        GetPartOrderBookReqBuilder,
        GetSymbolReqBuilder,
        GetTickerReqBuilder,
    )
    from kucoin_universal_sdk.generate.spot.order import (
        AddOrderReq,
        AddOrderReqBuilder,
        CancelOrderByClientOidReqBuilder,
        CancelOrderByOrderIdReqBuilder,
        GetOpenOrdersReqBuilder,
        GetOrderByClientOidReqBuilder,
        GetOrderByOrderIdReqBuilder,
        GetTradeHistoryReqBuilder,
    )
    from kucoin_universal_sdk.model import (
        ClientOptionBuilder,
        TransportOptionBuilder,
        WebSocketClientOptionBuilder,
    )
    from kucoin_universal_sdk.model.common import RestError

# At run time the SDK also reads `model_fields` on instances (deprecated in pydantic 2.11).
pytestmark = [
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211"),
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20"),
]


def _client(url: str, passphrase: str = DEMO_PASSPHRASE) -> DefaultClient:
    option = (
        ClientOptionBuilder()
        .set_key(DEMO_KEY)
        .set_secret(DEMO_SECRET)
        .set_passphrase(passphrase)
        .set_spot_endpoint(url)
        .set_transport_option(TransportOptionBuilder().build())
        .set_websocket_client_option(WebSocketClientOptionBuilder().build())
        .build()
    )
    return DefaultClient(option)


def test_sdk_reads_market_data_and_trades() -> None:
    with threaded() as box:
        spot = _client(box.url).rest_service().get_spot_service()
        market = spot.get_market_api()
        assert abs(market.get_server_time().data - box.state.now_ms()) < 5000
        symbol = market.get_symbol(GetSymbolReqBuilder().set_symbol("BTC-USDT").build())
        assert symbol.price_increment == "0.1" and symbol.base_min_size == "0.00001"
        ticker = market.get_ticker(GetTickerReqBuilder().set_symbol("BTC-USDT").build())
        assert Decimal(ticker.best_bid) < Decimal(ticker.best_ask)
        part = market.get_part_order_book(
            GetPartOrderBookReqBuilder().set_symbol("ETH-USDT").set_size("20").build())
        assert len(part.bids) == 20 and int(part.sequence) > 0
        full = market.get_full_order_book(
            GetFullOrderBookReqBuilder().set_symbol("BTC-USDT").build())
        assert len(full.asks) >= 40

        orders = spot.get_order_api()
        low = Decimal(part.bids[-1][0]) - 100
        cid = "sdk-" + uuid.uuid4().hex[:10]
        added = orders.add_order(
            AddOrderReqBuilder().set_client_oid(cid).set_symbol("ETH-USDT")
            .set_side(AddOrderReq.SideEnum.BUY).set_type(AddOrderReq.TypeEnum.LIMIT)
            .set_price(str(low)).set_size("0.01").build())
        assert added.client_oid == cid
        got = orders.get_order_by_order_id(
            GetOrderByOrderIdReqBuilder().set_order_id(added.order_id).set_symbol("ETH-USDT")
            .build())
        assert got.active is True and got.price == str(low)
        by_cid = orders.get_order_by_client_oid(
            GetOrderByClientOidReqBuilder().set_client_oid(cid).set_symbol("ETH-USDT").build())
        assert by_cid.id == added.order_id
        open_orders = orders.get_open_orders(
            GetOpenOrdersReqBuilder().set_symbol("ETH-USDT").build())
        assert [o.id for o in open_orders.data] == [added.order_id]
        cancelled = orders.cancel_order_by_client_oid(
            CancelOrderByClientOidReqBuilder().set_client_oid(cid).set_symbol("ETH-USDT")
            .build())
        assert cancelled.client_oid == cid

        second = orders.add_order(
            AddOrderReqBuilder().set_symbol("ETH-USDT").set_side(AddOrderReq.SideEnum.BUY)
            .set_type(AddOrderReq.TypeEnum.LIMIT).set_price(str(low)).set_size("0.01").build())
        gone = orders.cancel_order_by_order_id(
            CancelOrderByOrderIdReqBuilder().set_order_id(second.order_id).set_symbol("ETH-USDT")
            .build())
        assert gone.order_id == second.order_id

        bought = orders.add_order(
            AddOrderReqBuilder().set_symbol("ETH-USDT").set_side(AddOrderReq.SideEnum.BUY)
            .set_type(AddOrderReq.TypeEnum.MARKET).set_funds("100").build())
        done = orders.get_order_by_order_id(
            GetOrderByOrderIdReqBuilder().set_order_id(bought.order_id).set_symbol("ETH-USDT")
            .build())
        assert done.active is False and Decimal(done.deal_funds) > 99
        fills = orders.get_trade_history(
            GetTradeHistoryReqBuilder().set_symbol("ETH-USDT").set_order_id(bought.order_id)
            .build())
        assert sum(Decimal(f.size) for f in fills.items) == Decimal(done.deal_size)

        accounts = _client(box.url).rest_service().get_account_service().get_account_api()
        rows = accounts.get_spot_account_list(
            GetSpotAccountListReqBuilder().set_type("trade").build())
        eth = next(r for r in rows.data if r.currency == "ETH")
        assert Decimal(eth.balance) == 10 + Decimal(done.deal_size)


def test_sdk_with_a_wrong_passphrase_gets_400004() -> None:
    with threaded() as box:
        spot = _client(box.url, passphrase="nope").rest_service().get_spot_service()
        with pytest.raises(RestError, match="400004"):
            spot.get_order_api().get_open_orders(
                GetOpenOrdersReqBuilder().set_symbol("BTC-USDT").build())


def test_sdk_websocket_streams_tickers_and_books() -> None:
    with threaded() as box:
        ws = _client(box.url).ws_service().new_spot_public_ws()
        ws.start()
        tickers: list[Any] = []
        deltas: list[Any] = []
        seen = threading.Event()

        def on_ticker(topic: str, subject: str, data: Any) -> None:
            tickers.append((topic, data))
            if len(tickers) >= 3 and len(deltas) >= 3:
                seen.set()

        def on_book(topic: str, subject: str, data: Any) -> None:
            deltas.append((topic, data))

        try:
            subs = [ws.ticker(["BTC-USDT"], on_ticker),
                    ws.orderbook_increment(["ETH-USDT"], on_book)]
            assert seen.wait(10)
            for sub in subs:
                ws.unsubscribe(sub)
        finally:
            # stop() can take ~10 s: the SDK's websocket-client thread sits in a select() with
            # a 10 s timeout after the SDK has closed the socket itself; it is not the server.
            ws.stop()
        topic, data = tickers[-1]
        assert topic == "/market/ticker:BTC-USDT"
        assert Decimal(data.best_bid) < Decimal(data.best_ask)
        assert {t for t, _ in deltas} == {"/market/level2:ETH-USDT"}
        ends = [d.sequence_end for _, d in deltas]
        starts = [d.sequence_start for _, d in deltas]
        # Consecutive messages continue each other's sequence exactly.
        assert all(s == e + 1 for s, e in zip(starts[1:], ends, strict=False))
