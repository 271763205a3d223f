"""KuCoin's REST surface: request parsing, KuCoin's JSON shapes, the handlers and the route
table (method, path, handler, weight, pool, signed, permission). The server wraps each route with
authentication, rate limiting and error replies.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from rules_engine.sandbox import errors, ws
from rules_engine.sandbox.config import KeyConfig
from rules_engine.sandbox.engine import Fill, Order, OrderRequest, account_id, fmt
from rules_engine.sandbox.errors import ApiError, ApiFailureError
from rules_engine.sandbox.feeds import Candle
from rules_engine.sandbox.state import SandboxState
from rules_engine.sandbox.ws import CANDLE_TYPES

__all__ = ["Ctx", "Route", "bool_param", "candles", "check_window", "dec_param", "fill_json",
           "hf_order", "int_param", "legacy_order", "ok_body", "order_request", "page_of",
           "place_many", "routes", "stop_order", "sync_row"]

Handler = Callable[["Ctx"], Awaitable[Any]]


@dataclass
class Ctx:
    """One request as the handlers see it: parsed query, JSON body and the signing key."""

    state: SandboxState
    request: web.Request
    query: dict[str, str]
    body: dict[str, Any]
    key: KeyConfig | None
    match: dict[str, str]

    def q(self, name: str, *, required: bool = False) -> str | None:
        value = self.query.get(name) or self.match.get(name)
        if required and not value:
            raise ApiFailureError(errors.bad_param(f"{name} is required"))
        return value

    def symbol(self, required: bool = True) -> str | None:
        symbol = self.q("symbol", required=required)
        if symbol is not None and symbol not in self.state.symbols:
            raise ApiFailureError(errors.symbol_not_exists())
        return symbol


def ok_body(data: Any) -> dict[str, Any]:
    return {"code": "200000", "data": data}


def dec_param(value: Any, name: str) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ApiFailureError(errors.bad_param(f"{name} must be a decimal string"))
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ApiFailureError(errors.bad_param(f"{name} is not a number")) from None
    if not number.is_finite():
        raise ApiFailureError(errors.bad_param(f"{name} is not a number"))
    return number


def bool_param(value: Any, name: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if value == "true":
        return True
    if value == "false":
        return False
    raise ApiFailureError(errors.bad_param(f"{name} must be a boolean"))


def int_param(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ApiFailureError(errors.bad_param(f"{name} must be an integer"))
    try:
        return int(str(value))
    except ValueError:
        raise ApiFailureError(errors.bad_param(f"{name} must be an integer")) from None


def order_request(body: dict[str, Any], *, hf: bool, stop: bool = False) -> OrderRequest:
    side = body.get("side")
    if side not in ("buy", "sell"):
        raise ApiFailureError(errors.bad_param("side must be buy or sell"))
    kind = body.get("type", None if hf else "limit")
    if kind not in ("limit", "market"):
        raise ApiFailureError(errors.bad_param("type must be limit or market"))
    symbol = body.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise ApiFailureError(errors.bad_param("symbol is required"))
    client_oid = body.get("clientOid")
    if client_oid is None:
        if not hf:
            raise ApiFailureError(errors.bad_param("validation.createOrder.clientOidIsRequired"))
        client_oid = uuid.uuid4().hex
    if not isinstance(client_oid, str):
        raise ApiFailureError(errors.bad_param("clientOid must be a string"))
    tif = body.get("timeInForce") or "GTC"
    stop_kind = None
    if stop:
        stop_kind = body.get("stop") or "loss"
    return OrderRequest(
        symbol=symbol, side=side, type=kind, client_oid=client_oid,
        price=dec_param(body.get("price"), "price") if kind == "limit" else None,
        size=dec_param(body.get("size"), "size"),
        funds=dec_param(body.get("funds"), "funds") if kind == "market" else None,
        time_in_force=str(tif), cancel_after=int_param(body.get("cancelAfter"), "cancelAfter", -1),
        post_only=bool_param(body.get("postOnly"), "postOnly"),
        hidden=bool_param(body.get("hidden"), "hidden"),
        iceberg=bool_param(body.get("iceberg"), "iceberg"),
        visible_size=dec_param(body.get("visibleSize"), "visibleSize"),
        stp=str(body.get("stp") or ""), remark=str(body.get("remark") or "")[:100],
        tags=str(body.get("tags") or "")[:20], hf=hf, stop=stop_kind,
        stop_price=dec_param(body.get("stopPrice"), "stopPrice") if stop else None,
    )


# ---- JSON shapes ---------------------------------------------------------------------------


def _opt(value: Decimal | None) -> str | None:
    return None if value is None else fmt(value)


def hf_order(order: Order, state: SandboxState) -> dict[str, Any]:
    req = order.req
    info = state.symbols[order.symbol]
    remain_funds = (req.funds - order.deal_funds - order.canceled_funds) if req.funds else None
    return {
        "id": order.id, "clientOid": req.client_oid, "symbol": order.symbol, "opType": "DEAL",
        "type": req.type, "side": req.side, "price": fmt(order.price), "size": fmt(order.size),
        "funds": fmt(req.funds or Decimal(0)), "dealSize": fmt(order.deal_size),
        "dealFunds": fmt(order.deal_funds), "remainSize": fmt(max(order.remaining, Decimal(0))),
        "remainFunds": fmt(remain_funds or Decimal(0)),
        "cancelledSize": fmt(order.canceled_size), "cancelledFunds": fmt(order.canceled_funds),
        "fee": fmt(order.fee), "feeCurrency": info.quote_currency, "stp": req.stp or None,
        "timeInForce": req.time_in_force, "postOnly": req.post_only, "hidden": req.hidden,
        "iceberg": req.iceberg, "visibleSize": fmt(req.visible_size or Decimal(0)),
        "cancelAfter": req.cancel_after if req.time_in_force == "GTT" else 0,
        "channel": "API", "remark": req.remark or None, "tags": req.tags or None,
        "cancelExist": order.canceled_size > 0 or order.done_reason == "canceled",
        "tradeType": "TRADE", "inOrderBook": order.in_book, "active": order.active,
        "tax": "0", "createdAt": order.created_at, "lastUpdatedAt": order.updated_at,
    }


def legacy_order(order: Order, state: SandboxState) -> dict[str, Any]:
    req = order.req
    info = state.symbols[order.symbol]
    stop = state.engine.stop_orders.get(order.id) if order.stop_triggered else None
    stop_req = stop.req if stop is not None else req
    return {
        "id": order.id, "symbol": order.symbol, "opType": "DEAL", "type": req.type,
        "side": req.side, "price": fmt(order.price), "size": fmt(order.size),
        "funds": fmt(req.funds or Decimal(0)), "dealFunds": fmt(order.deal_funds),
        "dealSize": fmt(order.deal_size), "fee": fmt(order.fee),
        "feeCurrency": info.quote_currency, "stp": req.stp, "stop": stop_req.stop or "",
        "stopTriggered": order.stop_triggered,
        "stopPrice": fmt(stop_req.stop_price or Decimal(0)),
        "timeInForce": req.time_in_force, "postOnly": req.post_only, "hidden": req.hidden,
        "iceberg": req.iceberg, "visibleSize": fmt(req.visible_size or Decimal(0)),
        "cancelAfter": req.cancel_after if req.time_in_force == "GTT" else 0,
        "channel": "API", "clientOid": req.client_oid, "remark": req.remark or None,
        "tags": req.tags or None, "isActive": order.active,
        "cancelExist": order.canceled_size > 0 or order.done_reason == "canceled",
        "createdAt": order.created_at, "tradeType": "TRADE",
    }


def stop_order(order: Order, state: SandboxState) -> dict[str, Any]:
    req = order.req
    info = state.symbols[order.symbol]
    return {
        "id": order.id, "symbol": order.symbol, "userId": str(state.config.uid),
        "status": order.stop_status, "type": req.type, "side": req.side,
        "price": fmt(order.price), "size": fmt(order.size), "funds": _opt(req.funds),
        "stp": req.stp or None, "timeInForce": req.time_in_force, "cancelAfter": -1,
        "postOnly": req.post_only, "hidden": req.hidden, "iceberg": req.iceberg,
        "visibleSize": _opt(req.visible_size), "channel": "API", "clientOid": req.client_oid,
        "remark": req.remark or None, "tags": req.tags or None,
        "orderTime": order.created_at * 1_000_000, "domainId": "kucoin",
        "tradeSource": "USER", "tradeType": "TRADE", "feeCurrency": info.quote_currency,
        "takerFeeRate": fmt(state.config.taker_fee_rate),
        "makerFeeRate": fmt(state.config.maker_fee_rate), "createdAt": order.created_at,
        "stop": req.stop, "stopTriggerTime": order.updated_at if order.stop_triggered else None,
        "stopPrice": fmt(req.stop_price or Decimal(0)),
        # Fields of KuCoin's other trigger kinds (OCO legs, take-profit/stop-loss pairs): a
        # plain stop order has none of them.
        # An OCO's stop leg names its OCO and the price of the limit order it places.
        "relatedNo": order.oco_id or None,
        "limitPrice": fmt(order.price) if order.oco_id else None,
        "pop": None, "activateCondition": None,
    }


def fill_json(fill: Fill, *, hf: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "symbol": fill.symbol, "tradeId": fill.trade_id, "orderId": fill.order_id,
        "counterOrderId": fill.counter_order_id, "side": fill.side, "liquidity": fill.liquidity,
        "forceTaker": False, "price": fmt(fill.price), "size": fmt(fill.size),
        "funds": fmt(fill.funds), "fee": fmt(fill.fee), "feeRate": fmt(fill.fee_rate),
        "feeCurrency": fill.fee_currency, "stop": "", "tradeType": "TRADE",
        "type": fill.order_type, "createdAt": fill.created_at,
    }
    if hf:
        row["tradeId"] = int(fill.trade_id)  # a JSON number on the HF endpoint (int64)
        row["id"] = fill.seq
        row["taxRate"] = "0"
        row["tax"] = "0"
    return row


def page_of(items: list[Any], ctx: Ctx, page_key: str = "currentPage") -> dict[str, Any]:
    page = max(int_param(ctx.q(page_key), page_key, 1), 1)
    size = int_param(ctx.q("pageSize"), "pageSize", 50)
    if size > 500:
        raise ApiFailureError(errors.bad_param("pageSize should not greater than 500"))
    size = max(size, 1)
    total = len(items)
    return {
        "currentPage": page, "pageSize": size, "totalNum": total,
        "totalPage": (total + size - 1) // size, "items": items[(page - 1) * size : page * size],
    }


# ---- handlers: public market data ---------------------------------------------------------


async def h_timestamp(ctx: Ctx) -> Any:
    return ctx.state.now_ms()


async def h_status(ctx: Ctx) -> Any:
    return {"status": "open", "msg": f"sandbox {ctx.state.instance_id}"}


def _symbol_rows(state: SandboxState) -> list[dict[str, Any]]:
    return [dict(r) for r in state.feed.symbol_rows() if r["symbol"] in state.symbols]


async def h_symbols(ctx: Ctx) -> Any:
    market = ctx.q("market")
    rows = _symbol_rows(ctx.state)
    return [r for r in rows if market is None or r.get("market") == market]


async def h_symbol(ctx: Ctx) -> Any:
    symbol = ctx.match["symbol"]
    for row in _symbol_rows(ctx.state):
        if row["symbol"] == symbol:
            return row
    raise ApiFailureError(errors.symbol_not_exists())


def _ticker(state: SandboxState, symbol: str) -> dict[str, Any]:
    engine = state.engine
    st = state.stats_24h(symbol)
    _seq, bids, asks = engine.snapshot(symbol, 1)
    change = st.last - st.open if st.open else Decimal(0)
    rate = (change / st.open).quantize(Decimal("0.0001")) if st.open else Decimal(0)
    avg = (st.vol_value / st.vol).quantize(state.symbols[symbol].price_increment) if st.vol else st.last  # noqa: E501
    return {
        "symbol": symbol, "symbolName": symbol,
        "buy": fmt(bids[0][0]) if bids else None, "bestBidSize": fmt(bids[0][1]) if bids else None,
        "sell": fmt(asks[0][0]) if asks else None, "bestAskSize": fmt(asks[0][1]) if asks else None,
        "changeRate": fmt(rate), "changePrice": fmt(change), "high": fmt(st.high),
        "low": fmt(st.low), "vol": fmt(st.vol), "volValue": fmt(st.vol_value),
        "last": fmt(st.last), "averagePrice": fmt(avg),
        "takerFeeRate": fmt(state.config.taker_fee_rate),
        "makerFeeRate": fmt(state.config.maker_fee_rate),
        "takerCoefficient": "1", "makerCoefficient": "1",
    }


async def h_all_tickers(ctx: Ctx) -> Any:
    return {
        "time": ctx.state.now_ms(),
        "ticker": [_ticker(ctx.state, s) for s in ctx.state.symbols],
    }


async def h_stats(ctx: Ctx) -> Any:
    symbol = ctx.symbol()
    assert symbol is not None
    row = _ticker(ctx.state, symbol)
    for name in ("symbolName", "bestBidSize", "bestAskSize"):
        row.pop(name)
    row["time"] = ctx.state.now_ms()
    return row


async def h_level1(ctx: Ctx) -> Any:
    symbol = ctx.symbol()
    assert symbol is not None
    engine = ctx.state.engine
    seq, bids, asks = engine.snapshot(symbol, 1)
    st = engine.stats[symbol]
    return {
        "time": ctx.state.now_ms(), "sequence": str(seq), "price": fmt(st.last),
        "size": fmt(st.last_size),
        "bestBid": fmt(bids[0][0]) if bids else None,
        "bestBidSize": fmt(bids[0][1]) if bids else None,
        "bestAsk": fmt(asks[0][0]) if asks else None,
        "bestAskSize": fmt(asks[0][1]) if asks else None,
    }


def _book(ctx: Ctx, limit: int | None) -> dict[str, Any]:
    symbol = ctx.symbol()
    assert symbol is not None
    seq, bids, asks = ctx.state.engine.snapshot(symbol, limit)
    return {
        "time": ctx.state.now_ms(), "sequence": str(seq),
        "bids": [[fmt(p), fmt(s)] for p, s in bids], "asks": [[fmt(p), fmt(s)] for p, s in asks],
    }


async def h_level2_20(ctx: Ctx) -> Any:
    return _book(ctx, 20)


async def h_level2_100(ctx: Ctx) -> Any:
    return _book(ctx, 100)


async def h_level2_full(ctx: Ctx) -> Any:
    return _book(ctx, None)


async def h_histories(ctx: Ctx) -> Any:
    """The last 100 prints of the market (the feed's and the account's), oldest first."""
    symbol = ctx.symbol()
    assert symbol is not None
    return [
        {"sequence": str(t.sequence), "price": fmt(t.price), "size": fmt(t.size),
         "side": t.side, "time": t.time_ms * 1_000_000}
        for t in ctx.state.recent_trades.get(symbol, ())
    ]


def candles(
    state: SandboxState, symbol: str, granularity: int, start_s: int,
            end_s: int) -> list[list[str]]:
    """History from the feed plus live one-minute buckets, grouped by `granularity`."""
    rows: dict[int, list[Decimal]] = {}

    def add(  # noqa: PLR0917 - one candle's columns, in KuCoin's order
        start: int, o: Decimal, c: Decimal, h: Decimal, lo: Decimal, v: Decimal,
            t: Decimal) -> None:
        bucket = start - start % granularity
        row = rows.get(bucket)
        if row is None:
            rows[bucket] = [o, c, h, lo, v, t]
        else:
            row[1] = c
            row[2] = max(row[2], h)
            row[3] = min(row[3], lo)
            row[4] += v
            row[5] += t

    live = state.minute_candles.get(symbol, {})
    first_live = min(live) if live else None
    if granularity >= 3600:
        history: list[Candle] = state.feed.history(symbol)
        for candle in history:
            if first_live is None or candle.start_s + 3600 <= first_live:
                add(candle.start_s, candle.open, candle.close, candle.high, candle.low,
                    candle.volume, candle.turnover)
    for minute in sorted(live):
        o, c, h, lo, v, t = live[minute]
        add(minute, o, c, h, lo, v, t)
    out = []
    for start in sorted(rows, reverse=True):
        if start < start_s or (end_s and start >= end_s):
            continue
        o, c, h, lo, v, t = rows[start]
        out.append([str(start), fmt(o), fmt(c), fmt(h), fmt(lo), fmt(v), fmt(t)])
    return out[:1500]


async def h_candles(ctx: Ctx) -> Any:
    symbol = ctx.symbol()
    assert symbol is not None
    kind = ctx.q("type", required=True)
    assert kind is not None
    granularity = CANDLE_TYPES.get(kind)
    if granularity is None:
        raise ApiFailureError(errors.bad_param("type is invalid"))
    start = int_param(ctx.q("startAt"), "startAt", 0)
    end = int_param(ctx.q("endAt"), "endAt", 0)
    return candles(ctx.state, symbol, granularity, start, end)


async def h_empty_list(ctx: Ctx) -> Any:
    return []


async def h_margin_symbols(ctx: Ctx) -> Any:
    return {"timestamp": ctx.state.now_ms(), "items": []}


async def h_account_mode(ctx: Ctx) -> Any:
    return {"selfAccountMode": "CLASSIC", "unifiedSubAccount": [], "classicSubAccount": []}


async def h_trade_fees(ctx: Ctx) -> Any:
    names = (ctx.q("symbols", required=True) or "").split(",")
    if not names or len(names) > 10 or any(n not in ctx.state.symbols for n in names):
        raise ApiFailureError(errors.symbol_not_exists())
    cfg = ctx.state.config
    return [{"symbol": n, "takerFeeRate": fmt(cfg.taker_fee_rate),
             "makerFeeRate": fmt(cfg.maker_fee_rate)} for n in names]


async def h_base_fee(ctx: Ctx) -> Any:
    cfg = ctx.state.config
    return {"takerFeeRate": fmt(cfg.taker_fee_rate), "makerFeeRate": fmt(cfg.maker_fee_rate)}


async def h_hf_opened(ctx: Ctx) -> Any:
    return True


# ---- handlers: account ------------------------------------------------------------------------


async def h_api_key(ctx: Ctx) -> Any:
    key = ctx.key
    assert key is not None

    def mask(ip: str) -> str:
        parts = ip.split(".")
        return f"{parts[0]}.**.{parts[-1]}" if len(parts) == 4 else ip

    version = ctx.request.headers.get("KC-API-KEY-VERSION", "1")
    return {
        "remark": key.remark, "apiKey": key.api_key,
        "apiVersion": int(version) if version.isdigit() else 1,
        "permission": ",".join(key.permissions),
        "ipWhitelist": ",".join(mask(ip) for ip in key.ip_whitelist),
        "createdAt": key.created_at_ms, "uid": ctx.state.config.uid, "isMaster": True,
    }


async def h_accounts(ctx: Ctx) -> Any:
    kind = ctx.q("type")
    currency = ctx.q("currency")
    if kind not in (None, "trade", "trade_hf"):
        return []
    acct = ctx.state.engine.account
    rows = []
    for cur in sorted(set(acct.totals) | set(acct.holds)):
        if currency is not None and cur != currency:
            continue
        rows.append({
            "id": account_id(cur), "currency": cur, "type": kind or "trade",
            "balance": fmt(acct.total(cur)), "available": fmt(acct.available(cur)),
            "holds": fmt(acct.held(cur)),
        })
    return rows


async def h_account(ctx: Ctx) -> Any:
    acct = ctx.state.engine.account
    for cur in acct.totals:
        if account_id(cur) == ctx.match["accountId"]:
            return {"currency": cur, "balance": fmt(acct.total(cur)),
                    "available": fmt(acct.available(cur)), "holds": fmt(acct.held(cur))}
    raise ApiFailureError(errors.bad_param("account not exist"))


# ---- handlers: orders -------------------------------------------------------------------------


def check_window(ctx: Ctx) -> None:
    window = ctx.body.get("allowMaxTimeWindow")
    if window is None:
        return
    stamp = ctx.body.get("clientTimestamp")
    if stamp is None:
        raise ApiFailureError(
            errors.bad_param("clientTimestamp is required with allowMaxTimeWindow")
        )
    if int_param(stamp, "clientTimestamp", 0) + int_param(window, "allowMaxTimeWindow", 0) < ctx.state.now_ms():  # noqa: E501
        raise ApiFailureError(errors.client_timestamp_expired())


async def _place(ctx: Ctx, *, hf: bool) -> Order:
    if hf:
        check_window(ctx)
    req = order_request(ctx.body, hf=hf)
    result, events = ctx.state.engine.place(req, ctx.state.now_ms())
    if isinstance(result, ApiError):
        raise ApiFailureError(result)
    ctx.state.publish(events)
    await _maybe_time_out(ctx)
    return result


async def _maybe_time_out(ctx: Ctx) -> None:
    """Fault `timeout_after_accept`: the order is in, the reply never comes."""
    if ctx.state.config.faults.timeout_after_accept:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ctx.state.hold_replies.append(waiter)
        await waiter
        raise ApiFailureError(ApiError("500000", "Gateway Timeout", 504))


async def h_hf_place(ctx: Ctx) -> Any:
    order = await _place(ctx, hf=True)
    return {"orderId": order.id, "clientOid": order.req.client_oid}


def sync_row(order: Order) -> dict[str, Any]:
    """The reply of the `sync` placements: the order as the matching engine left it."""
    return {
        "orderId": order.id, "clientOid": order.req.client_oid, "orderTime": order.created_at,
        "originSize": fmt(order.size), "dealSize": fmt(order.deal_size),
        "remainSize": fmt(max(order.remaining, Decimal(0))),
        "canceledSize": fmt(order.canceled_size), "status": "open" if order.active else "done",
        "matchTime": order.updated_at,
    }


async def h_hf_place_sync(ctx: Ctx) -> Any:
    return sync_row(await _place(ctx, hf=True))


async def h_hf_alter(ctx: Ctx) -> Any:
    symbol = ctx.body.get("symbol")
    if symbol not in ctx.state.symbols:
        raise ApiFailureError(errors.symbol_not_exists())
    engine, now = ctx.state.engine, ctx.state.now_ms()
    order_id = ctx.body.get("orderId")
    if not order_id and ctx.body.get("clientOid"):
        found = engine.get_by_client_oid(str(ctx.body["clientOid"]), now)
        order_id = found.id if found is not None else None
    old = engine.orders.get(str(order_id)) if order_id else None
    if old is None or old.symbol != symbol:
        raise ApiFailureError(errors.order_not_cancellable())
    result, events = engine.alter(old.id, dec_param(ctx.body.get("newPrice"), "newPrice"),
                                  dec_param(ctx.body.get("newSize"), "newSize"), now)
    ctx.state.publish(events)
    if isinstance(result, ApiError):
        raise ApiFailureError(result)
    return {"newOrderId": result.id, "clientOid": result.req.client_oid}


async def place_many(ctx: Ctx, rows: Any, *, hf: bool) -> list[Order | ApiError]:
    if not isinstance(rows, list) or not rows or len(rows) > 5:
        raise ApiFailureError(errors.bad_param("orderList must hold 1 to 5 orders"))
    out: list[Order | ApiError] = []
    for row in rows:
        if not isinstance(row, dict):
            raise ApiFailureError(errors.bad_param("orderList items must be objects"))
        try:
            req = order_request(row, hf=hf)
        except ApiFailureError as failure:
            out.append(failure.error)
            continue
        result, events = ctx.state.engine.place(req, ctx.state.now_ms())
        ctx.state.publish(events)
        out.append(result)
    return out


async def h_hf_multi(ctx: Ctx) -> Any:
    check_window(ctx)
    results = await place_many(ctx, ctx.body.get("orderList"), hf=True)
    return [
        {"orderId": r.id, "clientOid": r.req.client_oid, "success": True}
        if isinstance(r, Order) else {"success": False, "failMsg": r.msg}
        for r in results
    ]


async def h_legacy_multi(ctx: Ctx) -> Any:
    symbol = ctx.body.get("symbol")
    raw = ctx.body.get("orderList")
    if not isinstance(raw, list):
        raise ApiFailureError(errors.bad_param("orderList must hold 1 to 5 orders"))
    rows: list[Any] = [dict(r, symbol=symbol) if isinstance(r, dict) else r for r in raw]
    results = await place_many(ctx, rows, hf=False)
    data = []
    for row, r in zip(rows, results, strict=True):
        item = {k: row.get(k) for k in ("symbol", "side", "type", "price", "size", "funds",
                                         "clientOid", "stp", "remark")}
        if isinstance(r, Order):
            item |= {"id": r.id, "status": "success", "failMsg": None}
        else:
            item |= {"id": None, "status": "fail", "failMsg": r.msg}
        data.append(item)
    return {"data": data}


async def h_hf_test(ctx: Ctx) -> Any:
    check_window(ctx)
    req = order_request(ctx.body, hf=True)
    error = ctx.state.engine.validate(req, ctx.state.now_ms())
    if error is not None:
        raise ApiFailureError(error)
    return {"orderId": "0" * 24, "clientOid": req.client_oid}


async def h_legacy_place(ctx: Ctx) -> Any:
    order = await _place(ctx, hf=False)
    return {"orderId": order.id}


def _find(ctx: Ctx, *, by_client: bool, hf: bool) -> Order:
    state = ctx.state
    now = state.now_ms()
    if hf:
        ctx.symbol(required=True)
    if by_client:
        # Done orders too, within their retention (as by id).
        order = state.engine.get_by_client_oid(ctx.match["clientOid"], now)
    else:
        order = state.engine.get(ctx.match["orderId"], now)
    if order is None or (hf and order.symbol != ctx.q("symbol")):
        raise ApiFailureError(errors.order_not_found() if hf else errors.ApiError(
            "400100", "order not exist.", 200))
    return order


async def h_hf_get(ctx: Ctx) -> Any:
    return hf_order(_find(ctx, by_client=False, hf=True), ctx.state)


async def h_hf_get_client(ctx: Ctx) -> Any:
    return hf_order(_find(ctx, by_client=True, hf=True), ctx.state)


async def h_legacy_get(ctx: Ctx) -> Any:
    return legacy_order(_find(ctx, by_client=False, hf=False), ctx.state)


async def h_legacy_get_client(ctx: Ctx) -> Any:
    return legacy_order(_find(ctx, by_client=True, hf=False), ctx.state)


def _cancel(ctx: Ctx, order_id: str | None) -> Order:
    state = ctx.state
    if order_id is None:
        raise ApiFailureError(errors.order_not_cancellable())
    result, events = state.engine.cancel(order_id, state.now_ms())
    if isinstance(result, ApiError):
        raise ApiFailureError(result)
    state.publish(events)
    return result


def _id_for_client(ctx: Ctx) -> str | None:
    order = ctx.state.engine.get_by_client_oid(ctx.match["clientOid"], ctx.state.now_ms())
    return None if order is None else order.id


async def h_hf_cancel(ctx: Ctx) -> Any:
    symbol = ctx.symbol()
    order = ctx.state.engine.orders.get(ctx.match["orderId"])
    if order is not None and order.symbol != symbol:
        raise ApiFailureError(errors.order_not_cancellable())
    return {"orderId": _cancel(ctx, ctx.match["orderId"]).id}


async def h_hf_cancel_client(ctx: Ctx) -> Any:
    ctx.symbol()
    order = _cancel(ctx, _id_for_client(ctx))
    return {"clientOid": order.req.client_oid}


async def h_hf_cancel_sync(ctx: Ctx) -> Any:
    ctx.symbol()
    order_id = ctx.match.get("orderId") or _id_for_client(ctx)
    order = _cancel(ctx, order_id)
    key = "orderId" if "orderId" in ctx.match else "clientOid"
    return {
        key: order.id if key == "orderId" else order.req.client_oid,
        "originSize": fmt(order.size), "dealSize": fmt(order.deal_size),
        "remainSize": "0", "canceledSize": fmt(order.canceled_size), "status": "done",
    }


async def h_hf_cancel_partial(ctx: Ctx) -> Any:
    symbol = ctx.symbol()
    size = dec_param(ctx.q("cancelSize", required=True), "cancelSize")
    assert size is not None
    order = ctx.state.engine.orders.get(ctx.match["orderId"])
    if order is not None and order.symbol != symbol:
        raise ApiFailureError(errors.order_not_cancellable())
    result, events = ctx.state.engine.reduce(ctx.match["orderId"], size, ctx.state.now_ms())
    if isinstance(result, ApiError):
        raise ApiFailureError(result)
    ctx.state.publish(events)
    return {"orderId": result.id, "cancelSize": fmt(size)}


async def h_legacy_cancel(ctx: Ctx) -> Any:
    return {"cancelledOrderIds": [_cancel(ctx, ctx.match["orderId"]).id]}


async def h_legacy_cancel_client(ctx: Ctx) -> Any:
    order = _cancel(ctx, _id_for_client(ctx))
    return {"cancelledOrderId": order.id, "clientOid": order.req.client_oid,
            "cancelledOcoOrderIds": None}


async def h_hf_cancel_symbol(ctx: Ctx) -> Any:
    symbol = ctx.symbol()
    _ids, events = ctx.state.engine.cancel_all(ctx.state.now_ms(), symbol)
    ctx.state.publish(events)
    return "success"


async def h_hf_cancel_all(ctx: Ctx) -> Any:
    ids, events = ctx.state.engine.cancel_all(ctx.state.now_ms())
    ctx.state.publish(events)
    return {"succeedSymbols": sorted({ctx.state.engine.orders[i].symbol for i in ids}),
            "failedSymbols": []}


async def h_legacy_cancel_all(ctx: Ctx) -> Any:
    symbol = ctx.symbol(required=False)
    ids, events = ctx.state.engine.cancel_all(ctx.state.now_ms(), symbol)
    ctx.state.publish(events)
    return {"cancelledOrderIds": ids}


def _wanted(ctx: Ctx) -> Callable[[Order], bool]:
    """The request's `side`, `type`, `startAt` and `endAt` filters, read once."""
    side, kind = ctx.q("side"), ctx.q("type")
    start, end = int_param(ctx.q("startAt"), "startAt", 0), int_param(ctx.q("endAt"), "endAt", 0)
    return lambda o: ((side is None or o.side == side) and (kind is None or o.req.type == kind)
                      and o.created_at >= start and (not end or o.created_at <= end))


