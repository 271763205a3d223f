"""The compiler's shared state and small helpers: reporting, symbols, durations. Pure."""

from __future__ import annotations

import difflib
import functools
import re
import zoneinfo
from collections.abc import Iterable
from decimal import Decimal, localcontext
from typing import TypeVar

from rules_engine.compiler import _model as M
from rules_engine.compiler._model import MarketSnapshot
from rules_engine.compiler._vocab import (
    FILL_NAMES,
)
from rules_engine.core.symbols import SymbolTable
from rules_engine.dsl import Diagnostic, Severity, SourceFile
from rules_engine.dsl import ast as A

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


class _CompilerBase:
    """State of one file's compilation, and how a finding is reported."""

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
        self._in_chain = False  # the rule has `after`: position and pnl have a chain

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


# ---------------------------------------------------------------- helpers

_PCT_RULE = (
    "a percent is allowed only as an offset (`ask - 2%`), after `by`, in `N% of CURRENCY`, "
    "in bid_depth/ask_depth, or compared with spread, change or pnl%"
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
        "move_stop": "`move stop-loss`",
        "exit_after": "`exit after`",
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
        sliced = clause.slicing
        return [e for e in (clause.size.amount, clause.size.stop, clause.price, clause.trail,
                            clause.limit, clause.visible,
                            sliced.start if sliced is not None else None,
                            sliced.end if sliced is not None else None)
                if e is not None]
    if isinstance(clause, A.StopLoss):
        return [e for e in (clause.price, clause.limit) if e is not None]
    if isinstance(clause, A.MoveStop):
        return [clause.price]
    if isinstance(clause, A.TrailingStopLoss):
        return [clause.distance]
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
