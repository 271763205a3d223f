"""Where a bracket lives: on the exchange as one KuCoin OCO order, or held by the engine.
Pure: the compile checks of a stop-loss's `limit` and `on exchange` (E419-E422), and the lint
note on every engine-held bracket saying so and why (N712).

    stop-loss at fill_price - 2%                                     engine-held: a market sale
    stop-loss at fill_price - 2% limit fill_price - 2.5% on exchange one OCO order

An OCO is two legs of one size and side: the take-profit (a limit order at `price`) and a
stop-limit (`stopPrice`, then a limit at `limitPrice`). It expresses a plain GTC limit order
in the base currency; options (post-only, hidden, ioc, fok), sizes in the quote currency, a
trailing stop, `move stop-loss` and `exit after` it cannot carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from rules_engine.compiler import _model as M
from rules_engine.compiler._base import _Bad
from rules_engine.compiler._conditions import _Conditions
from rules_engine.compiler._safety import stop_limit_problem
from rules_engine.core.symbols import SymbolInfo
from rules_engine.dsl import Diagnostic, Severity, SourceFile
from rules_engine.dsl import ast as A

__all__ = ["bracket_notes"]

_EXAMPLE = "`stop-loss at fill_price - 2% limit fill_price - 2.5% on exchange`"


class _Brackets(_Conditions):
    """The stop-loss's leg: its limit and where it lives."""

    def _check_price(self, price: Decimal, node: A.Expr | None, info: SymbolInfo, side: str,
                     what: str) -> bool:  # the orders' own check (`_Orders`)
        raise NotImplementedError

    def _exchange_leg(self, node: A.StopLoss, place: A.Place, stop: M.Value | None,
                      size: M.SizeSpec | None, info: SymbolInfo
                      ) -> tuple[bool, M.Value | None, bool]:
        """(ok, the stop leg's limit, on exchange) of a bracket's stop-loss."""
        where = node.where
        if where is not None and where.text != "exchange":
            self._report(where.span, "E419",
                         f"a stop-loss lives `on exchange` (one KuCoin OCO order) or, written "
                         f"without `on`, in the engine; not `on {where.text}`")
            return False, None, False
        on_exchange = where is not None
        if node.limit is None:
            if on_exchange:
                self._report(node.span, "E419",
                             "`on exchange` needs the stop leg's limit price: KuCoin's OCO "
                             f"stop leg is a stop-limit ({_EXAMPLE})")
                return False, None, False
            return True, None, False
        if not on_exchange:
            self._report(node.limit.span, "E420",
                         "a stop-loss's `limit` is for a bracket placed on the exchange: add "
                         "`on exchange` after it, or drop the limit (the engine then sells at "
                         "market when the stop triggers)")
            return False, None, False
        ok = self._expressible(place, size)
        side = place.side.text
        try:
            limit = self._value(node.limit)
        except _Bad:
            return False, None, True
        if isinstance(limit, M.Const) and not self._check_price(
                limit.value, node.limit, info, side, "stop-loss limit price"):
            return False, None, True
        problem = None if stop is None else stop_limit_problem(stop, limit, side, info.symbol)
        if problem is not None:
            above, falls, at = (("above", "falls", "at or below") if side == "sell"
                                else ("below", "rises", "at or above"))
            self._report(node.limit.span, "E422",
                         f"the stop-loss's limit is {above} its stop: once triggered the "
                         f"{side} rests {above} the market and does not fill while the price "
                         f"{falls} on; its limit belongs {at} the stop ({_EXAMPLE})")
            return False, None, True
        return ok, limit, True

    def _expressible(self, place: A.Place, size: M.SizeSpec | None) -> bool:
        """What one OCO order can carry: a plain GTC limit sell sized in the base currency."""
        ok = True
        for option in place.options:
            self._report(option.span, "E421",
                         f"an exchange-held bracket is one KuCoin OCO order, which has no "
                         f"{option.text}: drop it, or drop `on exchange` (engine-held)")
            ok = False
        if size is not None and size.kind == "funds":
            self._report(place.size.span, "E421",
                         "an exchange-held bracket is one KuCoin OCO order, sized in the base "
                         "currency: size the take-profit in coins (`filled_size`, `0.01`), or "
                         "drop `on exchange` (engine-held)")
            ok = False
        return ok


def bracket_notes(source: SourceFile,
                  pairs: Sequence[tuple[A.RuleNode, M.CompiledRule]]) -> list[Diagnostic]:
    """N712 on each bracket whose stop-loss the engine holds, and why (it protects only while
    a watcher runs); E421 on an `on exchange` bracket with protection only the engine can
    hold (`move stop-loss`, `exit after`)."""
    out = []
    for node, rule in pairs:
        order = rule.order
        if order is None or order.stop_loss is None:
            continue
        clause = next((c for c in node.clauses
                       if isinstance(c, A.StopLoss | A.TrailingStopLoss)), None)
        if clause is None:
            continue
        held = rule.protection
        engine_only = [what for what, present in (
            ("`move stop-loss`", held is not None and held.move_after is not None),
            ("`exit after`", held is not None and held.exit_seconds is not None)) if present]
        if order.on_exchange:
            if engine_only:
                out.append(Diagnostic(
                    source.path, clause.span, "E421", Severity.ERROR,
                    f"an exchange-held bracket is one KuCoin OCO order, which cannot "
                    f"{' or '.join(engine_only)}: the engine holds those; drop `on exchange`, "
                    "or drop them"))
            continue
        why = []
        if held is not None and held.trail is not None:
            why.append("its stop-loss trails the price, which only the engine can follow")
        else:
            why += ["it has no `on exchange`",
                    "without a limit its stop sells at market, which an OCO order cannot"]
        why += [f"it uses {what}, which only the engine holds" for what in engine_only]
        place = next((c for c in node.clauses if isinstance(c, A.Place)), None)
        if place is not None and place.options:
            shown = ", ".join(o.text for o in place.options)
            why.append(f"its take-profit has {shown}, which an OCO order cannot carry")
        if order.size.kind == "funds":
            why.append("its size is in the quote currency, an OCO's is in coins")
        out.append(Diagnostic(
            source.path, clause.span, "N712", Severity.NOTE,
            f"this bracket is engine-held ({'; '.join(why)}): its stop-loss protects only "
            f"while a watcher runs; {_EXAMPLE} places it on the exchange as one KuCoin OCO "
            "order"))
    return out
