"""The `rules-engine` command line: one sub-command per module, dispatched from a table.

Each sub-command module exposes `register(subparsers)`, which adds its parser and sets
`handler` (a callable taking the parsed namespace and returning an exit code) as a default.
argparse itself exits 2 on bad usage. Exit codes follow the brief's contract:
0 clean, 1 findings, 2 usage or IO error; 141 when the reader of the output went away
(`rules-engine audit | head`), silently.

The store failing underneath a command (a full disk, a read-only file system, a lost
PostgreSQL connection: `StorageFailed`) ends it here with exit 2 and one line on stderr,
`rules-engine COMMAND: error: the store failed: CAUSE (WHERE): FIX, then start again; ...`,
never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]

# Sub-command modules, in the order `--help` lists them.
COMMANDS: tuple[str, ...] = (
    "rules_engine.cli.lint",
    "rules_engine.cli.market",
    "rules_engine.cli.run",
    "rules_engine.cli.record",
    "rules_engine.cli.control",
    "rules_engine.cli.reset",
    "rules_engine.cli.dashboard",
    "rules_engine.cli.sandbox",
    "rules_engine.cli.data",
    "rules_engine.cli.backtest",
)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("rules-engine")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rules-engine",
        description="Conditional orders for KuCoin spot, written as plain-text rules.",
    )
    parser.add_argument("--version", action="version", version=f"rules-engine {version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMANDS:
        module = importlib.import_module(name)
        register: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]
        register = module.register
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`rules-engine why ... | head`): nothing left to say to it.
        # Point stdout at /dev/null so the interpreter's last flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141  # 128 + SIGPIPE, as a command killed by the closed pipe would exit
    except Exception as error:
        if not _storage_failed(error):
            raise
        print(f"rules-engine {args.command}: error: {error}", file=sys.stderr)
        return 2


def _storage_failed(error: Exception) -> bool:
    # Only a command that opened a store can raise StorageFailed, so the store is imported
    # by then; `lint` and the others never pay for importing SQLAlchemy here.
    store = sys.modules.get("rules_engine.store")
    return store is not None and isinstance(error, store.StorageFailed)
