"""KuCoin's OCO routes (`/api/v3/oco/...`): place, query by order id and by clientOid, the
detail with both legs, the paged list, and cancel by id, by clientOid and in batches. The
engine side lives in `oco.py`."""

from __future__ import annotations

from typing import Any

from rules_engine.sandbox import errors, oco
from rules_engine.sandbox.engine import Oco, fmt
from rules_engine.sandbox.errors import ApiError, ApiFailureError
from rules_engine.sandbox.rest_common import Ctx, Route, dec_param, int_param, page_of

__all__ = ["routes"]

_REQUIRED = ("symbol", "side", "price", "size", "stopPrice", "limitPrice", "clientOid")


def _row(ctx: Ctx, item: Oco) -> dict[str, Any]:
    return {"orderId": item.id, "symbol": item.symbol, "clientOid": item.client_oid,
            "orderTime": item.created_at, "status": oco.status(ctx.state.engine, item)}


def _detail(ctx: Ctx, item: Oco) -> dict[str, Any]:
    engine = ctx.state.engine
    legs = [(item.limit_id, item.price, item.price),
            (item.stop_id, item.limit_price, item.stop_price)]
    return _row(ctx, item) | {"orders": [
        {"id": leg, "symbol": item.symbol, "side": item.side, "price": fmt(price),
         "stopPrice": fmt(stop), "size": fmt(item.size),
         "status": oco.leg_status(engine, item, leg)}
        for leg, price, stop in legs
    ]}


def _by_id(ctx: Ctx) -> Oco:
    found = ctx.state.engine.ocos.get(ctx.match["orderId"])
    if found is None:
        raise ApiFailureError(errors.order_not_found())
    return found


def _by_client(ctx: Ctx) -> Oco:
    found = oco.find_by_client_oid(ctx.state.engine, ctx.match["clientOid"])
    if found is None:
        raise ApiFailureError(errors.order_not_found())
    return found


async def h_place(ctx: Ctx) -> Any:
    body = ctx.body
    for name in _REQUIRED:
        if body.get(name) in (None, ""):
            raise ApiFailureError(errors.bad_param(f"{name} is required"))
    trade_type = body.get("tradeType") or "TRADE"
    if trade_type != "TRADE":
        raise ApiFailureError(errors.bad_param("tradeType must be TRADE"))
    for name in ("symbol", "side", "clientOid"):
        if not isinstance(body[name], str):
            raise ApiFailureError(errors.bad_param(f"{name} must be a string"))
    remark = body.get("remark") or ""
    if not isinstance(remark, str):
        raise ApiFailureError(errors.bad_param("remark must be a string"))
    numbers = {name: dec_param(body[name], name)
               for name in ("price", "size", "stopPrice", "limitPrice")}
    for name, value in numbers.items():
        if value is None or value <= 0:
            raise ApiFailureError(errors.bad_param(f"{name} must be above 0"))
    price, size, stop, limit = (numbers["price"], numbers["size"], numbers["stopPrice"],
                                numbers["limitPrice"])
    assert price is not None and size is not None and stop is not None and limit is not None
    state = ctx.state
    result, events = oco.place(
        state.engine, symbol=body["symbol"], side=body["side"], price=price, stop_price=stop,
        limit_price=limit, size=size, client_oid=body["clientOid"], remark=remark,
        now_ms=state.now_ms())
    if isinstance(result, ApiError):
        raise ApiFailureError(result)
    state.publish(events)
    return {"orderId": result.id}


async def h_get(ctx: Ctx) -> Any:
    return _row(ctx, _by_id(ctx))


async def h_get_client(ctx: Ctx) -> Any:
    return _row(ctx, _by_client(ctx))


async def h_detail(ctx: Ctx) -> Any:
    return _detail(ctx, _by_id(ctx))


async def h_list(ctx: Ctx) -> Any:
    symbol = ctx.symbol(required=False)
    start = int_param(ctx.q("startAt"), "startAt", 0)
    end = int_param(ctx.q("endAt"), "endAt", 0)
    wanted = {i for i in (ctx.q("orderIds") or "").split(",") if i}
    if len(wanted) > 500:
        raise ApiFailureError(errors.bad_param("orderIds holds at most 500 ids"))
    items = sorted(
        (o for o in ctx.state.engine.ocos.values()
         if (symbol is None or o.symbol == symbol) and (not wanted or o.id in wanted)
         and o.created_at >= start and (not end or o.created_at <= end)),
        key=lambda o: (o.created_at, o.id), reverse=True)
    page = page_of(items, ctx, min_size=10)
    page["items"] = [_row(ctx, o) for o in page["items"]]
    return page


def _cancel(ctx: Ctx, item: Oco | None) -> list[str]:
    if item is None:
        raise ApiFailureError(errors.order_not_cancellable())
    state = ctx.state
    result, events = oco.cancel(state.engine, item, state.now_ms())
    if isinstance(result, ApiError):
        raise ApiFailureError(result)
    state.publish(events)
    return result


async def h_cancel(ctx: Ctx) -> Any:
    return {"cancelledOrderIds": _cancel(ctx, ctx.state.engine.ocos.get(ctx.match["orderId"]))}


async def h_cancel_client(ctx: Ctx) -> Any:
    found = oco.find_by_client_oid(ctx.state.engine, ctx.match["clientOid"])
    return {"cancelledOrderIds": _cancel(ctx, found)}


async def h_cancel_batch(ctx: Ctx) -> Any:
    """Every OCO of the symbol (all symbols without one) still live, only the listed ids if
    given; ids that are unknown or already over are skipped."""
    symbol = ctx.symbol(required=False)
    wanted = {i for i in (ctx.q("orderIds") or "").split(",") if i}
    engine = ctx.state.engine
    cancelled: list[str] = []
    for item in sorted(engine.ocos.values(), key=lambda o: (o.created_at, o.id)):
        if (symbol is not None and item.symbol != symbol) or (wanted and item.id not in wanted):
            continue
        if not _live(ctx, item):
            continue
        cancelled += _cancel(ctx, item)
    return {"cancelledOrderIds": cancelled}


def _live(ctx: Ctx, item: Oco) -> bool:
    engine = ctx.state.engine
    return any(o is not None and o.active for o in (
        engine.orders.get(item.limit_id), engine.orders.get(item.stop_id),
        engine.stop_orders.get(item.stop_id)))


def routes() -> list[Route]:
    r = Route
    return [
        r("POST", "/api/v3/oco/order", h_place, 2, "spot", True, "Spot"),
        r("GET", "/api/v3/oco/order/details/{orderId}", h_detail, 2, "spot", True),
        r("GET", "/api/v3/oco/order/{orderId}", h_get, 2, "spot", True),
        r("DELETE", "/api/v3/oco/order/{orderId}", h_cancel, 3, "spot", True, "Spot"),
        r("GET", "/api/v3/oco/client-order/{clientOid}", h_get_client, 2, "spot", True),
        r("DELETE", "/api/v3/oco/client-order/{clientOid}", h_cancel_client, 3, "spot", True,
          "Spot"),
        r("GET", "/api/v3/oco/orders", h_list, 2, "spot", True),
        r("DELETE", "/api/v3/oco/orders", h_cancel_batch, 3, "spot", True, "Spot"),
    ]
