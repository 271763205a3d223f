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
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO, TypeVar

from rules_engine.adapters.kucoin import (
    Credentials,
    KeyError_,
    KucoinMarket,
    KucoinRest,
    Secret,
    check_key,
    load_credentials,
)
from rules_engine.core.outcome import TRANSIENT, Action
from rules_engine.core.symbols import SymbolDataError, SymbolTable
from rules_engine.runtime._config import WatcherConfig
from rules_engine.runtime._patience import Patience
from rules_engine.runtime._reload import RuleFiles, RulesRejected, traded_symbols
from rules_engine.runtime._watcher import Watcher, WatcherError

__all__ = ["STANDBY_NEEDS_VENUE", "Fatal", "RulesRejected", "StartStopped", "account_name",
           "default_db", "run_watcher", "state_dir"]

T = TypeVar("T")


class Fatal(Exception):
    """The watcher cannot run: the message names the problem and the fix."""


def state_dir() -> Path:
    """Where the stores live by default: `$XDG_STATE_HOME/rules-engine`, else
    `~/.local/state/rules-engine` (not created here)."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "rules-engine"


def default_db(account: str) -> str:
    """A SQLite file per account in the user's state directory (`state_dir`), so that run,
    status, audit, why, halt and resolve meet by default."""
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in account)
    return f"sqlite:///{folder / (safe + '.sqlite')}"


def account_name(mode: str, url: str | None, api_key: str | None) -> str:
    if mode == "sandbox" and url is None:
        return "sandbox"
    digest = hashlib.sha256(f"{url}\x00{api_key}".encode()).hexdigest()[:10]
    return f"{mode}-{digest}"


def _credentials(config: WatcherConfig, local: bool) -> Credentials:
    from rules_engine.sandbox.config import DEMO_KEY, DEMO_PASSPHRASE, DEMO_SECRET

    demo = Credentials(DEMO_KEY, Secret(DEMO_SECRET), Secret(DEMO_PASSPHRASE), "2")
    if local:
        return demo
    has_env = any(os.environ.get(k) for k in ("RULES_ENGINE_API_KEY", "RULES_ENGINE_API_SECRET",
                                              "RULES_ENGINE_API_PASSPHRASE"))
    if config.mode == "sandbox" and not has_env and config.key_file is None:
        return demo
    try:
        return load_credentials(key_file=config.key_file)
    except KeyError_ as err:
        raise Fatal(str(err)) from None


def _state_file(db: str, name: str) -> Path:
    """The local venue's state file, beside the store (so a restart meets the same venue)."""
    path = _sqlite_path(db)
    if path is not None:
        return path.parent / f"{path.name}.sandbox.json"
    return Path(default_db(name)[len("sqlite:///"):]).parent / f"{name}.sandbox.json"


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    return None


@contextlib.asynccontextmanager
async def _sandbox(config: WatcherConfig, db: str) -> AsyncIterator[str]:
    """A sandbox in this process, its state in a file beside the database."""
    from rules_engine.sandbox.config import SandboxConfig
    from rules_engine.sandbox.server import build_state

    state = build_state(SandboxConfig(), feed_name=config.sandbox_feed, seed=config.sandbox_seed,
                        speed=config.sandbox_speed, state_file=_state_file(db, "sandbox"))
    async with _local_venue(state) as url:
        yield url


@contextlib.asynccontextmanager
async def _local_venue(state: Any) -> AsyncIterator[str]:
    """Serve a sandbox state on 127.0.0.1 (a free port), its feed running."""
    from rules_engine.sandbox.testing import serve

    async with serve(state=state, run_feed=True) as box:
        yield box.url


_PROBLEMS = frozenset({"exchange.unreachable", "market.unreachable", "store.locked"})
_STOPPING = frozenset({"watcher.stopped", "start.stopped", "error"})
_PROBE_TIMEOUT_S = 3.0  # paper mode's first look at its market data


class StartStopped(Exception):
    """`stop` was set (`--duration` over, SIGINT, SIGTERM) before the start completed."""


