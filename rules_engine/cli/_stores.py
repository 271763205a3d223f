"""Which store a command works on: one rule for every command that takes `--db`.

1. `--db URL`, else `$RULES_ENGINE_DB`: that store.
2. Else the stores `rules-engine run` keeps in the user's state directory (`state_dir()`):
   `sandbox.sqlite` for the built-in sandbox, `MODE-HASH.sqlite` otherwise (the mode is the
   file name's first word), only those of `--mode` when it is given.
   - none: an error naming the folder and the fix;
   - one: that store;
   - several: the one whose watcher holds a live lease (alive, heartbeat under
     `LIVE_AFTER`); with none or several live, an error listing every candidate (its mode,
     its watcher, its URL) and asking for `--db URL` or `--mode`.

`rules-engine run` names its store by the same convention (`runtime._run.default_db`), so a
command without `--db` meets the watcher that `run` started in the same mode.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = [
    "LIVE_AFTER",
    "Candidate",
    "NoStore",
    "candidates",
    "find_store",
    "mode_of",
    "redact",
    "watcher_alive",
]

# A heartbeat older than this is a watcher that no longer runs (the lease's own staleness).
LIVE_AFTER = timedelta(seconds=15)
MODES = ("sandbox", "paper", "live")


class NoStore(Exception):
    """No store, or no single one: the message names the candidates and the fix."""


@dataclass(frozen=True)
class Candidate:
    url: str
    path: Path
    mode: str | None  # from the file name; None for a name `run` does not make
    alive: bool | None  # its watcher holds a live lease (None: the store cannot be read)
    owner: str | None

    def line(self) -> str:
        if self.alive is None:
            watcher = "cannot be read"
        elif self.alive:
            watcher = f"watcher running ({self.owner})"
        else:
            watcher = "no watcher running"
        return f"  {self.mode or '?':<8} {watcher:<40} --db {self.url}"


def mode_of(path: Path) -> str | None:
    """The mode a store's file name says `run` made it for (`sandbox.sqlite`,
    `paper-0123456789.sqlite`), or None."""
    word = path.stem.split("-", 1)[0]
    return word if word in MODES else None


def watcher_alive(store: Any, now: datetime | None = None) -> bool:
    """A watcher holds the store's lease and said so within `LIVE_AFTER`."""
    lease = store.lease()
    now = now or datetime.now(UTC)
    return bool(lease is not None and lease.alive and now - lease.heartbeat < LIVE_AFTER)


def _probe(path: Path) -> tuple[bool | None, str | None]:
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from rules_engine.store import Store

    store = Store(f"sqlite:///{path}")
    try:
        with store.engine.connect() as connection:
            if "lease" not in inspect(connection).get_table_names():
                return False, None
        lease = store.lease()
        return watcher_alive(store), None if lease is None else lease.owner
    except SQLAlchemyError:
        return None, None
    finally:
        store.close()


def candidates(mode: str | None = None, folder: Path | None = None) -> list[Candidate]:
    """The stores in the state directory (of `mode` only, if given), by name."""
    if folder is None:
        from rules_engine.runtime._run import state_dir

        folder = state_dir()
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.sqlite")):
        kind = mode_of(path)
        if mode is not None and kind != mode:
            continue
        alive, owner = _probe(path)
        found.append(Candidate(f"sqlite:///{path}", path, kind, alive, owner))
    return found


def find_store(db: str | None, mode: str | None = None) -> str:
    """The store's URL by the rule above; `NoStore` with the reason and the fix."""
    if db:
        return db
    if os.environ.get("RULES_ENGINE_DB"):
        return os.environ["RULES_ENGINE_DB"]
    from rules_engine.runtime._run import state_dir

    folder = state_dir()
    found = candidates(mode, folder)
    which = f"{mode} " if mode else ""
    if not found:
        raise NoStore(f"no {which}store in {folder}: give --db URL (or set RULES_ENGINE_DB), "
                      f"or run `rules-engine run{' --mode ' + mode if mode else ''}` first")
    if len(found) == 1:
        return found[0].url
    live = [c for c in found if c.alive]
    if len(live) == 1:
        return live[0].url
    why = "none has a watcher running" if not live else "more than one has a watcher running"
    listing = "\n".join(c.line() for c in found)
    raise NoStore(f"{len(found)} {which}stores in {folder} and {why}; say which with --db URL"
                  f"{'' if mode else ' (or --mode MODE)'}:\n{listing}")


def redact(url: str) -> str:
    """A database URL without its password."""
    head, sep, tail = url.partition("://")
    credentials, at, rest = tail.rpartition("@")
    if at and ":" in credentials:
        return f"{head}{sep}{credentials.split(':', 1)[0]}:***@{rest}"
    return url
