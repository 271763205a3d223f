"""Engine-held exits beyond a bracket's fixed stop-loss: a guard's stop (one stop for what a
chain still holds from one entry firing), a trailing stop-loss, a stop moved when a sibling
exit fills, and a time exit. Each is a `Leg` of `HeldOrders`: an order row of its own,
recorded with its firing before anything is sent, rebuilt from the store at a restart.

What a leg covers: its bracket's take-profit, or a guard's siblings (the exits armed by the
same entry firing, on the same symbol, on the other side). `held_left` is the one place that
says how much of the position is still held: the leg's size (the take-profit's size, or the
entry's filled size) minus what those exits filled.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from rules_engine.compiler import CompiledRule
from rules_engine.compiler import model as M
from rules_engine.core.symbols import SymbolInfo
from rules_engine.engine import Blocked, Fill, OrderIntent
from rules_engine.engine import value as value_of
from rules_engine.engine._risk import value_order
from rules_engine.runtime._leg import Leg
from rules_engine.runtime._orders import OrderManager
from rules_engine.store import Store, client_oid

__all__ = ["build_leg", "detail", "exit_side", "exit_slippage", "held_left", "leg_oid",
           "leg_row", "restore", "siblings_of", "tick", "trailed"]


def leg_oid(engine_id: str, identity: str, number: int) -> str:
    """A held stop's clientOid: the rule, the role and the firing number."""
    return client_oid(engine_id, f"{identity}/stop-loss", number)


def tick(info: SymbolInfo, raw: Decimal, sell: bool) -> Decimal:
    """A trigger on the symbol's price grid, rounded toward the market: a sell's up, a buy's
    down (it triggers no later than written)."""
    step = info.price_increment
    return (raw / step).to_integral_value(ROUND_CEILING if sell else ROUND_FLOOR) * step


def trailed(leg: Leg, info: SymbolInfo) -> Decimal | None:
    """A trailing leg's trigger from its mark (the best `last` since the entry filled)."""
    if leg.trail is None or leg.mark is None:
        return leg.trigger
    sell = leg.side == "sell"
    return tick(info, leg.mark * ((1 - leg.trail) if sell else (1 + leg.trail)), sell)


def exit_side(rule: CompiledRule, rules: dict[str, CompiledRule]) -> str | None:
    """The side a leg's exit takes: a bracket's take-profit side; a guard's, the entry's
    opposite (None when the entry is not known)."""
    if rule.order is not None:
        return rule.order.side
    parent = rules.get(rule.after[0]) if rule.after is not None else None
    if parent is None or parent.order is None:
        return None
    return "sell" if parent.order.side == "buy" else "buy"


def siblings_of(rule: CompiledRule, rules: dict[str, CompiledRule], side: str) -> list[str]:
    """A guard's exits: the rules armed by the same parent's fill, on the same symbol, whose
    orders take the guard's side."""
    return sorted(r.identity for r in rules.values() if r.identity != rule.identity
                  and r.after == rule.after and r.symbol == rule.symbol
                  and r.order is not None and r.order.side == side)


def held_left(leg: Leg, orders: OrderManager, store: Store) -> Decimal:
    """What the chain still holds of what `leg` covers: its size minus what the exits it
    covers filled (as the order table has it while they are tracked, as stored after)."""
    filled = Decimal(0)
    for oid in leg.covered:
        tracked = orders.tracked.get(oid)
        if tracked is not None:
            filled += tracked.record.filled
            continue
        row = store.order(oid)
        if row is not None:
            filled += row.filled_size
    return leg.size - filled


