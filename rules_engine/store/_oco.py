"""A bracket's OCO orders in the store. The first OCO of a firing is its order (written by
`Store.fire` like any order, `order_type` and `family` "oco"); each replacement after a
partial fill of the entry is one more order row of the same firing, under a fresh clientOid
(`oco_oid`), committed here before its request leaves, fenced by the lease like a firing.
The stop leg's prices live in the firing's intent (`intent["oco"]`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from rules_engine.store import _lease
from rules_engine.store._repo import Store, client_oid
from rules_engine.store._schema import Event, Firing, Order

__all__ = ["add_replacement", "armed_by", "oco_oid", "oco_rows"]


def oco_oid(engine_id: str, identity: str, number: int, replacement: int) -> str:
    """The clientOid of OCO number `replacement` (0: the first) of firing `number`: a pure
    function of the firing and the replacement number, never the same for two OCOs. The
    first is the firing's own clientOid."""
    if replacement == 0:
        return client_oid(engine_id, identity, number)
    # No rule identity holds a NUL: this is no rule's firing, and one per replacement.
    return client_oid(engine_id, f"{identity}\x00oco\x00{replacement}", number)


def add_replacement(store: Store, first: str, row: dict[str, Any], now: datetime,
                    payload: dict[str, Any]) -> None:
    """A replacement OCO (`row`: the order's columns, status `pending`) of the firing whose
    first OCO is `first`, with its event, in one fenced transaction before it is sent."""
    with store.session() as session, session.begin():
        _lease.check(session.connection(), store.fence, now)
        firing = session.scalars(select(Firing).where(Firing.client_oid == first)).one()
        session.add(Order(firing_id=firing.id, updated_at=now, **row))
        session.add(Event(at=now, kind="oco.replaced", identity=firing.identity,
                          client_oid=row["client_oid"], payload=payload))


def oco_rows(store: Store, first: str) -> list[Order]:
    """Every OCO order of the firing whose first OCO is `first`, oldest first."""
    with store.session() as session:
        firing = session.scalars(select(Firing).where(Firing.client_oid == first)).one_or_none()
        if firing is None:
            return []
        return list(session.scalars(
            select(Order).where(Order.firing_id == firing.id, Order.family == "oco")
            .order_by(Order.updated_at, Order.client_oid)))


def armed_by(store: Store, identity: str) -> set[int]:
    """The parent firings the firings of rule `identity` were armed by (`after` rules)."""
    with store.session() as session:
        rows = session.scalars(select(Firing.inputs).where(Firing.identity == identity))
        out = set()
        for inputs in rows:
            arm = inputs.get("arm") if isinstance(inputs, dict) else None
            if isinstance(arm, dict) and isinstance(arm.get("parent_firing"), int):
                out.add(arm["parent_firing"])
        return out
