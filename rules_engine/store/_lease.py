"""The lease: one watcher owns a store, at an epoch, and every commit that lets an order out
proves it still does.

The lease is one row (`id = 1`): owner, heartbeat, alive, epoch. Every acquisition raises the
epoch by one. Taking it over is one conditional UPDATE checked by its row count (`WHERE id = 1
AND epoch = <the epoch read> AND <still takeable>`), and creating it on a fresh store is one
INSERT whose IntegrityError means another watcher created it first (then it is read again):
atomic on SQLite, whose `SELECT ... FOR UPDATE` is a no-op, and on PostgreSQL alike, and the
loser of any race gets `LeaseHeld`.

A `Fence` is (owner, epoch) as its acquisition returned it. `check` is the first statement of
every transaction that lets order bytes leave: `UPDATE lease SET heartbeat = :now WHERE id = 1
AND owner = :owner AND epoch = :epoch AND alive`; no row means another watcher took the store
over (`LeaseLost`, and the transaction rolls back with nothing written). It renews the lease at
that commit too, so no other watcher can take over until `stale_after` after it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, delete, event, false, insert, select, true, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from rules_engine.store._schema import Lease, Meta

__all__ = ["Fence", "LeaseHeld", "LeaseLost", "acquire", "check", "no_fence", "read_lease",
           "release", "renew", "standby_beat", "standby_drop", "standbys"]

_LEASE = cast(Table, Lease.__table__)
_C = _LEASE.c
_READ = select(_C.owner, _C.heartbeat, _C.alive, _C.epoch).where(_C.id == 1)
# The fence: one prepared statement, the first of a firing's transaction.
_FENCE = (
    update(_LEASE)
    .where(_C.id == 1, _C.owner == bindparam("fence_owner"),
           _C.epoch == bindparam("fence_epoch"), _C.alive == true())
    .values(heartbeat=bindparam("fence_now"))
)
_RELEASE = (
    update(_LEASE)
    .where(_C.id == 1, _C.owner == bindparam("fence_owner"),
           _C.epoch == bindparam("fence_epoch"))
    .values(alive=False)
)
_TRIES = 4  # a lost race reads again: the winner's fresh lease then refuses us


class LeaseHeld(RuntimeError):
    """Another watcher owns this store and is alive."""


class LeaseLost(LeaseHeld):
    """This watcher's lease is gone (another one took the store over): stop sending, exit."""


class Fence(NamedTuple):
    owner: str
    epoch: int


# On PostgreSQL every connection of a Store that acquired the lease gets
# `idle_in_transaction_session_timeout` = the lease's time to live: a transaction left open
# by a process that stopped, froze or was cut off (holding the lease row's lock, or a rule
# state's) is ended by the server, so a standby taking the store over is never blocked on
# its locks for longer than the lease itself would have held the store.
_IDLE_LIMITS: dict[int, str] = {}  # id(engine) -> the limit its connections get


def _limit_idle(engine: Engine, stale_after: timedelta) -> None:
    if engine.dialect.name != "postgresql":
        return
    first = id(engine) not in _IDLE_LIMITS
    _IDLE_LIMITS[id(engine)] = f"{max(int(stale_after.total_seconds() * 1000), 1)}ms"
    if first:
        event.listen(engine, "checkout", _apply_limit(id(engine)))


def _apply_limit(key: int) -> Callable[[Any, Any, Any], None]:
    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        limit = _IDLE_LIMITS.get(key)
        if limit is None or record.info.get("idle_limit") == limit:
            return
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT set_config('idle_in_transaction_session_timeout', "
                               "%s, false)", (limit,))
        finally:
            dbapi_connection.autocommit = autocommit
        record.info["idle_limit"] = limit

    return checkout


def _fence(owner: str, epoch: int, engine: Engine, stale_after: timedelta) -> Fence:
    _limit_idle(engine, stale_after)
    return Fence(owner, epoch)


def _held(owner: str, heartbeat: datetime) -> LeaseHeld:
    return LeaseHeld(
        f"another watcher ({owner}) is running on this database "
        f"(last heartbeat {heartbeat:%Y-%m-%d %H:%M:%S} UTC); stop it first"
    )


