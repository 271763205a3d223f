"""Protection held by the engine: trailing stops and brackets' stop-losses. Not on the
exchange until they trigger; each follows its symbol's fresh `last` price, and never moves
or fires on stale data. When one triggers, its market order goes through the order
manager like any other (recorded first, sent once, looked up when unknown).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from rules_engine.compiler import model as M
from rules_engine.engine import OrderIntent, deadline, order_body
from rules_engine.engine import value as value_of
from rules_engine.engine._lifecycle import apply
from rules_engine.engine._order_types import Trigger
from rules_engine.runtime._context import Context
from rules_engine.runtime._exits import held_left, tick, trailed
from rules_engine.runtime._leg import Leg
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


class HeldOrders:
    def __init__(self, ctx: Context, market: MarketState, orders: OrderManager) -> None:
        self.ctx = ctx
        self.market = market
        self.orders = orders
        self.held: dict[str, Held] = {}  # trailing stops, by clientOid
        self.legs: dict[str, Leg] = {}  # bracket stop-losses, by their clientOid
        # Why a market exit may not go now (risk.max_slippage on the book), or None:
        # installed by the watcher, which follows the books.
        self.slippage: Callable[[str, str, Decimal], str | None] = lambda *_: None
        # Set (and replaced by a fresh one) at each order's end: a stop-loss waiting for the
        # exits it covers to be final goes on at once, not at its next poll, when they end.
        # Each waiter holds the event of its moment, so no other waiter can clear it.
        self.ended = asyncio.Event()

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

    def next_exit(self) -> datetime | None:
        """The first `exit after` deadline of a held stop (a clock that is moved stops there)."""
        times = [leg.exit_at for leg in self.legs.values() if leg.exit_at is not None]
        return min(times) if times else None

    def _check_legs(self, symbol: str, now: datetime) -> None:
        last = self.market.values.get(M.Field(symbol, "last"))
        if last is None:
            return  # never on stale data
        for leg in [g for g in self.legs.values() if g.symbol == symbol and not g.busy]:
            if not self._waiting(leg):
                continue
            if leg.move_due:
                self.move(leg, now)  # its exit filled while the new price could not be known
            if leg.trail is not None:
                self._follow(leg, last, now)
            trigger = leg.trigger
            if trigger is not None and (last <= trigger if leg.side == "sell"
                                        else last >= trigger):
                self._fire_leg(leg, "stop_loss.triggered", {"last": str(last),
                                                           "trigger": str(trigger)})

    def on_time(self, now: datetime) -> None:
        """Time exits (`exit after D`) whose deadline passed, on the watcher's clock: the
        deadline was recorded with the firing, so a restart keeps it."""
        halted = self.ctx.halted
        if halted is not None and halted.get("all"):
            return
        for leg in [g for g in self.legs.values() if g.exit_at is not None and not g.busy]:
            if leg.exit_at is not None and now >= leg.exit_at and self._waiting(leg):
                self._fire_leg(leg, "exit.due", {"due": leg.exit_at.isoformat(),
                                                 "late_s": round(
                                                     (now - leg.exit_at).total_seconds(), 3)})

    def _waiting(self, leg: Leg) -> bool:
        """Whether the leg still waits for its trigger (held, or proven not placed)."""
        tracked = self.orders.tracked.get(leg.oid)
        if tracked is None:  # cancelled while it waited: nothing more to trigger
            self.legs.pop(leg.oid, None)
            return False
        return tracked.status in ("held", "not_placed")  # else the table follows it

    def _fire_leg(self, leg: Leg, kind: str, detail: dict[str, Any]) -> None:
        leg.busy = True
        if leg.waiting is None:  # a try again after a wait is not a new trigger
            self.ctx.event(kind, detail, oid=leg.oid)
        self.ctx.spawn(self._run_stop_loss(leg))

    def _follow(self, leg: Leg, last: Decimal, now: datetime) -> None:
        """A trailing stop-loss: a better `last` moves its mark, and its trigger with it."""
        sell = leg.side == "sell"
        if leg.mark is not None and not (last > leg.mark if sell else last < leg.mark):
            return
        leg.mark = last
        leg.trigger = trailed(leg, self.ctx.symbols[leg.symbol])
        self.ctx.store.mark(leg.oid, last, now)

    def on_filled(self, tracked: Tracked, now: datetime) -> None:
        """An order filled (fully or in part): a `move stop-loss ... after RULE filled`
        waiting for it moves its stop; a leg whose exits filled what it covers is dropped."""
        for leg in [g for g in self.legs.values() if not g.busy]:
            if leg.move_oid == tracked.oid and not leg.moved and tracked.record.filled > 0:
                self.move(leg, now)
            if tracked.oid in leg.covered and (
                    held_left(leg, self.orders, self.ctx.store) <= 0):
                self.drop_leg(leg, "its exits filled the position")

    def move(self, leg: Leg, now: datetime) -> None:
        """The stop's trigger moves to `move_to`, evaluated now (`fill_price`: the entry's),
        written before it counts (a restart holds the moved stop)."""
        if leg.move_to is None:
            return
        raw = value_of(leg.move_to, self.market.values, leg.fill)
        if raw is None:
            if not leg.move_due:  # tried again at each price of its symbol
                self.ctx.event("stop_loss.move_waiting", {"why": "the new price needs data "
                                                          "that is not fresh"}, oid=leg.oid)
            leg.move_due = True
            return
        trigger = tick(self.ctx.symbols[leg.symbol], raw, leg.side == "sell")
        self.ctx.store.move_stop(leg.oid, trigger, now, {"from": str(leg.trigger),
                                                          "to": str(trigger)})
        self.orders.fenced()
        before, leg.trigger, leg.moved, leg.move_due = leg.trigger, trigger, True, False
        self.ctx.emit("stop_loss.moved", {"rule": leg.identity, "client_oid": leg.oid,
                                          "from": str(before), "to": str(trigger)})

    def catch_up(self, now: datetime) -> None:
        """At a restart: a move whose exit filled while no watcher ran (or before its move
        was written) is made now."""
        for leg in [g for g in self.legs.values() if g.move_oid and not g.moved and not g.busy]:
            assert leg.move_oid is not None
            tracked = self.orders.tracked.get(leg.move_oid)
            row = self.ctx.store.order(leg.move_oid) if tracked is None else None
            filled = tracked.record.filled if tracked is not None else (
                row.filled_size if row is not None else Decimal(0))
            if filled > 0:
                self.move(leg, now)

    async def _run_stop_loss(self, leg: Leg) -> None:
        """Cancel the exits it covers (a take-profit, a guard's siblings), confirm they are
        final, then send what they did not fill: at no moment can they and the stop sell
        more than the position."""
        resting = [self.orders.tracked[o] for o in leg.covered if o in self.orders.tracked]
        if resting:
            self.orders.ask_cancel(resting, "its stop-loss triggered")
            polls = 0  # up to 50 polls of 0.1 s; an order's end wakes the wait early
            while polls < 50 and any(o in self.orders.tracked for o in leg.covered):
                ended = self.ended
                await self.orders.timer_job()
                if any(o in self.orders.tracked for o in leg.covered) and not await _woken(
                        self.ctx.stop, ended, 0.1):
                    polls += 1
            if any(o in self.orders.tracked for o in leg.covered):
                leg.busy = False  # not proven final: never sell beside them
                self.ctx.event("stop_loss.waiting", {"why": "the exits it covers are not "
                                                     "final yet"}, oid=leg.oid)
                return
        if leg.oid not in self.legs:
            return  # dropped meanwhile (the exits filled the position)
        left = held_left(leg, self.orders, self.ctx.store)
        info = self.ctx.symbols[leg.symbol]
        remaining = (left / info.base_increment).to_integral_value(
            ROUND_FLOOR) * info.base_increment
        if remaining <= 0 or remaining < info.base_min_size:
            self.drop_leg(leg, f"nothing left to close ({leg.size - left} of {leg.size} "
                               "filled by its exits)" if remaining <= 0 else
                          f"what is left ({remaining}) is below baseMinSize")
            return
        slipped = self.slippage(leg.symbol, leg.side, remaining)
        if slipped is not None:
            leg.busy = False  # looked at again on the next price, or the next tick
            if leg.waiting != slipped:  # said once, not at every try
                self.ctx.event("stop_loss.waiting", {"why": slipped}, oid=leg.oid)
            leg.waiting = slipped
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
        self.ended.set()
        self.ended = asyncio.Event()
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
        for other in [g for g in self.legs.values() if tracked.oid in g.covered
                      and not g.busy]:
            if held_left(other, self.orders, self.ctx.store) <= 0:
                self.drop_leg(other, "its exits filled the position")


async def _woken(stop: asyncio.Event, ended: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` of real time (the exchange's latency, not the market's clock) for
    an order's end; True when one ended, False on the timeout or the watcher's stop."""
    if stop.is_set():
        return False
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(ended.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    return ended.is_set() and not stop.is_set()
