"""`benchmarks/fuzz` in miniature: every target, a fixed seed, 6 seconds, and no crash."""

from __future__ import annotations

import io
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import fuzzing  # noqa: E402 - benchmarks/fuzzing.py, beside the script

SEED = 20260502
MUTANTS = 20  # at least this many mutated inputs per target beyond its seeds


def test_every_target_runs_its_budget_without_a_crash(tmp_path: Path) -> None:
    out = io.StringIO()
    results = fuzzing.run(6.0, SEED, out=out, save=tmp_path)
    report = out.getvalue()
    assert report.startswith(f"fuzz: seed {SEED},")
    targets, cleanups = fuzzing.build_targets()
    for cleanup in cleanups:
        cleanup()
    assert [r.target for r in results] == [t.name for t in targets if t.kind == "once"] + [
        t.name for t in targets if t.kind != "once"
    ]
    assert not [r.target for r in results if fuzzing.crash_count(r)], report
    assert not list(tmp_path.iterdir()), report  # nothing saved: nothing crashed
    for r in results:
        if r.target == "lint_cli":
            assert r.tried == 2 and r.clean + r.parsed == 2, report
        else:
            assert r.tried >= r.seeds + MUTANTS, report
            assert r.parsed and r.clean, report  # both outcomes reached: the seeds parse


def test_the_docstring_lists_every_target() -> None:
    targets, cleanups = fuzzing.build_targets()
    for cleanup in cleanups:
        cleanup()
    documented = re.findall(r"^  (\w+) {2,}", fuzzing.__doc__ or "", re.MULTILINE)
    assert documented == [t.name for t in targets]


def test_a_seed_replays_the_same_inputs() -> None:
    corpus = fuzzing.rule_corpus()
    words = fuzzing.vocabulary(corpus)
    seeds = [b'{"code":"200000","data":{"a":[1,"2",null]}}', b'{"b":{"c":true}}']
    target = fuzzing.Target("t", seeds, lambda data: True)
    pool = fuzzing._pool([{"a": [1]}, {"c": "x"}])

    def first(seed: int) -> list[bytes]:
        made = fuzzing.inputs(target, random.Random(f"{seed}:t"), pool, corpus, words)
        return [next(made) for _ in range(200)]

    assert first(1) == first(1) != first(2)
    rules = fuzzing.Target("r", [c.encode() for c in corpus[:3]], lambda data: True, "rules")
    made = fuzzing.inputs(rules, random.Random("1:r"), pool, corpus, words)
    again = fuzzing.inputs(rules, random.Random("1:r"), pool, corpus, words)
    assert [next(made) for _ in range(100)] == [next(again) for _ in range(100)]


def test_a_saved_input_replays_through_its_target(tmp_path: Path) -> None:
    crash = fuzzing.Crash("classify_reply", b"[" * 100_000, "RecursionError", "x", "trace")
    path = fuzzing.save_crash(crash, tmp_path)
    assert path.name.startswith("classify_reply__") and path.with_suffix(".txt").exists()
    out = io.StringIO()
    assert fuzzing.replay([str(path)], out) == 0  # fixed: a clean error now
    assert out.getvalue().endswith(": clean error\n")
