"""What every part of the store shares: the transition tables, the rule-state row, the
clientOid, the errors, and `StoreBase` (the session, the store's id, and the two writes the
others all make: a rule's state and an order's move along the table).
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from rules_engine.engine._lifecycle import STATUS_TRANSITIONS
from rules_engine.store._lease import Fence
from rules_engine.store._schema import Event, Meta, Order, RuleState

__all__ = [
    "FINAL_FIRINGS",
    "FINAL_ORDERS",
    "FIRING_TRANSITIONS",
    "ORDER_TRANSITIONS",
    "IllegalTransition",
    "StateRow",
    "StoreBase",
    "VenueMismatch",
    "client_oid",
    "engine_prefix",
    "state_row",
]

FIRING_TRANSITIONS = frozenset(
    {
        ("intent", "sent"),
        ("intent", "blocked"),
        ("intent", "done"),
        ("intent", "held"),
        ("held", "sent"),
        ("held", "done"),
        ("sent", "acknowledged"),
        ("sent", "refused"),
        ("sent", "unknown"),
        ("sent", "not_sent"),
        ("unknown", "acknowledged"),
        ("unknown", "not_placed"),
        ("not_sent", "sent"),
        ("not_placed", "sent"),
        ("not_sent", "held"),
        ("not_placed", "held"),
    }
)
FINAL_FIRINGS = frozenset({"acknowledged", "refused", "blocked", "done"})

# Orders (the `orders` table), keyed by clientOid and written with the firing's intent: their
# statuses and moves are the order table's (`engine/_lifecycle.py`, `STATUS_TRANSITIONS`),
# which decides every one of them; the watcher writes what it decided with `save_order`.
# `settle` (the CLI's `resolve` with no watcher running) is total: a move the table lacks is
# recorded as an `order.anomaly` (or `firing.anomaly`) event and changes nothing. Partial
# fills change `filled_size` and `filled_value` (`add_fill`), not the status.
ORDER_TRANSITIONS = STATUS_TRANSITIONS
FINAL_ORDERS = frozenset({"filled", "canceled", "refused", "vanished"})


class StateRow(NamedTuple):
    """A rule's state as the store keeps it (`state` is the evaluator's, serialised)."""

    identity: str
    version: int
    status: str
    firings: int
    state: dict[str, Any]
    reason: str | None


def state_row(row: RuleState) -> StateRow:
    return StateRow(row.identity, row.version, row.status, row.firings, row.state, row.reason)


class IllegalTransition(RuntimeError):
    """A transition the table does not allow: a bug that stops the rule, never an overwrite."""


class VenueMismatch(RuntimeError):
    """The venue is not the one this store traded on."""


@functools.lru_cache(maxsize=64)
def engine_prefix(engine_id: str) -> str:
    """The start every clientOid of this store shares (to adopt its orders on recovery)."""
    return "re" + hashlib.sha256(engine_id.encode()).hexdigest()[:8] + "-"


def client_oid(engine_id: str, identity: str, number: int) -> str:
    """`re` + the engine's id + a hash of (engine, rule, firing): deterministic, unique per
    store, at most 40 characters of `[A-Za-z0-9_-]`, and recognisably this engine's."""
    digest = hashlib.sha256(f"{engine_id}\x00{identity}\x00{number}".encode()).hexdigest()
    return engine_prefix(engine_id) + digest[:26]


class StoreBase:
    """The store's connection and what its parts share (`Store` sets these up)."""

    engine: Engine
    schema: str | None
    _fence: Fence | None
    _sessions: sessionmaker[Session]
    _engine_id: str | None

    def session(self) -> Session:
        return self._sessions()

    def engine_id(self) -> str:
        """Created once with the store and kept: part of every clientOid."""
        if self._engine_id is not None:
            return self._engine_id
        with self.session() as session, session.begin():
            row = session.get(Meta, "engine_id")
            if row is None:
                row = Meta(key="engine_id", value=uuid.uuid4().hex)
                session.add(row)
            self._engine_id = row.value
            return row.value

    @staticmethod
    def _put_state(session: Session, row: StateRow, now: datetime) -> None:
        stored = session.get(RuleState, row.identity)
        if stored is None:
            session.add(
                RuleState(
                    identity=row.identity,
                    version=row.version,
                    status=row.status,
                    firings=row.firings,
                    state=row.state,
                    reason=row.reason,
                    updated_at=now,
                )
            )
            return
        stored.version, stored.status, stored.firings = row.version, row.status, row.firings
        stored.state, stored.reason, stored.updated_at = row.state, row.reason, now

    @staticmethod
    def _move_order(
        session: Session, order: Order, to: str, now: datetime, payload: dict[str, Any],
        *, total: bool = False,
    ) -> None:
        """Move an order along ORDER_TRANSITIONS. With `total` (a step reported by the
        exchange, a person or a timer: `settle`), a move the table lacks is recorded as an
        `order.anomaly` event and the order keeps its status; otherwise it raises."""
        if order.status == to:
            return
        if to == "open" and order.status not in ("pending", "unknown", "not_placed"):
            return  # "it exists" arriving after the exchange already showed more of it
        if (order.status, to) not in ORDER_TRANSITIONS:
            if total:
                session.add(Event(at=now, kind="order.anomaly", identity=None,
                                  client_oid=order.client_oid, payload={
                                      "move": f"{order.status} -> {to}", "kept": order.status,
                                      **payload}))
                return
            raise IllegalTransition(f"order {order.status.upper()} -> {to.upper()}")
        order.status = to
        order.updated_at = now
        session.add(
            Event(
                at=now,
                kind=f"order.{to}",
                identity=None,
                client_oid=order.client_oid,
                payload=payload,
            )
        )
