"""Sizes that read the chain or the account: `N% of position` and risk-based sizing
(`risk 1% of USDT stop 58000`). Pure."""

from __future__ import annotations

from decimal import Decimal, DivisionByZero, InvalidOperation, Overflow, localcontext

from rules_engine.compiler import _model as M
from rules_engine.compiler._base import _HUNDRED, _did_you_mean, _fmt
from rules_engine.compiler._conditions import _Conditions
from rules_engine.compiler._linear import MARKET, Linear, linear
from rules_engine.core.symbols import SymbolInfo
from rules_engine.dsl import ast as A

__all__ = ["risk_stop_problem"]

_RISK_USAGE = "`place limit buy risk 1% of USDT stop 58000 at 60000`"


def risk_stop_problem(
    side: str, entry: M.Value | None, stop: M.Value, symbol: str
) -> str | None:
    """Why a risk-sized order's stop is on the wrong side of its entry (a buy's at or above
    it, a sell's at or below it), or None when it may not be. `entry` None is a market
    order: it enters at the market. Decided only where it holds for every price: two
    constants, or two prices linear in the same anchor."""
    with localcontext() as ctx:  # a huge literal overflows to Infinity, never raises
        ctx.traps[InvalidOperation] = ctx.traps[Overflow] = ctx.traps[DivisionByZero] = False
        first = linear(entry, symbol) if entry is not None else _AT_MARKET
        last = linear(stop, symbol)
        if first is None or last is None or first.anchor != last.anchor:
            return None
        buy = side == "buy"
        high, low = (first, last) if buy else (last, first)
        if high.factor <= low.factor and high.offset <= low.offset:
            where = "at or above" if buy else "at or below"
            return f"the stop is {where} the {side}'s entry price"
        return None


_AT_MARKET = Linear(MARKET, Decimal(1), Decimal(0))  # a market order enters at the market


class _Sizing(_Conditions):
    """`N% of position` and `risk N% of QUOTE stop PRICE`."""

    def _percent_in_range(self, node: A.Expr, what: str, usage: str) -> Decimal:
        if not isinstance(node, A.Pct):
            code = "E315" if what == "risk" else "E310"
            raise self._fail(node.span, code, f"{what} takes a percent: {usage}")
        share = Decimal(node.text) / _HUNDRED
        if not 0 < share <= 1:
            code = "E315" if what == "risk" else "E310"
            raise self._fail(
                node.span, code, f"{what} must be above 0% and at most 100%: {usage}"
            )
        return share.normalize()

    def _position_share(self, node: A.Size, info: SymbolInfo) -> M.SizeSpec:
        """`50% of position`: that share of what the chain holds, in the base currency."""
        assert node.currency is not None
        word = node.currency.text
        if word != "position":
            hint = _did_you_mean(word, ["position", "filled_size"])
            raise self._fail(
                node.currency.span,
                "E310",
                f"`of {word}`{hint}: a share is of a currency's balance (`25% of USDT`, upper "
                "case), of the chain's position (`50% of position`) or of the parent's fill "
                "(`50% of filled_size`)",
            )
        share = self._percent_in_range(
            node.amount, "a share of the position", "`place market sell 50% of position`"
        )
        if not self._in_chain:
            raise self._fail(
                node.span,
                "E208",
                "`% of position` is a share of the rule's chain's position, and this rule has "
                "none: add `after RULE filled` so it follows the entry it exits",
            )
        position = M.Chain("position", info.symbol)
        amount: M.Value = position if share == 1 else M.Arith("*", position, M.Const(share))
        return M.SizeSpec("base", amount, None)

    def _risk_size(self, place: A.Place, info: SymbolInfo) -> M.SizeSpec:
        """`risk 1% of USDT stop 58000`: checked here but for the stop's side of the entry,
        which `_risk_side` checks once the price is compiled."""
        node = place.size
        otype = place.order_type.text
        share = self._percent_in_range(node.amount, "risk", _RISK_USAGE)
        assert node.currency is not None and node.stop is not None
        if otype == "trailing-stop":
            raise self._fail(
                node.span,
                "E315",
                "risk sizing needs the order's entry price: use it on a limit, market or stop "
                f"order ({_RISK_USAGE}); a trailing-stop's price is not known when it fires",
            )
        currency = node.currency.text
        if currency != info.quote_currency:
            raise self._fail(
                node.currency.span,
                "E315",
                f"risk is a share of {info.symbol}'s quote currency {info.quote_currency}, in "
                f"which the loss is counted: write `risk {_fmt(share * _HUNDRED)}% of "
                f"{info.quote_currency}`",
            )
        stop = self._value(node.stop)
        if isinstance(stop, M.Const) and stop.value <= 0:
            raise self._fail(node.stop.span, "E311", "the risk stop price must be above zero")
        return M.SizeSpec("risk", M.Const(share), currency, stop)

    def _risk_side(self, size: M.SizeSpec, price: M.Value | None, place: A.Place,
                   info: SymbolInfo) -> bool:
        """E315 when the stop of a risk-sized order is on the wrong side of its entry."""
        if size.kind != "risk" or size.stop is None:
            return True
        side = place.side.text
        entry = price
        if place.order_type.text == "market":
            entry = None
        elif entry is None:  # a limit without `at` joins its own side of the book
            entry = M.Field(info.symbol, "bid" if side == "buy" else "ask")
        problem = risk_stop_problem(side, entry, size.stop, info.symbol)
        if problem is None:
            return True
        stop_node = place.size.stop
        assert stop_node is not None
        buy = side == "buy"
        self._report(
            stop_node.span,
            "E315",
            f"{problem}: the loss is counted from the entry down to the stop for a buy (up to "
            f"it for a sell), so a stop {'above' if buy else 'below'} the entry measures no "
            f"loss; put it {'below' if buy else 'above'} the price ({_RISK_USAGE})",
        )
        return False

