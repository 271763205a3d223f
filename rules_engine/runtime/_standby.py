"""The hot standby (`rules-engine run --standby`): a watcher that waits for the store's lease
without touching the exchange, then takes the store over.

While it waits it does three things, all in the store: it renews its own row among the
standbys (`Store.standby_beat`: owner, host, pid, heartbeat; `status` lists them), it reads
the lease, and it tries the store's atomic takeover (`Store.acquire_lease`), which succeeds
only once the active watcher's lease has expired (its heartbeat older than `lease_stale_s`),
it was released, or its owner is a process of this host that no longer runs. Of two standbys
trying at once, one wins; the other reads the winner's fresh lease and goes on waiting. No
order, no private stream, no signed request: the exchange sees nothing of a standby.

Once it holds the lease, the watcher's normal start runs (venue check, recovery, feeds,
engine-held orders resumed), and `Takeover.report` says how long the takeover took: from the
moment the old lease expired (its last heartbeat plus the time to live) to this watcher
being ready.

A standby on SQLite must run on the same host as the active watcher (a SQLite file shared
over a network file system has no reliable locking): it refuses to wait on a lease held from
another host.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy.exc import IntegrityError, ProgrammingError

from rules_engine.runtime._config import WatcherConfig
from rules_engine.store import LeaseHeld, Store

__all__ = ["Standby", "StandbyRefused", "Takeover"]


class StandbyRefused(Exception):
    """This standby cannot wait on this store: the message says why and what to do."""


class Takeover(NamedTuple):
    """How the store was taken over: the lease before (None on a fresh store or when it
    changed hands in between), the new epoch, and when."""

    previous_owner: str | None
    previous_heartbeat: datetime | None
    previous_alive: bool
    epoch: int
    acquired_at: datetime
    acquired_mono: float
    waited_s: float
    stale_after: timedelta

    def report(self, ready_at: datetime, ready_mono: float) -> dict[str, Any]:
        """The figures of the takeover, for the output and the store's event log:
        `takeover_s` is from the old lease's expiry (heartbeat + time to live) to ready (less
        than 0 when the old owner was proven gone on this host before its lease expired, or
        had released it); `since_heartbeat_s` from its last heartbeat; `start_s` from this
        watcher's acquisition to ready."""
        out: dict[str, Any] = {
            "epoch": self.epoch, "previous_owner": self.previous_owner,
            "lease_stale_s": self.stale_after.total_seconds(),
            "waited_s": round(self.waited_s, 3),
            "start_s": round(ready_mono - self.acquired_mono, 3),
        }
        if self.previous_heartbeat is not None:
            expired = self.previous_heartbeat + self.stale_after
            out.update({
                "previous_heartbeat": self.previous_heartbeat.isoformat(),
                "previous_released": not self.previous_alive,
                "lease_expired_at": expired.isoformat(),
                "since_heartbeat_s": round((ready_at - self.previous_heartbeat)
                                           .total_seconds(), 3),
                "takeover_s": round((ready_at - expired).total_seconds(), 3),
            })
        return out


class Standby:
    def __init__(self, store: Store, owner: str, config: WatcherConfig, *,
                 now: Callable[[], datetime], emit: Callable[[str, dict[str, Any]], None],
                 owner_dead: Callable[[str], bool]) -> None:
        self.store = store
        self.owner = owner
        self.config = config
        self.now = now
        self.emit = emit
        self.owner_dead = owner_dead
        self.stale_after = timedelta(seconds=config.lease_stale_s)
        # How often the lease is tried: the takeover waits this long at most past expiry.
        self.poll_s = max(0.05, min(config.heartbeat_s / 2, 0.5))
        self.sqlite = store.engine.dialect.name == "sqlite"
        self.host = owner.split(":", 1)[0]

    async def wait(self, stop: asyncio.Event) -> Takeover | None:
        """Wait until this standby holds the lease (its Takeover), or `stop` is set (None)."""
        store = self.store
        await self._migrate()
        since = self.now()
        started = time.monotonic()
        seen = store.lease_now()
        self.emit("standby.waiting", {
            "owner": self.owner, "lease_stale_s": self.config.lease_stale_s,
            "active": seen[0] if seen is not None and seen[2] else None})
        beat_at = -1e9
        took: Takeover | None = None
        try:
            while not stop.is_set():
                now = self.now()
                lease = store.lease_now()
                self._check_host(lease)
                if time.monotonic() - beat_at >= self.config.heartbeat_s:
                    store.standby_beat(self.owner, now, self.stale_after, since)
                    beat_at = time.monotonic()
                try:
                    epoch = store.acquire_lease(self.owner, now, self.stale_after,
                                                self.owner_dead)
                except LeaseHeld:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.poll_s)
                    continue
                before = lease if lease is not None and lease[3] + 1 == epoch else None
                took = Takeover(
                    before[0] if before else None, before[1] if before else None,
                    before[2] if before else False, epoch, now, time.monotonic(),
                    time.monotonic() - started, self.stale_after)
                # The line a reader of the output takes as "the lease is this one's now".
                self.emit("standby.acquired", {"epoch": epoch, "previous_owner": took[0],
                                               "waited_s": round(took.waited_s, 3)})
                return took
            return None
        finally:
            with contextlib.suppress(Exception):  # the store failed: the row goes stale
                store.standby_drop(self.owner)

    async def _migrate(self) -> None:
        """The schema brought up to date. Standbys started together on a fresh PostgreSQL
        schema race to create it (a duplicate type or table): the loser tries again, and
        finds it made."""
        for attempt in range(5):
            try:
                self.store.migrate()
                return
            except (IntegrityError, ProgrammingError):
                if attempt == 4:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))

    def _check_host(self, lease: tuple[str, datetime, bool, int] | None) -> None:
        if not self.sqlite or lease is None or not lease[2]:
            return
        host = lease[0].split(":", 1)[0]
        if host != self.host:
            raise StandbyRefused(
                f"the store is SQLite and its active watcher ({lease[0]}) runs on another "
                f"host than this standby ({self.host}): a SQLite file cannot be shared "
                "between machines safely; run the standby on the same host, or keep the "
                "store in PostgreSQL for a standby on another machine")
