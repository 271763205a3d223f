"""Stop orders and OCO legs on the matching engine: an untriggered stop order placed and
cancelled, the stops a trade reaches triggered (the order each places keeps its id and
clientOid), and what ties an OCO's limit leg to its stop leg. Placing, cancelling and reading
OCO orders themselves: `oco.py`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from rules_engine.sandbox import errors
from rules_engine.sandbox.engine_types import (
    ZERO,
    Event,
    Order,
    OrderRequest,
    StopEvent,
    multiple_of,
    snapshot_of,
)
from rules_engine.sandbox.errors import ApiError

if TYPE_CHECKING:
    from rules_engine.sandbox.engine import Engine

__all__ = ["cancel_stop", "check_stops", "drop_stop", "oco_filled", "oco_leg_cancelled",
           "place_stop", "stop_event"]


def place_stop(engine: Engine, req: OrderRequest, now_ms: int,
               events: list[Event]) -> tuple[Order | ApiError, list[Event]]:
    """A stop order waits untriggered (`NEW`): nothing held, nothing on the book."""
    if req.stop not in ("loss", "entry") or req.stop_price is None or req.stop_price <= 0:
        return errors.bad_param("stop must be loss or entry, with a stopPrice > 0"), []
    info = engine.symbols[req.symbol]
    if not multiple_of(req.stop_price, info.price_increment):
        return errors.bad_param("Price increment invalid."), []
    order = Order(engine._next_id("vs"), req, now_ms, now_ms, stop_status="NEW")
    engine.stop_orders[order.id] = order
    engine.by_client_oid[req.client_oid] = order.id
    events.append(stop_event(order, "open", None, now_ms))
    return order, events


def stop_event(order: Order, kind: str, success: bool | None, now_ms: int) -> StopEvent:
    return StopEvent(snapshot_of(order), order.req.stop or "loss",
                     order.req.stop_price or ZERO, kind, success, now_ms * 1_000_000)


def cancel_stop(engine: Engine, stop: Order, now_ms: int) -> tuple[Order | ApiError, list[Event]]:
    events: list[Event] = []
    drop_stop(engine, stop, now_ms, events)
    return stop, events


def drop_stop(engine: Engine, stop: Order, now_ms: int, events: list[Event],
              sibling: bool = True) -> None:
    """Cancel an untriggered stop order; an OCO leg takes its sibling along unless
    `sibling` is False (the sibling is why it goes)."""
    stop.stop_status = "CANCELLED"
    stop.move("done")
    stop.done_reason = "canceled"
    stop.updated_at = now_ms
    events.append(stop_event(stop, "cancel", None, now_ms))
    if stop.oco_id and sibling:
        oco_leg_cancelled(engine, stop, now_ms, events)


def oco_filled(engine: Engine, order: Order, now_ms: int, events: list[Event]) -> None:
    """A fill of the limit leg, even partial, cancels the untriggered stop leg in the same
    step; a buy's hold falls back to what the limit leg alone needs."""
    oco = engine.ocos.get(order.oco_id)
    if oco is None or order.id != oco.limit_id:
        return  # the stop leg's order: the limit leg went when it triggered
    stop = engine.stop_orders.get(oco.stop_id)
    if stop is not None and stop.stop_status == "NEW":
        drop_stop(engine, stop, now_ms, events, sibling=False)
    if order.side == "buy" and order.active:
        keep = order.price * order.remaining * (1 + engine.taker_fee)
        if order.hold > keep:
            engine._change_hold(engine.symbols[order.symbol].quote_currency, keep - order.hold,
                                order, now_ms, events)


def oco_leg_cancelled(engine: Engine, order: Order, now_ms: int, events: list[Event]) -> None:
    """One leg cancelled (by the client, cancel-all or the dead-man switch) takes the
    other with it while the OCO is undecided."""
    oco = engine.ocos.get(order.oco_id)
    if oco is None:
        return
    if order.id == oco.limit_id:
        stop = engine.stop_orders.get(oco.stop_id)
        if stop is not None and stop.stop_status == "NEW":
            drop_stop(engine, stop, now_ms, events, sibling=False)
    elif order.stop_status == "CANCELLED":
        limit = engine.orders.get(oco.limit_id)
        if limit is not None and limit.active:
            engine._cancel_resting(limit, now_ms, events)


def check_stops(engine: Engine, symbol: str, last: Decimal, now_ms: int,
                events: list[Event]) -> None:
    """Trigger every untriggered stop of `symbol` the last price `last` reached: a loss stop
    at or below its stopPrice, an entry stop at or above it."""
    for stop in engine.stops(now_ms, symbol):
        if stop.stop_status != "NEW":
            continue  # an OCO leg its sibling's trigger cancelled in this same pass
        price = stop.req.stop_price or ZERO
        hit = last <= price if stop.req.stop == "loss" else last >= price
        if not hit:
            continue
        stop.stop_status = "TRIGGERED"
        stop.stop_triggered = True
        stop.move("done")
        stop.updated_at = now_ms
        oco = engine.ocos.get(stop.oco_id) if stop.oco_id else None
        if oco is not None:
            # An OCO's stop leg fires: its limit leg goes first, releasing the hold the
            # triggered order takes over.
            limit = engine.orders.get(oco.limit_id)
            if limit is not None and limit.active:
                engine._cancel_resting(limit, now_ms, events)
        plain = OrderRequest(**{
            name: getattr(stop.req, name) for name in OrderRequest.__dataclass_fields__
            if name not in ("stop", "stop_price")
        })
        # The order the trigger creates keeps the stop order's id and clientOid.
        engine.by_client_oid.pop(plain.client_oid, None)
        result, more = engine.place(plain, now_ms, order_id=stop.id, oco_id=stop.oco_id)
        ok = isinstance(result, Order)
        events.append(stop_event(stop, "triggered", ok, now_ms))
        events.extend(more)

# ---- the market feed ---------------------------------------------------------------
