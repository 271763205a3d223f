"""An order's life after its firing: each step the exchange, a person or a timer reports
(`settle`, `save_order`), fills, orders adopted from the exchange, and an engine-held order
sent when it triggers. Each method is one transaction."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rules_engine.engine._order_types import OrderRecord
from rules_engine.store import _lease
from rules_engine.store._core import FIRING_TRANSITIONS, IllegalTransition, StateRow, StoreBase
from rules_engine.store._order_rows import move_firing_total, write_order
from rules_engine.store._schema import Event, Fill, Firing, Order

__all__ = ["OrderWrites"]


class OrderWrites(StoreBase):
    """The writes of an order's life after its firing (`Store` is made of these parts)."""

    def settle(
        self,
        oid: str,
        now: datetime,
        *,
        firing_to: str | None = None,
        order_to: str | None = None,
        exchange_id: str | None = None,
        filled: tuple[Decimal, Decimal] | None = None,
        state: StateRow | None = None,
        payload: dict[str, Any] | None = None,
        also: tuple[StateRow, ...] = (),
        events: tuple[tuple[str, str, dict[str, Any]], ...] = (),
    ) -> tuple[Firing | None, Order | None]:
        """One step of an order's life, in one transaction: the firing's transition (legal
        moves only; a firing already past it is left alone), the order's status, exchange id
        and filled totals `(size, value)` as the exchange reports them, the rule state, and
        `also` other rules' states with their `events` (`after` rules armed by this step)."""
        payload = payload or {}
        with self.session() as session, session.begin():
            # What the exchange, a person or a timer reports is total: a move the firing
            # table does not have is an anomaly on record, never a crash.
            firing = move_firing_total(session, oid, firing_to, now, payload=payload,
                                       transitions=FIRING_TRANSITIONS)
            order = session.get(Order, oid, with_for_update=True)
            if order is not None:
                if exchange_id is not None and order.exchange_id != exchange_id:
                    order.exchange_id = exchange_id
                if filled is not None and (order.filled_size, order.filled_value) != filled:
                    order.filled_size, order.filled_value = filled
                    order.updated_at = now
                if order_to is not None:
                    self._move_order(session, order, order_to, now, payload, total=True)
            if state is not None:
                self._put_state(session, state, now)
            for row in also:
                self._put_state(session, row, now)
            for kind, identity, extra in events:
                session.add(
                    Event(at=now, kind=kind, identity=identity, client_oid=None, payload=extra)
                )
        return firing, order

    def save_order(
        self,
        record: OrderRecord,
        now: datetime,
        kind: str,
        detail: dict[str, Any] | None = None,
        *,
        firing_to: str | None = None,
        also: tuple[StateRow, ...] = (),
        events: tuple[tuple[str, str, dict[str, Any]], ...] = (),
    ) -> Order | None:
        """One `Record` of the order table, in one transaction: the order as the table
        decided it with its event `kind`, its firing's move (`firing_to`, total), and the
        rule rows of the same step (`also`, with their `events`: a rule blocked, a firing
        decided again, `after` rules armed). Returns the order row as written; when the row
        is final and the record would leave it by a move the table lacks (a stale writer),
        nothing of the step is written but the anomaly, and the row is returned as stored."""
        detail = detail or {}
        with self.session() as session, session.begin():
            move_firing_total(session, record.client_oid, firing_to, now, payload=detail,
                              transitions=FIRING_TRANSITIONS)
            order = write_order(session, record, now, kind, detail)
            if order is not None and order.status != record.status:
                return order  # a stale record kept out: so are the rule rows of its step
            for row in also:
                self._put_state(session, row, now)
            for what, identity, extra in events:
                session.add(Event(at=now, kind=what, identity=identity, client_oid=None,
                                  payload=extra))
        return order

    def adopt_order(self, order: dict[str, Any], now: datetime, reason: str) -> bool:
        """An order of this engine's prefix the store did not know: track it (False when it
        was known after all). The row is built from exchange data only."""
        with self.session() as session, session.begin():
            if session.get(Order, order["client_oid"]) is not None:
                return False
            session.add(Order(firing_id=None, updated_at=now, **order))
            session.add(
                Event(
                    at=now,
                    kind="order.adopted",
                    identity=None,
                    client_oid=order["client_oid"],
                    payload={"reason": reason, "exchange_id": order.get("exchange_id")},
                )
            )
        return True

    def add_fill(
        self,
        trade_id: str,
        oid: str,
        *,
        price: Decimal,
        size: Decimal,
        fee: Decimal | None,
        fee_currency: str | None,
        time: datetime,
    ) -> Order | None:
        """A fill, once (by trade id), and the order's filled totals with it. Returns the
        updated order, or None when this trade id was already recorded."""
        try:
            with self.session() as session, session.begin():
                order = session.get(Order, oid, with_for_update=True)
                if order is None:
                    raise KeyError(f"no order {oid}")
                if session.get(Fill, (trade_id, oid)) is not None:
                    return None
                self._add_fill_rows(session, trade_id, oid, price=price, size=size, fee=fee,
                                    fee_currency=fee_currency, time=time)
                order.filled_size += size
                order.filled_value += price * size
                order.updated_at = time
                return order
        except IntegrityError:
            return None

    def trigger(self, oid: str, now: datetime, *, intent: dict[str, Any],
                order: dict[str, Any], payload: dict[str, Any]) -> None:
        """An engine-held order triggered: the order it now sends, committed (firing `held ->
        sent`, order `held -> pending`) before the request leaves. Fenced, as `fire`."""
        with self.session() as session, session.begin():
            _lease.check(session.connection(), self._fence, now)
            firing = session.scalars(
                select(Firing).where(Firing.client_oid == oid).with_for_update()).one()
            if (firing.status, "sent") not in FIRING_TRANSITIONS:
                raise IllegalTransition(f"{firing.status.upper()} -> SENT")
            firing.status, firing.intent = "sent", {**(firing.intent or {}), **intent}
            session.add(Event(at=now, kind="firing.sent", identity=firing.identity,
                              client_oid=oid, payload=payload))
            row = session.get(Order, oid, with_for_update=True)
            assert row is not None
            self._move_order(session, row, "pending", now, payload)
            for key, value in order.items():
                setattr(row, key, value)

    def send_leg(self, oid: str, now: datetime, *, size: Decimal,
                 deadline_at: datetime | None) -> None:
        """A bracket's stop-loss triggered: the market order it sends (what the take-profit
        left), committed before the request leaves. Fenced, as `fire`."""
        with self.session() as session, session.begin():
            _lease.check(session.connection(), self._fence, now)
            row = session.get(Order, oid, with_for_update=True)
            assert row is not None
            self._move_order(session, row, "pending", now, {"size": str(size),
                                                             "leg": "stop-loss"})
            row.order_type, row.size, row.price, row.deadline = "market", size, None, deadline_at

    def move_stop(self, oid: str, trigger: Decimal, now: datetime,
                  payload: dict[str, Any]) -> None:
        """A held stop's trigger moved (`move stop-loss ... after RULE filled`): its row's
        price, with a `stop_loss.moved` event, before the new trigger counts. Fenced, as
        `fire`."""
        with self.session() as session, session.begin():
            _lease.check(session.connection(), self._fence, now)
            row = session.get(Order, oid, with_for_update=True)
            if row is None or row.status not in ("held", "not_placed"):
                return
            row.price, row.updated_at = trigger, now
            session.add(Event(at=now, kind="stop_loss.moved", identity=None, client_oid=oid,
                              payload=payload))

    def mark(self, oid: str, price: Decimal, now: datetime) -> None:
        """A trailing stop's new high (or low) water mark: state, not an event."""
        with self.session() as session, session.begin():
            row = session.get(Order, oid, with_for_update=True)
            if row is not None and row.status == "held":
                row.price, row.updated_at = price, now

    def record_fill(
        self,
        trade_id: str,
        oid: str,
        *,
        price: Decimal,
        size: Decimal,
        fee: Decimal | None,
        fee_currency: str | None,
        time: datetime,
    ) -> bool:
        """Record a fill once: False when this trade id was already recorded."""
        try:
            with self.session() as session, session.begin():
                self._add_fill_rows(session, trade_id, oid, price=price, size=size, fee=fee,
                                    fee_currency=fee_currency, time=time)
        except IntegrityError:
            return False
        return True

    @staticmethod
    def _add_fill_rows(session: Session, trade_id: str, oid: str, *, price: Decimal,
                       size: Decimal, fee: Decimal | None, fee_currency: str | None,
                       time: datetime) -> None:
        """A fill's row and its `fill` event (the caller commits both)."""
        session.add(Fill(trade_id=trade_id, client_oid=oid, price=price, size=size, fee=fee,
                         fee_currency=fee_currency, time=time))
        session.add(Event(at=time, kind="fill", identity=None, client_oid=oid,
                          payload={"trade_id": trade_id, "price": str(price),
                                   "size": str(size)}))