async def _or_stop(stop: asyncio.Event, awaitable: Awaitable[T]) -> T:
    """The result of `awaitable`, unless `stop` is set first: then it is cancelled and
    `StartStopped` raised."""
    work = asyncio.ensure_future(awaitable)
    asked = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, asked}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        asked.cancel()
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
    if work.cancelled():
        raise StartStopped
    return work.result()


async def _probe_market(config: WatcherConfig, output: Output) -> None:
    """Paper mode: one quick request to `market_url` (one attempt, at most 3 s), so that
    market data that cannot be reached is said within seconds, with the fix; the start then
    goes on trying with its patience (`start_patience_s`)."""
    timeout = min(_PROBE_TIMEOUT_S, config.request_timeout_s)
    async with KucoinRest(config.market_url, None, timeout=timeout, attempts=1) as probe:
        outcome = await probe.sync_time()
    if outcome.action is not Action.OK:
        output("market.unreachable", {
            "market_url": config.market_url,
            "why": f"paper mode reads its market data from {config.market_url} and cannot "
                   f"reach it: {outcome.message}",
            "fix": "check the network, or set market_url in the config (the default is "
                   "KuCoin's public API); still trying for start_patience_s "
                   f"({config.start_patience_s:g} s)"})


class Output:
    """Events as JSON lines (not a terminal, or `log_format = "json"`) or short text lines,
    on stderr; the live view (`_view.py`) on stdout when it is a terminal. While the view
    draws its table on the terminal, the lines meant for a terminal go through it (`sink`),
    which writes them above the table: written straight to the terminal they would be drawn
    over at its next redraw."""

    def __init__(self, config: WatcherConfig, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.json = config.log_format == "json" or (config.log_format == "auto" and not self.tty)
        self.view = config.view == "rich" or (config.view == "auto" and sys.stdout.isatty())
        self.sink: Callable[[str], bool] | None = None  # True: the view printed the line
        self.last_problem: str | None = None  # why the start cannot go on yet, if it waits

    def line(self, kind: str, data: dict[str, Any]) -> str:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        if self.json:
            return json.dumps({"at": now, "event": kind, **data}, default=str)
        details = " ".join(f"{k}={v}" for k, v in data.items())
        return f"{now[11:23]} {kind:<22} {details}"

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        # Any other line (but the stop's own) means the start moved on: what it waited for
        # came.
        if kind in _PROBLEMS:
            self.last_problem = str(data.get("why") or kind)
        elif kind not in _STOPPING:
            self.last_problem = None
        line = self.line(kind, data)
        sink = self.sink
        if sink is not None and self.tty and sink(line):
            return
        self.stream.write(line + "\n")
        self.stream.flush()


async def _view(watcher: Watcher, output: Output, stop: asyncio.Event) -> None:
    """The live table under the event lines until `stop` (`_view.py`)."""
    from rules_engine.runtime._view import TerminalView

    view = TerminalView(watcher.snapshot)
    output.sink = view.take
    try:
        await view.run(stop)
    finally:
        output.sink = None


async def _symbols(rest: KucoinRest, output: Output, patience_s: float,
                   what: str = "the exchange") -> SymbolTable:
    """The exchange's clock offset and symbols. An exchange that is down, overloaded or
    rate-limiting (5xx, 429, a timeout, a reply that does not parse) is tried again with
    `Patience` for `patience_s`; anything else (or patience run out) stops the start with
    the reason."""
    patience = Patience(patience_s, output)
    attempt = 0
    while True:
        synced = await rest.sync_time()
        problem: str
        if synced.action is Action.OK:
            try:
                return await KucoinMarket(rest).symbols()
            except (ConnectionError, SymbolDataError) as err:
                problem = f"cannot read {what}'s symbols at {rest.base_url}: {err}"
        else:
            problem = f"cannot reach {what} at {rest.base_url}: {synced.message}"
            if synced.action not in TRANSIENT:
                raise Fatal(problem)
        if not await patience.retry(problem, attempt):
            raise Fatal(patience.gave_up(problem))
        attempt += 1


@contextlib.asynccontextmanager
async def _paper_venue(
    config: WatcherConfig, db: str, table: SymbolTable, symbols: list[str]
) -> AsyncIterator[tuple[str, _Bridge]]:
    """A local sandbox whose books are KuCoin's, pushed in by `_bridge`: the watcher's orders
    are matched against the real market, with simulated balances."""
    from rules_engine.sandbox.config import SandboxConfig
    from rules_engine.sandbox.feeds import ExternalFeed
    from rules_engine.sandbox.server import build_state

    feed = ExternalFeed(table, symbols)
    sandbox_config = SandboxConfig()
    if config.paper_balances:
        sandbox_config = sandbox_config.model_copy(update={"balances": config.paper_balances})
    state = build_state(sandbox_config, feed=feed, state_file=_state_file(db, "paper"))
    async with _local_venue(state) as url:
        yield url, _Bridge(feed, state)


class _Bridge:
    """Paper mode: each time the watcher's copy of a KuCoin book or ticker moves, before any
    rule sees it, the local venue gets the same book (50 levels a side) and the new last trade,
    applied at once, so its matching engine fills the watcher's orders at market prices."""

    def __init__(self, feed: Any, state: Any) -> None:
        self.feed = feed
        self.state = state
        self.watcher: Watcher | None = None
        self.last: dict[str, Any] = {}

    def __call__(self, symbol: str) -> None:
        watcher = self.watcher
        book = watcher.books.get(symbol) if watcher is not None else None
        if watcher is None or book is None or not book.fresh:
            return
        bids, asks = book.depth(50)
        ticker = watcher.market.ticker(symbol)
        trade = None
        price = ticker.price if ticker is not None else None
        if ticker is not None and price is not None and self.last.get(symbol) != price:
            self.last[symbol] = price
            trade = (ticker.price, ticker.size or Decimal(0), "buy")
        try:
            self.feed.push(symbol, bids, asks, trade=trade)
        except ValueError as err:  # a book the venue cannot take: say so, keep going
            watcher.ctx.emit("paper.push_refused", {"symbol": symbol, "error": str(err)})
            return
        self.state.feed_step(force=True)


async def run_watcher(
    config: WatcherConfig,
    files: list[Path],
    stop: asyncio.Event,
    started: Callable[[Watcher], None] | None = None,
    clock: Any = None,
    *,
    folders: Sequence[Path] = (),
    http: Any = None,
    standby: bool = False,
) -> None:
    """Run until `stop` is set. `folders`: those `files` were found in, where each reload
    check looks for new rule files; `started` receives the watcher once it is built (tests);
    `clock` (tests): an object with `now_ms()`, the time the watcher decides and signs with,
    so a test can move the watcher's time and a sandbox's together (a `ManualClock`); `http`
    (a `dashboard.Bind`): serve the dashboard there with the watcher's snapshot; `standby`:
    wait for the store's lease without touching the exchange, then take the store over
    (`runtime/_standby.py`).

    `stop` set before the start completed (`--duration`, SIGINT, SIGTERM) ends the start
    where it waits: a `start.stopped` line, then `Fatal` naming what the start was still
    waiting for, if it was waiting for something (an exchange or market data out of reach),
    else a clean return."""
    output = Output(config)
    try:
        await _run_watcher(config, files, stop, started, clock, output, folders=folders,
                           http=http, standby=standby)
    except StartStopped:
        problem = output.last_problem
        output("start.stopped", {"why": "asked to stop before the start completed",
                                 **({"waiting_for": problem} if problem else {})})
        if problem is not None:
            raise Fatal(f"stopped before the start completed; it was still waiting: "
                        f"{problem}") from None


async def _run_watcher(  # noqa: PLR0917 - run_watcher's arguments, passed on
    config: WatcherConfig,
    files: list[Path],
    stop: asyncio.Event,
    started: Callable[[Watcher], None] | None,
    clock: Any,
    output: Output,
    *,
    folders: Sequence[Path],
    http: Any,
    standby: bool,
) -> None:
    now: Callable[[], datetime] = (
        (lambda: datetime.fromtimestamp(clock.now_ms() / 1000, UTC)) if clock is not None
        else (lambda: datetime.now(UTC))
    )
    wall_ms: Callable[[], int] = clock.now_ms if clock is not None else (
        lambda: time.time_ns() // 1_000_000)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    # A job still running when its next run is due is skipped on purpose (one at a time):
    # not worth a warning line among the events.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    local = config.mode == "paper" or (config.mode == "sandbox" and config.exchange_url is None)
    if standby and local:
        raise Fatal(STANDBY_NEEDS_VENUE)
    credentials = _credentials(config, local)
    url_for_account = config.market_url if config.mode == "paper" else config.exchange_url
    account = account_name(config.mode, url_for_account, credentials.api_key)
    db = config.db or default_db(account)
    async with contextlib.AsyncExitStack() as stack:
        market_rest: KucoinRest | None = None
        bridge: _Bridge | None = None
        extra: list[str] = []
        rule_files: RuleFiles | None = None
        if config.mode == "paper":
            await _or_stop(stop, _probe_market(config, output))
            market_rest = await stack.enter_async_context(
                KucoinRest(config.market_url, None, timeout=config.request_timeout_s, attempts=4)
            )
            table = await _or_stop(stop, _symbols(market_rest, output, config.start_patience_s,
                                                  "the market data (market_url)"))
            # The rules compile against KuCoin's table, and the local venue carries their
            # symbols: a rule reloaded later on another is refused with that reason.
            rule_files = RuleFiles(files, table, folders, signals=frozenset(config.signals))
            extra = traded_symbols(rule_files.load()[0])
            rule_files.venue_symbols = frozenset(extra)
            url, bridge = await stack.enter_async_context(_paper_venue(config, db, table, extra))
            output("paper.started", {"rest_url": url, "market": config.market_url})
        elif config.mode == "sandbox" and config.exchange_url is None:
            url = await stack.enter_async_context(_sandbox(config, db))
            output("sandbox.started", {"rest_url": url})
        else:
            assert config.exchange_url is not None
            url = config.exchange_url
        rest = await stack.enter_async_context(
            KucoinRest(url, credentials, timeout=config.request_timeout_s, attempts=4,
                       wall_ms=wall_ms)
        )
        symbols = await _or_stop(stop, _symbols(rest, output, config.start_patience_s))
        if rule_files is None:
            rule_files = RuleFiles(files, symbols, folders, signals=frozenset(config.signals))
        rules, texts = rule_files.load()  # paper mode: again, but nothing is parsed again
        if config.mode == "live":
            try:
                checked = await _or_stop(stop, check_key(rest))
            except KeyError_ as err:
                raise Fatal(str(err)) from None
            for warning in checked.warnings:
                output("key.warning", {"warning": warning})
        from rules_engine.store import Store

        store = Store(db)
        stack.callback(store.close)
        _control_signals(store)
        watcher = Watcher(rules, symbols=symbols, store=store, rest=rest, config=config,
                          emit=output, now=now, market_rest=market_rest, book_symbols=extra,
                          on_market=bridge, sources=texts,
                          reloader=rule_files if config.reload_interval_s > 0 else None)
        if bridge is not None:
            bridge.watcher = watcher
        reporter: asyncio.Task[None] | None = None
        if standby:
            took = await _stand_by(watcher, store, config, now=now, output=output, stop=stop)
            if took is None:
                output("run.done", {"fired": 0, "standby": True})
                return
            # Its clock offset was measured when it started, maybe long ago: measured again,
            # as a watcher's start does, before anything is signed for the exchange.
            await _fenced(_sync_clock(rest, output, config.start_patience_s), store,
                          config.heartbeat_s, now)
            reporter = asyncio.create_task(_report_takeover(watcher, took, now))
            stack.callback(reporter.cancel)
        output("watcher.starting", {"db": _redact(db), "rules": len(rules),
                                    "mode": config.mode, "exchange": url})
        if started is not None:
            started(watcher)
        if http is not None:
            from rules_engine.dashboard import BindError, serve_dashboard

            try:
                web = await stack.enter_async_context(
                    serve_dashboard(store, http, snapshot=watcher.snapshot,
                                    signals=_signal_gate(config, watcher, now)))
            except BindError as err:
                raise Fatal(str(err)) from None
            output("dashboard.started", {"url": web + "/"})
        view = asyncio.create_task(_view(watcher, output, stop)) if output.view else None
        try:
            await watcher.run(stop)
        except WatcherError as err:
            raise Fatal(str(err)) from None
        finally:
            stop.set()
            if view is not None:
                await view
        if watcher.failed:
            raise Fatal(f"the watcher stopped: {watcher.stop_reason}; its record is whole, and "
                        "the next start recovers from it")
        if not watcher.ctx.ready.is_set():
            raise StartStopped
        output("run.done", {"fired": watcher.fired})


def _signal_gate(config: WatcherConfig, watcher: Watcher,
                 now: Callable[[], datetime]) -> Any:
    """`POST /signal` for the configured signals (None when there are none: it is off)."""
    if not config.signals:
        return None
    from rules_engine.dashboard._signals import SignalGate, SignalSpec

    specs = {name: SignalSpec(spec.secret.get_secret_value(), spec.max_skew_s)
             for name, spec in config.signals.items()}
    return SignalGate(specs, watcher.on_signal, now)


STANDBY_NEEDS_VENUE = (
    "--standby takes over a store whose exchange it shares with the active watcher: give "
    "--exchange-url (a sandbox both reach) or --mode live; a sandbox or paper venue started "
    "inside the process is another venue each time")


async def _stand_by(watcher: Watcher, store: Any, config: WatcherConfig, *,
                    now: Callable[[], datetime], output: Output, stop: asyncio.Event) -> Any:
    """Wait for the lease as a standby; its `Takeover`, or None when asked to stop first."""
    from rules_engine.runtime._standby import Standby, StandbyRefused
    from rules_engine.runtime._watcher import owner_dead

    try:
        return await Standby(store, watcher.owner, config, now=now, emit=output,
                             owner_dead=owner_dead).wait(stop)
    except StandbyRefused as err:
        raise Fatal(str(err)) from None


async def _sync_clock(rest: KucoinRest, output: Output, patience_s: float) -> None:
    """The exchange's clock offset, measured again (with the start's patience); one that
    cannot be measured now is kept, and the time-sync job tries again."""
    patience = Patience(patience_s, output)
    attempt = 0
    while True:
        synced = await rest.sync_time()
        if synced.action is Action.OK or synced.action not in TRANSIENT:
            break
        if not await patience.retry(f"the exchange's time: {synced.message}", attempt):
            break
        attempt += 1
    if synced.action is not Action.OK:
        output("time.sync_failed", {"error": synced.message})


async def _fenced(work: Coroutine[Any, Any, None], store: Any, every: float,
                  now: Callable[[], datetime]) -> None:
    """Run `work` while renewing the lease this process just took every `every` seconds,
    as the watcher's start does: no other watcher may take it meanwhile."""
    from rules_engine.store import LeaseLost

    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=every)
            if not task.done():
                store.heartbeat(now())
    except LeaseLost as err:
        raise Fatal(f"the store's lease was lost during the takeover: {err}") from None
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    task.result()


async def _report_takeover(watcher: Watcher, took: Any, now: Callable[[], datetime]) -> None:
    """Once the watcher that took the store over is ready: how long the takeover took, in
    the output and the store's event log (`watcher.took_over`)."""
    await watcher.ready()
    try:
        watcher.ctx.event("watcher.took_over", took.report(now(), time.monotonic()))
    except Exception as err:  # the store failed: the watcher stops with the reason
        watcher.ctx.fail_on(err)


def _control_signals(store: Any) -> None:
    """SIGUSR1 throws the kill switch (as `rules-engine halt`), SIGUSR2 lifts it: through the
    store, so it holds across restarts exactly as the command's does."""
    import signal

    loop = asyncio.get_running_loop()

    def halt() -> None:
        store.request_halt(False, datetime.now(UTC), "signal SIGUSR1")

    def resume() -> None:
        store.resume(datetime.now(UTC), "signal SIGUSR2")

    for signum, action in ((signal.SIGUSR1, halt), (signal.SIGUSR2, resume)):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, action)


def _redact(url: str) -> str:
    """A database URL without its password."""
    head, sep, tail = url.partition("://")
    if "@" in tail and ":" in tail.split("@", 1)[0]:
        user = tail.split("@", 1)[0].split(":", 1)[0]
        return f"{head}{sep}{user}:***@{tail.split('@', 1)[1]}"
    return url