def _filtered(ctx: Ctx, orders: list[Order]) -> list[Order]:
    wanted = _wanted(ctx)
    return [o for o in orders if wanted(o)]


async def h_hf_active(ctx: Ctx) -> Any:
    symbol = ctx.symbol()
    orders = ctx.state.engine.list_orders(ctx.state.now_ms(), active=True, symbol=symbol)
    return [hf_order(o, ctx.state) for o in _filtered(ctx, orders)]


async def h_hf_active_page(ctx: Ctx) -> Any:
    symbol = ctx.symbol()
    orders = ctx.state.engine.list_orders(ctx.state.now_ms(), active=True, symbol=symbol)
    items = [hf_order(o, ctx.state) for o in _filtered(ctx, orders)]
    return page_of(items, ctx, "pageNum")


async def h_hf_active_symbols(ctx: Ctx) -> Any:
    orders = ctx.state.engine.list_orders(ctx.state.now_ms(), active=True)
    return {"symbols": sorted({o.symbol for o in orders})}


def _newest_done(ctx: Ctx, symbol: str | None, last_id: int, limit: int
                 ) -> list[tuple[int, Order]] | None:
    """One page of done orders, newest first by id, read from the newest end of the
    engine's orders (kept in the order they were placed, so ids grow): a page costs its
    length, not the whole history. None if the ids are not in order there."""
    engine = ctx.state.engine
    now = ctx.state.now_ms()
    wanted = _wanted(ctx)
    chosen: list[tuple[int, Order]] = []
    previous: int | None = None
    for order in reversed(engine.orders.values()):
        number = int(order.id[-16:], 16)
        if previous is not None and number >= previous:
            return None
        previous = number
        if (last_id and number >= last_id) or order.active or (
                symbol is not None and order.symbol != symbol):
            continue
        if not engine.retained(order, now) or not wanted(order):
            continue
        chosen.append((number, order))
        if len(chosen) == limit:
            break
    return chosen


