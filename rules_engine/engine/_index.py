"""Which rules can a market update change? An index, so a tick costs about log n. Pure.

A *threshold rule* compares one market value with a constant (`BTC-USDT bid < 60000`), with
nothing timed about it (no `for`, `repeat`, `during`, `expires`, `after`) and an order that
reads nothing else. Its truth can only change when that value moves across its threshold, so
such rules are kept sorted by threshold per value: an update from `old` to `new` selects,
by bisection, the rules whose threshold lies between the two (both ends included). Every
other rule is selected whenever any value it reads changes. Rules with timed behaviour are
also listed in `timed`, for the watcher to step on its clock as well as on updates.

Selecting a rule only means stepping it; `step` decides. Selecting too many is safe, too few
is not, and `tests/test_engine_index.py` checks that indexed evaluation decides exactly what
stepping every rule decides.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from decimal import Decimal

from rules_engine.compiler import CompiledRule
from rules_engine.compiler import model as M
from rules_engine.engine._values import leaves

__all__ = ["RuleIndex"]


def _threshold(rule: CompiledRule) -> tuple[object, Decimal] | None:
    cond = rule.condition
    if not isinstance(cond, M.Compare) or rule.for_seconds or rule.after is not None:
        return None
    if (
        rule.repeat_seconds is not None
        or rule.window is not None
        or rule.expires_in_seconds is not None
        or rule.expires_at is not None
    ):
        return None
    left, right = cond.left, cond.right
    if isinstance(left, M.Const):
        left, right = right, left
    if not isinstance(right, M.Const) or not isinstance(
        left, M.Field | M.Depth | M.Indicator | M.CandleField
    ):
        return None
    order = rule.order
    if order is not None:
        reads: list[object] = []
        for part in (order.price, order.size.amount, order.stop_loss):
            if part is not None:
                reads.extend(leaves(part))
        if order.order_type == "limit" and order.price is None:
            reads.append(M.Field(order.symbol, "ask" if order.side == "sell" else "bid"))
        if any(leaf != left for leaf in reads):
            return None
    return left, right.value


class RuleIndex:
    def __init__(self, rules: Iterable[CompiledRule]) -> None:
        self._thresholds: dict[object, tuple[list[Decimal], list[CompiledRule]]] = {}
        self._readers: dict[object, list[CompiledRule]] = {}
        self.timed: list[CompiledRule] = []
        pending: dict[object, list[tuple[Decimal, int, CompiledRule]]] = {}
        for position, rule in enumerate(rules):
            simple = _threshold(rule)
            if simple is not None:
                pending.setdefault(simple[0], []).append((simple[1], position, rule))
                continue
            read = leaves(rule.condition) if rule.condition is not None else []
            order = rule.order
            if order is not None:
                for part in (order.price, order.size.amount, order.stop_loss):
                    if part is not None:
                        read.extend(x for x in leaves(part) if x not in read)
                if order.order_type == "limit" and order.price is None:
                    read.append(M.Field(order.symbol, "ask" if order.side == "sell" else "bid"))
            for leaf in read:
                self._readers.setdefault(leaf, []).append(rule)
            timed = (
                rule.for_seconds
                or rule.repeat_seconds is not None
                or rule.window is not None
                or rule.expires_in_seconds is not None
                or rule.expires_at is not None
                or rule.after is not None
            )
            if timed:
                self.timed.append(rule)
        for leaf, items in pending.items():
            items.sort(key=lambda item: (item[0], item[1]))
            self._thresholds[leaf] = ([t for t, _, _ in items], [r for _, _, r in items])

    def leaves(self) -> set[object]:
        """Every market value some rule reads (what the watcher must subscribe to)."""
        return set(self._thresholds) | set(self._readers)

    def affected(
        self, leaf: object, old: Decimal | None, new: Decimal | None
    ) -> list[CompiledRule]:
        """The rules an update of `leaf` from `old` to `new` may change (None: unknown)."""
        selected: list[CompiledRule] = list(self._readers.get(leaf, ()))
        table = self._thresholds.get(leaf)
        if table is None or new is None:
            return selected  # a threshold rule whose value turns unknown cannot fire
        thresholds, rules = table
        if old is None:
            selected.extend(rules)  # from unknown to known: any of them may now be true
            return selected
        low, high = (old, new) if old <= new else (new, old)
        start = bisect.bisect_left(thresholds, low)
        stop = bisect.bisect_right(thresholds, high)
        selected.extend(rules[start:stop])
        return selected
