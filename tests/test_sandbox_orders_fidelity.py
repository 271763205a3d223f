"""Order endpoints in KuCoin's documented shapes (issue 17, gaps 3, 4, 5 and 7)."""

from __future__ import annotations

import json
from pathlib import Path

import ccxt
from sandbox_support import Sandbox, demo_credentials, point_ccxt_at, running, threaded

from rules_engine.sandbox.clock import ManualClock
from rules_engine.sandbox.config import SandboxConfig
from rules_engine.sandbox.server import build_state


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



async def _rest(box: Sandbox, symbol: str, price: str) -> str:
    data = await box.ok("POST", "/api/v1/hf/orders", body={
        "symbol": symbol, "side": "buy", "type": "limit", "price": price, "size": "0.01"})
    return str(data["orderId"])


async def test_the_dead_man_switch_cancels_its_symbols_unless_renewed(tmp_path: Path) -> None:
    clock = ManualClock()
    state = build_state(SandboxConfig(), clock=clock, state_file=tmp_path / "s.json")
    async with running(state=state, clock=clock) as box:
        assert await box.ok("GET", "/api/v1/hf/orders/dead-cancel-all/query") is None
        btc = await _rest(box, "BTC-USDT", "1000")
        eth = await _rest(box, "ETH-USDT", "100")
        armed = await box.ok("POST", "/api/v1/hf/orders/dead-cancel-all",
                             body={"timeout": 5, "symbols": "BTC-USDT"})
        now_s = clock.now_ms() // 1000
        assert armed == {"currentTime": now_s, "triggerTime": now_s + 5}
        query = await box.ok("GET", "/api/v1/hf/orders/dead-cancel-all/query")
        assert query == {"timeout": 5, "symbols": "BTC-USDT", "currentTime": now_s,
                         "triggerTime": now_s + 5}
        clock.advance(4000)
        box.state.feed_step()
        await box.ok("POST", "/api/v1/hf/orders/dead-cancel-all",
                     body={"timeout": 5, "symbols": "BTC-USDT"})  # renewed
        clock.advance(4000)
        box.state.feed_step()
        order = await box.ok("GET", f"/api/v1/hf/orders/{btc}", {"symbol": "BTC-USDT"})
        assert order["active"] is True
        clock.advance(1500)
        box.state.config.faults.stall_feed = True  # a stalled feed still fires the switch
        box.state.feed_step()
        order = await box.ok("GET", f"/api/v1/hf/orders/{btc}", {"symbol": "BTC-USDT"})
        assert order["active"] is False and order["cancelExist"] is True
        other = await box.ok("GET", f"/api/v1/hf/orders/{eth}", {"symbol": "ETH-USDT"})
        assert other["active"] is True
        assert await box.ok("GET", "/api/v1/hf/orders/dead-cancel-all/query") is None

        # Armed for every symbol, then disarmed: nothing is cancelled.
        await box.ok("POST", "/api/v1/hf/orders/dead-cancel-all", body={"timeout": 5})
        assert await box.ok("POST", "/api/v1/hf/orders/dead-cancel-all",
                            body={"timeout": -1}) is None
        clock.advance(10_000)
        box.state.feed_step()
        assert (await box.ok("GET", f"/api/v1/hf/orders/{eth}", {"symbol": "ETH-USDT"})
                )["active"] is True
        for bad in ({"timeout": 4}, {"timeout": 86_401}, {"timeout": 5, "symbols": "NOPE-USDT"}):
            _status, payload, _ = await box.call("POST", "/api/v1/hf/orders/dead-cancel-all",
                                                body=bad)
            assert payload["code"] != "200000", bad
        # Armed again: the setting survives a restart (it is journaled).
        await box.ok("POST", "/api/v1/hf/orders/dead-cancel-all",
                     body={"timeout": 30, "symbols": "ETH-USDT"})
    again = build_state(SandboxConfig(), clock=clock, state_file=tmp_path / "s.json")
    assert again.deadman is not None and again.deadman.symbols == ("ETH-USDT",)
    clock.advance(31_000)
    again.feed_step(force=True)
    assert not again.engine.orders[eth].active
    assert again.journal is not None
    again.journal.close()


async def test_hf_batch_sync_and_the_old_test_order() -> None:
    async with running() as box:
        rows = await box.ok("POST", "/api/v1/hf/orders/multi/sync", body={"orderList": [
            {"clientOid": "ms-1", "symbol": "BTC-USDT", "side": "buy", "type": "limit",
             "price": "1000", "size": "0.001"},
            {"clientOid": "ms-2", "symbol": "BTC-USDT", "side": "buy", "type": "market",
             "size": "0.001"},
            {"clientOid": "ms-3", "symbol": "BTC-USDT", "side": "buy", "type": "limit",
             "price": "1000.05", "size": "0.001"},
        ]})
        assert [r["success"] for r in rows] == [True, True, False]
        assert rows[0]["status"] == "open" and rows[0]["remainSize"] == "0.001"
        assert rows[1]["status"] == "done" and rows[1]["dealSize"] == "0.001"
        assert set(rows[0]) == {"orderId", "clientOid", "orderTime", "originSize", "dealSize",
                                "remainSize", "canceledSize", "status", "matchTime", "success"}
        assert rows[2]["failMsg"]
        tested = await box.ok("POST", "/api/v1/orders/test", body={
            "clientOid": "t-1", "symbol": "BTC-USDT", "side": "buy", "type": "limit",
            "price": "1000", "size": "0.001"})
        assert set(tested) == {"orderId"}
        _status, payload, _ = await box.call("POST", "/api/v1/orders/test", body={
            "clientOid": "t-2", "symbol": "BTC-USDT", "side": "buy", "type": "limit",
            "price": "1000", "size": "0.0000001"})
        assert payload["code"] == "400100"
        orders = await box.ok("GET", "/api/v1/orders", {"status": "active"})
        assert [o["clientOid"] for o in orders["items"]] == ["ms-1"]  # the test placed nothing
