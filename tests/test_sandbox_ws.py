"""The sandbox's WebSocket feed: tokens, welcome, ping/pong, acks, level2 continuity, private."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import aiohttp
from sandbox_support import Sandbox, running

from rules_engine.sandbox.clock import ManualClock
from rules_engine.sandbox.config import SandboxConfig


async def _connect(box: Sandbox, private: bool = False) -> aiohttp.ClientWebSocketResponse:
    path = "/api/v1/bullet-private" if private else "/api/v1/bullet-public"
    data = await box.ok("POST", path, signed=private)
    server = data["instanceServers"][0]
    assert server["pingInterval"] == 18000 and server["pingTimeout"] == 10000
    ws = await box.http.ws_connect(f"{server['endpoint']}?token={data['token']}&connectId=c1")
    welcome = await ws.receive_json(timeout=2)
    assert welcome == {"id": "c1", "type": "welcome"}
    return ws


async def _subscribe(ws: aiohttp.ClientWebSocketResponse, topic: str, ident: str = "s1",
                     private: bool = False) -> None:
    await ws.send_json({"id": ident, "type": "subscribe", "topic": topic,
                        "privateChannel": private, "response": True})
    ack = await ws.receive_json(timeout=2)
    assert ack == {"id": ident, "type": "ack"}, ack


async def _drain(ws: aiohttp.ClientWebSocketResponse, wait: float = 0.05) -> list[dict[str, Any]]:
    out = []
    while True:
        try:
            msg = await ws.receive(timeout=wait)
        except TimeoutError:
            return out
        if msg.type != aiohttp.WSMsgType.TEXT:
            return out
        out.append(json.loads(msg.data))


async def test_ping_pong_and_topic_errors() -> None:
    async with running() as box:
        ws = await _connect(box)
        await ws.send_json({"id": "p1", "type": "ping"})
        pong = await ws.receive_json(timeout=2)
        assert pong["id"] == "p1" and pong["type"] == "pong"
        await ws.send_json({"id": "e1", "type": "subscribe", "topic": "/market/ticker:NOPE-X",
                            "response": True})
        error = await ws.receive_json(timeout=2)
        assert error["type"] == "error" and error["code"] == 404 and error["id"] == "e1"
        await ws.send_json({"id": "e2", "type": "subscribe",
                            "topic": "/spotMarket/tradeOrdersV2", "response": True})
        assert (await ws.receive_json(timeout=2))["code"] == 404  # private on a public token
        await ws.send_json({"id": "e3", "type": "dance"})
        assert (await ws.receive_json(timeout=2))["code"] == 415
        await ws.close()


async def test_bad_token_gets_an_error_message() -> None:
    async with running() as box:
        ws = await box.http.ws_connect(box.url.replace("http", "ws") + "/endpoint?token=x")
        msg = await ws.receive_json(timeout=2)
        assert msg["type"] == "error" and msg["code"] == 401
        await ws.close()


async def test_ticker_streams_after_feed_ticks() -> None:
    async with running() as box:
        ws = await _connect(box)
        await _subscribe(ws, "/market/ticker:BTC-USDT,ETH-USDT")
        for _ in range(5):
            box.state.feed_step()
        messages = await _drain(ws)
        topics = {m["topic"] for m in messages}
        assert topics == {"/market/ticker:BTC-USDT", "/market/ticker:ETH-USDT"}
        last = [m for m in messages if m["topic"] == "/market/ticker:BTC-USDT"][-1]["data"]
        level1 = await box.ok("GET", "/api/v1/market/orderbook/level1", {"symbol": "BTC-USDT"},
                              signed=False)
        assert last["bestBid"] == level1["bestBid"] and last["sequence"] == level1["sequence"]
        await ws.close()


class ClientBook:
    """A client's book: KuCoin's documented snapshot + delta procedure, gap means resync."""

    def __init__(self) -> None:
        self.seq = -1
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.resyncs = 0

    def load(self, snapshot: dict[str, Any]) -> None:
        self.seq = int(snapshot["sequence"])
        self.bids = {Decimal(p): Decimal(s) for p, s in snapshot["bids"]}
        self.asks = {Decimal(p): Decimal(s) for p, s in snapshot["asks"]}

    def apply(self, data: dict[str, Any]) -> bool:
        """False on a gap (the caller must fetch a fresh snapshot)."""
        if data["sequenceEnd"] <= self.seq:
            return True
        if data["sequenceStart"] > self.seq + 1:
            return False
        for name, side in (("bids", self.bids), ("asks", self.asks)):
            for price, size, seq in data["changes"][name]:
                if int(seq) <= self.seq or Decimal(price) == 0:
                    continue
                if Decimal(size) == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = Decimal(size)
        self.seq = data["sequenceEnd"]
        return True


def _engine_book(box: Sandbox, symbol: str) -> tuple[int, dict[Decimal, Decimal],
                                                      dict[Decimal, Decimal]]:
    seq, bids, asks = box.state.engine.snapshot(symbol)
    return seq, dict(bids), dict(asks)


async def _sync_and_compare(box: Sandbox, ws: aiohttp.ClientWebSocketResponse,
                            ticks: int, fault_at: int = -1) -> ClientBook:
    book = ClientBook()
    buffered: list[dict[str, Any]] = []
    for _ in range(2):
        box.state.feed_step()
    buffered += await _drain(ws)
    book.load(await box.ok("GET", "/api/v3/market/orderbook/level2", {"symbol": "BTC-USDT"}))
    for step in range(ticks):
        if step == fault_at:
            box.state.config.faults.duplicate_level2 = 2
            box.state.config.faults.skip_level2 = 1
        box.state.feed_step()
        if step % 7 == 3:
            # Our own orders move the book too.
            await box.ok("POST", "/api/v1/hf/orders", body={
                "symbol": "BTC-USDT", "side": "buy", "type": "market", "funds": "50"})
        buffered += await _drain(ws, 0.01)
        for message in buffered:
            if not book.apply(message["data"]):
                book.resyncs += 1
                book.load(await box.ok("GET", "/api/v3/market/orderbook/level2",
                                       {"symbol": "BTC-USDT"}))
        buffered = []
        if step == fault_at:
            continue  # the gap shows only when the next message arrives
        seq, bids, asks = _engine_book(box, "BTC-USDT")
        assert (book.seq, book.bids, book.asks) == (seq, bids, asks)
    return book


async def test_a_client_book_from_snapshot_and_deltas_equals_the_sandbox_book() -> None:
    async with running() as box:
        ws = await _connect(box)
        await _subscribe(ws, "/market/level2:BTC-USDT")
        book = await _sync_and_compare(box, ws, 40)
        assert book.resyncs == 0
        await ws.close()


async def test_injected_gaps_and_duplicates_are_detected_and_the_book_recovers() -> None:
    async with running() as box:
        ws = await _connect(box)
        await _subscribe(ws, "/market/level2:BTC-USDT")
        book = await _sync_and_compare(box, ws, 12, fault_at=5)
        assert book.resyncs == 1
        assert box.state.config.faults.skip_level2 == 0
        await ws.close()


async def test_private_order_changes_and_balances_arrive_in_kucoin_order() -> None:
    async with running() as box:
        ws = await _connect(box, private=True)
        await _subscribe(ws, "/spotMarket/tradeOrdersV2", "o", private=True)
        await _subscribe(ws, "/account/balance", "b", private=True)
        placed = await box.ok("POST", "/api/v1/hf/orders", body={
            "clientOid": "ws-1", "symbol": "BTC-USDT", "side": "buy", "type": "market",
            "funds": "500"})
        messages = await _drain(ws, 0.1)
        orders = [m["data"] for m in messages if m["topic"] == "/spotMarket/tradeOrdersV2"]
        assert all(o["orderId"] == placed["orderId"] for o in orders)
        kinds = [(o["type"], o["status"]) for o in orders]
        assert kinds[0] == ("received", "new") and kinds[-1] == ("filled", "done")
        assert set(kinds[1:-1]) == {("match", "match")}
        assert all(o["liquidity"] == "taker" for o in orders[1:-1])
        balances = [m for m in messages if m["topic"] == "/account/balance"]
        assert balances and all(m["channelType"] == "private" for m in balances)
        assert balances[-1]["data"]["currency"] in ("BTC", "USDT")
        # A resting order: received then open, and a cancel gives canceled.
        book = await box.ok("GET", "/api/v1/market/orderbook/level2_20",
                            {"symbol": "BTC-USDT"}, signed=False)
        price = str(Decimal(book["bids"][-1][0]) - 50)
        rest = await box.ok("POST", "/api/v1/hf/orders", body={
            "symbol": "BTC-USDT", "side": "buy", "type": "limit", "price": price,
            "size": "0.001"})
        await box.ok("DELETE", f"/api/v1/hf/orders/{rest['orderId']}", {"symbol": "BTC-USDT"})
        messages = await _drain(ws, 0.1)
        kinds = [(m["data"]["type"], m["data"]["status"]) for m in messages
                 if m["topic"] == "/spotMarket/tradeOrdersV2"]
        assert kinds == [("received", "new"), ("open", "open"), ("canceled", "done")]
        holds = [m["data"]["relationEvent"] for m in messages if m["topic"] == "/account/balance"]
        assert holds == ["trade.hold", "trade.hold"]
        await ws.close()


async def test_admin_drop_closes_every_socket() -> None:
    async with running() as box:
        ws = await _connect(box)
        async with box.http.post(box.url + "/sandbox/admin/drop-ws") as r:
            assert (await r.json())["data"]["dropped"] == 1
        msg = await ws.receive(timeout=2)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await ws.close()
        await asyncio.sleep(0)


async def test_stop_orders_over_rest_and_their_advanced_order_events() -> None:
    async with running() as box:
        ws = await _connect(box, private=True)
        await _subscribe(ws, "/spotMarket/advancedOrders", "a", private=True)
        last = box.state.engine.stats["BTC-USDT"].last
        trigger = str((last * 2).quantize(Decimal("0.1")))
        placed = await box.ok("POST", "/api/v1/stop-order", body={
            "clientOid": "stop-1", "symbol": "BTC-USDT", "side": "buy", "type": "market",
            "funds": "100", "stop": "entry", "stopPrice": trigger})
        assert placed["orderId"].startswith("vs")
        listed = await box.ok("GET", "/api/v1/stop-order", {"symbol": "BTC-USDT"})
        assert [s["id"] for s in listed["items"]] == [placed["orderId"]]
        assert listed["items"][0]["status"] == "NEW"
        by_cid = await box.ok("GET", "/api/v1/stop-order/queryOrderByClientOid",
                              {"clientOid": "stop-1", "symbol": "BTC-USDT"})
        assert by_cid[0]["stopPrice"] == trigger
        cancelled = await box.ok("DELETE", f"/api/v1/stop-order/{placed['orderId']}")
        assert cancelled == {"cancelledOrderIds": [placed["orderId"]]}
        events = [m["data"] for m in await _drain(ws, 0.1)]
        assert [(e["type"], e["orderId"]) for e in events] == [
            ("open", placed["orderId"]), ("cancel", placed["orderId"])]
        assert events[0]["stop"] == "entry" and events[0]["orderType"] == "stop"
        await ws.close()


async def test_tokens_expire_after_a_day() -> None:
    clock = ManualClock()
    async with running(clock=clock) as box:
        data = await box.ok("POST", "/api/v1/bullet-public", signed=False)
        clock.advance(24 * 3600 * 1000 + 1)
        endpoint = data["instanceServers"][0]["endpoint"]
        ws = await box.http.ws_connect(f"{endpoint}?token={data['token']}&connectId=x")
        msg = await ws.receive_json(timeout=2)
        assert msg == {"id": "x", "type": "error", "code": 401, "data": "token is expired"}
        await ws.close()


async def test_a_silent_connection_is_closed_and_a_pinging_one_is_not() -> None:
    config = SandboxConfig.model_validate({"ping_interval_ms": 150, "ping_timeout_ms": 100})
    async with running(config) as box:
        quiet = await _connect_any(box)
        chatty = await _connect_any(box)
        for n in range(5):
            await chatty.send_json({"id": f"p{n}", "type": "ping"})
            assert (await chatty.receive_json(timeout=1))["type"] == "pong"
            await asyncio.sleep(0.1)
        msg = await quiet.receive(timeout=1)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert not chatty.closed
        await chatty.close()
        await quiet.close()


async def _connect_any(box: Sandbox) -> aiohttp.ClientWebSocketResponse:
    data = await box.ok("POST", "/api/v1/bullet-public", signed=False)
    endpoint = data["instanceServers"][0]["endpoint"]
    ws = await box.http.ws_connect(f"{endpoint}?token={data['token']}")
    assert (await ws.receive_json(timeout=2))["type"] == "welcome"
    return ws


async def test_balance_messages_name_the_account_ids_of_the_rest_account_list() -> None:
    async with running() as box:
        ws = await _connect(box, private=True)
        await _subscribe(ws, "/account/balance", "b", private=True)
        await box.ok("POST", "/api/v1/hf/orders", body={
            "symbol": "BTC-USDT", "side": "buy", "type": "market", "funds": "100"})
        accounts = {a["currency"]: a for a in await box.ok("GET", "/api/v1/accounts")}
        messages = await _drain(ws, 0.1)
        for message in messages:
            data = message["data"]
            assert data["accountId"] == accounts[data["currency"]]["id"]
        last = {m["data"]["currency"]: m["data"] for m in messages}
        assert set(last) == {"BTC", "USDT"}
        for currency, data in last.items():
            assert data["total"] == accounts[currency]["balance"]
            assert data["available"] == accounts[currency]["available"]
        await ws.close()


async def test_candles_stream_for_any_kucoin_interval_and_match_rest() -> None:
    async with running() as box:
        ws = await _connect(box)
        await _subscribe(ws, "/market/candles:BTC-USDT_1min", "c1")
        await _subscribe(ws, "/market/candles:BTC-USDT_1hour", "c2")
        await ws.send_json({"id": "c3", "type": "subscribe", "response": True,
                            "topic": "/market/candles:BTC-USDT_7min"})
        assert (await ws.receive_json(timeout=2))["code"] == 404
        for _ in range(20):
            box.state.feed_step()
        messages = await _drain(ws)
        by_topic = {m["topic"]: m["data"]["candles"] for m in messages}
        assert set(by_topic) == {"/market/candles:BTC-USDT_1min", "/market/candles:BTC-USDT_1hour"}
        assert all(m["subject"] == "trade.candles.update" for m in messages)
        minute = by_topic["/market/candles:BTC-USDT_1min"]
        rest = await box.ok("GET", "/api/v1/market/candles",
                            {"symbol": "BTC-USDT", "type": "1min"}, signed=False)
        assert rest[0] == minute
        hour = by_topic["/market/candles:BTC-USDT_1hour"]
        assert int(hour[0]) % 3600 == 0 and Decimal(hour[3]) >= Decimal(minute[3])
        histories = await box.ok("GET", "/api/v1/market/histories", {"symbol": "BTC-USDT"},
                                 signed=False)
        assert histories and histories[-1]["price"] == minute[2]
        await ws.close()


async def test_top_of_book_topics_match_the_rest_book() -> None:
    async with running() as box:
        ws = await _connect(box)
        await _subscribe(ws, "/spotMarket/level2Depth5:BTC-USDT", "d5")
        await _subscribe(ws, "/spotMarket/level1:BTC-USDT", "l1")
        box.state.feed_step()
        messages = await _drain(ws)
        depth = [m for m in messages if m["topic"] == "/spotMarket/level2Depth5:BTC-USDT"][-1]
        top = [m for m in messages if m["topic"] == "/spotMarket/level1:BTC-USDT"][-1]
        book = await box.ok("GET", "/api/v1/market/orderbook/level2_20", {"symbol": "BTC-USDT"},
                            signed=False)
        assert depth["subject"] == "level2" and depth["data"]["bids"] == book["bids"][:5]
        assert depth["data"]["asks"] == book["asks"][:5]
        assert top["subject"] == "level1" and top["data"]["bids"] == book["bids"][0]
        await ws.close()


async def test_hostile_websocket_messages_get_error_messages_and_the_socket_survives() -> None:
    async with running() as box:
        ws = await _connect(box)
        hostile: list[Any] = [
            "not json", "[1,2]", "null", '{"type": 5}', '{"id": {}, "type": "subscribe"}',
            '{"id": 1, "type": "subscribe", "topic": 7}',
            '{"id": 2, "type": "subscribe", "topic": "/market/ticker:BTC-USDT, ETH-USDT"}',
            '{"id": 3, "type": "subscribe", "topic": "/market/level2:"}',
            '{"id": 4, "type": "subscribe", "topic": "/market/candles:BTC-USDT"}',
            json.dumps({"id": 5, "type": "subscribe",
                        "topic": "/market/ticker:" + ",".join(["BTC-USDT"] * 101)}),
        ]
        codes = []
        for text in hostile:
            await ws.send_str(text)
            reply = await ws.receive_json(timeout=2)
            assert reply["type"] == "error", (text, reply)
            codes.append(reply["code"])
        assert codes[-1] == 509 and 400 in codes and 404 in codes and 415 in codes
        await ws.send_json({"id": "alive", "type": "ping"})
        assert (await ws.receive_json(timeout=2))["type"] == "pong"
        await ws.close()
