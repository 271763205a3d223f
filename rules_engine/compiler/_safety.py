"""Safety checks: the mistakes in a rule file that cost money (W701-N711, E705). Pure.

They run over the rules of one file that compiled, with their syntax trees for the places to
point at. Where a check needs a price it takes, in this order: the last price of the market
snapshot lint was given (`--tickers FILE`, or the tickers `--fetch-symbols` read), the price
the rule's own condition names (`when last < 60000`), or the order's own literal price; the
message says which. Without any, a check that needs a price stays silent.
See docs/diagnostics.md, "Money", for each code with a bad example and the fix.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from decimal import Decimal, DivisionByZero, InvalidOperation, Overflow, localcontext
from typing import NamedTuple

from rules_engine.compiler import _model as M
from rules_engine.compiler._linear import FILL, MARKET, Linear, firing_range, linear, symbols_of
from rules_engine.core.symbols import SymbolInfo, SymbolTable
from rules_engine.dsl import Diagnostic, Severity, SourceFile
from rules_engine.dsl import ast as A

__all__ = [
    "DEFAULT_MAX_ORDER_VALUE",
    "FEE_RATE",
    "TAKER_MARGIN",
    "SafetyLimits",
    "bracket_problem",
    "check_file",
    "stop_limit_problem",
    "stop_side_problem",
]

TAKER_MARGIN = Decimal("0.005")  # W704: a limit price this far past the market takes at once
VALUE_SCALE = Decimal(100)  # W702: this many times the median of the file's other orders
DEFAULT_MAX_ORDER_VALUE = Decimal(100000)  # W702 without a threshold, for dollar quotes
DOLLAR_QUOTES = frozenset(["USDT", "USDC", "USD", "DAI", "TUSD", "BUSD", "PAX", "USDP", "UST"])
FEE_RATE = Decimal("0.001")  # W707: KuCoin's base taker fee, charged in the quote currency
MAX_TRAIL = Decimal("0.5")  # W709
_DAY_S = 86400
_ONE = Decimal(1)
_HUNDRED = Decimal(100)


class SafetyLimits(NamedTuple):
    """Risk limits lint knows of (`--config FILE`'s [risk], `--max-order-value`)."""

    max_order_notional: Decimal | None = None
    max_rule_notional: Decimal | None = None
    max_daily_notional: Decimal | None = None
    source: str = ""


class _Price(NamedTuple):
    value: Decimal
    source: str


Report = Callable[[A.Span, str, str], None]


def _fmt(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _money(value: Decimal) -> str:
    """An amount for a person: 6,000,000 or 612.5 or 0.000314."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        text = f"{value:.2f}"
        return text.rstrip("0").rstrip(".")
    return _fmt(value.normalize()) if value else "0"


def _text(source: SourceFile, span: A.Span) -> str:
    line = source.line(span.line)
    end = span.end_column if span.end_line == span.line else len(line) + 1
    return line[span.column - 1 : end - 1]


# ------------------------------------------------------------------ E705, from the compiler


def bracket_problem(
    take_profit: M.Value | None, stop: M.Value, symbol: str, side: str = "sell"
) -> str | None:
    """Why a bracket's take-profit and stop-loss are inverted, or None when they may not be.
    `side` is the exits' side: a sell closes a bought position (take-profit above, stop
    below), a buy closes a sold one (take-profit below, stop above).

    Decided only where it holds for every price: two prices linear in the same anchor (or two
    constants), or one relative to `fill_price` on the wrong side of the fill."""
    with localcontext() as ctx:
        ctx.traps[InvalidOperation] = ctx.traps[Overflow] = ctx.traps[DivisionByZero] = False
        return _bracket_problem(take_profit, stop, symbol, side == "sell")


def _bracket_problem(
    take_profit: M.Value | None, stop: M.Value, symbol: str, sell: bool
) -> str | None:
    tp, sl = linear(take_profit, symbol), linear(stop, symbol)
    if tp is not None and sl is not None and tp.anchor == sl.anchor:
        if sell and tp.factor <= sl.factor and tp.offset <= sl.offset:
            return "the take-profit is at or below the stop-loss"
        if not sell and tp.factor >= sl.factor and tp.offset >= sl.offset:
            return "the take-profit is at or above the stop-loss"
    if tp is not None and tp.anchor == FILL and (
        _below_anchor(tp) if sell else _above_anchor(tp)
    ):
        return (
            "the take-profit is below the entry's fill price: it sells at a loss"
            if sell
            else "the take-profit is above the entry's fill price: it buys back at a loss"
        )
    stop_problem = stop_side_problem(sl, sell)
    return stop_problem


def stop_side_problem(sl: Linear | None, sell: bool) -> str | None:
    """Why a stop-loss relative to `fill_price` is on the wrong side of the fill (a sell's at
    or above it, a buy's at or below it), or None."""
    if sl is None or sl.anchor != FILL:
        return None
    if sell and not _below_anchor(sl):
        return (
            "the stop-loss is at or above the entry's fill price: it triggers as soon as "
            "the entry fills"
        )
    if not sell and not _above_anchor(sl):
        return (
            "the stop-loss is at or below the entry's fill price: it triggers as soon as "
            "the entry fills"
        )
    return None


def stop_limit_problem(trigger: M.Value, limit: M.Value, side: str, symbol: str) -> str | None:
    """Why a stop-limit's limit price is on the wrong side of its trigger (a sell's above it,
    a buy's below it), or None when it may not be. Decided only where it holds for every
    price: two constants, or two prices linear in the same anchor."""
    with localcontext() as ctx:
        ctx.traps[InvalidOperation] = ctx.traps[Overflow] = ctx.traps[DivisionByZero] = False
        trig, lim = linear(trigger, symbol), linear(limit, symbol)
        if trig is None or lim is None or trig.anchor != lim.anchor:
            return None
        high, low = (lim, trig) if side == "sell" else (trig, lim)
        strictly = high.factor != low.factor or high.offset != low.offset
        if high.factor >= low.factor and high.offset >= low.offset and strictly:
            return ("this stop-limit sell's limit is above its trigger" if side == "sell"
                    else "this stop-limit buy's limit is below its trigger")
        return None


def _below_anchor(price: Linear) -> bool:
    """Strictly below its anchor for every positive anchor value."""
    strictly = price.factor != _ONE or price.offset != 0
    return price.factor <= _ONE and price.offset <= 0 and strictly


def _above_anchor(price: Linear) -> bool:
    """Strictly above its anchor for every positive anchor value."""
    strictly = price.factor != _ONE or price.offset != 0
    return price.factor >= _ONE and price.offset >= 0 and strictly


def _at_or_above_anchor(price: Linear) -> bool:
    return price.factor >= _ONE and price.offset >= 0


# ------------------------------------------------------------------ the file pass


class _Order(NamedTuple):
    rule: M.CompiledRule
    node: A.RuleNode
    order: M.OrderSpec
    place: A.Place
    info: SymbolInfo
    reference: _Price | None
    value: Decimal | None  # the order's quote value at its price or the reference


def check_file(
    source: SourceFile,
    pairs: Sequence[tuple[A.RuleNode, M.CompiledRule]],
    symbols: SymbolTable,
    last_prices: M.MarketSnapshot | None,
    limits: SafetyLimits,
) -> list[Diagnostic]:
    """Every safety diagnostic of one file's compiled rules."""
    out: list[Diagnostic] = []
    seen: set[tuple[str, A.Span]] = set()

    def report(span: A.Span, code: str, message: str) -> None:
        if (code, span) in seen:
            return
        seen.add((code, span))
        severity = {"E": Severity.ERROR, "W": Severity.WARNING}.get(code[0], Severity.NOTE)
        out.append(Diagnostic(source.path, span, code, severity, message))

    with localcontext() as ctx:
        # Literals can be huge (1e400000): an overflow is Infinity and compares as such, so a
        # check never raises for what the compiler accepted.
        ctx.traps[InvalidOperation] = ctx.traps[Overflow] = ctx.traps[DivisionByZero] = False
        _check_rules(pairs, symbols, last_prices, limits, source=source, report=report)
    return out


def _check_rules(
    pairs: Sequence[tuple[A.RuleNode, M.CompiledRule]],
    symbols: SymbolTable,
    last_prices: M.MarketSnapshot | None,
    limits: SafetyLimits,
    *,
    source: SourceFile,
    report: Report,
) -> None:
    orders: list[_Order] = []
    by_identity = {rule.identity: rule for _, rule in pairs}
    for node, rule in pairs:
        _check_change_as_fraction(node, report)
        order = rule.order
        place = next((c for c in node.clauses if isinstance(c, A.Place)), None)
        if order is None or place is None or order.symbol not in symbols:
            continue
        info = symbols[order.symbol]
        reference = _reference(rule, order, last_prices)
        entry = _Order(rule, node, order, place, info, reference, _order_value(order, reference))
        orders.append(entry)
        _check_repeat(entry, limits, report)
        _check_stop_side(entry, source, report)
        _check_limit_side(entry, source, report)
        _check_share(entry, by_identity, report)
        _check_trail(entry, report)
        _check_other_symbol(entry, report)
        _check_cancel_all(entry, report)
    _check_values(orders, limits, report)


def _reference(
    rule: M.CompiledRule, order: M.OrderSpec, prices: M.MarketSnapshot | None
) -> _Price | None:
    if prices is not None and order.symbol in prices.last:
        return _Price(
            prices.last[order.symbol],
            f"{order.symbol}'s last price in {prices.source} of {prices.as_of:%Y-%m-%d %H:%M} UTC",
        )
    low, high = firing_range(rule.condition, order.symbol)
    named = high if high is not None else low
    if named is not None and named > 0:
        return _Price(named, "the price the rule's condition names")
    if isinstance(order.price, M.Const) and order.price.value > 0:
        return _Price(order.price.value, "the order's own price")
    return None


def _order_value(order: M.OrderSpec, reference: _Price | None) -> Decimal | None:
    size = order.size
    if not isinstance(size.amount, M.Const):
        return None
    if size.kind == "funds":
        return size.amount.value
    if size.kind != "base":
        return None
    if order.order_type in ("limit", "stop") and isinstance(order.price, M.Const):
        return size.amount.value * order.price.value
    return size.amount.value * reference.value if reference is not None else None


def _priced(entry: _Order) -> str:
    """`100 BTC at 60000 (the price the rule's condition names)` for a message."""
    order, info = entry.order, entry.info
    size = order.size
    assert isinstance(size.amount, M.Const)
    if size.kind == "funds":
        return f"{_fmt(size.amount.value)} {info.quote_currency}"
    if order.order_type in ("limit", "stop") and isinstance(order.price, M.Const):
        price = _fmt(order.price.value)
        return f"{_fmt(size.amount.value)} {info.base_currency} at its price {price}"
    assert entry.reference is not None
    return (
        f"{_fmt(size.amount.value)} {info.base_currency} at {_fmt(entry.reference.value)}, "
        f"{entry.reference.source}"
    )


# ------------------------------------------------------------------ W701


def _check_repeat(entry: _Order, limits: SafetyLimits, report: Report) -> None:
    rule = entry.rule
    every = rule.repeat_seconds
    if rule.schedule is not None:
        every = rule.schedule.seconds or _DAY_S  # `every day at T`: once a day
    if every is None or rule.max_firings is not None:
        return
    if rule.expires_at is not None or rule.expires_in_seconds is not None:
        return  # bounded by its expiry
    if limits.max_rule_notional is not None or limits.max_daily_notional is not None:
        return  # bounded by a risk limit
    clause = next(c for c in entry.node.clauses if isinstance(c, A.Repeat | A.Every))
    per_day = max(_DAY_S // every, 1)
    side = "buys" if entry.order.side == "buy" else "sells"
    each = f"each firing {side} {_describe_size(entry)}"
    if entry.value is not None:
        if entry.order.size.kind == "base":
            each += f" (about {_money(entry.value)} {entry.info.quote_currency}: {_priced(entry)})"
        stake = f", about {_money(entry.value * per_day)} {entry.info.quote_currency} a day"
    else:
        stake = ""
    if isinstance(clause, A.Repeat):
        what = f"`repeat every {clause.every.text}`"
    else:
        what = "the schedule (`every ...`)"
    report(
        clause.span,
        "W701",
        f"{what} without `max` places orders without end: {each}, "
        f"up to {per_day} firing(s) a day{stake}; add `max N`, an `expires` clause, or a "
        "max_rule_notional or max_daily_notional risk limit (lint --config FILE)",
    )


def _describe_size(entry: _Order) -> str:
    size, info = entry.order.size, entry.info
    if isinstance(size.amount, M.Const):
        if size.kind == "funds":
            return f"{_fmt(size.amount.value)} {info.quote_currency} worth"
        if size.kind == "share":
            return f"{_fmt(size.amount.value * _HUNDRED)}% of the {size.currency} balance"
        if size.kind == "risk":
            return f"the size that risks {_fmt(size.amount.value * _HUNDRED)}% of the " \
                f"{size.currency} balance"
        return f"{_fmt(size.amount.value)} {info.base_currency}"
    return "its size"


# ------------------------------------------------------------------ W702


def _median_without(ordered: list[Decimal], value: Decimal) -> Decimal:
    """The median of sorted `ordered` with one occurrence of `value` left out, in O(log n)."""
    skip = bisect.bisect_left(ordered, value)
    count = len(ordered) - 1

    def at(k: int) -> Decimal:
        return ordered[k if k < skip else k + 1]

    if count % 2:
        return at(count // 2)
    return (at(count // 2 - 1) + at(count // 2)) / 2


def _check_values(orders: list[_Order], limits: SafetyLimits, report: Report) -> None:
    by_quote: dict[str, list[Decimal]] = {}
    for entry in orders:
        if entry.value is not None and entry.value > 0:
            by_quote.setdefault(entry.info.quote_currency, []).append(entry.value)
    ordered = {quote: sorted(values) for quote, values in by_quote.items()}
    for entry in orders:
        value = entry.value
        if value is None or value <= 0:
            continue
        quote = entry.info.quote_currency
        threshold: Decimal
        why: str
        if limits.max_order_notional is not None:
            threshold = limits.max_order_notional
            why = f"max_order_notional {_fmt(threshold)} in {limits.source}"
        elif len(ordered[quote]) > 1:
            median = _median_without(ordered[quote], value)
            threshold = median * VALUE_SCALE
            why = (
                f"{VALUE_SCALE:f} times the median value of this file's other {quote} orders "
                f"({_money(median)} {quote})"
            )
        elif quote in DOLLAR_QUOTES:
            threshold = DEFAULT_MAX_ORDER_VALUE
            why = f"lint's default of {_money(threshold)} {quote} (--max-order-value sets another)"
        else:
            continue
        if value <= threshold:
            continue
        size = entry.order.size
        hint = ""
        if size.kind == "base" and isinstance(size.amount, M.Const):
            amount = _fmt(size.amount.value)
            hint = (
                f"; a size without a unit is in {entry.info.base_currency}: if {amount} "
                f"{quote} was meant, write `{amount} {quote}`"
            )
        report(
            entry.place.size.span,
            "W702",
            f"this order is worth about {_money(value)} {quote} ({_priced(entry)}), above "
            f"{why}{hint}",
        )


# ------------------------------------------------------------------ W703, W704


def _range_text(low: Decimal | None, high: Decimal | None) -> str:
    if high is not None and low is not None:
        return f"between {_fmt(low)} and {_fmt(high)}"
    if high is not None:
        return f"at or below {_fmt(high)}"
    assert low is not None
    return f"at or above {_fmt(low)}"


def _check_stop_side(entry: _Order, source: SourceFile, report: Report) -> None:
    order = entry.order
    if order.order_type != "stop" or entry.place.price is None:
        return
    price = linear(order.price, order.symbol)
    if price is None:
        return
    sell = order.side == "sell"
    written = _text(source, entry.place.price.span)
    trig = "at or below" if sell else "at or above"
    if price.anchor is None:
        low, high = firing_range(entry.rule.condition, order.symbol)
        stop = price.offset
        if sell and high is not None and stop >= high:
            why = f"the rule fires with {order.symbol} {_range_text(None, high)}"
        elif not sell and low is not None and stop <= low:
            why = f"the rule fires with {order.symbol} {_range_text(low, None)}"
        else:
            return
    else:
        immediate = _at_or_above_anchor(price) if sell else price.factor <= 1 and price.offset <= 0
        if not immediate:
            return
        anchor = "the market" if price.anchor == MARKET else "the parent's fill price"
        why = f"{written} is {'at or above' if sell else 'at or below'} {anchor}"
    kind = "market" if order.limit is None else "limit"
    value = f" and sends a {kind} {order.side} of {_describe_size(entry)}"
    report(
        entry.place.price.span,
        "W703",
        f"this stop {order.side} triggers when the price is {trig} {written}, but {why}: it "
        f"triggers at once{value}; a stop {order.side} belongs "
        f"{'below' if sell else 'above'} the price at which the rule fires",
    )


def _check_limit_side(entry: _Order, source: SourceFile, report: Report) -> None:
    order = entry.order
    if order.order_type != "limit" or entry.place.price is None:
        return
    if order.time_in_force != "GTC":
        return  # ioc and fok are meant to take
    if order.stop_loss is not None and order.price is not None:
        tp = linear(order.price, order.symbol)
        if tp is not None and tp.anchor == FILL:
            return  # a bracket's take-profit below the fill is E705's
    price = linear(order.price, order.symbol)
    if price is None:
        return
    buy = order.side == "buy"
    written = _text(source, entry.place.price.span)
    if price.anchor is None:
        low, high = firing_range(entry.rule.condition, order.symbol)
        p = price.offset
        if buy and high is not None and p > high * (_ONE + TAKER_MARGIN):
            past = (p - high) / high
            why = f"{_pct(past)} above the highest price at which the rule fires ({_fmt(high)})"
        elif not buy and low is not None and p < low * (_ONE - TAKER_MARGIN):
            past = (low - p) / low
            why = f"{_pct(past)} below the lowest price at which the rule fires ({_fmt(low)})"
        else:
            return
    else:
        ref = entry.reference.value if entry.reference is not None else None
        past_ratio = _past_ratio(price, buy, ref)
        if past_ratio is None or past_ratio <= TAKER_MARGIN:
            return
        anchor = "the market" if price.anchor == MARKET else "the parent's fill price"
        why = f"{_pct(past_ratio)} {'above' if buy else 'below'} {anchor}"
    report(
        entry.place.price.span,
        "W704",
        f"a limit {order.side} at {written} is {why}: {_stake(entry)} at once at the "
        "market price, as a taker, instead of resting at the price you chose; "
        + (
            "a buy belongs at or below the ask (or add `ioc` if taking is meant)"
            if buy
            else "a sell belongs at or above the bid (or add `ioc` if taking is meant)"
        ),
    )


def _stake(entry: _Order) -> str:
    what = _describe_size(entry)
    if entry.value is not None:
        what += f" (about {_money(entry.value)} {entry.info.quote_currency})"
    return f"it {'buys' if entry.order.side == 'buy' else 'sells'} {what}"


def _past_ratio(price: Linear, buy: bool, ref: Decimal | None) -> Decimal | None:
    """How far past its anchor (as a share of it) a relative price is, on the taking side."""
    sign = _ONE if buy else -_ONE
    if price.offset == 0:
        return sign * (price.factor - _ONE)
    if ref is None or ref <= 0:
        return None
    return sign * (price.at(ref) - ref) / ref


def _pct(share: Decimal) -> str:
    text = f"{share * _HUNDRED:.2f}"
    return (text.rstrip("0").rstrip(".") if "." in text else text) + "%"


# ------------------------------------------------------------------ W706, W707


def _check_share(
    entry: _Order, by_identity: dict[str, M.CompiledRule], report: Report
) -> None:
    size, rule, info = entry.order.size, entry.rule, entry.info
    if size.kind != "share" or not isinstance(size.amount, M.Const):
        return
    share = size.amount.value
    span = entry.place.size.span
    if rule.after is not None and rule.after[1] == "filled":
        parent_name = rule.after[0]
        parent = by_identity.get(parent_name)
        bought = ""
        if parent is not None and parent.order is not None:
            psize = parent.order.size
            if psize.kind == "base" and isinstance(psize.amount, M.Const):
                bought = (
                    f" ({parent_name} {parent.order.side}s "
                    f"{_fmt(psize.amount.value)} {info.base_currency})"
                )
        report(
            span,
            "W706",
            f"`{_fmt(share * _HUNDRED)}% of {size.currency}` is a share of the whole available "
            f"{size.currency} balance when this rule fires, not what {parent_name}'s order "
            f"filled{bought}: write `filled_size` to trade exactly that, or `position` "
            "(`50% of position`) for what the chain bought and has not sold yet",
        )
    if (
        entry.order.side == "buy"
        and size.currency == info.quote_currency
        and share > _ONE - FEE_RATE
    ):
        report(
            span,
            "W707",
            f"`{_fmt(share * _HUNDRED)}% of {size.currency}` leaves nothing for the trading "
            f"fee, which KuCoin holds in {info.quote_currency} on top of the order (0.1% or "
            "more): the order is refused for insufficient balance and the rule is blocked; "
            f"write `99.8% of {size.currency}` to leave room for the fee",
        )


# ------------------------------------------------------------------ W708


def _check_change_as_fraction(node: A.RuleNode, report: Report) -> None:
    for clause in node.clauses:
        if not isinstance(clause, A.When):
            continue
        stack: list[A.Expr] = [clause.cond]
        while stack:
            expr = stack.pop()
            if isinstance(expr, A.BoolOp):
                stack.extend((expr.left, expr.right))
            elif isinstance(expr, A.Not):
                stack.append(expr.operand)
            elif isinstance(expr, A.Cmp | A.Cross):
                _fraction_pair(expr.left, expr.right, report)
                _fraction_pair(expr.right, expr.left, report)
            elif isinstance(expr, A.Between):
                _fraction_pair(expr.operand, expr.low, report)
                _fraction_pair(expr.operand, expr.high, report)


def _fraction_pair(field: A.Expr, other: A.Expr, report: Report) -> None:
    if isinstance(field, A.Call) and field.name == "change":
        what = "change(n, timeframe) is the change over n candles"
    elif isinstance(field, A.FieldRef) and field.name == "change":
        what = "change is the 24h change"
    elif isinstance(field, A.FieldRef) and field.name == "pnl%":
        what = "pnl% is the chain's profit"
    else:
        return
    negative = isinstance(other, A.Neg)
    number = other.operand if isinstance(other, A.Neg) else other
    if not isinstance(number, A.Num):
        return
    value = Decimal(number.text)
    if value < 1:
        return
    sign = "-" if negative else ""
    report(
        other.span,
        "W708",
        f"{what} as a fraction: {sign}{number.text} means "
        f"{sign}{_fmt(value * _HUNDRED)}%; write `{sign}{number.text}%` for "
        f"{sign}{number.text} percent",
    )


# ------------------------------------------------------------------ W709


def _check_trail(entry: _Order, report: Report) -> None:
    order = entry.order
    if order.trail is None or entry.place.trail is None:
        return
    span = entry.place.trail.span
    pct = _fmt(order.trail * _HUNDRED)
    if order.trail > MAX_TRAIL:
        report(
            span,
            "W709",
            f"a trailing distance of {pct}% sells only after the price fell {pct}% from its "
            "peak, more than half of it; trailing stops are usually 1-10%",
        )
        return
    if entry.reference is None:
        return
    distance = order.trail * entry.reference.value
    tick = entry.info.price_increment
    if distance < tick:
        report(
            span,
            "W709",
            f"a trailing distance of {pct}% is {_fmt(distance)} {entry.info.quote_currency} at "
            f"{_fmt(entry.reference.value)} ({entry.reference.source}), less than one "
            f"priceIncrement ({_fmt(tick)}): the stop triggers on the first tick against it",
        )


# ------------------------------------------------------------------ W710, N711


def _check_other_symbol(entry: _Order, report: Report) -> None:
    rule, order = entry.rule, entry.order
    if entry.node.on is None or rule.condition is None:
        return
    watched = symbols_of(rule.condition)
    if not watched or order.symbol in watched:
        return
    if isinstance(order.price, M.Const):
        return  # a literal limit price bounds what the order pays
    listed = ", ".join(sorted(watched))
    report(
        entry.place.span,
        "W710",
        f"the condition watches only {listed}, but the order trades {order.symbol} (from "
        f"`on {order.symbol}`), at whatever price {order.symbol} has when it fires: bound it in "
        f"the condition (`and {order.symbol} ask < PRICE`) or give the order a literal price",
    )


def _check_cancel_all(entry: _Order, report: Report) -> None:
    for clause in entry.node.clauses:
        if isinstance(clause, A.CancelAll):
            report(
                clause.span,
                "N711",
                f"`cancel all` beside `place`: each firing first cancels every open order the "
                f"engine placed on {entry.order.symbol} (this rule's earlier orders included), "
                "then places its own, which it never cancels",
            )
