"""Orders: place, sizes, prices, options, stop-limit legs and brackets' stop-losses. Pure."""

from __future__ import annotations

from decimal import Decimal

from rules_engine.compiler import _model as M
from rules_engine.compiler._base import (
    _FAR_FROM_MARKET,
    _HUNDRED,
    _Bad,
    _did_you_mean,
    _fmt,
    _multiple_below,
    _num,
)
from rules_engine.compiler._brackets import _Brackets
from rules_engine.compiler._safety import bracket_problem, stop_limit_problem
from rules_engine.compiler._sizing import _Sizing
from rules_engine.core.symbols import SymbolInfo
from rules_engine.dsl import ast as A


class _Orders(_Brackets, _Sizing):
    """Compiles a rule's `place` and its bracket, with the tick, lot and value checks."""

    def _order(
        self,
        place: A.Place,
        stop_loss: A.StopLoss | A.TrailingStopLoss | None,
        symbol: str,
        trail: Decimal | None = None,
    ) -> M.OrderSpec | None:
        """The order of `place`; `stop_loss` makes it a bracket (`trail`: the distance of a
        `stop-loss trailing by`, None when it is wrong or not trailing)."""
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
        distance: Decimal | None = None
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
                distance = Decimal(place.trail.text) / _HUNDRED
                if not 0 < distance < 1:
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
        if size is not None and not self._risk_side(size, price, place, info):
            ok = False

        tif, post_only, hidden = self._options(place, otype)
        if tif is None:
            ok = False

        if isinstance(price, M.Const):
            what = "trigger price" if otype == "stop" else "price"
            ok = self._check_price(price.value, place.price, info, side, what) and ok
        if size is not None:
            self._check_value(size, price, place, info)

        stop: M.Value | None = None
        stop_limit: M.Value | None = None
        on_exchange = False
        if stop_loss is not None:
            stop = self._stop_loss(stop_loss, place, price, info, trail)
            if stop is None:
                ok = False
            elif isinstance(stop_loss, A.StopLoss):  # a trailing one is engine-held only
                good, stop_limit, on_exchange = self._exchange_leg(stop_loss, place, stop,
                                                                   size, info)
                ok = good and ok
        if not ok or size is None or tif is None:
            return None
        return M.OrderSpec(
            symbol=symbol,
            order_type=otype,
            side=side,
            size=size,
            price=price,
            trail=distance,
            time_in_force=tif,
            post_only=post_only,
            hidden=hidden,
            stop_loss=stop,
            limit=limit,
            stop_limit=stop_limit,
            on_exchange=on_exchange,
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
        if node.kind == "share_of":  # `50% of filled_size`, `50% of position`
            if node.currency is not None and node.currency.text == "filled_size":
                return self._size_of_fill(node)
            return self._position_share(node, info)
        if node.kind == "risk":
            return self._risk_size(place, info)
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

    def _size_of_fill(self, node: A.Size) -> M.SizeSpec:
        """`50% of filled_size`: a share of the parent order's fill (several take-profit
        targets of one entry), rounded down to the lot when the order is decided."""
        assert node.currency is not None
        name = node.currency
        if not isinstance(node.amount, A.Pct):
            raise self._fail(
                node.amount.span, "E310", "a share of the fill is a percent: `50% of filled_size`"
            )
        share = Decimal(node.amount.text) / _HUNDRED
        if not 0 < share <= 1:
            raise self._fail(
                node.amount.span,
                "E310",
                "a share of the fill must be above 0% and at most 100%",
            )
        fill = self._value(A.FieldRef(None, "filled_size", name.span, name.span, None))
        return M.SizeSpec("base", M.Arith("*", fill, M.Const(share.normalize())), None)

    def _check_value(
        self, size: M.SizeSpec, price: M.Value | None, place: A.Place, info: SymbolInfo
    ) -> None:
        otype = place.order_type.text
        node = place.size.amount
        span = node.span
        if not isinstance(size.amount, M.Const) or size.kind in ("share", "risk"):
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
        self,
        node: A.StopLoss | A.TrailingStopLoss,
        place: A.Place,
        price: M.Value | None,
        info: SymbolInfo,
        trail: Decimal | None,
    ) -> M.Value | None:
        """A bracket's stop-loss: beside a resting `place limit sell` (closing a bought
        position: the stop below) or `place limit buy` (closing a sold one: the stop above).
        A trailing one's value is its first trigger, `trail` from the entry's fill (or from
        `last` outside a chain)."""
        side = place.side.text
        if place.order_type.text != "limit":
            self._report(
                node.span,
                "E408",
                "stop-loss makes a bracket with a resting take-profit: it goes beside a "
                "`place limit sell ... at PRICE` (or a `place limit buy ... at PRICE` that "
                "closes a sold position)",
            )
            return None
        stop: M.Value
        if isinstance(node, A.TrailingStopLoss):
            if trail is None:
                return None  # E418 was reported
            anchor: M.Value = (
                M.Fill("fill_price") if self._chained else M.Field(info.symbol, "last")
            )
            stop = M.Offset(anchor, (1 - trail) if side == "sell" else (1 + trail))
        else:
            try:
                stop = self._value(node.price)
            except _Bad:
                return None
            if isinstance(stop, M.Const) and not self._check_price(
                stop.value, node.price, info, side, "stop-loss price"
            ):
                return None
        problem = bracket_problem(price, stop, info.symbol, side)
        if problem is not None:
            example = (
                "(`at fill_price + 3%`, `stop-loss at fill_price - 2%`)"
                if side == "sell"
                else "(`place limit buy ... at fill_price - 3%`, `stop-loss at fill_price + 2%`)"
            )
            where = (
                "the take-profit belongs above the entry's fill and the stop-loss below it"
                if side == "sell"
                else "a buy closing a sold position takes profit below the entry's fill and "
                "stops out above it"
            )
            span = node.price.span if isinstance(node, A.StopLoss) else node.span
            self._report(span, "E705", f"inverted bracket: {problem}; {where} {example}")
            return None
        return stop
