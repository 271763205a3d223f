"""Stop orders of the old API (`/api/v1/stop-order`): place, list, get by id or clientOid, and
cancel one, by clientOid or in batches. The engine side lives in `stop_orders.py`."""

from __future__ import annotations

from typing import Any

from rules_engine.sandbox import errors
from rules_engine.sandbox.engine import Order
from rules_engine.sandbox.errors import ApiError, ApiFailureError
from rules_engine.sandbox.rest_common import Ctx, order_request, page_of, stop_order
from rules_engine.sandbox.rest_orders import cancel_order

__all__ = ["h_stop_cancel", "h_stop_cancel_batch", "h_stop_cancel_client", "h_stop_get",
           "h_stop_get_client", "h_stop_list", "h_stop_place"]


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
    return {"cancelledOrderIds": [cancel_order(ctx, ctx.match["orderId"]).id]}


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
    order = cancel_order(ctx, None if stop is None else stop.id)
    return {"cancelledOrderId": order.id, "clientOid": order.req.client_oid}