async def h_hf_done(ctx: Ctx) -> Any:
    symbol = ctx.symbol()
    limit = min(max(int_param(ctx.q("limit"), "limit", 20), 1), 100)
    last_id = int_param(ctx.q("lastId"), "lastId", 0)
    chosen = _newest_done(ctx, symbol, last_id, limit)
    if chosen is None:
        # Newest first by the id the cursor is (ids grow with each order); not by
        # createdAt, which a skewed server clock can move backwards (pages would repeat).
        orders = _filtered(ctx, ctx.state.engine.list_orders(ctx.state.now_ms(), active=False,
                                                              symbol=symbol))
        numbered = sorted(((int(o.id[-16:], 16), o) for o in orders),
                          key=lambda pair: pair[0], reverse=True)
        if last_id:
            numbered = [(n, o) for n, o in numbered if n < last_id]
        chosen = numbered[:limit]
    return {"lastId": chosen[-1][0] if chosen else 0,
            "items": [hf_order(o, ctx.state) for _n, o in chosen]}


async def h_legacy_list(ctx: Ctx) -> Any:
    status = ctx.q("status") or "done"
    if status not in ("active", "done"):
        raise ApiFailureError(errors.bad_param("status must be active or done"))
    symbol = ctx.symbol(required=False)
    orders = ctx.state.engine.list_orders(ctx.state.now_ms(), active=status == "active",
                                          symbol=symbol)
    return page_of([legacy_order(o, ctx.state) for o in _filtered(ctx, orders)], ctx)


