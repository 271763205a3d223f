"""Whether the engine takes an order request: KuCoin's checks of its fields against the
symbol's increments and limits, the open-order cap, and the clientOid still in use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rules_engine.sandbox import errors
from rules_engine.sandbox.engine_types import CLIENT_OID, OrderRequest, multiple_of
from rules_engine.sandbox.errors import ApiError

if TYPE_CHECKING:
    from rules_engine.sandbox.engine import Engine

__all__ = ["validate"]


def validate(engine: Engine, req: OrderRequest, now_ms: int) -> ApiError | None:
    """None when the engine takes `req`, else KuCoin's refusal."""
    info = engine.symbols.get(req.symbol)
    if info is None:
        return errors.symbol_not_exists()
    if not info.enable_trading:
        return ApiError("400600", "validation.createOrder.symbolNotAvailable", 200)
    if not CLIENT_OID.match(req.client_oid):
        return errors.bad_param("clientOid must be 1-40 characters of [A-Za-z0-9_-]")
    if req.time_in_force not in ("GTC", "GTT", "IOC", "FOK"):
        return errors.bad_param("timeInForce must be GTC, GTT, IOC or FOK")
    if req.post_only and req.time_in_force in ("IOC", "FOK"):
        return errors.bad_param("postOnly is invalid when timeInForce is IOC or FOK")
    if req.type == "limit":
        if req.price is None or req.size is None:
            return errors.bad_param("price and size are required for a limit order")
        if req.price <= 0 or not multiple_of(req.price, info.price_increment):
            return errors.bad_param("Price increment invalid.")
    elif (req.size is None) == (req.funds is None):
        return errors.bad_param("a market order needs exactly one of size or funds")
    if req.size is not None:
        if req.size <= 0 or not multiple_of(req.size, info.base_increment):
            return errors.bad_param("Order size increment invalid.")
        if req.size < info.base_min_size:
            return errors.bad_param("Order size below the minimum requirement.")
        if req.size > info.base_max_size:
            return errors.bad_param("Order size above the maximum requirement.")
    if req.funds is not None:
        if req.funds <= 0 or not multiple_of(req.funds, info.quote_increment):
            return errors.bad_param("Order funds increment invalid.")
        if req.funds < info.quote_min_size:
            return ApiError("600100", "Funds below the minimum requirement.", 200)
    if req.type == "limit" and req.price is not None and req.size is not None:
        value = req.price * req.size
        if info.min_funds is not None and value < info.min_funds:
            return ApiError("600100", "Funds below the minimum requirement.", 200)
    if req.stp not in ("", "DC", "CO", "CN", "CB"):
        return errors.bad_param("stp must be DC, CO, CN or CB")
    if req.stp == "DC" and req.type == "market":
        return errors.bad_param("stp DC is not supported for market orders")
    if req.iceberg and (req.visible_size is None or req.visible_size <= 0):
        return errors.bad_param("visibleSize is required for an iceberg order")
    if req.time_in_force == "GTT" and req.cancel_after <= 0:
        return errors.bad_param("cancelAfter must be > 0 with timeInForce GTT")
    open_count = len(engine.open_ids.get(req.symbol, ()))
    if req.stop is None and req.type == "limit" and open_count >= engine.max_open_per_symbol:
        return ApiError("200003", "The number of orders exceeds the limit", 200)
    existing = engine.by_client_oid.get(req.client_oid)
    if existing is not None:
        old = engine.orders.get(existing) or engine.stop_orders.get(existing)
        if old is not None and (old.active or (req.hf and engine.retained(old, now_ms))):
            if req.hf:
                return errors.client_oid_duplicate()
            return errors.bad_param("validation.createOrder.clientOidDuplicated")
    return None
