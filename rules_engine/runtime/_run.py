"""Assemble and run the watcher for a mode: the exchange (or an in-process sandbox), the keys,
the symbols, the compiled rules, the store, the output. IO only; the decisions are the
watcher's and the engine's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from rules_engine.adapters.kucoin._errors import Action
from rules_engine.adapters.kucoin._keys import KeyError_, check_key, load_credentials
from rules_engine.adapters.kucoin._market import KucoinMarket
from rules_engine.adapters.kucoin._rest import KucoinRest
from rules_engine.adapters.kucoin._signing import Credentials, Secret
from rules_engine.compiler import Compiler
from rules_engine.dsl import Severity, SourceFile, format_text
from rules_engine.runtime._config import WatcherConfig
from rules_engine.runtime._watcher import Watcher, WatcherError

__all__ = ["Fatal", "RulesRejected", "account_name", "default_db", "run_watcher"]


class Fatal(Exception):
    """The watcher cannot run: the message names the problem and the fix."""


class RulesRejected(Exception):
    def __init__(self, report: str) -> None:
        super().__init__("the rule files have errors")
        self.report = report


def default_db(account: str) -> str:
    """A SQLite file per account in the user's state directory (`$XDG_STATE_HOME`, else
    `~/.local/state`), so that run, status, audit, why, halt and resolve meet by default."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    folder = base / "rules-engine"
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in account)
    return f"sqlite:///{folder / (safe + '.sqlite')}"


def account_name(mode: str, url: str | None, api_key: str | None) -> str:
    if mode == "sandbox" and url is None:
        return "sandbox"
    digest = hashlib.sha256(f"{url}\x00{api_key}".encode()).hexdigest()[:10]
    return f"{mode}-{digest}"


def _credentials(config: WatcherConfig, in_process: bool) -> Credentials:
    from rules_engine.sandbox.config import DEMO_KEY, DEMO_PASSPHRASE, DEMO_SECRET

    demo = Credentials(DEMO_KEY, Secret(DEMO_SECRET), Secret(DEMO_PASSPHRASE), "2")
    if in_process:
        return demo
    has_env = any(os.environ.get(k) for k in ("RULES_ENGINE_API_KEY", "RULES_ENGINE_API_SECRET",
                                              "RULES_ENGINE_API_PASSPHRASE"))
    if config.mode == "sandbox" and not has_env and config.key_file is None:
        return demo
    try:
        return load_credentials(key_file=config.key_file)
    except KeyError_ as err:
        raise Fatal(str(err)) from None


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    return None