async def h_legacy_recent(ctx: Ctx) -> Any:
    now = ctx.state.now_ms()
    orders = [o for o in ctx.state.engine.list_orders(now, active=True)
              + ctx.state.engine.list_orders(now, active=False) if now - o.created_at < 86_400_000]
    return [legacy_order(o, ctx.state) for o in orders]


def _fills(ctx: Ctx, symbol_required: bool) -> list[Fill]:
    symbol = ctx.symbol(required=symbol_required)
    order_id, side = ctx.q("orderId"), ctx.q("side")
    start, end = int_param(ctx.q("startAt"), "startAt", 0), int_param(ctx.q("endAt"), "endAt", 0)
    now = ctx.state.now_ms()
    fills = [
        f for f in ctx.state.engine.fills
        if (symbol is None or f.symbol == symbol) and (order_id is None or f.order_id == order_id)
        and (side is None or f.side == side) and f.created_at >= start
        and (not end or f.created_at <= end) and now - f.created_at <= 7 * 86_400_000
    ]
    return list(reversed(fills))


async def h_hf_fills(ctx: Ctx) -> Any:
    fills = _fills(ctx, True)
    last_id = int_param(ctx.q("lastId"), "lastId", 0)
    if last_id:
        fills = [f for f in fills if f.seq < last_id]
    limit = min(max(int_param(ctx.q("limit"), "limit", 20), 1), 100)
    chosen = fills[:limit]
    return {"items": [fill_json(f, hf=True) for f in chosen],
            "lastId": chosen[-1].seq if chosen else 0}


