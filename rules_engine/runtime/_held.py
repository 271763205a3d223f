"""Protection held by the engine: trailing stops and brackets' stop-losses. Not on the
exchange until they trigger; each follows its symbol's fresh `last` price, and never moves
or fires on stale data. When one triggers, its market order goes through the order
manager like any other (recorded first, sent once, looked up when unknown).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from rules_engine.compiler import model as M
from rules_engine.engine import OrderIntent, deadline, order_body
from rules_engine.engine._lifecycle import apply
from rules_engine.engine._order_types import Trigger
from rules_engine.runtime._context import Context
from rules_engine.runtime._market import MarketState
from rules_engine.runtime._orders import OrderManager, Tracked

__all__ = ["Held", "HeldOrders", "Leg"]


@dataclass
class Held:
    """An engine-held trailing stop: the order it will send, and its water mark (the best
    `last` since it was placed: the highest for a sell, the lowest for a buy)."""

    oid: str
    identity: str
    number: int
    symbol: str
    side: str
    size: Decimal
    trail: Decimal
    mark: Decimal | None


@dataclass
class Leg:
    """A bracket's stop-loss, held by the engine: the take-profit rests on the exchange and
    holds the coins, so on trigger the take-profit is cancelled and confirmed final first,
    and only what it did not fill is sold."""

    oid: str
    tp_oid: str
    identity: str
    number: int
    symbol: str
    side: str
    size: Decimal
    trigger: Decimal
    busy: bool = False


class HeldOrders:
    def __init__(self, ctx: Context, market: MarketState, orders: OrderManager) -> None:
        self.ctx = ctx
        self.market = market
        self.orders = orders
        self.held: dict[str, Held] = {}  # trailing stops, by clientOid
        self.legs: dict[str, Leg] = {}  # bracket stop-losses, by their clientOid

    def on_price(self, symbol: str, now: datetime) -> None:
        halted = self.ctx.halted
        if halted is not None and halted.get("all"):
            return  # `halt --all`: not even protection is sent
        if self.held:
            self._check_held(symbol, now)
        if self.legs:
            self._check_legs(symbol, now)

    # ------------------------------------------------------------ trailing stops

    def _check_held(self, symbol: str, now: datetime) -> None:
        """Each trailing stop on `symbol`: follow its water mark on a fresh last price, and
        send its order once the price has come back `trail` from the mark."""
        last = self.market.values.get(M.Field(symbol, "last"))
        if last is None:
            return  # not proven fresh: a trailing stop never moves or fires on stale data
        for held in [h for h in self.held.values() if h.symbol == symbol]:
            sell = held.side == "sell"
            if held.mark is None or (last > held.mark if sell else last < held.mark):
                held.mark = last
                self.ctx.store.mark(held.oid, last, now)
                continue
            stop = held.mark * (1 - held.trail) if sell else held.mark * (1 + held.trail)
            if (last <= stop if sell else last >= stop) and held.identity not in (
                    self.orders.pending):
                self._trigger(held, last, stop, now)

    def _trigger(self, held: Held, last: Decimal, stop: Decimal, now: datetime) -> None:
        tracked = self.orders.tracked.get(held.oid)
        if tracked is None or tracked.status != "held":
            self.held.pop(held.oid, None)
            return
        body, until = self.market_order(held.symbol, held.side, held.size, held.oid)
        detail = {"last": str(last), "mark": str(held.mark), "stop": str(stop)}
        self.ctx.store.trigger(
            held.oid, now,
            intent={"type": "market", "deadline": until.isoformat() if until else None,
                    "triggered": detail},
            order={"order_type": "market", "deadline": until}, payload=detail,
        )
        self.orders.fenced()
        del self.held[held.oid]
        tracked.body = body
        self.ctx.emit("triggered", {"rule": held.identity, "client_oid": held.oid, **detail})
        # The fenced commit above is the trigger's `Record`: the table's `Send` follows.
        self.orders.start(tracked, apply(tracked.record, Trigger(None, until), now),
                          recorded=True)

    def market_order(self, symbol: str, side: str, size: Decimal,
                     oid: str) -> tuple[dict[str, Any], datetime | None]:
        """The body of a market order an engine-held order sends, and its HF deadline."""
        intent = OrderIntent(symbol, side, "market", size, None, None, None, None, "GTC",
                             False, False)
        server_ms = self.ctx.venue.server_ms()
        window = self.ctx.config.order_window_ms
        family = self.ctx.venue.family
        body = order_body(intent, oid, family=family, server_ms=server_ms, window_ms=window)
        until = deadline(family, datetime.fromtimestamp(server_ms / 1000, UTC), window,
                         self.ctx.config.request_timeout_s)
        return body, until

    # ------------------------------------------------------------ brackets' stop-losses

    def _check_legs(self, symbol: str, now: datetime) -> None:
        last = self.market.values.get(M.Field(symbol, "last"))
        if last is None:
            return  # never on stale data
        for leg in [g for g in self.legs.values() if g.symbol == symbol and not g.busy]:
            tracked = self.orders.tracked.get(leg.oid)
            if tracked is None:  # cancelled while it waited: nothing more to trigger
                self.legs.pop(leg.oid, None)
                continue
            if tracked.status not in ("held", "not_placed"):
                continue  # on the exchange already: the table follows it
            if last <= leg.trigger if leg.side == "sell" else last >= leg.trigger:
                leg.busy = True
                self.ctx.event("stop_loss.triggered", {"last": str(last),
                                                       "trigger": str(leg.trigger)}, oid=leg.oid)
                self.ctx.spawn(self._run_stop_loss(leg))

    async def _run_stop_loss(self, leg: Leg) -> None:
        """Cancel the take-profit, confirm it is final, then sell what it did not fill: at no
        moment can both legs sell more than the position."""
        tp = self.orders.tracked.get(leg.tp_oid)
        if tp is not None:
            self.orders.ask_cancel([tp], "its stop-loss triggered")
            for _ in range(50):
                if leg.tp_oid not in self.orders.tracked:
                    break
                await self.orders.timer_job()
                if leg.tp_oid in self.orders.tracked:
                    await _sleep(self.ctx.stop, 0.1)
            if leg.tp_oid in self.orders.tracked:  # not proven final: never sell beside it
                leg.busy = False
                self.ctx.event("stop_loss.waiting", {"why": "the take-profit is not final yet"},
                               oid=leg.oid)
                return
        if leg.oid not in self.legs:
            return  # dropped meanwhile (the take-profit filled the position)
        row = self.ctx.store.order(leg.tp_oid)
        filled = row.filled_size if row is not None else Decimal(0)
        info = self.ctx.symbols[leg.symbol]
        remaining = ((leg.size - filled) / info.base_increment).to_integral_value(
            ROUND_FLOOR) * info.base_increment
        if remaining <= 0 or remaining < info.base_min_size:
            self.drop_leg(leg, f"nothing left to sell ({filled} of {leg.size} filled by the "
                               "take-profit)" if remaining <= 0 else
                          f"what is left ({remaining}) is below baseMinSize")
            return
        self._send_leg(leg, remaining)

    def _send_leg(self, leg: Leg, size: Decimal) -> None:
        tracked = self.orders.tracked.get(leg.oid)
        if tracked is None:
            self.legs.pop(leg.oid, None)
            return
        body, until = self.market_order(leg.symbol, leg.side, size, leg.oid)
        now = self.ctx.now()
        self.ctx.store.send_leg(leg.oid, now, size=size, deadline_at=until)
        self.orders.fenced()
        tracked.body = body
        self.ctx.emit("stop_loss.sent", {"rule": leg.identity, "client_oid": leg.oid,
                                         "size": str(size)})
        # The fenced commit above is the trigger's `Record`: the table's `Send` follows.
        self.orders.start(tracked, apply(tracked.record, Trigger(size, until), now),
                          recorded=True)

    def drop_leg(self, leg: Leg, why: str) -> None:
        """A stop-loss that is no longer needed: cancelled (held, it becomes not placed)."""
        tracked = self.orders.tracked.get(leg.oid)
        self.legs.pop(leg.oid, None)
        if tracked is not None:
            self.orders.ask_cancel([tracked], why)
        self.ctx.emit("stop_loss.dropped", {"rule": leg.identity, "client_oid": leg.oid,
                                            "why": why})

    def on_end(self, tracked: Tracked, now: datetime) -> None:
        """An order ended (as the table decided): a take-profit that filled the position
        ends its stop-loss; a stop-loss's own end ends its bracket (a sale proven not placed
        waits for its next trigger); a trailing stop dropped is no longer followed."""
        status = tracked.status
        if tracked.oid in self.held:
            del self.held[tracked.oid]
            if status == "not_placed" and tracked.record.cancel:
                self.ctx.emit("order.canceled", {"client_oid": tracked.oid,
                                                 "why": "; ".join(tracked.record.cancel)})
        leg = self.legs.get(tracked.oid)
        if leg is not None:
            if status == "refused":  # a stop-loss sale refused: a person must look at it
                self.ctx.event("stop_loss.refused", {"reason": "refused by the exchange"},
                               identity=leg.identity, oid=leg.oid)
            if status == "not_placed" and not tracked.record.cancel:
                leg.busy = self.ctx.stop.is_set()  # sent again at the next trigger
            else:
                self.legs.pop(tracked.oid, None)
        filled = tracked.record.filled
        for other in [g for g in self.legs.values() if g.tp_oid == tracked.oid and not g.busy]:
            if filled >= other.size:
                self.drop_leg(other, "the take-profit filled")


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
