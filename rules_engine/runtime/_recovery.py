"""Recovery at start, before any evaluation: every firing not final is unknown until the
exchange says otherwise; every order the store holds open is looked up; orders with this
engine's prefix the store lacks are adopted; the risk limits' usage and the `cancel after`
timers are rebuilt from the store.
"""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from rules_engine.core.market import OrderState
from rules_engine.engine import Arm, Fill, next_slot
from rules_engine.engine._risk import Exposure
from rules_engine.ports import PageLike
from rules_engine.runtime._context import Context
from rules_engine.runtime._firing import Firing
from rules_engine.runtime._held import Held, HeldOrders, Leg
from rules_engine.runtime._orders import OrderManager, Pending, Tracked, done_status
from rules_engine.runtime._rules import RuleSet
from rules_engine.store import client_oid

__all__ = ["Recovery"]

Read = Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]


class Recovery:
    def __init__(self, ctx: Context, rules: RuleSet, orders: OrderManager, held: HeldOrders,  # noqa: PLR0917 - the parts it is wired to
                 firing: Firing, read: Read) -> None:
        """`read(what, call)`: a read of the start, with the start's patience."""
        self.ctx = ctx
        self.rules = rules
        self.orders = orders
        self.held = held
        self.firing = firing
        self.read = read

    async def recover(self) -> None:
        now = self.ctx.now()
        store = self.ctx.store
        family = self.ctx.venue.family
        for firing in store.open_firings():
            if firing.client_oid is None or firing.intent is None or firing.status == "held":
                continue  # a held order is not on the exchange: rebuilt with the orders
            order = firing.intent
            pending = Pending(
                firing.client_oid, firing.identity, firing.number, str(order["symbol"]),
                str(order.get("family", family)), _parse(order.get("deadline")),
                _arm_of(firing.inputs),
            )
            if firing.status in ("not_sent", "not_placed"):
                self.firing.again.add((firing.identity, firing.number))
                self.orders.retry(pending, firing.status, now)  # proven absent: decide again
                continue
            pending.unknown = True
            if firing.status == "sent":
                store.settle(firing.client_oid, now, firing_to="unknown",
                             payload={"why": "recovery: the watcher stopped before the reply"})
            self.orders.pending[firing.identity] = pending
            await self.orders.look_up(pending)
        rows = store.orders(open_only=True)
        firings = store.firings_by_id({r.firing_id for r in rows if r.firing_id is not None})
        decided: dict[str, datetime] = {}  # clientOid -> its firing's time (`cancel after`)
        for row in rows:
            of = firings.get(row.firing_id) if row.firing_id is not None else None
            owner = of if of is not None and of.client_oid == row.client_oid else None
            if of is not None and owner is None:
                if of.client_oid is not None:
                    self._recover_leg(row, of)  # a bracket's stop-loss, of that firing
                continue
            if owner is not None:
                decided[row.client_oid] = owner.created_at
            if row.status == "not_placed":
                continue
            if row.status == "held" and owner is not None and row.size is not None:
                trail = Decimal(str((owner.intent or {}).get("trail", "0")))
                self.held.held[row.client_oid] = Held(
                    row.client_oid, owner.identity, owner.number, row.symbol, row.side,
                    row.size, trail, row.price)
            self.orders.tracked[row.client_oid] = Tracked(
                row.client_oid, owner.identity if owner else None,
                owner.number if owner else None, row.symbol, row.family, row.size,
                row.exchange_id, row.side,
            )
        for oid in list(self.orders.tracked):
            tracked = self.orders.tracked.get(oid)
            if tracked is not None and not self.held.is_engine_held(oid) and (
                    self.orders.pending_for(oid) is None):
                await self.orders.poll_order(tracked)
        self._rearm_cancels(decided, now)
        self.load_exposure(now)
        await self._adopt_unknown()
        self.ctx.event("recovered", {"pending": len(self.orders.pending),
                                     "open_orders": len(self.orders.tracked)})

    def _recover_leg(self, row: Any, parent: Any) -> None:
        """A bracket's stop-loss from the store: still held (waiting for its trigger), or
        proven not placed (sent again at the next price past its trigger), or sent and not
        settled (unknown: looked up like any order, never sent twice), or on the exchange
        (acknowledged: tracked and polled like any order, never triggered again)."""
        if row.size is None:
            return
        intent = parent.intent or {}
        trigger = Decimal(str((intent.get("stop_loss") or {}).get("trigger") or row.price or 0))
        sent = row.status not in ("held", "not_placed")  # past its trigger: pending or open
        leg = Leg(row.client_oid, parent.client_oid, parent.identity, parent.number,
                  row.symbol, row.side, row.size, trigger, busy=sent)
        self.held.legs[leg.oid] = leg
        self.orders.tracked[leg.oid] = Tracked(leg.oid, leg.identity, leg.number, leg.symbol,
                                               row.family, row.size, row.exchange_id,
                                               row.side, counted=False)
        if row.status == "pending":
            key = f"{leg.identity}/stop-loss#{leg.number}"
            self.orders.pending[key] = Pending(leg.oid, key, leg.number, leg.symbol,
                                               row.family, row.deadline, None, unknown=True,
                                               leg=leg.identity)

    def load_exposure(self, now: datetime) -> None:
        """The risk limits' usage, rebuilt from the store: an order not final keeps its full
        value and counts as open; a final one keeps what it traded; one refused, proven not
        placed or vanished, nothing."""
        exposure = Exposure()
        rows, times = self.ctx.store.exposure_rows(since=now - timedelta(minutes=1))
        for row in rows:
            if row["client_oid"] in self.held.legs:
                continue  # a stop-loss shares its take-profit's position: counted once
            value = row["value"]
            if value is None:  # adopted, or written before values were kept
                value = row["funds"] or ((row["price"] or Decimal(0)) * (row["size"] or 0))
            status = row["status"]
            is_open = status in ("pending", "open", "held")
            kept = value if is_open else row["filled_value"] if status in (
                "filled", "canceled") else Decimal(0)
            if row["rule"] is not None and row["at"] is not None:
                exposure.add(row["rule"], row["at"].date(), kept, is_open=is_open)
            elif is_open:
                exposure.open_orders += 1
            tracked = self.orders.tracked.get(row["client_oid"])
            if tracked is not None:
                tracked.value = value
                tracked.day = row["at"].date() if row["at"] is not None else None
        for at in times:
            if now - at < timedelta(minutes=1):
                exposure.fired(at)
        self.orders.exposure = exposure

    def _rearm_cancels(self, decided: Mapping[str, datetime], now: datetime) -> None:
        """`cancel after D` timers are a pure function of the store: the firing's decision
        time (`decided`, by clientOid) plus the rule's D, for each order still open. One due
        while the watcher was down runs at once, and says so."""
        for tracked in self.orders.tracked.values():
            rule = self.rules.rules.get(tracked.identity or "")
            at = decided.get(tracked.oid)
            if rule is None or rule.cancel_after_seconds is None or at is None:
                continue
            due = at + timedelta(seconds=rule.cancel_after_seconds)
            if due <= now:
                self.ctx.event("timer.late", {"timer": "cancel after", "due": due.isoformat(),
                                              "late_s": round((now - due).total_seconds(), 3)},
                               oid=tracked.oid)
            heapq.heappush(self.firing.cancels, (due, tracked.oid))

    async def _adopt_unknown(self) -> None:
        store = self.ctx.store
        known = store.order_oids()
        symbols = sorted({r.order.symbol for r in self.rules.rules.values()
                          if r.order is not None}
                         | {t.symbol for t in self.orders.tracked.values()})
        now = self.ctx.now()
        family = self.ctx.venue.family
        for symbol in symbols:
            for state in await self.exchange_orders(symbol):
                oid = state.client_oid
                if oid is None or not oid.startswith(self.ctx.prefix) or oid in known:
                    continue
                status = "open" if state.active else done_status(state)
                row = {
                    "client_oid": oid, "exchange_id": state.order_id, "symbol": state.symbol,
                    "side": state.side, "order_type": state.order_type, "price": state.price,
                    "size": state.size, "funds": state.funds, "status": status,
                    "filled_size": state.filled_size, "filled_value": state.filled_funds,
                    "family": family, "deadline": None,
                }
                if store.adopt_order(row, now, "on the exchange with this engine's "
                                     "prefix, unknown to the store"):
                    known.add(oid)
                    owner = self._owner_of(oid, now)
                    self.ctx.emit("order.adopted", {"client_oid": oid, "status": status,
                                                    "rule": owner[0] if owner else None})
                    if status == "open":
                        self.orders.tracked[oid] = Tracked(
                            oid, owner[0] if owner else None, owner[1] if owner else None,
                            state.symbol, family, state.size, state.order_id, state.side)

    async def exchange_orders(self, symbol: str, recent_pages: int = 10) -> list[OrderState]:
        """Every active order of `symbol` (all pages), and the most recent done ones (HF: up
        to `recent_pages` pages of 100, newest first)."""
        found: list[OrderState] = []
        page: str | None = "1"
        while page is not None:
            got: PageLike = await self.read(f"{symbol}'s active orders", partial(
                self.ctx.venue.open_page, symbol, int(page), 100))
            if got.error is not None:
                self.ctx.event("recovery.incomplete", {"symbol": symbol,
                                                       "read": "active orders",
                                                       "why": got.error})
                break
            found.extend(got.orders)
            page = got.more
        cursor: str | None = None
        for _ in range(recent_pages):
            done: PageLike = await self.read(f"{symbol}'s done orders", partial(
                self.ctx.venue.done_page, symbol, cursor))
            if done.error is not None:
                self.ctx.event("recovery.incomplete", {"symbol": symbol,
                                                       "read": "done orders",
                                                       "why": done.error})
                break
            found.extend(done.orders)
            if done.more is None:
                break
            cursor = done.more
        return found

    def _owner_of(self, oid: str, now: datetime) -> tuple[str, int] | None:
        """The rule firing an adopted order belongs to (its clientOid is a pure function of
        the rule and the firing number: the next few firings of each rule are tried). The
        rule's state moves past that firing, so it is never decided twice."""
        states = self.rules.states
        for identity, state in states.items():
            rule = self.rules.rules.get(identity)
            if rule is None:
                continue
            for number in range(state.firings + 1, state.firings + 4):
                if client_oid(self.ctx.engine_id, identity, number) != oid:
                    continue
                advanced = state._replace(firings=number, true_since=None, seen_false=False)
                if rule.schedule is not None and (
                    rule.max_firings is None or number < rule.max_firings
                ):
                    advanced = advanced._replace(
                        status="cooling" if state.status in ("armed", "cooling") else
                        state.status,
                        rearm_at=next_slot(rule.schedule, state.rearm_at or now, now))
                elif rule.repeat_seconds is not None and (
                    rule.max_firings is None or number < rule.max_firings
                ):
                    advanced = advanced._replace(
                        status="cooling" if state.status in ("armed", "cooling") else
                        state.status, rearm_at=now + timedelta(seconds=rule.repeat_seconds))
                elif state.status in ("armed", "cooling", "waiting"):
                    advanced = advanced._replace(status="done")
                states[identity] = advanced
                self.rules.schedule(identity, now)
                self.ctx.store.save_states([self.rules.row(identity)], now, [
                    ("rule.adopted_firing", identity, {"number": number, "client_oid": oid})])
                return identity, number
        return None


def _parse(value: Any) -> datetime | None:
    return None if value in (None, "") else datetime.fromisoformat(str(value))


def _arm_of(inputs: dict[str, Any]) -> Arm | None:
    data = inputs.get("arm") if isinstance(inputs, dict) else None
    if not isinstance(data, dict):
        return None
    fill = data.get("fill")
    return Arm(int(data["parent_firing"]),
               None if fill is None else Fill(Decimal(fill[0]), Decimal(fill[1])))

