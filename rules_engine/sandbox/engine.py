"""The matching engine: pure, no IO and no clock (every call is given `now_ms`).

One account trades against books that also hold the market feed's liquidity. A book level keeps
the feed's size (`feed`, the rest of the market, queued first) and the account's resting orders in
time order. Each operation returns the events it caused, in KuCoin's order:

* `OrderEvent` — one `/spotMarket/tradeOrdersV2` message: `received`, `match` (taker status
  `match`, maker status `open`), `open` only when the order rests, `filled` or `canceled`.
* `BalanceEvent` — one `/account/balance` message (`trade.hold`, `trade.setted`).
* `L2Change` — one visible level change with its book sequence (`/market/level2`), so a client
  building a book from a snapshot plus these deltas gets exactly `snapshot()`.
* `TradeEvent` — a print (last price, for tickers); `StopEvent` — `/spotMarket/advancedOrders`.

Feed liquidity entering the book behaves as a taker against the account's resting orders it
crosses, which is how a moving market fills resting orders.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from rules_engine.core.symbols import SymbolInfo
from rules_engine.sandbox import errors, stop_orders, validation
from rules_engine.sandbox.book import Book, Level
from rules_engine.sandbox.engine_types import (
    CLIENT_OID,
    ORDER_TRANSITIONS,
    ZERO,
    Account,
    BalanceEvent,
    Event,
    Fill,
    IllegalTransitionError,
    L2Change,
    LedgerEntry,
    Oco,
    Order,
    OrderEvent,
    OrderRequest,
    Stats,
    StopEvent,
    TradeEvent,
    account_id,
    floor_to,
    fmt,
    multiple_of,
    snapshot_of,
)
from rules_engine.sandbox.errors import ApiError

__all__ = [
    "CLIENT_OID",
    "ORDER_TRANSITIONS",
    "Account",
    "BalanceEvent",
    "Book",
    "Engine",
    "Event",
    "Fill",
    "IllegalTransitionError",
    "L2Change",
    "LedgerEntry",
    "Oco",
    "Order",
    "OrderEvent",
    "OrderRequest",
    "Stats",
    "StopEvent",
    "TradeEvent",
    "account_id",
    "fmt",
]

FILL_RETENTION_MS = 7 * 24 * 3600 * 1000
LEGACY_CANCELED_MS = 30 * 24 * 3600 * 1000
LEGACY_FILLED_MS = 182 * 24 * 3600 * 1000


class Engine:
    """Books, the account, orders and fills; every mutating call returns its events."""

    def __init__(
        self,
        symbols: Mapping[str, SymbolInfo],
        balances: Mapping[str, Decimal],
        *,
        maker_fee: Decimal,
        taker_fee: Decimal,
        id_prefix: str = "5a5a5a5a",
        retention_ms: int = 7 * 24 * 3600 * 1000,
        first_sequence: int = 1_000_000_000,
        max_open_per_symbol: int = 200,
    ) -> None:
        self.max_open_per_symbol = max_open_per_symbol
        self.symbols = dict(symbols)
        self.account = Account(totals=dict(balances))
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self.id_prefix = id_prefix
        self.retention_ms = retention_ms
        self.books = {s: Book(s, first_sequence) for s in self.symbols}
        self.stats = {s: Stats() for s in self.symbols}
        self.orders: dict[str, Order] = {}
        self.open_ids: dict[str, set[str]] = {}  # active orders per symbol
        self.by_client_oid: dict[str, str] = {}
        self.stop_orders: dict[str, Order] = {}
        self.ocos: dict[str, Oco] = {}
        self.fills: list[Fill] = []
        self.ledger: list[LedgerEntry] = []
        self.ledger_counter = 0  # ledger entry ids; never reused
        self.counter = 0
        self.trade_counter = 0
        self.fill_counter = 0  # fill ids (HF `id`, the `lastId` cursor); never reused

    # ---- identities -------------------------------------------------------------------

    def _next_id(self, prefix: str = "") -> str:
        """24 characters: an optional prefix (`vs` for stop orders), the instance prefix, then
        the counter, so ids never repeat within an instance."""
        self.counter += 1
        head = (prefix + self.id_prefix)[:8]
        return f"{head}{self.counter:016x}"

    def _next_fill_seq(self) -> int:
        self.fill_counter += 1
        return self.fill_counter

    def _next_trade_id(self) -> str:
        self.trade_counter += 1
        return f"{self.trade_counter:d}"

    @staticmethod
    def feed_order_id(trade_id: str, side: str = "maker") -> str:
        """The id of the rest of the market's order in a trade: 24 hex digits, like KuCoin's,
        derived from the trade id (`fa...` its resting side, `fb...` its taking side)."""
        return f"{'fa' if side == 'maker' else 'fb'}{int(trade_id):022x}"

    # ---- validation --------------------------------------------------------------------

    def validate(self, req: OrderRequest, now_ms: int) -> ApiError | None:
        """None when the engine takes `req`, else KuCoin's refusal (`validation.py`)."""
        return validation.validate(self, req, now_ms)

    def retained(self, order: Order, now_ms: int) -> bool:
        """HF done orders stay `retention_ms` (7 days); legacy ones KuCoin keeps longer:
        cancelled one month, filled six months."""
        if order.active:
            return True
        if order.req.hf:
            keep = self.retention_ms
        else:
            keep = LEGACY_FILLED_MS if order.done_reason == "filled" else LEGACY_CANCELED_MS
        return now_ms - order.updated_at <= keep

    # ---- queries -----------------------------------------------------------------------

    def get(self, order_id: str, now_ms: int) -> Order | None:
        order = self.orders.get(order_id)
        if order is None or not self.retained(order, now_ms):
            return None
        return order

    def get_by_client_oid(self, client_oid: str, now_ms: int) -> Order | None:
        order_id = self.by_client_oid.get(client_oid)
        return None if order_id is None else self.get(order_id, now_ms)

    def list_orders(self, now_ms: int, *, active: bool, symbol: str | None = None) -> list[Order]:
        if active:
            ids = (self.open_ids.get(symbol, set()) if symbol is not None
                   else set().union(*self.open_ids.values()))
            candidates = [self.orders[i] for i in ids]
        else:
            candidates = list(self.orders.values())
        found = [
            o
            for o in candidates
            if o.active == active
            and (symbol is None or o.symbol == symbol)
            and self.retained(o, now_ms)
        ]
        found.sort(key=lambda o: (o.created_at, o.id), reverse=True)
        return found

    def snapshot(self, symbol: str, limit: int | None = None) -> tuple[int, list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:  # noqa: E501
        book = self.books[symbol]
        return book.sequence, book.depth("bids", limit), book.depth("asks", limit)

    # ---- balances ----------------------------------------------------------------------

    def _balance_event(  # noqa: PLR0917 - internal helper, arguments in a fixed order
        self, currency: str, avail_change: Decimal, hold_change: Decimal, relation: str,
        order: Order, trade_id: str, now_ms: int,
    ) -> BalanceEvent:
        acct = self.account
        return BalanceEvent(
            currency, acct.total(currency), acct.available(currency), acct.held(currency),
            avail_change, hold_change, relation, order.symbol, order.id, trade_id, now_ms,
        )

    def _change_hold(self, currency: str, delta: Decimal, order: Order, now_ms: int,
                     events: list[Event]) -> None:
        if delta == 0:
            return
        self.account.holds[currency] = self.account.held(currency) + delta
        order.hold += delta
        events.append(self._balance_event(currency, -delta, delta, "trade.hold", order, "", now_ms))

    def _settle(  # noqa: PLR0917 - internal helper, arguments in a fixed order
        self, currency: str, delta: Decimal, order: Order, trade_id: str, now_ms: int,
                events: list[Event], fee: Decimal = ZERO) -> None:
        if delta == 0:
            return
        self.account.totals[currency] = self.account.total(currency) + delta
        self.ledger_counter += 1
        self.ledger.append(LedgerEntry(
            self.ledger_counter, currency, delta, fee, self.account.totals[currency],
            "TRADE_EXCHANGE", order.symbol, order.id, trade_id, now_ms))
        events.append(
            self._balance_event(currency, delta, ZERO, "trade.setted", order, trade_id, now_ms)
        )

    # ---- placing -----------------------------------------------------------------------

    def place(self, req: OrderRequest, now_ms: int, order_id: str | None = None,
              oco_id: str = "") -> tuple[Order | ApiError, list[Event]]:
        error = self.validate(req, now_ms)
        if error is not None:
            return error, []
        info = self.symbols[req.symbol]
        events: list[Event] = []
        if req.stop is not None:
            return stop_orders.place_stop(self, req, now_ms, events)
        book = self.books[req.symbol]
        opposite = "asks" if req.side == "buy" else "bids"
        # Funds check before anything changes.
        need_quote, need_base = self._requirement(req, book, opposite, info)
        if need_quote is None or need_base is None:
            return errors.balance_insufficient(), []
        if self.account.available(info.quote_currency) < need_quote:
            return errors.balance_insufficient(), []
        if self.account.available(info.base_currency) < need_base:
            return errors.balance_insufficient(), []
        order = Order(order_id or self._next_id(), req, now_ms, now_ms,
                      stop_triggered=order_id is not None, oco_id=oco_id)
        self.orders[order.id] = order
        self.open_ids.setdefault(order.symbol, set()).add(order.id)
        self.by_client_oid[req.client_oid] = order.id
        events.append(self._order_event(order, "received", "new", now_ms))
        self._run(order, now_ms, events)
        return order, events

    def _requirement(
        self, req: OrderRequest, book: Book, opposite: str, info: SymbolInfo
    ) -> tuple[Decimal | None, Decimal | None]:
        """Quote and base the order needs available; None when the book cannot serve it."""
        fee = 1 + self.taker_fee
        if req.type == "limit":
            if req.side == "buy":
                return (req.price or ZERO) * (req.size or ZERO) * fee, ZERO
            return ZERO, req.size or ZERO
        if req.side == "buy":
            if req.funds is not None:
                return req.funds * fee, ZERO
            cost = self._walk_cost(book, opposite, req.size or ZERO)
            return (None if cost is None else cost * fee), ZERO
        if req.size is not None:
            return ZERO, req.size
        size = self._walk_size_for_funds(book, opposite, req.funds or ZERO, info)
        return ZERO, size

    @staticmethod
    def _walk_cost(book: Book, side: str, size: Decimal) -> Decimal | None:
        left, cost = size, ZERO
        for price, level in book.side(side).items():
            take = min(left, level.feed + sum((o.remaining for o in level.orders), ZERO))
            cost += take * price
            left -= take
            if left <= 0:
                break
        total: Decimal = cost
        if left <= 0:
            return total
        return total if left < size else None

    @staticmethod
    def _walk_size_for_funds(
        book: Book, side: str, funds: Decimal, info: SymbolInfo
    ) -> Decimal | None:
        left, size = funds, ZERO
        for price, level in book.side(side).items():
            avail = level.feed + sum((o.remaining for o in level.orders), ZERO)
            take = min(avail, floor_to(left / price, info.base_increment))
            size += take
            left -= take * price
            if take < avail:
                break
        return size if size > 0 else None

    def _crosses(self, order: Order, price: Decimal) -> bool:
        if order.req.type == "market":
            return True
        return price <= order.price if order.side == "buy" else price >= order.price

    def _fillable(self, order: Order, book: Book, opposite: str) -> Decimal:
        total = ZERO
        for price, level in book.side(opposite).items():
            if not self._crosses(order, price):
                break
            own = ZERO if order.req.stp else sum(
                (o.remaining for o in level.orders if o is not order), ZERO)
            total += level.feed + own
            if total >= order.remaining:
                break
        return total

    def _run(self, order: Order, now_ms: int, events: list[Event]) -> None:
        """Hold funds, match, then rest, cancel or finish the order."""
        req = order.req
        info = self.symbols[req.symbol]
        book = self.books[req.symbol]
        side_name = "bids" if req.side == "buy" else "asks"
        opposite = "asks" if req.side == "buy" else "bids"
        best = book.best(opposite)
        if req.post_only and best is not None and self._crosses(order, best):
            self._finish(order, "canceled", now_ms, events)
            return
        if req.time_in_force == "FOK" and self._fillable(order, book, opposite) < order.remaining:
            self._finish(order, "canceled", now_ms, events)
            return
        if req.type == "limit":
            if req.side == "buy":
                self._change_hold(
                    info.quote_currency, order.price * order.size * (1 + self.taker_fee),
                    order, now_ms, events,
                )
            else:
                self._change_hold(info.base_currency, order.size, order, now_ms, events)
        self._match(order, book, opposite, now_ms, events)
        if not order.active:
            return
        if req.type == "market" or req.time_in_force in ("IOC", "FOK"):
            self._finish(order, "canceled", now_ms, events)
            return
        # Rest on the book.
        order.in_book = True
        book.level(side_name, order.price).add(order)
        order.move("open")
        events.append(self._order_event(order, "open", "open", now_ms))
        change = book.touch(side_name, order.price, now_ms)
        if change is not None:
            events.append(change)

    def _match(self, order: Order, book: Book, opposite: str, now_ms: int,
               events: list[Event]) -> None:
        info = self.symbols[order.symbol]
        for price, level in book.levels(opposite):
            if not order.active or not self._crosses(order, price):
                break
            # The market's own liquidity first, then resting orders in time order.
            if level.feed > 0:
                qty = self._taker_qty(order, price, level.feed, info)
                if qty > 0:
                    level.feed -= qty
                    self._execute(order, None, price, qty, now_ms, events)
            for maker in list(level.orders):
                if not order.active:
                    break
                if order.req.stp:
                    # Every resting order is the account's own: self-trade prevention.
                    self._prevent_self_trade(order, maker, now_ms, events)
                    continue
                qty = self._taker_qty(order, price, maker.remaining, info)
                if qty <= 0:
                    break
                self._execute(order, maker, price, qty, now_ms, events)
            if not order.active:
                # The taker was cancelled by STP (or filled): the level may still have changed.
                change = book.touch(opposite, price, now_ms)
                if change is not None:
                    events.append(change)
                break
            change = book.touch(opposite, price, now_ms)
            if change is not None:
                events.append(change)
            if self._exhausted(order, price, info):
                break
        if order.active and self._exhausted(order, None, info):
            self._finish(order, "filled", now_ms, events)

    def _prevent_self_trade(self, taker: Order, maker: Order, now_ms: int,
                            events: list[Event]) -> None:
        """KuCoin's STP, chosen by the taker: CN cancels the taker, CO the resting order, CB
        both; DC takes the smaller remaining size off both (an order left with nothing is
        cancelled). FOK orders always use CN."""
        mode = "CN" if taker.req.time_in_force == "FOK" else taker.req.stp
        if mode in ("CO", "CB"):
            self._cancel_resting(maker, now_ms, events, touch=False)
        if mode in ("CN", "CB"):
            self._finish(taker, "canceled", now_ms, events)
        if mode == "DC":
            qty = min(taker.remaining, maker.remaining)
            if qty >= maker.remaining:
                self._cancel_resting(maker, now_ms, events, touch=False)
            else:
                self._shrink(maker, qty, now_ms, events)
            if qty >= taker.remaining:
                self._finish(taker, "canceled", now_ms, events)
            else:
                self._shrink(taker, qty, now_ms, events)

    def _taker_qty(self, order: Order, price: Decimal, avail: Decimal, info: SymbolInfo) -> Decimal:
        if order.req.size is not None:
            return min(order.remaining, avail)
        funds_left = (order.req.funds or ZERO) - order.deal_funds
        return min(avail, floor_to(funds_left / price, info.base_increment))

    def _exhausted(self, order: Order, price: Decimal | None, info: SymbolInfo) -> bool:
        if order.req.size is not None:
            return order.remaining <= 0
        funds_left = (order.req.funds or ZERO) - order.deal_funds
        probe = price if price is not None else self.books[order.symbol].best(
            "asks" if order.side == "buy" else "bids"
        )
        if probe is None:
            return order.deal_size > 0
        return floor_to(funds_left / probe, info.base_increment) <= 0

    def _execute(  # noqa: PLR0917 - internal helper, arguments in a fixed order
        self, taker: Order, maker: Order | None, price: Decimal, qty: Decimal,
                 now_ms: int, events: list[Event]) -> None:
        trade_id = self._next_trade_id()
        symbol = taker.symbol
        book = self.books[symbol]
        maker_id = maker.id if maker else self.feed_order_id(trade_id)
        self._apply_fill(taker, maker_id, price, qty, "taker", trade_id, now_ms, events)
        if maker is not None:
            self._apply_fill(maker, taker.id, price, qty, "maker", trade_id, now_ms, events)
            if maker.remaining <= 0:
                self._unrest(maker)
                self._finish(maker, "filled", now_ms, events)
        events.append(
            TradeEvent(symbol, price, qty, taker.side, trade_id, maker_id, taker.id,
                       book.sequence, now_ms)
        )
        self._record_trade(symbol, price, qty)
        if taker.req.size is not None and taker.remaining <= 0:
            self._finish(taker, "filled", now_ms, events)

    def _apply_fill(  # noqa: PLR0917 - internal helper, arguments in a fixed order
        self, order: Order, counter: str, price: Decimal, qty: Decimal,
                    liquidity: str, trade_id: str, now_ms: int, events: list[Event]) -> None:
        info = self.symbols[order.symbol]
        rate = self.taker_fee if liquidity == "taker" else self.maker_fee
        funds = price * qty
        fee = funds * rate
        shown_before = order.visible
        order.deal_size += qty
        if order.in_book:
            self._level_of(order).adjust(shown_before, order)
        order.deal_funds += funds
        order.fee += fee
        order.updated_at = now_ms
        status = "match" if liquidity == "taker" else "open"
        events.append(self._order_event(order, "match", status, now_ms, price, qty, trade_id,
                                        liquidity))
        if order.side == "buy":
            if order.req.type == "limit":
                release = min(order.hold, order.price * qty * (1 + self.taker_fee))
                self._change_hold(info.quote_currency, -release, order, now_ms, events)
            self._settle(info.quote_currency, -(funds + fee), order, trade_id, now_ms, events,
                         fee)
            self._settle(info.base_currency, qty, order, trade_id, now_ms, events)
        else:
            if order.req.type == "limit":
                self._change_hold(info.base_currency, -min(order.hold, qty), order, now_ms,
                                  events)
            self._settle(info.base_currency, -qty, order, trade_id, now_ms, events)
            self._settle(info.quote_currency, funds - fee, order, trade_id, now_ms, events, fee)
        self.fills.append(
            Fill(order.symbol, trade_id, order.id, counter, order.side, liquidity, price, qty,
                 funds, fee, rate, info.quote_currency, order.req.type, now_ms,
                 self._next_fill_seq())
        )
        if order.oco_id:
            stop_orders.oco_filled(self, order, now_ms, events)

    def _record_trade(self, symbol: str, price: Decimal, qty: Decimal) -> None:
        st = self.stats[symbol]
        st.last, st.last_size = price, qty
        st.high = max(st.high, price) if st.high else price
        st.low = min(st.low, price) if st.low else price
        if not st.open:
            st.open = price
        st.vol += qty
        st.vol_value += price * qty

    def _level_of(self, order: Order) -> Level:
        side_name = "bids" if order.side == "buy" else "asks"
        level: Level = self.books[order.symbol].side(side_name)[order.price]
        return level

    def _unrest(self, order: Order) -> None:
        if not order.in_book:
            return
        book = self.books[order.symbol]
        side_name = "bids" if order.side == "buy" else "asks"
        level: Level | None = book.side(side_name).get(order.price)
        if level is not None and order in level.orders:
            level.remove(order)
        order.in_book = False

    def _finish(self, order: Order, how: str, now_ms: int, events: list[Event]) -> None:
        info = self.symbols[order.symbol]
        if how == "canceled" and order.req.size is not None:
            order.canceled_size = order.size - order.deal_size
        if how == "canceled" and order.req.funds is not None:
            order.canceled_funds = order.req.funds - order.deal_funds
        if order.hold:
            currency = info.quote_currency if order.side == "buy" else info.base_currency
            self._change_hold(currency, -order.hold, order, now_ms, events)
        order.move("done")
        self.open_ids.get(order.symbol, set()).discard(order.id)
        order.done_reason = how
        order.updated_at = now_ms
        events.append(self._order_event(order, how, "done", now_ms))
        if order.oco_id and how == "canceled":
            stop_orders.oco_leg_cancelled(self, order, now_ms, events)

    def _order_event(  # noqa: PLR0917 - internal helper, arguments in a fixed order
        self, order: Order, kind: str, status: str, now_ms: int,
                     price: Decimal | None = None, qty: Decimal | None = None,
                     trade_id: str | None = None, liquidity: str | None = None) -> OrderEvent:
        return OrderEvent(snapshot_of(order), kind, status, now_ms * 1_000_000, price, qty,
                          trade_id, liquidity)

    # ---- cancelling --------------------------------------------------------------------

    def cancel(self, order_id: str, now_ms: int) -> tuple[Order | ApiError, list[Event]]:
        order = self.orders.get(order_id)
        if order is None or not order.active:
            stop = self.stop_orders.get(order_id)
            if stop is not None and stop.stop_status == "NEW":
                return stop_orders.cancel_stop(self, stop, now_ms)
            return errors.order_not_cancellable(), []
        events: list[Event] = []
        self._cancel_resting(order, now_ms, events)
        return order, events

    def _cancel_resting(self, order: Order, now_ms: int, events: list[Event],
                        touch: bool = True) -> None:
        side_name = "bids" if order.side == "buy" else "asks"
        was_in_book = order.in_book
        self._unrest(order)
        self._finish(order, "canceled", now_ms, events)
        if was_in_book and touch:
            change = self.books[order.symbol].touch(side_name, order.price, now_ms)
            if change is not None:
                events.append(change)

    def alter(self, order_id: str, new_price: Decimal | None, new_size: Decimal | None,
              now_ms: int) -> tuple[Order | ApiError, list[Event]]:
        """KuCoin's modify: cancel the order and place a new one with the same clientOid."""
        order = self.orders.get(order_id)
        if order is None or not order.active or order.req.type != "limit":
            return errors.order_not_cancellable(), []
        if new_price is None and new_size is None:
            return errors.bad_param("newPrice or newSize is required"), []
        fields = {n: getattr(order.req, n) for n in OrderRequest.__dataclass_fields__}
        fields["price"] = new_price if new_price is not None else order.req.price
        fields["size"] = new_size if new_size is not None else order.remaining
        replacement = OrderRequest(**fields)
        events: list[Event] = []
        self._cancel_resting(order, now_ms, events)
        self.by_client_oid.pop(order.req.client_oid, None)
        result, more = self.place(replacement, now_ms)
        if isinstance(result, ApiError):
            self.by_client_oid[order.req.client_oid] = order.id
            return result, events
        return result, events + more

    def reduce(self, order_id: str, cancel_size: Decimal, now_ms: int
               ) -> tuple[Order | ApiError, list[Event]]:
        """Partial cancel: take `cancel_size` off a resting order (an `update` event)."""
        order = self.orders.get(order_id)
        if order is None or not order.active or not order.in_book:
            return errors.order_not_cancellable(), []
        info = self.symbols[order.symbol]
        if cancel_size <= 0 or not multiple_of(cancel_size, info.base_increment):
            return errors.bad_param("cancelSize increment invalid."), []
        events: list[Event] = []
        if cancel_size >= order.remaining:
            self._cancel_resting(order, now_ms, events)
            return order, events
        self._shrink(order, cancel_size, now_ms, events)
        return order, events

    def _shrink(self, order: Order, qty: Decimal, now_ms: int, events: list[Event]) -> None:
        """Take `qty` (less than what remains) off an order: hold released, `update` event."""
        info = self.symbols[order.symbol]
        old = order.remaining
        shown_before = order.visible
        order.canceled_size += qty
        order.updated_at = now_ms
        if order.in_book:
            self._level_of(order).adjust(shown_before, order)
        if order.side == "buy":
            release = min(order.hold, order.price * qty * (1 + self.taker_fee))
            self._change_hold(info.quote_currency, -release, order, now_ms, events)
        else:
            self._change_hold(info.base_currency, -min(order.hold, qty), order, now_ms, events)
        status = "open" if order.in_book else "match" if order.deal_size else "new"
        events.append(OrderEvent(snapshot_of(order), "update", status, now_ms * 1_000_000,
                                 old_size=old))
        if order.in_book:
            side_name = "bids" if order.side == "buy" else "asks"
            change = self.books[order.symbol].touch(side_name, order.price, now_ms)
            if change is not None:
                events.append(change)

    def cancel_all(self, now_ms: int, symbol: str | None = None) -> tuple[list[str], list[Event]]:
        events: list[Event] = []
        ids: list[str] = []
        for order in list(self.orders.values()):
            if order.active and (symbol is None or order.symbol == symbol):
                self._cancel_resting(order, now_ms, events)
                ids.append(order.id)
        return ids, events

    def prune(self, now_ms: int) -> int:
        """Forget done orders past their retention, and fills older than 7 days (what KuCoin
        still serves); returns how many orders were dropped. Keeps memory flat on long runs."""
        gone = [o for o in self.orders.values() if not self.retained(o, now_ms)]
        gone += [o for o in self.stop_orders.values()
                 if not o.active and now_ms - o.updated_at > self.retention_ms]
        for order in gone:
            if order.oco_id and order.id == getattr(self.ocos.get(order.oco_id), "limit_id", ""):
                self.ocos.pop(order.oco_id, None)
            self.orders.pop(order.id, None)
            self.stop_orders.pop(order.id, None)
            if self.by_client_oid.get(order.req.client_oid) == order.id:
                del self.by_client_oid[order.req.client_oid]
        horizon = now_ms - FILL_RETENTION_MS
        if self.fills and self.fills[0].created_at < horizon:
            self.fills = [f for f in self.fills if f.created_at >= horizon]
        if self.ledger and self.ledger[0].created_at < horizon:
            self.ledger = [e for e in self.ledger if e.created_at >= horizon]
        return len(gone)

    def expire(self, now_ms: int) -> list[Event]:
        """Cancel GTT orders whose `cancelAfter` (seconds) has elapsed."""
        events: list[Event] = []
        for order in self.list_orders(now_ms, active=True):
            req = order.req
            if (
                order.active
                and req.time_in_force == "GTT"
                and now_ms >= order.created_at + req.cancel_after * 1000
            ):
                self._cancel_resting(order, now_ms, events)
        return events

    # ---- stop orders (placed, cancelled and triggered in `stop_orders.py`) -------------

    def stops(self, now_ms: int, symbol: str | None = None) -> list[Order]:
        """The untriggered stop orders, of `symbol` if given."""
        return [
            s for s in self.stop_orders.values()
            if s.stop_status == "NEW" and (symbol is None or s.symbol == symbol)
        ]

    # ---- the market feed ---------------------------------------------------------------

    def apply_feed(
        self,
        symbol: str,
        bids: Iterable[tuple[Decimal, Decimal]],
        asks: Iterable[tuple[Decimal, Decimal]],
        now_ms: int,
        trade: tuple[Decimal, Decimal, str] | None = None,
    ) -> list[Event]:
        """Replace the feed's liquidity with these levels (the whole visible market).

        Feed liquidity that crosses a resting order of the account trades with it first (the
        account's order is the maker), then rests. `trade` is a market print (price, size,
        taker side) that moves the last price.
        """
        book = self.books[symbol]
        events: list[Event] = []
        new = {"bids": dict(bids), "asks": dict(asks)}
        for name in ("bids", "asks"):
            for price, level in book.levels(name):
                if level.feed and price not in new[name]:
                    level.feed = ZERO
                    change = book.touch(name, price, now_ms)
                    if change is not None:
                        events.append(change)
        for name in ("asks", "bids"):
            opposite = "bids" if name == "asks" else "asks"
            ordered = sorted(new[name].items(), reverse=(name == "bids"))
            # Levels come best first: if the best one crosses nothing, none of them does.
            other = book.best(opposite)
            crossing = bool(ordered) and other is not None and (
                other >= ordered[0][0] if name == "asks" else other <= ordered[0][0])
            for price, size in ordered:
                left = (self._feed_takes(symbol, name, opposite, price, size, now_ms, events)
                        if crossing else size)
                level = book.level(name, price)
                level.feed = left
                change = book.touch(name, price, now_ms)
                if change is not None:
                    events.append(change)
        if trade is not None:
            price, size, side = trade
            self._record_trade(symbol, price, size)
            trade_id = self._next_trade_id()
            events.append(TradeEvent(symbol, price, size, side, trade_id,
                                     self.feed_order_id(trade_id),
                                     self.feed_order_id(trade_id, "taker"), book.sequence,
                                     now_ms))
            stop_orders.check_stops(self, symbol, price, now_ms, events)
        return events

    def _feed_takes(  # noqa: PLR0917 - internal helper, arguments in a fixed order
        self, symbol: str, name: str, opposite: str, price: Decimal, size: Decimal,
                    now_ms: int, events: list[Event]) -> Decimal:
        book = self.books[symbol]
        left = size
        best = book.best(opposite)
        if best is None or (best < price if name == "asks" else best > price):
            return left  # nothing on the other side crosses this level (the usual case)
        for level_price, level in book.levels(opposite):
            crosses = level_price >= price if name == "asks" else level_price <= price
            if not crosses or left <= 0:
                break
            if not level.orders:
                continue
            for maker in list(level.orders):
                qty = min(left, maker.remaining)
                if qty <= 0:
                    break
                trade_id = self._next_trade_id()
                taker_id = self.feed_order_id(trade_id, "taker")
                self._apply_fill(maker, taker_id, level_price, qty, "maker", trade_id, now_ms,
                                 events)
                left -= qty
                events.append(
                    TradeEvent(symbol, level_price, qty, "sell" if name == "asks" else "buy",
                               trade_id, maker.id, taker_id, book.sequence, now_ms)
                )
                self._record_trade(symbol, level_price, qty)
                if maker.remaining <= 0:
                    self._unrest(maker)
                    self._finish(maker, "filled", now_ms, events)
                if left <= 0:
                    break
            change = book.touch(opposite, level_price, now_ms)
            if change is not None:
                events.append(change)
        if left != size:
            stop_orders.check_stops(self, symbol, self.stats[symbol].last, now_ms, events)
        return left

    def set_stats(self, symbol: str, stats: Stats) -> None:
        self.stats[symbol] = stats
