"""Brackets on the exchange: a take-profit with a stop-loss written `on exchange` is one KuCoin
OCO order, which protects the position with no watcher running.

    entry fills (even partly) -> the bracket rule is armed at once (protection starts at the
      first partial fill) -> its firing places one OCO (`family` "oco" in the order table,
      clientOid = the firing's) -> each further fill of the entry: the OCO is cancelled, the
      cancel confirmed by the exchange (the table's `cancel_requested` until final), then a
      replacement sized to what is filled is placed under a fresh clientOid (`oco_oid`: the
      firing and the replacement number) -> a leg fills: the other is cancelled by the
      exchange; the lookup records the fills, which leg filled and which was cancelled, and
      the order ends as the table decides (`after bracket filled` rules fire)

The OCO is a tracked order of the order table like any other (sent once, looked up when
unknown, a cancel retried until the exchange shows it final): what differs is the port's
calls (`Venue.place_oco`, `cancel_oco`, `look_up_oco`), done here for the manager, and what
happens when one ends (a replacement after a resize). `[brackets] on_exchange = false` keeps
every bracket engine-held (`_held.py`) and says so once at start.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, NamedTuple

from rules_engine.adapters.kucoin import oco_body
from rules_engine.compiler import CompiledRule
from rules_engine.core.market import OrderEvent
from rules_engine.engine import Arm, Blocked, Fill, OrderIntent
from rules_engine.engine import value as value_of
from rules_engine.engine._lifecycle import place
from rules_engine.engine._order_types import LookedUp, OrderRecord
from rules_engine.runtime._context import Context, LeaseLostError
from rules_engine.runtime._orders import OrderManager, Step, Tracked
from rules_engine.runtime._rules import RuleSet
from rules_engine.store import LeaseLost, client_oid
from rules_engine.store._oco import add_replacement, armed_by, oco_oid, oco_rows

__all__ = ["Bracket", "OcoBrackets", "OcoPlan"]

ZERO = Decimal(0)


class OcoPlan(NamedTuple):
    """A bracket's first OCO as its firing decided it."""

    oid: str
    identity: str
    number: int
    symbol: str
    side: str
    price: Decimal  # the take-profit (the limit leg)
    stop_price: Decimal
    limit_price: Decimal  # the stop leg's limit
    size: Decimal

    def body(self, oid: str | None = None, size: Decimal | None = None) -> dict[str, str]:
        return oco_body(client_oid=oid or self.oid, symbol=self.symbol, side=self.side,
                        price=self.price, size=size or self.size, stop_price=self.stop_price,
                        limit_price=self.limit_price)

    def intent(self) -> dict[str, str]:
        return {"price": format(self.price, "f"), "stop_price": format(self.stop_price, "f"),
                "limit_price": format(self.limit_price, "f")}


@dataclass
class Bracket:
    """One firing's bracket on the exchange: the OCO that protects now (`oid`, replacement
    number `replacement`, covering `size`), what the entry has filled (`target`) and what
    earlier OCOs of the bracket sold (`sold`)."""

    plan: OcoPlan
    oid: str
    replacement: int
    size: Decimal
    parent: str | None  # the entry's clientOid (None: a bracket not chained to an entry)
    target: Decimal
    sold: Decimal = ZERO
    resizing: bool = False


