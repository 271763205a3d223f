"""The pure evaluator: the brief's semantics that protect money, tick by tick."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from rules_engine.compiler import CompiledRule, compile_sources
from rules_engine.compiler import model as M
from rules_engine.dsl import SourceFile
from rules_engine.engine import (
    Arm,
    Fill,
    IllegalTransition,
    RuleState,
    arm,
    evaluate,
    initial_state,
    step,
    truth,
)
from rules_engine.engine._evaluate import _move

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday
BID = M.Field("BTC-USDT", "bid")
ASK = M.Field("BTC-USDT", "ask")
LAST = M.Field("BTC-USDT", "last")


def rules(text: str) -> dict[str, CompiledRule]:
    program = compile_sources([SourceFile("t.rules", text)])
    assert program.errors == (), program.errors
    return {r.name or "one": r for r in program.rules}


def run(
    rule: CompiledRule,
    ticks: Iterable[tuple[timedelta, dict[object, Decimal]]],
    state: RuleState | None = None,
) -> tuple[list[int], RuleState]:
    """Feed ticks (offset from T0, fresh values); return the seconds at which it fired."""
    state = state or initial_state(rule, T0)
    fired: list[int] = []
    for offset, market in ticks:
        state, decision = step(rule, state, market, T0 + offset)
        if decision is not None and decision.kind == "fire":
            fired.append(int(offset.total_seconds()))
    return fired, state


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def test_a_level_rule_that_stays_true_fires_once() -> None:
    rule = rules("when BTC-USDT bid < 60000 place limit buy 0.01 at 59000\n")["one"]
    ticks = [(s(i), {BID: Decimal(59000 + i)}) for i in range(10)]
    fired, state = run(rule, ticks)
    assert fired == [0]
    assert state.status == "done" and state.firings == 1


def test_unknown_data_never_fires() -> None:
    rule = rules("when BTC-USDT bid < 60000 place limit buy 0.01 at 59000\n")["one"]
    fired, state = run(rule, [(s(i), {}) for i in range(5)])
    assert fired == [] and state.status == "armed"


@pytest.mark.parametrize(
    ("text", "market", "expected"),
    [
        ("BTC-USDT bid < 1 and BTC-USDT ask < 1", {ASK: Decimal(2)}, False),
        ("BTC-USDT bid < 1 and BTC-USDT ask < 3", {ASK: Decimal(2)}, None),
        ("BTC-USDT bid < 1 or BTC-USDT ask < 3", {ASK: Decimal(2)}, True),
        ("BTC-USDT bid < 1 or BTC-USDT ask < 1", {ASK: Decimal(2)}, None),
        ("not BTC-USDT bid < 1", {}, None),
        ("not BTC-USDT bid < 1", {BID: Decimal(2)}, True),
        (
            "BTC-USDT spread < 1%",
            {M.Field("BTC-USDT", "spread"): Decimal(1), M.Field("BTC-USDT", "mid"): Decimal(0)},
            None,
        ),
    ],
)
def test_three_valued_logic(
    text: str, market: dict[object, Decimal], expected: bool | None
) -> None:
    rule = rules(f"when {text} place market buy 10 USDT\n")["one"]
    assert rule.condition is not None
    assert truth(rule.condition, market) is expected


def test_crosses_needs_two_fresh_observations_and_stale_data_resets_the_baseline() -> None:
    rule = rules(
        "rule up on BTC-USDT:\n    when last crosses above 100\n    place market buy 10 USDT\n"
        "    repeat every 1s\n"
    )["up"]
    prices = [101, 99, 100, 101, 102, None, 99, None, 105, 99, 101]
    ticks = [(s(i * 10), {} if p is None else {LAST: Decimal(p)}) for i, p in enumerate(prices)]
    fired, _ = run(rule, ticks)
    # 101 first is only a baseline; 100 -> 101 crosses; after the stale gap 105 is a new
    # baseline (no edge across staleness); 99 -> 101 crosses again.
    assert fired == [30, 100]


def test_for_fires_after_the_condition_held_without_a_break() -> None:
    rule = rules(
        "rule hold on BTC-USDT:\n    when last > 3600 for 30s\n    place market sell 0.01\n"
    )["hold"]
    # The bid is there because a market sell by size waits for the price it takes.
    high = {LAST: Decimal(3700), BID: Decimal(3699)}
    low = {LAST: Decimal(3500), BID: Decimal(3499)}
    ticks = [
        (s(0), high),
        (s(20), high),
        (s(25), {BID: Decimal(3699)}),
        (s(26), high),
        (s(50), high),
        (s(55), low),
        (s(56), high),
        (s(86), high),
    ]
    fired, _ = run(rule, ticks)
    assert fired == [56 + 30]


def test_repeat_rearms_after_its_delay_only_once_the_condition_was_false() -> None:
    rule = rules(
        "rule r on BTC-USDT:\n    when bid < 100\n    place market buy 10 USDT\n"
        "    repeat every 1h max 3\n"
    )["r"]
    low, high = {BID: Decimal(90)}, {BID: Decimal(110)}
    ticks = [
        (s(0), low),  # fires (1)
        (s(1800), high),  # false again, but the hour has not passed
        (s(3600), low),  # re-armed (hour passed, was false) and fires (2)
        (s(7300), low),  # an hour later, but never false since: no re-arm
        (s(7400), high),
        (s(7500), low),  # false, then true: fires (3)
        (s(20000), high),
        (s(20001), low),  # max 3 reached: done
    ]
    fired, state = run(rule, ticks)
    assert fired == [0, 3600, 7500]
    assert state.status == "done"


def test_during_gates_firing_to_its_window_which_may_wrap_past_midnight() -> None:
    rule = rules(
        "rule night on BTC-USDT:\n    when bid < 100\n    place market buy 10 USDT\n"
        "    during 22:00-02:00 UTC on mon-fri\n"
    )["night"]
    low = {BID: Decimal(90)}
    # T0 is Monday 12:00: out of the window until 22:00; 02:00 included.
    fired, _ = run(rule, [(timedelta(hours=h), low) for h in (0, 9, 10)])
    assert fired == [10 * 3600]
    saturday = [(timedelta(days=5, hours=11), low)]  # Saturday 23:00: wrong day
    fired, _ = run(rule, saturday)
    assert fired == []
    fired, _ = run(rule, [(timedelta(hours=14, minutes=0, seconds=59), low)])  # 02:00:59
    assert fired == [14 * 3600 + 59]


def test_expired_rules_never_fire() -> None:
    rule = rules(
        "rule e on BTC-USDT:\n    when bid < 100\n    place market buy 10 USDT\n    expires in 1h\n"
    )["e"]
    fired, state = run(rule, [(s(3600), {BID: Decimal(90)}), (s(3601), {BID: Decimal(90)})])
    assert fired == [] and state.status == "expired"


def test_after_rules_fire_once_per_parent_event_with_its_fill() -> None:
    rule = rules(
        "rule entry on BTC-USDT:\n    when ask < 58000\n    place limit buy 0.01 at 57990\n"
        "rule exit on BTC-USDT:\n    after entry filled\n"
        "    place limit sell filled_size at fill_price + 3%\n"
    )["exit"]
    state = initial_state(rule, T0)
    assert state.status == "waiting"
    state, decision = step(rule, state, {}, T0)
    assert decision is None
    state = arm(state, Arm(1, Fill(Decimal(57990), Decimal("0.01"))))
    state = arm(state, Arm(2, Fill(Decimal(57000), Decimal("0.005"))))
    state, first = step(rule, state, {}, T0 + s(1))
    state, second = step(rule, state, {}, T0 + s(2))
    state, third = step(rule, state, {}, T0 + s(3))
    assert first is not None and first.arm is not None and first.arm.parent_firing == 1
    assert second is not None and second.arm is not None and second.arm.parent_firing == 2
    assert (first.firing, second.firing, third) == (1, 2, None)
    assert state.status == "waiting"


def test_illegal_moves_raise_naming_both_states() -> None:
    rule = rules("when BTC-USDT bid < 60000 place limit buy 0.01 at 59000\n")["one"]
    done = _move(initial_state(rule, T0), "done")
    with pytest.raises(IllegalTransition, match="DONE -> COOLING"):
        _move(done, "cooling")


def test_evaluate_returns_decisions_and_only_the_states_that_changed() -> None:
    program = compile_sources(
        [
            SourceFile(
                "t.rules",
                (
                    "when BTC-USDT bid < 60000 place limit buy 0.01 at 59000\n"
                    "when BTC-USDT ask > 70000 place market sell 0.01\n"
                ),
            )
        ]
    )
    states = {r.identity: initial_state(r, T0) for r in program.rules}
    decisions, changed = evaluate(program.rules, {BID: Decimal(59000)}, states, T0)
    assert [d.kind for d in decisions] == ["fire"]
    assert decisions[0].inputs == (("BTC-USDT bid", "59000"),)
    fired = decisions[0].rule
    assert set(changed) == {fired}
    assert changed[fired].status == "done"


def test_an_order_priced_on_data_that_is_not_fresh_does_not_fire() -> None:
    rule = rules("rule r on BTC-USDT:\n    when ETH-USDT last < 2000\n    place limit buy 0.01\n")[
        "r"
    ]
    eth = M.Field("ETH-USDT", "last")
    fired, state = run(rule, [(s(0), {eth: Decimal(1900)})])  # no fresh BTC-USDT bid to join
    assert fired == [] and state.status == "armed"
    fired, _ = run(rule, [(s(1), {eth: Decimal(1900), BID: Decimal(60000)})], state)
    assert fired == [1]


def test_a_market_order_by_size_waits_for_a_fresh_price_to_take_one_by_funds_does_not() -> None:
    compiled = rules(
        "rule seller on BTC-USDT:\n    when last > 3600\n    place market sell 0.01\n\n"
        "rule buyer on BTC-USDT:\n    when last > 3600\n    place market buy 0.01\n\n"
        "rule by_funds on BTC-USDT:\n    when last > 3600\n    place market buy 20 USDT\n"
    )
    no_book = {LAST: Decimal(3700)}
    # The bid (what a sell takes) unknown: the sell waits, then fires once it is fresh.
    fired, _ = run(compiled["seller"], [(s(0), no_book), (s(1), {**no_book, ASK: Decimal(3701)}),
                                      (s(2), {**no_book, BID: Decimal(3699)})])
    assert fired == [2]
    fired, _ = run(compiled["buyer"], [(s(0), {**no_book, BID: Decimal(3699)}),
                                     (s(1), {**no_book, ASK: Decimal(3701)})])
    assert fired == [1]
    fired, _ = run(compiled["by_funds"], [(s(0), no_book)])
    assert fired == [0]