def acquire(
    engine: Engine,
    owner: str,
    now: datetime,
    stale_after: timedelta,
    owner_dead: Callable[[str], bool],
) -> Fence:
    """Own the store at a new epoch. Refused (`LeaseHeld`) while another owner's heartbeat is
    fresh, unless `owner_dead` proves that owner gone; and to the loser of a race."""
    for _ in range(_TRIES):
        with engine.connect() as connection:
            row = connection.execute(_READ).first()
        if row is None:
            try:
                with engine.begin() as connection:
                    connection.execute(insert(_LEASE), {"id": 1, "owner": owner,
                                                        "heartbeat": now, "alive": True,
                                                        "epoch": 1})
            except IntegrityError:
                continue  # created by another watcher just now: read what it wrote
            return _fence(owner, 1, engine, stale_after)
        seen_owner, heartbeat, alive, epoch = row
        dead = False
        if alive and seen_owner != owner and now - heartbeat < stale_after:
            dead = owner_dead(seen_owner)
            if not dead:
                raise _held(seen_owner, heartbeat)
        # Taken only if nothing moved since the read: same epoch, and (unless its owner is
        # proven dead) still released, stale or ours; a heartbeat in between keeps it.
        takeable: list[Any] = [_C.id == 1, _C.epoch == epoch]
        if not dead:
            takeable.append((_C.alive == false()) | (_C.heartbeat <= now - stale_after)
                            | (_C.owner == owner))
        with engine.begin() as connection:
            won = connection.execute(
                update(_LEASE).where(*takeable).values(owner=owner, heartbeat=now, alive=True,
                                                       epoch=epoch + 1)
            ).rowcount
        if won == 1:
            return _fence(owner, epoch + 1, engine, stale_after)
    with engine.connect() as connection:
        row = connection.execute(_READ).first()
    if row is not None:
        raise _held(row[0], row[1])
    raise LeaseHeld("the lease kept changing hands while this watcher tried to take it")


def _lost(connection: Connection, fence: Fence) -> LeaseLost:
    row = connection.execute(_READ).first()
    now_held = "nobody holds it now" if row is None or not row[2] else (
        f"{row[0]} holds it now, at epoch {row[3]}")
    return LeaseLost(
        f"this watcher ({fence.owner}) lost its lease on the store (epoch {fence.epoch}; "
        f"{now_held}): another watcher took the store over, so this one must stop sending "
        "and exit; its record is whole and the owner recovers its orders"
    )


def no_fence() -> LeaseLost:
    return LeaseLost(
        "this store holds no lease (acquire_lease was never called, or the lease was "
        "released): nothing that sends an order may be committed without one"
    )


def check(connection: Connection, fence: Fence | None, now: datetime) -> None:
    """The fence, as the first statement of the caller's transaction: raise `LeaseLost`
    (the caller's transaction then rolls back) unless `fence` still holds the lease; renew
    the lease's heartbeat to `now` when it does."""
    if fence is None:
        raise no_fence()
    done = connection.execute(
        _FENCE, {"fence_owner": fence.owner, "fence_epoch": fence.epoch, "fence_now": now}
    )
    if done.rowcount != 1:
        raise _lost(connection, fence)


_PROVE = (
    update(_LEASE)
    .where(_C.id == 1, _C.owner == bindparam("fence_owner"),
           _C.epoch == bindparam("fence_epoch"), _C.alive == true())
    .values(epoch=_C.epoch)
)


def prove(connection: Connection, fence: Fence) -> None:
    """Inside the caller's transaction: `LeaseLost` (and the transaction rolls back) unless
    `fence` still holds the lease. The row is written (to itself), so the proof holds until
    the transaction ends: a takeover commits before it or after it, never in between."""
    if connection.execute(
            _PROVE, {"fence_owner": fence.owner, "fence_epoch": fence.epoch}).rowcount != 1:
        raise _lost(connection, fence)


def fence_writes(sessions: sessionmaker[Session], fence_of: Callable[[], Fence | None]
                 ) -> None:
    """Every write of a Store that holds the lease is fenced, not only the firings': a
    watcher that lost the store (paused past its lease, then resumed) must not write a
    status, a state or a fill over what the new owner wrote. Each flush with something to
    write proves the fence first, in its own transaction."""

    def before_flush(session: Session, _context: Any, _instances: Any) -> None:
        fence = fence_of()
        if fence is not None and (session.new or session.dirty or session.deleted):
            prove(session.connection(), fence)

    event.listen(sessions, "before_flush", before_flush)


