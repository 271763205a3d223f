"""Indexed evaluation decides exactly what stepping every rule on every update decides."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from rules_engine.compiler import compile_sources
from rules_engine.compiler import model as M
from rules_engine.dsl import SourceFile
from rules_engine.engine import Decision, RuleIndex, RuleState, initial_state, step

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SYMBOLS = ["BTC-USDT", "ETH-USDT", "XRP-USDT"]
FIELDS = ["bid", "ask", "last"]


def random_rules(rng: random.Random, count: int) -> str:
    lines = []
    for n in range(count):
        sym, field = rng.choice(SYMBOLS), rng.choice(FIELDS)
        level = rng.randint(90, 110)
        op = rng.choice(["<", "<=", ">", ">=", "=="])
        kind = rng.random()
        if kind < 0.4:
            lines.append(f"when {sym} {field} {op} {level} place market buy {10 + n} USDT")
        elif kind < 0.6:  # joins the book: the order reads bid, maybe not in its condition
            lines.append(f"when {sym} {field} {op} {level} place limit buy {1 + n}")
        elif kind < 0.75:
            other = rng.choice([f for f in FIELDS if f != field])
            lines.append(
                f"rule r{n} on {sym}:\n    when {field} {op} {level} and {other} > "
                f"{rng.randint(90, 110)}\n    place limit buy 1 at {other}"
            )
        elif kind < 0.8:
            lines.append(
                f"rule r{n} on {sym}:\n    when {field} crosses above {level}\n"
                "    place market buy 10 USDT\n    repeat every 5s"
            )
        elif kind < 0.85:  # an edge, untimed; the order joins the book: it reads bid too
            lines.append(
                f"rule r{n} on {sym}:\n    when {field} crosses below {level}\n"
                "    place limit buy 1"
            )
        elif kind < 0.9:  # a conjunction with two atoms on one value
            lines.append(
                f"rule r{n} on {sym}:\n    when last > {level} and last < {level + 6} and "
                f"{field} {op} {level + 3}\n    place market buy 10 USDT"
            )
        else:
            lines.append(
                f"rule r{n} on {sym}:\n    when {field} {op} {level} for 3s\n"
                "    place market buy 10 USDT"
            )
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(8))
def test_indexed_evaluation_matches_stepping_every_rule(seed: int) -> None:
    rng = random.Random(seed)
    program = compile_sources([SourceFile("r.rules", random_rules(rng, 120))])
    assert program.errors == (), program.errors[:3]
    rules = program.rules
    index = RuleIndex(rules)
    full: dict[str, RuleState] = {r.identity: initial_state(r, T0) for r in rules}
    fast = dict(full)
    market: dict[object, Decimal] = {}
    full_log: list[Decision] = []
    fast_log: list[Decision] = []
    now = T0
    for _ in range(400):
        now += timedelta(milliseconds=rng.choice([100, 500, 1000, 2500]))
        leaf = M.Field(rng.choice(SYMBOLS), rng.choice(FIELDS))
        old = market.get(leaf)
        if rng.random() < 0.05:
            market.pop(leaf, None)  # the value goes stale
            new = None
        else:
            new = Decimal(rng.randint(85, 115))
            market[leaf] = new
        for rule in rules:
            full[rule.identity], decision = step(rule, full[rule.identity], market, now)
            if decision is not None:
                full_log.append(decision)
        seen: set[str] = set()
        for rule in [*index.affected(leaf, old, new), *index.timed]:
            if rule.identity in seen:
                continue
            seen.add(rule.identity)
            fast[rule.identity], decision = step(rule, fast[rule.identity], market, now)
            if decision is not None:
                fast_log.append(decision)
    assert sum(d.kind == "fire" for d in full_log) > 10
    assert sorted(fast_log) == sorted(full_log)


def test_an_update_selects_only_the_thresholds_it_crosses() -> None:
    text = "".join(
        f"when BTC-USDT bid < {level} place market buy 10 USDT\n" for level in range(100, 200)
    )
    index = RuleIndex(compile_sources([SourceFile("t.rules", text)]).rules)
    bid = M.Field("BTC-USDT", "bid")
    assert len(index.affected(bid, Decimal(150), Decimal("150.5"))) == 1  # threshold 150
    assert len(index.affected(bid, Decimal(150), Decimal(160))) == 11
    assert len(index.affected(bid, None, Decimal(160))) == 100
    # turning unknown restarts `for` and `crosses` baselines: every reader is stepped
    assert len(index.affected(bid, Decimal(150), None)) == 100
    assert index.timed == []