def build_leg(rule: CompiledRule, *, engine_id: str, info: SymbolInfo, side: str,
              size: Decimal, tp_oid: str, tp_price: Decimal | None, number: int,
              fill: Fill | None, values: Any, rules: dict[str, CompiledRule],
              now: datetime) -> Leg | Blocked | None:
    """The held leg of a bracket (`tp_oid` its take-profit) or a guard (`tp_oid` ""), its
    trigger rounded toward the market, or why it cannot be held; None: the rule has none."""
    held = rule.protection
    spec = rule.order
    stop = spec.stop_loss if spec is not None else held.stop if held is not None else None
    if stop is None and (held is None or (held.trail is None and held.exit_seconds is None)):
        return None
    sell = side == "sell"
    trigger: Decimal | None = None
    mark: Decimal | None = None
    last = values.get(M.Field(info.symbol, "last"))
    trail = held.trail if held is not None else None
    if trail is not None:
        best = [p for p in (fill.price if fill is not None else None, last) if p is not None]
        if not best:
            return Blocked("the trailing stop-loss needs a fresh last price or the entry's fill")
        mark = max(best) if sell else min(best)
    elif stop is not None:
        raw = value_of(stop, values, fill)
        if raw is None:
            return Blocked("the stop-loss depends on data that is not fresh")
        trigger = tick(info, raw, sell)
        if tp_price is not None and (trigger >= tp_price if sell else trigger <= tp_price):
            return Blocked(f"the stop-loss {trigger} is not on the losing side of the "
                           f"take-profit {tp_price}")
    siblings: tuple[str, ...] = ()
    if held is not None and held.guard:
        siblings = tuple(client_oid(engine_id, s, number)
                         for s in siblings_of(rule, rules, side))
    leg = Leg(leg_oid(engine_id, rule.identity, number), tp_oid, rule.identity, number,
              info.symbol, side, size, trigger, siblings=siblings, trail=trail, mark=mark,
              fill=fill)
    if trail is not None:
        leg.trigger = trailed(leg, info)
    if held is not None and held.exit_seconds is not None:
        leg.exit_at = now + timedelta(seconds=held.exit_seconds)
    if held is not None and held.move_after is not None:
        leg.move_oid = client_oid(engine_id, held.move_after, number)
        leg.move_to = held.move_to
    return leg


def detail(leg: Leg) -> dict[str, Any]:
    """What recovery needs to hold the leg again, recorded with its firing."""
    return {"client_oid": leg.oid, "trigger": _num(leg.trigger), "trail": _num(leg.trail),
            "siblings": list(leg.siblings), "size": _num(leg.size),
            "exit_at": leg.exit_at.isoformat() if leg.exit_at is not None else None,
            "move_after": leg.move_oid, "guard": not leg.tp_oid}


def leg_row(leg: Leg, family: str) -> dict[str, Any]:
    """The leg's order row: held; its price is the trigger (a trailing leg's: its mark)."""
    return {"client_oid": leg.oid, "exchange_id": None, "symbol": leg.symbol,
            "side": leg.side, "order_type": "stop-loss",
            "price": leg.mark if leg.trail is not None else leg.trigger,
            "size": leg.size, "funds": None, "status": "held",
            "filled_size": Decimal(0), "filled_value": Decimal(0),
            "family": family, "deadline": None}


def restore(row: Any, of: Any, data: dict[str, Any], rule: CompiledRule | None,  # noqa: PLR0917 - a leg's stored parts
            fill: Fill | None, info: SymbolInfo) -> Leg:
    """A leg as the store holds it: its row (size, the trigger or a trailing mark as last
    written) and the detail recorded with its firing (the exits it covers, its deadline)."""
    trail = Decimal(data["trail"]) if data.get("trail") else None
    recorded = Decimal(data["trigger"]) if data.get("trigger") else None
    price = row.price
    leg = Leg(row.client_oid, "" if data.get("guard") else of.client_oid, of.identity,
              of.number, row.symbol, row.side, Decimal(str(data.get("size") or row.size)),
              recorded, busy=row.status not in ("held", "not_placed"),
              siblings=tuple(data.get("siblings") or ()), trail=trail, fill=fill)
    if trail is not None:
        leg.mark = price
        leg.trigger = trailed(leg, info)
    elif price is not None and row.status == "held":
        leg.trigger = price  # moved since it was recorded
    if data.get("exit_at"):
        leg.exit_at = datetime.fromisoformat(data["exit_at"])
    held = rule.protection if rule is not None else None
    if data.get("move_after") and held is not None and held.move_to is not None:
        leg.move_oid = data["move_after"]
        leg.move_to = held.move_to
        leg.moved = recorded is not None and leg.trigger != recorded
    return leg


def exit_slippage(books: Any, max_slippage: Decimal | None, symbol: str, side: str,
                  size: Decimal) -> str | None:
    """Why a held stop's market exit may not go now: walking the followed book would move
    the price past `risk.max_slippage`, as for any market order (None: it may go; a symbol
    whose book is not followed is not held back)."""
    if max_slippage is None:
        return None
    book = books.get(symbol)
    if book is None or not book.fresh:
        return None
    far = book.asks.items() if side == "buy" else (
        (price, book.bids[price]) for price in reversed(book.bids))
    intent = OrderIntent(symbol, side, "market", size, None, None, None, None, "GTC",
                         False, False)
    valued = value_order(intent, far, max_slippage)
    return valued if isinstance(valued, str) else None


def _num(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")
