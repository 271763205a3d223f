"""Order endpoints in KuCoin's documented shapes (issue 17, gaps 3, 4, 5 and 7)."""

from __future__ import annotations

import json

import ccxt
from sandbox_support import Sandbox, demo_credentials, point_ccxt_at, running, threaded


async def _stop(box: Sandbox, cid: str, symbol: str = "BTC-USDT") -> str:
    data = await box.ok("POST", "/api/v1/stop-order", body={
        "clientOid": cid, "symbol": symbol, "side": "sell", "type": "limit", "price": "1000",
        "size": "0.001", "stop": "loss", "stopPrice": "1000"})
    return str(data["orderId"])


async def test_stop_orders_cancel_in_a_batch_by_symbol_and_ids() -> None:
    async with running() as box:
        a, b, c = [await _stop(box, f"s{n}") for n in range(3)]
        d = await _stop(box, "s3", "ETH-USDT")
        picked = await box.ok("DELETE", "/api/v1/stop-order/cancel",
                              {"symbol": "BTC-USDT", "orderIds": f"{a},{b}"})
        assert sorted(picked["cancelledOrderIds"]) == sorted([a, b])
        left = await box.ok("GET", "/api/v1/stop-order")
        assert {i["id"] for i in left["items"]} == {c, d}
        rest = await box.ok("DELETE", "/api/v1/stop-order/cancel", {"symbol": "BTC-USDT"})
        assert rest == {"cancelledOrderIds": [c]}
        everything = await box.ok("DELETE", "/api/v1/stop-order/cancel")
        assert everything == {"cancelledOrderIds": [d]}
        assert (await box.ok("GET", f"/api/v1/stop-order/{a}"))["status"] == "CANCELLED"
        # A single stop order is still cancelled by its id.
        e = await _stop(box, "s4")
        assert await box.ok("DELETE", f"/api/v1/stop-order/{e}") == {"cancelledOrderIds": [e]}


def test_ccxt_cancels_every_trigger_order_of_a_symbol() -> None:
    with threaded() as box:
        ex = point_ccxt_at(ccxt.kucoin(demo_credentials()), box.url)
        ex.load_markets()
        placed = ex.create_order("BTC/USDT", "limit", "sell", 0.001, 1000.0,
                                 {"triggerPrice": 1000.0})
        ex.cancel_all_orders("BTC/USDT", {"trigger": True})
        assert ex.fetch_open_orders("BTC/USDT", None, None, {"trigger": True}) == []
        # ccxt lower-cases the stop order's CANCELLED as it comes.
        assert ex.fetch_order(placed["id"], "BTC/USDT", {"trigger": True})["status"] == (
            "cancelled")


async def test_hf_fills_carry_trade_id_as_a_number() -> None:
    async with running() as box:
        await box.ok("POST", "/api/v1/hf/orders", body={
            "symbol": "BTC-USDT", "side": "buy", "type": "market", "size": "0.01"})
        status, payload, _ = await box.call("GET", "/api/v1/hf/fills", {"symbol": "BTC-USDT"})
        items = payload["data"]["items"]
        assert status == 200 and items
        assert all(isinstance(i["tradeId"], int) and isinstance(i["id"], int) for i in items)
        old = await box.ok("GET", "/api/v1/fills", {"symbol": "BTC-USDT"})
        assert all(isinstance(i["tradeId"], str) for i in old["items"])
        # The number is written as a JSON number, not a quoted one.
        raw = json.dumps(payload["data"]["items"][0]["tradeId"])
        assert raw.isdigit()


async def test_old_api_finds_a_filled_order_by_its_client_oid() -> None:
    async with running() as box:
        placed = await box.ok("POST", "/api/v1/orders", body={
            "clientOid": "old-filled", "symbol": "BTC-USDT", "side": "buy", "type": "market",
            "size": "0.01"})
        by_cid = await box.ok("GET", "/api/v1/order/client-order/old-filled")
        by_id = await box.ok("GET", f"/api/v1/orders/{placed['orderId']}")
        assert by_cid == by_id and by_cid["isActive"] is False and by_cid["dealSize"] == "0.01"

