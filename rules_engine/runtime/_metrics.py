"""Metrics only the watcher's loop can count, for `/metrics` when the dashboard runs inside
`rules-engine run --http`: the number of rule evaluations and decisions, and the latency of
the store's commits. Defined here, on a registry of this module's own; the watcher calls the
functions below (they cost a dictionary lookup and an add), and the dashboard's `/metrics`
appends `exposition()` to what it reads from the store.

Where the watcher calls them (`runtime/_firing.py`):
- `evaluated(n)` after each step pass, with the number of rules stepped;
- `decided(kind)` for each `Decision` (`fire`, `rearm`, `expire`);
- `committed(seconds)` around each firing's `Store.fire`, with its duration.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["REGISTRY", "committed", "decided", "evaluated", "exposition"]

REGISTRY = CollectorRegistry(auto_describe=True)
_EVALUATIONS = Counter("rules_engine_evaluations", "rules stepped by the evaluator",
                       registry=REGISTRY)
_DECISIONS = Counter("rules_engine_decisions", "the evaluator's decisions by kind", ["kind"],
                     registry=REGISTRY)
_COMMITS = Histogram("rules_engine_store_commit_seconds", "how long a store commit took",
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                              2.5), registry=REGISTRY)


def evaluated(rules: int) -> None:
    _EVALUATIONS.inc(rules)


def decided(kind: str) -> None:
    _DECISIONS.labels(kind=kind).inc()


def committed(seconds: float) -> None:
    _COMMITS.observe(seconds)


def exposition() -> bytes:
    return generate_latest(REGISTRY)
