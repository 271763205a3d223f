"""Sliced orders at run time: a scaled order's or a TWAP's slices, each a firing of its own.

    rule firing N -> plan (engine/_slices.py) -> one commit: the firing, its plan
                     (`slices.planned`) and the rule's state
                  -> each slice k, when due: resolve_order + risk limits -> its own firing
                     `R/slices-N` #k committed (intent first), then sent under
                     client_oid(engine, "R/slices-N", k)

Exactly once: a slice's clientOid is a pure function of the rule firing and k; a slice is
recorded before it is sent, and a recorded slice is never decided again (its order, if any,
is recovered like every other, by its clientOid). A restart rebuilds every plan not ended
from the store (`slices.planned` without `slices.ended`) and goes on with the slices not
recorded yet: a scaled order's at once, a TWAP's in their intervals (a slice whose interval
passed while no watcher ran is recorded as skipped, never sent late in a bunch). A slice that
cannot be sent when due (data not fresh, a risk limit, trading stopped) is recorded as
blocked with the reason, and the plan goes on. A TWAP slice proven not placed after its
interval passed is not sent again. A plan stops (`stop`: its slices not sent never are) when
the exchange refuses one of its slices (the watcher's refusal hook, which blocks the rule) and
when a reload edits or removes its rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rules_engine.compiler import CompiledRule
from rules_engine.engine import Blocked, Fill, OrderIntent, resolve_order
from rules_engine.engine._risk import check_all
from rules_engine.engine._slices import Slice, group_of, plan_slices, slice_order, twap_step
from rules_engine.runtime._context import Context
from rules_engine.runtime._rules import RuleSet
from rules_engine.store import client_oid

if TYPE_CHECKING:
    from rules_engine.runtime._firing import Firing
    from rules_engine.runtime._orders import Tracked

__all__ = ["EDITED", "Plan", "Slices"]

EDITED = "its rule was removed or edited: the slices not sent yet are not sent"


@dataclass
class Plan:
    """One rule firing's slices, and which of them are recorded already."""

    rule: CompiledRule
    number: int  # the rule's firing
    version: int
    slices: tuple[Slice, ...]
    done: set[int] = field(default_factory=set)  # slices recorded (sent or blocked)
    again: set[int] = field(default_factory=set)  # slices proven not placed: sent again
    ended: bool = False  # `slices.ended` is in the store

    @property
    def group(self) -> str:
        return group_of(self.rule.identity, self.number)

    @property
    def kind(self) -> str:
        assert self.rule.order is not None and self.rule.order.slicing is not None
        return self.rule.order.slicing.kind

    @property
    def every(self) -> int:
        assert self.rule.order is not None and self.rule.order.slicing is not None
        return self.rule.order.slicing.every_seconds or 0

    def payload(self) -> dict[str, Any]:
        return {"group": self.group, "firing": self.number, "version": self.version,
                "kind": self.kind, "every_s": self.every,
                "slices": [piece.dump() for piece in self.slices]}


