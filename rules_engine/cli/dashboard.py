"""`rules-engine dashboard [--db URL | --mode MODE] [--http HOST:PORT] [--http-token TOKEN]`:
the web dashboard over a store, with or without a watcher running on it (`rules-engine run
--http` serves the same page with the watcher's live state). Loopback only unless a token is
given (`--http-token`, or `$RULES_ENGINE_HTTP_TOKEN`); halt and resume need it when it is set.
Runs until SIGINT or SIGTERM (exit 0); exit 2 for a bad address or store.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from typing import Any

from rules_engine.cli.record import _Failed, store_options, with_store

__all__ = ["register"]

DEFAULT_HTTP = "127.0.0.1:8765"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "dashboard", help="the web dashboard over a store",
        description="Serve the dashboard (rules, open orders, positions, the live event log, "
        "fill charts, halt and resume) and Prometheus metrics at /metrics, over a store.",
    )
    store_options(parser)
    http_options(parser, DEFAULT_HTTP)
    parser.add_argument("--duration", type=float, default=None, help=argparse.SUPPRESS)
    parser.set_defaults(handler=lambda a: with_store(a, _serve))


def http_options(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument("--http", default=default, metavar="HOST:PORT",
                        help="serve the dashboard and /metrics there"
                        + (f" (default {default})" if default else "; loopback only unless "
                           "--http-token"))
    parser.add_argument("--http-token", default=os.environ.get("RULES_ENGINE_HTTP_TOKEN"),
                        metavar="TOKEN", help="needed by halt/resume from the page, and to "
                        "serve on an address that is not loopback (default "
                        "$RULES_ENGINE_HTTP_TOKEN)")


def _serve(store: Any, args: argparse.Namespace) -> int:
    from rules_engine.dashboard import BindError, parse_bind

    try:
        bind = parse_bind(args.http, args.http_token)
    except BindError as err:
        raise _Failed(str(err)) from None
    try:
        return asyncio.run(_main(store, bind, args.duration))
    except BindError as err:
        raise _Failed(str(err)) from None


async def _main(store: Any, bind: Any, duration: float | None) -> int:
    from rules_engine.dashboard import serve_dashboard

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    async with serve_dashboard(store, bind) as url:
        print(f"dashboard: {url}/  metrics: {url}/metrics  (Ctrl-C stops it)", flush=True)
        await stop.wait()
    print("dashboard: stopped", file=sys.stderr)
    return 0
