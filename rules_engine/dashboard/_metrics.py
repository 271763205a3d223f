"""Prometheus metrics at `/metrics`, read from the store (and the live snapshot when the
dashboard runs inside the watcher) at each scrape, through a collector on a registry of its
own (never the process-wide default one).

| metric | type | labels | from |
|---|---|---|---|
| `rules_engine_up` | gauge | | 1 when the store answered this scrape |
| `rules_engine_halted` | gauge | | the kill switch (1 on) |
| `rules_engine_lease_alive` | gauge | | a watcher holds the store's lease with a fresh heartbeat |
| `rules_engine_lease_heartbeat_age_seconds` | gauge | | since the lease's last heartbeat |
| `rules_engine_open_orders` | gauge | `symbol` | orders not final |
| `rules_engine_firings_total` | counter | `outcome` | firings by their status |
| `rules_engine_orders_total` | counter | `status` | orders by their status |
| `rules_engine_rules` | gauge | `status` | rules by state |
| `rules_engine_feed_live` | gauge | `feed` | market and orders feeds (1 live) |
| `rules_engine_book_live` | gauge | `symbol` | each book (1 live; live snapshot only) |
| `rules_engine_lease_epoch` | gauge | | acquisitions of the lease so far |
| `rules_engine_lease_takeovers_total` | counter | | takeovers of a lease not released |
| `rules_engine_lease_held` | gauge | | this watcher holds the lease (live only) |
| `rules_engine_feed_lag_seconds` | gauge | `symbol` | latest ticker's delay (live only) |
| `rules_engine_feed_quiet_seconds` | gauge | `symbol` | since its latest event (live only) |
| `rules_engine_rate_limit_remaining` | gauge | `client`, `pool` | budget left (live only) |
| `rules_engine_rate_limit_limit` | gauge | `client`, `pool` | budget per window (live only) |

What only the watcher's loop sees (evaluations, the store's commit latency) is defined in
`runtime/_metrics.py` for the watcher to count.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from sqlalchemy import func, select

__all__ = ["StoreCollector", "exposition"]

_LIVE_AFTER_S = 15.0


class StoreCollector(Collector):
    def __init__(self, store: Any, live: dict[str, Any] | None) -> None:
        self.store = store
        self.live = live

    def collect(self) -> Iterator[Metric]:
        from sqlalchemy.exc import SQLAlchemyError

        from rules_engine.store._record import last_feed_states
        from rules_engine.store._repo import FINAL_ORDERS
        from rules_engine.store._schema import Event, Firing, Order, RuleState

        up = GaugeMetricFamily("rules_engine_up", "1 when the store answered this scrape")
        try:
            with self.store.session() as session:
                firings = dict(session.execute(
                    select(Firing.status, func.count()).group_by(Firing.status)).all())
                orders = dict(session.execute(
                    select(Order.status, func.count()).group_by(Order.status)).all())
                open_by_symbol = dict(session.execute(
                    select(Order.symbol, func.count())
                    .where(Order.status.not_in(FINAL_ORDERS | {"not_placed"}))
                    .group_by(Order.symbol)).all())
                rules = dict(session.execute(
                    select(RuleState.status, func.count()).group_by(RuleState.status)).all())
                feeds = {name: None if last is None else last.kind.endswith(".live")
                         for name, last in last_feed_states(session).items()}
                takeovers = session.scalar(select(func.count()).select_from(Event)
                                           .where(Event.kind == "lease.taken_over")) or 0
            lease = self.store.lease()
            halted = self.store.halt() is not None
        except SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield _gauge("rules_engine_halted", "the kill switch is on (1)", 1 if halted else 0)
        age = None if lease is None else (datetime.now(UTC) - lease.heartbeat).total_seconds()
        alive = lease is not None and lease.alive and age is not None and age < _LIVE_AFTER_S
        yield _gauge("rules_engine_lease_alive",
                     "a watcher holds the store's lease with a fresh heartbeat", int(alive))
        if age is not None:
            yield _gauge("rules_engine_lease_heartbeat_age_seconds",
                         "seconds since the lease's last heartbeat", age)
        if lease is not None:
            yield _gauge("rules_engine_lease_epoch", "acquisitions of the lease so far",
                         lease.epoch)
        taken = CounterMetricFamily("rules_engine_lease_takeovers",
                                    "starts that took the lease from a watcher that had not "
                                    "released it")
        taken.add_metric([], takeovers)
        yield taken
        yield _labelled(GaugeMetricFamily, "rules_engine_open_orders", "orders not final",
                        "symbol", open_by_symbol)
        yield _labelled(CounterMetricFamily, "rules_engine_firings", "firings by outcome",
                        "outcome", firings)
        yield _labelled(CounterMetricFamily, "rules_engine_orders", "orders by status",
                        "status", orders)
        yield _labelled(GaugeMetricFamily, "rules_engine_rules", "rules by state", "status",
                        rules)
        live = self.live
        if live is not None:  # the watcher's own view beats the last logged event
            feeds = {"market": live.get("feed") == "live",
                     "orders": live.get("orders_feed") == "live"}
        yield _labelled(GaugeMetricFamily, "rules_engine_feed_live",
                        "the feed is live (1) or stale/down (0)", "feed",
                        {k: int(v) for k, v in feeds.items() if v is not None})
        if live is not None:
            yield from _live(live)


def _live(live: dict[str, Any]) -> Iterator[Metric]:
    """What only the running watcher knows: books, feed lag, rate limits, its lease."""
    yield _labelled(GaugeMetricFamily, "rules_engine_book_live",
                    "the symbol's level2 book is live (1)", "symbol",
                    {s: int(v == "live") for s, v in live.get("books", {}).items()})
    yield _labelled(GaugeMetricFamily, "rules_engine_feed_lag_seconds",
                    "from the exchange's time of the symbol's latest ticker to its arrival",
                    "symbol", live.get("lag_s") or {})
    yield _labelled(GaugeMetricFamily, "rules_engine_feed_quiet_seconds",
                    "seconds since the symbol's latest public event", "symbol",
                    live.get("quiet_s") or {})
    remaining = GaugeMetricFamily("rules_engine_rate_limit_remaining",
                                  "KuCoin's rate-limit budget left in the pool's window",
                                  labels=["client", "pool"])
    limit = GaugeMetricFamily("rules_engine_rate_limit_limit",
                              "KuCoin's rate-limit budget per window", labels=["client", "pool"])
    for client, pools in sorted((live.get("rate_limits") or {}).items()):
        for pool, state in sorted(pools.items()):
            remaining.add_metric([client, pool], float(state["remaining"]))
            limit.add_metric([client, pool], float(state["limit"]))
    yield remaining
    yield limit
    lease = live.get("lease") or {}
    yield _gauge("rules_engine_lease_held", "this watcher holds the store's lease (1)",
                 int(bool(lease.get("held"))))


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    metric = GaugeMetricFamily(name, doc)
    metric.add_metric([], value)
    return metric


def _labelled(kind: Any, name: str, doc: str, label: str, values: dict[str, Any]) -> Metric:
    metric = kind(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        metric.add_metric([str(key)], float(value))
    return metric  # type: ignore[no-any-return]


def exposition(store: Any, live: dict[str, Any] | None) -> tuple[bytes, str]:
    """The scrape's body and content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, live))
    body = generate_latest(registry)
    if live is not None:  # inside the watcher: what its loop counted
        from rules_engine.runtime._metrics import exposition as counted

        body += counted()
    return body, CONTENT_TYPE_LATEST
