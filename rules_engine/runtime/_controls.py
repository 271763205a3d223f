"""A person's requests, read from the store: the kill switch (`halt`, `resume`), `resolve`,
`unblock`; and hot reload of edited rule files.

`halt` is acknowledged with the truth: the cancels it asked for, and the orders still open
on the exchange; the acknowledgement is written again each time that set shrinks, so
`rules-engine halt` can wait for every cancel to be confirmed and name what is not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from rules_engine.engine import unblock
from rules_engine.engine._slices import rule_of
from rules_engine.runtime._actions import Actions
from rules_engine.runtime._context import Context
from rules_engine.runtime._feeds import Feeds
from rules_engine.runtime._firing import Firing
from rules_engine.runtime._held import HeldOrders
from rules_engine.runtime._orders import OrderManager, Tracked
from rules_engine.runtime._reload import Reloaded, RuleFiles
from rules_engine.runtime._rules import RuleSet, stored_state
from rules_engine.store import StateRow

__all__ = ["Controls"]


class Controls:
    def __init__(self, ctx: Context, rules: RuleSet, orders: OrderManager, held: HeldOrders,  # noqa: PLR0917 - the parts it is wired to
                 firing: Firing, actions: Actions, feeds: Feeds,
                 sources: dict[str, str], reloader: RuleFiles | None,
                 load_candles: Callable[[], Awaitable[None]]) -> None:
        self.ctx = ctx
        self.rules = rules
        self.orders = orders
        self.held = held
        self.firing = firing
        self.actions = actions
        self.feeds = feeds
        self.sources = sources
        self.reloader = reloader
        self.load_candles = load_candles
        self.halt_asked: list[str] = []  # the cancels the current halt asked for
        self.halt_open: list[str] | None = None  # what its acknowledgement last said

    async def control_job(self) -> None:
        store = self.ctx.store
        wanted = store.halt()
        halted = self.ctx.halted
        if wanted is not None and (halted is None or wanted.get("request") != halted.get(
                "request")):
            self.halt_now(wanted)
        elif wanted is None and halted is not None:
            self.resume_now()
        for oid, placed in store.resolutions().items():
            self.resolve_by_hand(oid, placed)
        for identity in store.unblocks():
            self.unblock_by_hand(identity)
        self.halt_progress()

    # ------------------------------------------------------------ the kill switch

    def halt_now(self, wanted: dict[str, Any]) -> None:
        """Stop firing; cancel every open order but protective exits (all with `--all`):
        the order table decides which (an order in flight is cancelled once the exchange
        shows it). Acknowledged at once with the cancels asked, then again as they are
        confirmed."""
        self.ctx.halted = wanted
        everything = bool(wanted.get("all"))
        total = len(self.orders.tracked)
        self.halt_asked = self.orders.halt(everything)
        self.ctx.event("halted", {"all": everything, "cancelling": len(self.halt_asked),
                                  "kept": total - len(self.halt_asked)})
        self.halt_open = None
        self.halt_progress()

    def halt_progress(self) -> None:
        """Write the halt's acknowledgement when what it waits for changed."""
        halted = self.ctx.halted
        if halted is None:
            return
        still = self.orders.waiting(self.halt_asked)
        if still == self.halt_open:
            return
        self.halt_open = still
        self.ctx.store.acknowledge_halt(str(halted.get("request")), self.ctx.now(), {
            "asked": len(self.halt_asked), "cancelled": len(self.halt_asked) - len(still),
            "open": still, "kept": len(self.orders.tracked) - len(still)})

    def resume_now(self) -> None:
        now = self.ctx.now()
        self.ctx.halted = None
        self.halt_asked = []
        # As after a restart: nobody watched while halted, so no `crosses` baseline and no
        # `for` run survive it; then every rule looks at the market as it is now.
        self.rules.restore_all(now)
        self.ctx.event("resumed", {})
        self.firing.evaluate(list(self.rules.rules.values()), now)

    # ------------------------------------------------------------ resolve, unblock

    def unblock_by_hand(self, identity: str) -> None:
        """`rules-engine unblock`: the rule starts again as an edit that fixed it would make
        it (`engine.unblock`), and looks at the market at once."""
        now = self.ctx.now()
        store = self.ctx.store
        rule, state = self.rules.rules.get(identity), self.rules.states.get(identity)
        if rule is None or state is None or state.status != "blocked":
            why = ("no such rule runs here" if rule is None or state is None
                   else f"the rule is {state.status}, not blocked")
            self.ctx.event("unblock.ignored", {"why": why}, identity=identity)
            store.unblock_done(identity)
            return
        self.rules.states[identity] = unblock(rule, state, now)
        was = self.rules.reasons.pop(identity, None)
        store.save_states([self.rules.row(identity)], now,
                          [("rule.unblocked", identity, {"was": was})])
        self.ctx.emit("rule.unblocked", {"rule": identity, "was": was})
        self.rules.schedule(identity, now)
        self.firing.evaluate([rule], now)
        store.unblock_done(identity)  # taken, and the rule has looked at the market

    def resolve_by_hand(self, oid: str, placed: bool) -> None:
        """`rules-engine resolve`: a person settles an order the exchange cannot prove."""
        if self.orders.resolve(oid, placed):
            self.ctx.event("resolved", {"placed": placed}, oid=oid)
        else:
            self.ctx.event("resolve.ignored", {"why": "not an order of unknown outcome"},
                           oid=oid)
        self.ctx.store.resolution_done(oid)

    # ------------------------------------------------------------ hot reload

    async def reload_job(self) -> None:
        if self.reloader is not None and self.reloader.changed():
            await self.apply_reload(self.reloader.reload())

    async def apply_reload(self, result: Reloaded) -> None:
        """Hot reload, rule by rule. Unchanged rules keep their state. A changed rule gets a
        new version and its state carries over; a new rule starts as at load; a removed rule
        is disarmed, its open orders kept (`on_removed_rule = "keep"`) or cancelled."""
        from rules_engine.engine import carry_over

        now = self.ctx.now()
        for path, report in result.rejected.items():
            self.ctx.event("reload.rejected", {"path": path, "diagnostics": report[:4000]})
        for path, why in result.unreadable.items():
            self.ctx.event("reload.unreadable", {"path": path, "error": why})
        old, new = self.rules.rules, {r.identity: r for r in result.rules}
        added = [i for i in new if i not in old]
        removed = [i for i in old if i not in new]
        changed = [i for i in new if i in old and new[i].fingerprint != old[i].fingerprint]
        if not (added or removed or changed):
            return
        self.sources.update(result.sources)
        loaded = self.ctx.store.load_rules(
            [(new[i].identity, new[i].fingerprint, new[i].canonical, new[i].path,
              self.sources.get(i)) for i in (*added, *changed)], now)
        self.rules.install(result.rules)
        rows: list[StateRow] = []
        events: list[tuple[str, str, dict[str, Any]]] = []
        for identity in (*added, *changed):
            version, stored = loaded[identity]
            rule = new[identity]
            previous = self.rules.states.get(identity)
            if previous is not None and identity in changed:
                state = carry_over(rule, previous, now)
                self.rules.reasons.pop(identity, None)  # a new version starts fresh
            else:
                state = stored_state(rule, version, stored, now)
            self.rules.versions[identity] = version
            self.rules.states[identity] = state
            rows.append(self.rules.row(identity))
            events.append(("rule.changed" if identity in changed else "rule.added", identity,
                           {"version": version}))
        cancel: list[Tracked] = []
        for identity in removed:
            current = self.rules.states.get(identity)
            if current is not None and current.status not in ("disarmed", "expired"):
                self.rules.states[identity] = current._replace(status="disarmed")
                rows.append(self.rules.row(identity))
            events.append(("rule.removed", identity, {"orders": self.ctx.config.on_removed_rule}))
            if self.ctx.config.on_removed_rule == "cancel":
                cancel += [t for t in self.orders.tracked.values()  # its slices' orders too
                           if t.identity is not None and rule_of(t.identity) == identity]
        self.ctx.store.save_states(rows, now, events)
        if cancel:
            self.actions.cancel(cancel, "its rule was removed")
        await self.load_candles()
        await self.feeds.resubscribe()
        for identity in self.rules.timed_ids:
            self.rules.schedule(identity, now)
        self.ctx.event("reloaded", {"added": added, "changed": changed, "removed": removed,
                                    "rejected": sorted(result.rejected)})
        self.firing.sync_balances()  # a new rule may read `balance(CUR)`, or a chain's values
        self.firing.chains.ensure(self.ctx.store, self.rules.rules)
        self.firing.evaluate([new[i] for i in (*added, *changed)], now)

