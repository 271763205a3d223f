"""KuCoin's OCO orders (`/api/v3/oco/...`) on the matching engine.

An OCO is two legs of the same `size` and side: a limit leg resting on the book at `price`, and
a stop leg (a stop order) that, when the last trade price reaches `stop_price` (a sell's at or
below it, a buy's at or above it), places a limit order at `limit_price`. Both legs carry `vs`
ids, as KuCoin's do, and the OCO's clientOid. The coins are held once: the limit leg holds them
(a buy's hold covers the dearer of the two prices); a trigger cancels the limit leg, releasing
its hold, before the triggered order takes its own. A fill of the limit leg, even partial,
cancels the stop leg in the same engine step; cancelling either leg cancels the other.

The OCO's status is derived from its legs: `NEW` (both live), `TRIGGERED` (the stop leg fired
and its order is live), `DONE` (a leg traded and nothing is left to decide) or `CANCELLED`.
"""

from __future__ import annotations

from decimal import Decimal

from rules_engine.sandbox import errors, stop_orders
from rules_engine.sandbox.engine import CLIENT_OID, Engine, Event, Oco, Order, OrderRequest
from rules_engine.sandbox.errors import ApiError

__all__ = ["cancel", "find_by_client_oid", "leg_status", "place", "status"]

REMARK_MAX = 20


def place(engine: Engine, *, symbol: str, side: str, price: Decimal, stop_price: Decimal,
          limit_price: Decimal, size: Decimal, client_oid: str, remark: str,
          now_ms: int) -> tuple[Oco | ApiError, list[Event]]:
    """Check the OCO whole, then create the stop leg and place the limit leg."""
    info = engine.symbols.get(symbol)
    if info is None:
        return errors.symbol_not_exists(), []
    if side not in ("buy", "sell"):
        return errors.bad_param("side must be buy or sell"), []
    if not CLIENT_OID.match(client_oid):
        return errors.bad_param("clientOid must be 1-40 characters of [A-Za-z0-9_-]"), []
    if len(remark) > REMARK_MAX:
        return errors.bad_param(f"remark must be at most {REMARK_MAX} characters"), []
    if side == "sell" and stop_price >= price:
        return errors.bad_param("a sell OCO's stopPrice must be below its price"), []
    if side == "buy" and stop_price <= price:
        return errors.bad_param("a buy OCO's stopPrice must be above its price"), []
    if any(o.client_oid == client_oid for o in engine.ocos.values()):
        return errors.bad_param("validation.createOrder.clientOidDuplicated"), []
    stop_kind = "loss" if side == "sell" else "entry"
    limit_req = OrderRequest(symbol=symbol, side="buy" if side == "buy" else "sell",
                             type="limit", client_oid=client_oid, price=price, size=size,
                             remark=remark, hf=False)
    stop_req = OrderRequest(symbol=symbol, side=limit_req.side, type="limit",
                            client_oid=client_oid, price=limit_price, size=size, remark=remark,
                            hf=False, stop=stop_kind, stop_price=stop_price)
    for req in (limit_req, stop_req):
        error = engine.validate(req, now_ms)
        if error is not None:
            return error, []
    if not stop_price > 0 or stop_price % info.price_increment != 0:
        return errors.bad_param("Price increment invalid."), []
    fee = 1 + engine.taker_fee
    if side == "sell":
        short = engine.account.available(info.base_currency) < size
    else:
        short = engine.account.available(info.quote_currency) < max(price, limit_price) * size * fee
    if short:
        return errors.balance_insufficient(), []
    oco_id = engine._next_id()
    limit_id = engine._next_id("vs")
    stop_id = engine._next_id("vs")
    oco = Oco(oco_id, client_oid, symbol, limit_req.side, price, stop_price, limit_price, size,
              remark, now_ms, limit_id, stop_id)
    engine.ocos[oco_id] = oco
    stop = Order(stop_id, stop_req, now_ms, now_ms, stop_status="NEW", oco_id=oco_id)
    engine.stop_orders[stop_id] = stop
    events: list[Event] = [stop_orders.stop_event(stop, "open", None, now_ms)]
    result, more = engine.place(limit_req, now_ms, order_id=limit_id, oco_id=oco_id)
    if isinstance(result, ApiError):  # checked above; kept so a new rule cannot half-place
        del engine.stop_orders[stop_id]
        del engine.ocos[oco_id]
        return result, []
    result.stop_triggered = False  # the limit leg is no stop order's child
    events.extend(more)
    extra = (limit_price - price) * result.remaining * fee
    if side == "buy" and result.active and stop.stop_status == "NEW" and extra > 0:
        # The stop leg would buy dearer: the one hold covers whichever leg runs.
        engine._change_hold(info.quote_currency, extra, result, now_ms, events)
    return oco, events


def status(engine: Engine, oco: Oco) -> str:
    stop = engine.stop_orders.get(oco.stop_id)
    if stop is not None and stop.stop_status == "TRIGGERED":
        placed = engine.orders.get(oco.stop_id)
        if placed is not None and placed.active:
            return "TRIGGERED"
        return "DONE" if placed is not None and placed.deal_size > 0 else "CANCELLED"
    limit = engine.orders.get(oco.limit_id)
    if limit is not None and limit.deal_size > 0:
        return "DONE"
    if stop is not None and stop.stop_status == "NEW" and limit is not None and limit.active:
        return "NEW"
    return "CANCELLED"


def leg_status(engine: Engine, oco: Oco, leg_id: str) -> str:
    """One leg in the detail: NEW while it lives untriggered, TRIGGERED (the stop leg's order
    lives), DONE (it traded and is over) or CANCELLED."""
    stop = engine.stop_orders.get(leg_id)
    if stop is not None and stop.stop_status in ("NEW", "CANCELLED"):
        return stop.stop_status
    order = engine.orders.get(leg_id)
    if order is None:
        return "CANCELLED"
    if order.active:
        return "TRIGGERED" if leg_id == oco.stop_id else "NEW"
    return "DONE" if order.deal_size > 0 else "CANCELLED"


def find_by_client_oid(engine: Engine, client_oid: str) -> Oco | None:
    found = [o for o in engine.ocos.values() if o.client_oid == client_oid]
    return max(found, key=lambda o: o.created_at) if found else None


def cancel(engine: Engine, oco: Oco, now_ms: int) -> tuple[list[str] | ApiError, list[Event]]:
    """Cancel what still lives of the OCO; the ids of the legs cancelled, limit leg first."""
    events: list[Event] = []
    live: list[Order] = []
    limit = engine.orders.get(oco.limit_id)
    if limit is not None and limit.active:
        live.append(limit)
    stop = engine.stop_orders.get(oco.stop_id)
    if stop is not None and stop.stop_status == "NEW":
        live.append(stop)
    placed = engine.orders.get(oco.stop_id)
    if placed is not None and placed.active:
        live.append(placed)
    if not live:
        return errors.order_not_cancellable(), []
    for leg in live:
        if not leg.active:
            continue  # went with its sibling
        if leg.stop_status == "NEW":
            stop_orders.drop_stop(engine, leg, now_ms, events)
        else:
            engine._cancel_resting(leg, now_ms, events)
    return [leg.id for leg in live], events
