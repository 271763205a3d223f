"""The store: SQLite by default, PostgreSQL through the same code. Intent first, and every
transition written with its event row in one transaction.

Firing transitions (`FIRING_TRANSITIONS`; anything else raises `IllegalTransition("A -> B")`):

    intent   -> sent | blocked            sent: bytes left for the exchange; blocked: a limit
    sent     -> acknowledged | refused | unknown | not_sent
    unknown  -> acknowledged | not_placed (the exchange proved it absent, or a person said so)
    not_sent -> sent                      the same clientOid, later (429, auth before accept)
    not_placed -> sent                    the same firing sent again, same clientOid

SQLite runs in WAL mode with `synchronous=FULL`, so a committed intent survives a power loss,
not only a killed process; foreign keys are on. A lease row lets one watcher own a store: a
second one is refused while the first's heartbeat is fresh.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from rules_engine.store._schema import Event, Fill, Firing, Lease, Meta

__all__ = [
    "FINAL_FIRINGS",
    "FIRING_TRANSITIONS",
    "IllegalTransition",
    "LeaseHeld",
    "Store",
    "VenueMismatch",
    "client_oid",
    "engine_prefix",
]

FIRING_TRANSITIONS = frozenset(
    {
        ("intent", "sent"),
        ("intent", "blocked"),
        ("sent", "acknowledged"),
        ("sent", "refused"),
        ("sent", "unknown"),
        ("sent", "not_sent"),
        ("unknown", "acknowledged"),
        ("unknown", "not_placed"),
        ("not_sent", "sent"),
        ("not_placed", "sent"),
    }
)
FINAL_FIRINGS = frozenset({"acknowledged", "refused", "blocked"})


class IllegalTransition(RuntimeError):
    """A transition the table does not allow: a bug that stops the rule, never an overwrite."""


class LeaseHeld(RuntimeError):
    """Another watcher owns this store and is alive."""


class VenueMismatch(RuntimeError):
    """The venue is not the one this store traded on."""


def engine_prefix(engine_id: str) -> str:
    """The start every clientOid of this store shares (to adopt its orders on recovery)."""
    return "re" + hashlib.sha256(engine_id.encode()).hexdigest()[:8] + "-"


def client_oid(engine_id: str, identity: str, number: int) -> str:
    """`re` + the engine's id + a hash of (engine, rule, firing): deterministic, unique per
    store, at most 40 characters of `[A-Za-z0-9_-]`, and recognisably this engine's."""
    digest = hashlib.sha256(f"{engine_id}\x00{identity}\x00{number}".encode()).hexdigest()
    return engine_prefix(engine_id) + digest[:26]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=5000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _migrations() -> Path:
    return Path(str(resources.files("rules_engine.store").joinpath("migrations")))


class Store:
    def __init__(self, url: str, *, schema: str | None = None) -> None:
        connect_args: dict[str, Any] = {}
        if schema is not None:
            connect_args["options"] = f"-csearch_path={schema}"
        self.engine: Engine = create_engine(url, connect_args=connect_args)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.schema = schema
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

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
        with self.session() as session, session.begin():
            row = session.get(Meta, "engine_id")
            if row is None:
                row = Meta(key="engine_id", value=uuid.uuid4().hex)
                session.add(row)
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

    def acquire_lease(self, owner: str, now: datetime, stale_after: timedelta) -> None:
        with self.session() as session, session.begin():
            lease = session.get(Lease, 1, with_for_update=True)
            if lease is None:
                session.add(Lease(id=1, owner=owner, heartbeat=now, alive=True))
                return
            if lease.alive and lease.owner != owner and now - lease.heartbeat < stale_after:
                raise LeaseHeld(
                    f"another watcher ({lease.owner}) is running on this database "
                    f"(last heartbeat {lease.heartbeat:%Y-%m-%d %H:%M:%S} UTC); stop it first"
                )
            lease.owner, lease.heartbeat, lease.alive = owner, now, True

    def heartbeat(self, owner: str, now: datetime) -> None:
        with self.session() as session, session.begin():
            lease = session.get(Lease, 1)
            if lease is None or lease.owner != owner:
                raise LeaseHeld("this watcher no longer owns the store")
            lease.heartbeat = now

    def release_lease(self, owner: str) -> None:
        with self.session() as session, session.begin():
            lease = session.get(Lease, 1)
            if lease is not None and lease.owner == owner:
                lease.alive = False

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
        """Commit a firing, and the order it will send, before anything is sent."""
        oid = client_oid(self.engine_id(), identity, number) if intent is not None else None
        with self.session() as session, session.begin():
            firing = Firing(
                identity=identity,
                number=number,
                version=version,
                client_oid=oid,
                inputs=inputs,
                intent=intent,
                status="intent",
                created_at=now,
            )
            session.add(firing)
            session.add(
                Event(
                    at=now,
                    kind="fired",
                    identity=identity,
                    client_oid=oid,
                    payload={
                        "number": number,
                        "version": version,
                        "inputs": inputs,
                        "intent": intent,
                    },
                )
            )
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
