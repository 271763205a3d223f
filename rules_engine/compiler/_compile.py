"""Syntax tree -> compiled rules, with every semantic check as a diagnostic. Pure.

One pass per rule resolves symbols, types expressions and lowers them to `_model` values; a
second pass over all rules loaded together checks identities and `after` chains. Nothing here
raises for bad input: problems become diagnostics and the rule is left out of the program.
"""

from __future__ import annotations

import difflib
import functools
import re
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation, localcontext
from typing import ClassVar, TypeVar

from rules_engine.compiler import _model as M
from rules_engine.compiler._analysis import analyse_condition, crosses_atoms
from rules_engine.compiler._model import MarketSnapshot
from rules_engine.compiler._safety import bracket_problem, stop_limit_problem
from rules_engine.compiler._templates import PLACEHOLDERS
from rules_engine.compiler._templates import parse as parse_template
from rules_engine.compiler._vocab import (
    BOOK_FUNCTIONS,
    DAYS,
    FIELDS,
    FILL_NAMES,
    FUNCTIONS,
    INDICATORS,
    MACDS,
    MAX_PERIOD,
    PERCENT_FIELDS,
    TIMEFRAMES,
)
from rules_engine.core.symbols import SymbolInfo, SymbolTable
from rules_engine.dsl import KEYWORDS, Diagnostic, Severity, SourceFile
from rules_engine.dsl import ast as A

__all__ = ["MarketSnapshot", "RuleCompiler", "compile_rule"]

_T = TypeVar("_T")
_SEVERITY = {"E": Severity.ERROR, "W": Severity.WARNING}
_HUNDRED = Decimal(100)
_TWO = Decimal(2)  # the bands' width when none is given
_TEN = Decimal(10)
_FAR_FROM_MARKET = Decimal("0.10")  # W602: a literal limit price more than 10% from last
MAX_NESTING = 50  # E009: operators, negations and calls inside one another, in one expression
MAX_DURATION_S = 36500 * 86400  # E204: a hundred years; longer ones overflow the clock's dates
MAX_FIRINGS = 1_000_000  # E409
SIGNAL_WINDOW_S = 60  # `signal "NAME"` without `within`: true for a minute after it arrived
SIGNAL_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")  # E111: a TOML bare key, short in the meta table


class _Bad(Exception):
    """Internal: an expression could not be compiled; its diagnostic is already recorded."""


