"""Real processes racing for a store's lease (tests/test_store_lease.py).

Each racer opens its own Store and, round after round, waits on a barrier shared with its rival
and the test, then calls `acquire_lease` at once and reports what happened. The test sets the
lease up between rounds (a dead owner, or no lease at all), while both racers wait.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["OWNERS_HOST", "owner_dead", "racer"]

OWNERS_HOST = socket.gethostname()
STALE_AFTER = timedelta(seconds=15)


def owner_dead(owner: str) -> bool:
    """As the watcher decides it: an owner `host:pid:...` of this host whose pid is gone."""
    host, _, rest = owner.partition(":")
    pid = rest.split(":", 1)[0]
    if host != OWNERS_HOST or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def racer(db: tuple[str, str | None], name: str, rounds: int, barrier: Any,
          results: Any) -> None:
    from rules_engine.store import Store

    store = Store(db[0], schema=db[1])
    try:
        for number in range(rounds):
            barrier.wait(timeout=60)
            owner = f"{OWNERS_HOST}:{os.getpid()}:{name}-{number}"
            try:
                store.acquire_lease(owner, datetime.now(UTC), STALE_AFTER, owner_dead)
                outcome = "owner"
            except Exception as error:  # reported: the test says which one it was
                outcome = f"{type(error).__name__}: {str(error)[:300]}"
            results.put((number, name, owner, outcome))
    finally:
        store.close()
