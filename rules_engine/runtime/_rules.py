"""The rules that run and their states: which rules, their index, their `after` children,
each rule's state (pure `RuleState` values moved by the engine), version and blocking
reason, and the timers of timed rules. The store holds each state; this holds the
current ones in memory and builds the rows the store writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from rules_engine.compiler import CompiledRule
from rules_engine.compiler import model as M
from rules_engine.engine import (
    Arm,
    Fill,
    RuleIndex,
    RuleState,
    Timers,
    arm,
    carry_over,
    dump_state,
    initial_state,
    load_state,
    restore,
)
from rules_engine.runtime._market import MarketState
from rules_engine.store import StateRow, Store

__all__ = ["Arms", "RuleSet", "stored_state"]

# `after` rules armed by one event: (child, its new state, the event's detail)
Arms = list[tuple[CompiledRule, RuleState, dict[str, Any]]]


class RuleSet:
    def __init__(self, rules: Iterable[CompiledRule], market: MarketState) -> None:
        self.market = market
        self.timers = Timers()
        self.states: dict[str, RuleState] = {}
        self.versions: dict[str, int] = {}
        self.reasons: dict[str, str] = {}
        self.install(rules)

    def install(self, rules: Iterable[CompiledRule]) -> None:
        """The rule set: which rules run, their index, their `after` children, the values
        they read (added to the market state: a value nobody reads any more costs nothing)."""
        self.rules: dict[str, CompiledRule] = {r.identity: r for r in rules}
        active = list(self.rules.values())
        self.index = RuleIndex(active)
        self.timed_ids = {rule.identity for rule in self.index.timed}
        self.market.add_leaves(self.index.leaves())
        # A trailing stop, a bracket's stop-loss and a guard follow their symbol's last price.
        self.market.add_leaves(
            M.Field(r.order.symbol, "last") for r in active
            if r.order is not None and (r.order.order_type == "trailing-stop"
                                        or r.order.stop_loss is not None))
        self.market.add_leaves(
            M.Field(r.symbol, "last") for r in active
            if r.protection is not None and r.protection.guard and r.symbol is not None)
        self.children: dict[str, list[CompiledRule]] = {}
        for rule in active:
            if rule.after is not None:
                self.children.setdefault(rule.after[0], []).append(rule)

    def load(self, store: Store, sources: Mapping[str, str], now: datetime) -> None:
        """Each rule's version and state from the store (new rules start fresh)."""
        loaded = store.load_rules(
            [(r.identity, r.fingerprint, r.canonical, r.path, sources.get(r.identity))
             for r in self.rules.values()],
            now,
        )
        rows: list[StateRow] = []
        events: list[tuple[str, str, dict[str, Any]]] = []
        for identity, rule in self.rules.items():
            version, stored = loaded[identity]
            self.versions[identity] = version
            if stored is not None and stored.version == version and stored.reason:
                self.reasons[identity] = stored.reason
            elif stored is not None and stored.version != version:
                events.append(("rule.new_version", identity, {"version": version}))
            self.states[identity] = stored_state(rule, version, stored, now)
            rows.append(self.row(identity))
        store.save_states(rows, now, events)

    def row(self, identity: str) -> StateRow:
        return self.row_of(identity, self.states[identity])

    def row_of(self, identity: str, state: RuleState) -> StateRow:
        return StateRow(identity, self.versions[identity], state.status, state.firings,
                        dump_state(state), self.reasons.get(identity))

    def schedule(self, identity: str, now: datetime) -> None:
        """A timed rule's state changed outside `step` (loaded, armed, released): when is it
        due next."""
        rule = self.rules.get(identity)
        if rule is not None and identity in self.timed_ids:
            self.timers.update(rule, self.states[identity], now)

    def block(self, identity: str, reason: str) -> None:
        """The rule stops firing until an edit or `unblock`: its order was refused."""
        state = self.states[identity]
        if state.status in ("done", "cooling", "armed", "waiting"):
            self.states[identity] = state._replace(status="blocked")
        self.reasons[identity] = reason

    def arms(self, parent: str, event: str, number: int, fill: Fill | None) -> Arms:
        """The `after PARENT EVENT` rules this event arms, with their new states (committed
        by the caller together with the event itself, then applied by `armed`)."""
        out: Arms = []
        for child in self.children.get(parent, ()):
            if child.after is None or child.after[1] != event:
                continue
            state = self.states[child.identity]
            new = arm(state, Arm(number, fill))
            if new != state:
                out.append((child, new, {"parent": parent, "event": event,
                                         "parent_firing": number}))
        return out

    def armed(self, arms: Arms, now: datetime) -> list[CompiledRule]:
        """Apply committed arms; the rules to evaluate now."""
        for child, state, _ in arms:
            self.states[child.identity] = state
            self.schedule(child.identity, now)
        return [child for child, _, _ in arms]

    def restore_all(self, now: datetime) -> None:
        """As after a restart: no `crosses` baseline and no `for` run survive a pause."""
        for identity, state in self.states.items():
            self.states[identity] = restore(state)
            self.schedule(identity, now)


def stored_state(rule: CompiledRule, version: int, stored: StateRow | None,
                 now: datetime) -> RuleState:
    """A rule's state from the store: the same version as after a restart (`restore`), a
    new version carried over (`carry_over`), or a rule never seen."""
    if stored is None:
        return initial_state(rule, now)
    if stored.version == version:
        return restore(load_state(stored.state))
    return carry_over(rule, load_state(stored.state), now)
