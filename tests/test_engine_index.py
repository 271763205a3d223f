"""Indexed evaluation decides exactly what stepping every rule on every update decides."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from rules_engine.compiler import compile_sources
from rules_engine.compiler import model as M
from rules_engine.dsl import SourceFile
from rules_engine.engine import Decision, RuleIndex, RuleState, Timers, initial_state, step

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


def timed_rules(rng: random.Random, count: int) -> str:
    lines = []
    for n in range(count):
        sym, field = rng.choice(SYMBOLS), rng.choice(FIELDS)
        level, op = rng.randint(92, 108), rng.choice(["<", ">"])
        kind = rng.random()
        head = f"rule t{n} on {sym}:\n    when {field} {op} {level}"
        if kind < 0.25:
            lines.append(f"{head} for {rng.choice([1, 3, 7])}s\n    place market buy 10 USDT")
        elif kind < 0.5:
            lines.append(f"{head}\n    place market buy 10 USDT\n    repeat every "
                         f"{rng.choice([2, 5])}s max {rng.choice([2, 4])}")
        elif kind < 0.7:
            start = rng.randint(0, 3)
            lines.append(f"{head}\n    place market buy 10 USDT\n    during "
                         f"12:{start:02d}-12:{start + rng.randint(0, 2):02d} UTC")
        elif kind < 0.85:
            lines.append(f"{head}\n    place market buy 10 USDT\n    expires in "
                         f"{rng.choice([5, 30, 90])}s")
        else:
            lines.append(f"{head} for 2s\n    place market buy 10 USDT\n    repeat every 3s\n"
                         f"    during 12:01-12:04 UTC")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(8))
def test_stepping_timed_rules_only_when_due_matches_stepping_them_on_every_tick(
    seed: int,
) -> None:
    rng = random.Random(100 + seed)
    program = compile_sources([SourceFile("t.rules", timed_rules(rng, 80))])
    assert program.errors == (), program.errors[:3]
    rules = program.rules
    by_id = {r.identity: r for r in rules}
    index = RuleIndex(rules)
    timers = Timers()
    full: dict[str, RuleState] = {r.identity: initial_state(r, T0) for r in rules}
    fast = dict(full)
    for rule in index.timed:
        timers.update(rule, fast[rule.identity], T0)
    market: dict[object, Decimal] = {}
    full_log: list[Decision] = []
    fast_log: list[Decision] = []
    now = T0
    for _ in range(600):
        now += timedelta(milliseconds=rng.choice([200, 700, 1500, 4000]))
        leaf = M.Field(rng.choice(SYMBOLS), rng.choice(FIELDS))
        old = market.get(leaf)
        if rng.random() < 0.05:
            market.pop(leaf, None)
            new = None
        else:
            new = Decimal(rng.randint(88, 112))
            market[leaf] = new
        for rule in rules:
            full[rule.identity], decision = step(rule, full[rule.identity], market, now)
            if decision is not None:
                full_log.append(decision)
        selected = {r.identity: r for r in index.affected(leaf, old, new)}
        for identity in timers.pop_due(now):
            selected[identity] = by_id[identity]
        for rule in selected.values():
            fast[rule.identity], decision = step(rule, fast[rule.identity], market, now)
            if decision is not None:
                fast_log.append(decision)
            timers.update(rule, fast[rule.identity], now)
    assert sum(d.kind == "fire" for d in full_log) > 10
    assert sum(d.kind == "expire" for d in full_log) > 0
    assert sorted(fast_log) == sorted(full_log)
    assert fast == full or all(
        fast[i].status == full[i].status and fast[i].firings == full[i].firings for i in full
    )
