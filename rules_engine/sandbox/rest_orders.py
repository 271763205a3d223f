"""Orders, HF and old API: place (one, a batch, a test), alter, get, cancel, the active and
done lists, and fills (routed by `rest.routes()`); and this module's own `routes()`, added for
fidelity and registered before `rest.routes()`: the dead-man switch (DCP), HF batch placement
with the sync reply, and the old API's test order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from rules_engine.sandbox import errors
from rules_engine.sandbox.deadman import MAX_SYMBOLS, MAX_TIMEOUT_S, MIN_TIMEOUT_S, Deadman
from rules_engine.sandbox.engine import Fill, Order, fmt
from rules_engine.sandbox.errors import ApiError, ApiFailureError
from rules_engine.sandbox.rest_common import (
    Ctx,
    Route,
    dec_param,
    fill_json,
    hf_order,
    int_param,
    legacy_order,
    order_request,
    page_of,
)

__all__ = ["cancel_order", "check_window", "place_many", "routes", "sync_row"]


# ---- HF and old-API orders and fills (routed by `rest.routes()`) -------------------------


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


def cancel_order(ctx: Ctx, order_id: str | None) -> Order:
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
    return {"orderId": cancel_order(ctx, ctx.match["orderId"]).id}


async def h_hf_cancel_client(ctx: Ctx) -> Any:
    ctx.symbol()
    order = cancel_order(ctx, _id_for_client(ctx))
    return {"clientOid": order.req.client_oid}


async def h_hf_cancel_sync(ctx: Ctx) -> Any:
    ctx.symbol()
    order_id = ctx.match.get("orderId") or _id_for_client(ctx)
    order = cancel_order(ctx, order_id)
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
    return {"cancelledOrderIds": [cancel_order(ctx, ctx.match["orderId"]).id]}


async def h_legacy_cancel_client(ctx: Ctx) -> Any:
    order = cancel_order(ctx, _id_for_client(ctx))
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


# ---- added for fidelity (this module's routes) --------------------------------------------


async def h_hf_multi_sync(ctx: Ctx) -> Any:
    check_window(ctx)
    results = await place_many(ctx, ctx.body.get("orderList"), hf=True)
    return [
        sync_row(r) | {"success": True} if isinstance(r, Order)
        else {"success": False, "failMsg": r.msg}
        for r in results
    ]


async def h_legacy_test(ctx: Ctx) -> Any:
    """`POST /api/v1/orders/test`: validated like a real order, nothing placed."""
    req = order_request(ctx.body, hf=False)
    error = ctx.state.engine.validate(req, ctx.state.now_ms())
    if error is not None:
        raise ApiFailureError(error)
    return {"orderId": "0" * 24}


async def h_dcp_set(ctx: Ctx) -> Any:
    state = ctx.state
    timeout = int_param(ctx.body.get("timeout"), "timeout", 0)
    if timeout != -1 and not MIN_TIMEOUT_S <= timeout <= MAX_TIMEOUT_S:
        raise ApiFailureError(errors.bad_param(
            f"timeout must be -1 (unset) or {MIN_TIMEOUT_S} to {MAX_TIMEOUT_S} seconds"))
    raw = ctx.body.get("symbols") or ""
    if not isinstance(raw, str):
        raise ApiFailureError(errors.bad_param("symbols must be a comma-separated string"))
    symbols = tuple(s.strip() for s in raw.split(",") if s.strip())
    if len(symbols) > MAX_SYMBOLS:
        raise ApiFailureError(errors.bad_param(f"at most {MAX_SYMBOLS} symbols"))
    if any(s not in state.symbols for s in symbols):
        raise ApiFailureError(errors.symbol_not_exists())
    now = state.now_ms()
    if timeout == -1:
        state.set_deadman(None)
        return None
    armed = Deadman(timeout, symbols, now + timeout * 1000)
    state.set_deadman(armed)
    return {"currentTime": now // 1000, "triggerTime": armed.trigger_ms // 1000}


async def h_dcp_query(ctx: Ctx) -> Any:
    armed = ctx.state.deadman
    if armed is None:
        return None  # not set
    return {"timeout": armed.timeout_s, "symbols": ",".join(armed.symbols),
            "currentTime": ctx.state.now_ms() // 1000, "triggerTime": armed.trigger_ms // 1000}


def routes() -> list[Route]:
    r = Route
    return [
        r("POST", "/api/v1/hf/orders/multi/sync", h_hf_multi_sync, 1, "spot", True, "Spot"),
        r("POST", "/api/v1/orders/test", h_legacy_test, 2, "spot", True, "Spot"),
        r("POST", "/api/v1/hf/orders/dead-cancel-all", h_dcp_set, 2, "spot", True, "Spot"),
        r("GET", "/api/v1/hf/orders/dead-cancel-all/query", h_dcp_query, 2, "spot", True),
    ]