class Slices:
    def __init__(self, ctx: Context, rules: RuleSet, firing: Firing) -> None:
        self.ctx = ctx
        self.rules = rules
        self.firing = firing
        self.plans: dict[str, Plan] = {}  # by group: the plans with slices to record

    # ------------------------------------------------------------ a rule firing

    def plan(self, rule: CompiledRule, number: int, fill: Fill | None,
             now: datetime) -> Plan | Blocked:
        """The slices of a firing of `rule`, or why none can be placed. A scaled order's
        slices go out together: they are resolved and checked against the risk limits
        together now (all or none)."""
        spec = rule.order
        assert spec is not None
        made = plan_slices(spec, self.rules.market.values, self.ctx.symbols[spec.symbol], now,
                           fill)
        if isinstance(made, Blocked):
            return made
        if not self.ctx.trading:
            return Blocked(f"trading is stopped: {self.ctx.stop_reason}")
        plan = Plan(rule, number, self.rules.versions[rule.identity], made)
        if plan.kind == "scaled":
            orders = []
            for piece in made:
                resolved = self._resolve(plan, piece)
                if isinstance(resolved, Blocked):
                    return Blocked(f"slice {piece.number}: {resolved.reason}")
                assert resolved.price is not None and resolved.size is not None
                orders.append((resolved, resolved.price * resolved.size))
            firing = self.firing
            limits = firing.limits.tighten(firing.file_limits[rule.path]) if (
                rule.path in firing.file_limits) else firing.limits
            reason = check_all(orders, rule.identity, limits=limits,
                               exposure=firing.orders.exposure, now=now)
            if reason is not None:
                return Blocked(reason)
        return plan

    def start(self, plan: Plan, now: datetime) -> None:
        """The firing is committed: its slices that are due go out now."""
        self.plans[plan.group] = plan
        self.ctx.emit("slices.planned", {"rule": plan.rule.identity, "firing": plan.number,
                                         "slices": len(plan.slices), "kind": plan.kind})
        self._run(plan, now)

    # ------------------------------------------------------------ the clock

    def next_due(self) -> datetime | None:
        """The first TWAP slice not recorded yet: when the clock job must run next (a clock
        that is moved, the backtest's, stops there)."""
        times = [piece.due for plan in self.plans.values() if plan.kind == "twap"
                 for piece in plan.slices if piece.number not in plan.done]
        return min(times) if times else None

    def due(self, now: datetime) -> None:
        """Every plan's slices whose time came (the clock job)."""
        if self.ctx.halted is not None or self.ctx.failed:
            return  # the kill switch: a TWAP's slices wait, and are skipped once too late
        for plan in list(self.plans.values()):
            self._run(plan, now)

    def _run(self, plan: Plan, now: datetime) -> None:
        identity = plan.rule.identity
        if self.rules.rules.get(identity) is None or (
                self.rules.versions.get(identity) != plan.version):
            # Edited or removed by a reload: the slices not recorded are never sent.
            ended = self.stop(plan.group, EDITED)
            if ended is not None:
                self.ctx.event(ended[0], ended[2], identity=ended[1])
            return
        for number in sorted(plan.again):
            plan.again.discard(number)
            piece = plan.slices[number - 1]
            if plan.kind == "twap" and twap_step(piece.due, plan.every, now) == "skip":
                # Proven not placed only once its interval passed: sending it now would bunch
                # it with the slice due now, so it stays not placed.
                self.ctx.event("slice.not_resent", {"slice": number, "why": (
                    f"its interval ({piece.due:%H:%M:%S} + {plan.every} s) passed before it "
                    "was proven not placed")}, identity=plan.group)
                continue
            self._send(plan, piece, now, again=True)
        for piece in plan.slices:
            if piece.number in plan.done:
                continue
            if plan.kind == "twap":
                step = twap_step(piece.due, plan.every, now)
                if step == "wait":
                    break
                if step == "skip":
                    self._record(plan, piece, now, None, Decimal(0), (
                        f"skipped: its interval ({piece.due:%H:%M:%S} + {plan.every} s) "
                        "passed before it could be sent (no watcher ran, or trading was "
                        "halted)"))
                    continue
            self._send(plan, piece, now)
            if self.ctx.failed:
                return
        if len(plan.done) == len(plan.slices) and not plan.again:
            self.plans.pop(plan.group, None)
            if not plan.ended:  # its last slice was one sent again
                plan.ended = True
                self.ctx.event("slices.ended", {"group": plan.group},
                               identity=plan.rule.identity)

    # ------------------------------------------------------------ one slice

    def _resolve(self, plan: Plan, piece: Slice) -> OrderIntent | Blocked:
        spec = plan.rule.order
        assert spec is not None
        return resolve_order(slice_order(spec, piece), self.rules.market.values,
                             self.ctx.symbols[spec.symbol], balances=self.ctx.balances)

    def _send(self, plan: Plan, piece: Slice, now: datetime, *, again: bool = False) -> None:
        rule = plan.rule
        resolved: OrderIntent | Blocked = self._resolve(plan, piece)
        value = Decimal(0)
        if isinstance(resolved, OrderIntent):
            limited = self.firing._limits(rule, resolved, now)
            if isinstance(limited, Blocked):  # the firings-per-minute one too: not deferred
                resolved = Blocked(limited.reason)
            else:
                resolved, value = limited
        if isinstance(resolved, OrderIntent) and not self.ctx.trading:
            resolved = Blocked(f"trading is stopped: {self.ctx.stop_reason}")
        if isinstance(resolved, Blocked) and again:
            # A slice proven not placed that cannot go out again stays not placed: it is
            # never sent on a guess, and the store's record says so.
            plan.done.add(piece.number)
            self.ctx.event("slice.not_resent", {"slice": piece.number,
                                                "why": resolved.reason}, identity=plan.group)
            return
        reason = resolved.reason if isinstance(resolved, Blocked) else None
        self._record(plan, piece, now, resolved if isinstance(resolved, OrderIntent) else None,
                     value, reason, again=again)

    def _record(self, plan: Plan, piece: Slice, now: datetime,  # noqa: PLR0917 - one slice's parts
                resolved: OrderIntent | None, value: Decimal, blocked: str | None, *,
                again: bool = False) -> None:
        """The slice's firing committed (blocked with `blocked`, or its order), then sent."""
        rule, group, number = plan.rule, plan.group, piece.number
        plan.done.add(number)
        inputs: dict[str, Any] = {
            "at": now.isoformat(),
            "slice": {"rule": rule.identity, "firing": plan.number, "number": number,
                      "of": len(plan.slices), "due": piece.due.isoformat()},
            "values": {},
        }
        last = len(plan.done) == len(plan.slices) and not plan.again and not again
        events: tuple[tuple[str, str, dict[str, Any]], ...] = (
            (("slices.ended", rule.identity, {"group": group}),) if last else ())
        plan.ended = plan.ended or last
        firing = self.firing
        if resolved is None:
            if firing._commit(group, number, inputs, None, None, now, blocked=blocked,
                              events=events):
                self.ctx.emit("slice.skipped", {"rule": group, "slice": number,
                                                "reason": blocked})
            return
        oid = client_oid(self.ctx.engine_id, group, number)
        firing._place(rule, number, oid, resolved, value, None, None, inputs, now,
                      again=again, also=(), events=events, group=group)

    # ------------------------------------------------------------ hooks and restarts

    def stop(self, group: str, why: str) -> tuple[str, str, dict[str, Any]] | None:
        """End the plan running under `group` before its last slice: its slices not sent
        (not recorded yet, or proven not placed and waiting to go out again) never are. The
        `slices.ended` event to commit, naming them and why (None: no such plan runs)."""
        plan = self.plans.pop(group, None)
        if plan is None or plan.ended:
            return None
        plan.ended = True
        not_sent = sorted({p.number for p in plan.slices if p.number not in plan.done}
                          | plan.again)
        plan.again.clear()
        return ("slices.ended", plan.rule.identity,
                {"group": group, "why": why, "not_sent": not_sent})

    def retry(self, tracked: Tracked) -> bool:
        """A slice's order proven not placed: sent again (same clientOid) at the next clock
        tick. False: not a slice of a plan this watcher carries."""
        plan = self.plans.get(tracked.identity or "")
        if plan is None or tracked.number is None:
            return False
        plan.again.add(tracked.number)
        return True

    def recover(self, now: datetime) -> None:
        """The plans not ended, from the store: the slices recorded are done (their orders
        are recovered by clientOid like any other); the rest go out from the next tick on. A
        plan whose rule was removed or edited since is ended: its slices not recorded yet are
        never sent."""
        store = self.ctx.store
        ended = {e.payload.get("group") for e in store.events("slices.ended")}
        for event in store.events("slices.planned"):
            data = event.payload
            group = data.get("group")
            if group in ended or event.identity is None:
                continue
            rule = self.rules.rules.get(event.identity)
            slices = tuple(Slice.load(item) for item in data.get("slices", ()))
            if rule is None or rule.order is None or rule.order.slicing is None or (
                    self.rules.versions.get(rule.identity) != data.get("version")):
                done = {piece.number for piece in slices
                        if store.firing(str(group), piece.number) is not None}
                self.ctx.event("slices.ended", {"group": group, "why": EDITED, "not_sent": [
                    piece.number for piece in slices if piece.number not in done]},
                    identity=event.identity)
                continue
            plan = Plan(rule, int(data["firing"]), int(data["version"]), slices)
            for piece in slices:
                firing = store.firing(plan.group, piece.number)
                if firing is not None:
                    plan.done.add(piece.number)
                    if firing.status in ("not_sent", "not_placed"):
                        plan.again.add(piece.number)
            self.plans[plan.group] = plan
            self.ctx.event("slices.resumed", {"group": plan.group,
                                              "recorded": len(plan.done),
                                              "of": len(slices)}, identity=rule.identity)
