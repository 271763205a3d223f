"""`evaluate(rules, market, states, now) -> decisions`: the pure core of the watcher.

No IO, no clock: `now` and the market snapshot are inputs, new rule states and decisions are
outputs, everything is immutable. The watcher records each decision (intent first) before it
acts on it.

Rule lifecycle (the rule transition table, `RULE_TRANSITIONS`):

    waiting  -> armed      an `after` rule received its parent's event (`arm`)
    armed    -> done       fired, and no firing is left (`once`, or `max N` reached)
    armed    -> cooling    fired, and `repeat every D` will re-arm it
    armed    -> waiting    an `after` rule fired and has no parent event left
    cooling  -> armed      D has passed since the firing and the condition was false since;
                           for a schedule (`every ...`), its next slot has come
    any live -> expired    `expires in D` (from loading) or `expires at T` has passed

    done     -> blocked    the firing's order was refused by the exchange
    done|cooling|waiting -> armed   `retry_firing`: the firing's order was proven never
                           placed, so the same firing is decided again on fresh data
    blocked  -> armed|waiting   `unblock`: a person says the cause is fixed

`frozen`, `blocked` and `disarmed` are set by the watcher (an order of unknown outcome, a
refused order or a risk limit, a removed rule); a rule in them never fires.

Semantics (the brief's, exactly): an unknown condition never fires; a level condition fires
once and, with `repeat`, re-arms only once it was false again; `crosses` compares two fresh
observations, and an unknown observation (stale data, a restart) leaves only a baseline;
`COND for D` fires when COND was true without a break for D (an unknown or false value
restarts it); `during` gates firing to its window.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import NamedTuple

from rules_engine.compiler import CompiledRule
from rules_engine.compiler import model as M
from rules_engine.engine._values import (
    Fill,
    Market,
    epoch_seconds,
    leaves,
    order_parts,
    signal_atoms,
    truth,
    value,
)

__all__ = [
    "RULE_TRANSITIONS",
    "Arm",
    "Decision",
    "IllegalTransition",
    "RuleState",
    "arm",
    "carry_over",
    "evaluate",
    "in_window",
    "initial_state",
    "next_due",
    "next_slot",
    "retry_firing",
    "step",
    "unblock",
]

LIVE = frozenset({"waiting", "armed", "cooling"})
RULE_TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("waiting", "armed"),
        ("armed", "done"),
        ("armed", "cooling"),
        ("armed", "waiting"),
        ("cooling", "armed"),
        *((state, "expired") for state in LIVE),
        *((state, "frozen") for state in LIVE),
        *((state, "blocked") for state in LIVE),
        *((state, "disarmed") for state in (*LIVE, "frozen", "blocked", "done")),
        ("frozen", "armed"),
        ("frozen", "cooling"),
        ("frozen", "waiting"),
        ("frozen", "done"),
        ("done", "blocked"),
        ("blocked", "armed"),
        ("blocked", "waiting"),
        ("done", "armed"),
        ("cooling", "armed"),
        ("waiting", "armed"),
    }
)


class IllegalTransition(RuntimeError):
    """A state change the transition table does not allow: a bug that stops the rule."""


def _move(state: RuleState, to: str) -> RuleState:
    if state.status != to and (state.status, to) not in RULE_TRANSITIONS:
        raise IllegalTransition(f"{state.status.upper()} -> {to.upper()}")
    return state._replace(status=to)


class Arm(NamedTuple):
    """A parent's event that arms one firing of an `after` rule."""

    parent_firing: int
    fill: Fill | None


class RuleState(NamedTuple):
    status: str
    firings: int
    loaded_at: datetime
    true_since: datetime | None  # `for D`: when the condition became true without a break
    seen_false: bool  # the condition was false since the last firing (re-arming needs it)
    rearm_at: datetime | None  # `repeat every D`: not before this
    baselines: tuple[tuple[Decimal, Decimal] | None, ...]  # last fresh sides of each crosses
    arms: tuple[Arm, ...]  # pending parent events of an `after` rule
    # `signal` atoms: the arrival (epoch seconds) of the newest signal the rule fired on; a
    # signal that arrived at or before it is spent (the rule fires once per signal)
    signal_mark: Decimal | None = None
    # Firing `retrying` was proven never placed and is decided again (same number): its
    # first commit already made what goes with the firing itself (`after R fired` arms).
    retrying: int | None = None