class OcoBrackets:
    def __init__(self, ctx: Context, rules: RuleSet, orders: OrderManager) -> None:
        self.ctx = ctx
        self.rules = rules
        self.orders = orders
        self.firing: Any = None  # the watcher's Firing: armed rules are evaluated by it
        self.brackets: dict[str, Bracket] = {}  # by the clientOid of the OCO protecting now
        self.early: set[tuple[str, int]] = set()  # (bracket rule, parent firing) armed early
        self.looking: set[str] = set()  # OCOs with a lookup under way
        self.told: set[str] = set()  # OCOs whose legs' ends are on record

    @property
    def enabled(self) -> bool:
        return self.ctx.config.brackets.on_exchange

    def announce(self, rules: Iterable[CompiledRule]) -> None:
        """At start, once: the brackets written `on exchange` the config keeps engine-held."""
        named = sorted(r.name or r.identity[:12] for r in rules
                       if r.order is not None and r.order.on_exchange)
        if named and not self.enabled:
            self.ctx.event("brackets.engine_held", {
                "rules": named, "why": "[brackets] on_exchange = false: every bracket is "
                                      "held by the engine and protects only while a watcher "
                                      "runs"})

    # ------------------------------------------------------------ a firing's OCO

    def plan(self, rule: CompiledRule, tp: OrderIntent, oid: str, number: int, *,
             fill: Fill | None, trigger: Decimal) -> OcoPlan | Blocked:
        """The OCO for take-profit `tp` and the stop-loss `trigger` (rounded already), its
        stop leg's limit rounded to a tick toward the trigger and never past it."""
        spec = rule.order
        assert spec is not None and spec.stop_limit is not None
        raw = value_of(spec.stop_limit, self.rules.market.values, fill)
        if raw is None:
            return Blocked("the stop-loss's limit depends on data that is not fresh")
        if raw <= 0 or tp.price is None or tp.size is None:
            return Blocked(f"the stop-loss's limit {raw} is not above zero")
        step = self.ctx.symbols[tp.symbol].price_increment
        if tp.side == "sell":  # never above the trigger (a buy's: never below it)
            limit = min((raw / step).to_integral_value(ROUND_CEILING) * step, trigger)
        else:
            limit = max((raw / step).to_integral_value(ROUND_FLOOR) * step, trigger)
        return OcoPlan(oid, rule.identity, number, tp.symbol, tp.side, tp.price, trigger, limit,
                       tp.size)

    def register(self, plan: OcoPlan, rule: CompiledRule, arm: Arm | None,
                 now: datetime) -> None:
        """A firing's first OCO was handed to the manager: followed, and resized at once if
        its entry filled more since the arm."""
        parent = None
        if rule.after is not None and arm is not None:
            parent = client_oid(self.ctx.engine_id, rule.after[0], arm.parent_firing)
        bracket = Bracket(plan, plan.oid, 0, plan.size, parent, plan.size)
        self.brackets[plan.oid] = bracket
        if parent is not None:
            bracket.target = max(self._filled(parent), plan.size)
            self._resize(bracket, now)

    def _filled(self, oid: str) -> Decimal:
        tracked = self.orders.tracked.get(oid)
        if tracked is not None:
            return tracked.record.filled
        row = self.ctx.store.order(oid)
        return row.filled_size if row is not None else ZERO

    # ------------------------------------------------------------ the entry's fills

    def on_fill(self, tracked: Tracked, now: datetime) -> None:
        """An order's filled total grew: its `on exchange` brackets are armed at the first
        partial fill, and resized at each further one."""
        if not self.enabled or tracked.family == "oco" or tracked.identity is None:
            return
        for child in self.rules.children.get(tracked.identity, ()):
            if child.after is None or child.after[1] != "filled" or child.order is None or (
                    not child.order.on_exchange):
                continue
            bracket = next((b for b in self.brackets.values() if b.parent == tracked.oid
                            and b.plan.identity == child.identity), None)
            if bracket is not None:
                bracket.target = max(bracket.target, tracked.record.filled)
                self._resize(bracket, now)
            elif not self._armed_for(child, tracked.number):
                self._arm_early(tracked, child, now)

    def _armed_for(self, child: CompiledRule, number: int | None) -> bool:
        """Whether the bracket rule was armed by this parent firing already: early, queued,
        or fired (as the store says, across restarts)."""
        state = self.rules.states.get(child.identity)
        if number is None or state is None or (child.identity, number) in self.early or any(
                a.parent_firing == number for a in state.arms):
            return True
        if number in armed_by(self.ctx.store, child.identity):
            self.early.add((child.identity, number))
            return True
        return False

    def skip_arm(self, child: CompiledRule, number: int | None) -> bool:
        """The entry ended: an `on exchange` bracket armed by it already (at its first
        partial fill) is not armed again: its OCO followed the fills instead."""
        return child.order is not None and child.order.on_exchange and self._armed_for(
            child, number)

    def _arm_early(self, tracked: Tracked, child: CompiledRule, now: datetime) -> None:
        record = tracked.record
        if tracked.identity is None or tracked.number is None or record.filled <= 0:
            return
        fill = Fill(record.filled_value / record.filled, record.filled)
        arms = [a for a in self.rules.arms(tracked.identity, "filled", tracked.number, fill)
                if a[0].identity == child.identity]
        if not arms:
            return
        self.ctx.store.save_states(
            [self.rules.row_of(c.identity, state) for c, state, _ in arms], now,
            [("rule.armed", c.identity, {**detail, "at": "the first partial fill"})
             for c, _, detail in arms])
        self.early.add((child.identity, tracked.number))
        for c, _, detail in arms:
            self.ctx.emit("rule.armed", {"rule": c.identity, **detail,
                                         "at": "the first partial fill"})
        self.firing.evaluate(self.rules.armed(arms, now), now)

    def _round(self, symbol: str, size: Decimal) -> Decimal:
        step = self.ctx.symbols[symbol].base_increment
        return (size / step).to_integral_value(ROUND_FLOOR) * step

    def _resize(self, bracket: Bracket, now: datetime) -> None:
        """The entry filled more than the OCO covers: cancelled (confirmed), then replaced."""
        want = self._round(bracket.plan.symbol, bracket.target - bracket.sold)
        if want <= bracket.size or bracket.resizing:
            return  # covered, or a resize under way (it reads the target when it ends)
        tracked = self.orders.tracked.get(bracket.oid)
        if tracked is None:
            return
        bracket.resizing = True
        self.ctx.event("oco.resize", {"size": format(bracket.size, "f"),
                                      "to": format(want, "f"),
                                      "entry_filled": format(bracket.target, "f")},
                       identity=bracket.plan.identity, oid=bracket.oid)
        self.orders.ask_cancel([tracked], "resize: the entry filled more")

    # ------------------------------------------------------------ an OCO ends

    def continues(self, tracked: Tracked) -> bool:
        """Whether a replacement carries the bracket on after this OCO (a resize)."""
        bracket = self.brackets.get(tracked.oid)
        if bracket is None or not bracket.resizing:
            return False
        left = bracket.target - bracket.sold - tracked.record.filled
        return self._round(bracket.plan.symbol, left) >= self._min(bracket)

    def _min(self, bracket: Bracket) -> Decimal:
        return max(self.ctx.symbols[bracket.plan.symbol].base_min_size, Decimal("1e-18"))

    def on_end(self, tracked: Tracked, now: datetime) -> None:
        """An OCO ended as the table decided: after a resize, its replacement is placed."""
        bracket = self.brackets.pop(tracked.oid, None)
        if bracket is None:
            return
        bracket.sold += tracked.record.filled
        if bracket.resizing and tracked.status in ("canceled", "filled", "vanished"):
            bracket.resizing = False
            self._replace(bracket, now)

    def retry(self, tracked: Tracked, now: datetime) -> Step:
        """A replacement proven never placed: placed again under a fresh clientOid."""
        bracket = self.brackets.pop(tracked.oid, None)
        if bracket is None:
            return Step()
        return Step(then=lambda: self._replace(bracket, now))

    def is_replacement(self, tracked: Tracked) -> bool:
        return tracked.family == "oco" and tracked.identity is not None and (
            tracked.number is not None) and tracked.oid != client_oid(
            self.ctx.engine_id, tracked.identity, tracked.number)

    def _replace(self, bracket: Bracket, now: datetime) -> None:
        plan = bracket.plan
        size = self._round(plan.symbol, bracket.target - bracket.sold)
        if size < self._min(bracket) or size <= 0:
            self.ctx.event("oco.not_replaced", {
                "why": f"what is left to protect ({size}) is below baseMinSize",
                "entry_filled": format(bracket.target, "f"),
                "sold": format(bracket.sold, "f")}, identity=plan.identity, oid=bracket.oid)
            return
        number = bracket.replacement + 1
        oid = oco_oid(self.ctx.engine_id, plan.identity, plan.number, number)
        row = {"client_oid": oid, "exchange_id": None, "symbol": plan.symbol,
               "side": plan.side, "order_type": "oco", "price": plan.price, "size": size,
               "funds": None, "status": "pending", "filled_size": ZERO,
               "filled_value": ZERO, "family": "oco", "deadline": None}
        try:
            add_replacement(self.ctx.store, plan.oid, row, now, {
                "replaces": bracket.oid, "replacement": number, "size": format(size, "f"),
                "entry_filled": format(bracket.target, "f")})
        except LeaseLost as err:
            raise LeaseLostError(str(err)) from None
        self.orders.fenced()
        old = bracket.oid
        bracket.oid, bracket.replacement, bracket.size = oid, number, size
        self.brackets[oid] = bracket
        tracked = Tracked(oid, plan.identity, plan.number, plan.symbol,
                          OrderRecord(oid, "", "oco", plan.side, size), counted=False,
                          body=plan.body(oid, size))
        self.ctx.emit("oco.replaced", {"rule": plan.identity, "client_oid": oid,
                                       "replaces": old, "size": format(size, "f")})
        self.orders.start(tracked, place(oid, family="oco", side=plan.side, size=size,
                                         deadline=None), recorded=True)

    # ------------------------------------------------------------ the ports, for the manager

    async def look_up(self, tracked: Tracked) -> None:
        """The manager's lookup of an OCO: its legs and their fills (stored once per trade
        id), which leg filled and which was cancelled once it is over, then `LookedUp`."""
        self.looking.add(tracked.oid)
        try:
            seen = await self.ctx.venue.look_up_oco(tracked.oid, tracked.symbol)
        finally:
            self.looking.discard(tracked.oid)
        at = self.ctx.venue.server_now()
        order = seen.order
        if seen.kind != "found" or order is None:
            if seen.kind == "failed":
                self.ctx.event("oco.lookup_failed", {"why": seen.message[:200]},
                               oid=tracked.oid)
            self.orders.feed(tracked, LookedUp("absent" if seen.kind == "absent" else "failed",
                                               at))
            return
        traded = {fill.order_id for fill in seen.fills}
        if not order.active and any(leg.status == "DONE" and leg.leg_id not in traded
                                    for leg in order.legs):
            # A leg traded and its fills are not listed yet: nothing is concluded from it.
            self.ctx.event("oco.fills_pending", {"status": order.status}, oid=tracked.oid)
            self.orders.feed(tracked, LookedUp("failed", at))
            return
        for fill in seen.fills:
            self.ctx.store.add_fill(fill.trade_id, tracked.oid, price=fill.price,
                                    size=fill.size, fee=fill.fee,
                                    fee_currency=fill.fee_currency, time=fill.time)
        size, value = seen.filled
        if not order.active and not tracked.record.final and tracked.oid not in self.told:
            self.told.add(tracked.oid)
            self._legs(tracked, seen)
        self.orders.feed(tracked, LookedUp("found", at, order.active, size, value,
                                           order.order_id))

    def _legs(self, tracked: Tracked, seen: Any) -> None:
        """The OCO is over: which leg traded (with its fills' size and average price) and
        which the exchange cancelled, on record."""
        for leg in seen.order.legs:
            fills = [f for f in seen.fills if f.order_id == leg.leg_id]
            size = sum((f.size for f in fills), ZERO)
            if size > 0:
                price = sum((f.price * f.size for f in fills), ZERO) / size
                self.ctx.event("oco.leg_filled", {
                    "leg": leg.role, "leg_id": leg.leg_id, "size": format(size, "f"),
                    "price": format(price.normalize(), "f")},
                    identity=tracked.identity, oid=tracked.oid)
            elif leg.status == "CANCELLED":
                self.ctx.event("oco.leg_canceled", {"leg": leg.role, "leg_id": leg.leg_id},
                               identity=tracked.identity, oid=tracked.oid)

    def on_event(self, tracked: Tracked, event: OrderEvent) -> None:
        """An order event of one of an OCO's legs (they carry the OCO's clientOid): a fill is
        stored at once (money), and the OCO is looked up for what it means."""
        if event.kind == "match" and event.trade_id and event.match_price and event.match_size:
            self.ctx.store.add_fill(event.trade_id, tracked.oid, price=event.match_price,
                                    size=event.match_size, fee=None, fee_currency=None,
                                    time=event.time)
            self.ctx.emit("fill", {"client_oid": tracked.oid, "price": str(event.match_price),
                                   "size": str(event.match_size)})
        if tracked.oid not in self.looking and tracked.record.waiting is None:
            self.looking.add(tracked.oid)
            self.ctx.spawn(self.look_up(tracked))

    # ------------------------------------------------------------ recovery

    def resume(self, now: datetime) -> None:
        """After recovery looked every order up: each bracket catches up with what its entry
        filled while no watcher ran (the entry may have been looked up before its OCO)."""
        for bracket in list(self.brackets.values()):
            if bracket.parent is not None:
                bracket.target = max(bracket.target, self._filled(bracket.parent))
                self._resize(bracket, now)

    def recovered(self, tracked: Tracked, row: Any, firing: Any) -> None:
        """An OCO the store holds not final, followed again after a restart (its prices from
        the firing's intent; its entry from the firing's arm)."""
        intent = (firing.intent or {}).get("oco") or {}
        rule = self.rules.rules.get(firing.identity)
        if not intent or row.size is None or rule is None:
            return
        plan = OcoPlan(firing.client_oid, firing.identity, firing.number, row.symbol, row.side,
                       Decimal(intent["price"]), Decimal(intent["stop_price"]),
                       Decimal(intent["limit_price"]), row.size)
        number = next((k for k in range(1000) if oco_oid(
            self.ctx.engine_id, firing.identity, firing.number, k) == row.client_oid), 0)
        arm = (firing.inputs or {}).get("arm") if isinstance(firing.inputs, dict) else None
        parent = None
        if rule.after is not None and isinstance(arm, dict) and "parent_firing" in arm:
            parent = client_oid(self.ctx.engine_id, rule.after[0], int(arm["parent_firing"]))
            self.early.add((rule.identity, int(arm["parent_firing"])))
        target = self._filled(parent) if parent is not None else row.size
        sold = sum((r.filled_size for r in oco_rows(self.ctx.store, firing.client_oid)
                    if r.client_oid != row.client_oid), ZERO)
        # A resize asked before the restart goes on: the replacement follows the cancel.
        resizing = any(why.startswith("resize") for why in tracked.record.cancel)
        self.brackets[row.client_oid] = Bracket(plan, row.client_oid, number, row.size, parent,
                                                max(target, row.size), sold, resizing)
