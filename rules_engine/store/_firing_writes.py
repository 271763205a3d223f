"""Firings: the rules loaded and their states, and intent first (a firing, the order it sends
and the rule's new state committed together before any byte goes out), sent again under the
same clientOid when proven not placed."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rules_engine.store import _lease
from rules_engine.store._core import (
    FIRING_TRANSITIONS,
    IllegalTransition,
    StateRow,
    StoreBase,
    client_oid,
    state_row,
)
from rules_engine.store._schema import Event, Firing, Order, RuleState, RuleVersion

__all__ = ["FiringWrites"]


# The hot path's statements, built once: plain table statements with parameters (no ORM
# unit of work, no per-call compilation), so the commit itself is most of a firing's cost.
def _table(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


_INSERT_FIRING = insert(_table(Firing))
_INSERT_EVENT = insert(_table(Event))
_INSERT_ORDER = insert(_table(Order))
_INSERT_STATE = insert(_table(RuleState))
_UPDATE_STATE = update(_table(RuleState)).where(
    _table(RuleState).c.identity == bindparam("key")
)


def _decided(blocked: str | None, intent: dict[str, Any] | None, held: bool) -> str:
    """What a decided firing is: blocked (nothing sent), done (no order: actions only), held
    (an engine-held order), or sent."""
    if blocked is not None:
        return "blocked"
    if intent is None:
        return "done"
    return "held" if held else "sent"


class FiringWrites(StoreBase):
    """The rules loaded, their states, and their firings (`Store` is made of these parts)."""

    # ------------------------------------------------------------ the watcher's record
    #
    # Each method below is one transaction: a state and the events that explain it are
    # committed together or not at all.

    def log(
        self,
        kind: str,
        now: datetime,
        payload: dict[str, Any] | None = None,
        *,
        identity: str | None = None,
        oid: str | None = None,
    ) -> None:
        """Append one event that changes no state (feed stale or live, resync, an error)."""
        with self.session() as session, session.begin():
            session.add(
                Event(at=now, kind=kind, identity=identity, client_oid=oid, payload=payload or {})
            )

    def load_rules(
        self, rules: list[tuple[str, str, str, str, str | None]], now: datetime
    ) -> dict[str, tuple[int, StateRow | None]]:
        """Record each loaded rule `(identity, fingerprint, canonical, path, source)`: a new
        version when its fingerprint is new. Returns, per identity, its current version and
        the state stored for it (None for a rule never seen), with a `loaded` event each."""
        out: dict[str, tuple[int, StateRow | None]] = {}
        with self.session() as session, session.begin():
            latest: dict[str, RuleVersion] = {}
            for row in session.scalars(select(RuleVersion).order_by(RuleVersion.version)):
                latest[row.identity] = row
            states = {row.identity: row for row in session.scalars(select(RuleState))}
            for identity, fingerprint, canonical, path, source in rules:
                known = latest.get(identity)
                if known is not None and known.fingerprint == fingerprint:
                    version = known.version
                else:
                    version = 1 if known is None else known.version + 1
                    session.add(
                        RuleVersion(
                            identity=identity,
                            version=version,
                            fingerprint=fingerprint,
                            canonical=canonical,
                            path=path,
                            created_at=now,
                            source=source,
                        )
                    )
                stored = states.get(identity)
                out[identity] = (version, None if stored is None else state_row(stored))
                session.add(
                    Event(
                        at=now,
                        kind="rule.loaded",
                        identity=identity,
                        client_oid=None,
                        payload={"version": version, "path": path, "fingerprint": fingerprint},
                    )
                )
        return out

    def save_states(
        self, rows: list[StateRow], now: datetime, events: list[tuple[str, str, dict[str, Any]]]
    ) -> None:
        """Rule states and their events `(kind, identity, payload)`, in one transaction."""
        with self.session() as session, session.begin():
            for row in rows:
                self._put_state(session, row, now)
            for kind, identity, payload in events:
                session.add(
                    Event(at=now, kind=kind, identity=identity, client_oid=None, payload=payload)
                )

    # ------------------------------------------------------------ firings

    def record_intent(
        self,
        identity: str,
        number: int,
        *,
        version: int,
        inputs: dict[str, Any],
        intent: dict[str, Any] | None,
        now: datetime,
    ) -> Firing:
        """Commit a firing, and the order it will send, before anything is sent (fenced
        when it has an intent, as `fire`)."""
        oid = client_oid(self.engine_id(), identity, number) if intent is not None else None
        with self.session() as session, session.begin():
            if intent is not None:
                _lease.check(session.connection(), self._fence, now)
            return self._new_firing(session, identity, number, version, oid, inputs, intent,
                                    now)

    @staticmethod
    def _new_firing(  # noqa: PLR0917 - the columns of one firing
        session: Session, identity: str, number: int, version: int, oid: str | None,
        inputs: dict[str, Any], intent: dict[str, Any] | None, now: datetime,
    ) -> Firing:
        """A firing in `intent`, with its `fired` event (the caller commits both)."""
        firing = Firing(identity=identity, number=number, version=version, client_oid=oid,
                        inputs=inputs, intent=intent, status="intent", created_at=now)
        session.add(firing)
        session.add(Event(at=now, kind="fired", identity=identity, client_oid=oid,
                          payload={"number": number, "version": version, "inputs": inputs,
                                   "intent": intent}))
        return firing

    def move_firing(
        self, firing_id: int, to: str, now: datetime, payload: dict[str, Any] | None = None
    ) -> Firing:
        """One legal transition and its event, in one transaction."""
        with self.session() as session, session.begin():
            firing = session.get(Firing, firing_id, with_for_update=True)
            if firing is None:
                raise KeyError(f"no firing {firing_id}")
            if (firing.status, to) not in FIRING_TRANSITIONS:
                raise IllegalTransition(f"{firing.status.upper()} -> {to.upper()}")
            firing.status = to
            session.add(
                Event(
                    at=now,
                    kind=f"firing.{to}",
                    identity=firing.identity,
                    client_oid=firing.client_oid,
                    payload=payload or {},
                )
            )
        return firing

    def fire(
        self,
        identity: str,
        number: int,
        *,
        version: int,
        inputs: dict[str, Any],
        intent: dict[str, Any] | None,
        order: dict[str, Any] | None,
        state: StateRow,
        now: datetime,
        blocked: str | None = None,
        again: bool = False,
        also: tuple[StateRow, ...] = (),
        events: tuple[tuple[str, str, dict[str, Any]], ...] = (),
        held: bool = False,
        legs: tuple[dict[str, Any], ...] = (),
    ) -> None:
        """Intent first: the firing, the order it sends (status `pending`), the rule's new
        state and their events, committed together before any byte goes out. The firing is
        `sent` from this commit on (the bytes may leave at any moment after it); with
        `blocked` it is recorded as blocked with that reason, and nothing is sent.

        A firing without an order (only `notify` or `cancel` actions) is `done` at once.
        `also` and `events`: other rules' states and their events in the same transaction
        (`after R fired` rules armed by this first firing; never on a firing sent again).

        `again`: the firing exists, proven not placed (or never sent), and is sent again
        under its first clientOid. A first firing is written with plain inserts (no reads):
        this commit is on the path from a market update to the order.

        Fenced: the first statement of its transaction renews the lease at `now` only while
        this Store holds it at its epoch; else `LeaseLost` and nothing is written. Every
        firing is (blocked and `done` ones too: a rule's state must not be written by a
        watcher that lost the store), and a Store that never acquired the lease cannot fire."""
        if again:
            self._fire_again(identity, number, version=version, inputs=inputs, intent=intent,
                             order=order, state=state, now=now, blocked=blocked, legs=legs,
                             held=held)
            return
        oid = client_oid(self.engine_id(), identity, number) if intent is not None else None
        to = _decided(blocked, intent, held)
        try:
            self._fire_first(identity, number, oid, to, version, inputs, intent, order,
                             (state, *also), now, blocked, events, legs)
        except IntegrityError:  # the firing exists after all: the checked path decides
            self._fire_again(identity, number, version=version, inputs=inputs, intent=intent,
                             order=order, state=state, now=now, blocked=blocked, legs=legs,
                             held=held)

    def _fire_first(  # noqa: PLR0917 - the parts of one firing, in `fire`'s order
        self,
        identity: str,
        number: int,
        oid: str | None,
        to: str,
        version: int,
        inputs: dict[str, Any],
        intent: dict[str, Any] | None,
        order: dict[str, Any] | None,
        states: tuple[StateRow, ...],
        now: datetime,
        blocked: str | None,
        events: tuple[tuple[str, str, dict[str, Any]], ...],
        legs: tuple[dict[str, Any], ...],
    ) -> None:
        fired = {"number": number, "version": version, "inputs": inputs, "intent": intent}
        with self.engine.begin() as connection:
            _lease.check(connection, self._fence, now)
            key = connection.execute(
                _INSERT_FIRING,
                {"identity": identity, "number": number, "version": version, "client_oid": oid,
                 "inputs": inputs, "intent": intent, "status": to, "created_at": now},
            ).inserted_primary_key
            assert key is not None
            rows = [
                {"at": now, "kind": "fired", "identity": identity, "client_oid": oid,
                 "payload": fired},
                {"at": now, "kind": f"firing.{to}", "identity": identity, "client_oid": oid,
                 "payload": {"reason": blocked} if blocked is not None else {}},
            ]
            rows.extend({"at": now, "kind": kind, "identity": who, "client_oid": None,
                         "payload": extra} for kind, who, extra in events)
            connection.execute(_INSERT_EVENT, rows)
            if order is not None and oid is not None and blocked is None:
                connection.execute(
                    _INSERT_ORDER,
                    {"client_oid": oid, "firing_id": key[0], "updated_at": now, **order},
                )
                if order.get("status") == "held":  # every order status has its event
                    connection.execute(_INSERT_EVENT, {
                        "at": now, "kind": "order.held", "identity": identity,
                        "client_oid": oid, "payload": {"type": order.get("order_type")}})
            # A bracket's engine-held stop-loss, or a guard's (a firing with no order of its
            # own): an order row of its own.
            for leg in legs if blocked is None else ():
                connection.execute(_INSERT_ORDER,
                                   {"firing_id": key[0], "updated_at": now, **leg})
                connection.execute(_INSERT_EVENT, {
                    "at": now, "kind": "order.held", "identity": identity,
                    "client_oid": leg["client_oid"], "payload": {"leg": "stop-loss"}})
            for state in states:
                values = {"version": state.version, "status": state.status,
                          "firings": state.firings, "state": state.state,
                          "reason": state.reason, "updated_at": now}
                updated = connection.execute(_UPDATE_STATE, {"key": state.identity, **values})
                if updated.rowcount == 0:
                    connection.execute(_INSERT_STATE, {"identity": state.identity, **values})

    def _fire_again(
        self,
        identity: str,
        number: int,
        *,
        version: int,
        inputs: dict[str, Any],
        intent: dict[str, Any] | None,
        order: dict[str, Any] | None,
        state: StateRow,
        now: datetime,
        blocked: str | None = None,
        legs: tuple[dict[str, Any], ...] = (),
        held: bool = False,
    ) -> Firing:
        """`fire` for a firing that exists (in not_sent or not_placed), or one recorded by a
        watcher that did not know it (then it is created, as `fire` would)."""
        oid = client_oid(self.engine_id(), identity, number) if intent is not None else None
        with self.session() as session, session.begin():
            _lease.check(session.connection(), self._fence, now)
            firing = session.scalars(
                select(Firing).where(Firing.identity == identity, Firing.number == number)
            ).one_or_none()
            resend = firing is not None
            if firing is None:
                firing = self._new_firing(session, identity, number, version, oid, inputs,
                                          intent, now)
            else:
                if firing.status not in ("not_sent", "not_placed"):
                    raise IllegalTransition(f"{firing.status.upper()} -> SENT")
                firing.version, firing.inputs, firing.intent = version, inputs, intent
                session.add(
                    Event(
                        at=now,
                        kind="fired.again",
                        identity=identity,
                        client_oid=oid,
                        payload={"number": number, "version": version, "inputs": inputs,
                                 "intent": intent},
                    )
                )
            to = _decided(blocked, intent, held)
            if (firing.status, to) not in FIRING_TRANSITIONS:
                raise IllegalTransition(f"{firing.status.upper()} -> {to.upper()}")
            firing.status = to
            session.add(
                Event(
                    at=now,
                    kind=f"firing.{to}",
                    identity=identity,
                    client_oid=oid,
                    payload={"reason": blocked} if blocked is not None else {},
                )
            )
            if order is not None and oid is not None and blocked is None:
                existing = session.get(Order, oid)
                if existing is None:
                    session.flush()  # the firing's id, for the order's foreign key
                    session.add(Order(client_oid=oid, firing_id=firing.id, updated_at=now, **order))
                else:
                    self._move_order(session, existing, "held" if held else "pending", now,
                                     {"resent": resend})
                    for key, value in order.items():
                        setattr(existing, key, value)
                for leg in legs:
                    kept = session.get(Order, leg["client_oid"])
                    if kept is None:
                        session.flush()
                        session.add(Order(firing_id=firing.id, updated_at=now, **leg))
                        session.add(Event(at=now, kind="order.held", identity=identity,
                                          client_oid=leg["client_oid"],
                                          payload={"leg": "stop-loss"}))
                    elif kept.status != "held":
                        # Dropped (by `cancel all`, say) while its take-profit was unproven,
                        # never sent: the bracket starts again with its firing.
                        if kept.exchange_id is not None:
                            raise IllegalTransition(f"order {kept.status.upper()} -> HELD")
                        self._move_order(session, kept, "held", now,
                                         {"leg": "stop-loss", "resent": True})
                        for key, value in leg.items():
                            setattr(kept, key, value)
            self._put_state(session, state, now)
        return firing
