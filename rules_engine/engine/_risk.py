"""Risk limits: what an order is worth, and whether it may be sent. Pure.

An order's value is its quote notional: price x size for a limit order, the trigger price x
size for a stop order, its funds for a market order by funds, and for a market order by size
the cost of walking the book's far side for that size (a buy walks the asks, a sell the bids).
A walk that the book cannot fill, or whose average price is further from the best price than
`max_slippage`, blocks the order.

Exposure counts every order that may be on the exchange: an order not proven absent (sent,
unknown, open) keeps its full value in every limit until it is final; a final order keeps what
it traded; an order refused or proven not placed gives its share back. Per day is the UTC day
of the firing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from rules_engine.engine._orders import OrderIntent
from rules_engine.engine._values import plain

__all__ = ["Exposure", "Limits", "check", "check_all", "value_order"]

_MINUTE = timedelta(minutes=1)


class Limits(NamedTuple):
    max_order_notional: Decimal | None = None
    max_rule_notional: Decimal | None = None
    max_daily_notional: Decimal | None = None
    max_open_orders: int | None = None
    max_firings_per_minute: int | None = None
    allowed_symbols: frozenset[str] | None = None
    max_slippage: Decimal | None = None  # a fraction: 0.005 for 0.5%

    def tighten(self, other: Limits) -> Limits:
        """Each limit the stricter of the two (a rule file may only tighten the config)."""
        symbols = self.allowed_symbols
        if other.allowed_symbols is not None:
            symbols = other.allowed_symbols if symbols is None else symbols & other.allowed_symbols
        return Limits(
            max_order_notional=_low(self.max_order_notional, other.max_order_notional),
            max_rule_notional=_low(self.max_rule_notional, other.max_rule_notional),
            max_daily_notional=_low(self.max_daily_notional, other.max_daily_notional),
            max_open_orders=_low_int(self.max_open_orders, other.max_open_orders),
            max_firings_per_minute=_low_int(self.max_firings_per_minute,
                                            other.max_firings_per_minute),
            allowed_symbols=symbols,
            max_slippage=_low(self.max_slippage, other.max_slippage),
        )


def _low(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    return b if a is None else a if b is None else min(a, b)


def _low_int(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _walk(levels: Iterable[tuple[Decimal, Decimal]], size: Decimal | None,
          funds: Decimal | None) -> tuple[Decimal, Decimal] | None:
    """(cost, base size) of taking `size` base (or spending `funds` quote) from `levels`,
    best first; None when the levels hold too little."""
    cost = got = Decimal(0)
    for price, available in levels:
        if size is not None:
            take = min(available, size - got)
        else:
            assert funds is not None
            take = min(available, (funds - cost) / price)
        cost += take * price
        got += take
        if (size is not None and got >= size) or (funds is not None and cost >= funds):
            return cost, got
    return None


def value_order(
    intent: OrderIntent,
    far_side: Iterable[tuple[Decimal, Decimal]] | None,
    max_slippage: Decimal | None = None,
) -> Decimal | str:
    """The order's quote value, or why it cannot be valued (the reason blocks it).
    `far_side`: the levels a market order would take, best first (None: no book)."""
    if intent.order_type == "limit" and intent.price is not None and intent.size is not None:
        return intent.price * intent.size
    if intent.order_type == "stop" and intent.stop_price is not None and intent.size is not None:
        # a stop-limit buy may pay up to its limit, above the trigger
        return max(intent.stop_price, intent.price or intent.stop_price) * intent.size
    if intent.funds is not None and max_slippage is None:
        return intent.funds
    if far_side is None:
        if intent.funds is not None:
            return intent.funds
        return "a market order by size needs a live book to be valued"
    levels = list(far_side)
    if not levels:
        return "the book's far side is empty: the order cannot be valued"
    walked = _walk(levels, intent.size, intent.funds)
    if walked is None:
        return "the book holds less than the order would take"
    cost, got = walked
    if max_slippage is not None and got > 0:
        best = levels[0][0]
        slip = abs(cost / got - best) / best
        if slip > max_slippage:
            return (f"walking the book moves the price {slip:.4%} from the best, above "
                    f"max_slippage {max_slippage:.4%}")
    return intent.funds if intent.funds is not None else cost


@dataclass
class Exposure:
    """What may be on the exchange now, and what was sent, per rule and per UTC day."""

    open_orders: int = 0
    by_rule: dict[str, Decimal] = field(default_factory=dict)
    by_day: dict[date, Decimal] = field(default_factory=dict)
    firings: deque[datetime] = field(default_factory=deque)

    def add(self, rule: str, day: date, value: Decimal, *, is_open: bool = True) -> None:
        self.by_rule[rule] = self.by_rule.get(rule, Decimal(0)) + value
        self.by_day[day] = self.by_day.get(day, Decimal(0)) + value
        if is_open:
            self.open_orders += 1

    def settle(self, rule: str, day: date, was: Decimal, now_worth: Decimal) -> None:
        """An order is final (it keeps what it traded) or never placed (`now_worth` 0)."""
        delta = now_worth - was
        self.by_rule[rule] = self.by_rule.get(rule, Decimal(0)) + delta
        self.by_day[day] = self.by_day.get(day, Decimal(0)) + delta
        self.open_orders = max(self.open_orders - 1, 0)

    def fired(self, at: datetime) -> None:
        self.firings.append(at)

    def recent_firings(self, now: datetime) -> int:
        while self.firings and now - self.firings[0] >= _MINUTE:
            self.firings.popleft()
        return len(self.firings)


def check(intent: OrderIntent, value: Decimal, rule: str, *, limits: Limits,
          exposure: Exposure, now: datetime) -> str | None:
    """The limit this order would break, named as in the config, or None."""
    if limits.allowed_symbols is not None and intent.symbol not in limits.allowed_symbols:
        return f"{intent.symbol} is not in risk.allowed_symbols"
    if limits.max_order_notional is not None and value > limits.max_order_notional:
        return (f"order value {plain(value)} is above risk.max_order_notional "
                f"{plain(limits.max_order_notional)}")
    if limits.max_open_orders is not None and exposure.open_orders >= limits.max_open_orders:
        return (f"risk.max_open_orders {limits.max_open_orders} reached "
                f"({exposure.open_orders} open or unresolved)")
    if limits.max_rule_notional is not None:
        used = exposure.by_rule.get(rule, Decimal(0))
        if used + value > limits.max_rule_notional:
            return (f"the rule's orders would reach {plain(used + value)}, above "
                    f"risk.max_rule_notional {plain(limits.max_rule_notional)}")
    if limits.max_daily_notional is not None:
        used = exposure.by_day.get(now.date(), Decimal(0))
        if used + value > limits.max_daily_notional:
            return (f"today's orders would reach {plain(used + value)}, above "
                    f"risk.max_daily_notional {plain(limits.max_daily_notional)}")
    if limits.max_firings_per_minute is not None:
        count = exposure.recent_firings(now)
        if count >= limits.max_firings_per_minute:
            return (f"risk.max_firings_per_minute {limits.max_firings_per_minute} reached "
                    f"({count} in the last minute)")
    return None


def check_all(orders: Iterable[tuple[OrderIntent, Decimal]], rule: str, *, limits: Limits,
              exposure: Exposure, now: datetime) -> str | None:
    """The limit that orders sent together (a scaled order's slices) would break, counting
    each one in every limit as the ones before it were sent, or None. `exposure` is left as
    it was."""
    trial = replace(exposure, by_rule=dict(exposure.by_rule), by_day=dict(exposure.by_day),
                    firings=deque(exposure.firings))
    for number, (intent, value) in enumerate(orders, 1):
        reason = check(intent, value, rule, limits=limits, exposure=trial, now=now)
        if reason is not None:
            return f"slice {number}: {reason}"
        trial.add(rule, now.date(), value)
        trial.fired(now)
    return None
