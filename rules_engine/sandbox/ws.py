"""KuCoin's classic WebSocket feed: bullet tokens, welcome, JSON ping/pong, subscribe/ack.

Connect to `/endpoint?token=...&connectId=...` (the endpoint the bullet reply names). Public
topics: `/market/ticker:{syms|all}`, `/market/level2:{syms}`, `/market/match:{syms}`,
`/market/candles:{sym}_{type}` (any KuCoin type), `/market/snapshot:{sym}` (24h figures as JSON
numbers, sent on subscribe and then at most every 2 s while the market moves),
`/spotMarket/level1:{syms}`, `/spotMarket/level2Depth5:{syms}`, `/spotMarket/level2Depth50:{syms}`
(top-of-book snapshots each time the book moves). Private topics
(private token only):
`/spotMarket/tradeOrdersV2`, `/spotMarket/tradeOrders`, `/account/balance`,
`/spotMarket/advancedOrders`.

Level2 messages carry `sequenceStart`/`sequenceEnd` taken from the engine's book sequence, so
they continue the REST snapshot `sequence` exactly. Sample level2 message::

    {"topic":"/market/level2:BTC-USDT","type":"message","subject":"trade.l2update",
     "data":{"changes":{"asks":[["69160.1","0.12","1000000012"]],"bids":[]},
             "sequenceStart":1000000012,"sequenceEnd":1000000012,"symbol":"BTC-USDT",
             "time":1767225600000}}
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import WSMsgType, web

from rules_engine.sandbox.config import KeyConfig
from rules_engine.sandbox.engine import (
    BalanceEvent,
    Event,
    L2Change,
    OrderEvent,
    Stats,
    StopEvent,
    TradeEvent,
    account_id,
    fmt,
)

if TYPE_CHECKING:
    from rules_engine.sandbox.state import SandboxState

__all__ = ["CANDLE_TYPES", "Hub", "drop_all", "install", "issue_token"]

PUBLIC_PREFIXES = (
    "/market/ticker", "/market/level2", "/market/match", "/market/candles", "/market/snapshot",
    "/spotMarket/level1", "/spotMarket/level2Depth5", "/spotMarket/level2Depth50",
    # No symbol runs a call auction here: these are accepted and stay silent.
    "/callauction/level2Depth50", "/callauction/callauctionData",
)
SNAPSHOT_INTERVAL_MS = 2000
# KuCoin's candle types and their length in seconds (buckets are aligned on the epoch).
CANDLE_TYPES = {
    "1min": 60, "3min": 180, "5min": 300, "15min": 900, "30min": 1800, "1hour": 3600,
    "2hour": 7200, "4hour": 14400, "6hour": 21600, "8hour": 28800, "12hour": 43200,
    "1day": 86400, "1week": 604800, "1month": 2592000,
}
PRIVATE_TOPICS = (
    "/spotMarket/tradeOrdersV2", "/spotMarket/tradeOrders", "/account/balance",
    "/spotMarket/advancedOrders",
)
MAX_QUEUE = 20_000
TOKEN_LIFETIME_MS = 24 * 3600 * 1000


@dataclass
class Conn:
    ws: web.WebSocketResponse
    private_key: str | None
    topics: set[str] = field(default_factory=set)
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)

    def wants(self, topic: str) -> bool:
        return topic in self.topics

    def push(self, payload: dict[str, Any]) -> None:
        if self.queue.qsize() > MAX_QUEUE:
            # A client that reads too slowly loses messages, as on KuCoin; it sees a gap.
            return
        self.queue.put_nowait(orjson.dumps(payload))


@dataclass
class Hub:
    state: SandboxState
    tokens: dict[str, tuple[str | None, int]] = field(default_factory=dict)
    conns: list[Conn] = field(default_factory=list)
    pushed: int = 0
    snapshot_sent: dict[str, int] = field(default_factory=dict)
    balance_events: int = 0  # the envelope `id` of `/account/balance` messages

    def on_events(self, events: list[Event]) -> None:
        if not self.conns:
            return
        state = self.state
        l2: dict[str, list[L2Change]] = {}
        touched: set[str] = set()
        trades: dict[str, TradeEvent] = {}
        for event in events:
            if isinstance(event, L2Change):
                l2.setdefault(event.symbol, []).append(event)
                touched.add(event.symbol)
            elif isinstance(event, TradeEvent):
                trades[event.symbol] = event
                touched.add(event.symbol)
                self._send(f"/market/match:{event.symbol}", "trade.l3match", {
                    "makerOrderId": event.maker_order_id, "takerOrderId": event.taker_order_id,
                    "price": fmt(event.price), "size": fmt(event.size), "side": event.side,
                    "sequence": str(event.sequence), "symbol": event.symbol,
                    "time": str(event.time_ms * 1_000_000), "tradeId": event.trade_id,
                    "type": "match",
                })
                self._candle(event)
            elif isinstance(event, OrderEvent):
                self._order(event)
            elif isinstance(event, BalanceEvent):
                self.balance_events += 1
                event_id = str(self.balance_events)
                self._private("/account/balance", "account.balance", {
                    "accountId": account_id(event.currency),
                    "currency": event.currency, "total": fmt(event.total),
                    "available": fmt(event.available), "hold": fmt(event.hold),
                    "availableChange": fmt(event.available_change),
                    "holdChange": fmt(event.hold_change),
                    "relationEvent": event.relation_event,
                    "relationEventId": event_id,
                    "relationContext": {"symbol": event.symbol, "orderId": event.order_id,
                                        "tradeId": event.trade_id},
                    "time": str(event.time_ms),
                }, envelope_id=event_id)
            elif isinstance(event, StopEvent):
                order = event.order
                data: dict[str, Any] = {
                    "createdAt": order.created_at, "orderId": order.id,
                    "orderPrice": fmt(order.price), "orderType": "stop", "side": order.side,
                    "size": fmt(order.size), "stop": event.stop,
                    "stopPrice": fmt(event.stop_price), "symbol": order.symbol,
                    "tradeType": "TRADE", "ts": event.ts_ns, "type": event.type,
                }
                if event.trigger_success is not None:
                    data["triggerSuccess"] = event.trigger_success
                self._private("/spotMarket/advancedOrders", "stopOrder", data)
        faults = state.config.faults
        for symbol, changes in l2.items():
            if not self._wanted(f"/market/level2:{symbol}"):
                continue  # nobody follows it: no payload built (the faults wait for one)
            payload = {
                "changes": {
                    "asks": [[fmt(c.price), fmt(c.size), str(c.sequence)]
                             for c in changes if c.side == "asks"],
                    "bids": [[fmt(c.price), fmt(c.size), str(c.sequence)]
                             for c in changes if c.side == "bids"],
                },
                "sequenceStart": changes[0].sequence, "sequenceEnd": changes[-1].sequence,
                "symbol": symbol, "time": changes[-1].time_ms,
            }
            if faults.skip_level2 > 0:
                faults.skip_level2 -= 1
                continue
            self._send(f"/market/level2:{symbol}", "trade.l2update", payload)
            if faults.duplicate_level2 > 0:
                faults.duplicate_level2 -= 1
                self._send(f"/market/level2:{symbol}", "trade.l2update", payload)
        for symbol in touched:
            seq, bids, asks = state.engine.snapshot(symbol, 1)
            st = state.engine.stats[symbol]
            trade = trades.get(symbol)
            ticker = {
                "sequence": str(seq), "price": fmt(st.last), "size": fmt(st.last_size),
                "bestAsk": fmt(asks[0][0]) if asks else None,
                "bestAskSize": fmt(asks[0][1]) if asks else None,
                "bestBid": fmt(bids[0][0]) if bids else None,
                "bestBidSize": fmt(bids[0][1]) if bids else None,
                "time": trade.time_ms if trade else state.now_ms(),
            }
            self._send(f"/market/ticker:{symbol}", "trade.ticker", ticker)
            self._send("/market/ticker:all", symbol, ticker)
            self._depth(symbol)
            now = state.now_ms()
            if (now - self.snapshot_sent.get(symbol, 0) >= SNAPSHOT_INTERVAL_MS
                    and self._wanted(f"/market/snapshot:{symbol}")):
                self.snapshot_sent[symbol] = now
                topics = [f"/market/snapshot:{symbol}",
                          *(f"/market/snapshot:{m}" for m in markets_of(state, symbol))]
                if any(conn.wants(t) for conn in self.conns for t in topics):
                    snap = snapshot_data(state, symbol)
                    for topic in topics:
                        self._send(topic, "trade.snapshot", snap)

    def _depth(self, symbol: str) -> None:
        """Top-of-book snapshots: `/spotMarket/level1` and `level2Depth5`/`50`."""
        now = self.state.now_ms()
        for depth in (1, 5, 50):
            topic = (f"/spotMarket/level1:{symbol}" if depth == 1
                     else f"/spotMarket/level2Depth{depth}:{symbol}")
            if not any(conn.wants(topic) for conn in self.conns):
                continue
            _seq, bids, asks = self.state.engine.snapshot(symbol, depth)
            rows_b = [[fmt(p), fmt(q)] for p, q in bids]
            rows_a = [[fmt(p), fmt(q)] for p, q in asks]
            if depth == 1:
                data: dict[str, Any] = {"asks": rows_a[0] if rows_a else [],
                                        "bids": rows_b[0] if rows_b else [], "timestamp": now}
                self._send(topic, "level1", data)
            else:
                self._send(topic, "level2", {"asks": rows_a, "bids": rows_b, "timestamp": now})

    def _candle(self, trade: TradeEvent) -> None:
        """Push the candle the trade updated, for every interval someone subscribed to."""
        prefix = f"/market/candles:{trade.symbol}_"
        wanted = {t for conn in self.conns for t in conn.topics if t.startswith(prefix)}
        minutes = self.state.minute_candles.get(trade.symbol, {})
        minute = trade.time_ms // 60_000 * 60
        for topic in sorted(wanted):
            granularity = CANDLE_TYPES[topic[len(prefix):]]
            start = minute - minute % granularity
            found = (minutes.get(m) for m in range(start, min(start + granularity, minute + 60),
                                                    60))
            rows = [r for r in found if r is not None]
            if not rows:
                continue
            high = max(r[2] for r in rows)
            low = min(r[3] for r in rows)
            volume = sum((r[4] for r in rows), Decimal(0))
            turnover = sum((r[5] for r in rows), Decimal(0))
            self._send(topic, "trade.candles.update", {
                "symbol": trade.symbol,
                "candles": [str(start), fmt(rows[0][0]), fmt(rows[-1][1]), fmt(high), fmt(low),
                            fmt(volume), fmt(turnover)],
                "time": trade.time_ms * 1_000_000,
            })

    def _order(self, event: OrderEvent) -> None:
        order = event.order
        data: dict[str, Any] = {
            "symbol": order.symbol, "orderType": order.type, "side": order.side,
            "orderId": order.id, "clientOid": order.client_oid, "type": event.type,
            "status": event.status, "orderTime": order.created_at, "ts": event.ts_ns,
            "size": fmt(order.size), "originSize": fmt(order.size),
            "filledSize": fmt(order.deal_size), "remainSize": fmt(order.remaining),
            "canceledSize": fmt(order.canceled_size), "price": fmt(order.price),
        }
        if order.funds is not None:
            data["funds"] = fmt(order.funds)
            data["remainFunds"] = "0" if event.status == "done" else fmt(order.funds)
        if event.type == "match":
            assert event.match_price is not None and event.match_size is not None
            data["matchPrice"] = fmt(event.match_price)
            data["matchSize"] = fmt(event.match_size)
            data["tradeId"] = event.trade_id
            data["liquidity"] = event.liquidity
            data["feeType"] = "takerFee" if event.liquidity == "taker" else "makerFee"
        if event.old_size is not None:
            data["oldSize"] = fmt(event.old_size)
        self._private("/spotMarket/tradeOrdersV2", "orderChange", data)
        if event.type != "received":
            self._private("/spotMarket/tradeOrders", "orderChange", data)

    def _wanted(self, topic: str) -> bool:
        return any(conn.wants(topic) for conn in self.conns)

    def _send(self, topic: str, subject: str, data: dict[str, Any]) -> None:
        message = {"topic": topic, "type": "message", "subject": subject, "data": data}
        for conn in self.conns:
            if conn.wants(topic):
                conn.push(message)
                self.pushed += 1

    def _private(self, topic: str, subject: str, data: dict[str, Any],
                 envelope_id: str | None = None) -> None:
        message: dict[str, Any] = {"topic": topic, "type": "message", "subject": subject}
        if envelope_id is not None:
            message["id"] = envelope_id
        message |= {"userId": str(self.state.config.uid), "channelType": "private",
                    "data": data}
        for conn in self.conns:
            if conn.private_key is not None and conn.wants(topic):
                conn.push(message)
                self.pushed += 1


def _num(value: Decimal | None) -> orjson.Fragment | None:
    """A decimal as a JSON number, written exactly (no float on the way)."""
    return None if value is None else orjson.Fragment(fmt(value).encode("ascii"))


def markets_of(state: SandboxState, symbol: str) -> list[str]:
    """The markets a symbol is listed in (its row's `market`: USDS for the USDT pairs, BTC
    for the BTC pairs), as `/market/snapshot:{market}` names them."""
    found = state.extras.get("markets")
    if found is None:
        found = {str(row["symbol"]): [str(row.get("market") or "USDS")]
                 for row in state.feed.symbol_rows()}
        state.extras["markets"] = found
    markets: list[str] = found.get(symbol) or ["USDS"]
    return markets


def _window(st: Stats) -> dict[str, Any]:
    change = st.last - st.open if st.open else Decimal(0)
    rate = (change / st.open).quantize(Decimal("0.0001")) if st.open else Decimal(0)
    return {
        "open": _num(st.open), "high": _num(st.high), "low": _num(st.low), "vol": _num(st.vol),
        "volValue": _num(st.vol_value), "changePrice": _num(change), "changeRate": _num(rate),
    }


def snapshot_data(state: SandboxState, symbol: str) -> dict[str, Any]:
    """The `/market/snapshot` payload: KuCoin sends these figures as JSON numbers."""
    seq, bids, asks = state.engine.snapshot(symbol, 1)
    st = state.stats_24h(symbol)
    info = state.symbols[symbol]
    avg = (st.vol_value / st.vol).quantize(info.price_increment) if st.vol else st.last
    window = _window(st)
    markets = markets_of(state, symbol)
    return {
        "sequence": str(seq),
        "data": {
            "symbol": symbol, "symbolCode": symbol, "baseCurrency": info.base_currency,
            "quoteCurrency": info.quote_currency, "market": markets[0], "markets": markets,
            "siteTypes": ["global"],
            "marketChange1h": _window(state.stats_window(symbol, 3600)),
            "marketChange4h": _window(state.stats_window(symbol, 4 * 3600)),
            "trading": info.enable_trading, "marginTrade": False, "board": 0, "mark": 0,
            "sort": 1, "lastTradedPrice": _num(st.last), "close": _num(st.last),
            "buy": _num(bids[0][0]) if bids else None, "sell": _num(asks[0][0]) if asks else None,
            "bidSize": _num(bids[0][1]) if bids else None,
            "askSize": _num(asks[0][1]) if asks else None,
            "averagePrice": _num(avg), "datetime": state.now_ms(),
            "makerFeeRate": _num(state.config.maker_fee_rate),
            "takerFeeRate": _num(state.config.taker_fee_rate),
            "makerCoefficient": 1, "takerCoefficient": 1, "marketChange24h": window,
            **window,
        },
    }


def _hub(state: SandboxState) -> Hub:
    hub = state.extras.get("ws_hub")
    if not isinstance(hub, Hub):
        hub = Hub(state)
        state.extras["ws_hub"] = hub
        state.listeners.append(hub.on_events)
    return hub


def issue_token(state: SandboxState, key: KeyConfig | None) -> str:
    hub = _hub(state)
    token = secrets.token_urlsafe(48)
    hub.tokens[token] = (key.api_key if key is not None else None, state.now_ms())
    return token


async def drop_all(state: SandboxState) -> int:
    hub = _hub(state)
    conns = list(hub.conns)
    for conn in conns:
        await conn.ws.close(code=1001, message=b"dropped by fault injection")
    return len(conns)


def _expand(topic: str, private: bool, state: SandboxState) -> list[str] | str:
    """The single-symbol topics a subscription names, or an error text."""
    if " " in topic:
        return f"topic {topic} is invalid"
    if topic in PRIVATE_TOPICS:
        return [topic] if private else f"topic {topic} is not found"
    prefix, _, args = topic.partition(":")
    if prefix not in PUBLIC_PREFIXES or not args:
        return f"topic {topic} is not found"
    out = []
    for arg in args.split(","):
        symbol = arg.rsplit("_", 1)[0] if prefix == "/market/candles" else arg
        if prefix == "/market/candles" and arg.rpartition("_")[2] not in CANDLE_TYPES:
            return f"topic {prefix}:{arg} is not found"
        whole_market = prefix == "/market/snapshot" and any(
            arg in markets_of(state, s) for s in state.symbols)
        if (symbol not in state.symbols and not whole_market
                and not (prefix == "/market/ticker" and arg == "all")):
            return f"topic {prefix}:{arg} is not found"
        out.append(f"{prefix}:{arg}")
    if len(out) > 100:
        return "exceed max subscription count limitation of 100 per time"
    return out


def install(app: web.Application, state: SandboxState) -> None:
    hub = _hub(state)

    async def endpoint(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=1 << 20)
        await ws.prepare(request)
        token = request.query.get("token", "")
        issued = hub.tokens.get(token)
        if issued is None or state.now_ms() - issued[1] > TOKEN_LIFETIME_MS:
            await ws.send_str(orjson.dumps(
                {"id": request.query.get("connectId", ""), "type": "error", "code": 401,
                 "data": "token is expired"}
            ).decode())
            await ws.close()
            return ws
        conn = Conn(ws, issued[0])
        hub.conns.append(conn)
        connect_id = request.query.get("connectId") or secrets.token_hex(8)

        async def writer() -> None:
            while True:
                item = await conn.queue.get()
                if item is None or ws.closed:
                    return
                if state.config.faults.ws_silent:
                    continue  # fault: the connection stays open and goes quiet (lost)
                await ws.send_str(item.decode("utf-8"))

        await ws.send_str(orjson.dumps({"id": connect_id, "type": "welcome"}).decode())
        task = asyncio.create_task(writer())
        timeout = (state.config.ping_interval_ms + state.config.ping_timeout_ms) / 1000
        try:
            while True:
                try:
                    msg = await ws.receive(timeout=timeout)
                except TimeoutError:
                    break
                if msg.type != WSMsgType.TEXT:
                    break
                for reply in _handle(conn, msg.data, state):
                    conn.queue.put_nowait(orjson.dumps(reply))
        finally:
            if conn in hub.conns:
                hub.conns.remove(conn)
            conn.queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 1.0)
            if not ws.closed:
                await ws.close()
        return ws

    async def close_all(app: web.Application) -> None:
        await drop_all(state)

    app.router.add_get("/endpoint", endpoint)
    app.on_shutdown.append(close_all)


def _handle(conn: Conn, text: str, state: SandboxState) -> list[dict[str, Any]]:
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        return [{"id": "", "type": "error", "code": 400, "data": "message is not JSON"}]
    if not isinstance(message, dict):
        return [{"id": "", "type": "error", "code": 400, "data": "message is not an object"}]
    ident = str(message.get("id", ""))
    kind = message.get("type")
    if kind == "ping":
        return [{"id": ident, "type": "pong", "timestamp": state.now_ms() * 1000}]
    if kind in ("subscribe", "unsubscribe"):
        topic = message.get("topic")
        if not isinstance(topic, str):
            return [{"id": ident, "type": "error", "code": 400, "data": "topic is required"}]
        expanded = _expand(topic, conn.private_key is not None, state)
        if isinstance(expanded, str):
            code = 509 if "exceed" in expanded else (400 if "invalid" in expanded else 404)
            return [{"id": ident, "type": "error", "code": code, "data": expanded}]
        if kind == "subscribe":
            conn.topics.update(expanded)
        else:
            conn.topics.difference_update(expanded)
        replies: list[dict[str, Any]] = []
        if message.get("response") in (True, "true"):
            replies.append({"id": ident, "type": "ack"})
        if kind == "subscribe":
            for one in expanded:
                if one.startswith("/market/snapshot:"):
                    name = one.partition(":")[2]
                    covered = [name] if name in state.symbols else [
                        s for s in state.symbols if name in markets_of(state, s)]
                    replies.extend({"topic": one, "type": "message", "subject": "trade.snapshot",
                                    "data": snapshot_data(state, s)} for s in covered)
        return replies
    return [{"id": ident, "type": "error", "code": 415, "data": "type is not supported"}]
