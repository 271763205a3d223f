"""Execution: icebergs (`iceberg visible SIZE`), scaled orders (`place scaled ... from A to B
in N`) and TWAPs (`place twap ... over D every E [limit PRICE]`). Pure.

Codes: E320 an iceberg that cannot be sent, E321 its visible size out of range, W325 a visible
size below the 1/20 of the size KuCoin's older API documents, E322 a scaled order's count or
prices, E323 a slice below the symbol's minimum, E324 a TWAP's timing, E326 a
sliced order's size not in the base currency.
"""

from __future__ import annotations

from decimal import Decimal

from rules_engine.compiler import _model as M
from rules_engine.compiler._base import _Bad, _fmt, _multiple_below
from rules_engine.compiler._orders import _Orders
from rules_engine.core.symbols import SymbolInfo
from rules_engine.dsl import ast as A

MAX_SCALED = 100  # slices of a scaled order
MAX_TWAP = 1000  # slices of a TWAP
_SHARE = 20  # visibleSize >= size / 20 (the shared API reference: KuCoin's older docs)


def _ceil_to(amount: Decimal, step: Decimal) -> Decimal:
    """`amount` rounded up to a multiple of `step`."""
    return -(-amount // step) * step


def split(total: Decimal, count: int, lot: Decimal) -> tuple[Decimal, Decimal]:
    """Each slice's size (the total / count, rounded down to the lot) and the last slice's,
    which also takes the remainder of that rounding (fewer lots than there are slices), so
    that the slices add up to the total rounded down to the lot."""
    each = _multiple_below(total / count, lot)
    return each, _multiple_below(total, lot) - each * (count - 1)


class _Execution(_Orders):
    """`_Orders` with the execution constructs: a sliced order compiles here, and any other
    order gets its iceberg checked after `_Orders` compiled it."""

    def _order(
        self, place: A.Place, stop_loss: A.StopLoss | A.TrailingStopLoss | None, symbol: str,
        trail: Decimal | None = None,
    ) -> M.OrderSpec | None:
        info = self.symbols[symbol]
        if place.slicing is not None:
            return self._sliced(place, stop_loss, info)
        order = super()._order(place, stop_loss, symbol, trail)
        size = None
        if order is not None and order.size.kind == "base" and isinstance(
                order.size.amount, M.Const):
            size = order.size.amount.value
        good, visible = self._iceberg(place, place.order_type.text, size, info)
        if order is None or not good:
            return None
        return order._replace(visible=visible) if visible is not None else order

    def _iceberg(self, place: A.Place, otype: str, size: Decimal | None,
                 info: SymbolInfo) -> tuple[bool, M.Value | None]:
        """An iceberg's visible size (None without `iceberg`), checked against the order's
        type, its other options and `size` (the order's, or one slice's, when literal)."""
        node = place.visible
        if node is None:
            return True, None
        word = next(o for o in place.options if o.text == "iceberg")
        ok = True
        if otype != "limit" or place.limit is not None:
            self._report(word.span, "E320",
                         f"iceberg applies to limit orders only, not to a "
                         f"{'stop-limit' if place.limit is not None else otype} order: "
                         "`place limit buy 1 at 59000 iceberg visible 0.1`")
            ok = False
        for other, why in (("hidden", "a hidden order shows nothing, an iceberg shows its "
                                      "visible part: choose one"),
                           ("post-only", "the engine sends no post-only iceberg (KuCoin documents "
                                         "post-only as excluding icebergs on its futures API "
                                         "and is silent for spot): drop one of them"),
                           ("ioc", "an ioc order never rests, so there is nothing to hide"),
                           ("fok", "a fok order never rests, so there is nothing to hide")):
            clash = next((o for o in place.options if o.text == other), None)
            if clash is not None:
                self._report(clash.span, "E320", f"iceberg cannot go with {other}: {why}")
                ok = False
        try:
            visible = self._value(node)
        except _Bad:
            return False, None
        if not isinstance(visible, M.Const):
            return ok, visible  # computed: rounded and checked when the rule fires
        amount, sym = visible.value, info.symbol
        if amount <= 0:
            self._report(node.span, "E321", "the visible size must be above zero")
            return False, None
        fixed = _multiple_below(amount, info.base_increment)
        if fixed != amount:
            self._report(node.span, "E321",
                         f"visible size {_fmt(amount)} is not a multiple of {sym}'s "
                         f"baseIncrement {_fmt(info.base_increment)}: write {_fmt(fixed)}")
            ok = False
        if amount < info.base_min_size:
            self._report(node.span, "E321",
                         f"visible size {_fmt(amount)} is below {sym}'s baseMinSize "
                         f"{_fmt(info.base_min_size)}")
            ok = False
        if size is not None and amount > size:
            self._report(node.span, "E321",
                         f"visible size {_fmt(amount)} is above the size {_fmt(size)} it "
                         "shows a part of: it would show the whole order")
            ok = False
        elif size is not None and amount * _SHARE < size and fixed == amount and (
                amount >= info.base_min_size):  # a visible size E321 took is not judged
            self._report(node.span, "W325",
                         f"visible size {_fmt(amount)} is below 1/{_SHARE} of the size "
                         f"{_fmt(size)}: KuCoin's older API documents visibleSize as at least "
                         f"1/{_SHARE} of the size, and the exchange may refuse the order; "
                         f"show at least {_fmt(_ceil_to(size / _SHARE, info.base_increment))}")
        return ok, visible

    # ------------------------------------------------------------ scaled and TWAP

    def _sliced(self, place: A.Place, stop_loss: A.StopLoss | A.TrailingStopLoss | None,
                info: SymbolInfo) -> M.OrderSpec | None:
        slicing = place.slicing
        assert slicing is not None
        kind, side = place.order_type.text, place.side.text
        ok = True
        if stop_loss is not None:
            self._report(stop_loss.span, "E408",
                         f"stop-loss goes beside a `place limit sell ... at PRICE`, not a {kind} "
                         "order: chain a bracket with `after RULE filled` instead")
            ok = False
        if place.size.kind != "base":
            self._report(place.size.span, "E326",
                         f"a {kind} order's size is in {info.base_currency} (the base "
                         f"currency), split into slices: `place {kind} {side} 0.05 ...`")
            return None
        try:
            total = self._value(place.size.amount)
        except _Bad:
            return None
        size = total.value if isinstance(total, M.Const) else None
        if size is not None and size <= 0:
            self._report(place.size.span, "E311", "the size must be above zero")
            return None
        if kind == "scaled":
            made = self._scaled(place, slicing, info, size)
            price: M.Value | None = None
            otype = "limit"
        else:
            made, price = self._twap(place, slicing, info, size)
            otype = "limit" if place.limit is not None else "market"
        if made is None:
            return None
        each = None
        if size is not None:
            each = self._slice_size(place, size, made.slices, info, kind)
            if each is None:
                ok = False
            elif isinstance(price, M.Const) or kind == "scaled":
                low = self._lowest_price(made, price)
                if low is not None:
                    self._check_min_funds(low * each, place.size.span, info,
                                          f"each slice's value (at {_fmt(low)})")
        tif, post_only, hidden = self._options(place, otype)
        good, visible = self._iceberg(place, otype, each, info)
        if tif is None or not good or not ok:
            return None
        return M.OrderSpec(
            symbol=info.symbol, order_type=otype, side=side,
            size=M.SizeSpec("base", total, None), price=price, trail=None,
            time_in_force=tif, post_only=post_only, hidden=hidden, stop_loss=None,
            visible=visible, slicing=made)

    def _scaled(self, place: A.Place, slicing: A.Slicing, info: SymbolInfo,
                size: Decimal | None) -> M.Slicing | None:
        assert slicing.start is not None and slicing.end is not None
        assert slicing.slices is not None
        count_node, ok = slicing.slices, True
        count = Decimal(count_node.text)
        if count != count.to_integral_value() or not 2 <= count <= MAX_SCALED:
            self._report(count_node.span, "E322",
                         f"a scaled order has 2 to {MAX_SCALED} slices, not {count_node.text}: "
                         "`in 5`")
            ok = False
        values: list[M.Value] = []
        side = place.side.text
        for node in (slicing.start, slicing.end):
            try:
                value = self._value(node)
            except _Bad:
                ok = False
                continue
            if isinstance(value, M.Const) and not self._check_price(
                    value.value, node, info, side, "price"):
                ok = False
            values.append(value)
        if not ok:
            return None
        start, end = values
        n = int(count)
        if isinstance(start, M.Const) and isinstance(end, M.Const):
            step = abs(end.value - start.value) / (n - 1)
            if step < info.price_increment:
                self._report(slicing.start.span.to(slicing.end.span), "E322",
                             f"from {_fmt(start.value)} to {_fmt(end.value)} in {n} spaces "
                             f"the slices less than {info.symbol}'s priceIncrement "
                             f"{_fmt(info.price_increment)} apart: widen the range or "
                             "place fewer slices")
                return None
        elif start == end:
            self._report(slicing.start.span.to(slicing.end.span), "E322",
                         "from and to are the same price: every slice would rest at it; "
                         "write the range, e.g. `from bid to bid - 2%`")
            return None
        return M.Slicing("scaled", n, start, end)

    def _twap(self, place: A.Place, slicing: A.Slicing, info: SymbolInfo,
              size: Decimal | None) -> tuple[M.Slicing | None, M.Value | None]:
        assert slicing.over is not None and slicing.every is not None
        over, every = slicing.over.seconds, slicing.every.seconds
        where = slicing.over.span.to(slicing.every.span)
        if every <= 0 or over <= 0:
            self._report(where, "E324", "`over` and `every` must be above zero: "
                                        "`over 2h every 5m`")
            return None, None
        if over % every:
            fixed = (over // every) * every
            self._report(where, "E324",
                         f"every {slicing.every.text} does not divide over "
                         f"{slicing.over.text}: the slices would not end with it; write "
                         f"`over {_duration(fixed) if fixed else slicing.every.text} "
                         f"every {slicing.every.text}`")
            return None, None
        count = over // every
        if not 1 <= count <= MAX_TWAP:
            self._report(where, "E324",
                         f"a TWAP has 1 to {MAX_TWAP} slices; over {slicing.over.text} every "
                         f"{slicing.every.text} makes {count}")
            return None, None
        price: M.Value | None = None
        if place.limit is not None:
            try:
                price = self._value(place.limit)
            except _Bad:
                return None, None
            if isinstance(price, M.Const) and not self._check_price(
                    price.value, place.limit, info, place.side.text, "limit price"):
                return None, None
        return M.Slicing("twap", count, every_seconds=every), price

    def _slice_size(self, place: A.Place, size: Decimal, count: int, info: SymbolInfo,
                    kind: str) -> Decimal | None:
        each, last = split(size, count, info.base_increment)
        sym, span = info.symbol, place.size.span
        if each < info.base_min_size:
            self._report(span, "E323",
                         f"{_fmt(size)} in {count} slices is {_fmt(each)} a slice, below "
                         f"{sym}'s baseMinSize {_fmt(info.base_min_size)}: place at least "
                         f"{_fmt(info.base_min_size * count)} or fewer slices")
            return None
        if last > info.base_max_size:
            self._report(span, "E302",
                         f"a slice of {_fmt(last)} is above {sym}'s baseMaxSize "
                         f"{_fmt(info.base_max_size)}: place more slices")
            return None
        return each

    @staticmethod
    def _lowest_price(slicing: M.Slicing, price: M.Value | None) -> Decimal | None:
        """The lowest literal price a slice rests at (the smallest slice value), if known."""
        if slicing.kind == "scaled":
            ends = (slicing.start, slicing.end)
            if all(isinstance(e, M.Const) for e in ends):
                return min(e.value for e in ends if isinstance(e, M.Const))
            return None
        return price.value if isinstance(price, M.Const) else None


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
