"""Order routes added for fidelity: the dead-man switch (DCP), HF batch placement with the
sync reply, and the old API's test order. Registered before `rest.routes()`."""

from __future__ import annotations

from typing import Any

from rules_engine.sandbox import errors
from rules_engine.sandbox.deadman import MAX_SYMBOLS, MAX_TIMEOUT_S, MIN_TIMEOUT_S, Deadman
from rules_engine.sandbox.engine import Order
from rules_engine.sandbox.errors import ApiFailureError
from rules_engine.sandbox.rest import (
    Ctx,
    Route,
    check_window,
    int_param,
    order_request,
    place_many,
    sync_row,
)

__all__ = ["routes"]


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
