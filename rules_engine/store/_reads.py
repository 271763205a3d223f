"""Reading the store: firings, orders, fills, events, rule states, the lease, and what the
risk limits need (`exposure_rows`). Nothing here writes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, text

from rules_engine.store._core import FINAL_FIRINGS, FINAL_ORDERS, StateRow, StoreBase, state_row
from rules_engine.store._schema import Event, Fill, Firing, Lease, Order, RuleState

__all__ = ["Reads"]


class Reads(StoreBase):
    """What the store holds, read (`Store` is made of these parts)."""

    def open_firings(self) -> list[Firing]:
        """Firings whose outcome is not final: what recovery must resolve first."""
        with self.session() as session:
            rows = session.scalars(
                select(Firing).where(Firing.status.not_in(FINAL_FIRINGS)).order_by(Firing.id)
            )
            return list(rows)

    def events(self, kind: str | None = None) -> list[Event]:
        with self.session() as session:
            query = select(Event).order_by(Event.id)
            if kind is not None:
                query = query.where(Event.kind == kind)
            return list(session.scalars(query))

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def firings_by_id(self, ids: set[int]) -> dict[int, Firing]:
        """The firings of these ids, in one query (recovery reads those of its open orders)."""
        if not ids:
            return {}
        with self.session() as session:
            return {f.id: f for f in session.scalars(select(Firing).where(Firing.id.in_(ids)))}

    def order_oids(self) -> set[str]:
        """Every clientOid the store knows, without loading the orders."""
        with self.session() as session:
            return set(session.scalars(select(Order.client_oid)))

    def orders(self, *, open_only: bool = False) -> list[Order]:
        with self.session() as session:
            query = select(Order).order_by(Order.updated_at, Order.client_oid)
            if open_only:
                query = query.where(Order.status.not_in(FINAL_ORDERS))
            return list(session.scalars(query))

    def order(self, oid: str) -> Order | None:
        with self.session() as session:
            return session.get(Order, oid)

    def firing_of(self, oid: str) -> Firing | None:
        with self.session() as session:
            return session.scalars(select(Firing).where(Firing.client_oid == oid)).one_or_none()

    def firing(self, identity: str, number: int) -> Firing | None:
        """A rule's firing by its number (one indexed lookup; `{pnl}` reads the exit's)."""
        with self.session() as session:
            return session.scalars(select(Firing).where(
                Firing.identity == identity, Firing.number == number)).one_or_none()

    def firings(self) -> list[Firing]:
        with self.session() as session:
            return list(session.scalars(select(Firing).order_by(Firing.id)))

    def fills(self) -> list[Fill]:
        with self.session() as session:
            return list(session.scalars(select(Fill).order_by(Fill.time, Fill.trade_id)))

    def rule_state(self, identity: str) -> StateRow | None:
        """The state stored for one rule (None for a rule never loaded on this store)."""
        with self.session() as session:
            row = session.get(RuleState, identity)
            return None if row is None else state_row(row)

    def lease(self) -> Lease | None:
        with self.session() as session:
            return session.get(Lease, 1)

    def exposure_rows(self, since: datetime | None = None
                      ) -> tuple[list[dict[str, Any]], list[datetime]]:
        """Every order with what the risk limits need: its rule and firing time (None for an
        adopted order), the value it was sent with, its status and what it traded; and the
        times of the firings that sent an order (only those from `since` on, if given).
        A final order (filled or canceled) needs only its rule, time and traded value, so
        those are read as three plain columns; the rest with their firing's intent. A store
        with 100,000 past orders is read in a fraction of what loading them as objects (with
        every firing's inputs) took."""
        final = ("filled", "canceled")
        done = (
            select(Order.client_oid, Order.status, Order.filled_value, Firing.identity,
                   Firing.created_at)
            .join(Firing, Firing.client_oid == Order.client_oid)
            .where(Order.status.in_(final))
        )
        live = (
            select(Order.client_oid, Order.status, Order.filled_value, Order.price,
                   Order.size, Order.funds, Firing.identity, Firing.created_at, Firing.intent)
            .select_from(Order)
            .outerjoin(Firing, Firing.client_oid == Order.client_oid)
            .where(Order.status.not_in(final))
        )
        times = select(Firing.created_at).where(Firing.client_oid.is_not(None))
        if since is not None:
            times = times.where(Firing.created_at >= since)
        with self.session() as session:
            rows = [{"client_oid": oid, "rule": rule, "at": at, "value": None,
                     "status": status, "filled_value": filled, "price": None, "size": None,
                     "funds": None}
                    for oid, status, filled, rule, at in session.execute(done)]
            for oid, status, filled, price, size, funds, rule, at, intent in session.execute(
                    live):
                notional = (intent or {}).get("notional") if rule is not None else None
                rows.append({
                    "client_oid": oid, "rule": rule, "at": at,
                    "value": Decimal(notional) if notional is not None else None,
                    "status": status, "filled_value": filled,
                    "price": price, "size": size, "funds": funds,
                })
            recent = list(session.scalars(times))
        rows.sort(key=lambda row: row["at"] or datetime.min.replace(tzinfo=UTC))
        return rows, sorted(recent)
