"""Fault injection through the loopback admin endpoint, and state that survives a restart."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

from sandbox_support import Sandbox, auth_headers, running

from rules_engine.sandbox.clock import ManualClock
from rules_engine.sandbox.config import SandboxConfig
from rules_engine.sandbox.server import build_state


async def _faults(box: Sandbox, **changes: object) -> dict[str, object]:
    async with box.http.post(box.url + "/sandbox/admin/faults", json=changes) as r:
        assert r.status == 200
        data: dict[str, object] = (await r.json())["data"]
        return data


async def test_5xx_html_and_delay_faults() -> None:
    async with running() as box:
        await _faults(box, http_5xx=True)
        status, body, _ = await box.call("GET", "/api/v1/timestamp", signed=False)
        assert (status, body["code"]) == (503, "503000")
        await _faults(box, http_5xx=False, html_errors=True)
        async with box.http.get(box.url + "/api/v1/nothing") as r:
            assert r.status == 502 and r.content_type == "text/html"
        await _faults(box, html_errors=False, delay_ms=150)
        started = time.monotonic()
        await box.ok("GET", "/api/v1/timestamp", signed=False)
        assert time.monotonic() - started >= 0.15
        async with box.http.post(box.url + "/sandbox/admin/faults", json={"delay_ms": -1}) as r:
            assert r.status == 400 and (await r.json())["code"] == "400100"


async def test_an_accepted_order_whose_reply_times_out_is_still_on_the_exchange() -> None:
    async with running() as box:
        await _faults(box, timeout_after_accept=True)
        call = asyncio.create_task(box.call("POST", "/api/v1/hf/orders", body={
            "clientOid": "lost-reply", "symbol": "BTC-USDT", "side": "buy", "type": "limit",
            "price": "1000", "size": "0.001"}))
        for _ in range(50):
            if box.state.hold_replies:
                break
            await asyncio.sleep(0.01)
        assert not call.done()
        await _faults(box, timeout_after_accept=False)
        found = await box.ok("GET", "/api/v1/hf/orders/client-order/lost-reply",
                             {"symbol": "BTC-USDT"})
        assert found["active"] is True
        async with box.http.post(box.url + "/sandbox/admin/release") as r:
            assert (await r.json())["data"]["released"] == 1
        status, body, _ = await call
        assert (status, body["code"]) == (504, "500000")


async def test_clock_skew_moves_server_time_and_the_signature_window() -> None:
    clock = ManualClock()
    async with running(clock=clock) as box:
        before = await box.ok("GET", "/api/v1/timestamp", signed=False)
        await _faults(box, clock_skew_ms=10_000)
        after = await box.ok("GET", "/api/v1/timestamp", signed=False)
        assert after - before == 10_000
        # A client that did not resync its offset is now outside the 5 s window.
        headers = auth_headers("GET", "/api/v1/accounts", "", clock.base_ms())
        async with box.http.get(box.url + "/api/v1/accounts", headers=headers) as r:
            assert (await r.json())["code"] == "400002"


async def test_stalled_feed_keeps_the_book_still() -> None:
    async with running() as box:
        await _faults(box, stall_feed=True)
        seq = box.state.engine.books["BTC-USDT"].sequence
        box.state.feed_step()
        assert box.state.engine.books["BTC-USDT"].sequence == seq
        await _faults(box, stall_feed=False)
        box.state.feed_step()
        assert box.state.engine.books["BTC-USDT"].sequence > seq


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    clock = ManualClock()
    config = SandboxConfig()
    first = build_state(config, clock=clock, state_file=path)
    async with running(state=first) as box:
        placed = await box.ok("POST", "/api/v1/hf/orders", body={
            "clientOid": "keep-me", "symbol": "BTC-USDT", "side": "buy", "type": "limit",
            "price": "1000", "size": "0.002"})
        await box.ok("POST", "/api/v1/hf/orders", body={
            "symbol": "BTC-USDT", "side": "buy", "type": "market", "funds": "200"})
        accounts = await box.ok("GET", "/api/v1/accounts")
        sequence = box.state.engine.books["BTC-USDT"].sequence
        instance = box.state.instance_id
    assert path.exists()
    second = build_state(config, clock=clock, state_file=path)
    async with running(state=second) as box:
        assert box.state.instance_id == instance
        _, _, headers = await box.call("GET", "/api/v1/status", signed=False)
        assert headers["x-sandbox-instance"] == instance
        again = await box.ok("GET", "/api/v1/hf/orders/client-order/keep-me",
                             {"symbol": "BTC-USDT"})
        assert again["id"] == placed["orderId"] and again["active"] is True
        assert await box.ok("GET", "/api/v1/accounts") == accounts
        assert box.state.engine.books["BTC-USDT"].sequence > sequence
        full = await box.ok("GET", "/api/v3/market/orderbook/level2", {"symbol": "BTC-USDT"})
        assert ["1000", "0.002"] in full["bids"]
        fills = await box.ok("GET", "/api/v1/hf/fills", {"symbol": "BTC-USDT"})
        assert fills["items"] and Decimal(fills["items"][0]["size"]) > 0
        # New ids never collide with restored ones.
        newer = await box.ok("POST", "/api/v1/hf/orders", body={
            "symbol": "BTC-USDT", "side": "buy", "type": "limit", "price": "1000",
            "size": "0.001"})
        assert newer["orderId"] != placed["orderId"]


async def test_admin_stats_report_feed_ticks_and_lag() -> None:
    config = SandboxConfig.model_validate({"feed_interval_ms": 20})
    async with running(config, run_feed=True) as box:
        await asyncio.sleep(0.25)
        async with box.http.get(box.url + "/sandbox/admin/stats") as r:
            stats = (await r.json())["data"]
        assert stats["instance_id"] == box.state.instance_id
        assert stats["feed"]["ticks"] >= 5
        feed = stats["feed"]
        assert feed["max_lag_ms"] >= feed["mean_lag_ms"] >= 0
        assert feed["max_lag_ms"] >= feed["p99_lag_ms"] >= feed["p50_lag_ms"] >= 0


async def test_a_feed_stalled_from_the_config_still_starts_with_a_book() -> None:
    config = SandboxConfig.model_validate({"faults": {"stall_feed": True}})
    async with running(config) as box:
        book = await box.ok("GET", "/api/v1/market/orderbook/level2_20", {"symbol": "ETH-USDT"},
                            signed=False)
        assert len(book["bids"]) == 20
        seq = book["sequence"]
        box.state.feed_step()
        again = await box.ok("GET", "/api/v1/market/orderbook/level2_20", {"symbol": "ETH-USDT"},
                             signed=False)
        assert again["sequence"] == seq


async def test_a_429_storm_refuses_every_rest_request_with_rate_limit_headers() -> None:
    async with running() as box:
        await _faults(box, http_429=True)
        for path, signed in (("/api/v1/timestamp", False), ("/api/v1/accounts", True)):
            status, body, headers = await box.call("GET", path, signed=signed)
            assert (status, body["code"]) == (429, "429000")
            assert headers["gw-ratelimit-remaining"] == "0"
            assert headers["gw-ratelimit-reset"] == "1000"
        await _faults(box, http_429=False)
        await box.ok("GET", "/api/v1/accounts")


async def test_a_silent_websocket_stays_open_and_sends_nothing_not_even_pongs() -> None:
    async with running() as box:
        data = await box.ok("POST", "/api/v1/bullet-public", signed=False)
        endpoint = data["instanceServers"][0]["endpoint"]
        ws = await box.http.ws_connect(f"{endpoint}?token={data['token']}&connectId=q")
        assert (await ws.receive_json(timeout=2))["type"] == "welcome"
        await ws.send_json({"id": "s", "type": "subscribe", "topic": "/market/level2:BTC-USDT",
                            "response": True})
        assert (await ws.receive_json(timeout=2)) == {"id": "s", "type": "ack"}
        await _faults(box, ws_silent=True)
        await ws.send_json({"id": "p1", "type": "ping"})
        for _ in range(3):
            box.state.feed_step()
        try:
            msg = await ws.receive(timeout=0.3)
        except TimeoutError:
            msg = None
        assert msg is None and not ws.closed
        await _faults(box, ws_silent=False)
        await ws.send_json({"id": "p2", "type": "ping"})
        # What was queued while silent is lost; the next replies arrive again.
        seen = []
        for _ in range(20):
            reply = await ws.receive_json(timeout=2)
            seen.append(reply.get("id"))
            if reply.get("type") == "pong":
                break
        assert "p2" in seen and "p1" not in seen
        await ws.close()


async def test_history_records_each_book_change_with_its_best_levels() -> None:
    config = SandboxConfig(record_history=True)
    async with running(config) as box:
        for _ in range(5):
            box.state.feed_step()
        await box.ok("POST", "/api/v1/hf/orders", body={
            "clientOid": "hist-1", "symbol": "BTC-USDT", "side": "buy", "type": "limit",
            "price": "1000", "size": "0.001"})
        async with box.http.get(box.url + "/sandbox/admin/history",
                                params={"symbol": "BTC-USDT"}) as r:
            data = (await r.json())["data"]
        rows = data["rows"]
        assert len(rows) >= 5
        assert [row[0] for row in rows] == sorted(row[0] for row in rows)
        seq, bids, asks = box.state.engine.snapshot("BTC-USDT", 1)
        assert rows[-1][0] == seq  # every change of the book was recorded
        assert rows[-1][2:] == [str(bids[0][0]), str(bids[0][1]), str(asks[0][0]),
                                str(asks[0][1])]
        assert data["open_orders_peak"] >= 1
        async with box.http.get(box.url + "/sandbox/admin/history",
                                params={"symbol": "NOPE-USDT"}) as r:
            assert r.status == 400 and "unknown symbol" in (await r.json())["msg"]
    async with running() as box, box.http.get(box.url + "/sandbox/admin/history",
                                              params={"symbol": "BTC-USDT"}) as r:
        assert r.status == 400 and "record_history" in (await r.json())["msg"]
