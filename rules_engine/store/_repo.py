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

The store is `Store`, put together from its parts: `_firing_writes.py` (rules loaded, their
states, firings), `_order_writes.py` (an order's steps, fills, triggers), `_controls.py` (a
person's halt, resolve and unblock), `_reads.py`, and `_core.py` (what they share).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, overload

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from rules_engine.store import _lease
from rules_engine.store._controls import Controls
from rules_engine.store._core import (
    FINAL_FIRINGS,
    FINAL_ORDERS,
    FIRING_TRANSITIONS,
    ORDER_TRANSITIONS,
    IllegalTransition,
    StateRow,
    VenueMismatch,
    client_oid,
    engine_prefix,
)
from rules_engine.store._failure import StorageFailed, watch_failures
from rules_engine.store._firing_writes import FiringWrites
from rules_engine.store._lease import Fence, LeaseHeld, LeaseLost
from rules_engine.store._order_writes import OrderWrites
from rules_engine.store._reads import Reads
from rules_engine.store._schema import Meta

__all__ = [
    "FINAL_FIRINGS",
    "FINAL_ORDERS",
    "FIRING_TRANSITIONS",
    "ORDER_TRANSITIONS",
    "Fence",
    "IllegalTransition",
    "LeaseHeld",
    "LeaseLost",
    "StateRow",
    "StorageFailed",
    "Store",
    "VenueMismatch",
    "client_oid",
    "engine_prefix",
]


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


class Store(FiringWrites, OrderWrites, Controls, Reads):
    """One store: its connection, schema, identity and lease; the rest is its parts'."""

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
        _lease.fence_writes(self._sessions, lambda: self._fence)
        self._engine_id: str | None = None

    def close(self) -> None:
        self.engine.dispose()

    def migrate(self) -> None:
        """Bring the schema to the newest migration (from empty, or from any older one)."""
        config = Config()
        config.set_main_option("script_location", str(_migrations()))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            config.attributes["schema"] = self.schema
            command.upgrade(config, "head")

    # ------------------------------------------------------------ identity of the store

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
