"""Values and three-valued truth of compiled expressions over a market snapshot. Pure.

The market is a mapping from the compiled value leaves (`Field`, `Depth`, `Indicator`,
`CandleField`, and `Signal`: when the latest inbound signal of a name arrived) to their
current value, holding only values that are proven fresh: a leaf that
is absent is unknown. Unknown propagates: a comparison with an unknown side is unknown;
`unknown and false` is false, `unknown or true` is true, anything else with unknown is unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, DivisionByZero, InvalidOperation
from typing import NamedTuple

from rules_engine.compiler import model as M

__all__ = [
    "Fill",
    "Market",
    "Truth",
    "epoch_seconds",
    "leaves",
    "order_parts",
    "plain",
    "signal_atoms",
    "truth",
    "value",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_seconds(at: datetime) -> Decimal:
    """`at` as exact seconds since the epoch (a `Signal` leaf's value), to the microsecond."""
    delta = at - _EPOCH
    return Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds).scaleb(-6)



def plain(amount: Decimal) -> str:
    """An amount as a person writes it, for messages: 50, not 5E+1 (a product of normalised
    operands), 10.5, not 10.50."""
    return format(amount.normalize(), "f")

Market = Mapping[object, Decimal]
Truth = bool | None  # None is unknown


class Fill(NamedTuple):
    """The parent order's fill, for `fill_price` (volume-weighted) and `filled_size`."""

    price: Decimal
    size: Decimal


# The values read from the market mapping (a tuple: `isinstance` with it builds nothing).
_LEAVES = (M.Field, M.Depth, M.Indicator, M.CandleField, M.Chain, M.Balance)


def value(node: M.Value, market: Market, fill: Fill | None = None) -> Decimal | None:
    """The value of a compiled expression, or None when any input is unknown."""
    if isinstance(node, M.Const):
        return node.value
    if isinstance(node, _LEAVES):
        return market.get(node)
    if isinstance(node, M.Offset):
        base = value(node.base, market, fill)
        return None if base is None else base * node.factor
    if isinstance(node, M.Arith):
        left = value(node.left, market, fill)
        right = value(node.right, market, fill)
        if left is None or right is None:
            return None
        if node.op == "+":
            return left + right
        if node.op == "-":
            return left - right
        if node.op == "*":
            return left * right
        try:
            return left / right
        except (DivisionByZero, InvalidOperation):
            return None  # a zero mid or denominator proves nothing: unknown, never a crash
    if isinstance(node, M.Negate):
        inner = value(node.operand, market, fill)
        return None if inner is None else -inner
    if isinstance(node, M.Fill):
        if fill is None:
            return None
        return fill.price if node.kind == "fill_price" else fill.size
    raise TypeError(f"not a compiled value: {node!r}")


def _compare(op: str, left: Decimal, right: Decimal) -> bool:
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    if op == ">=":
        return left >= right
    if op == "==":
        return left == right
    return left != right


def truth(
    cond: M.Cond,
    market: Market,
    crossed: Mapping[int, bool | None] | None = None,
    fill: Fill | None = None,
    signaled: Mapping[M.Signaled, bool] | None = None,
) -> Truth:
    """Three-valued truth of a condition. `crossed` gives the verdict of each `crosses` atom
    (by its position among the condition's `crosses` atoms), computed by the caller from two
    fresh observations (see `_evaluate.cross_verdicts`); `signaled` the verdict of each
    `signal` atom (`_evaluate.signal_verdicts`), false when absent: never unknown."""
    counter = [0]
    return _truth(cond, market, crossed or {}, fill, counter, signaled or {})


def _truth(  # noqa: PLR0917 - the recursion carries every verdict table along
    cond: M.Cond,
    market: Market,
    crossed: Mapping[int, bool | None],
    fill: Fill | None,
    counter: list[int],
    signaled: Mapping[M.Signaled, bool],
) -> Truth:
    if isinstance(cond, M.Compare):
        left = value(cond.left, market, fill)
        right = value(cond.right, market, fill)
        if left is None or right is None:
            return None
        return _compare(cond.op, left, right)
    if isinstance(cond, M.All):
        result: Truth = True
        for part in cond.parts:
            t = _truth(part, market, crossed, fill, counter, signaled)
            if t is False:
                result = False
            elif t is None and result is True:
                result = None
        return result
    if isinstance(cond, M.AnyOf):
        result = False
        for part in cond.parts:
            t = _truth(part, market, crossed, fill, counter, signaled)
            if t is True:
                result = True
            elif t is None and result is False:
                result = None
        return result
    if isinstance(cond, M.Negation):
        t = _truth(cond.operand, market, crossed, fill, counter, signaled)
        return None if t is None else not t
    if isinstance(cond, M.Crosses):
        index = counter[0]
        counter[0] += 1
        return crossed.get(index)
    if isinstance(cond, M.Signaled):
        return signaled.get(cond, False)
    raise TypeError(f"not a compiled condition: {cond!r}")


def leaves(node: object) -> list[object]:
    """Every market leaf a value or condition reads, in a stable order (depth first)."""
    found: list[object] = []
    _leaves(node, found)
    return found


def _leaves(node: object, found: list[object]) -> None:
    if isinstance(node, M.Field | M.Depth | M.Indicator | M.CandleField | M.Balance):
        if node not in found:
            found.append(node)
    elif isinstance(node, M.Chain):
        if node not in found:
            found.append(node)
        if node.kind != "position":  # pnl values the position at the bid (or the ask)
            for side in ("bid", "ask"):
                if (field := M.Field(node.symbol, side)) not in found:
                    found.append(field)
    elif isinstance(node, M.Signaled):
        if node.signal not in found:
            found.append(node.signal)
    elif isinstance(node, M.Compare | M.Crosses | M.Arith):
        _leaves(node.left, found)
        _leaves(node.right, found)
    elif isinstance(node, M.All | M.AnyOf):
        for part in node.parts:
            _leaves(part, found)
    elif isinstance(node, M.Negation | M.Negate):
        _leaves(node.operand, found)
    elif isinstance(node, M.Offset):
        _leaves(node.base, found)


def order_parts(order: M.OrderSpec) -> list[M.Value]:
    """The values an order must have fresh before its rule fires: its price, size and
    stop-loss, a risk size's stop and the balance it risks a share of."""
    parts = [p for p in (order.price, order.size.amount, order.stop_loss, order.size.stop)
             if p is not None]
    if order.size.kind == "risk" and order.size.currency is not None:
        parts.append(M.Balance(order.size.currency))
    return parts


def signal_atoms(cond: M.Cond | None) -> list[M.Signaled]:
    """The condition's `signal` atoms, each once, depth first."""
    found: list[M.Signaled] = []
    stack: list[object] = [cond]
    while stack:
        node = stack.pop()
        if isinstance(node, M.Signaled):
            if node not in found:
                found.append(node)
        elif isinstance(node, M.All | M.AnyOf):
            stack.extend(reversed(node.parts))
        elif isinstance(node, M.Negation):
            stack.append(node.operand)
    return found
