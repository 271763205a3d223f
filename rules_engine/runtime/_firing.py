"""Decisions: the pure evaluator on the rules a market change selects, and each firing
turned into one committed intent, then handed to the order manager to send.

    changes -> RuleIndex.affected -> step -> Decision
            -> resolve_order + risk limits + bracket check -> Store.fire (one durable commit,
               fenced by the lease) -> OrderManager.send

What is not needed before the send (the rule's actions, the `after R fired` arms, the output
line) runs after it has been handed over.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from rules_engine.compiler import CompiledRule
from rules_engine.compiler import model as M
from rules_engine.engine import (
    Blocked,
    Decision,
    Fill,
    OrderIntent,
    deadline,
    load_state,
    order_body,
    resolve_order,
    restore,
    step,
)
from rules_engine.engine import value as value_of
from rules_engine.engine._lifecycle import place
from rules_engine.engine._order_types import OrderRecord
from rules_engine.engine._position import ChainFill
from rules_engine.engine._risk import check, value_order
from rules_engine.engine._slices import rule_of
from rules_engine.runtime import _metrics as metrics
from rules_engine.runtime._actions import Actions
from rules_engine.runtime._chains import Chains, balance_changes
from rules_engine.runtime._context import Context, LeaseLostError
from rules_engine.runtime._exits import build_leg, exit_side, leg_row
from rules_engine.runtime._exits import detail as leg_detail
from rules_engine.runtime._feeds import Feeds
from rules_engine.runtime._held import Held, HeldOrders, Leg
from rules_engine.runtime._oco import OcoBrackets, OcoPlan
from rules_engine.runtime._orders import OrderManager, Tracked
from rules_engine.runtime._rules import RuleSet
from rules_engine.runtime._slices import Plan, Slices
from rules_engine.store import IllegalTransition, LeaseLost, client_oid

__all__ = ["Deferred", "Firing"]


class Deferred(Blocked):
    """`risk.max_firings_per_minute` reached: the firing waits until the window allows."""


def _num(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


class Firing:
    def __init__(self, ctx: Context, rules: RuleSet, feeds: Feeds, orders: OrderManager,  # noqa: PLR0917 - the parts it is wired to
                 held: HeldOrders, actions: Actions) -> None:
        self.ctx = ctx
        self.rules = rules
        self.feeds = feeds
        self.orders = orders
        self.held = held
        self.actions = actions
        self.limits = ctx.config.risk.limits()
        self.file_limits = {path: limits.limits()
                            for path, limits in ctx.config.risk_files.items()}
        self.deferred: dict[str, datetime] = {}  # rule -> when the firings window allows
        self.fired = 0
        self.slices = Slices(ctx, rules, self)
        self.oco: OcoBrackets | None = None  # brackets `on exchange` (set by the watcher)
        self.chains = Chains(ctx.config.fee_rate, ctx.symbols)  # position, pnl, pnl%
        self.private_live = False  # the order channel, for `balance(CUR)`

    # ------------------------------------------------------------ evaluation

    def apply(self, changes: list[Any], now: datetime) -> None:
        if not changes:
            return
        selected: dict[str, CompiledRule] = {}
        index = self.rules.index
        for change in changes:
            for rule in index.affected(change.leaf, change.old, change.new):
                selected[rule.identity] = rule
        if selected:
            self.evaluate(selected.values(), now)

    def evaluate(self, rules: Iterable[CompiledRule], now: datetime) -> None:
        if self.ctx.halted is not None or self.ctx.failed:
            return  # the kill switch: nothing fires until `rules-engine resume`
        self.feeds.check()  # after a stall, the market is stale before anything is decided
        values = self.rules.market.values
        timed = self.rules.timed_ids
        states = self.rules.states
        pending = self.orders.pending
        chains = self.chains
        stepped = 0
        for rule in rules:
            identity = rule.identity
            if identity in pending:
                continue  # frozen: its last firing's outcome is not proven yet
            if identity in self.deferred and now < self.deferred[identity]:
                continue  # waiting for the firings-per-minute window
            before = states[identity]
            seen = chains.view_for(rule, before, values) if rule.after is not None else values
            after, decision = step(rule, before, seen, now)
            stepped += 1
            if identity in timed:
                self.rules.timers.update(rule, after, now)
            if decision is None:
                if after is not before:
                    states[identity] = after
                continue
            metrics.decided(decision.kind)
            if decision.kind == "fire":
                self.fire(rule, before, after, decision, now)
            else:
                states[identity] = after
                self.ctx.store.save_states([self.rules.row(identity)], now,
                                           [(f"rule.{decision.kind}", identity, {})])
                self.ctx.emit(f"rule.{decision.kind}", {"rule": identity})
        metrics.evaluated(stepped)

    def on_fill(self, tracked: Tracked, trade_id: str, price: Decimal, size: Decimal,  # noqa: PLR0917 - one fill's facts
                fee: Decimal | None, fee_currency: str | None) -> None:
        """A new fill: its chain's values change (position, pnl), and so may its rules."""
        if tracked.identity is None or tracked.number is None:
            return
        chains = self.chains
        root = chains.add((tracked.identity, tracked.number), trade_id, tracked.oid,
                          tracked.symbol, ChainFill(tracked.side, price, size, fee, fee_currency))
        if root is not None:
            self.apply(chains.changes(tracked.symbol), self.ctx.now())

    def sync_balances(self, live: bool | None = None) -> None:
        """`balance(CUR)` values: known while the order channel is live (`live`: it changed;
        None: as it was, for a reload's new rules)."""
        if live is not None:
            self.private_live = live
        live = self.private_live
        currencies = {x.currency for x in self.rules.index.leaves() if isinstance(x, M.Balance)}
        if currencies:
            self.apply(balance_changes(self.rules.market.values, currencies, self.ctx.balances,
                                       live), self.ctx.now())

    def due(self, now: datetime) -> list[CompiledRule]:
        """Deferred firings whose window now allows them."""
        ready = [i for i, at in self.deferred.items() if at <= now]
        for identity in ready:
            del self.deferred[identity]
        return [self.rules.rules[i] for i in ready if i in self.rules.rules]

    # ------------------------------------------------------------ a firing

    def fire(self, rule: CompiledRule, before: Any, after: Any, decision: Decision,
             now: datetime) -> None:
        identity, number = rule.identity, decision.firing
        fill = decision.arm.fill if decision.arm is not None else None
        oid = client_oid(self.ctx.engine_id, identity, number)
        resolved: OrderIntent | Blocked | None = None
        value = Decimal(0)
        leg: Leg | OcoPlan | None = None
        plan: Plan | None = None  # a scaled order's or a TWAP's slices
        if rule.order is not None and rule.order.slicing is not None:
            planned = self.slices.plan(rule, number, fill, now)
            if isinstance(planned, Blocked):
                resolved = planned
            else:
                plan = planned
        elif rule.order is not None:
            seen = self.chains.view(rule, decision.arm, self.rules.market.values)
            resolved, value, leg = self._decide_order(rule, oid, number, fill, now, seen)
        elif rule.protection is not None and rule.protection.guard:
            guarded = self._guard(rule, number, fill, now)
            if isinstance(guarded, Blocked):
                resolved = guarded
            else:
                leg = guarded
        if isinstance(resolved, Deferred):  # the rule stays as it was, and looks again then
            until = self._window_opens(now)
            self.deferred[identity] = until
            self.ctx.event("firing.deferred", {"until": until.isoformat(),
                                               "why": resolved.reason}, identity=identity)
            return
        states = self.rules.states
        states[identity] = after
        self.chains.join(identity, number, rule.after[0] if rule.after is not None else None,
                         decision.arm.parent_firing if decision.arm is not None else None)
        inputs = self._inputs(rule, decision, now)
        again = decision.again  # proven not placed and decided again: from the rule's state
        rearm: tuple[tuple[str, str, dict[str, Any]], ...] = (
            (("rule.rearm", identity, {}),) if before.status == "cooling" else ())
        if isinstance(resolved, Blocked):  # recorded with the reason; nothing is sent
            if after.status != "blocked":
                states[identity] = after._replace(status="blocked")
            self.rules.reasons[identity] = resolved.reason
            if not self._commit(identity, number, inputs, None, None, now,
                                blocked=resolved.reason, again=again, events=rearm):
                return
            self.ctx.emit("blocked", {"rule": identity, "firing": number,
                                      "reason": resolved.reason})
            return
        # `after R fired` goes with the firing itself: armed in its commit, and only once
        # (a firing sent again after it was proven not placed arms nothing more).
        arms = [] if again else self.rules.arms(identity, "fired", number, None)
        also = tuple(self.rules.row_of(c.identity, st) for c, st, _ in arms)
        events = (*rearm, *(("rule.armed", c.identity, e) for c, _, e in arms))
        # A rule's cancel actions run before its own place, and never reach the order this
        # firing places (it is not tracked yet when they choose what to cancel).
        self.actions.cancels(rule, now)
        if resolved is None:  # actions only, a guard (its held stop) or a sliced order
            family = self.ctx.venue.family
            leg = leg if isinstance(leg, Leg) else None  # a guard's is never an OCO
            if leg is not None:
                inputs["stop_loss"] = leg_detail(leg)
            if plan is not None:  # its plan goes with the firing, each slice is one of its own
                inputs["slices"] = plan.payload()
                events = (*events, ("slices.planned", identity, plan.payload()))
            if not self._commit(identity, number, inputs, None, None, now, again=again,
                                also=also, events=events,
                                legs=(leg_row(leg, family),) if leg is not None else ()):
                return
            if leg is not None:
                self._hold(leg, family, now)
            self.fired += 1
            self.ctx.emit("fired", {"rule": identity, "firing": number, **(
                {"guard": {**leg_detail(leg), "side": leg.side}} if leg is not None else {}),
                **({"slices": plan.group} if plan is not None else {})})
            if plan is not None:
                self.slices.start(plan, now)
            self._notify(rule, number, None, decision, now)
            self._armed(arms, now)
            return
        if self._place(rule, number, oid, resolved, value, leg, decision, inputs, now,
                       again=again, also=also, events=events):
            self._notify(rule, number, resolved, decision, now)
            self._armed(arms, now)

    def _notify(self, rule: CompiledRule, number: int, order: OrderIntent | None,
                decision: Decision, now: datetime) -> None:
        arm = decision.arm
        self.actions.notify(rule, now, number, order,
                            arm.fill if arm is not None else None,
                            arm.parent_firing if arm is not None else None, self.rules.rules)

    def _decide_order(self, rule: CompiledRule, oid: str, number: int,  # noqa: PLR0917 - a firing's facts
                      fill: Fill | None, now: datetime, values: Mapping[object, Decimal],
                      ) -> tuple[OrderIntent | Blocked, Decimal, Leg | OcoPlan | None]:
        spec = rule.order
        assert spec is not None
        resolved: OrderIntent | Blocked = resolve_order(
            spec, values, self.ctx.symbols[spec.symbol], fill=fill, balances=self.ctx.balances,
            fee_rate=self.ctx.config.fee_rate)
        value = Decimal(0)
        leg = None
        if isinstance(resolved, OrderIntent):
            limited = self._limits(rule, resolved, now)
            if isinstance(limited, Blocked):
                return limited, value, None
            resolved, value = limited
        if isinstance(resolved, OrderIntent) and not self.ctx.trading:
            resolved = Blocked(f"trading is stopped: {self.ctx.stop_reason}")
        if isinstance(resolved, OrderIntent):
            stop_loss = self._stop_loss(rule, resolved, oid, number, fill, now)
            if isinstance(stop_loss, Blocked):
                resolved = stop_loss
            else:
                leg = stop_loss
        if isinstance(resolved, OrderIntent):
            inverted = self._children_inverted(rule, resolved)
            if inverted is not None:
                resolved = Blocked(inverted)
        return resolved, value, leg

    def _place(self, rule: CompiledRule, number: int, oid: str, resolved: OrderIntent,  # noqa: PLR0917 - the parts it is wired to
               value: Decimal, leg: Leg | OcoPlan | None, decision: Decision | None,
               inputs: dict[str, Any], now: datetime, *, again: bool,
               also: tuple[Any, ...], events: tuple[Any, ...], group: str | None = None) -> bool:
        """The firing's commit, then its order sent. `group`: a slice's firing identity (the
        slices of one firing of `rule`, `number` being the slice's), else the rule's."""
        identity = group or rule.identity
        held = resolved.order_type == "trailing-stop"  # kept by the engine until it triggers
        family = "stop" if resolved.order_type == "stop" else self.ctx.venue.family
        body: dict[str, Any] | None = None
        until: datetime | None = None
        plan = leg if isinstance(leg, OcoPlan) else None  # the bracket as one OCO order
        leg = leg if isinstance(leg, Leg) else None
        if plan is not None:
            family, body = "oco", plan.body()
        elif not held:
            server_ms = self.ctx.venue.server_ms()
            window = self.ctx.config.order_window_ms
            body = order_body(resolved, oid, family=family, server_ms=server_ms,
                              window_ms=window)
            until = deadline(family, datetime.fromtimestamp(server_ms / 1000, UTC), window,
                             self.ctx.config.request_timeout_s)
        intent: dict[str, Any] = {
            "symbol": resolved.symbol, "side": resolved.side, "type": resolved.order_type,
            "size": _num(resolved.size), "funds": _num(resolved.funds),
            "price": _num(resolved.price), "stop_price": _num(resolved.stop_price),
            "trail": _num(resolved.trail) if held else None,
            "family": family, "deadline": until.isoformat() if until else None,
            "notional": format(value, "f"),
            **({"oco": plan.intent()} if plan is not None else {}),
        }
        if resolved.visible_size is not None:
            intent["visible_size"] = _num(resolved.visible_size)
        mark = self.rules.market.values.get(M.Field(resolved.symbol, "last")) if held else None
        order_row = {
            "exchange_id": None, "symbol": resolved.symbol, "side": resolved.side,
            "order_type": "oco" if plan is not None else resolved.order_type,
            "price": mark if held else resolved.stop_price or resolved.price,  # a stop's trigger
            "size": resolved.size, "funds": resolved.funds,
            "status": "held" if held else "pending",
            "filled_size": Decimal(0), "filled_value": Decimal(0), "family": family,
            "deadline": until,
        }
        legs: tuple[dict[str, Any], ...] = ()
        if leg is not None:
            intent["stop_loss"] = leg_detail(leg)
            legs = (leg_row(leg, family),)
        cancel_at = None if rule.cancel_after_seconds is None else now + timedelta(
            seconds=rule.cancel_after_seconds)
        order_row["cancel_at"] = cancel_at
        if not self._commit(identity, number, inputs, intent, order_row, now, again=again,
                            also=also, events=events, legs=legs, held=held):
            return False
        # The order goes out first (the fenced commit above is `place`'s `Record`); the
        # bookkeeping the send does not need follows it.
        family_of = family
        tracked = Tracked(oid, identity, number, resolved.symbol,
                          OrderRecord(oid, "", family_of, resolved.side, resolved.size),
                          value=value, day=now.date(),
                          arm=decision.arm if decision is not None else None, body=body)
        self.orders.start(tracked, place(oid, family=family_of, side=resolved.side,
                                         size=resolved.size, deadline=until,
                                         held_as="trailing-stop" if held else None,
                                         cancel_at=cancel_at), recorded=True)
        if leg is not None:
            self._hold(leg, family, now)
        if plan is not None and self.oco is not None:
            self.oco.register(plan, rule, decision.arm if decision is not None else None, now)
        self.orders.exposure.add(rule.identity, now.date(), value)  # a slice: its rule's
        self.fired += 1
        if held:
            assert resolved.size is not None and resolved.trail is not None
            self.held.held[oid] = Held(oid, identity, number, resolved.symbol, resolved.side,
                                       resolved.size, resolved.trail, mark)
        else:
            self.orders.exposure.fired(now)  # an order sent: it counts in the firings/minute
        self.ctx.emit("fired", {"rule": identity, "firing": number, "client_oid": oid,
                                "order": {k: v for k, v in intent.items() if v is not None},
                                **({"held": True} if held else {}),
                                **({"slice": number} if group is not None else {})})
        return True

    def _hold(self, leg: Leg, family: str, now: datetime) -> None:
        """A held stop recorded with its firing: tracked by the table, watched by the engine."""
        self.held.legs[leg.oid] = leg
        self.orders.start(
            Tracked(leg.oid, leg.identity, leg.number, leg.symbol,
                    OrderRecord(leg.oid, "", family, leg.side, leg.size),
                    day=now.date(), counted=False, leg=leg.identity),
            place(leg.oid, family=family, side=leg.side, size=leg.size, deadline=None,
                  held_as="stop-loss"), recorded=True)

    def _commit(self, identity: str, number: int, inputs: dict[str, Any],  # noqa: PLR0917 - the parts it is wired to
                intent: dict[str, Any] | None, order: dict[str, Any] | None, now: datetime,
                **rest: Any) -> bool:
        """The firing's one durable commit, fenced: it proves (and renews) this watcher's
        lease in the same transaction, or nothing is written and nothing is sent."""
        started = time.perf_counter()
        rule = rule_of(identity)  # a slice's firing carries its rule's version and state
        try:
            self.ctx.store.fire(identity, number, version=self.rules.versions[rule],
                                inputs=inputs, intent=intent, order=order,
                                state=self.rules.row(rule), now=now, **rest)
        except LeaseLost as err:
            raise LeaseLostError(str(err)) from None
        except IllegalTransition as err:
            if rule != identity:  # a slice recorded already: the store's record stands
                self.ctx.event("firing.anomaly", {"firing": number, "move": str(err),
                                                  "kept": "the store's record"},
                               identity=identity)
                return False
            # The firing exists already past where this decision would take it (decided
            # and sent by an earlier owner of the store): nothing is sent, the rule takes
            # the state the store holds, and the anomaly is on record.
            self._adopt_stored(identity, number, str(err), now)
            return False
        self.orders.fenced()
        metrics.committed(time.perf_counter() - started)
        return True

    def _adopt_stored(self, identity: str, number: int, why: str, now: datetime) -> None:
        stored = self.ctx.store.rule_state(identity)
        state = self.rules.states[identity]
        if stored is not None:
            state = restore(load_state(stored.state))
        if state.firings < number:
            state = state._replace(firings=number, true_since=None, seen_false=False)
        self.rules.states[identity] = state
        self.rules.schedule(identity, now)
        self.ctx.event("firing.anomaly", {"firing": number, "move": why,
                                          "kept": "the store's record"}, identity=identity)

    def _inputs(self, rule: CompiledRule, decision: Decision, now: datetime) -> dict[str, Any]:
        books = self.feeds.books
        inputs: dict[str, Any] = {
            "values": dict(decision.inputs),
            "books": {s: {"sequence": b.sequence, "state": b.state.value}
                      for s in rule.symbols if (b := books.get(s)) is not None},
            "at": now.isoformat(),
        }
        if decision.arm is not None:
            inputs["arm"] = {
                "parent_firing": decision.arm.parent_firing,
                **({"parent": rule.after[0]} if rule.after is not None else {}),
                "fill": None if decision.arm.fill is None
                else [str(decision.arm.fill.price), str(decision.arm.fill.size)],
            }
        return inputs

    def _armed(self, arms: Any, now: datetime) -> None:
        for child, _, detail in arms:
            self.ctx.emit("rule.armed", {"rule": child.identity, **detail})
        if arms:
            self.evaluate(self.rules.armed(arms, now), now)

    # ------------------------------------------------------------ checks before a send

    def _window_opens(self, now: datetime) -> datetime:
        firings = self.orders.exposure.firings
        return (firings[0] + timedelta(minutes=1)) if firings else now

    def _limits(self, rule: CompiledRule, intent: OrderIntent,
                now: datetime) -> tuple[OrderIntent, Decimal] | Blocked:
        """The order's value and the risk limits (the config's, tightened by the rule
        file's): the limit it would break blocks it; the firings-per-minute limit defers it."""
        limits = self.limits.tighten(self.file_limits[rule.path]) if (
            rule.path in self.file_limits) else self.limits
        exposure = self.orders.exposure
        per_minute = limits.max_firings_per_minute
        if per_minute is not None and exposure.recent_firings(now) >= per_minute:
            return Deferred(f"risk.max_firings_per_minute {per_minute} reached")
        far_side: Iterable[tuple[Decimal, Decimal]] | None = None
        book = self.feeds.books.get(intent.symbol)
        market_like = intent.order_type in ("market", "trailing-stop")
        if market_like and book is not None and book.fresh:
            if intent.side == "buy":
                far_side = book.asks.items()
            else:
                far_side = ((price, book.bids[price]) for price in reversed(book.bids))
        elif market_like and intent.size is not None:
            # No book followed: valued at the ticker's best price (the slippage cap, which
            # needs the book's depth, then blocks it).
            ticker = self.rules.market.ticker(intent.symbol)
            best = None
            if ticker is not None:
                best = (ticker.best_ask if intent.side == "buy" else ticker.best_bid) or (
                    ticker.price)
            if best is not None and limits.max_slippage is None:
                far_side = [(best, intent.size)]
        slippage = None if intent.order_type == "trailing-stop" else limits.max_slippage
        value = value_order(intent, far_side, slippage)
        if isinstance(value, str):
            valued = (limits.max_order_notional, limits.max_rule_notional,
                      limits.max_daily_notional, limits.max_slippage)
            if any(limit is not None for limit in valued):
                return Blocked(value)
            value = Decimal(0)  # no limit needs its value: it is not blocked for lacking one
        reason = check(intent, value, rule.identity, limits=limits, exposure=exposure, now=now)
        return Blocked(reason) if reason is not None else (intent, value)

    def _stop_loss(self, rule: CompiledRule, tp: OrderIntent, tp_oid: str, number: int,  # noqa: PLR0917 - the parts it is wired to
                   fill: Fill | None, now: datetime) -> Leg | OcoPlan | Blocked | None:
        """A bracket's held leg for the take-profit `tp` (a stop-loss, trailing or fixed,
        and its time exit), or why it cannot be held; written `on exchange` (and the config
        allowing it), the bracket as one OCO order instead."""
        if tp.order_type != "limit" or tp.size is None:
            return None
        leg = build_leg(rule, engine_id=self.ctx.engine_id,
                        info=self.ctx.symbols[tp.symbol], side=tp.side, size=tp.size,
                        tp_oid=tp_oid, tp_price=tp.price, number=number, fill=fill,
                        values=self.rules.market.values, rules=self.rules.rules, now=now)
        spec = rule.order
        if isinstance(leg, Leg) and leg.trigger is not None and spec is not None and (
                spec.on_exchange and self.oco is not None and self.oco.enabled):
            return self.oco.plan(rule, tp, tp_oid, number, fill=fill, trigger=leg.trigger)
        return leg

    def _guard(self, rule: CompiledRule, number: int, fill: Fill | None,
               now: datetime) -> Leg | Blocked:
        """A guard's held stop: what the entry's fill still holds, on the entry's other side."""
        side = exit_side(rule, self.rules.rules)
        if side is None or rule.symbol is None:
            return Blocked("the guard's entry rule places no order")
        if fill is None:
            return Blocked("a guard needs its entry's fill")
        leg = build_leg(rule, engine_id=self.ctx.engine_id, info=self.ctx.symbols[rule.symbol],
                        side=side, size=fill.size, tp_oid="", tp_price=None, number=number,
                        fill=fill, values=self.rules.market.values, rules=self.rules.rules,
                        now=now)
        return leg if leg is not None else Blocked("the guard holds no stop")

    def _children_inverted(self, rule: CompiledRule, entry: OrderIntent) -> str | None:
        """A bracket armed by this order's fill whose take-profit and stop-loss would be on
        the wrong sides of that fill: the entry is refused before it is sent (a position
        with an exit that can never be placed is worse than no position)."""
        price = entry.price
        if price is None:
            ticker = self.rules.market.ticker(entry.symbol)
            if ticker is not None:
                price = (ticker.best_ask if entry.side == "buy" else ticker.best_bid) or (
                    ticker.price)
        if price is None or entry.size is None:
            return None
        fill = Fill(price, entry.size)
        for child in self.rules.children.get(rule.identity, ()):
            held = child.protection
            if held is not None and held.guard and held.stop is not None and (
                    child.after is not None and child.after[1] == "filled"):
                # A guard's stop against the entry's own price: an exit that would stop
                # out the moment the entry fills.
                sl = value_of(held.stop, self.rules.market.values, fill)
                why = None if sl is None else _inverted(
                    "sell" if entry.side == "buy" else "buy", price, sl)
                if why is not None:
                    return (f"its guard {child.name or child.identity[:12]} is on the wrong "
                            f"side of the entry's price: "
                            + why.replace("take-profit", "entry's price"))
            spec = child.order
            if child.after is None or child.after[1] != "filled" or spec is None or (
                    spec.stop_loss is None or spec.price is None):
                continue
            tp = value_of(spec.price, self.rules.market.values, fill)
            sl = value_of(spec.stop_loss, self.rules.market.values, fill)
            if tp is None or sl is None:
                continue
            why = _inverted(spec.side, tp, sl)
            if why is not None:
                return f"its bracket {child.name or child.identity[:12]} is inverted: {why}"
        return None


def _inverted(side: str, take_profit: Decimal | None, stop: Decimal) -> str | None:
    if take_profit is None:
        return None
    sell = side == "sell"
    if stop >= take_profit if sell else stop <= take_profit:
        return (f"the stop-loss {stop} is not on the losing side of the take-profit "
                f"{take_profit}")
    return None

