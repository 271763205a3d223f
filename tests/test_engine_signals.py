"""`when signal "NAME" [within D]`: compiled with its checks, and stepped by the pure core
(true within the window, false when never seen, once per signal, a restart keeps the mark)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from rules_engine.compiler import compile_sources
from rules_engine.compiler import model as M
from rules_engine.dsl import SourceFile
from rules_engine.engine import carry_over, initial_state, step
from rules_engine.engine._codec import dump_state, load_state
from rules_engine.engine._values import epoch_seconds, leaves

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
BREAKOUT = M.Signal("breakout")
ASK = M.Field("BTC-USDT", "ask")


def program(clauses: str, signals: frozenset[str] | None = frozenset({"breakout"})) -> (
        M.CompiledProgram):
    return compile_sources([SourceFile("s.rules", "rule s on BTC-USDT:\n" + clauses)],
                           signals=signals)


def rule_of(clauses: str) -> M.CompiledRule:
    compiled = program(clauses)
    assert compiled.ok and not compiled.diagnostics, compiled.diagnostics
    return compiled.rules[0]


def market(arrived: datetime | None, ask: Decimal = Decimal(60010)) -> dict[object, Decimal]:
    values: dict[object, Decimal] = {ASK: ask}
    if arrived is not None:
        values[BREAKOUT] = epoch_seconds(arrived)
    return values


def test_signal_compiles_with_a_default_window_of_a_minute_and_reads_its_leaf() -> None:
    rule = rule_of('    when signal "breakout"\n    place market buy 0.001\n')
    assert rule.condition == M.Signaled(BREAKOUT, 60)
    assert leaves(rule.condition) == [BREAKOUT]
    within = rule_of('    when signal "breakout" within 5m\n    place market buy 0.001\n')
    assert within.condition == M.Signaled(BREAKOUT, 300)


def test_an_unconfigured_signal_is_a_warning_naming_the_config_key() -> None:
    compiled = program('    when signal "breakuot"\n    place market buy 0.001\n')
    (warning,) = compiled.diagnostics
    assert warning.code == "W112" and "[signals.breakuot]" in warning.message
    assert compiled.ok  # a warning: the rule still loads
    unknown = program('    when signal "breakuot"\n    place market buy 0.001\n', None)
    assert unknown.diagnostics == ()  # no config known: nothing to check against


def test_bad_signal_names_and_windows_are_errors() -> None:
    assert [d.code for d in program('    when signal "a b"\n    place market buy 0.001\n')
            .diagnostics] == ["E111"]
    assert [d.code for d in program('    when signal ""\n    place market buy 0.001\n')
            .diagnostics] == ["E111"]
    zero = program('    when signal "breakout" within 0s\n    place market buy 0.001\n')
    assert [d.code for d in zero.diagnostics] == ["E204"]


def test_a_signal_never_seen_is_false_not_unknown() -> None:
    rule = rule_of('    when not signal "breakout"\n    notify "quiet"\n')
    state = initial_state(rule, T0)
    _, decision = step(rule, state, market(None), T0)
    assert decision is not None and decision.kind == "fire"  # `not false` is true


def test_the_rule_fires_within_the_window_and_not_after_it() -> None:
    rule = rule_of('    when signal "breakout" within 30s\n    place market buy 0.001\n')
    state = initial_state(rule, T0)
    late, none = step(rule, state, market(T0), T0 + timedelta(seconds=31))
    assert none is None and late.status == "armed"
    fired, decision = step(rule, state, market(T0), T0 + timedelta(seconds=30))
    assert decision is not None and decision.kind == "fire" and fired.status == "done"
    assert fired.signal_mark == epoch_seconds(T0)


def test_with_repeat_it_fires_once_per_signal_not_again_while_the_window_lasts() -> None:
    rule = rule_of('    when signal "breakout" within 5m\n    place market buy 0.001\n'
                   "    repeat every 1s max 10\n")
    state = initial_state(rule, T0)
    state, decision = step(rule, state, market(T0), T0)
    assert decision is not None and state.status == "cooling"
    fired = 1
    for second in range(1, 120):  # the same signal, still in its window: re-arms, never fires
        state, decision = step(rule, state, market(T0), T0 + timedelta(seconds=second))
        fired += decision is not None and decision.kind == "fire"
    assert fired == 1 and state.status == "armed"
    second_signal = T0 + timedelta(seconds=120)
    state, decision = step(rule, state, market(second_signal), second_signal)
    assert decision is not None and decision.kind == "fire" and state.firings == 2


def test_the_spent_mark_survives_a_restart_and_an_edit() -> None:
    rule = rule_of('    when signal "breakout" within 5m\n    place market buy 0.001\n'
                   "    repeat every 1s max 10\n")
    state, _ = step(rule, initial_state(rule, T0), market(T0), T0)
    stored = load_state(dump_state(state))
    assert stored == state and stored.signal_mark == epoch_seconds(T0)
    later = T0 + timedelta(seconds=5)
    stored, _ = step(rule, stored, market(T0), later)  # re-arms: the signal is spent
    again, decision = step(rule, stored, market(T0), later + timedelta(seconds=1))
    assert decision is None
    edited = rule_of('    when signal "breakout" within 4m\n    place market buy 0.001\n'
                     "    repeat every 1s max 10\n")
    carried = carry_over(edited, again, later)
    _, decision = step(edited, carried, market(T0), later)
    assert decision is None  # the edit does not fire the same signal again


def test_a_signal_gates_a_market_condition_for_its_window() -> None:
    rule = rule_of('    when signal "breakout" within 5m and ask < 60000\n'
                   "    place market buy 0.001\n")
    state = initial_state(rule, T0)
    state, decision = step(rule, state, market(T0, Decimal(60010)), T0)
    assert decision is None
    _, decision = step(rule, state, market(T0, Decimal(59990)), T0 + timedelta(minutes=4))
    assert decision is not None and decision.kind == "fire"
    _, decision = step(rule, state, market(T0, Decimal(59990)), T0 + timedelta(minutes=6))
    assert decision is None
