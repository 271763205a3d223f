"""Sliced orders (scaled orders and TWAPs): the slices a firing becomes, and when a TWAP's
slice is sent or skipped. Pure: the caller passes the time.

A firing of a sliced rule (identity R, firing N) is recorded with its plan; each slice k is a
firing of its own, of the group `R/slices-N` with number k, so its clientOid is
`client_oid(engine, "R/slices-N", k)`: a pure function of the rule firing and the slice.

* Sizes: the total, rounded down to the lot, split into `count` slices of total / count
  rounded down to the lot; the last slice also takes what that rounding left (fewer lots than
  there are slices), so the slices add up to the total.
* Scaled prices: evenly spaced from `start` to `end`, both included, computed when the rule
  fires and each rounded to the tick in the trader's favour (a buy down, a sell up).
* TWAP times: slice k (1-based) falls due at the firing + (k - 1) x `every`; its price is
  computed when it is sent. A slice is sent within its own interval, [due, due + every): one
  whose interval passed before it could be sent (the watcher was down) is skipped, so slices
  never bunch up (see `twap_step`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import NamedTuple

from rules_engine.compiler import model as M
from rules_engine.compiler._execution import split
from rules_engine.core.symbols import SymbolInfo
from rules_engine.engine._orders import Blocked
from rules_engine.engine._values import Fill, Market, plain, value

__all__ = ["SLICES", "Slice", "group_of", "plan_slices", "rule_of", "slice_order", "twap_step"]

SLICES = "/slices-"  # between a rule's identity and its firing number in a slice group


def group_of(identity: str, firing: int) -> str:
    """The firing identity of the slices of rule `identity`'s firing `firing`."""
    return f"{identity}{SLICES}{firing}"


def rule_of(identity: str) -> str:
    """The rule a firing identity belongs to (a slice group's rule, or the rule itself)."""
    return identity.split(SLICES, 1)[0]


class Slice(NamedTuple):
    number: int  # 1-based
    due: datetime
    size: Decimal
    price: Decimal | None  # a scaled slice's limit price; None: priced when it is sent

    def dump(self) -> dict[str, str | int | None]:
        return {"number": self.number, "due": self.due.isoformat(),
                "size": format(self.size, "f"),
                "price": None if self.price is None else format(self.price, "f")}

    @staticmethod
    def load(data: Mapping[str, object]) -> Slice:
        price = data.get("price")
        return Slice(int(str(data["number"])), datetime.fromisoformat(str(data["due"])),
                     Decimal(str(data["size"])), None if price is None else Decimal(str(price)))


def _tick(raw: Decimal, step: Decimal, *, up: bool) -> Decimal:
    return (raw / step).to_integral_value(ROUND_CEILING if up else ROUND_FLOOR) * step


def plan_slices(order: M.OrderSpec, market: Market, info: SymbolInfo, now: datetime,
                fill: Fill | None = None) -> tuple[Slice, ...] | Blocked:
    """The slices of a sliced order firing at `now`, or why it cannot be placed."""
    slicing = order.slicing
    assert slicing is not None
    if not info.enable_trading:
        return Blocked(f"{info.symbol} is not enabled for trading")
    total = value(order.size.amount, market, fill)
    if total is None:
        return Blocked("the order's size depends on data that is not fresh")
    count = slicing.slices
    each, last = split(total, count, info.base_increment)
    if each < info.base_min_size:
        return Blocked(f"{plain(total)} in {count} slices is {plain(each)} a slice, below "
                       f"{info.symbol}'s baseMinSize {plain(info.base_min_size)}")
    if last > info.base_max_size:
        return Blocked(f"a slice of {plain(last)} is above {info.symbol}'s baseMaxSize "
                       f"{plain(info.base_max_size)}")
    sizes = [each] * (count - 1) + [last]
    if slicing.kind == "twap":
        every = timedelta(seconds=slicing.every_seconds or 0)
        return tuple(Slice(k + 1, now + every * k, size, None) for k, size in enumerate(sizes))
    assert slicing.start is not None and slicing.end is not None
    start, end = value(slicing.start, market, fill), value(slicing.end, market, fill)
    if start is None or end is None:
        return Blocked("the scaled order's prices depend on data that is not fresh")
    sell = order.side == "sell"
    slices = []
    for k, size in enumerate(sizes):
        raw = start + (end - start) * k / (count - 1)
        price = _tick(raw, info.price_increment, up=sell)
        if price <= 0:
            return Blocked(f"slice {k + 1}'s price {plain(price)} is not above zero")
        if info.min_funds is not None and price * size < info.min_funds:
            return Blocked(f"slice {k + 1}'s value {plain(price * size)} is below "
                           f"{info.symbol}'s minFunds {plain(info.min_funds)}")
        slices.append(Slice(k + 1, now, size, price))
    return tuple(slices)


def slice_order(order: M.OrderSpec, piece: Slice) -> M.OrderSpec:
    """The plain order of one slice, for `resolve_order`: its size, and a scaled slice's
    price (a TWAP slice keeps the order's price expression, or none: a market order)."""
    return order._replace(
        size=M.SizeSpec("base", M.Const(piece.size), None),
        price=M.Const(piece.price) if piece.price is not None else order.price,
        slicing=None)


def twap_step(due: datetime, every_seconds: int, now: datetime) -> str:
    """`wait` (not due yet), `send` (due, and its interval still runs) or `skip` (its
    interval passed: the next slice is due, so sending this one now would bunch them)."""
    if now < due:
        return "wait"
    return "send" if now < due + timedelta(seconds=every_seconds) else "skip"
