"""A start taking the store: its schema brought up to date and its lease taken, before
anything else of the start runs.

Until the lease is this watcher's, it owns nothing and has sent nothing, so a store another
process holds locked (a watcher frozen inside a commit, a backup) is waited for with the
start's patience, each wait a `store.locked` line with the cause and the fix; past the
patience, the failure stops the start. A lease another watcher holds alive refuses the start
(`WatcherError`), unless its owner is a process of this host that no longer runs.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

from rules_engine.runtime._context import Context
from rules_engine.runtime._patience import Patience
from rules_engine.store import LeaseHeld, StorageFailed
from rules_engine.store._schema import Lease

__all__ = ["WatcherError", "own_store", "owner_dead"]


class WatcherError(Exception):
    """The watcher cannot start or must stop: the message says why and what to do."""


async def own_store(ctx: Context, owner: str, patience: Patience) -> tuple[Lease | None, int]:
    """The lease as it was before this start, and this watcher's epoch (the one a standby
    took over for it, or a fresh takeover's)."""
    attempt = 0
    while True:
        try:
            ctx.store.migrate()
            before = ctx.store.lease()  # alive and another's: this start takes it over
            fence = ctx.store.fence
            if fence is not None and fence.owner == owner:
                return before, fence.epoch  # a standby took the lease over (_standby.py)
            epoch = ctx.store.acquire_lease(
                owner, ctx.now(), timedelta(seconds=ctx.config.lease_stale_s), owner_dead)
            return before, epoch
        except LeaseHeld as err:
            raise WatcherError(str(err)) from None
        except StorageFailed as err:
            if not err.locked or not await patience.retry(
                    f"the store at {err.where}: {err.cause}", attempt, kind="store.locked",
                    fix=err.fix):
                raise
        attempt += 1


def owner_dead(owner: str) -> bool:
    """True when a lease owner `host:pid:...` is a process of this host that is gone."""
    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
