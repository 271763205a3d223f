"""Schedules without a condition (`every 1h max 24`, `every mon-fri at 09:00 Europe/Berlin`)
and time zones in `during`: compiled, stepped by the pure core, and due on the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from rules_engine.compiler import compile_sources
from rules_engine.compiler import model as M
from rules_engine.dsl import SourceFile
from rules_engine.engine import (
    Timers,
    carry_over,
    in_window,
    initial_state,
    next_due,
    next_slot,
    step,
)

T0 = datetime(2026, 3, 2, 10, 17, 30, tzinfo=UTC)  # a Monday
H = timedelta(hours=1)
BID = {M.Field("BTC-USDT", "bid"): Decimal(60000), M.Field("BTC-USDT", "ask"): Decimal(60010)}


def rule_of(clauses: str) -> M.CompiledRule:
    program = compile_sources([SourceFile("s.rules", "rule s on BTC-USDT:\n" + clauses)])
    assert program.ok, program.diagnostics
    return program.rules[0]


def codes(clauses: str) -> list[str]:
    program = compile_sources([SourceFile("s.rules", "rule s on BTC-USDT:\n" + clauses)])
    return [d.code for d in program.diagnostics]


def test_every_d_fires_at_once_then_on_its_cadence_and_stops_at_max() -> None:
    rule = rule_of("    every 1h max 3\n    place market buy 10 USDT\n")
    assert rule.schedule == M.Schedule(3600, None, None, "UTC") and rule.max_firings == 3
    state = initial_state(rule, T0)
    fired = []
    for moment in (T0, T0 + 0.5 * H, T0 + H, T0 + H + 1 * timedelta(seconds=1), T0 + 5.2 * H,
                   T0 + 9 * H):
        state, decision = step(rule, state, {}, moment)
        if decision is not None and decision.kind == "fire":
            fired.append((decision.firing, moment))
    # Slots T0, T0+1h, then the slots missed while nothing stepped it are not made up: one.
    assert fired == [(1, T0), (2, T0 + H), (3, T0 + 5.2 * H)]
    assert state.status == "done"


def test_the_cadence_never_drifts_and_missed_slots_are_not_made_up() -> None:
    rule = rule_of("    every 1h max 100\n    place market buy 10 USDT\n")
    state, _ = step(rule, initial_state(rule, T0), {}, T0)
    assert (state.status, state.rearm_at) == ("cooling", T0 + H)
    late = T0 + 3.5 * H  # the watcher was down for three slots
    state, decision = step(rule, state, {}, late)
    assert decision is not None and decision.kind == "fire" and decision.firing == 2
    assert state.rearm_at == T0 + 4 * H  # on the cadence of the first slot, after now


def test_a_slot_waits_for_what_its_order_reads_and_for_its_window() -> None:
    rule = rule_of("    every 1h max 5\n    place limit buy 0.001 at bid\n"
                   "    during 09:00-17:00 UTC\n")
    state = initial_state(rule, T0)
    state, decision = step(rule, state, {}, T0)  # no bid known: an unknown never fires
    assert decision is None and state.status == "armed"
    assert next_due(rule, state, T0) == T0  # stepped by the clock until it can fire
    state, decision = step(rule, state, BID, T0 + timedelta(seconds=2))
    assert decision is not None and decision.kind == "fire"
    evening = T0.replace(hour=17, minute=30)
    state, _ = step(rule, state, BID, evening)  # the slot of 17:17:30 came due...
    state, decision = step(rule, state, BID, evening)
    assert decision is None and state.status == "armed"  # ...outside the window: it waits
    opens = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    assert next_due(rule, state, evening) == opens
    state, decision = step(rule, state, BID, opens)
    assert decision is not None and decision.firing == 2
    assert state.rearm_at == opens.replace(minute=17, second=30)  # back on its cadence


def test_every_day_at_a_local_time_follows_daylight_saving() -> None:
    rule = rule_of("    every mon-fri at 09:00 Europe/Berlin max 30\n"
                   "    place market buy 10 USDT\n")
    schedule = rule.schedule
    assert schedule == M.Schedule(None, 540, frozenset(range(1, 6)), "Europe/Berlin")
    state = initial_state(rule, T0)  # Monday 10:17 UTC: Monday's 09:00 CET has passed
    assert (state.status, state.rearm_at) == ("cooling", datetime(2026, 3, 3, 8, 0, tzinfo=UTC))
    friday = datetime(2026, 3, 27, 8, 0, tzinfo=UTC)  # 09:00 CET, the last Friday of winter
    monday = next_slot(schedule, friday, friday)
    assert monday == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)  # 09:00 CEST, the weekend skipped
    daily = M.Schedule(None, 150, None, "Europe/Berlin")  # 02:30 does not exist on 2026-03-29
    night = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    assert next_slot(daily, night, night) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_a_daily_schedule_fires_once_a_day_at_its_slot() -> None:
    rule = rule_of("    every day at 09:00 max 2\n    place market buy 10 USDT\n")
    state = initial_state(rule, T0)
    slot = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)  # UTC when no zone is given
    assert next_due(rule, state, T0) == slot
    state, decision = step(rule, state, {}, slot - timedelta(seconds=1))
    assert decision is None
    state, decision = step(rule, state, {}, slot)
    assert decision is not None and decision.kind == "fire"
    assert state.rearm_at == slot + 24 * H


def test_the_clock_steps_a_schedule_through_timers() -> None:
    rule = rule_of("    every 15m max 4\n    place market buy 10 USDT\n")
    timers = Timers()
    state = initial_state(rule, T0)
    timers.update(rule, state, T0)
    fired = 0
    now = T0
    while now < T0 + 2 * H:
        for identity in timers.pop_due(now):
            assert identity == rule.identity
            state, decision = step(rule, state, {}, now)
            fired += decision is not None and decision.kind == "fire"
            timers.update(rule, state, now)
        now += timedelta(seconds=20)
    assert fired == 4 and state.status == "done" and len(timers) == 0


def test_an_edit_keeps_a_schedules_slot() -> None:
    rule = rule_of("    every 1h max 24\n    place market buy 10 USDT\n")
    state, _ = step(rule, initial_state(rule, T0), {}, T0)
    edited = rule_of("    every 1h max 24\n    place market buy 20 USDT\n")
    kept = carry_over(edited, state, T0 + 0.2 * H)
    assert (kept.status, kept.rearm_at, kept.firings) == ("cooling", T0 + H, 1)
    assert step(edited, kept, {}, T0 + 0.3 * H)[1] is None  # the edit fires nothing early


def test_during_reads_its_window_in_its_time_zone() -> None:
    rule = rule_of("    when bid < 70000\n    place market buy 10 USDT\n"
                   "    during 09:30-16:00 America/New_York on mon-fri\n")
    window = rule.window
    assert window == M.Window(570, 960, frozenset(range(1, 6)), "America/New_York")
    assert in_window(window, datetime(2026, 3, 2, 14, 30, tzinfo=UTC))  # 09:30 EST
    assert not in_window(window, datetime(2026, 3, 2, 14, 29, tzinfo=UTC))
    assert in_window(window, datetime(2026, 3, 9, 13, 30, tzinfo=UTC))  # 09:30 EDT
    assert not in_window(window, datetime(2026, 3, 7, 15, 0, tzinfo=UTC))  # Saturday
    utc = rule_of("    when bid < 70000\n    place market buy 10 USDT\n"
                  "    during 08:00-20:00 UTC\n")
    assert "zone" not in repr(utc.window)  # a UTC window's text (and identity) is unchanged


def test_schedule_mistakes_are_diagnosed() -> None:
    assert codes("    every 1h max 3\n    when bid < 5\n    place market buy 10 USDT\n") == [
        "E412"]
    assert codes("    every day at 09:00 Europe/Berln max 3\n    place market buy 10 USDT\n"
                 ) == ["E207"]
    assert codes("    every dya at 09:00 max 3\n    place market buy 10 USDT\n") == ["E107"]
    assert codes("    every day at 25:00 max 3\n    place market buy 10 USDT\n") == ["E205"]
    assert codes("    every 1h max 3\n    repeat every 1h\n    place market buy 10 USDT\n"
                 ) == ["E406"]
    assert codes("    every 4h\n    place market buy 10 USDT\n") == ["W701"]
    assert codes("    place market buy 10 USDT\n") == ["E405"]
