"""Recovery at start, before any evaluation: every firing not final is unknown until the
exchange says otherwise; every order the store holds open is looked up; orders with this
engine's prefix the store lacks are adopted; the risk limits' usage and the `cancel after`
timers are rebuilt from the store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from rules_engine.core.market import OrderState
from rules_engine.engine import Arm, Fill, next_slot
from rules_engine.engine._lifecycle import apply
from rules_engine.engine._order_types import OrderRecord, Recovered, Transition
from rules_engine.engine._risk import Exposure
from rules_engine.engine._slices import rule_of
from rules_engine.ports import PageLike
from rules_engine.runtime._context import Context
from rules_engine.runtime._exits import leg_oid, restore
from rules_engine.runtime._firing import Firing
from rules_engine.runtime._held import Held, HeldOrders
from rules_engine.runtime._orders import OrderManager, Tracked, done_status
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
        self.oco: Any = None  # `OcoBrackets`: a bracket's OCO orders followed again

    async def recover(self) -> None:
        """Every order the store holds not final, rebuilt as the order table's record and
        given `Recovered`: the table says what to look up, cancel or schedule; those port
        calls run here, in order, before any rule is evaluated."""
        now = self.ctx.now()
        store = self.ctx.store
        rows = store.orders(open_only=True)
        firings = store.firings_by_id({r.firing_id for r in rows if r.firing_id is not None})
        calls = []
        for row in rows:
            of = firings.get(row.firing_id) if row.firing_id is not None else None
            guard = of is not None and row.client_oid == leg_oid(
                self.ctx.engine_id, of.identity, of.number)
            if of is not None and of.client_oid is None and not guard:
                continue
            # A held stop-loss (an OCO's replacement is an order of its own).
            leg = of is not None and of.client_oid != row.client_oid and row.family != "oco"
            tracked = self._tracked(row, of, leg, now)
            if row.family == "oco" and of is not None and self.oco is not None:
                tracked.counted = row.client_oid == of.client_oid
                self.oco.recovered(tracked, row, of)
            record = tracked.record
            if record.status == "not_placed":
                if leg and not record.cancel:
                    self.orders.tracked[tracked.oid] = tracked  # sent at its next trigger
                elif not leg and of is not None and not record.cancel and of.status in (
                        "not_sent", "not_placed"):
                    self._decide_again(tracked, now)
                continue
            if record.cancel_at is not None and record.cancel_at <= now and not record.cancel:
                self.ctx.event("timer.late", {
                    "timer": "cancel after", "due": record.cancel_at.isoformat(),
                    "late_s": round((now - record.cancel_at).total_seconds(), 3)},
                    oid=tracked.oid)
            calls.append((tracked, apply(record, Recovered(), now)))
        self.load_exposure(now, [t for t, _ in calls])
        for tracked, transition in calls:
            for call in self.orders.recover(tracked, transition):
                await call
        if self.oco is not None:
            self.oco.resume(self.ctx.now())  # `on exchange` brackets: what the entries filled
        await self._adopt_unknown()
        self.held.catch_up(now)
        self.ctx.event("recovered", {"pending": len(self.orders.pending),
                                     "open_orders": len(self.orders.tracked)})

    def _tracked(self, row: Any, of: Any, leg: bool, now: datetime) -> Tracked:
        """A stored order as the manager carries it: the table's record (the persisted
        fields), its rule and firing, and the engine-held part (a trailing stop's mark, a
        stop-loss's trigger)."""
        intent = (of.intent if of is not None else None) or {}
        held_as = "stop-loss" if leg else "trailing-stop" if intent.get("trail") else None
        cancel_at = row.cancel_at
        rule = self.rules.rules.get(of.identity) if of is not None and not leg else None
        if cancel_at is None and rule is not None and rule.cancel_after_seconds is not None:
            cancel_at = of.created_at + timedelta(seconds=rule.cancel_after_seconds)
        deadline = row.deadline
        if deadline is None and row.status in ("open", "cancel_requested"):
            # An acknowledged order's deadline has passed once it was seen; a legacy order
            # has none: the exchange's silence is judged from the order's last change.
            deadline = row.updated_at + timedelta(seconds=self.ctx.config.request_timeout_s)
        record = OrderRecord(row.client_oid, row.status, row.family, row.side, row.size,
                             row.filled_size, row.filled_value, row.exchange_id, deadline,
                             held_as, cancel_at, tuple(row.cancel or ()))
        identity = of.identity if of is not None else None
        number = of.number if of is not None else None
        if identity is None:
            owner = self._owner_of(row.client_oid, now)
            identity, number = owner if owner is not None else (None, None)
        tracked = Tracked(row.client_oid, identity, number, row.symbol, record,
                          counted=not leg, arm=_arm_of(of.inputs) if of is not None else None,
                          leg=identity if leg else None)
        if leg and of is not None and row.size is not None:
            data = intent.get("stop_loss") or (of.inputs or {}).get("stop_loss") or {}
            arm = _arm_of(of.inputs)
            self.held.legs[row.client_oid] = restore(
                row, of, data, self.rules.rules.get(of.identity),
                arm.fill if arm is not None else None, self.ctx.symbols[row.symbol])
        elif held_as and row.status == "held" and row.size is not None and of is not None:
            self.held.held[row.client_oid] = Held(
                row.client_oid, of.identity, of.number, row.symbol, row.side, row.size,
                Decimal(str(intent.get("trail", "0"))), row.price)
        return tracked

    def _decide_again(self, tracked: Tracked, now: datetime) -> None:
        """A firing proven not placed before the restart: decided again, same clientOid."""
        step = self.orders.retry_hook(tracked, now)
        if step.rows:
            self.ctx.store.save_states(list(step.rows), now, list(step.events))
        if step.then is not None:
            step.then()

    def load_exposure(self, now: datetime, tracked: list[Tracked] | None = None) -> None:
        """The risk limits' usage, rebuilt from the store: an order not final keeps its full
        value and counts as open; a final one keeps what it traded; one refused, proven not
        placed or vanished, nothing."""
        exposure = Exposure()
        by_oid = {t.oid: t for t in (tracked if tracked is not None else
                                     self.orders.tracked.values())}
        rows, times = self.ctx.store.exposure_rows(since=now - timedelta(minutes=1))
        for row in rows:
            if row["client_oid"] in self.held.legs:
                continue  # a stop-loss shares its take-profit's position: counted once
            value = row["value"]
            if value is None:  # adopted, or written before values were kept
                value = row["funds"] or ((row["price"] or Decimal(0)) * (row["size"] or 0))
            status = row["status"]
            is_open = status in ("pending", "unknown", "open", "cancel_requested", "held")
            kept = value if is_open else row["filled_value"] if status in (
                "filled", "canceled") else Decimal(0)
            if row["rule"] is not None and row["at"] is not None:
                exposure.add(rule_of(row["rule"]), row["at"].date(), kept, is_open=is_open)
            elif is_open:
                exposure.open_orders += 1
            of = by_oid.get(row["client_oid"])
            if of is not None:
                of.value = value
                of.day = row["at"].date() if row["at"] is not None else None
        for at in times:
            if now - at < timedelta(minutes=1):
                exposure.fired(at)
        self.orders.exposure = exposure

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
                        record = OrderRecord(oid, "open", family, state.side, state.size,
                                             state.filled_size, state.filled_funds,
                                             state.order_id)
                        self.orders.start(Tracked(
                            oid, owner[0] if owner else None, owner[1] if owner else None,
                            state.symbol, record), Transition(record, (), None),
                            recorded=True)

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


def _arm_of(inputs: dict[str, Any]) -> Arm | None:
    data = inputs.get("arm") if isinstance(inputs, dict) else None
    if not isinstance(data, dict):
        return None
    fill = data.get("fill")
    return Arm(int(data["parent_firing"]),
               None if fill is None else Fill(Decimal(fill[0]), Decimal(fill[1])))

