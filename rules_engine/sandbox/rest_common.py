"""What every REST handler of the sandbox shares: the request as the handlers see it (`Ctx`),
the route record, parameter parsing, an order request read from a body, KuCoin's JSON shapes of
orders and fills, and one page of a paged list (`page_of`).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from rules_engine.sandbox import errors
from rules_engine.sandbox.config import KeyConfig
from rules_engine.sandbox.engine import Fill, Order, OrderRequest, fmt
from rules_engine.sandbox.errors import ApiFailureError
from rules_engine.sandbox.state import SandboxState

__all__ = ["Ctx", "Handler", "Route", "bool_param", "dec_param", "fill_json", "hf_order",
           "int_param", "legacy_order", "ok_body", "order_request", "page_of", "stop_order"]

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



def page_of(items: list[Any], ctx: Ctx, page_key: str = "currentPage",
            min_size: int = 1) -> dict[str, Any]:
    """One page of `items` in KuCoin's paged shape, as the request's `page_key` (`currentPage`
    or `pageNum`) and `pageSize` ask: a page size over 500 is refused, one under `min_size`
    taken as `min_size`."""
    page = max(int_param(ctx.q(page_key), page_key, 1), 1)
    size = int_param(ctx.q("pageSize"), "pageSize", 50)
    if size > 500:
        raise ApiFailureError(errors.bad_param("pageSize should not greater than 500"))
    size = max(size, min_size)
    total = len(items)
    return {
        "currentPage": page, "pageSize": size, "totalNum": total,
        "totalPage": (total + size - 1) // size, "items": items[(page - 1) * size : page * size],
    }


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    weight: int
    pool: str  # public | spot | management
    signed: bool
    permission: str = "General"
