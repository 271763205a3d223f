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
from rules_engine.runtime._context import Context
from rules_engine.runtime._market import MarketState
from rules_engine.runtime._orders import OrderManager, Pending, Tracked

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

    def is_engine_held(self, oid: str) -> bool:
        """Not on the exchange: a trailing stop, or a stop-loss waiting for its trigger."""
        leg = self.legs.get(oid)
        return oid in self.held or (leg is not None and not leg.busy)

    def protective(self, tracked: Tracked) -> bool:
        """An exit that protects a position: kept by `halt`, cancelled by `halt --all`.
        KuCoin stop orders that sell, trailing stops, and brackets' stop-losses."""
        return ((tracked.family == "stop" and tracked.side == "sell")
                or tracked.oid in self.held or tracked.oid in self.legs)

    def on_price(self, symbol: str, now: datetime) -> None:
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
        pending = Pending(held.oid, held.identity, held.number, held.symbol,
                          self.ctx.venue.family, until, None)
        self.orders.pending[held.identity] = pending
        self.ctx.emit("triggered", {"rule": held.identity, "client_oid": held.oid, **detail})
        self.ctx.spawn(self.orders.send(pending, body))

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
                await self.orders.cancel_job()
                if leg.tp_oid in self.orders.tracked:
                    await _sleep(self.ctx.stop, 0.1)
            if leg.tp_oid in self.orders.tracked:  # not proven final: never sell beside it
                leg.busy = False
                self.ctx.event("stop_loss.waiting", {"why": "the take-profit is not final yet"},
                               oid=leg.oid)
                return
        row = self.ctx.store.order(leg.tp_oid)
        filled = row.filled_size if row is not None else Decimal(0)
        info = self.ctx.symbols[leg.symbol]
        remaining = ((leg.size - filled) / info.base_increment).to_integral_value(
            ROUND_FLOOR) * info.base_increment
        now = self.ctx.now()
        if remaining <= 0 or remaining < info.base_min_size:
            self.drop_leg(leg, f"nothing left to sell ({filled} of {leg.size} filled by the "
                               "take-profit)" if remaining <= 0 else
                          f"what is left ({remaining}) is below baseMinSize", now)
            return
        await self._send_leg(leg, remaining)

    async def _send_leg(self, leg: Leg, size: Decimal) -> None:
        body, until = self.market_order(leg.symbol, leg.side, size, leg.oid)
        now = self.ctx.now()
        self.ctx.store.send_leg(leg.oid, now, size=size, deadline_at=until)
        self.orders.fenced()
        key = f"{leg.identity}/stop-loss#{leg.number}"
        pending = Pending(leg.oid, key, leg.number, leg.symbol, self.ctx.venue.family, until,
                          None, leg=leg.identity)
        self.orders.pending[key] = pending
        self.ctx.emit("stop_loss.sent", {"rule": leg.identity, "client_oid": leg.oid,
                                         "size": str(size)})
        await self.orders.send(pending, body)

    def drop_leg(self, leg: Leg, why: str, now: datetime) -> None:
        self.legs.pop(leg.oid, None)
        self.orders.tracked.pop(leg.oid, None)
        self.ctx.store.settle(leg.oid, now, order_to="canceled", payload={"why": why})
        self.ctx.emit("stop_loss.dropped", {"rule": leg.identity, "client_oid": leg.oid,
                                            "why": why})

    def leg_refused(self, pending: Pending, reason: str, now: datetime) -> None:
        """A stop-loss sale refused: a person must look at it."""
        self.legs.pop(pending.oid, None)
        self.ctx.store.settle(pending.oid, now, order_to="refused", payload={"reason": reason})
        self.ctx.event("stop_loss.refused", {"reason": reason}, identity=pending.leg,
                       oid=pending.oid)

    def leg_absent(self, pending: Pending, status: str, now: datetime) -> None:
        """A stop-loss sale proven absent: sent again (same clientOid) at the next fresh
        price at or past its trigger."""
        self.ctx.store.settle(pending.oid, now, order_to="not_placed", payload={"why": status})
        leg = self.legs.get(pending.oid)
        if leg is not None and not self.ctx.stop.is_set():
            leg.busy = False

    def on_final(self, tracked: Tracked, filled: Decimal, now: datetime) -> None:
        """An order is final: a take-profit that filled the position ends its stop-loss; a
        stop-loss's own order ends its bracket."""
        for leg in [g for g in self.legs.values() if g.tp_oid == tracked.oid and not g.busy]:
            if filled >= leg.size:
                self.drop_leg(leg, "the take-profit filled", now)
        self.legs.pop(tracked.oid, None)

    def cancel(self, which: list[Tracked], why: str, now: datetime) -> list[Tracked]:
        """Cancel what the engine holds (nothing on the exchange: settled here); the rest
        is returned for the exchange."""
        rest = []
        for tracked in which:
            leg = self.legs.get(tracked.oid)
            if leg is not None and not leg.busy:
                self.drop_leg(leg, why, now)
            elif tracked.oid in self.held:
                del self.held[tracked.oid]
                self.orders.tracked.pop(tracked.oid, None)
                self.orders.release(tracked, Decimal(0))
                self.ctx.store.settle(tracked.oid, now, firing_to="done", order_to="canceled",
                                      payload={"why": why})
                self.ctx.emit("order.canceled", {"client_oid": tracked.oid, "why": why})
            else:
                rest.append(tracked)
        return rest


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
