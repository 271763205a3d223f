"""The sandbox's REST surface: KuCoin shapes, authentication failures, orders and balances."""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

import pytest
from sandbox_support import Sandbox, auth_headers, running

from rules_engine.sandbox.clock import ManualClock
from rules_engine.sandbox.config import SandboxConfig


@pytest.fixture
async def sb() -> Sandbox:  # type: ignore[misc]
    async with running() as box:
        yield box


async def test_timestamp_is_the_server_clock_as_an_integer(sb: Sandbox) -> None:
    data = await sb.ok("GET", "/api/v1/timestamp", signed=False)
    assert data == sb.state.now_ms()


async def test_every_reply_carries_rate_limit_headers_and_the_instance_id(sb: Sandbox) -> None:
    _, _, headers = await sb.call("GET", "/api/v1/status", signed=False)
    assert headers["x-sandbox-instance"] == sb.state.instance_id
    assert int(headers["gw-ratelimit-limit"]) == 2000
    assert int(headers["gw-ratelimit-remaining"]) == 2000 - 3


async def test_symbols_use_kucoin_increments(sb: Sandbox) -> None:
    rows = await sb.ok("GET", "/api/v2/symbols", signed=False)
    by = {r["symbol"]: r for r in rows}
    assert by["BTC-USDT"]["priceIncrement"] == "0.1"
    assert by["BTC-USDT"]["baseMinSize"] == "0.00001"
    assert by["ETH-USDT"]["priceIncrement"] == "0.01"
    one = await sb.ok("GET", "/api/v2/symbols/ETH-USDT", signed=False)
    assert one["baseIncrement"] == "0.0000001"


