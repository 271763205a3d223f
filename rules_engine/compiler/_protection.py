"""Engine-held protection beyond a bracket's fixed stop-loss: a guard (a rule `after ENTRY
filled` with a stop-loss and no `place`), `stop-loss trailing by`, `move stop-loss to PRICE
after RULE filled` and `exit after D`. The rule's own checks are here; the ones that need the
other rules of the chain (siblings, the entry's side) are `protection_problems`. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from rules_engine.compiler import _model as M
from rules_engine.compiler._base import _HUNDRED, _Bad
from rules_engine.compiler._linear import linear
from rules_engine.compiler._orders import _Orders
from rules_engine.compiler._safety import stop_side_problem
from rules_engine.dsl import Diagnostic, Severity
from rules_engine.dsl import ast as A

__all__ = ["protection_problems", "siblings"]


class _Protection(_Orders):
    """The rule pass's part for held protection (mixed into `RuleCompiler`)."""

    def _trail_distance(self, node: A.TrailingStopLoss) -> Decimal | None:
        if not isinstance(node.distance, A.Pct):
            self._report(
                node.distance.span,
                "E418",
                "a trailing stop-loss's distance is a percent: `stop-loss trailing by 2%`",
            )
            return None
        trail = Decimal(node.distance.text) / _HUNDRED
        if not 0 < trail < 1:
            self._report(
                node.distance.span,
                "E418",
                "a trailing stop-loss's distance must be above 0% and below 100%",
            )
            return None
        return trail.normalize()

    def _protection(
        self,
        slots: Mapping[str, A.Clause],
        place: A.Place | None,
        after: A.After | None,
        trail: Decimal | None,
    ) -> M.Protection | None:
        """The rule's held protection, or None (none, or an error reported)."""
        stop_node = slots.get("stop_loss")
        move = slots.get("move_stop")
        exit_ = slots.get("exit_after")
        chained = after is not None and after.event.text == "filled"
        guard = place is None and stop_node is not None
        if guard and not chained:
            assert stop_node is not None
            self._report(
                stop_node.span,
                "E408",
                "stop-loss needs a `place` in the same rule (it is the protective exit of that "
                "order), or `after ENTRY filled` (a guard: one stop for what the chain holds)",
            )
            return None
        ok = True
        exit_seconds: int | None = None
        if isinstance(exit_, A.ExitAfter):
            why = None
            if not chained:
                why = "it closes what a chain holds: it goes in a rule `after ENTRY filled`"
            elif place is not None and place.order_type.text != "limit":
                why = "it goes beside a resting `place limit ... at PRICE` (a take-profit)"
            elif place is None and stop_node is None:
                why = "it goes in a bracket or a guard (a rule with a stop-loss)"
            if why is not None:
                self._report(exit_.span, "E416", f"`exit after`: {why}")
                ok = False
            else:
                exit_seconds = self._positive_duration(exit_.duration)
        move_to: M.Value | None = None
        move_after: str | None = None
        if isinstance(move, A.MoveStop):
            why = None
            if stop_node is None:
                why = "it needs a stop-loss in the same rule: `stop-loss at fill_price - 2%`"
            elif isinstance(stop_node, A.TrailingStopLoss):
                why = "a trailing stop-loss moves by itself: use `stop-loss at PRICE` with it"
            elif not chained:
                why = "it names a sibling rule of a chain: it goes in a rule `after ENTRY filled`"
            if why is not None:
                self._report(move.span, "E413", f"`move stop-loss`: {why}")
                ok = False
            else:
                try:
                    move_to = self._value(move.price)
                    move_after = move.rule.text
                except _Bad:
                    ok = False
        stop: M.Value | None = None
        if guard and isinstance(stop_node, A.StopLoss):
            try:
                stop = self._value(stop_node.price)
            except _Bad:
                ok = False
        elif guard and trail is None:
            ok = False  # E418 was reported
        if not ok:
            return None
        if not guard and trail is None and move_after is None and exit_seconds is None:
            return None
        return M.Protection(guard, stop, trail, move_after, move_to, exit_seconds)


def siblings(rule: M.CompiledRule, rules: Iterable[M.CompiledRule]) -> list[M.CompiledRule]:
    """The other rules armed by the same parent's fill (`after ENTRY filled`) on the same
    symbol: a guard's exits, a `move stop-loss ... after RULE`'s candidates."""
    if rule.after is None or rule.after[1] != "filled":
        return []
    return [r for r in rules if r.identity != rule.identity and r.after == rule.after
            and r.symbol == rule.symbol]