class RuleCompiler:
    """Compiles the rules of one file against a symbols table (and optionally a market)."""

    def __init__(
        self,
        source: SourceFile,
        symbols: SymbolTable,
        market: MarketSnapshot | None = None,
        signals: frozenset[str] | None = None,
    ) -> None:
        self.source = source
        self.symbols = symbols
        self.market = market
        self.signals = signals  # the configured signal names; None: not known (no W112)
        self.diagnostics: list[Diagnostic] = []
        self._reported: set[tuple[str, A.Span]] = set()
        self._errors = 0
        self._no_min_funds: set[str] = set()  # N603 is said once per symbol and file
        # per-rule state
        self._rule_symbol: str | None = None
        self._used: set[str] = set()
        self._chained = False

    # ------------------------------------------------------------ reporting

    def _report(self, span: A.Span, code: str, message: str) -> None:
        key = (code, span)
        if key in self._reported:
            return  # the same finding reached twice (a symbol checked as rule and as field)
        self._reported.add(key)
        severity = _SEVERITY.get(code[0], Severity.NOTE)
        if severity is Severity.ERROR:
            self._errors += 1
        self.diagnostics.append(Diagnostic(self.source.path, span, code, severity, message))

    def _fail(self, span: A.Span, code: str, message: str) -> _Bad:
        self._report(span, code, message)
        return _Bad()

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
        if place is not None and symbol is not None:
            order = self._order(place, slots.get("stop_loss"), symbol)  # type: ignore[arg-type]
            if order is not None:
                actions.append(M.PlaceAction(order))
        elif place is None and "stop_loss" in slots:
            sl: A.StopLoss = slots["stop_loss"]  # type: ignore[assignment]
            self._report(
                sl.span,
                "E408",
                "stop-loss needs a `place` in the same rule: it is "
                "the protective exit of that order",
            )
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
        ):
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
        )

    def _error_count(self) -> int:
        return self._errors

    _SLOT: ClassVar[dict[type, str]] = {
        A.When: "when",
        A.Place: "place",
        A.StopLoss: "stop_loss",
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
        needs_symbol = place is not None or any(isinstance(c, A.CancelAll) for c in node.clauses)
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

    def _known_symbol(self, symbol: str, span: A.Span) -> bool:
        info = self.symbols.get(symbol)
        if info is None:
            hint = _did_you_mean(symbol, self.symbols.keys())
            self._report(
                span,
                "E101",
                f"unknown symbol {symbol!r}{hint}; the symbols list is of "
                f"{self.symbols.as_of:%Y-%m-%d}: pass --symbols FILE or --fetch-symbols for a "
                "newer one",
            )
            return False
        if not info.enable_trading:
            self._report(span, "W312", f"{symbol} is not enabled for trading in the symbols list")
        return True

    # ------------------------------------------------------------ expressions

    def _condition(self, expr: A.Expr) -> M.Cond:
        if isinstance(expr, A.BoolOp):
            left, right = self._both(self._condition, expr.left, expr.right)
            if expr.op == "and":
                return M.All(_flatten(M.All, left, right))
            return M.AnyOf(_flatten(M.AnyOf, left, right))
        if isinstance(expr, A.Not):
            return M.Negation(self._condition(expr.operand))
        if isinstance(expr, A.Cmp):
            return self._compare(expr)
        if isinstance(expr, A.Cross):
            lhs, rhs = self._pair(expr.left, expr.right)
            return M.Crosses(expr.direction, lhs, rhs)
        if isinstance(expr, A.Between):
            value = self._value(expr.operand, allow_pct=False)
            low, high = self._value(expr.low), self._value(expr.high)
            value, low = self._pct_pair(expr.operand, value, expr.low, low)
            value, high = self._pct_pair(expr.operand, value, expr.high, high)
            return M.All((M.Compare(">=", value, low), M.Compare("<=", value, high)))
        if isinstance(expr, A.SignalRef):
            return self._signal(expr)
        raise self._fail(
            expr.span,
            "E201",
            "expected a condition (such as `bid < 60000`), found a value",
        )

    def _signal(self, expr: A.SignalRef) -> M.Signaled:
        """`signal "NAME" [within D]` (docs/language.md, Signals)."""
        if not SIGNAL_NAME.fullmatch(expr.name):
            raise self._fail(
                expr.name_span,
                "E111",
                f"{expr.name!r} is not a signal name: write 1 to 40 letters, digits, `_` or "
                '`-` (`signal "breakout"`), the name of its [signals.NAME] table in the config',
            )
        window = SIGNAL_WINDOW_S
        if expr.window is not None:
            window = self._positive_duration(expr.window)
        if self.signals is not None and expr.name not in self.signals:
            self._report(
                expr.name_span,
                "W112",
                f"signal {expr.name!r} is not configured, so it never arrives: add "
                f'[signals.{expr.name}] with secret = "..." to the watcher\'s config',
            )
        return M.Signaled(M.Signal(expr.name), window)

    def _both(
        self, compile_one: Callable[[A.Expr], _T], left: A.Expr, right: A.Expr
    ) -> tuple[_T, _T]:
        """Compile both operands even when the first fails, so one run reports both."""
        try:
            a = compile_one(left)
        except _Bad:
            compile_one(right)
            raise
        return a, compile_one(right)

    def _compare(self, expr: A.Cmp) -> M.Compare:
        left, right = self._pair(expr.left, expr.right)
        return M.Compare(expr.op, left, right)

    def _pair(self, left_node: A.Expr, right_node: A.Expr) -> tuple[M.Value, M.Value]:
        """Both sides of a comparison; a percent side is only legal against spread/change."""
        left, right = self._both(
            lambda node: self._value(node, allow_pct=True), left_node, right_node
        )
        left, right = self._pct_pair(left_node, left, right_node, right)
        return left, right

    def _pct_pair(
        self, a_node: A.Expr, a: M.Value, b_node: A.Expr, b: M.Value
    ) -> tuple[M.Value, M.Value]:
        a_pct, b_pct = _is_pct(a_node), _is_pct(b_node)
        if not (a_pct or b_pct):
            return a, b
        if a_pct and b_pct:
            raise self._fail(b_node.span, "E202", _PCT_RULE)
        other = b if a_pct else a
        other_node = b_node if a_pct else a_node
        if isinstance(other, M.Indicator) and other.kind == "change":
            return a, b  # `change(24, 1h) > 5%`: a rate, as the 24h change
        if not (isinstance(other, M.Field) and other.name in PERCENT_FIELDS):
            raise self._fail((a_node if a_pct else b_node).span, "E202", _PCT_RULE)
        del other_node
        assert isinstance(other, M.Field)
        if other.name == "spread":
            # `spread < 0.1%` compares the spread with mid: spread / mid < 0.001.
            other = M.Arith("/", other, M.Field(other.symbol, "mid"))
        return (a, other) if a_pct else (other, b)

    def _value(self, expr: A.Expr, *, allow_pct: bool = False) -> M.Value:
        if isinstance(expr, A.Num):
            return M.Const(_decimal(expr.text))
        if isinstance(expr, A.Pct):
            if not allow_pct:
                raise self._fail(expr.span, "E202", _PCT_RULE)
            return M.Const((Decimal(expr.text) / _HUNDRED).normalize())
        if isinstance(expr, A.FieldRef):
            return self._field(expr)
        if isinstance(expr, A.Call):
            return self._call(expr)
        if isinstance(expr, A.Bin):
            return self._binary(expr)
        if isinstance(expr, A.Neg):
            inner = self._value(expr.operand, allow_pct=allow_pct)
            if isinstance(inner, M.Const):
                return M.Const(-inner.value)
            return M.Negate(inner)
        if isinstance(expr, A.Dur):
            raise self._fail(
                expr.span,
                "E204",
                f"a duration ({expr.text}) is not a value here: durations go after `for`, "
                "`every`, `cancel after`, `expires in`, or as a timeframe argument",
            )
        raise self._fail(
            expr.span,
            "E201",
            "expected a value (a number, field or function), found a condition",
        )

    def _binary(self, expr: A.Bin) -> M.Value:
        left = self._value(expr.left)
        if isinstance(expr.right, A.Pct):
            if expr.op not in "+-":
                raise self._fail(expr.right.span, "E202", _PCT_RULE)
            share = Decimal(expr.right.text) / _HUNDRED
            factor = 1 + share if expr.op == "+" else 1 - share
            if factor <= 0:
                raise self._fail(
                    expr.right.span,
                    "E202",
                    f"`- {expr.right.text}%` would make the value zero or negative",
                )
            if isinstance(left, M.Const):
                return M.Const((left.value * factor).normalize())
            return M.Offset(left, factor.normalize())
        right = self._value(expr.right)
        if isinstance(left, M.Const) and isinstance(right, M.Const):
            try:
                return M.Const(_fold(expr.op, left.value, right.value))
            except (ZeroDivisionError, InvalidOperation):
                raise self._fail(expr.span, "E206", "division by zero") from None
        if expr.op == "/" and isinstance(right, M.Const) and right.value == 0:
            raise self._fail(expr.right.span, "E206", "division by zero")
        return M.Arith(expr.op, left, right)

    def _symbol_for(self, symbol: str | None, symbol_span: A.Span | None, span: A.Span) -> str:
        if symbol is not None:
            if not self._known_symbol(symbol, symbol_span or span):
                raise _Bad()
            self._used.add(symbol)
            return symbol
        if self._rule_symbol is None:
            raise self._fail(
                span,
                "E109",
                "this field has no symbol: write `BTC-USDT bid`, or add `on SYMBOL` to a named "
                "rule",
            )
        return self._rule_symbol

    def _field(self, expr: A.FieldRef) -> M.Value:
        name = expr.name
        if name in FILL_NAMES:
            if expr.symbol is not None:
                raise self._fail(
                    expr.span, "E104", f"{name} belongs to the parent order and takes no symbol"
                )
            if not self._chained:
                raise self._fail(
                    expr.span,
                    "E203",
                    f"{name} exists only in a chained rule: add `after RULE filled`",
                )
            return M.Fill(name)
        if name not in FIELDS:
            if name in FUNCTIONS:
                raise self._fail(expr.name_span, "E108", f"{name} is a function: {_USAGE[name]}")
            hint = _did_you_mean(name, FIELDS | FILL_NAMES | FUNCTIONS)
            raise self._fail(expr.name_span, "E104", f"unknown field {name!r}{hint}")
        symbol = self._symbol_for(expr.symbol, expr.symbol_span, expr.span)
        return M.Field(symbol, name)

    def _call(self, expr: A.Call) -> M.Value:
        name = expr.name
        if name not in FUNCTIONS:
            if name in FIELDS or name in FILL_NAMES:
                raise self._fail(
                    expr.name_span,
                    "E105",
                    f"{name} is a field, not a function: write `{name}` without parentheses",
                )
            hint = _did_you_mean(name, FUNCTIONS)
            raise self._fail(expr.name_span, "E105", f"unknown function {name!r}{hint}")
        symbol = self._symbol_for(expr.symbol, expr.symbol_span, expr.span)
        args = expr.args
        if name in BOOK_FUNCTIONS:
            if len(args) != 1 or not isinstance(args[0], A.Pct):
                raise self._fail(expr.span, "E108", f"{_USAGE[name]}")
            pct = Decimal(args[0].text)
            if not 0 < pct <= _HUNDRED:
                raise self._fail(args[0].span, "E108", f"{name} takes a percent in (0, 100]")
            return M.Depth(symbol, name.split("_")[0], pct / _HUNDRED)
        if name in MACDS:
            return self._macd(expr, symbol)
        if name in INDICATORS:
            widths = 1 if name in ("bb_upper", "bb_lower") else 0
            if not 2 <= len(args) <= 2 + widths:
                raise self._fail(expr.span, "E108", _USAGE[name])
            period = self._period(args[0], name)
            params: tuple[Decimal, ...] = ()
            if widths:
                params = (self._width(args[1], name) if len(args) == 3 else _TWO,)
            return M.Indicator(symbol, name, period, self._timeframe(args[-1]), params)
        if len(args) != 1:
            raise self._fail(expr.span, "E108", _USAGE[name])
        return M.CandleField(symbol, name, self._timeframe(args[0]))

    def _macd(self, expr: A.Call, symbol: str) -> M.Indicator:
        """`macd(tf)` (12, 26, 9) or `macd(fast, slow, signal, tf)`; the same for the signal
        and the histogram."""
        name, args = expr.name, expr.args
        if len(args) not in (1, 4):
            raise self._fail(expr.span, "E108", _USAGE[name])
        timeframe = self._timeframe(args[-1])
        if len(args) == 1:
            return M.Indicator(symbol, name, 12, timeframe, (Decimal(26), Decimal(9)))
        fast, slow, signal = (self._period(node, name) for node in args[:3])
        if fast >= slow:
            raise self._fail(
                expr.span,
                "E108",
                f"{name}'s fast period ({fast}) must be below its slow one ({slow}): "
                f"{_USAGE[name]}",
            )
        return M.Indicator(symbol, name, fast, timeframe, (Decimal(slow), Decimal(signal)))

    def _width(self, node: A.Expr, name: str) -> Decimal:
        """A band's width in standard deviations: a number above 0, at most 10."""
        if not isinstance(node, A.Num) or len(node.text) > 15:
            raise self._fail(node.span, "E108", f"{name}'s width is a number: {_USAGE[name]}")
        width = _decimal(node.text)
        if not 0 < width <= _TEN:
            raise self._fail(
                node.span,
                "E108",
                f"{name}'s width is a number of standard deviations above 0 and at most 10",
            )
        return width

    def _period(self, node: A.Expr, name: str) -> int:
        least = 2 if name in ("rsi", "bb_upper", "bb_middle", "bb_lower") else 1
        if not isinstance(node, A.Num) or "." in node.text:
            raise self._fail(
                node.span, "E108", f"{name} needs a whole number of candles first: {_USAGE[name]}"
            )
        period = int(node.text) if len(node.text) <= 15 else MAX_PERIOD + 1
        if not least <= period <= MAX_PERIOD:
            raise self._fail(
                node.span, "E108", f"{name} period must be between {least} and {MAX_PERIOD}"
            )
        return period

    def _timeframe(self, node: A.Expr) -> str:
        if isinstance(node, A.Dur) and node.text in TIMEFRAMES:
            return node.text
        text = node.text if isinstance(node, A.Dur | A.Num) else "this"
        hint = _did_you_mean(text, TIMEFRAMES) if isinstance(node, A.Dur) else ""
        raise self._fail(
            node.span,
            "E106",
            f"unknown timeframe {text!r}{hint}: use one of {', '.join(TIMEFRAMES)}",
        )

    # ------------------------------------------------------------ truth analysis

    def _check_truth(self, cond: M.Cond, span: A.Span) -> None:
        verdict, reason = analyse_condition(cond)
        if verdict == "never":
            self._report(
                span, "E501", f"this condition can never be true{reason}: the rule would never fire"
            )
        elif verdict == "always":
            self._report(
                span,
                "W502",
                f"this condition is always true{reason}: the rule fires "
                "as soon as the data is fresh",
            )

    # ------------------------------------------------------------ orders

    def _order(
        self, place: A.Place, stop_loss: A.StopLoss | None, symbol: str
    ) -> M.OrderSpec | None:
        info = self.symbols[symbol]
        otype, side = place.order_type.text, place.side.text
        ok = True
        try:
            size = self._size(place, info)
        except _Bad:
            ok, size = False, None
        price: M.Value | None = None
        if place.price is not None:
            if otype in ("market", "trailing-stop"):
                self._report(
                    place.price.span,
                    "E309",
                    f"a {otype} order takes no `at` price"
                    + (
                        "; use `place limit ... at PRICE`"
                        if otype == "market"
                        else "; it fires when the price moves `by` the given percent"
                    ),
                )
                ok = False
            else:
                try:
                    price = self._value(place.price)
                except _Bad:
                    ok = False
        elif otype == "stop":
            self._report(
                place.span,
                "E309",
                "a stop order needs its trigger price: `place stop sell 0.01 at 61000`",
            )
            ok = False
        elif otype == "limit":
            where = "the best bid" if side == "buy" else "the best ask"
            self._report(
                place.order_type.span,
                "W601",
                f"limit order without `at`: it will join the book at {where} of {symbol} "
                "at the moment the rule fires",
            )
        trail: Decimal | None = None
        if place.trail is not None:
            if otype != "trailing-stop":
                self._report(
                    place.trail.span,
                    "E309",
                    "`by x%` belongs to a trailing-stop: `place trailing-stop sell 0.01 by 2%`",
                )
                ok = False
            elif not isinstance(place.trail, A.Pct):
                self._report(place.trail.span, "E202", "a trailing distance is a percent: `by 2%`")
                ok = False
            else:
                trail = Decimal(place.trail.text) / _HUNDRED
                if not 0 < trail < 1:
                    self._report(
                        place.trail.span,
                        "E309",
                        "a trailing distance must be above 0% and below 100%",
                    )
                    ok = False
        elif otype == "trailing-stop":
            self._report(
                place.span,
                "E309",
                "a trailing-stop needs its distance: `place trailing-stop sell 0.01 by 2%`",
            )
            ok = False

        good, limit = self._stop_limit(place, price, info)
        ok = good and ok

        tif, post_only, hidden = self._options(place, otype)
        if tif is None:
            ok = False

        if isinstance(price, M.Const):
            what = "trigger price" if otype == "stop" else "price"
            ok = self._check_price(price.value, place.price, info, side, what) and ok
        if size is not None:
            self._check_value(size, price, place, info)

        stop: M.Value | None = None
        if stop_loss is not None:
            stop = self._stop_loss(stop_loss, place, price, info)
            if stop is None:
                ok = False
        if not ok or size is None or tif is None:
            return None
        return M.OrderSpec(
            symbol=symbol,
            order_type=otype,
            side=side,
            size=size,
            price=price,
            trail=trail,
            time_in_force=tif,
            post_only=post_only,
            hidden=hidden,
            stop_loss=stop,
            limit=limit,
        )

    def _stop_limit(
        self, place: A.Place, trigger: M.Value | None, info: SymbolInfo
    ) -> tuple[bool, M.Value | None]:
        """A stop-limit's limit price (`... at 61000 limit 60900`, None without one), checked
        against the symbol's ticks and its side of the trigger; False when it is wrong."""
        node = place.limit
        if node is None:
            return True, None
        otype, side = place.order_type.text, place.side.text
        if otype != "stop":
            self._report(
                node.span,
                "E309",
                "`limit PRICE` belongs to a stop order: `place stop sell 0.01 at 61000 limit "
                "60900`"
                + ("; a limit order's price is its `at`" if otype == "limit" else ""),
            )
            return False, None
        try:
            limit = self._value(node)
        except _Bad:
            return False, None
        if isinstance(limit, M.Const) and not self._check_price(
            limit.value, node, info, side, "limit price"
        ):
            return False, None
        problem = None if trigger is None else stop_limit_problem(
            trigger, limit, side, info.symbol)
        if problem is not None:
            sell = side == "sell"
            moving, where = ("falls", "at or below") if sell else ("rises", "at or above")
            self._report(
                node.span,
                "E314",
                f"{problem}: once triggered it rests "
                f"{'above' if sell else 'below'} the market and does not {side} while the "
                f"price {moving} on; its limit belongs {where} the trigger (`place stop "
                f"{side} 0.01 at 61000 limit {'60900' if sell else '61100'}`)",
            )
            return False, None
        return True, limit

    def _options(self, place: A.Place, otype: str) -> tuple[str | None, bool, bool]:
        seen: dict[str, A.Word] = {}
        for opt in place.options:
            if opt.text in seen:
                self._report(opt.span, "W606", f"{opt.text} is given twice")
            seen.setdefault(opt.text, opt)
        ok = True
        if "ioc" in seen and "fok" in seen:
            self._report(seen["fok"].span, "E308", "ioc and fok exclude each other: choose one")
            ok = False
        if "post-only" in seen:
            clash = [o for o in ("ioc", "fok") if o in seen]
            if clash:
                self._report(
                    seen["post-only"].span,
                    "E308",
                    f"post-only cannot go with {clash[0]}: a post-only order must rest "
                    f"on the book, an {clash[0]} order never rests",
                )
                ok = False
        if otype != "limit" and place.limit is None:  # a stop-limit takes them too
            for name in ("post-only", "ioc", "fok", "hidden"):
                if name in seen:
                    self._report(
                        seen[name].span,
                        "E308",
                        f"{name} applies to limit orders only, not to a {otype} order",
                    )
                    ok = False
        if not ok:
            return None, False, False
        tif = "IOC" if "ioc" in seen else "FOK" if "fok" in seen else "GTC"
        return tif, "post-only" in seen, "hidden" in seen

    def _size(self, place: A.Place, info: SymbolInfo) -> M.SizeSpec:
        node = place.size
        side = place.side.text
        if node.kind == "share":
            if not isinstance(node.amount, A.Pct):
                raise self._fail(
                    node.amount.span, "E310", "`of` takes a percent of a balance: `25% of USDT`"
                )
            share = Decimal(node.amount.text) / _HUNDRED
            if not 0 < share <= 1:
                raise self._fail(
                    node.amount.span,
                    "E310",
                    "a share of the balance must be above 0% and at most 100%",
                )
            assert node.currency is not None
            spend = info.quote_currency if side == "buy" else info.base_currency
            if node.currency.text != spend:
                raise self._fail(
                    node.currency.span,
                    "E307",
                    f"a {side} of {info.symbol} spends {spend}: write `{node.amount.text}% of "
                    f"{spend}`",
                )
            return M.SizeSpec("share", M.Const(share), node.currency.text)
        amount = self._value(node.amount)
        if node.kind == "funds":
            assert node.currency is not None
            cur = node.currency.text
            if cur not in self.symbols.currencies:
                hint = _did_you_mean(cur, self.symbols.currencies)
                raise self._fail(node.currency.span, "E103", f"unknown currency {cur!r}{hint}")
            if cur != info.quote_currency:
                extra = (
                    f"; a size in {cur} is written without a unit: `place ... {_num(amount)}`"
                    if cur == info.base_currency
                    else ""
                )
                raise self._fail(
                    node.currency.span,
                    "E307",
                    f"funds for {info.symbol} are in its quote currency {info.quote_currency}, "
                    f"not {cur}{extra}",
                )
            return M.SizeSpec("funds", amount, cur)
        return M.SizeSpec("base", amount, None)

    def _check_value(
        self, size: M.SizeSpec, price: M.Value | None, place: A.Place, info: SymbolInfo
    ) -> None:
        otype = place.order_type.text
        node = place.size.amount
        span = node.span
        if not isinstance(size.amount, M.Const) or size.kind == "share":
            return
        amount = size.amount.value
        sym = info.symbol
        if amount <= 0:
            self._report(span, "E311", "the size must be above zero")
            return
        if size.kind == "base":
            errors = self._errors
            if amount < info.base_min_size:
                self._report(
                    span,
                    "E301",
                    f"size {_fmt(amount)} is below {sym}'s baseMinSize {_fmt(info.base_min_size)}",
                )
            elif amount > info.base_max_size:
                self._report(
                    span,
                    "E302",
                    f"size {_fmt(amount)} is above {sym}'s baseMaxSize {_fmt(info.base_max_size)}",
                )
            fixed = _multiple_below(amount, info.base_increment)
            if fixed != amount:
                self._report(
                    span,
                    "E303",
                    f"size {_fmt(amount)} is not a multiple of {sym}'s "
                    f"baseIncrement {_fmt(info.base_increment)}: write {_fmt(fixed)}",
                )
            if isinstance(price, M.Const) and otype == "limit" and self._errors == errors:
                self._check_min_funds(amount * price.value, span, info, "order value")
            return
        # funds in quote currency
        if otype == "market":
            if amount < info.quote_min_size:
                self._report(
                    span,
                    "E305",
                    f"funds {_fmt(amount)} {info.quote_currency} are below "
                    f"{sym}'s quoteMinSize {_fmt(info.quote_min_size)}",
                )
                return
            if amount > info.quote_max_size:
                self._report(
                    span,
                    "E306",
                    f"funds {_fmt(amount)} {info.quote_currency} are above "
                    f"{sym}'s quoteMaxSize {_fmt(info.quote_max_size)}",
                )
        fixed = _multiple_below(amount, info.quote_increment)
        if fixed != amount:
            self._report(
                span,
                "E313",
                f"funds {_fmt(amount)} are not a multiple of {sym}'s "
                f"quoteIncrement {_fmt(info.quote_increment)}: write {_fmt(fixed)}",
            )
        self._check_min_funds(amount, span, info, "funds")

    def _check_min_funds(self, value: Decimal, span: A.Span, info: SymbolInfo, what: str) -> None:
        if info.min_funds is None:
            if info.symbol in self._no_min_funds:
                return
            self._no_min_funds.add(info.symbol)
            self._report(
                span,
                "N603",
                f"cannot check order values against minFunds: the symbols list has none for "
                f"{info.symbol} (pass --symbols or --fetch-symbols for a current list); "
                "the exchange checks it when an order is sent",
            )
        elif value < info.min_funds:
            self._report(
                span,
                "E305",
                f"{what} {_fmt(value)} {info.quote_currency} is below "
                f"{info.symbol}'s minFunds {_fmt(info.min_funds)}",
            )

    def _check_price(
        self, price: Decimal, node: A.Expr | None, info: SymbolInfo, side: str, what: str
    ) -> bool:
        span = node.span if node is not None else A.Span(1, 1, 1, 1)
        if price <= 0:
            self._report(span, "E311", f"the {what} must be above zero")
            return False
        ok = True
        down = _multiple_below(price, info.price_increment)
        if down != price:
            inc = info.price_increment
            fixed = down if side == "buy" else down + inc
            self._report(
                span,
                "E304",
                f"{what} {_fmt(price)} is not a multiple of "
                f"{info.symbol}'s priceIncrement {_fmt(inc)}: write {_fmt(fixed)}",
            )
            ok = False
        if self.market is not None and info.symbol in self.market.last:
            last = self.market.last[info.symbol]
            if last > 0 and abs(price - last) / last > _FAR_FROM_MARKET:
                pct = (price - last) / last * _HUNDRED
                direction = "above" if pct > 0 else "below"
                self._report(
                    span,
                    "W602",
                    f"{what} {_fmt(price)} is {abs(pct):.0f}% {direction} {info.symbol}'s last "
                    f"price {_fmt(last)} (market snapshot of "
                    f"{self.market.as_of:%Y-%m-%d %H:%M} UTC)",
                )
        return ok

    def _stop_loss(
        self, node: A.StopLoss, place: A.Place, price: M.Value | None, info: SymbolInfo
    ) -> M.Value | None:
        if place.side.text != "sell" or place.order_type.text != "limit":
            self._report(
                node.span,
                "E408",
                "stop-loss makes a bracket with a resting take-profit: it goes beside a "
                "`place limit sell ... at PRICE`",
            )
            return None
        try:
            stop = self._value(node.price)
        except _Bad:
            return None
        if isinstance(stop, M.Const) and not self._check_price(
            stop.value, node.price, info, "sell", "stop-loss price"
        ):
            return None
        problem = bracket_problem(price, stop, info.symbol)
        if problem is not None:
            self._report(
                node.price.span,
                "E705",
                f"inverted bracket: {problem}; the take-profit belongs above the entry's fill "
                "and the stop-loss below it (`at fill_price + 3%`, `stop-loss at fill_price - 2%`)",
            )
            return None
        return stop

    # ------------------------------------------------------------ lifecycle

    def _positive_duration(self, dur: A.Dur) -> int:
        digits = dur.text[:-1]
        seconds = dur.seconds if len(digits) <= 15 else MAX_DURATION_S + 1
        if seconds <= 0:
            self._report(dur.span, "E204", "a duration must be longer than zero")
        elif seconds > MAX_DURATION_S:
            self._report(
                dur.span, "E204", f"a duration must be at most {MAX_DURATION_S // 86400}d"
            )
            return MAX_DURATION_S
        return seconds

    def _lifecycle(
        self, slots: Mapping[str, A.Clause], place: A.Place | None
    ) -> tuple[int | None, int | None, int | None, int | None, datetime | None, M.Window | None]:
        max_firings: int | None = 1
        repeat_s: int | None = None
        life = slots.get("lifecycle")
        if isinstance(life, A.Repeat | A.Every):
            if isinstance(life, A.Repeat):
                repeat_s = self._positive_duration(life.every)
            max_firings = None
            if life.max_count is not None:
                text = life.max_count.text
                if "." in text or len(text) > 15 or not 1 <= int(text) <= MAX_FIRINGS:
                    self._report(
                        life.max_count.span,
                        "E409",
                        f"`max` takes a whole number of firings, from 1 to {MAX_FIRINGS}",
                    )
                else:
                    max_firings = int(text)
        cancel_s: int | None = None
        cancel = slots.get("cancel_after")
        if isinstance(cancel, A.CancelAfter):
            cancel_s = self._positive_duration(cancel.duration)
            if place is None:
                self._report(
                    cancel.span,
                    "E410",
                    "`cancel after` cancels what the rule placed, but it places nothing",
                )
        exp_in: int | None = None
        exp_at: datetime | None = None
        expires = slots.get("expires")
        if isinstance(expires, A.ExpiresIn):
            exp_in = self._positive_duration(expires.duration)
        elif isinstance(expires, A.ExpiresAt):
            try:
                exp_at = datetime.fromisoformat(expires.timestamp.text.replace("Z", "+00:00"))
            except ValueError:
                self._report(
                    expires.timestamp.span,
                    "E205",
                    f"{expires.timestamp.text} is not a valid date and time",
                )
            else:
                exp_at = exp_at.astimezone(UTC)
        window: M.Window | None = None
        during = slots.get("during")
        if isinstance(during, A.During):
            window = self._window(during)
        return max_firings, repeat_s, cancel_s, exp_in, exp_at, window

    def _schedule(
        self, node: A.Every, when: A.When | None, after: A.After | None
    ) -> M.Schedule | None:
        clash = False
        for other in (when, after):
            if other is not None:
                clash = True
                self._report(
                    other.span,
                    "E412",
                    "a schedule (`every ...`) fires on the clock, without a condition or a "
                    "parent: remove this clause, or check a condition at most every D with "
                    "`when ... repeat every D`",
                )
        if node.interval is not None:
            seconds = self._positive_duration(node.interval)
            return None if clash else M.Schedule(seconds, None, None, "UTC")
        assert node.time is not None and node.first_day is not None
        minute = self._minute(node.time)
        zone = self._zone(node.zone)
        days: frozenset[int] | None = None
        if node.first_day.text != "day" or node.last_day is not None:
            days = self._days(node.first_day, node.last_day)
            if days is None:
                return None
        if minute is None or zone is None or clash:
            return None
        return M.Schedule(None, minute, days, zone)

    def _minute(self, word: A.Word) -> int | None:
        hours, mins = (int(x) for x in word.text.split(":"))
        if hours > 23 or mins > 59:
            self._report(word.span, "E205", f"{word.text} is not a time of day (00:00-23:59)")
            return None
        return hours * 60 + mins

    def _zone(self, word: A.Word | None) -> str | None:
        """An IANA time zone by name (`UTC` when none is given), or None after E207."""
        if word is None or word.text == "UTC":
            return "UTC"
        if word.text in _zones():
            return word.text
        hint = _did_you_mean(word.text, _zones())
        self._report(
            word.span,
            "E207",
            f"unknown time zone {word.text!r}{hint}: use an IANA name such as Europe/Berlin, "
            "America/New_York or UTC",
        )
        return None

    def _days(self, first_word: A.Word, last_word: A.Word | None) -> frozenset[int] | None:
        first = self._day(first_word)
        last = self._day(last_word) if last_word is not None else first
        if first is None or last is None:
            return None
        if last >= first:
            return frozenset(range(first, last + 1))
        return frozenset(list(range(first, 8)) + list(range(1, last + 1)))  # sat-mon wraps

    def _window(self, node: A.During) -> M.Window | None:
        minutes = []
        for word in (node.start, node.end):
            hours, mins = (int(x) for x in word.text.split(":"))
            if hours > 23 or mins > 59:
                self._report(word.span, "E205", f"{word.text} is not a time of day (00:00-23:59)")
            minutes.append(hours * 60 + mins)
        zone = self._zone(node.zone)
        days: frozenset[int] | None = None
        if node.first_day is not None:
            days = self._days(node.first_day, node.last_day)
            if days is None:
                return None
        if zone is None:
            return None
        return M.Window(minutes[0], minutes[1], days, zone)

    def _day(self, word: A.Word) -> int | None:
        if word.text in DAYS:
            return DAYS[word.text]
        hint = _did_you_mean(word.text, DAYS)
        self._report(word.span, "E107", f"unknown day {word.text!r}{hint}: use mon..sun")
        return None


# ---------------------------------------------------------------- helpers

_PCT_RULE = (
    "a percent is allowed only as an offset (`ask - 2%`), after `by`, in `N% of CURRENCY`, "
    "in bid_depth/ask_depth, or compared with spread or change"
)

_USAGE = {
    "bid_depth": "bid_depth takes one percent: bid_depth(0.5%)",
    "ask_depth": "ask_depth takes one percent: ask_depth(0.5%)",
    "sma": "sma(n, timeframe), such as sma(200, 1h)",
    "ema": "ema(n, timeframe), such as ema(50, 15m)",
    "rsi": "rsi(n, timeframe), such as rsi(14, 1h)",
    "highest": "highest(n, timeframe), such as highest(20, 1h)",
    "atr": "atr(n, timeframe), such as atr(14, 1h)",
    "vwap": "vwap(n, timeframe), such as vwap(24, 1h)",
    "change": "change(n, timeframe), such as change(24, 1h) > 5%",
    "bb_middle": "bb_middle(n, timeframe), such as bb_middle(20, 1h)",
    "bb_upper": "bb_upper(n, [width,] timeframe), such as bb_upper(20, 1h) or "
    "bb_upper(20, 2.5, 1h)",
    "bb_lower": "bb_lower(n, [width,] timeframe), such as bb_lower(20, 1h) or "
    "bb_lower(20, 2.5, 1h)",
    "macd": "macd(timeframe) or macd(fast, slow, signal, timeframe), such as macd(1h) or "
    "macd(12, 26, 9, 1h)",
    "macd_signal": "macd_signal(timeframe) or macd_signal(fast, slow, signal, timeframe), "
    "such as macd_signal(12, 26, 9, 1h)",
    "macd_hist": "macd_hist(timeframe) or macd_hist(fast, slow, signal, timeframe), such as "
    "macd_hist(12, 26, 9, 1h)",
    "volume": "volume(timeframe), such as volume(1h); `volume` alone is the 24h volume",
    "lowest": "lowest(n, timeframe), such as lowest(20, 1h)",
    "high": "high(timeframe), such as high(1d)",
    "low": "low(timeframe), such as low(1d)",
    "close": "close(timeframe), such as close(1h)",
}


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _slot_name(slot: str) -> str:
    return {
        "lifecycle": "`once`/`repeat`/`every`",
        "expires": "`expires`",
        "stop_loss": "`stop-loss`",
        "cancel_after": "`cancel after`",
    }.get(slot, f"`{slot}`")


_DECIMALS: dict[str, Decimal] = {}


def _multiple_below(value: Decimal, step: Decimal) -> Decimal:
    """The largest multiple of `step` at or below `value` (exact: with the precision the
    quotient needs, so a huge literal cannot overflow the default 28 digits)."""
    with localcontext() as ctx:
        digits = value.adjusted() - step.adjusted() + len(step.as_tuple().digits) + 3
        ctx.prec = max(ctx.prec, digits)
        return (value // step) * step


_NESTED = (A.Bin, A.Neg, A.Cmp, A.Cross, A.Between, A.BoolOp, A.Not, A.Call)


def _too_deep(node: A.RuleNode) -> A.Span | None:
    """The span of the first expression nested deeper than `MAX_NESTING` (compiling it would
    recurse past Python's limit), or None. Iterative: about 1% of a compile."""
    for clause in node.clauses:
        for root in _roots(clause):
            stack: list[tuple[A.Expr, int]] = [(root, 1)]
            while stack:
                expr, depth = stack.pop()
                if not isinstance(expr, _NESTED):
                    continue
                if depth > MAX_NESTING:
                    return root.span
                stack.extend((child, depth + 1) for child in _children(expr))
    return None


def _roots(clause: A.Clause) -> list[A.Expr]:
    if isinstance(clause, A.When):
        return [clause.cond]
    if isinstance(clause, A.Place):
        return [e for e in (clause.size.amount, clause.price, clause.trail) if e is not None]
    if isinstance(clause, A.StopLoss):
        return [clause.price]
    return []


def _children(expr: A.Expr) -> tuple[A.Expr, ...]:
    if isinstance(expr, A.Bin | A.Cmp | A.Cross | A.BoolOp):
        return (expr.left, expr.right)
    if isinstance(expr, A.Neg | A.Not):
        return (expr.operand,)
    if isinstance(expr, A.Between):
        return (expr.operand, expr.low, expr.high)
    if isinstance(expr, A.Call):
        return expr.args
    return ()


def _decimal(text: str) -> Decimal:
    """A literal as a normalised Decimal (so `0.010` and `0.01` compile alike); memoised."""
    value = _DECIMALS.get(text)
    if value is None:
        value = Decimal(text).normalize()
        if len(_DECIMALS) < 65536:
            _DECIMALS[text] = value
    return value


def _fold(op: str, a: Decimal, b: Decimal) -> Decimal:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b


def _fmt(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _num(value: M.Value) -> str:
    return _fmt(value.value) if isinstance(value, M.Const) else "N"


_SCOPE_NEEDS = {
    "symbol": "a rule with a symbol (`on SYMBOL`, or one in its condition or order)",
    "order": "a rule that places an order",
    "after": "a rule `after R ...`",
    "filled": "a rule `after R filled`",
    "chain": "a rule `after EXIT filled` whose EXIT is itself `after ENTRY filled`",
}


def _template_span(source: SourceFile, span: A.Span, text: str, offset: int,
                   length: int) -> A.Span:
    """The placeholder's own span when the string has no escapes (its text is as written
    on its line), else the whole string's."""
    line = source.line(span.line)
    raw = line[span.column - 1:span.end_column - 1] if span.line == span.end_line else ""
    if raw[1:-1] != text:
        return span
    start = span.column + 1 + offset
    return A.Span(span.line, start, span.line, start + length)


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    if not close and word.upper() != word:
        close = [c for c in candidates if c.lower() == word.lower()][:1]
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_pct(node: A.Expr) -> bool:
    """A percent literal, or a negated one (`change < -10%`)."""
    return isinstance(node, A.Pct) or (isinstance(node, A.Neg) and isinstance(node.operand, A.Pct))


def _names_used(node: A.RuleNode) -> Iterable[A.Word]:
    if node.name is not None:
        yield node.name
    for clause in node.clauses:
        if isinstance(clause, A.After | A.CancelOrders):
            yield clause.rule


def _explicit_symbols(expr: A.Expr) -> list[tuple[str, A.Span]]:
    """Every `SYMBOL field` and `SYMBOL fn(...)` of an expression, in order."""
    found: list[tuple[str, A.Span]] = []
    _collect_symbols(expr, found)
    return found


def _collect_symbols(node: A.Expr, found: list[tuple[str, A.Span]]) -> None:
    if isinstance(node, A.FieldRef | A.Call):
        if node.symbol is not None and node.symbol_span is not None:
            found.append((node.symbol, node.symbol_span))
        if isinstance(node, A.Call):
            for arg in node.args:
                _collect_symbols(arg, found)
    elif isinstance(node, A.Bin | A.Cmp | A.Cross | A.BoolOp):
        _collect_symbols(node.left, found)
        _collect_symbols(node.right, found)
    elif isinstance(node, A.Between):
        _collect_symbols(node.operand, found)
        _collect_symbols(node.low, found)
        _collect_symbols(node.high, found)
    elif isinstance(node, A.Neg | A.Not):
        _collect_symbols(node.operand, found)


def _has_bare_fields(expr: A.Expr) -> bool:
    stack: list[A.Expr] = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, A.FieldRef):
            if node.symbol is None and node.name not in FILL_NAMES:
                return True
        elif isinstance(node, A.Call):
            if node.symbol is None:
                return True
        elif isinstance(node, A.Bin | A.Cmp | A.Cross | A.BoolOp):
            stack.extend((node.left, node.right))
        elif isinstance(node, A.Between):
            stack.extend((node.operand, node.low, node.high))
        elif isinstance(node, A.Neg | A.Not):
            stack.append(node.operand)
    return False


def _flatten(kind: type[M.All] | type[M.AnyOf], *parts: M.Cond) -> tuple[M.Cond, ...]:
    out: list[M.Cond] = []
    for part in parts:
        if isinstance(part, kind):
            out.extend(part.parts)
        else:
            out.append(part)
    return tuple(out)


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