class Decision(NamedTuple):
    """What the watcher must record and do. `kind` is fire, rearm or expire."""

    kind: str
    rule: str
    firing: int
    at: datetime
    inputs: tuple[tuple[str, str], ...]  # the fresh values that made the decision
    arm: Arm | None
    again: bool = False  # a firing proven never placed, decided again (`RuleState.retrying`)


def initial_state(rule: CompiledRule, now: datetime) -> RuleState:
    crosses = len(rule.crosses)
    if rule.schedule is not None:
        # `every D` fires at once (its first slot is the moment it is loaded); `every day at
        # T` waits, cooling, for its first slot.
        first = next_slot(rule.schedule, now, now) if rule.schedule.seconds is None else now
        return RuleState(
            status="armed" if first == now else "cooling",
            firings=0,
            loaded_at=now,
            true_since=None,
            seen_false=True,
            rearm_at=first,
            baselines=(),
            arms=(),
        )
    return RuleState(
        status="waiting" if rule.after is not None else "armed",
        firings=0,
        loaded_at=now,
        true_since=None,
        seen_false=True,
        rearm_at=None,
        baselines=(None,) * crosses,
        arms=(),
    )


def arm(state: RuleState, event: Arm) -> RuleState:
    """Queue a parent's event on an `after` rule (child firing k goes with parent firing k)."""
    if state.status not in LIVE and state.status != "frozen":
        return state  # done, expired, blocked or disarmed: the event is recorded, not queued
    if state.status == "waiting":
        state = _move(state, "armed")
    return state._replace(arms=(*state.arms, event))


def carry_over(rule: CompiledRule, state: RuleState, now: datetime) -> RuleState:
    """A rule's state under a new version of the rule (an edit, at reload or restart).

    The lifecycle carries over, so an edit never makes a rule fire again by itself: a rule
    that is done stays done (give it a new name to run it again), a cooling one keeps its
    cooldown, and the firing count always carries over (clientOids never repeat). A rule that
    was waiting, armed, blocked or disarmed starts as a new one would (an edit is how a
    blocked rule is fixed), keeping the parent events it was armed with if it still has
    `after`. What the evaluator observed (crosses baselines, `for` runs) starts over."""
    fresh = initial_state(rule, now)._replace(firings=state.firings, signal_mark=state.signal_mark)
    if state.status in ("blocked", "disarmed"):
        # Its last firing sent nothing: the fixed rule fires again (a new firing number).
        if rule.after is not None and state.arms:
            return fresh._replace(status="armed", arms=state.arms)
        return fresh
    if rule.max_firings is not None and state.firings >= rule.max_firings:
        return fresh._replace(status="done")
    if state.status in ("done", "expired"):
        return fresh._replace(status=state.status)
    if rule.schedule is not None and state.status in ("cooling", "armed"):
        # A schedule keeps its slot: an edit never fires it before its time.
        return fresh._replace(status=state.status, rearm_at=state.rearm_at)
    if state.status == "cooling" and rule.repeat_seconds is not None:
        return fresh._replace(status="cooling", rearm_at=state.rearm_at,
                              seen_false=state.seen_false)
    if rule.after is not None and state.arms:
        return fresh._replace(status="armed", arms=state.arms)
    return fresh


def unblock(rule: CompiledRule, state: RuleState, now: datetime) -> RuleState:
    """`rules-engine unblock`: a person says what blocked the rule is fixed (a deposit, a
    limit raised) without editing it. It starts again as the edit that fixed it would make
    it (`carry_over`): the firing count kept, so its next firing has a new clientOid."""
    if state.status != "blocked":
        raise IllegalTransition(f"{state.status.upper()} -> UNBLOCKED: only a blocked rule")
    fresh = carry_over(rule, state, now)
    _move(state, fresh.status)  # blocked -> armed|waiting, as the table says
    return fresh


def retry_firing(state: RuleState, number: int, pending: Arm | None) -> RuleState:
    """Firing `number` was proven never placed: decide it again (same number, so the same
    clientOid) once the condition holds on fresh data, with its parent event back in place."""
    if state.firings != number:
        raise IllegalTransition(f"retry of firing {number}, but the rule is at {state.firings}")
    arms = (pending, *state.arms) if pending is not None else state.arms
    return _move(state, "armed")._replace(
        firings=number - 1, rearm_at=None, seen_false=True, true_since=None, arms=arms,
        retrying=number,
    )


