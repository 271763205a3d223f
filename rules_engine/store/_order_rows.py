"""Writing an order as the order table (`engine/_lifecycle.py`) decided it: the one way the
watcher changes an order's status. The table is the authority: the store checks the move
against the table's own `STATUS_TRANSITIONS` (an order row another writer moved meanwhile is
written all the same, with an `order.anomaly` event naming the move, except that a final
status is never left by an illegal move: it is kept), and commits it with its
event, the firing's move and the rule rows of the same step in one transaction.

Filled totals are not written here: each fill adds itself (`Store.add_fill`, once per trade
id), so the order row's totals are the sum of its fills.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from rules_engine.engine._lifecycle import STATUS_TRANSITIONS
from rules_engine.engine._order_types import FINAL_STATUSES, OrderRecord
from rules_engine.store._schema import Event, Firing, Order

__all__ = ["move_firing_total", "write_order"]


def move_firing_total(session: Session, oid: str, to: str | None, now: datetime, *,
                      payload: Mapping[str, Any], transitions: frozenset[tuple[str, str]]
                      ) -> Firing | None:
    """The firing of `oid` moved to `to`; a move the firing table lacks is an anomaly on
    record (the firing keeps its status), never a crash."""
    firing = session.scalars(
        select(Firing).where(Firing.client_oid == oid).with_for_update()).one_or_none()
    if firing is None or to is None or firing.status == to:
        return firing
    if (firing.status, to) not in transitions:
        session.add(Event(at=now, kind="firing.anomaly", identity=firing.identity,
                          client_oid=oid, payload={"move": f"{firing.status} -> {to}",
                                                   "kept": firing.status, **payload}))
        return firing
    firing.status = to
    session.add(Event(at=now, kind=f"firing.{to}", identity=firing.identity, client_oid=oid,
                      payload=dict(payload)))
    return firing


def write_order(session: Session, record: OrderRecord, now: datetime, kind: str,
                detail: Mapping[str, Any]) -> Order | None:
    """The order row as `record` says (status, exchange id, size, deadline, the cancel asked,
    `cancel after`), and the event `kind` with `detail`. None when no such row exists."""
    order = session.get(Order, record.client_oid, with_for_update=True)
    if order is None:
        return None
    identity = None
    if order.status != record.status:
        legal = (order.status, record.status) in STATUS_TRANSITIONS
        # A final status is left only by a move the table allows (a late fill of a cancelled
        # order, a firing proven not placed sent again). A stale writer's record of an order
        # proven final (a watcher resumed after another took the store over moved a filled
        # order back to open, and the next recovery armed its chained rule a second time) is
        # kept out whole: its status, its fields and its event, which would name a move that
        # never happened. Only the anomaly goes on record.
        keep = order.status in FINAL_STATUSES and not legal
        if not legal:
            session.add(Event(at=now, kind="order.anomaly", identity=identity,
                              client_oid=record.client_oid,
                              payload={"move": f"{order.status} -> {record.status}",
                                       "kept": order.status if keep else record.status,
                                       "why": "the store held another status than the table",
                                       **({"stale": kind} if keep else {})}))
        if keep:
            return order
        order.status = record.status
    if record.exchange_id is not None:
        order.exchange_id = record.exchange_id
    order.size = record.size if record.size is not None else order.size
    order.deadline = record.deadline
    order.cancel = list(record.cancel) or None
    order.cancel_at = record.cancel_at
    order.updated_at = now
    session.add(Event(at=now, kind=kind, identity=identity, client_oid=record.client_oid,
                      payload=dict(detail)))
    return order