def protection_problems(
    rules: Iterable[tuple[str, M.CompiledRule]], by_identity: Mapping[str, M.CompiledRule]
) -> list[Diagnostic]:
    """The checks that need the chain: a guard's entry, siblings and stop side; a `move
    stop-loss`'s named rule and new price."""
    out: list[Diagnostic] = []
    every = list(by_identity.values())
    rules = list(rules)
    for path, rule in rules:
        held = rule.protection
        if held is None:
            continue

        def report(code: str, message: str, path: str = path, rule: M.CompiledRule = rule) -> None:
            out.append(Diagnostic(path, rule.span, code, Severity.ERROR, message))

        assert rule.after is not None  # a protection is only compiled in a chain
        parent = by_identity.get(rule.after[0])
        entry = parent.order if parent is not None else None
        family = siblings(rule, every)
        if held.guard and entry is not None:
            exit_side = "sell" if entry.side == "buy" else "buy"
            if entry.symbol != rule.symbol:
                report("E415", f"a guard protects its entry's position: {rule.identity} is on "
                       f"{rule.symbol}, its entry {parent.identity if parent else '?'} on "
                       f"{entry.symbol}; put both `on` the same symbol")
            for other in family:
                if other.protection is not None and other.protection.guard and (
                        other.identity < rule.identity):
                    report("E415", f"{other.identity} already guards this entry: one guard "
                           "per entry (its stop covers what every exit leaves)")
                order = other.order
                if order is not None and order.side == exit_side and order.stop_loss is not None:
                    report("E415", f"{other.identity} has a stop-loss of its own beside the "
                           f"guard {rule.identity}: the guard's stop covers what every exit "
                           "leaves, remove the exit's `stop-loss`")
            problem = stop_side_problem(linear(held.stop, rule.symbol or ""),
                                        exit_side == "sell")
            if problem is not None:
                report("E705", f"inverted guard: {problem} (the entry {entry.side}s, the guard "
                       f"{exit_side}s: its stop belongs "
                       f"{'below' if exit_side == 'sell' else 'above'} the fill)")
        if held.move_after is not None:
            named = by_identity.get(held.move_after)
            if named is None or named not in family or named.order is None:
                why = ("is not a rule" if named is None else "places no order"
                       if named in family else f"is not armed by `after {rule.after[0]} "
                       "filled` on the same symbol")
                report("E413", f"`move stop-loss ... after {held.move_after} filled`: "
                       f"{held.move_after} {why}; it names a sibling exit of the same entry")
                continue
            target = rule.order or named.order
            owner = rule.identity if rule.order is not None else named.identity
            side = target.side
            tp, moved = linear(target.price, rule.symbol or ""), linear(
                held.move_to, rule.symbol or "")
            if tp is not None and moved is not None and tp.anchor == moved.anchor and (
                (tp.factor <= moved.factor and tp.offset <= moved.offset) if side == "sell"
                else (tp.factor >= moved.factor and tp.offset >= moved.offset)
            ):
                where = "at or above" if side == "sell" else "at or below"
                report("E705", f"`move stop-loss`: the new stop is not on the losing side of "
                       f"the take-profit of {owner} ({where} it): it would trigger at once")
    out.extend(_overcommitted(rules, every))
    return out


def _fill_share(order: M.OrderSpec) -> Decimal | None:
    """The share of the parent's fill an order's size is (`filled_size`: 1, `50% of
    filled_size`: 0.5), or None for any other size."""
    amount = order.size.amount
    if order.size.kind != "base":
        return None
    if amount == M.Fill("filled_size"):
        return Decimal(1)
    if isinstance(amount, M.Arith) and amount.op == "*" and amount.left == M.Fill(
            "filled_size") and isinstance(amount.right, M.Const):
        return amount.right.value
    return None


def _overcommitted(
    rules: Iterable[tuple[str, M.CompiledRule]], every: list[M.CompiledRule]
) -> list[Diagnostic]:
    """E417: the exits of one entry fill, on one side, that together take more than the fill
    (`60% of filled_size` twice): the last of them would sell what the chain does not hold."""
    out: list[Diagnostic] = []
    paths = {rule.identity: path for path, rule in rules}
    groups: dict[tuple[str, str, str], list[tuple[M.CompiledRule, Decimal]]] = {}
    for rule in every:
        order = rule.order
        if rule.after is None or rule.after[1] != "filled" or order is None:
            continue
        share = _fill_share(order)
        if share is not None:
            key = (rule.after[0], order.symbol, order.side)
            groups.setdefault(key, []).append((rule, share))
    for (parent, _, side), members in groups.items():
        members.sort(key=lambda m: m[0].identity)
        total = Decimal(0)
        for rule, share in members:
            total += share
            if total > 1 and rule.identity in paths:
                names = ", ".join(m.identity for m, _ in members)
                out.append(Diagnostic(
                    paths[rule.identity], rule.span, "E417", Severity.ERROR,
                    f"the {side}s armed by `after {parent} filled` ({names}) take "
                    f"{(total * _HUNDRED).normalize():f}% of its fill: more than the chain "
                    "holds; their shares of filled_size add up to 100% at most"))
    return out