async def test_level2_snapshot_has_many_levels_and_a_string_sequence(sb: Sandbox) -> None:
    book = await sb.ok("GET", "/api/v1/market/orderbook/level2_100",
                       {"symbol": "BTC-USDT"}, signed=False)
    assert isinstance(book["sequence"], str) and isinstance(book["time"], int)
    assert len(book["bids"]) >= 40 and len(book["asks"]) >= 40
    bids = [Decimal(p) for p, _ in book["bids"]]
    asks = [Decimal(p) for p, _ in book["asks"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
    assert bids[0] < asks[0]
    # Anchored on the real candles: the walk starts at the last real close (69160.9).
    assert abs(bids[0] - Decimal("69160.9")) < Decimal("700")


async def test_full_book_needs_a_signature(sb: Sandbox) -> None:
    status, body, _ = await sb.call("GET", "/api/v3/market/orderbook/level2",
                                    {"symbol": "BTC-USDT"}, signed=False)
    assert (status, body["code"]) == (400, "400001")
    book = await sb.ok("GET", "/api/v3/market/orderbook/level2", {"symbol": "BTC-USDT"})
    assert len(book["bids"]) == 50


@pytest.mark.parametrize(
    ("change", "code", "status"),
    [
        ({"key": "nope"}, "400003", 401),
        ({"secret": "wrong"}, "400004", 401),
        ({"passphrase": "wrong"}, "400004", 401),
    ],
)
async def test_auth_failures_get_kucoin_codes(
    sb: Sandbox, change: dict[str, str], code: str, status: int
) -> None:
    got, body, _ = await sb.call("GET", "/api/v1/accounts", **change)
    assert (got, body["code"]) == (status, code)
    assert "Traceback" not in body["msg"]


async def test_a_signature_over_other_bytes_is_400005(sb: Sandbox) -> None:
    headers = auth_headers("GET", "/api/v1/accounts?currency=BTC", "", sb.state.now_ms())
    async with sb.http.get(sb.url + "/api/v1/accounts?currency=USDT", headers=headers) as r:
        assert (r.status, (await r.json())["code"]) == (401, "400005")


async def test_timestamp_outside_five_seconds_is_400002() -> None:
    clock = ManualClock()
    async with running(clock=clock) as box:
        stale = auth_headers("GET", "/api/v1/accounts", "", clock.now_ms() - 5001)
        async with box.http.get(box.url + "/api/v1/accounts", headers=stale) as r:
            assert (r.status, (await r.json())["code"]) == (400, "400002")
        fine = auth_headers("GET", "/api/v1/accounts", "", clock.now_ms() - 4999)
        async with box.http.get(box.url + "/api/v1/accounts", headers=fine) as r:
            assert (r.status, (await r.json())["code"]) == (200, "200000")


async def test_the_decoded_query_is_what_is_signed(sb: Sandbox) -> None:
    headers = auth_headers("GET", "/api/v1/accounts?currency=US DT", "", sb.state.now_ms())
    async with sb.http.get(sb.url + "/api/v1/accounts?currency=US%20DT", headers=headers) as r:
        assert (r.status, (await r.json())["code"]) == (200, "200000")


async def test_ip_whitelist_and_permissions_are_enforced() -> None:
    config = SandboxConfig.model_validate({
        "keys": [
            {"api_key": "k1", "api_secret": "s1", "api_passphrase": "p1",
             "permissions": ["General"], "ip_whitelist": ["10.1.2.3"]},
            {"api_key": "k2", "api_secret": "s2", "api_passphrase": "p2",
             "permissions": ["General"]},
        ],
    })
    async with running(config) as box:
        status, body, _ = await box.call("GET", "/api/v1/accounts", key="k1", secret="s1",
                                         passphrase="p1")
        assert (status, body["code"]) == (401, "400006")
        status, body, _ = await box.call(
            "POST", "/api/v1/hf/orders", body={"symbol": "BTC-USDT", "side": "buy",
                                               "type": "market", "funds": "10"},
            key="k2", secret="s2", passphrase="p2")
        assert (status, body["code"]) == (401, "400007")
        info = await box.ok("GET", "/api/v1/user/api-key", key="k2", secret="s2",
                            passphrase="p2", version="3")
        assert info["permission"] == "General" and info["apiVersion"] == 3


async def test_bad_requests_never_get_a_traceback(sb: Sandbox) -> None:
    status, body, _ = await sb.call("GET", "/api/v1/nothing-here", signed=False)
    assert (status, body["code"]) == (404, "404000")
    status, body, _ = await sb.call("GET", "/api/v1/market/stats", {"symbol": "NOPE-USDT"},
                                    signed=False)
    assert body["code"] == "900001"
    status, body, _ = await sb.call("GET", "/api/v1/market/candles",
                                    {"symbol": "BTC-USDT", "type": "7min"}, signed=False)
    assert (status, body["code"]) == (400, "400100")
    headers = auth_headers("POST", "/api/v1/hf/orders", "{not json", sb.state.now_ms())
    async with sb.http.post(sb.url + "/api/v1/hf/orders", data="{not json",
                            headers=headers) as r:
        assert (r.status, (await r.json())["code"]) == (400, "400100")
    for body_ in ({"symbol": "BTC-USDT", "side": "up", "type": "limit"},
                  {"symbol": "BTC-USDT", "side": "buy", "type": "limit", "price": "abc",
                   "size": "1"},
                  {"symbol": "BTC-USDT", "side": "buy", "type": "limit", "price": "1.05",
                   "size": "0.001"}):
        status, body, _ = await sb.call("POST", "/api/v1/hf/orders", body=body_)
        assert body["code"] == "400100" and status in (200, 400)


async def test_limit_order_rests_holds_funds_and_cancels(sb: Sandbox) -> None:
    book = await sb.ok("GET", "/api/v1/market/orderbook/level2_20", {"symbol": "BTC-USDT"},
                       signed=False)
    price = Decimal(book["bids"][-1][0]) - Decimal("100")
    placed = await sb.ok("POST", "/api/v1/hf/orders", body={
        "clientOid": "rest-1", "symbol": "BTC-USDT", "side": "buy", "type": "limit",
        "price": str(price), "size": "0.01"})
    assert placed["clientOid"] == "rest-1" and len(placed["orderId"]) == 24
    order = await sb.ok("GET", f"/api/v1/hf/orders/{placed['orderId']}",
                        {"symbol": "BTC-USDT"})
    assert order["active"] is True and order["inOrderBook"] is True
    assert order["price"] == str(price) and order["size"] == "0.01"
    accounts = await sb.ok("GET", "/api/v1/accounts", {"currency": "USDT", "type": "trade"})
    hold = price * Decimal("0.01") * Decimal("1.001")
    assert Decimal(accounts[0]["holds"]) == hold
    assert Decimal(accounts[0]["available"]) == Decimal(100000) - hold
    full = await sb.ok("GET", "/api/v3/market/orderbook/level2", {"symbol": "BTC-USDT"})
    assert [str(price), "0.01"] in full["bids"]
    by_client = await sb.ok("GET", "/api/v1/hf/orders/client-order/rest-1",
                            {"symbol": "BTC-USDT"})
    assert by_client["id"] == placed["orderId"]
    dup_status, dup, _ = await sb.call("POST", "/api/v1/hf/orders", body={
        "clientOid": "rest-1", "symbol": "BTC-USDT", "side": "buy", "type": "limit",
        "price": str(price), "size": "0.01"})
    assert (dup_status, dup["code"]) == (200, "126044")
    cancelled = await sb.ok("DELETE", "/api/v1/hf/orders/client-order/rest-1",
                            {"symbol": "BTC-USDT"})
    assert cancelled == {"clientOid": "rest-1"}
    again_status, again, _ = await sb.call("DELETE", f"/api/v1/hf/orders/{placed['orderId']}",
                                           {"symbol": "BTC-USDT"})
    assert (again_status, again["code"]) == (200, "400100")
    accounts = await sb.ok("GET", "/api/v1/accounts", {"currency": "USDT"})
    assert Decimal(accounts[0]["holds"]) == 0
    done = await sb.ok("GET", "/api/v1/hf/orders/done", {"symbol": "BTC-USDT"})
    assert done["items"][0]["id"] == placed["orderId"]
    assert done["items"][0]["cancelledSize"] == "0.01"


async def test_market_buy_by_funds_fills_and_moves_balances(sb: Sandbox) -> None:
    placed = await sb.ok("POST", "/api/v1/hf/orders", body={
        "clientOid": "mkt-1", "symbol": "BTC-USDT", "side": "buy", "type": "market",
        "funds": "1000"})
    order = await sb.ok("GET", f"/api/v1/hf/orders/{placed['orderId']}", {"symbol": "BTC-USDT"})
    assert order["active"] is False
    assert Decimal(order["dealFunds"]) <= 1000
    assert Decimal(order["dealFunds"]) > 999
    fills = await sb.ok("GET", "/api/v1/hf/fills", {"symbol": "BTC-USDT"})
    assert sum(Decimal(f["size"]) for f in fills["items"]) == Decimal(order["dealSize"])
    assert {f["liquidity"] for f in fills["items"]} == {"taker"}
    fee = sum(Decimal(f["fee"]) for f in fills["items"])
    accounts = {a["currency"]: a for a in await sb.ok("GET", "/api/v1/accounts")}
    assert Decimal(accounts["BTC"]["balance"]) == 1 + Decimal(order["dealSize"])
    assert Decimal(accounts["USDT"]["balance"]) == 100000 - Decimal(order["dealFunds"]) - fee


async def test_insufficient_balance_is_200004(sb: Sandbox) -> None:
    status, body, _ = await sb.call("POST", "/api/v1/hf/orders", body={
        "symbol": "BTC-USDT", "side": "sell", "type": "market", "size": "5"})
    assert (status, body["code"]) == (200, "200004")


async def test_legacy_orders_keep_their_own_shapes(sb: Sandbox) -> None:
    _status, body, _ = await sb.call("POST", "/api/v1/orders", body={
        "symbol": "BTC-USDT", "side": "buy", "price": "1000", "size": "0.001"})
    assert body["code"] == "400100"  # clientOid is required on the legacy endpoint
    placed = await sb.ok("POST", "/api/v1/orders", body={
        "clientOid": "leg-1", "symbol": "BTC-USDT", "side": "buy", "price": "1000",
        "size": "0.001"})
    assert set(placed) == {"orderId"}
    order = await sb.ok("GET", f"/api/v1/orders/{placed['orderId']}")
    assert order["isActive"] is True and order["type"] == "limit"
    listed = await sb.ok("GET", "/api/v1/orders", {"status": "active"})
    assert listed["totalNum"] == 1 and listed["items"][0]["clientOid"] == "leg-1"
    cancelled = await sb.ok("DELETE", "/api/v1/order/client-order/leg-1")
    assert cancelled["cancelledOrderId"] == placed["orderId"]
    # A done order is still found by its clientOid, as by its id (issue 17, gap 5).
    done = await sb.ok("GET", "/api/v1/order/client-order/leg-1")
    assert done["id"] == placed["orderId"] and done["isActive"] is False
    assert done["cancelExist"] is True
    _status, body, _ = await sb.call("GET", "/api/v1/order/client-order/never-placed")
    assert body["code"] == "400100"


async def test_hf_client_timestamp_window_refuses_late_orders() -> None:
    clock = ManualClock()
    async with running(clock=clock) as box:
        sent = clock.now_ms()
        clock.advance(40)
        status, body, _ = await box.call("POST", "/api/v1/hf/orders", body={
            "symbol": "BTC-USDT", "side": "buy", "type": "limit", "price": "1000",
            "size": "0.001", "clientTimestamp": sent, "allowMaxTimeWindow": 30})
        assert (status, body["code"]) == (200, "126041")
        assert not box.state.engine.orders
        ok = await box.ok("POST", "/api/v1/hf/orders", body={
            "symbol": "BTC-USDT", "side": "buy", "type": "limit", "price": "1000",
            "size": "0.001", "clientTimestamp": sent, "allowMaxTimeWindow": 100})
        assert ok["orderId"] in box.state.engine.orders


async def test_rate_limit_pool_refuses_with_429_and_resets() -> None:
    clock = ManualClock()
    config = SandboxConfig.model_validate({"quotas": {"public": 9, "window_ms": 1000}})
    async with running(config, clock=clock) as box:
        for remaining in (6, 3, 0):
            status, _, headers = await box.call("GET", "/api/v1/timestamp", signed=False)
            assert status == 200 and headers["gw-ratelimit-remaining"] == str(remaining)
        status, body, headers = await box.call("GET", "/api/v1/timestamp", signed=False)
        assert (status, body["code"]) == (429, "429000")
        assert int(headers["gw-ratelimit-reset"]) <= 1000
        clock.advance(1000)
        status, _, _ = await box.call("GET", "/api/v1/timestamp", signed=False)
        assert status == 200


async def test_done_orders_expire_after_the_retention_time() -> None:
    clock = ManualClock()
    config = SandboxConfig.model_validate({"done_order_retention_ms": 60_000})
    async with running(config, clock=clock) as box:
        placed = await box.ok("POST", "/api/v1/hf/orders", body={
            "clientOid": "ret-1", "symbol": "BTC-USDT", "side": "buy", "type": "market",
            "funds": "100"})
        await box.ok("GET", f"/api/v1/hf/orders/{placed['orderId']}", {"symbol": "BTC-USDT"})
        clock.advance(60_001)
        _status, body, _ = await box.call("GET", f"/api/v1/hf/orders/{placed['orderId']}",
                                         {"symbol": "BTC-USDT"})
        assert body["code"] == "126043"
        # Past its retention a clientOid may be used again.
        await box.ok("POST", "/api/v1/hf/orders", body={
            "clientOid": "ret-1", "symbol": "BTC-USDT", "side": "buy", "type": "market",
            "funds": "100"})


async def test_candles_are_kucoin_rows_newest_first(sb: Sandbox) -> None:
    rows = await sb.ok("GET", "/api/v1/market/candles", {"symbol": "BTC-USDT", "type": "1hour"},
                       signed=False)
    assert len(rows) >= 1000 and all(len(r) == 7 for r in rows)
    starts = [int(r[0]) for r in rows]
    assert starts == sorted(starts, reverse=True)
    assert all(Decimal(r[3]) >= max(Decimal(r[1]), Decimal(r[2])) for r in rows)


async def test_a_post_body_that_is_not_json_typed_is_415(sb: Sandbox) -> None:
    body = '{"symbol":"BTC-USDT","side":"buy","type":"market","funds":"10"}'
    headers = auth_headers("POST", "/api/v1/hf/orders", body, sb.state.now_ms())
    headers["Content-Type"] = "text/plain"
    async with sb.http.post(sb.url + "/api/v1/hf/orders", data=body, headers=headers) as r:
        assert (r.status, (await r.json())["code"]) == (415, "415000")


async def test_partial_cancel_over_rest(sb: Sandbox) -> None:
    placed = await sb.ok("POST", "/api/v1/hf/orders", body={
        "symbol": "BTC-USDT", "side": "buy", "type": "limit", "price": "1000", "size": "0.005"})
    reply = await sb.ok("DELETE", f"/api/v1/hf/orders/cancel/{placed['orderId']}",
                        {"symbol": "BTC-USDT", "cancelSize": "0.002"})
    assert reply == {"orderId": placed["orderId"], "cancelSize": "0.002"}
    order = await sb.ok("GET", f"/api/v1/hf/orders/{placed['orderId']}", {"symbol": "BTC-USDT"})
    assert order["remainSize"] == "0.003" and order["active"] is True


async def test_batch_orders_report_each_result(sb: Sandbox) -> None:
    replies = await sb.ok("POST", "/api/v1/hf/orders/multi", body={"orderList": [
        {"clientOid": "b1", "symbol": "BTC-USDT", "side": "buy", "type": "limit",
         "price": "1000", "size": "0.001"},
        {"clientOid": "b2", "symbol": "BTC-USDT", "side": "buy", "type": "limit",
         "price": "1000.05", "size": "0.001"},
    ]})
    assert replies[0]["success"] is True and replies[0]["clientOid"] == "b1"
    assert replies[1] == {"success": False, "failMsg": "Price increment invalid."}
    legacy = await sb.ok("POST", "/api/v1/orders/multi", body={"symbol": "ETH-USDT",
        "orderList": [{"clientOid": "l1", "side": "sell", "price": "90000", "size": "0.01"}]})
    assert legacy["data"][0]["status"] == "success" and legacy["data"][0]["id"]
    _status, body, _ = await sb.call("POST", "/api/v1/hf/orders/multi",
                                    body={"orderList": [{}] * 6})
    assert body["code"] == "400100"


async def test_alter_replaces_the_order_and_keeps_the_client_oid(sb: Sandbox) -> None:
    placed = await sb.ok("POST", "/api/v1/hf/orders", body={
        "clientOid": "alt-1", "symbol": "BTC-USDT", "side": "buy", "type": "limit",
        "price": "1000", "size": "0.002"})
    altered = await sb.ok("POST", "/api/v1/hf/orders/alter", body={
        "symbol": "BTC-USDT", "clientOid": "alt-1", "newPrice": "1100"})
    assert altered["clientOid"] == "alt-1" and altered["newOrderId"] != placed["orderId"]
    old = await sb.ok("GET", f"/api/v1/hf/orders/{placed['orderId']}", {"symbol": "BTC-USDT"})
    assert old["active"] is False
    new = await sb.ok("GET", "/api/v1/hf/orders/client-order/alt-1", {"symbol": "BTC-USDT"})
    assert new["id"] == altered["newOrderId"] and new["price"] == "1100"
    assert new["size"] == "0.002"


async def test_requests_aiohttp_refuses_still_get_kucoin_bodies(sb: Sandbox) -> None:
    async with sb.http.post(sb.url + "/api/v1/hf/orders", data=io.BytesIO(b"x" * (2 << 20)),
                            headers={"Content-Type": "application/json"}) as r:
        assert r.status == 413 and (await r.json())["code"] == "400100"
    async with sb.http.get(sb.url + "/endpoint") as r:
        assert r.status == 400 and (await r.json())["code"] == "400100"
    async with sb.http.put(sb.url + "/api/v1/timestamp") as r:
        assert r.status == 404 and (await r.json())["code"] == "404000"


async def test_24h_stats_roll_over_real_history_and_the_sandbox_trades(sb: Sandbox) -> None:
    stats = await sb.ok("GET", "/api/v1/market/stats", {"symbol": "BTC-USDT"}, signed=False)
    last, high, low = Decimal(stats["last"]), Decimal(stats["high"]), Decimal(stats["low"])
    assert low <= last <= high and Decimal(stats["vol"]) > 0
    open_ = last - Decimal(stats["changePrice"])
    assert Decimal(stats["changeRate"]) == ((last - open_) / open_).quantize(Decimal("0.0001"))
    # The last 24 real hourly candles (shifted to end now) are the 24 h window at start.
    rows = await sb.ok("GET", "/api/v1/market/candles", {"symbol": "BTC-USDT", "type": "1hour"},
                       signed=False)
    day = [r for r in rows if int(r[0]) >= sb.state.now_ms() // 1000 - 86_400]
    assert high == max([*(Decimal(r[3]) for r in day), last])
    assert open_ == Decimal(day[-1][1])


async def test_done_order_pages_never_repeat_an_order_when_the_clock_jumps_back() -> None:
    """The soak found it: pages were sorted by createdAt but cut by the id cursor, so orders
    created after a backwards clock skew came back on a second page."""
    clock = ManualClock()
    async with running(clock=clock) as box:
        for n in range(7):
            if n == 3:
                box.state.clock.offset_ms = -30_000  # the server's clock jumps back 30 s
            await box.ok("POST", "/api/v1/hf/orders", body={
                "clientOid": f"page-{n}", "symbol": "BTC-USDT", "side": "buy",
                "type": "market", "funds": "10"})
        seen: list[str] = []
        last_id = 0
        for _ in range(10):
            params: dict[str, Any] = {"symbol": "BTC-USDT", "limit": 2}
            if last_id:
                params["lastId"] = last_id
            page = await box.ok("GET", "/api/v1/hf/orders/done", params)
            if not page["items"]:
                break
            seen.extend(item["clientOid"] for item in page["items"])
            last_id = page["lastId"]
        assert seen == [f"page-{n}" for n in reversed(range(7))]
        # Pages read from the newest end of the engine's orders; orders held out of id order
        # (a state file written another way) are sorted instead, with the same pages.
        engine = box.state.engine
        engine.orders = dict(reversed(list(engine.orders.items())))
        page = await box.ok("GET", "/api/v1/hf/orders/done", {"symbol": "BTC-USDT", "limit": 3})
        assert [item["clientOid"] for item in page["items"]] == ["page-6", "page-5", "page-4"]
