"""`rules-engine run RULES... [--mode sandbox|paper|live] [--exchange-url URL] [--db URL]
[--config FILE] [--live] [--duration SECONDS] [--standby] [--http HOST:PORT [--http-token
TOKEN]]`: the watcher; `--http` serves the dashboard and /metrics with its live state
(cli/dashboard.py); `--standby` waits for the store's lease as a hot standby and takes the
store over when the active watcher's lease expires (runtime/_standby.py, operations.md).

* `sandbox` (default): without `--exchange-url`, a sandbox starts in this process with its
  demo feed, its state kept in a file beside the database (so a restart meets the same
  venue); with one, that sandbox (loopback only) and the demo key unless keys are set.
* `paper`: market data from KuCoin's public feed (`market_url`), orders signed to a sandbox
  started in this process whose books are KuCoin's (simulated fills and balances).
* `live`: real KuCoin; needs `--mode live` and `--live` together, API keys, and the risk
  limits `risk.max_order_notional` and `risk.max_open_orders`. In every other mode signed
  requests go to loopback addresses only.

Exit codes: 0 after a clean stop (SIGINT, SIGTERM, or `--duration` elapsed), 1 when the rule
files have errors, 2 for a usage, config, key or exchange problem.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

from rules_engine.runtime._config import ConfigError, WatcherConfig, is_loopback, load_config

__all__ = ["register"]

KUCOIN = "https://api.kucoin.com"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="watch the market and fire the rules' orders",
        description="Run the watcher: evaluate RULES on live market data and place their "
        "orders exactly once, recording everything in the store.",
    )
    parser.add_argument("rules", nargs="+", metavar="RULES", help="rule files or folders")
    parser.add_argument("--mode", choices=("sandbox", "paper", "live"), default=None)
    parser.add_argument("--exchange-url", default=None)
    parser.add_argument("--db", default=None, help="SQLAlchemy URL (default: $RULES_ENGINE_DB, "
                        "else a SQLite file in the user's state directory)")
    parser.add_argument("--config", default=None, type=Path, help="TOML config file")
    parser.add_argument("--live", action="store_true",
                        help="with --mode live: really trade on KuCoin")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="stop cleanly after this many seconds")
    parser.add_argument("--standby", action="store_true",
                        help="a hot standby: wait for the store's lease without touching the "
                        "exchange, take the store over when the active watcher's lease "
                        "expires (PostgreSQL, or SQLite on the same host)")
    from rules_engine.cli.dashboard import http_options

    http_options(parser, None)
    parser.set_defaults(handler=_handle)


class _Usage(Exception):
    pass


def _fail(message: str) -> int:
    print(f"rules-engine run: error: {message}", file=sys.stderr)
    return 2


def _handle(args: argparse.Namespace) -> int:
    if args.duration is not None and args.duration <= 0:
        return _fail("--duration must be a number of seconds above zero")
    try:
        config = load_config(args.config, {"mode": args.mode, "exchange_url": args.exchange_url,
                                           "db": args.db})
        _check_mode(config, args.live)
        if args.standby and (config.mode == "paper" or (
                config.mode == "sandbox" and config.exchange_url is None)):
            from rules_engine.runtime._run import STANDBY_NEEDS_VENUE

            raise _Usage(STANDBY_NEEDS_VENUE)
        files = _collect(args.rules)
        http = _http(args.http, args.http_token)
    except (ConfigError, _Usage) as err:
        return _fail(str(err))
    from rules_engine.runtime._run import Fatal, RulesRejected, run_watcher

    try:
        folders = [Path(p) for p in args.rules if Path(p).is_dir()]
        return asyncio.run(_main(config, files, folders, args.duration, run_watcher,
                                 http=http, standby=args.standby))
    except RulesRejected as err:
        print(err.report, file=sys.stderr)
        return 1
    except Fatal as err:
        return _fail(str(err))


def _http(address: str | None, token: str | None) -> Any:
    """`--http HOST:PORT`: where the dashboard is served (checked before anything starts)."""
    if address is None:
        return None
    from rules_engine.dashboard import BindError, parse_bind

    try:
        return parse_bind(address, token)
    except BindError as err:
        raise _Usage(str(err)) from None


async def _main(config: WatcherConfig, files: list[Path], folders: list[Path],
                duration: float | None, run_watcher: Any, *, http: Any = None,
                standby: bool = False) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    await run_watcher(config, files, stop, folders=folders,
                      **({"http": http} if http is not None else {}),
                      **({"standby": True} if standby else {}))
    return 0


def _check_mode(config: WatcherConfig, live_flag: bool) -> None:
    if config.mode == "live":
        if not live_flag:
            raise _Usage("live mode trades real money: give --mode live and --live together")
        missing = [name for name in ("max_order_notional", "max_open_orders")
                   if getattr(config.risk, name) is None]
        if missing:
            raise _Usage(
                "live mode needs risk limits: set "
                + ", ".join(f"risk.{m}" for m in missing)
                + " in the config file (see examples/watcher.toml)"
            )
        if config.exchange_url is None:
            config.exchange_url = KUCOIN
        return
    if live_flag:
        raise _Usage("--live only goes with --mode live")
    if config.mode == "paper":
        if config.exchange_url is not None:
            raise _Usage(
                "paper mode places its orders on a local sandbox it starts itself: give the "
                "market data's URL as market_url in the config, not --exchange-url"
            )
        if not config.market_url.startswith(("http://", "https://")):
            raise _Usage("market_url must start with http:// or https://")
        return
    if config.exchange_url is not None and not is_loopback(config.exchange_url):
        raise _Usage(
            f"in {config.mode} mode signed requests go to loopback addresses only, and "
            f"{config.exchange_url} is not one: use a local sandbox URL, or --mode live --live"
        )
    if config.exchange_url is not None and not config.exchange_url.startswith(
        ("http://", "https://")
    ):
        raise _Usage("--exchange-url must start with http:// or https://")


def _collect(paths: list[str]) -> list[Path]:
    from rules_engine.cli.lint import collect_rule_files

    try:
        return collect_rule_files(paths)
    except ValueError as err:
        raise _Usage(str(err)) from None
