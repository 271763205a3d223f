"""Why a rule has not fired yet, from the live state: each comparison of its condition with
its current values (the market state's fresh values), the data it still lacks (closed
candles short of an indicator's warm-up, a stale feed or book, a ticker too old for its
`max_age`), what its state waits for, and the next moment a timed rule can decide without
a market change (`engine.next_due`). Pure: `now` is an argument, nothing is written.

    {"rule": "slow_sma", "status": "armed",
     "conditions": [{"text": "BTC-USDT last > BTC-USDT sma(20, 1h)", "left": "69150.2",
                     "right": null, "holds": null}],
     "lacks": ["BTC-USDT sma(20, 1h): 6 of 20 closed 1h candles; enough once the candle of
                2026-12-04T23:00:00+00:00 closes"],
     "waits_for": "its condition to hold on fresh market data", "next_due": null,
     "short": "lacks BTC-USDT sma(20, 1h): 6 of 20 closed 1h candles ..."}

`short` is the one line the terminal view prints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from rules_engine.compiler import CompiledRule
from rules_engine.compiler import model as M
from rules_engine.engine import Fill, RuleState, in_window, leaves, next_due, truth, value
from rules_engine.engine._candles import CandleSeries, history_needed
from rules_engine.runtime._market import MarketState

__all__ = ["explain", "expression", "not_yet"]

_SETTLED = frozenset({"done", "expired", "disarmed"})


View = Callable[[CompiledRule, RuleState], Mapping[object, Decimal]]


def _plain(amount: Decimal | None) -> str | None:
    if amount is None:
        return None
    return format(amount.normalize(), "f") if amount else "0"


def expression(node: M.Value) -> str:
    """A compiled value as a person writes it (numbers normalised)."""
    if isinstance(node, M.Const):
        return _plain(node.value) or "0"
    if isinstance(node, M.Field | M.Depth | M.Indicator | M.CandleField | M.Fill | M.Chain
                  | M.Balance):
        return M.label(node)
    if isinstance(node, M.Offset):
        change = (node.factor - 1) * 100
        sign = "+" if change >= 0 else "-"
        return f"{expression(node.base)} {sign} {_plain(abs(change))}%"
    if isinstance(node, M.Negate):
        return f"-{expression(node.operand)}"
    if isinstance(node, M.Arith):
        named = M.label(node)
        if named != "the value":  # `spread` in percent, as written
            return named
        return f"({expression(node.left)} {node.op} {expression(node.right)})"
    return "the value"


def _atoms(cond: M.Cond) -> Iterable[M.Compare | M.Crosses]:
    if isinstance(cond, M.Compare | M.Crosses):
        yield cond
    elif isinstance(cond, M.All | M.AnyOf):
        for part in cond.parts:
            yield from _atoms(part)
    elif isinstance(cond, M.Negation):
        yield from _atoms(cond.operand)


def _candles_short(leaf: M.Indicator | M.CandleField, series: CandleSeries | None,
                   now: datetime) -> str:
    name = M.label(leaf)
    if series is None:
        return f"{name}: its {leaf.timeframe} candles are not loaded (see the candles.error event)"
    if series.problem is not None:
        return f"{name}: its {leaf.timeframe} candles are unusable: {series.problem}"
    need = (history_needed(leaf.kind, leaf.period, leaf.params)
            if isinstance(leaf, M.Indicator) else history_needed(leaf.kind))
    have = len(series.closed)
    if have >= need:
        return f"{name}: not computable from its {have} closed {leaf.timeframe} candles"
    # The open candle closes at the end of its interval, then one more each interval.
    current, closed = series.current, series.closed
    if current is not None:
        first_close = current.open_time + series.interval
    elif closed:
        first_close = closed[-1].open_time + 2 * series.interval
    else:  # the candle open now (intervals start at whole multiples since the epoch)
        since = now - datetime.fromtimestamp(0, now.tzinfo)
        first_close = now - since % series.interval + series.interval
    enough_at = first_close + series.interval * (need - have - 1)
    return (f"{name}: {have} of {need} closed {leaf.timeframe} candles; enough once the candle "
            f"closing at {enough_at.isoformat()} has closed")


def _lacks(rule: CompiledRule, market: MarketState,  # noqa: PLR0917 - what it reads
           series: Mapping[tuple[str, str], CandleSeries], now: datetime,
           fill: Fill | None, values: Mapping[object, Decimal]) -> list[str]:
    if rule.condition is None:
        return []
    out = []
    for leaf in leaves(rule.condition):
        if leaf in values:
            continue
        if isinstance(leaf, M.Balance):
            out.append(f"{M.label(leaf)}: the account's order channel is not live")
        elif isinstance(leaf, M.Chain):
            out.append(f"{M.label(leaf)}: " + (
                "no chain yet (it has not been armed)" if leaf.kind == "position" else
                "the price it is valued at is not fresh, or the chain bought nothing yet"))
        elif isinstance(leaf, M.Indicator | M.CandleField):
            if not market.live:
                out.append(f"{M.label(leaf)}: the market feed is not live")
            else:
                out.append(_candles_short(leaf, series.get((leaf.symbol, leaf.timeframe)), now))
        else:
            out.append(f"{M.label(leaf)}: {market.unknown_reason(leaf, now)}")
    if fill is None and rule.after is not None and any(
            isinstance(v, M.Fill) for v in _fills(rule.condition)):
        out.append("fill_price / filled_size: no fill of the rule it follows yet")
    return out


def _fills(cond: object) -> list[M.Fill]:
    found: list[M.Fill] = []

    def walk(node: object) -> None:
        if isinstance(node, M.Fill):
            found.append(node)
        elif isinstance(node, M.Compare | M.Crosses | M.Arith):
            walk(node.left)
            walk(node.right)
        elif isinstance(node, M.All | M.AnyOf):
            for part in node.parts:
                walk(part)
        elif isinstance(node, M.Negation | M.Negate):
            walk(node.operand)
        elif isinstance(node, M.Offset):
            walk(node.base)

    walk(cond)
    return found


def _waits(rule: CompiledRule, state: RuleState, reason: str, now: datetime) -> str:
    status = state.status
    if status == "blocked":
        return f"blocked: {reason or 'unknown'}; fix the cause, then `rules-engine unblock`"
    if status == "frozen":
        return "frozen: an order of unknown outcome is being looked up"
    if status == "waiting":
        if rule.after is None:
            return "waiting"
        parent, event = rule.after
        return f"waits for {parent} to be {event}" if event != "fired" else (
            f"waits for {parent} to fire")
    if status == "cooling":
        at = state.rearm_at.isoformat() if state.rearm_at else "its repeat interval"
        return f"cooling: may fire again from {at}" + (
            "" if state.seen_false else ", once its condition has been false again")
    if rule.window is not None and not in_window(rule.window, now):
        return "outside its `during` window"
    if state.true_since is not None and rule.for_seconds:
        held = state.true_since + timedelta(seconds=rule.for_seconds)
        return (f"its condition has held since {state.true_since.isoformat()}; fires at "
                f"{held.isoformat()} if it still holds")
    if not state.seen_false:
        return "re-arms once its condition has been false again"
    return "its condition to hold on fresh market data"


def explain(rule: CompiledRule, state: RuleState, market: MarketState, *,
            series: Mapping[tuple[str, str], CandleSeries], now: datetime,
            reason: str = "", values: Mapping[object, Decimal] | None = None) -> dict[str, Any]:
    """Why `rule` (in `state`) has not fired: see the module's docstring. `values`: what
    the rule is stepped on (with its chain's values), the market's by default."""
    fill = state.arms[0].fill if state.arms else None
    values = market.values if values is None else values
    conditions = []
    crossed = 0
    for atom in _atoms(rule.condition) if rule.condition is not None else ():
        left = value(atom.left, values, fill)
        right = value(atom.right, values, fill)
        if isinstance(atom, M.Compare):
            op, holds = atom.op, truth(atom, values, None, fill)
        else:
            op, holds = f"crosses {atom.direction}", None
            baseline = state.baselines[crossed] if crossed < len(state.baselines) else None
            crossed += 1
            if baseline is None:
                holds = None
        conditions.append({"text": f"{expression(atom.left)} {op} {expression(atom.right)}",
                           "left": _plain(left), "right": _plain(right), "holds": holds})
    lacks = _lacks(rule, market, series, now, fill, values)
    due = next_due(rule, state, now)
    waits = _waits(rule, state, reason, now)
    if lacks and state.status in ("armed", "cooling"):
        short = "lacks " + "; ".join(lacks)
    elif state.status == "armed" and conditions:
        short = "; ".join(
            f"{c['text']}: {c['left'] or '?'} vs {c['right'] or '?'} "
            f"({'holds' if c['holds'] else 'unknown' if c['holds'] is None else 'not yet'})"
            for c in conditions)
        if waits != "its condition to hold on fresh market data":
            short = f"{waits}; {short}"
    else:
        short = waits
    if due is not None:
        short += f"; next decides at {due.isoformat(timespec='seconds')}"
    return {"rule": rule.identity, "status": state.status, "conditions": conditions,
            "lacks": lacks, "waits_for": waits,
            "next_due": None if due is None else due.isoformat(), "short": short}


def not_yet(rules: Mapping[str, CompiledRule], states: Mapping[str, RuleState],
            market: MarketState, *, reasons: Mapping[str, str],
            series: Mapping[tuple[str, str], CandleSeries], now: datetime,
            limit: int = 500, view: View | None = None) -> list[dict[str, Any]]:
    """`explain` for each rule that can still fire (not done, expired or removed), by name;
    `view(rule, state)` is the values a rule is stepped on (runtime/_chains.py)."""
    out = []
    for identity in sorted(rules):
        state = states.get(identity)
        if state is None or state.status in _SETTLED:
            continue
        rule = rules[identity]
        out.append(explain(rule, state, market, series=series, now=now,
                           reason=reasons.get(identity, ""),
                           values=None if view is None else view(rule, state)))
        if len(out) >= limit:
            break
    return out
