"""A firing's order: computed prices and sizes, rounded and checked against the symbol. Pure.

Rounding is the brief's: prices to `priceIncrement` in the trader's favour (a buy down, a
sell up; a stop's trigger toward the market, so it triggers no later than written, which is
the same direction; a stop-limit's limit as a limit price), sizes and funds down to their
increments. An order that would break
`baseMinSize`, `baseMaxSize`, `quoteMinSize`, `quoteMaxSize` or `minFunds` is not sent: the
result is `Blocked` with the reason, and the watcher marks the rule blocked.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import NamedTuple

from rules_engine.compiler import model as M
from rules_engine.core.symbols import SymbolInfo
from rules_engine.engine._values import Fill, Market, plain, value

__all__ = ["Blocked", "OrderIntent", "resolve_order"]


class OrderIntent(NamedTuple):
    """Exactly what will be sent (before the clientOid, which the store assigns)."""

    symbol: str
    side: str
    order_type: str  # market | limit | stop | trailing-stop
    size: Decimal | None  # base size; None for a market order by funds
    funds: Decimal | None  # quote funds of a market order by funds
    price: Decimal | None  # limit price (of a limit order, or of a stop-limit once triggered)
    stop_price: Decimal | None  # trigger of a stop order
    trail: Decimal | None
    time_in_force: str
    post_only: bool
    hidden: bool
    visible_size: Decimal | None = None  # an iceberg's visible size (`iceberg: true`)


class Blocked(NamedTuple):
    reason: str


def _round(amount: Decimal, step: Decimal, *, up: bool) -> Decimal:
    units = (amount / step).to_integral_value(ROUND_CEILING if up else ROUND_FLOOR)
    return units * step


def resolve_order(
    order: M.OrderSpec,
    market: Market,
    info: SymbolInfo,
    *,
    fill: Fill | None = None,
    balances: Mapping[str, Decimal] | None = None,
    fee_rate: Decimal = Decimal(0),
) -> OrderIntent | Blocked:
    """Compute, round and check a compiled order at the moment its rule fires. `fee_rate`
    is the fee a risk-sized order counts in its loss (at its entry and at its stop)."""
    if not info.enable_trading:
        return Blocked(f"{info.symbol} is not enabled for trading")
    sell = order.side == "sell"
    price: Decimal | None = None
    stop_price: Decimal | None = None
    if order.order_type in ("limit", "stop"):
        if order.price is not None:
            raw = value(order.price, market, fill)
        else:  # a limit order without `at` joins its own side of the book
            raw = market.get(M.Field(order.symbol, "ask" if sell else "bid"))
        if raw is None:
            return Blocked("the order's price depends on data that is not fresh")
        if raw <= 0:
            return Blocked(f"the computed price {plain(raw)} is not above zero")
        rounded = _round(raw, info.price_increment, up=sell)
        if order.order_type == "limit":
            price = rounded
        else:
            stop_price = rounded
    if order.order_type == "stop" and order.limit is not None:
        # A stop-limit: its limit rounded like a limit price (a sell's up, a buy's down), and
        # kept on its side of the trigger, or the order would rest away from the market.
        raw = value(order.limit, market, fill)
        if raw is None:
            return Blocked("the order's limit price depends on data that is not fresh")
        if raw <= 0:
            return Blocked(f"the computed limit price {plain(raw)} is not above zero")
        price = _round(raw, info.price_increment, up=sell)
        assert stop_price is not None
        if (price > stop_price) if sell else (price < stop_price):
            return Blocked(
                f"the limit price {plain(price)} is {'above' if sell else 'below'} the "
                f"trigger {plain(stop_price)}: a stop {order.side}'s limit belongs "
                f"{'at or below' if sell else 'at or above'} its trigger"
            )
    size: Decimal | None = None
    funds: Decimal | None = None
    spec = order.size
    amount = value(spec.amount, market, fill)
    if amount is None:
        return Blocked("the order's size depends on data that is not fresh")
    if spec.kind == "risk":
        entry = price if price is not None else stop_price
        sized = _risk_size(order, amount, market, info, fill, entry, fee_rate)
        if isinstance(sized, Blocked):
            return sized
        size = sized
    elif spec.kind == "share":
        currency = spec.currency or ""
        available = (balances or {}).get(currency)
        if available is None:
            return Blocked(f"the available {currency} balance is not known")
        amount = available * amount
        if sell:
            size = _round(amount, info.base_increment, up=False)
        elif order.order_type == "market":
            funds = _round(amount, info.quote_increment, up=False)
        else:
            reference = price if price is not None else stop_price
            assert reference is not None
            size = _round(amount / reference, info.base_increment, up=False)
    elif spec.kind == "funds":
        if order.order_type == "market":
            funds = _round(amount, info.quote_increment, up=False)
        else:
            reference = price if price is not None else stop_price
            if reference is None:
                return Blocked("funds need a price to become a size")
            size = _round(amount / reference, info.base_increment, up=False)
    else:
        if amount <= 0:
            return Blocked(f"the size {plain(amount)} is not above zero (a position the chain "
                           "does not hold?)")
        size = _round(amount, info.base_increment, up=False)

    if size is not None:
        if size < info.base_min_size:
            return Blocked(f"size {plain(size)} is below {info.symbol}'s baseMinSize "
                           f"{plain(info.base_min_size)}")
        if size > info.base_max_size:
            return Blocked(f"size {plain(size)} is above {info.symbol}'s baseMaxSize "
                           f"{plain(info.base_max_size)}")
    if funds is not None:
        if funds < info.quote_min_size:
            return Blocked(
                f"funds {plain(funds)} are below {info.symbol}'s quoteMinSize "
                f"{plain(info.quote_min_size)}"
            )
        if funds > info.quote_max_size:
            return Blocked(
                f"funds {plain(funds)} are above {info.symbol}'s quoteMaxSize "
                f"{plain(info.quote_max_size)}"
            )
    if info.min_funds is not None:
        worth = funds if funds is not None else None
        if worth is None and size is not None and price is not None:
            worth = size * price
        if worth is not None and worth < info.min_funds:
            return Blocked(
                f"order value {plain(worth)} is below {info.symbol}'s minFunds "
                f"{plain(info.min_funds)}"
            )
    visible: Decimal | None = None
    if order.visible is not None:
        raw_visible = value(order.visible, market, fill)
        if raw_visible is None:
            return Blocked("the iceberg's visible size depends on data that is not fresh")
        visible = _round(raw_visible, info.base_increment, up=False)
        if visible < info.base_min_size:
            return Blocked(f"the visible size {plain(visible)} is below {info.symbol}'s "
                           f"baseMinSize {plain(info.base_min_size)}")
        if size is not None and visible > size:
            visible = size  # a computed visible size above the order's shows all of it
    return OrderIntent(
        symbol=order.symbol,
        side=order.side,
        order_type=order.order_type,
        size=size,
        funds=funds,
        price=price,
        stop_price=stop_price,
        trail=order.trail,
        time_in_force=order.time_in_force,
        post_only=order.post_only,
        hidden=order.hidden,
        visible_size=visible,
    )


def _risk_size(  # noqa: PLR0917 - the parts of one decision
    order: M.OrderSpec, share: Decimal, market: Market, info: SymbolInfo, fill: Fill | None,
    price: Decimal | None, fee_rate: Decimal,
) -> Decimal | Blocked:
    """`risk N% of QUOTE stop S`: the base size whose loss from the entry price to the stop,
    with the fee at both ends, is N% of the available quote balance; rounded down to the
    lot. The entry is the limit price (a stop-limit's limit, a stop-market's trigger), or
    for a market order the price it takes (the ask for a buy, the bid for a sell)."""
    spec = order.size
    quote = spec.currency or info.quote_currency
    buy = order.side == "buy"
    available = market.get(M.Balance(quote))
    if available is None:
        return Blocked(f"the available {quote} balance is not known (not fresh)")
    stop = value(spec.stop, market, fill) if spec.stop is not None else None
    if stop is None:
        return Blocked("the risk stop depends on data that is not fresh")
    if stop <= 0:
        return Blocked(f"the computed risk stop {plain(stop)} is not above zero")
    entry = price
    if entry is None:
        entry = market.get(M.Field(order.symbol, "ask" if buy else "bid"))
    if entry is None:
        return Blocked("the price the order enters at is not fresh")
    if (stop >= entry) if buy else (stop <= entry):
        return Blocked(
            f"the risk stop {plain(stop)} is {'at or above' if buy else 'at or below'} the "
            f"entry price {plain(entry)}: a {order.side}'s stop belongs "
            f"{'below' if buy else 'above'} its entry"
        )
    per_unit = abs(entry - stop) + fee_rate * (entry + stop)
    risked = available * share
    size = _round(risked / per_unit, info.base_increment, up=False)
    if size < info.base_min_size:
        return Blocked(
            f"risk sizing: {plain(share * 100)}% of {plain(available)} {quote} is "
            f"{plain(risked)} {quote}, which a loss of {plain(per_unit)} {quote} per "
            f"{info.base_currency} (from {plain(entry)} to the stop {plain(stop)}, fees "
            f"included) spends on {plain(size)} {info.base_currency}, below {info.symbol}'s "
            f"baseMinSize {plain(info.base_min_size)}: risk more, or put the stop closer"
        )
    cost = size * entry * (1 + fee_rate)
    if buy and cost > available:
        return Blocked(
            f"risk sizing: {plain(size)} {info.base_currency} at {plain(entry)} costs "
            f"{plain(cost)} {quote} with its fee, more than the available {plain(available)} "
            f"{quote}: put the stop further from the entry, or risk less"
        )
    return size
