"""Syntax tree -> compiled rules, with every semantic check as a diagnostic. Pure.

One pass per rule resolves symbols, types expressions and lowers them to `_model` values; a
second pass over all rules loaded together checks identities and `after` chains. Nothing here
raises for bad input: problems become diagnostics and the rule is left out of the program.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from rules_engine.compiler import _model as M
from rules_engine.compiler._analysis import crosses_atoms
from rules_engine.compiler._base import (
    _SCOPE_NEEDS,
    MAX_NESTING,
    _Bad,
    _did_you_mean,
    _explicit_symbols,
    _has_bare_fields,
    _names_used,
    _slot_name,
    _template_span,
    _too_deep,
)
from rules_engine.compiler._execution import _Execution
from rules_engine.compiler._model import MarketSnapshot
from rules_engine.compiler._protection import _Protection
from rules_engine.compiler._templates import PLACEHOLDERS
from rules_engine.compiler._templates import parse as parse_template
from rules_engine.compiler._timing import _Timing
from rules_engine.core.symbols import SymbolTable
from rules_engine.dsl import KEYWORDS, Diagnostic, SourceFile
from rules_engine.dsl import ast as A

__all__ = ["MarketSnapshot", "RuleCompiler", "compile_rule"]


class RuleCompiler(_Execution, _Protection, _Timing):
    """Compiles the rules of one file against a symbols table (and optionally a market).

    The rule pass is here; its parts are mixins, one module each: `_conditions` (expressions
    and values), `_orders` (place, sizes, prices, brackets), `_timing` (lifecycle, schedules,
    windows), on the shared state and reporting of `_base`.
    """

    def _check_template(self, clause: A.Notify, symbol: str | None, places: bool,
                        after: A.After | None) -> None:
        """E608: a placeholder that is not one (or a malformed brace); E609: one that has no
        value in this rule. `chain` is checked here as `filled`; the parent's own `after`
        is a cross-rule check (compiler/_program.py)."""
        parts, errors = parse_template(clause.text)
        for error in errors:
            self._report(_template_span(self.source, clause.span, clause.text, error.offset,
                                        error.length), "E608", error.message)
        has = {"always": True, "symbol": symbol is not None, "order": places,
               "after": after is not None, "filled": self._chained, "chain": self._chained}
        for part in parts:
            if not part.name:
                continue
            span = _template_span(self.source, clause.span, clause.text, part.offset,
                                  len(part.name) + 2)
            known = PLACEHOLDERS.get(part.name)
            if known is None:
                hint = _did_you_mean(part.name, PLACEHOLDERS)
                self._report(span, "E608", f"unknown placeholder {{{part.name}}}{hint}: the "
                             f"placeholders are {', '.join(sorted(PLACEHOLDERS))} "
                             "(docs/language.md); write `{{` for a literal brace")
            elif not has[known.scope]:
                self._report(span, "E609", f"{{{part.name}}} has a value only in "
                             f"{_SCOPE_NEEDS[known.scope]}: remove it, or add what it needs")

    # ------------------------------------------------------------ rules

    def compile(self, node: A.RuleNode) -> M.CompiledRule | None:
        errors_before = self._error_count()
        self._chained = False
        if node.name is None:
            line = self.source.line(node.span.line)
            if line[:1] in (" ", "\t"):
                self._report(
                    A.Span(node.span.line, 1, node.span.line, len(line) + 1),
                    "E004",
                    "indented line outside a rule: indent clause lines only under a "
                    "`rule NAME:` header, start one-liners in column 1",
                )
                return None
        deep = _too_deep(node)
        if deep is not None:
            self._report(
                deep,
                "E009",
                f"expression nested more than {MAX_NESTING} levels deep (operators, negations "
                "and calls inside one another): split it into simpler conditions",
            )
            return None
        for word in _names_used(node):
            if word.text in KEYWORDS:
                self._report(
                    word.span, "E008", f"{word.text!r} is a reserved keyword and cannot name a rule"
                )
        slots = self._clause_slots(node)
        when: A.When | None = slots.get("when")  # type: ignore[assignment]
        place: A.Place | None = slots.get("place")  # type: ignore[assignment]
        after: A.After | None = slots.get("after")  # type: ignore[assignment]

        if after is not None and after.event.text == "filled":
            self._chained = True
        self._in_chain = after is not None
        symbol = self._resolve_symbol(node, when, place, slots)
        self._rule_symbol = symbol
        self._used = {symbol} if symbol else set()  # the symbols the rule reads

        condition: M.Cond | None = None
        for_seconds = 0
        if when is not None:
            try:
                condition = self._condition(when.cond)
            except _Bad:
                condition = None
            if when.for_duration is not None:
                for_seconds = self._positive_duration(when.for_duration)
            if condition is not None:
                self._check_truth(condition, when.cond.span)

        actions: list[M.Action] = []
        stop_node = slots.get("stop_loss")
        trail = (
            self._trail_distance(stop_node)
            if isinstance(stop_node, A.TrailingStopLoss) else None
        )
        if place is not None and symbol is not None:
            order = self._order(place, stop_node, symbol, trail)  # type: ignore[arg-type]
            if order is not None:
                actions.append(M.PlaceAction(order))
        protection = self._protection(slots, place, after, trail)
        for clause in node.clauses:
            if isinstance(clause, A.CancelAll):
                if symbol is not None:
                    actions.append(M.CancelAllAction(symbol))
            elif isinstance(clause, A.CancelOrders):
                actions.append(M.CancelOrdersAction(clause.rule.text))
            elif isinstance(clause, A.Notify):
                if not clause.text.strip():
                    self._report(clause.span, "W607", "empty notification text")
                self._check_template(clause, symbol, place is not None, after)
                actions.append(M.NotifyAction(clause.text))

        if not actions and not any(
            isinstance(c, A.Place | A.CancelAll | A.CancelOrders | A.Notify) for c in node.clauses
        ) and stop_node is None:  # a guard's stop-loss is its action
            self._report(
                node.span,
                "E404",
                "the rule has no action: add `place ...`, `cancel all`, "
                '`cancel orders of RULE` or `notify "..."`',
            )
        every = slots.get("lifecycle")
        schedule: M.Schedule | None = None
        if isinstance(every, A.Every):
            schedule = self._schedule(every, when, after)
        elif when is None and after is None:
            self._report(
                node.span,
                "E405",
                "the rule has no trigger: add `when CONDITION`, `after RULE filled` or a "
                "schedule (`every 1h max 24`)",
            )

        lifecycle = self._lifecycle(slots, place)
        if self._error_count() > errors_before:
            return None

        after_ref = (after.rule.text, after.event.text) if after is not None else None
        # The normalised text of the rule's meaning: layout, comments and spans play no part,
        # numbers are normalised (0.010 == 0.01). Its hash is the fingerprint, and the
        # identity of an unnamed rule.
        meaning: tuple[object, ...] = (
            symbol, condition, for_seconds, tuple(actions), lifecycle, after_ref
        )
        if schedule is not None:  # appended only when there is one: older texts stay
            meaning = (*meaning, schedule)
        if protection is not None:  # likewise
            meaning = (*meaning, protection)
        canonical_text = repr(meaning)
        fingerprint = M.digest(canonical_text)
        identity = node.name.text if node.name is not None else f"rule-{fingerprint[:12]}"
        max_firings, repeat_s, cancel_s, exp_in, exp_at, window = lifecycle
        return M.CompiledRule(
            identity=identity,
            name=node.name.text if node.name is not None else None,
            path=self.source.path,
            span=node.span,
            symbol=symbol,
            symbols=frozenset(self._used),
            condition=condition,
            for_seconds=for_seconds,
            actions=tuple(actions),
            max_firings=max_firings,
            repeat_seconds=repeat_s,
            cancel_after_seconds=cancel_s,
            expires_in_seconds=exp_in,
            expires_at=exp_at,
            after=after_ref,
            window=window,
            canonical=canonical_text,
            fingerprint=fingerprint,
            crosses=tuple(crosses_atoms(condition)),
            schedule=schedule,
            protection=protection,
        )

    def _error_count(self) -> int:
        return self._errors

    _SLOT: ClassVar[dict[type, str]] = {
        A.When: "when",
        A.Place: "place",
        A.StopLoss: "stop_loss",
        A.TrailingStopLoss: "stop_loss",
        A.MoveStop: "move_stop",
        A.ExitAfter: "exit_after",
        A.CancelAfter: "cancel_after",
        A.Once: "lifecycle",
        A.Repeat: "lifecycle",
        A.Every: "lifecycle",
        A.ExpiresIn: "expires",
        A.ExpiresAt: "expires",
        A.After: "after",
        A.During: "during",
    }

    def _clause_slots(self, node: A.RuleNode) -> dict[str, A.Clause]:
        slots: dict[str, A.Clause] = {}
        for clause in node.clauses:
            slot = self._SLOT.get(type(clause))
            if slot is None:
                continue
            if slot in slots:
                first = slots[slot]
                self._report(
                    clause.span,
                    "E406",
                    f"a rule takes one {_slot_name(slot)} clause; the first is on line "
                    f"{first.span.line}: "
                    + ("join the conditions with `and`" if slot == "when" else "keep one"),
                )
                continue
            slots[slot] = clause
        return slots

    # ------------------------------------------------------------ symbols

    def _resolve_symbol(
        self,
        node: A.RuleNode,
        when: A.When | None,
        place: A.Place | None,
        slots: Mapping[str, A.Clause],
    ) -> str | None:
        if node.on is not None:
            return node.on.text if self._known_symbol(node.on.text, node.on.span) else None
        named: dict[str, A.Span] = {}
        if when is not None:
            for sym, span in _explicit_symbols(when.cond):
                named.setdefault(sym, span)
        needs_symbol = place is not None or any(
            isinstance(c, A.CancelAll | A.StopLoss | A.TrailingStopLoss) for c in node.clauses
        )
        if len(named) > 1:
            if needs_symbol:
                where = place.span if place is not None else node.span
                listed = ", ".join(sorted(named))
                self._report(
                    where,
                    "E110",
                    f"the order's symbol is ambiguous: the condition names {listed}; "
                    f"add `on SYMBOL` to a named rule to say which one it trades",
                )
            return None
        if len(named) == 1:
            sym, span = next(iter(named.items()))
            return sym if self._known_symbol(sym, span) else None
        bare = when is not None and _has_bare_fields(when.cond)
        if needs_symbol and not bare:  # bare fields get their own E109 below
            where = place.span if place is not None else node.span
            self._report(
                where,
                "E110",
                "the rule does not say which symbol it trades: name it in the condition "
                "(`BTC-USDT bid`) or add `on SYMBOL` to a named rule",
            )
        return None




def compile_rule(
    node: A.RuleNode,
    source: SourceFile,
    symbols: SymbolTable,
    market: MarketSnapshot | None = None,
) -> tuple[M.CompiledRule | None, list[Diagnostic]]:
    """Compile one rule on its own (cross-rule checks need `compile_sources`)."""
    compiler = RuleCompiler(source, symbols, market)
    rule = compiler.compile(node)
    return rule, compiler.diagnostics


def sorted_diagnostics(diags: Sequence[Diagnostic]) -> list[Diagnostic]:
    return sorted(diags, key=Diagnostic.sort_key)
