"""The report: per rule and in total, from what the run recorded.

Per rule: firings (decisions that fired), orders (sent or held by the engine), fills, volume
(quote traded), fees (quote) and realised P&L. Realised P&L uses the account's average cost
per symbol: a buy adds to the position at its price (its fee is a realised cost), a sell
realises `size x (price - average cost)` minus its fee, credited to the rule whose order
sold. In total: equity in the quote currency (quote + each base at the last close) at the
start and the end, the return, the maximum drawdown of the equity at candle closes, the time
in the market (share of candles closed with more of a traded base than at the start), the
trades (fills), and buy-and-hold: the return of the starting equity put into the first
symbol at its first open and held to its last close.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rules_engine.backtest._driver import Run

__all__ = ["summary", "text"]

ZERO = Decimal(0)


def summary(run: Run) -> dict[str, Any]:
    rules: dict[str, dict[str, Any]] = {}

    def row(rule: str) -> dict[str, Any]:
        return rules.setdefault(rule, {"firings": 0, "orders": 0, "fills": 0,
                                       "volume": ZERO, "fees": ZERO, "realised": ZERO})

    for decision in run.decisions:
        if decision["kind"] == "fired":
            row(decision["rule"])["firings"] += 1
    for order in run.orders.values():
        row(order["rule"])["orders"] += 1
    held: dict[str, Decimal] = {}
    cost: dict[str, Decimal] = {}
    for fill in run.fills:
        item = row(fill["rule"])
        price, size, fee = fill["price"], fill["size"], fill["fee"]
        symbol = fill["symbol"]
        item["fills"] += 1
        item["volume"] += price * size
        item["fees"] += fee
        item["realised"] -= fee
        position, basis = held.get(symbol, ZERO), cost.get(symbol, ZERO)
        if fill["side"] == "buy":
            held[symbol], cost[symbol] = position + size, basis + price * size
        else:
            sold = min(size, position)
            average = basis / position if position > 0 else price
            item["realised"] += sold * (price - average)
            held[symbol] = position - sold
            cost[symbol] = basis - sold * average
    start = _start_equity(run)
    end = run.end_equity if run.end_equity is not None else start
    first_symbol = next(iter(run.first_open), None)
    hold = None
    if first_symbol is not None and first_symbol in run.last_close:
        hold = run.last_close[first_symbol] / run.first_open[first_symbol] - 1
    return {
        "quote": run.quote,
        "start_equity": start, "end_equity": end,
        "return": (end / start - 1) if start else ZERO,
        "max_drawdown": run.max_drawdown,
        "time_in_market": (Decimal(run.exposed_closes) / run.closes) if run.closes else ZERO,
        "trades": len(run.fills),
        "buy_and_hold": hold,
        "realised": sum((r["realised"] for r in rules.values()), ZERO),
        "fees": sum((r["fees"] for r in rules.values()), ZERO),
        "candles": run.candles, "stepped": run.stepped, "skipped": run.skipped,
        "unit": run.unit,
        "seconds": run.seconds,
        "rules": rules,
    }


def _start_equity(run: Run) -> Decimal:
    """The starting balances at the first symbol's first open (quote + bases)."""
    total = run.start_balances.get(run.quote, ZERO)
    for symbol, price in run.first_open.items():
        base = symbol.split("-", 1)[0]
        total += run.start_balances.get(base, ZERO) * price
    return total


def _money(value: Decimal, places: int = 2) -> str:
    return f"{value:,.{places}f}"


def _pct(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.2f}%"


def text(report: dict[str, Any], names: dict[str, str]) -> str:
    """The terminal report (`names`: identity -> the rule's name as written)."""
    quote = report["quote"]
    lines = [f"{'rule':<24} {'firings':>7} {'orders':>6} {'fills':>5} "
             f"{'volume':>14} {'fees':>10} {'realised P&L':>13}"]
    for identity, r in report["rules"].items():
        name = names.get(identity, identity[:12])
        lines.append(f"{name[:24]:<24} {r['firings']:>7} {r['orders']:>6} {r['fills']:>5} "
                     f"{_money(r['volume']):>14} {_money(r['fees'], 4):>10} "
                     f"{_money(r['realised'], 4):>13}")
    lines += [
        "",
        f"equity      {_money(report['start_equity'])} -> {_money(report['end_equity'])} "
        f"{quote}  ({_pct(report['return'])})",
        f"max drawdown  {report['max_drawdown'] * 100:.2f}%    time in market  "
        f"{report['time_in_market'] * 100:.1f}%    trades  {report['trades']}",
        f"buy and hold  {_pct(report['buy_and_hold'])}    realised P&L  "
        f"{_money(report['realised'], 4)} {quote}    fees  {_money(report['fees'], 4)} {quote}",
        f"{report['unit']}  {report['candles']} ({report['stepped']} stepped, "
        f"{report['skipped']} skipped) in {report['seconds']:.2f} s",
    ]
    return "\n".join(lines)
