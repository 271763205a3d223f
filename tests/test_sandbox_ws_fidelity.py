"""WebSocket fields and topics in KuCoin's documented shapes (issue 17, gaps 9 and 10)."""

from __future__ import annotations

from sandbox_support import running
from test_sandbox_ws import _connect, _drain, _subscribe

from rules_engine.sandbox.config import SandboxConfig

HEX24 = set("0123456789abcdef")


async def test_every_print_names_both_orders_and_fills_name_the_counter_order() -> None:
    config = SandboxConfig.model_validate({"balances": {"USDT": "100000", "BTC": "1"}})
    async with running(config) as box:
        ws = await _connect(box)
        await _subscribe(ws, "/market/match:BTC-USDT")
        for _ in range(20):
            box.state.feed_step()
        await box.ok("POST", "/api/v1/hf/orders", body={
            "symbol": "BTC-USDT", "side": "buy", "type": "market", "size": "0.01"})
        matches = [m["data"] for m in await _drain(ws) if m.get("subject") == "trade.l3match"]
        assert matches
        for match in matches:
            for key in ("makerOrderId", "takerOrderId"):
                assert len(match[key]) == 24 and set(match[key]) <= HEX24, match
            assert match["makerOrderId"] != match["takerOrderId"]
        fills = (await box.ok("GET", "/api/v1/hf/fills", {"symbol": "BTC-USDT"}))["items"]
        assert fills and all(len(f["counterOrderId"]) == 24 for f in fills)
        await ws.close()


async def test_balance_frames_carry_an_envelope_id() -> None:
    config = SandboxConfig.model_validate({"balances": {"USDT": "100000", "BTC": "1"}})
    async with running(config) as box:
        ws = await _connect(box, private=True)
        await _subscribe(ws, "/account/balance", private=True)
        await box.ok("POST", "/api/v1/hf/orders", body={
            "symbol": "BTC-USDT", "side": "buy", "type": "limit", "price": "1000",
            "size": "0.01"})
        frames = [m for m in await _drain(ws) if m.get("topic") == "/account/balance"]
        assert frames
        ids = [f["id"] for f in frames]
        assert all(i.isdigit() for i in ids) and len(set(ids)) == len(ids)
        assert all(f["data"]["relationEventId"] == f["id"] for f in frames)
        await ws.close()


async def test_snapshots_of_a_symbol_and_of_a_whole_market() -> None:
    async with running() as box:
        ws = await _connect(box)
        await _subscribe(ws, "/market/snapshot:BTC-USDT", "a")
        first = (await _drain(ws))[0]["data"]["data"]
        for key in ("marketChange1h", "marketChange4h", "marketChange24h"):
            assert set(first[key]) == {"open", "high", "low", "vol", "volValue", "changePrice",
                                       "changeRate"}
        assert first["siteTypes"] == ["global"] and first["market"] == "USDS"
        await _subscribe(ws, "/market/snapshot:USDS", "b")
        whole = await _drain(ws)
        assert {m["topic"] for m in whole} == {"/market/snapshot:USDS"}
        assert sorted(m["data"]["data"]["symbol"] for m in whole) == ["BTC-USDT", "ETH-USDT"]
        await ws.send_json({"id": "c", "type": "subscribe", "topic": "/market/snapshot:NOPE",
                            "response": True})
        assert (await ws.receive_json(timeout=2))["code"] == 404
        # The call-auction topics are accepted; no symbol runs an auction, so they stay quiet.
        await _subscribe(ws, "/callauction/level2Depth50:BTC-USDT", "d")
        await _subscribe(ws, "/callauction/callauctionData:BTC-USDT", "e")
        for _ in range(5):
            box.state.feed_step()
        assert not [m for m in await _drain(ws) if m.get("topic", "").startswith("/callauction")]
        await ws.close()
