"""Can a condition ever be true? Is it always true? Decided exactly for the common case.

Atoms that compare one quantity with a constant (`bid < 100`, `rsi(14, 1h) > 70`) split that
quantity's domain into a few regions; evaluating the condition at one point of each region
(and at every constant) decides it exactly. Other atoms (two fields compared, `crosses`) are
free booleans. When the number of combinations would be large the analysis says nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from decimal import Decimal

from rules_engine.compiler import _model as M
from rules_engine.compiler._vocab import ANY, Domain, domain_of

__all__ = ["analyse_condition", "crosses_atoms"]

_LIMIT = 4096
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def _domain(value: M.Value) -> Domain:
    if isinstance(value, M.Field):
        return domain_of("field", value.name)
    if (
        isinstance(value, M.Arith)
        and value.op == "/"
        and isinstance(value.left, M.Field)
        and value.left.name == "spread"
        and value.right == M.Field(value.left.symbol, "mid")
    ):
        return domain_of("spread_ratio", "")
    if isinstance(value, M.Depth):
        return domain_of("fn", value.side + "_depth")
    if isinstance(value, M.Indicator | M.CandleField):
        return domain_of("fn", value.kind)
    if isinstance(value, M.Fill):
        return domain_of("fn", value.kind)
    if isinstance(value, M.Balance):
        return domain_of("fn", "balance")
    if isinstance(value, M.Offset) and value.factor > 0:
        return _domain(value.base)
    return ANY


def _test(op: str, x: Decimal, c: Decimal) -> bool:
    if op == "<":
        return x < c
    if op == "<=":
        return x <= c
    if op == ">":
        return x > c
    if op == ">=":
        return x >= c
    if op == "==":
        return x == c
    return x != c


def _points(domain: Domain, constants: list[Decimal]) -> list[Decimal]:
    """One point in every region the constants and the domain bounds cut the line into."""
    marks = sorted(set(constants))
    pts: list[Decimal] = list(marks)
    pts.extend((a + b) / 2 for a, b in itertools.pairwise(marks))
    if marks:
        pts.append(marks[0] - 1)
        pts.append(marks[-1] + 1)
    if domain.low.is_finite():
        if domain.low_closed:
            pts.append(domain.low)
        above = [m for m in marks if m > domain.low]
        pts.append((domain.low + above[0]) / 2 if above else domain.low + 1)
    if domain.high.is_finite():
        if domain.high_closed:
            pts.append(domain.high)
        below = [m for m in marks if m < domain.high]
        pts.append((domain.high + below[-1]) / 2 if below else domain.high - 1)
    return sorted({p for p in pts if domain.contains(p)})


Evaluator = Callable[[dict[object, object]], bool]


def analyse_condition(cond: M.Cond) -> tuple[str, str]:
    """('never' | 'always' | 'depends', reason) for a compiled condition."""
    if isinstance(cond, M.Crosses):
        return "depends", ""  # an edge is never decided by levels alone
    if isinstance(cond, M.Compare):
        fast = _single_compare(cond)
        if fast is not None:
            return fast
    if isinstance(cond, M.All):
        fast = _conjunction(cond.parts)
        if fast is not None:
            return fast
    constants: dict[M.Value, list[Decimal]] = {}
    opaque: list[object] = []

    def build(node: M.Cond) -> Evaluator:
        if isinstance(node, M.All):
            parts = [build(p) for p in node.parts]
            return lambda env: all(p(env) for p in parts)
        if isinstance(node, M.AnyOf):
            parts = [build(p) for p in node.parts]
            return lambda env: any(p(env) for p in parts)
        if isinstance(node, M.Negation):
            inner = build(node.operand)
            return lambda env: not inner(env)
        if isinstance(node, M.Compare):
            left, right, op = node.left, node.right, node.op
            if isinstance(left, M.Const) and isinstance(right, M.Const):
                truth = _test(op, left.value, right.value)
                return lambda env: truth
            if isinstance(left, M.Const):
                left, right, op = right, left, _FLIP[op]
            if isinstance(right, M.Const):
                key, c, fop = left, right.value, op
                constants.setdefault(key, []).append(c)
                return lambda env: _test(fop, env[key], c)  # type: ignore[arg-type]
        atom: object = node
        opaque.append(atom)
        return lambda env: bool(env[atom])

    evaluate = build(cond)
    keys = list(constants)
    domains = {k: _domain(k) for k in keys}
    axes: list[list[object]] = [list(_points(domains[k], constants[k])) for k in keys]
    axes.extend([[True, False] for _ in opaque])
    total = 1
    for axis in axes:
        total *= max(len(axis), 1)
        if total > _LIMIT:
            return "depends", ""
    if any(not axis for axis in axes):
        return "depends", ""
    names = keys + opaque
    seen_true = seen_false = False
    for combo in itertools.product(*axes):
        if evaluate(dict(zip(names, combo, strict=True))):
            seen_true = True
        else:
            seen_false = True
        if seen_true and seen_false:
            return "depends", ""
    verdict = "always" if seen_true else "never"
    reason = ""
    if len(keys) == 1 and not opaque:
        key = keys[0]
        if len(set(constants[key])) == 1 and domains[key].why:
            reason = f": {M.label(key)} {domains[key].why}"
        elif verdict == "never":
            reason = f": no value of {M.label(key)} satisfies all of it"
        else:
            reason = f": every value of {M.label(key)} satisfies it"
    return verdict, reason


def _atom(cond: M.Cond) -> tuple[M.Value, str, Decimal] | None:
    """`(quantity, op, constant)` for a comparison of one quantity with a constant."""
    if not isinstance(cond, M.Compare):
        return None
    left, right, op = cond.left, cond.right, cond.op
    if isinstance(left, M.Const):
        left, right, op = right, left, _FLIP[op]
    if not isinstance(right, M.Const) or isinstance(left, M.Const):
        return None
    return left, op, right.value


def _conjunction(parts: tuple[M.Cond, ...]) -> tuple[str, str] | None:
    """`a and b and ...` over comparisons with constants: decided key by key, exactly."""
    groups: dict[M.Value, list[tuple[str, Decimal]]] = {}
    opaque = False
    for part in parts:
        atom = _atom(part)
        if atom is None:
            if not isinstance(part, M.Crosses | M.Compare):
                return None  # nested and/or/not: the general evaluator decides
            opaque = True
            continue
        groups.setdefault(atom[0], []).append((atom[1], atom[2]))
    all_valid = True
    for key, tests in groups.items():
        points = _points(_domain(key), [c for _, c in tests])
        truths = [all(_test(op, x, c) for op, c in tests) for x in points]
        if not any(truths):
            why = (
                f": no value of {M.label(key)} satisfies all of it"
                if len(tests) > 1
                else (f": {M.label(key)} {_domain(key).why}")
            )
            return "never", why
        all_valid = all_valid and all(truths)
    if all_valid and not opaque and groups:
        return "always", ""
    return "depends", ""


def _single_compare(cond: M.Compare) -> tuple[str, str] | None:
    """The common case, one quantity against one constant, without the general machinery."""
    left, right, op = cond.left, cond.right, cond.op
    if isinstance(left, M.Const):
        left, right, op = right, left, _FLIP[op]
    if not isinstance(right, M.Const) or isinstance(left, M.Const):
        return None
    domain = _domain(left)
    satisfiable, valid = _decide(op, right.value, domain)
    if satisfiable and not valid:
        return "depends", ""
    reason = f": {M.label(left)} {domain.why}" if domain.why else ""
    return ("always" if valid else "never"), reason


def _decide(op: str, c: Decimal, d: Domain) -> tuple[bool, bool]:
    """(some value of the domain passes `x op c`, every value does), for a domain with more
    than one point. Equivalent to testing the points of `_points`, without building them."""
    lo, hi = d.low, d.high
    if op == "<":
        return c > lo, c > hi or (c == hi and not d.high_closed)
    if op == "<=":
        return c > lo or (c == lo and d.low_closed), c >= hi
    if op == ">":
        return c < hi, c < lo or (c == lo and not d.low_closed)
    if op == ">=":
        return c < hi or (c == hi and d.high_closed), c <= lo
    if op == "==":
        return d.contains(c), False
    return True, not d.contains(c)


def crosses_atoms(cond: M.Cond | None) -> list[M.Crosses]:
    """The condition's `crosses` atoms in the order `truth` numbers them."""
    found: list[M.Crosses] = []

    def walk(node: M.Cond) -> None:
        if isinstance(node, M.Crosses):
            found.append(node)
        elif isinstance(node, M.All | M.AnyOf):
            for part in node.parts:
                walk(part)
        elif isinstance(node, M.Negation):
            walk(node.operand)

    if cond is not None:
        walk(cond)
    return found