async def h_legacy_fills(ctx: Ctx) -> Any:
    return page_of([fill_json(f, hf=False) for f in _fills(ctx, False)], ctx)


async def h_limit_fills(ctx: Ctx) -> Any:
    now = ctx.state.now_ms()
    return [fill_json(f, hf=False) for f in _fills(ctx, False) if now - f.created_at < 86_400_000]


# ---- stop orders ------------------------------------------------------------------------------


async def h_stop_place(ctx: Ctx) -> Any:
    req = order_request(ctx.body, hf=False, stop=True)
    result, events = ctx.state.engine.place(req, ctx.state.now_ms())
    if isinstance(result, ApiError):
        raise ApiFailureError(result)
    ctx.state.publish(events)
    return {"orderId": result.id, "clientOid": req.client_oid}


async def h_stop_list(ctx: Ctx) -> Any:
    symbol = ctx.symbol(required=False)
    stops = ctx.state.engine.stops(ctx.state.now_ms(), symbol)
    return page_of([stop_order(s, ctx.state) for s in stops], ctx)


async def h_stop_get(ctx: Ctx) -> Any:
    stop = ctx.state.engine.stop_orders.get(ctx.match["orderId"])
    if stop is None:
        raise ApiFailureError(errors.order_not_found())
    return stop_order(stop, ctx.state)


