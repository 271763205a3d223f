"""A rule's state under a new version of the rule (`carry_over`), and `unblock`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rules_engine.compiler import compile_sources
from rules_engine.dsl import SourceFile
from rules_engine.engine import Arm, IllegalTransition, carry_over, initial_state, unblock

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def rule(text: str):  # type: ignore[no-untyped-def]
    program = compile_sources([SourceFile("r.rules", text)])
    assert program.errors == (), program.errors
    return program.rules[-1]


ONCE = "rule r on BTC-USDT:\n    when bid < 100\n    place market buy 10 USDT\n"
REPEAT = ONCE + "    repeat every 1m max 3\n"
CHILD = "rule p on BTC-USDT:\n    when bid < 1\n    place market buy 10 USDT\n" + (
    "rule r on BTC-USDT:\n    after p filled\n    place market sell filled_size\n")


def test_done_stays_done_and_the_firing_count_carries_over() -> None:
    old = initial_state(rule(ONCE), T0)._replace(status="done", firings=1)
    new = carry_over(rule(ONCE.replace("100", "90")), old, T0)
    assert (new.status, new.firings) == ("done", 1)


def test_a_cooldown_carries_over_and_a_lower_max_can_end_the_rule() -> None:
    old = initial_state(rule(REPEAT), T0)._replace(
        status="cooling", firings=2, rearm_at=T0 + timedelta(seconds=30), seen_false=True)
    new = carry_over(rule(REPEAT.replace("100", "90")), old, T0)
    assert (new.status, new.rearm_at, new.firings) == ("cooling", old.rearm_at, 2)
    assert carry_over(rule(REPEAT.replace("max 3", "max 2")), old, T0).status == "done"


def test_a_blocked_rule_starts_fresh_and_observations_start_over() -> None:
    old = initial_state(rule(ONCE), T0)._replace(status="blocked", firings=3,
                                                 true_since=T0)
    new = carry_over(rule(ONCE), old, T0)
    assert (new.status, new.firings, new.true_since) == ("armed", 3, None)


def test_an_after_rule_keeps_the_parent_events_it_was_armed_with() -> None:
    old = initial_state(rule(CHILD), T0)._replace(status="armed", arms=(Arm(1, None),))
    assert carry_over(rule(CHILD), old, T0).arms == (Arm(1, None),)
    unarmed = initial_state(rule(CHILD), T0)
    assert carry_over(rule(CHILD), unarmed, T0).status == "waiting"


def test_unblock_starts_a_blocked_rule_as_its_fixing_edit_would_and_nothing_else() -> None:
    old = initial_state(rule(ONCE), T0)._replace(status="blocked", firings=1, true_since=T0)
    new = unblock(rule(ONCE), old, T0)
    assert (new.status, new.firings, new.true_since) == ("armed", 1, None)
    child = initial_state(rule(CHILD), T0)._replace(status="blocked", firings=2)
    assert unblock(rule(CHILD), child, T0).status == "waiting"
    for status in ("armed", "done", "frozen", "disarmed", "expired"):
        with pytest.raises(IllegalTransition, match="only a blocked rule"):
            unblock(rule(ONCE), old._replace(status=status), T0)