@functools.cache
def _zone(name: str) -> tzinfo:
    return UTC if name == "UTC" else zoneinfo.ZoneInfo(name)


def next_slot(schedule: M.Schedule, slot: datetime, now: datetime) -> datetime:
    """The first slot of `schedule` after `now`: for `every D`, `slot` plus a whole number of
    D (the cadence never drifts, and slots missed while the watcher was down are not made
    up); for `every ... at HH:MM ZONE`, the next such local time on an allowed day. A local
    time a daylight-saving change skips is taken with the offset before the change (02:30 on
    the spring-forward night in Europe/Berlin is 03:30 CEST); one it repeats, the first."""
    if schedule.seconds is not None:
        every = timedelta(seconds=schedule.seconds)
        return slot + every * ((now - slot) // every + 1)
    assert schedule.minute is not None
    zone = _zone(schedule.zone)
    day = now.astimezone(zone).date()
    at = time(schedule.minute // 60, schedule.minute % 60)
    for offset in range(9):
        local = datetime.combine(day + timedelta(days=offset), at, tzinfo=zone)
        moment = local.astimezone(UTC)
        if moment > now and (schedule.days is None or local.isoweekday() in schedule.days):
            return moment
    raise ValueError(f"{schedule!r} has no allowed day")  # a compiled schedule always has one


def in_window(window: M.Window, now: datetime) -> bool:
    if window.zone != "UTC":
        now = now.astimezone(_zone(window.zone))
    minute = now.hour * 60 + now.minute
    if window.days is not None and now.isoweekday() not in window.days:
        return False
    if window.start_minute <= window.end_minute:
        return window.start_minute <= minute <= window.end_minute
    return minute >= window.start_minute or minute <= window.end_minute


def _expired(rule: CompiledRule, state: RuleState, now: datetime) -> bool:
    if rule.expires_at is not None and now >= rule.expires_at:
        return True
    return rule.expires_in_seconds is not None and now >= state.loaded_at + timedelta(
        seconds=rule.expires_in_seconds
    )


def _cross_verdicts(
    rule: CompiledRule, state: RuleState, market: Market
) -> tuple[dict[int, bool | None], tuple[tuple[Decimal, Decimal] | None, ...]]:
    if not rule.crosses:
        return {}, state.baselines
    verdicts: dict[int, bool | None] = {}
    baselines: list[tuple[Decimal, Decimal] | None] = []
    for index, atom in enumerate(rule.crosses):
        left, right = value(atom.left, market), value(atom.right, market)
        previous = state.baselines[index] if index < len(state.baselines) else None
        if left is None or right is None:
            verdicts[index] = None  # stale: the next fresh observation is only a baseline
            baselines.append(None)
            continue
        if previous is None:
            verdicts[index] = None  # one observation is a baseline, not an edge
        elif atom.direction == "above":
            verdicts[index] = previous[0] <= previous[1] and left > right
        else:
            verdicts[index] = previous[0] >= previous[1] and left < right
        baselines.append((left, right))
    return verdicts, tuple(baselines)


# Each rule's `signal` atoms: computed once per rule.
_SIGNALS: dict[str, tuple[CompiledRule, tuple[M.Signaled, ...]]] = {}


def _signal_atoms(rule: CompiledRule) -> tuple[M.Signaled, ...]:
    cached = _SIGNALS.get(rule.identity)
    if cached is not None and cached[0] is rule:
        return cached[1]
    atoms = tuple(signal_atoms(rule.condition))
    _SIGNALS[rule.identity] = (rule, atoms)
    return atoms


def _signal_verdicts(
    atoms: tuple[M.Signaled, ...], state: RuleState, market: Market, now: datetime
) -> dict[M.Signaled, bool]:
    """Each `signal` atom: true when its signal arrived within the window and after the
    newest signal the rule already fired on. Never unknown (a signal never seen is false)."""
    at_now = epoch_seconds(now)
    mark = state.signal_mark
    verdicts: dict[M.Signaled, bool] = {}
    for atom in atoms:
        arrived = market.get(atom.signal)
        verdicts[atom] = (
            arrived is not None
            and (mark is None or arrived > mark)
            and at_now - arrived <= atom.window_seconds
        )
    return verdicts


def _spent(atoms: tuple[M.Signaled, ...], state: RuleState, market: Market) -> Decimal | None:
    """The new `signal_mark` of a firing: the newest arrival among the signals it reads."""
    arrivals = [a for a in (market.get(atom.signal) for atom in atoms) if a is not None]
    if state.signal_mark is not None:
        arrivals.append(state.signal_mark)
    return max(arrivals) if arrivals else None


def far_side(order: M.OrderSpec) -> M.Field | None:
    """The price a market order by size takes (the ask for a buy, the bid for a sell): the
    order is valued on it, so it waits until that price is fresh, as an order priced on
    unknown data does. A market order by funds (a buy of a share of the quote) names its
    value and needs none."""
    if order.order_type != "market":
        return None
    by_funds = order.size.kind == "funds" or (order.size.kind == "share" and order.side == "buy")
    if by_funds:
        return None
    return M.Field(order.symbol, "ask" if order.side == "buy" else "bid")


def _order_inputs_fresh(rule: CompiledRule, market: Market, fill: Fill | None) -> bool:
    order = rule.order
    if order is None:
        return True
    if order.order_type == "limit" and order.price is None:
        side = M.Field(order.symbol, "ask" if order.side == "sell" else "bid")
        if side not in market:
            return False
    far = far_side(order)
    if far is not None and far not in market:
        return False
    return all(value(part, market, fill) is not None for part in order_parts(order))


# What each rule reads, with labels: computed once per rule (a pure function of it).
_READS: dict[str, tuple[CompiledRule, tuple[tuple[object, str], ...]]] = {}


def _reads(rule: CompiledRule) -> tuple[tuple[object, str], ...]:
    cached = _READS.get(rule.identity)
    if cached is not None and cached[0] is rule:
        return cached[1]
    read: list[object] = leaves(rule.condition) if rule.condition is not None else []
    order = rule.order
    if order is not None:
        for part in order_parts(order):
            read.extend(x for x in leaves(part) if x not in read)
    labelled = tuple((leaf, M.label(leaf)) for leaf in read)
    _READS[rule.identity] = (rule, labelled)
    return labelled


def _inputs(rule: CompiledRule, market: Market) -> tuple[tuple[str, str], ...]:
    return tuple((name, str(market[leaf])) for leaf, name in _reads(rule) if leaf in market)


def step(
    rule: CompiledRule, state: RuleState, market: Market, now: datetime
) -> tuple[RuleState, Decision | None]:
    """One rule, one moment: its next state, and the decision taken (if any)."""
    if state.status not in LIVE:
        return state, None
    if _expired(rule, state, now):
        return _move(state, "expired"), Decision(
            "expire", rule.identity, state.firings, now, (), None
        )
    if rule.schedule is not None:
        return _step_schedule(rule, state, market, now)
    verdicts, baselines = _cross_verdicts(rule, state, market)
    pending = state.arms[0] if state.arms else None
    signals = _signal_atoms(rule)
    if rule.condition is None:
        met: bool | None = pending is not None
    else:
        signaled = _signal_verdicts(signals, state, market, now) if signals else None
        met = truth(rule.condition, market, verdicts, pending.fill if pending else None,
                    signaled)
    if met is True:
        true_since = state.true_since or now
        sustained = now - true_since >= timedelta(seconds=rule.for_seconds)
    else:
        true_since, sustained = None, False  # false or unknown restarts `for D`
    state = state._replace(
        baselines=baselines, true_since=true_since, seen_false=state.seen_false or met is False
    )
    decision: Decision | None = None
    if state.status == "cooling":
        if state.rearm_at is None or now < state.rearm_at or not state.seen_false:
            return state, None
        state = _move(state, "armed")._replace(rearm_at=None)
        decision = Decision("rearm", rule.identity, state.firings, now, (), None)
    if state.status != "armed" or not sustained:
        return state, decision
    if rule.window is not None and not in_window(rule.window, now):
        return state, decision
    if not _order_inputs_fresh(rule, market, pending.fill if pending else None):
        return state, decision  # an order priced on unknown data is an unknown: never fires
    firing = state.firings + 1
    fired = Decision("fire", rule.identity, firing, now, _inputs(rule, market), pending,
                     state.retrying == firing)
    state = state._replace(firings=firing, true_since=None, seen_false=False, retrying=None)
    if signals:
        state = state._replace(signal_mark=_spent(signals, state, market))
    if rule.after is not None:
        # Each parent event arms one firing; `repeat ... max N` caps the total.
        state = state._replace(arms=state.arms[1:])
        capped = rule.repeat_seconds is not None and rule.max_firings is not None
        if capped and rule.max_firings is not None and firing >= rule.max_firings:
            return _move(state, "done"), fired
        return (state if state.arms else _move(state, "waiting")), fired
    if rule.max_firings is not None and firing >= rule.max_firings:
        return _move(state, "done"), fired
    if rule.repeat_seconds is not None:
        rearm = now + timedelta(seconds=rule.repeat_seconds)
        return _move(state, "cooling")._replace(rearm_at=rearm), fired
    return _move(state, "done"), fired


def _step_schedule(
    rule: CompiledRule, state: RuleState, market: Market, now: datetime
) -> tuple[RuleState, Decision | None]:
    """A schedule: cooling until its slot (`rearm_at`), then armed until it can fire (inside
    its `during` window, with what its order reads fresh), then cooling until the next slot
    after the firing, or done after `max N` firings. While armed, `rearm_at` keeps the slot
    that came due, from which the cadence of `every D` continues."""
    decision: Decision | None = None
    if state.status == "cooling":
        if state.rearm_at is None or now < state.rearm_at:
            return state, None
        state = _move(state, "armed")
        decision = Decision("rearm", rule.identity, state.firings, now, (), None)
    if state.status != "armed":
        return state, decision
    if rule.window is not None and not in_window(rule.window, now):
        return state, decision
    if not _order_inputs_fresh(rule, market, None):
        return state, decision
    firing = state.firings + 1
    fired = Decision("fire", rule.identity, firing, now, _inputs(rule, market), None,
                     state.retrying == firing)
    state = state._replace(firings=firing, retrying=None)
    if rule.max_firings is not None and firing >= rule.max_firings:
        return _move(state, "done")._replace(rearm_at=None), fired
    assert rule.schedule is not None
    following = next_slot(rule.schedule, state.rearm_at or now, now)
    return _move(state, "cooling")._replace(rearm_at=following), fired


def _window_opens(window: M.Window, now: datetime) -> datetime:
    """The next start of `window` after `now` (its first minute, on an allowed day, in its
    time zone)."""
    opening = M.Schedule(None, window.start_minute, window.days, window.zone)
    return next_slot(opening, now, now)


def next_due(rule: CompiledRule, state: RuleState, now: datetime) -> datetime | None:
    """The next moment at which stepping `rule` may decide something although no value it
    reads has changed: its expiry, the end of a `repeat` cooldown, a `for D` run reaching D,
    the opening of its `during` window. None: only a market change (or a parent's event) can.

    Stepping a rule at its due time, and on every change the index selects it for, decides
    exactly what stepping it on every tick decides (`tests/test_engine_index.py`)."""
    if state.status not in LIVE:
        return None
    due: list[datetime] = []
    if rule.expires_at is not None:
        due.append(rule.expires_at)
    if rule.expires_in_seconds is not None:
        due.append(state.loaded_at + timedelta(seconds=rule.expires_in_seconds))
    if state.status == "cooling" and state.rearm_at is not None:
        due.append(state.rearm_at)
    scheduled = rule.schedule is not None and state.status == "armed"
    if scheduled and state.rearm_at is not None and (
        rule.window is None or in_window(rule.window, now)
    ):
        due.append(state.rearm_at)  # its slot came due: step it until it can fire
    if rule.for_seconds and state.true_since is not None:
        due.append(state.true_since + timedelta(seconds=rule.for_seconds))
    if rule.window is not None and not in_window(rule.window, now):
        due.append(_window_opens(rule.window, now))
    return min(due) if due else None


def evaluate(
    rules: Iterable[CompiledRule],
    market: Market,
    states: Mapping[str, RuleState],
    now: datetime,
) -> tuple[list[Decision], dict[str, RuleState]]:
    """Step every given rule; returns the decisions and the states that changed."""
    decisions: list[Decision] = []
    changed: dict[str, RuleState] = {}
    for rule in rules:
        before = states[rule.identity]
        after, decision = step(rule, before, market, now)
        if after != before:
            changed[rule.identity] = after
        if decision is not None:
            decisions.append(decision)
    return decisions, changed