def _stop_by_client(ctx: Ctx) -> Order | None:
    cid = ctx.q("clientOid", required=True)
    return next((s for s in ctx.state.engine.stop_orders.values() if s.req.client_oid == cid),
                None)


async def h_stop_get_client(ctx: Ctx) -> Any:
    stop = _stop_by_client(ctx)
    return [] if stop is None else [stop_order(stop, ctx.state)]


async def h_stop_cancel(ctx: Ctx) -> Any:
    return {"cancelledOrderIds": [_cancel(ctx, ctx.match["orderId"]).id]}


async def h_stop_cancel_batch(ctx: Ctx) -> Any:
    """`DELETE /api/v1/stop-order/cancel?symbol=&tradeType=&orderIds=a,b`: every untriggered
    stop order of the symbol (all symbols without one), only the listed ids if given."""
    symbol = ctx.symbol(required=False)
    trade_type = ctx.q("tradeType")
    if trade_type not in (None, "TRADE"):
        return {"cancelledOrderIds": []}  # margin stop orders are not emulated: none exist
    wanted = {i for i in (ctx.q("orderIds") or "").split(",") if i}
    state = ctx.state
    cancelled: list[str] = []
    for stop in state.engine.stops(state.now_ms(), symbol):
        if wanted and stop.id not in wanted:
            continue
        result, events = state.engine.cancel(stop.id, state.now_ms())
        if isinstance(result, ApiError):
            continue
        state.publish(events)
        cancelled.append(stop.id)
    return {"cancelledOrderIds": cancelled}


