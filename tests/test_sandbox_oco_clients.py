"""The OCO calls of the clients nobody here wrote, unmodified, against the sandbox: every one
of the official kucoin-universal-sdk 1.3.2 (default options, only the sandbox's URL: add, get
by order id and by clientOid, the detail, the list, cancel by order id and by clientOid, batch
cancel), and ccxt 4.5.90's implicit OCO calls. The SDK marks its OCO calls deprecated
(KuCoin's unified account is its direction); the endpoints still answer."""

from __future__ import annotations

import uuid
import warnings
from decimal import Decimal

import ccxt
import pytest
from sandbox_support import demo_credentials, point_ccxt_at, threaded
from test_sandbox_sdk import _client

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kucoin_universal_sdk.generate.spot.market import GetTickerReqBuilder
    from kucoin_universal_sdk.generate.spot.order import (
        AddOcoOrderReq,
        AddOcoOrderReqBuilder,
        BatchCancelOcoOrdersReqBuilder,
        CancelOcoOrderByClientOidReqBuilder,
        CancelOcoOrderByOrderIdReqBuilder,
        GetOcoOrderByClientOidReqBuilder,
        GetOcoOrderByOrderIdReqBuilder,
        GetOcoOrderDetailByOrderIdReqBuilder,
        GetOcoOrderListReqBuilder,
    )
    from kucoin_universal_sdk.model.common import RestError

pytestmark = [
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211"),
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20"),
    # `@deprecated` on the SDK's OCO calls: KuCoin's notice, not a fault of the caller.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]
SYMBOL = "BTC-USDT"


def test_every_oco_call_of_the_sdk_works_against_the_sandbox() -> None:
    with threaded() as box:
        spot = _client(box.url).rest_service().get_spot_service()
        last = Decimal(spot.get_market_api().get_ticker(
            GetTickerReqBuilder().set_symbol(SYMBOL).build()).price)
        orders = spot.get_order_api()
        # Far from the moving market: neither leg trades or triggers during the test.
        high, low = (last * 2).quantize(Decimal(1)), (last / 2).quantize(Decimal(1))

        def add(cid: str) -> str:
            added = orders.add_oco_order(
                AddOcoOrderReqBuilder().set_symbol(SYMBOL)
                .set_side(AddOcoOrderReq.SideEnum.SELL).set_price(str(high)).set_size("0.01")
                .set_stop_price(str(low)).set_limit_price(str(low - 1)).set_client_oid(cid)
                .set_remark("sdk oco").set_trade_type(AddOcoOrderReq.TradeTypeEnum.TRADE)
                .build())
            assert len(added.order_id) == 24
            order_id: str = added.order_id
            return order_id

        cids = ["sdk-oco-" + uuid.uuid4().hex[:8] for _ in range(4)]
        ids = [add(cid) for cid in cids]

        got = orders.get_oco_order_by_order_id(
            GetOcoOrderByOrderIdReqBuilder().set_order_id(ids[0]).build())
        assert (got.order_id, got.client_oid, got.symbol) == (ids[0], cids[0], SYMBOL)
        assert got.status.value == "NEW" and got.order_time > 0
        by_cid = orders.get_oco_order_by_client_oid(
            GetOcoOrderByClientOidReqBuilder().set_client_oid(cids[1]).build())
        assert by_cid.order_id == ids[1]
        detail = orders.get_oco_order_detail_by_order_id(
            GetOcoOrderDetailByOrderIdReqBuilder().set_order_id(ids[0]).build())
        assert [(o.price, o.stop_price, o.size, o.status) for o in detail.orders] == [
            (str(high), str(high), "0.01", "NEW"), (str(low - 1), str(low), "0.01", "NEW")]
        listed = orders.get_oco_order_list(
            GetOcoOrderListReqBuilder().set_symbol(SYMBOL).set_page_size(10).set_current_page(1)
            .build())
        assert [i.order_id for i in listed.items] == ids[::-1] and listed.total_num == 4

        gone = orders.cancel_oco_order_by_order_id(
            CancelOcoOrderByOrderIdReqBuilder().set_order_id(ids[0]).build())
        assert gone.cancelled_order_ids == [o.id for o in detail.orders]
        gone = orders.cancel_oco_order_by_client_oid(
            CancelOcoOrderByClientOidReqBuilder().set_client_oid(cids[1]).build())
        assert len(gone.cancelled_order_ids) == 2
        batch = orders.batch_cancel_oco_orders(
            BatchCancelOcoOrdersReqBuilder().set_order_ids(f"{ids[2]},{ids[3]}")
            .set_symbol(SYMBOL).build())
        assert len(batch.cancelled_order_ids) == 4
        after = orders.get_oco_order_by_order_id(
            GetOcoOrderByOrderIdReqBuilder().set_order_id(ids[3]).build())
        assert after.status.value == "CANCELLED"  # the SDK's enum spells it so

        with pytest.raises(RestError, match="126043"):
            orders.get_oco_order_by_order_id(
                GetOcoOrderByOrderIdReqBuilder().set_order_id("0" * 24).build())
        with pytest.raises(RestError, match="400100"):
            orders.cancel_oco_order_by_order_id(
                CancelOcoOrderByOrderIdReqBuilder().set_order_id(ids[0]).build())


def test_ccxt_implicit_oco_calls_work_against_the_sandbox() -> None:
    """ccxt 4.5.90 has no unified OCO call for KuCoin spot; its implicit API methods for the
    `/api/v3/oco/...` paths are what a ccxt user calls, signed and routed by ccxt itself."""
    with threaded() as box:
        ex = point_ccxt_at(ccxt.kucoin(demo_credentials()), box.url)
        last = Decimal(str(ex.fetch_ticker("BTC/USDT")["last"]))
        high, low = (last * 2).quantize(Decimal(1)), (last / 2).quantize(Decimal(1))
        cid = "ccxt-oco-" + uuid.uuid4().hex[:8]
        placed = ex.privatePostOcoOrder({
            "symbol": SYMBOL, "side": "sell", "price": str(high), "size": "0.01",
            "stopPrice": str(low), "limitPrice": str(low - 1), "clientOid": cid})
        assert placed["code"] == "200000"
        oco_id = placed["data"]["orderId"]
        got = ex.privateGetOcoOrderOrderId({"orderId": oco_id})["data"]
        assert got["status"] == "NEW" and got["clientOid"] == cid
        by_cid = ex.privateGetOcoClientOrderClientOid({"clientOid": cid})["data"]
        assert by_cid["orderId"] == oco_id
        legs = ex.privateGetOcoOrderDetailsOrderId({"orderId": oco_id})["data"]["orders"]
        assert len(legs) == 2
        listed = ex.privateGetOcoOrders({"symbol": SYMBOL})["data"]["items"]
        assert [i["orderId"] for i in listed] == [oco_id]
        gone = ex.privateDeleteOcoClientOrderClientOid({"clientOid": cid})["data"]
        assert gone["cancelledOrderIds"] == [leg["id"] for leg in legs]
        assert ex.privateDeleteOcoOrders({"symbol": SYMBOL})["data"]["cancelledOrderIds"] == []
        with pytest.raises(ccxt.ExchangeError):
            ex.privateDeleteOcoOrderOrderId({"orderId": oco_id})
