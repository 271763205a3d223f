"""`rules-engine reset [--db URL | --mode MODE] [--yes]`: clear a sandbox or paper store, so
the quickstart can be run again from nothing.

Never a live one: a store is cleared only when the venue it recorded is a sandbox (the built-in
one, paper mode's local venue, or one at `--exchange-url`), or, when it recorded no venue yet,
when its file name says `run` made it in sandbox or paper mode. Never under a running watcher.
It asks first (type `yes`), unless `--yes`. A SQLite store's file goes, with its local venue's
state file beside it (`NAME.sqlite.sandbox.json`: that venue's balances and orders start
afresh too); a store in another database has its tables dropped. Exit 0 when cleared, 1 when
the answer was not yes, 2 when refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rules_engine.cli._stores import mode_of, redact, watcher_alive
from rules_engine.cli.record import _Failed, store_options, with_store

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "reset", help="clear a sandbox or paper store (never a live one)",
        description="Clear a sandbox or paper store and its local venue's state, after "
        "confirmation, so that the next `rules-engine run` starts from nothing.",
    )
    store_options(parser)
    parser.add_argument("--yes", action="store_true", help="do not ask")
    parser.set_defaults(handler=lambda a: with_store(a, _reset))


def _venue(store: Any) -> str | None:
    from rules_engine.store._schema import Meta

    with store.session() as session:
        row = session.get(Meta, "venue_instance")
        return None if row is None else str(row.value)


def _path(url: str) -> Path | None:
    return Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None


def _reset(store: Any, args: argparse.Namespace) -> int:
    where = redact(args.store_url)
    path = _path(args.store_url)
    named = mode_of(path) if path is not None else None
    venue = _venue(store)
    if named == "live" or (venue is not None and not venue.startswith("sandbox ")):
        raise _Failed(f"{where} traded on {venue or 'a live venue'}: reset clears sandbox and "
                      "paper stores only, never a live one")
    if venue is None and named not in ("sandbox", "paper"):
        raise _Failed(f"{where} recorded no venue and its name does not say sandbox or paper: "
                      "reset cannot tell it is not a live store; remove it by hand if it is not")
    if watcher_alive(store):
        raise _Failed(f"a watcher is running on {where}: stop it first")
    if not args.yes:
        print(f"clear {where} (every rule state, order and event) and its local venue's "
              "state? type yes: ", end="", file=sys.stderr, flush=True)
        answer = sys.stdin.readline().strip().lower()
        if answer != "yes":
            print("nothing cleared" + ("" if answer else " (no answer: give --yes to clear "
                                       "without asking)"), file=sys.stderr)
            return 1
    store.close()
    if path is not None:
        for gone in (path, *(path.with_name(path.name + s)
                             for s in ("-wal", "-shm", "-journal", ".sandbox.json"))):
            gone.unlink(missing_ok=True)
    else:
        _drop_tables(store)
    print(f"cleared {where}: the next `rules-engine run` on it starts from nothing")
    return 0


def _drop_tables(store: Any) -> None:
    from sqlalchemy import text

    from rules_engine.store._schema import Base

    Base.metadata.drop_all(store.engine)
    with store.engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