def renew(engine: Engine, fence: Fence | None, now: datetime) -> None:
    """The heartbeat: `check` in a transaction of its own."""
    with engine.begin() as connection:
        check(connection, fence, now)


def release(engine: Engine, fence: Fence | None) -> None:
    """Mark the lease not alive, only while it is still this fence's."""
    if fence is None:
        return
    with engine.begin() as connection:
        connection.execute(_RELEASE, {"fence_owner": fence.owner, "fence_epoch": fence.epoch})


# ---------------------------------------------------------------- standbys
#
# A standby watcher (`rules-engine run --standby`) waits for the lease without holding it.
# It says so in `meta`, one row per standby (`standby:` + a hash of its owner name), with its
# host, pid, time to live and a heartbeat, so that `status` can list the standbys beside the
# active watcher. The rows decide nothing: the lease alone says who owns the store.

_STANDBY = "standby:"


def _standby_key(owner: str) -> str:
    return _STANDBY + hashlib.sha256(owner.encode()).hexdigest()[:40]


def read_lease(engine: Engine) -> tuple[str, datetime, bool, int] | None:
    """The lease as it is now: (owner, heartbeat, alive, epoch), or None on a fresh store."""
    with engine.connect() as connection:
        row = connection.execute(_READ).first()
    if row is None:
        return None
    return str(row[0]), _aware(row[1]), bool(row[2]), int(row[3])


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def standby_beat(engine: Engine, owner: str, now: datetime, stale_after: timedelta,
                 since: datetime) -> None:
    """Register the standby `owner` (host:pid:...) or renew its heartbeat; rows of standbys
    silent for ten times their own time to live are removed on the way."""
    host, _, rest = owner.partition(":")
    pid = rest.split(":", 1)[0]
    value = json.dumps({"owner": owner, "host": host, "pid": int(pid) if pid.isdigit() else None,
                        "since": since.isoformat(), "heartbeat": now.isoformat(),
                        "stale_after_s": stale_after.total_seconds()})
    key = _standby_key(owner)
    meta = cast(Table, Meta.__table__)
    with engine.begin() as connection:
        gone = []
        for row_key, row_value in connection.execute(
                select(meta.c.key, meta.c.value).where(meta.c.key.startswith(_STANDBY))):
            entry = _entry(row_value)
            if row_key != key and (entry is None or now - entry["heartbeat_at"] > 10 * timedelta(
                    seconds=entry["stale_after_s"])):
                gone.append(row_key)
        if gone:
            connection.execute(delete(meta).where(meta.c.key.in_(gone)))
        if connection.execute(update(meta).where(meta.c.key == key).values(value=value)
                              ).rowcount == 0:
            connection.execute(insert(meta), {"key": key, "value": value})


def standby_drop(engine: Engine, owner: str) -> None:
    """Remove the standby's row (it took the store over, or it stops)."""
    meta = cast(Table, Meta.__table__)
    with engine.begin() as connection:
        connection.execute(delete(meta).where(meta.c.key == _standby_key(owner)))


def standbys(engine: Engine, now: datetime) -> list[dict[str, Any]]:
    """The registered standbys, oldest first: owner, host, pid, since, heartbeat, its age in
    seconds, and `waiting` (a heartbeat younger than its time to live) or `gone`."""
    meta = cast(Table, Meta.__table__)
    with engine.connect() as connection:
        rows = connection.execute(select(meta.c.value).where(meta.c.key.startswith(_STANDBY)))
        entries = [e for e in (_entry(value) for (value,) in rows) if e is not None]
    out = []
    for entry in sorted(entries, key=lambda e: (e["since"], e["owner"])):
        age = (now - entry.pop("heartbeat_at")).total_seconds()
        entry["heartbeat_age_s"] = round(age, 3)
        entry["state"] = "waiting" if age <= entry["stale_after_s"] else "gone"
        out.append(entry)
    return out


def _entry(value: str) -> dict[str, Any] | None:
    try:
        entry = dict(json.loads(value))
        entry["heartbeat_at"] = _aware(datetime.fromisoformat(str(entry["heartbeat"])))
        entry["stale_after_s"] = float(entry["stale_after_s"])
    except (ValueError, KeyError, TypeError):
        return None  # not written by this code: ignored, and removed by the next standby
    return entry