@contextlib.asynccontextmanager
async def _sandbox(config: WatcherConfig, db: str) -> AsyncIterator[str]:
    """A sandbox in this process, its state in a file beside the database."""
    from aiohttp import web

    from rules_engine.sandbox.config import SandboxConfig
    from rules_engine.sandbox.server import build_state, create_app

    path = _sqlite_path(db)
    folder = path.parent if path is not None else Path(default_db("sandbox")[10:]).parent
    stem = path.name if path is not None else "sandbox"
    state_file = folder / f"{stem}.sandbox.json"
    state = build_state(SandboxConfig(), feed_name=config.sandbox_feed, seed=config.sandbox_seed,
                        speed=config.sandbox_speed, state_file=state_file)
    runner = web.AppRunner(create_app(state, run_feed=True), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    address: Any = runner.addresses[0]
    try:
        yield f"http://127.0.0.1:{address[1]}"
    finally:
        await runner.cleanup()


class Output:
    """Events as JSON lines (not a terminal, or `log_format = "json"`) or short text lines,
    on stderr; the live view (rich) on stdout when it is a terminal."""

    def __init__(self, config: WatcherConfig, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        tty = self.stream.isatty()
        self.json = config.log_format == "json" or (config.log_format == "auto" and not tty)
        self.view = config.view == "rich" or (config.view == "auto" and sys.stdout.isatty())

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        if self.json:
            self.stream.write(json.dumps({"at": now, "event": kind, **data}, default=str) + "\n")
        else:
            details = " ".join(f"{k}={v}" for k, v in data.items())
            self.stream.write(f"{now[11:23]} {kind:<22} {details}\n")
        self.stream.flush()


async def _view(watcher: Watcher, stop: asyncio.Event) -> None:
    from rich.console import Group
    from rich.live import Live
    from rich.table import Table

    def render() -> Group:
        snap = watcher.snapshot()
        head = Table.grid(padding=(0, 2))
        head.add_row(f"feed: {snap['feed']}", f"orders feed: {snap['orders_feed']}",
                     "books: " + ", ".join(f"{s} {v}" for s, v in snap["books"].items()),
                     "trading" if snap["trading"] else f"STOPPED: {snap['stop_reason']}")
        rules = Table(title="rules", expand=True)
        for column in ("rule", "status", "firings", "reason"):
            rules.add_column(column)
        for row in snap["rules"][:40]:
            rules.add_row(row["rule"], row["status"], str(row["firings"]), row["reason"])
        orders = Table(title="open orders", expand=True)
        for column in ("client_oid", "symbol", "rule"):
            orders.add_column(column)
        for row in snap["open_orders"][:20]:
            orders.add_row(row["client_oid"], row["symbol"], str(row["rule"] or "adopted"))
        return Group(head, rules, orders)

    with Live(render(), refresh_per_second=4, transient=False) as live:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
            live.update(render())


async def run_watcher(
    config: WatcherConfig,
    files: list[Path],
    stop: asyncio.Event,
    started: Callable[[Watcher], None] | None = None,
) -> None:
    """Run until `stop` is set; `started` receives the watcher once it is built (tests)."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    in_process = config.mode == "sandbox" and config.exchange_url is None
    credentials = _credentials(config, in_process)
    account = account_name(config.mode, config.exchange_url, credentials.api_key)
    db = config.db or default_db(account)
    output = Output(config)
    async with contextlib.AsyncExitStack() as stack:
        url = config.exchange_url
        if in_process:
            url = await stack.enter_async_context(_sandbox(config, db))
            output("sandbox.started", {"rest_url": url})
        assert url is not None
        rest = await stack.enter_async_context(
            KucoinRest(url, credentials, timeout=config.request_timeout_s, attempts=4)
        )
        synced = await rest.sync_time()
        if synced.action is not Action.OK:
            raise Fatal(f"cannot reach the exchange at {url}: {synced.message}")
        try:
            symbols = await KucoinMarket(rest).symbols()
        except ConnectionError as err:
            raise Fatal(f"cannot read the exchange's symbols at {url}: {err}") from None
        sources = []
        for path in files:
            try:
                sources.append(SourceFile.read(path, display=str(path)))
            except OSError as err:
                raise Fatal(f"cannot read {path}: {err.strerror or err}") from None
        program = Compiler(symbols).compile(sources)
        errors = [d for d in program.diagnostics if d.severity is Severity.ERROR]
        if errors:
            raise RulesRejected(
                format_text(errors, {s.path: s for s in sources})
                + f"\n{len(errors)} error(s): nothing runs until `rules-engine lint` is clean"
            )
        if config.mode == "live":
            try:
                checked = await check_key(rest)
            except KeyError_ as err:
                raise Fatal(str(err)) from None
            for warning in checked.warnings:
                output("key.warning", {"warning": warning})
        from rules_engine.store import Store

        store = Store(db)
        stack.callback(store.close)
        watcher = Watcher(program.rules, symbols=symbols, store=store, rest=rest,
                          config=config, emit=output)
        output("watcher.starting", {"db": _redact(db), "rules": len(program.rules),
                                    "mode": config.mode, "exchange": url})
        if started is not None:
            started(watcher)
        view = asyncio.create_task(_view(watcher, stop)) if output.view else None
        try:
            await watcher.run(stop)
        except WatcherError as err:
            raise Fatal(str(err)) from None
        finally:
            if view is not None:
                stop.set()
                await view
        output("run.done", {"fired": watcher.fired})


def _redact(url: str) -> str:
    """A database URL without its password."""
    head, sep, tail = url.partition("://")
    if "@" in tail and ":" in tail.split("@", 1)[0]:
        user = tail.split("@", 1)[0].split(":", 1)[0]
        return f"{head}{sep}{user}:***@{tail.split('@', 1)[1]}"
    return url
