"""Which rules can a market update change? An index, so a tick costs about log n. Pure.

A rule is *indexed by threshold* when its condition is one comparison, or a conjunction of
comparisons, of a market value with a constant (`bid < 60000`, `last crosses above 3500`,
`ask <= 58000 and spread < 0.1%`), and it is not an `after` rule. Such a condition can only
change when one of those values moves across its constant: a move that stays on one side of
every constant changes nothing, not even the baseline of a `crosses` (the previous
observation stays on the same side). So each atom is kept sorted by its constant per value,
and an update from `old` to `new` selects by bisection the rules with a constant between the
two (both ends included). A value turning unknown selects every indexed rule that reads it
(a `for` restarts and a `crosses` loses its baseline); a value becoming known again selects
them all as well. Every other rule is selected whenever any value it reads changes, and the
values an order reads beyond its condition select their rule when they become known (an
order priced on unknown data waits for it).

Rules with timed behaviour (`for`, `repeat`, `during`, `expires`, `after`, `every`) are also
listed in `timed`: the watcher steps them on its clock as well, which is what fires a `for`
once its time has passed, re-arms a `repeat` or fires a schedule.

Selecting a rule only means stepping it; `step` decides. Selecting too many is safe, too few
is not: `tests/test_engine_index.py` checks that indexed evaluation decides exactly what
stepping every rule decides.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from rules_engine.compiler import CompiledRule
from rules_engine.compiler import model as M
from rules_engine.engine._evaluate import RuleState, far_side, next_due
from rules_engine.engine._values import leaves, order_parts

__all__ = ["RuleIndex", "Timers"]

_PRICES = frozenset({"bid", "ask", "last", "mid"})
_LEAF = (M.Field, M.Depth, M.Indicator, M.CandleField)


def _atoms(cond: M.Cond | None) -> list[tuple[object, Decimal]] | None:
    """`(value, constant)` of each atom of a threshold condition, or None if it is not one."""
    parts = cond.parts if isinstance(cond, M.All) else (cond,) if cond is not None else ()
    atoms: list[tuple[object, Decimal]] = []
    for part in parts:
        if not isinstance(part, M.Compare | M.Crosses):
            return None
        left, right = part.left, part.right
        if isinstance(left, M.Const) and isinstance(part, M.Compare):
            left, right = right, left
        if not isinstance(right, M.Const) or not isinstance(left, _LEAF):
            return None
        atoms.append((left, right.value))
    return atoms or None


def _order_reads(rule: CompiledRule) -> list[object]:
    order = rule.order
    if order is None:
        return []
    reads: list[object] = []
    for part in order_parts(order):
        reads.extend(x for x in leaves(part) if x not in reads)
    if order.order_type == "limit" and order.price is None:
        reads.append(M.Field(order.symbol, "ask" if order.side == "sell" else "bid"))
    far = far_side(order)
    if far is not None and far not in reads:
        reads.append(far)
    return reads


def _is_timed(rule: CompiledRule) -> bool:
    return bool(
        rule.for_seconds
        or rule.repeat_seconds is not None
        or rule.window is not None
        or rule.expires_in_seconds is not None
        or rule.expires_at is not None
        or rule.after is not None
        or rule.schedule is not None
    )


class RuleIndex:
    def __init__(self, rules: Iterable[CompiledRule]) -> None:
        self._thresholds: dict[object, tuple[list[Decimal], list[CompiledRule]]] = {}
        self._indexed: dict[object, list[CompiledRule]] = {}  # threshold rules, per value
        self._readers: dict[object, list[CompiledRule]] = {}  # other rules, per value
        self._on_known: dict[object, list[CompiledRule]] = {}  # order inputs, per value
        self.timed: list[CompiledRule] = []
        pending: dict[object, list[tuple[Decimal, int, CompiledRule]]] = {}
        for position, rule in enumerate(rules):
            if _is_timed(rule):
                self.timed.append(rule)
            atoms = _atoms(rule.condition) if rule.after is None else None
            if atoms is None:
                read = leaves(rule.condition) if rule.condition is not None else []
                read.extend(x for x in _order_reads(rule) if x not in read)
                for leaf in read:
                    self._readers.setdefault(leaf, []).append(rule)
                continue
            seen: list[object] = []
            for leaf, level in atoms:
                pending.setdefault(leaf, []).append((level, position, rule))
                if leaf not in seen:
                    seen.append(leaf)
                    self._indexed.setdefault(leaf, []).append(rule)
            for leaf in _order_reads(rule):
                if leaf not in seen:
                    self._on_known.setdefault(leaf, []).append(rule)
        for leaf, items in pending.items():
            items.sort(key=lambda item: (item[0], item[1]))
            self._thresholds[leaf] = ([t for t, _, _ in items], [r for _, _, r in items])

    def around(self, leaf: object, value: Decimal) -> list[Decimal]:
        """The thresholds on `leaf` nearest `value`: the greatest below it, the least above
        it, and `value` itself if it is one (an update of `leaf` within the open interval
        between the two selects no threshold rule)."""
        table = self._thresholds.get(leaf)
        if table is None:
            return []
        thresholds = table[0]
        start = bisect.bisect_left(thresholds, value)
        stop = bisect.bisect_right(thresholds, value)
        out = thresholds[start:stop][:1]
        if start > 0:
            out.append(thresholds[start - 1])
        if stop < len(thresholds):
            out.append(thresholds[stop])
        return out

    def price_levels(self) -> dict[str, list[dict[str, str]]]:
        """Per symbol, the constants its threshold rules compare a price (`bid`, `ask`,
        `last`, `mid`) with, by value (the index's sorted tables): `{"rule", "field", "value"}`
        (what the dashboard's chart draws). Rules that are not threshold rules are absent."""
        out: dict[str, list[dict[str, str]]] = {}
        for leaf, (levels, rules) in self._thresholds.items():
            if not isinstance(leaf, M.Field) or leaf.name not in _PRICES:
                continue
            for level, rule in zip(levels, rules, strict=True):
                out.setdefault(leaf.symbol, []).append({
                    "rule": rule.name or rule.identity, "field": leaf.name,
                    "value": format(level.normalize(), "f") if level else "0"})
        for levels_of in out.values():
            levels_of.sort(key=lambda item: Decimal(item["value"]))  # stable: rule order
        return out

    def leaves(self) -> set[object]:
        """Every market value some rule reads (what the watcher must subscribe to)."""
        return set(self._indexed) | set(self._readers) | set(self._on_known)

    def affected(
        self, leaf: object, old: Decimal | None, new: Decimal | None
    ) -> list[CompiledRule]:
        """The rules an update of `leaf` from `old` to `new` may change (None: unknown)."""
        selected: list[CompiledRule] = list(self._readers.get(leaf, ()))
        if old is None or new is None:
            selected.extend(self._indexed.get(leaf, ()))
            if old is None and new is not None:
                selected.extend(self._on_known.get(leaf, ()))
        else:
            table = self._thresholds.get(leaf)
            if table is not None:
                thresholds, rules = table
                low, high = (old, new) if old <= new else (new, old)
                start = bisect.bisect_left(thresholds, low)
                stop = bisect.bisect_right(thresholds, high)
                selected.extend(rules[start:stop])
        if len(selected) > 1:
            # A rule with two atoms on one value may be selected twice: step it once.
            unique = {id(rule): rule for rule in selected}
            if len(unique) != len(selected):
                selected = list(unique.values())
        return selected


class Timers:
    """When each timed rule must next be stepped without a market change (`next_due`), in a
    heap: the clock pops only the rules that are due instead of stepping every timed rule."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, str]] = []
        self._due: dict[str, datetime] = {}
        self._order = itertools.count()

    def update(self, rule: CompiledRule, state: RuleState, now: datetime) -> None:
        """After `rule` was stepped (or loaded): when it is due next."""
        due = next_due(rule, state, now)
        identity = rule.identity
        if due is None:
            self._due.pop(identity, None)
        elif self._due.get(identity) != due:
            self._due[identity] = due
            heapq.heappush(self._heap, (due, next(self._order), identity))

    def pop_due(self, now: datetime) -> list[str]:
        """The identities due at `now` (each once), removed until `update` sets them again."""
        ready: list[str] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, _, identity = heapq.heappop(heap)
            if self._due.get(identity) == due:  # an entry replaced later is stale: skip it
                del self._due[identity]
                ready.append(identity)
        return ready

    def earliest(self) -> datetime | None:
        """The first moment a rule is due (a virtual clock steps to it), or None."""
        heap = self._heap
        while heap and self._due.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)  # replaced later: stale
        return heap[0][0] if heap else None

    def earliest_after(self, now: datetime) -> datetime | None:
        """The first moment after `now` a rule is due (those due at or before `now` left out:
        a virtual clock that stepped them at `now` need not step them again)."""
        first = self.earliest()
        if first is None or first > now:
            return first
        return min((due for due in self._due.values() if due > now), default=None)

    def __len__(self) -> int:
        return len(self._due)