async def h_stop_cancel_client(ctx: Ctx) -> Any:
    stop = _stop_by_client(ctx)
    order = _cancel(ctx, None if stop is None else stop.id)
    return {"cancelledOrderId": order.id, "clientOid": order.req.client_oid}


# ---- bullets ----------------------------------------------------------------------------------


def _bullet(ctx: Ctx, private: bool) -> dict[str, Any]:
    token = ws.issue_token(ctx.state, ctx.key if private else None)
    host = ctx.request.host
    cfg = ctx.state.config
    return {
        "token": token,
        "instanceServers": [{
            "endpoint": f"ws://{host}/endpoint", "encrypt": False, "protocol": "websocket",
            "pingInterval": cfg.ping_interval_ms, "pingTimeout": cfg.ping_timeout_ms,
        }],
    }


async def h_bullet_public(ctx: Ctx) -> Any:
    return _bullet(ctx, False)


async def h_bullet_private(ctx: Ctx) -> Any:
    return _bullet(ctx, True)


# ---- the route table --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    weight: int
    pool: str  # public | spot | management
    signed: bool
    permission: str = "General"


def routes() -> list[Route]:
    pub, spot, mgmt = "public", "spot", "management"
    r = Route
    return [
        r("GET", "/api/v1/timestamp", h_timestamp, 3, pub, False),
        r("GET", "/api/v1/status", h_status, 3, pub, False),
        r("GET", "/api/v2/symbols", h_symbols, 4, pub, False),
        r("GET", "/api/v2/symbols/{symbol}", h_symbol, 4, pub, False),
        r("GET", "/api/v1/market/allTickers", h_all_tickers, 15, pub, False),
        r("GET", "/api/v1/market/stats", h_stats, 15, pub, False),
        r("GET", "/api/v1/market/orderbook/level1", h_level1, 2, pub, False),
        r("GET", "/api/v1/market/orderbook/level2_20", h_level2_20, 2, pub, False),
        r("GET", "/api/v1/market/orderbook/level2_100", h_level2_100, 4, pub, False),
        r("GET", "/api/v3/market/orderbook/level2", h_level2_full, 3, spot, True),
        r("GET", "/api/v1/market/histories", h_histories, 3, pub, False),
        r("GET", "/api/v1/market/candles", h_candles, 3, pub, False),
        r("GET", "/api/v1/contracts/active", h_empty_list, 3, pub, False),
        r("GET", "/api/v3/margin/symbols", h_margin_symbols, 3, spot, True),
        r("GET", "/api/v1/isolated/symbols", h_empty_list, 3, spot, True),
        r("GET", "/api/ua/v1/account/mode", h_account_mode, 30, mgmt, True),
        r("GET", "/api/v1/hf/accounts/opened", h_hf_opened, 2, mgmt, True),
        r("GET", "/api/v1/user/api-key", h_api_key, 20, mgmt, True),
        r("GET", "/api/v1/trade-fees", h_trade_fees, 3, spot, True),
        r("GET", "/api/v1/base-fee", h_base_fee, 3, spot, True),
        r("GET", "/api/v1/accounts", h_accounts, 5, mgmt, True),
        r("GET", "/api/v1/accounts/{accountId}", h_account, 5, mgmt, True),
        r("POST", "/api/v1/bullet-public", h_bullet_public, 10, pub, False),
        r("POST", "/api/v1/bullet-private", h_bullet_private, 10, spot, True),
        # HF orders: fixed paths before the ones with an id in them.
        r("POST", "/api/v1/hf/orders", h_hf_place, 1, spot, True, "Spot"),
        r("POST", "/api/v1/hf/orders/sync", h_hf_place_sync, 1, spot, True, "Spot"),
        r("POST", "/api/v1/hf/orders/test", h_hf_test, 1, spot, True, "Spot"),
        r("POST", "/api/v1/hf/orders/multi", h_hf_multi, 1, spot, True, "Spot"),
        r("POST", "/api/v1/hf/orders/alter", h_hf_alter, 1, spot, True, "Spot"),
        r("GET", "/api/v1/hf/orders/active", h_hf_active, 2, spot, True),
        r("GET", "/api/v1/hf/orders/active/page", h_hf_active_page, 2, spot, True),
        r("GET", "/api/v1/hf/orders/active/symbols", h_hf_active_symbols, 2, spot, True),
        r("GET", "/api/v1/hf/orders/done", h_hf_done, 2, spot, True),
        r("DELETE", "/api/v1/hf/orders/cancelAll", h_hf_cancel_all, 30, spot, True, "Spot"),
        r("DELETE", "/api/v1/hf/orders", h_hf_cancel_symbol, 2, spot, True, "Spot"),
        r("GET", "/api/v1/hf/orders/client-order/{clientOid}", h_hf_get_client, 2, spot, True),
        r("DELETE", "/api/v1/hf/orders/client-order/{clientOid}", h_hf_cancel_client, 1, spot,
          True, "Spot"),
        r("DELETE", "/api/v1/hf/orders/sync/client-order/{clientOid}", h_hf_cancel_sync, 1, spot,
          True, "Spot"),
        r("DELETE", "/api/v1/hf/orders/sync/{orderId}", h_hf_cancel_sync, 1, spot, True, "Spot"),
        r("DELETE", "/api/v1/hf/orders/cancel/{orderId}", h_hf_cancel_partial, 2, spot, True,
          "Spot"),
        r("GET", "/api/v1/hf/orders/{orderId}", h_hf_get, 2, spot, True),
        r("DELETE", "/api/v1/hf/orders/{orderId}", h_hf_cancel, 1, spot, True, "Spot"),
        r("GET", "/api/v1/hf/fills", h_hf_fills, 2, spot, True),
        # Legacy orders.
        r("POST", "/api/v1/orders", h_legacy_place, 2, spot, True, "Spot"),
        r("POST", "/api/v1/orders/multi", h_legacy_multi, 3, spot, True, "Spot"),
        r("GET", "/api/v1/orders", h_legacy_list, 2, spot, True),
        r("DELETE", "/api/v1/orders", h_legacy_cancel_all, 20, spot, True, "Spot"),
        r("GET", "/api/v1/orders/{orderId}", h_legacy_get, 2, spot, True),
        r("DELETE", "/api/v1/orders/{orderId}", h_legacy_cancel, 3, spot, True, "Spot"),
        r("GET", "/api/v1/order/client-order/{clientOid}", h_legacy_get_client, 3, spot, True),
        r("DELETE", "/api/v1/order/client-order/{clientOid}", h_legacy_cancel_client, 3, spot,
          True, "Spot"),
        r("GET", "/api/v1/limit/orders", h_legacy_recent, 3, spot, True),
        r("GET", "/api/v1/fills", h_legacy_fills, 10, spot, True),
        r("GET", "/api/v1/limit/fills", h_limit_fills, 20, spot, True),
        # Stop orders.
        r("POST", "/api/v1/stop-order", h_stop_place, 1, spot, True, "Spot"),
        r("GET", "/api/v1/stop-order", h_stop_list, 8, spot, True),
        r("GET", "/api/v1/stop-order/queryOrderByClientOid", h_stop_get_client, 3, spot, True),
        r("DELETE", "/api/v1/stop-order/cancelOrderByClientOid", h_stop_cancel_client, 5, spot,
          True, "Spot"),
        r("DELETE", "/api/v1/stop-order/cancel", h_stop_cancel_batch, 3, spot, True, "Spot"),
        r("GET", "/api/v1/stop-order/{orderId}", h_stop_get, 3, spot, True),
        r("DELETE", "/api/v1/stop-order/{orderId}", h_stop_cancel, 3, spot, True, "Spot"),
    ]
