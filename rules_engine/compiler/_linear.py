"""Prices as linear functions of one anchor, and the price range in which a rule fires. Pure.

The safety checks (`_safety.py`) compare prices a rule writes in different ways: `61000`,
`last + 1%`, `ask - 5`, `fill_price * 1.03`. Each is brought to `factor * anchor + offset`,
where the anchor is the traded symbol's market price (any of bid, ask, last, mid: they are a
spread apart) or the parent order's `fill_price`, or nothing for a constant. A price that is
not of that form (an indicator, a product of two fields) is left alone: no check guesses.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from rules_engine.compiler import _model as M

__all__ = ["FILL", "MARKET", "PRICE_FIELDS", "Linear", "firing_range", "linear", "symbols_of"]

PRICE_FIELDS = frozenset(["bid", "ask", "last", "mid"])
MARKET = "market"
FILL = "fill"
_ZERO = Decimal(0)
_ONE = Decimal(1)


class Linear(NamedTuple):
    """`factor * anchor + offset`; anchor None is a constant (`factor` 0)."""

    anchor: str | None
    factor: Decimal
    offset: Decimal

    def at(self, anchor_value: Decimal) -> Decimal:
        return self.factor * anchor_value + self.offset


def linear(value: M.Value | None, symbol: str) -> Linear | None:
    """`value` as a linear function of one anchor of `symbol`, or None."""
    if value is None:
        return None
    if isinstance(value, M.Const):
        return Linear(None, _ZERO, value.value)
    if isinstance(value, M.Field):
        if value.symbol == symbol and value.name in PRICE_FIELDS:
            return Linear(MARKET, _ONE, _ZERO)
        return None
    if isinstance(value, M.Fill):
        return Linear(FILL, _ONE, _ZERO) if value.kind == "fill_price" else None
    if isinstance(value, M.Offset):
        inner = linear(value.base, symbol)
        if inner is None:
            return None
        return Linear(inner.anchor, inner.factor * value.factor, inner.offset * value.factor)
    if isinstance(value, M.Arith):
        left, right = linear(value.left, symbol), linear(value.right, symbol)
        if left is None or right is None:
            return None
        if value.op in "+-":
            if left.anchor is not None and right.anchor is not None and left.anchor != right.anchor:
                return None
            sign = _ONE if value.op == "+" else -_ONE
            anchor = left.anchor or right.anchor
            factor = left.factor + sign * right.factor
            return Linear(anchor, factor, left.offset + sign * right.offset)
        if value.op == "*":
            if right.anchor is None:
                return Linear(left.anchor, left.factor * right.offset, left.offset * right.offset)
            if left.anchor is None:
                return Linear(right.anchor, right.factor * left.offset, right.offset * left.offset)
            return None
        if right.anchor is None and right.offset != 0:
            return Linear(left.anchor, left.factor / right.offset, left.offset / right.offset)
    return None


def _bound(cond: M.Compare | M.Crosses, symbol: str) -> tuple[Decimal | None, Decimal | None]:
    left, right = cond.left, cond.right
    if isinstance(cond, M.Crosses):
        if _is_price(left, symbol) and isinstance(right, M.Const):
            return (right.value, None) if cond.direction == "above" else (None, right.value)
        return None, None
    op = cond.op
    if isinstance(left, M.Const):
        left, right = right, left
        op = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
    if not (_is_price(left, symbol) and isinstance(right, M.Const)):
        return None, None
    c = right.value
    if op in ("<", "<="):
        return None, c
    if op in (">", ">="):
        return c, None
    if op == "==":
        return c, c
    return None, None


def _is_price(value: M.Value, symbol: str) -> bool:
    return isinstance(value, M.Field) and value.symbol == symbol and value.name in PRICE_FIELDS


def firing_range(cond: M.Cond | None, symbol: str) -> tuple[Decimal | None, Decimal | None]:
    """Bounds (low, high; None: unbounded) on `symbol`'s price whenever `cond` is true."""
    if cond is None:
        return None, None
    if isinstance(cond, M.Compare | M.Crosses):
        return _bound(cond, symbol)
    if isinstance(cond, M.All):
        low: Decimal | None = None
        high: Decimal | None = None
        for part in cond.parts:
            lo, hi = firing_range(part, symbol)
            if lo is not None:
                low = lo if low is None else max(low, lo)
            if hi is not None:
                high = hi if high is None else min(high, hi)
        return low, high
    if isinstance(cond, M.AnyOf):
        ranges = [firing_range(part, symbol) for part in cond.parts]
        lows = [lo for lo, _ in ranges]
        highs = [hi for _, hi in ranges]
        return (
            None if any(lo is None for lo in lows) else min(lo for lo in lows if lo is not None),
            None if any(hi is None for hi in highs) else max(h for h in highs if h is not None),
        )
    return None, None


def symbols_of(cond: M.Cond | M.Value | None) -> set[str]:
    """Every symbol whose values a condition (or value) reads."""
    found: set[str] = set()
    stack: list[object] = [cond]
    while stack:
        node = stack.pop()
        if isinstance(node, M.Field | M.Depth | M.Indicator | M.CandleField):
            found.add(node.symbol)
        elif isinstance(node, M.Compare | M.Crosses | M.Arith):
            stack.extend((node.left, node.right))
        elif isinstance(node, M.All | M.AnyOf):
            stack.extend(node.parts)
        elif isinstance(node, M.Negation | M.Negate):
            stack.append(node.operand)
        elif isinstance(node, M.Offset):
            stack.append(node.base)
    return found
