"""The store: SQLite by default, PostgreSQL through the same code. Intent first, and every
transition written with its event row in one transaction.

Firing transitions (`FIRING_TRANSITIONS`; anything else raises `IllegalTransition("A -> B")`):

    intent   -> sent | blocked | done     sent: bytes may leave; blocked: a limit; done: no order
    sent     -> acknowledged | refused | unknown | not_sent
    unknown  -> acknowledged | not_placed (the exchange proved it absent, or a person said so)
    not_sent -> sent | held               the same clientOid, later (429, auth before accept)
    not_placed -> sent | held             the same firing sent (or held) again, same clientOid

SQLite runs in WAL mode with `synchronous=FULL`, so a committed intent survives a power loss,
not only a killed process; foreign keys are on. A lease row lets one watcher own a store: a
second one is refused while the first's heartbeat is fresh, and every commit that lets an order
out checks, as its first statement, that this Store still holds it at its epoch
(`_lease.py`). The database failing underneath raises `StorageFailed` (`_failure.py`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple, cast, overload

from alembic import command
from alembic.config import Config
from sqlalchemy import Table, bindparam, create_engine, event, insert, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from rules_engine.engine._lifecycle import STATUS_TRANSITIONS
from rules_engine.engine._order_types import OrderRecord
from rules_engine.store import _lease
from rules_engine.store._failure import StorageFailed, watch_failures
from rules_engine.store._lease import Fence, LeaseHeld, LeaseLost
from rules_engine.store._order_rows import move_firing_total, write_order
from rules_engine.store._schema import (
    Event,
    Fill,
    Firing,
    Lease,
    Meta,
    Order,
    RuleState,
    RuleVersion,
)

__all__ = [
    "FINAL_FIRINGS",
    "FINAL_ORDERS",
    "FIRING_TRANSITIONS",
    "ORDER_TRANSITIONS",
    "Fence",
    "IllegalTransition",
    "LeaseHeld",
    "LeaseLost",
    "StorageFailed",
    "Store",
    "VenueMismatch",
    "client_oid",
    "engine_prefix",
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


class StateRow(NamedTuple):
    """A rule's state as the store keeps it (`state` is the evaluator's, serialised)."""

    identity: str
    version: int
    status: str
    firings: int
    state: dict[str, Any]
    reason: str | None


def _state_row(row: RuleState) -> StateRow:
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


def _decided(blocked: str | None, intent: dict[str, Any] | None, held: bool) -> str:
    """What a decided firing is: blocked (nothing sent), done (no order: actions only), held
    (an engine-held order), or sent."""
    if blocked is not None:
        return "blocked"
    if intent is None:
        return "done"
    return "held" if held else "sent"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=5000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_pragmas_not_durable(dbapi_connection: Any, _record: Any) -> None:
    """A store nothing needs after a crash (a backtest's): no fsync, the journal in memory."""
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=MEMORY", "synchronous=OFF", "foreign_keys=ON",
                   "busy_timeout=5000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _migrations() -> Path:
    return Path(str(resources.files("rules_engine.store").joinpath("migrations")))


class Store:
    def __init__(self, url: str, *, schema: str | None = None, durable: bool = True) -> None:
        """`durable=False` (SQLite only): commits are not synced to disk, for a store that
        is thrown away after its run (a backtest's); the default syncs every commit."""
        connect_args: dict[str, Any] = {}
        if schema is not None:
            connect_args["options"] = f"-csearch_path={schema}"
        # PostgreSQL: a connection that died while idle in the pool (a server restart, an
        # admin's pg_terminate_backend) is replaced at checkout, before any statement runs;
        # one that dies inside a transaction raises StorageFailed.
        sqlite = url.startswith("sqlite")
        self.engine: Engine = create_engine(url, connect_args=connect_args,
                                            pool_pre_ping=not sqlite)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect",
                         _sqlite_pragmas if durable else _sqlite_pragmas_not_durable)
        watch_failures(self.engine)
        self._fence: Fence | None = None
        self.schema = schema
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._engine_id: str | None = None

    def close(self) -> None:
        self.engine.dispose()

    def session(self) -> Session:
        return self._sessions()

    def migrate(self) -> None:
        """Bring the schema to the newest migration (from empty, or from any older one)."""
        config = Config()
        config.set_main_option("script_location", str(_migrations()))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            config.attributes["schema"] = self.schema
            command.upgrade(config, "head")

    # ------------------------------------------------------------ identity of the store

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

    def check_venue(self, instance: str) -> None:
        """Record the venue's instance id the first time; refuse a different one later."""
        with self.session() as session, session.begin():
            row = session.get(Meta, "venue_instance")
            if row is None:
                session.add(Meta(key="venue_instance", value=instance))
            elif row.value != instance:
                raise VenueMismatch(
                    f"this store traded on venue {row.value}, but the exchange now reports "
                    f"{instance}: it is another venue (a fresh sandbox, another account); use "
                    "a new database for it instead of reconciling orders against it"
                )

    # ------------------------------------------------------------ the lease

    def acquire_lease(
        self,
        owner: str,
        now: datetime,
        stale_after: timedelta,
        owner_dead: Callable[[str], bool] = lambda owner: False,
    ) -> int:
        """Own the store; returns the lease's new epoch, which this Store keeps as its fence.
        Refused (`LeaseHeld`) while another owner's heartbeat is fresh, unless `owner_dead`
        proves that owner gone (a process of this host that no longer runs), and to the loser
        of two watchers starting together."""
        self._fence = _lease.acquire(self.engine, owner, now, stale_after, owner_dead)
        return self._fence.epoch

    @property
    def fence(self) -> Fence | None:
        """(owner, epoch) of the lease this Store acquired; None before or after."""
        return self._fence

    @overload
    def heartbeat(self, now: datetime, /) -> None: ...
    @overload  # main's watcher, until it calls heartbeat(now): the owner must be the fence's
    def heartbeat(self, owner: str, now: datetime, /) -> None: ...

    def heartbeat(self, first: datetime | str, now: datetime | None = None, /) -> None:
        """Renew the lease while this Store still holds it at its epoch; `LeaseLost` when
        another watcher took the store over (or this Store never acquired it)."""
        if isinstance(first, str):
            assert now is not None
            if self._fence is None or self._fence.owner != first:
                raise _lease.no_fence()
        else:
            now = first
        _lease.renew(self.engine, self._fence, now)

    def release_lease(self, owner: str | None = None) -> None:
        """Mark the lease not alive (only while it is still this Store's) and drop the fence.
        `owner`: main's watcher passes its own; it must be the fence's."""
        if owner is not None and self._fence is not None and self._fence.owner != owner:
            return
        fence, self._fence = self._fence, None
        _lease.release(self.engine, fence)

    def lease_now(self) -> tuple[str, datetime, bool, int] | None:
        """The lease as it is now: (owner, heartbeat, alive, epoch); None on a fresh store."""
        return _lease.read_lease(self.engine)

    def standby_beat(self, owner: str, now: datetime, stale_after: timedelta,
                     since: datetime) -> None:
        """A standby watcher says it waits for the lease (`status` lists it)."""
        _lease.standby_beat(self.engine, owner, now, stale_after, since)

    def standby_drop(self, owner: str) -> None:
        _lease.standby_drop(self.engine, owner)

    def standbys(self, now: datetime) -> list[dict[str, Any]]:
        """The standby watchers registered on this store, `waiting` or `gone`."""
        return _lease.standbys(self.engine, now)

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

    def open_firings(self) -> list[Firing]:
        """Firings whose outcome is not final: what recovery must resolve first."""
        with self.session() as session:
            rows = session.scalars(
                select(Firing).where(Firing.status.not_in(FINAL_FIRINGS)).order_by(Firing.id)
            )
            return list(rows)

    # ------------------------------------------------------------ fills and events

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
                session.add(
                    Fill(
                        trade_id=trade_id,
                        client_oid=oid,
                        price=price,
                        size=size,
                        fee=fee,
                        fee_currency=fee_currency,
                        time=time,
                    )
                )
                session.add(
                    Event(
                        at=time,
                        kind="fill",
                        identity=None,
                        client_oid=oid,
                        payload={"trade_id": trade_id, "price": str(price), "size": str(size)},
                    )
                )
        except IntegrityError:
            return False
        return True

    def events(self, kind: str | None = None) -> list[Event]:
        with self.session() as session:
            query = select(Event).order_by(Event.id)
            if kind is not None:
                query = query.where(Event.kind == kind)
            return list(session.scalars(query))

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

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
                out[identity] = (version, None if stored is None else _state_row(stored))
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
            firing = session.scalars(
                select(Firing).where(Firing.client_oid == oid).with_for_update()
            ).one_or_none()
            if (firing is not None and firing_to is not None and firing.status != firing_to
                    and (firing.status, firing_to) not in FIRING_TRANSITIONS):
                # What the exchange, a person or a timer reports is total: a move the
                # table does not have is an anomaly on record, never a crash.
                session.add(Event(at=now, kind="firing.anomaly", identity=firing.identity,
                                  client_oid=oid, payload={
                                      "move": f"{firing.status} -> {firing_to}",
                                      "kept": firing.status, **payload}))
                firing_to = None
            if firing is not None and firing_to is not None and firing.status != firing_to:
                firing.status = firing_to
                session.add(
                    Event(
                        at=now,
                        kind=f"firing.{firing_to}",
                        identity=firing.identity,
                        client_oid=oid,
                        payload=payload,
                    )
                )
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
        decided again, `after` rules armed). Returns the order row as written."""
        detail = detail or {}
        with self.session() as session, session.begin():
            move_firing_total(session, record.client_oid, firing_to, now, payload=detail,
                              transitions=FIRING_TRANSITIONS)
            order = write_order(session, record, now, kind, detail)
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
                session.add(
                    Fill(
                        trade_id=trade_id,
                        client_oid=oid,
                        price=price,
                        size=size,
                        fee=fee,
                        fee_currency=fee_currency,
                        time=time,
                    )
                )
                order.filled_size += size
                order.filled_value += price * size
                order.updated_at = time
                session.add(
                    Event(
                        at=time,
                        kind="fill",
                        identity=None,
                        client_oid=oid,
                        payload={"trade_id": trade_id, "price": str(price), "size": str(size)},
                    )
                )
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

    def mark(self, oid: str, price: Decimal, now: datetime) -> None:
        """A trailing stop's new high (or low) water mark: state, not an event."""
        with self.session() as session, session.begin():
            row = session.get(Order, oid, with_for_update=True)
            if row is not None and row.status == "held":
                row.price, row.updated_at = price, now

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

    # ------------------------------------------------------------ control: halt, resolve
    #
    # A person's requests are rows in `meta`, so they reach a running watcher (which polls
    # them) and hold across restarts; each is answered in the store too.

    def _meta_get(self, key: str) -> str | None:
        with self.session() as session:
            row = session.get(Meta, key)
            return None if row is None else row.value

    def _meta_put(self, session: Session, key: str, value: str | None) -> None:
        row = session.get(Meta, key)
        if value is None:
            if row is not None:
                session.delete(row)
        elif row is None:
            session.add(Meta(key=key, value=value))
        else:
            row.value = value

    def request_halt(self, everything: bool, now: datetime, by: str) -> str:
        """The kill switch: held until `resume`. Returns the request's id, which the watcher
        writes back as `halt_ack` once it has stopped firing and cancelled what it must."""
        request = uuid.uuid4().hex
        value = json.dumps({"all": everything, "at": now.isoformat(), "request": request,
                            "by": by})
        with self.session() as session, session.begin():
            self._meta_put(session, "halt", value)
            session.add(Event(at=now, kind="halt.requested", identity=None, client_oid=None,
                              payload={"all": everything, "request": request, "by": by}))
        return request

    def resume(self, now: datetime, by: str) -> bool:
        """Lift the kill switch; False when it was not on."""
        with self.session() as session, session.begin():
            if session.get(Meta, "halt") is None:
                return False
            self._meta_put(session, "halt", None)
            self._meta_put(session, "halt_ack", None)
            self._meta_put(session, "halt_progress", None)
            session.add(Event(at=now, kind="halt.lifted", identity=None, client_oid=None,
                              payload={"by": by}))
        return True

    def halt(self) -> dict[str, Any] | None:
        value = self._meta_get("halt")
        return None if value is None else dict(json.loads(value))

    def halt_acknowledged(self) -> str | None:
        return self._meta_get("halt_ack")

    def halt_progress(self) -> dict[str, Any] | None:
        """The watcher's last word on the halt: the request, the cancels asked, confirmed
        (`cancelled`) and still `open` on the exchange."""
        value = self._meta_get("halt_progress")
        return None if value is None else dict(json.loads(value))

    def acknowledge_halt(self, request: str, now: datetime, payload: dict[str, Any]) -> None:
        """The watcher took the halt `request`; `payload` says what it asked and what is
        still open (written again each time that shrinks: `halt_progress`)."""
        with self.session() as session, session.begin():
            self._meta_put(session, "halt_ack", request)
            self._meta_put(session, "halt_progress", json.dumps({"request": request,
                                                                 **payload}))
            session.add(Event(at=now, kind="halt.acknowledged", identity=None,
                              client_oid=None, payload={"request": request, **payload}))

    def request_resolution(self, oid: str, placed: bool, now: datetime, by: str) -> None:
        with self.session() as session, session.begin():
            self._meta_put(session, f"resolve:{oid}", "placed" if placed else "not-placed")
            session.add(Event(at=now, kind="resolve.requested", identity=None, client_oid=oid,
                              payload={"placed": placed, "by": by}))

    def resolutions(self) -> dict[str, bool]:
        """Pending requests of `rules-engine resolve`: clientOid -> placed."""
        with self.session() as session:
            rows = session.scalars(select(Meta).where(Meta.key.startswith("resolve:")))
            return {row.key[len("resolve:"):]: row.value == "placed" for row in rows}

    def resolution_done(self, oid: str) -> None:
        with self.session() as session, session.begin():
            self._meta_put(session, f"resolve:{oid}", None)

    def rule_state(self, identity: str) -> StateRow | None:
        """The state stored for one rule (None for a rule never loaded on this store)."""
        with self.session() as session:
            row = session.get(RuleState, identity)
            return None if row is None else _state_row(row)

    @staticmethod
    def _unblock_key(identity: str) -> str:
        # An identity may be longer than a key (128 against 64): the key holds its hash.
        return "unblock:" + hashlib.sha256(identity.encode()).hexdigest()[:40]

    def request_unblock(self, identity: str, now: datetime, by: str) -> None:
        """`rules-engine unblock`: held until a watcher takes it (`unblock_done`)."""
        with self.session() as session, session.begin():
            self._meta_put(session, self._unblock_key(identity),
                           json.dumps({"rule": identity, "by": by}))
            session.add(Event(at=now, kind="unblock.requested", identity=identity,
                              client_oid=None, payload={"by": by}))

    def unblocks(self) -> list[str]:
        """The rules `rules-engine unblock` asked for and no watcher has taken yet."""
        with self.session() as session:
            rows = session.scalars(select(Meta.value).where(Meta.key.startswith("unblock:")))
            return sorted(str(json.loads(value)["rule"]) for value in rows)

    def unblock_done(self, identity: str) -> None:
        with self.session() as session, session.begin():
            self._meta_put(session, self._unblock_key(identity), None)

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
