"""Conditions and values: expressions lowered to the model, type-checked. Pure."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from rules_engine.compiler import _model as M
from rules_engine.compiler._analysis import analyse_condition
from rules_engine.compiler._base import (
    _HUNDRED,
    _PCT_RULE,
    _T,
    _TEN,
    _TWO,
    _USAGE,
    SIGNAL_NAME,
    SIGNAL_WINDOW_S,
    _Bad,
    _CompilerBase,
    _decimal,
    _did_you_mean,
    _flatten,
    _fold,
    _is_pct,
)
from rules_engine.compiler._vocab import (
    BOOK_FUNCTIONS,
    CHAIN_NAMES,
    CURRENCY_FUNCTIONS,
    FIELDS,
    FILL_NAMES,
    FUNCTIONS,
    INDICATORS,
    MACDS,
    MAX_PERIOD,
    PERCENT_FIELDS,
    TIMEFRAMES,
)
from rules_engine.dsl import ast as A


class _Conditions(_CompilerBase):
    """Compiles conditions, values, fields, calls and indicators."""

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
        if isinstance(other, M.Chain) and other.kind == "pnl_pct":
            return a, b  # `pnl% < -5%`: a rate
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
        if isinstance(expr, A.CurrencyCall):
            return self._currency_call(expr)
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
        if name in CHAIN_NAMES:
            return self._chain_value(expr)
        if name in CURRENCY_FUNCTIONS:
            raise self._fail(
                expr.name_span, "E108",
                f"{name} takes a currency: `{name}(USDT)`, the account's available balance",
            )
        if name not in FIELDS:
            if name in FUNCTIONS:
                raise self._fail(expr.name_span, "E108", f"{name} is a function: {_USAGE[name]}")
            hint = _did_you_mean(name, FIELDS | FILL_NAMES | FUNCTIONS | CHAIN_NAMES.keys())
            raise self._fail(expr.name_span, "E104", f"unknown field {name!r}{hint}")
        symbol = self._symbol_for(expr.symbol, expr.symbol_span, expr.span)
        return M.Field(symbol, name)

    def _chain_value(self, expr: A.FieldRef) -> M.Chain:
        """`position`, `pnl`, `pnl%`: values of the rule's chain, on the rule's symbol."""
        name = expr.name
        if expr.symbol is not None:
            raise self._fail(
                expr.span, "E104",
                f"{name} belongs to the rule's chain and takes no symbol: write `{name}` (it "
                "is of the rule's own symbol)",
            )
        if not self._in_chain:
            raise self._fail(
                expr.span,
                "E208",
                f"{name} is a value of the rule's chain, and this rule has none: add `after "
                f"RULE filled` so it follows the entry it exits; for the account as a whole "
                "use `balance(CURRENCY)`",
            )
        symbol = self._symbol_for(None, None, expr.span)
        return M.Chain(CHAIN_NAMES[name], symbol)

    def _currency_call(self, expr: A.CurrencyCall) -> M.Balance:
        """`balance(USDT)`: the account's available balance of a currency."""
        name, currency = expr.name, expr.currency.text
        if name not in CURRENCY_FUNCTIONS:
            hint = "" if name in FUNCTIONS else _did_you_mean(name, CURRENCY_FUNCTIONS)
            usage = f": {_USAGE[name]}" if name in _USAGE else ""
            raise self._fail(
                expr.name_span, "E105",
                f"{name!r} takes no currency{hint}{usage}; `balance(USDT)` is the one "
                "function of a currency",
            )
        if currency not in self.symbols.currencies:
            hint = _did_you_mean(currency, self.symbols.currencies)
            raise self._fail(expr.currency.span, "E103", f"unknown currency {currency!r}{hint}")
        return M.Balance(currency)

    def _call(self, expr: A.Call) -> M.Value:
        name = expr.name
        if name in CURRENCY_FUNCTIONS:
            raise self._fail(
                expr.span, "E108",
                f"{name} takes a currency: `{name}(USDT)`, the account's available balance",
            )
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
