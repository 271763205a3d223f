"""The live side of the parity test: `rules-engine run`'s in-process entry (`run_watcher`,
its APScheduler jobs running) against a sandbox served on port 0 (real HTTP and WebSocket)
that replays recorded candles (`sandbox/replay.py`'s `CandleReplay`, the backtest's own path)
under a test clock the harness moves, exactly as time passes for the backtest:

    for each moment the market moves (each path point):
        every timer due before it: the clock set to that moment, the scheduler's clock and
            order-timer jobs run, the watcher and the sandbox settle
        the clock set to the moment: the jobs run, settle; the sandbox's feed steps (the
            point's book and print), settle
    then the timers due before the end of the period

"Settle": no task of the watcher and no job running, every WebSocket queue of the sandbox
sent, and nothing (frames pushed, orders, fills, decisions) moving across a few polls.
The watcher's output lines and the sandbox's fills are recorded by the backtest's own
`Recorder`, so both runs are read the same way.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from rules_engine.backtest._driver import next_due
from rules_engine.backtest._record import Recorder
from rules_engine.backtest._recorded import load_session, open_market
from rules_engine.core.market import Candle
from rules_engine.core.symbols import SymbolTable
from rules_engine.runtime._config import load_config
from rules_engine.runtime._run import run_watcher
from rules_engine.runtime._watcher import Watcher
from rules_engine.sandbox.clock import ManualClock
from rules_engine.sandbox.config import SandboxConfig
from rules_engine.sandbox.replay import CandleReplay
from rules_engine.sandbox.state import SandboxState, build_state
from rules_engine.sandbox.testing import serve
from rules_engine.sandbox.ws import Hub


@dataclass
class LiveRun:
    recorder: Recorder
    outcomes: dict[str, tuple[str, str, Decimal]]  # client oid -> the sandbox's end of it
    balances: dict[str, Decimal]
    moves: int  # clock moves made


class _Counted:
    """Counts the runs of a job that started at or after each clock move and ended."""

    def __init__(self, job: Callable[[], Awaitable[None]]) -> None:
        self.job = job
        self.generation = 0
        self.done = 0  # the generation the last finished run started in

    async def __call__(self) -> None:
        started = self.generation
        await self.job()
        self.done = max(self.done, started)


class Harness:
    def __init__(self, state: SandboxState, clock: ManualClock, watcher: Watcher,
                 recorder: Recorder, jobs: list[_Counted]) -> None:
        self.state, self.clock, self.watcher, self.recorder = state, clock, watcher, recorder
        self.jobs = jobs
        self.moves = 0
        hub = state.extras.get("ws_hub")
        assert isinstance(hub, Hub)
        self.hub = hub
        # The streams' readers run as long as the watcher: not work in flight.
        self.streams = {t for t in watcher.ctx.tasks if not t.done()}

    def _signature(self) -> tuple[int, ...]:
        engine, w = self.state.engine, self.watcher
        return (self.hub.pushed, len(engine.orders), len(engine.stop_orders), len(engine.fills),
                len(self.recorder.decisions), len(w.orders.tracked), len(w.orders.pending),
                len(w.held_orders.legs))

    def _busy(self) -> bool:
        w = self.watcher
        return (any(not t.done() for t in w.ctx.tasks - self.streams) or bool(w.jobs.running)
                or any(c.queue.qsize() for c in self.hub.conns))

    async def settle(self) -> None:
        deadline = time.monotonic() + 10
        quiet, last = 0, None
        while quiet < 3:
            await asyncio.sleep(0.001)
            if self.watcher.ctx.stop.is_set():
                raise AssertionError(f"the watcher stopped: {self.watcher.stop_reason}")
            now = self._signature()
            if self._busy() or now != last:
                quiet, last = 0, now
            else:
                quiet += 1
            if time.monotonic() > deadline:
                raise AssertionError("the live watcher and the sandbox did not settle")
        self.recorder.take_fills(self.state.engine)

    async def move(self, ms: int) -> None:
        """The clock to `ms`; the scheduler's clock and order-timer jobs run at it; settle."""
        self.clock.current_ms = max(ms, self.clock.current_ms)
        self.moves += 1
        for job in self.jobs:
            job.generation += 1
        deadline = time.monotonic() + 10
        while any(job.done < job.generation for job in self.jobs):
            await asyncio.sleep(0.002)
            if time.monotonic() > deadline:
                raise AssertionError("the watcher's scheduled jobs did not run")
        await self.settle()

    async def advance_to(self, ms: int) -> None:
        """As the backtest's clock: stop at each moment a timer falls due before `ms`."""
        while True:
            due = next_due(self.watcher)
            if due is None:
                break
            due_ms = int(due.timestamp() * 1000)
            if due_ms >= ms:
                break
            await self.move(max(due_ms, self.clock.current_ms))
            if next_due(self.watcher) == due:
                break


@dataclass
class Market:
    """A sandbox state replaying a recorded market on a manual clock, and the moments (ms)
    at which it moves, in order."""

    state: SandboxState
    clock: ManualClock
    moments: list[int]


def _config(balances: dict[str, Decimal]) -> SandboxConfig:
    """As the backtest's sandbox: its balances, 0.1% fees, no open-order cap in the way."""
    return SandboxConfig(balances=balances, maker_fee_rate=Decimal("0.001"),
                         taker_fee_rate=Decimal("0.001"), max_open_orders_per_symbol=10_000)


def candle_market(table: SymbolTable, candles: list[Candle], period_s: int,
                  balances: dict[str, Decimal]) -> Market:
    replay = CandleReplay(table, candles, period_s)
    moments = list(replay.moments())
    clock = ManualClock(current_ms=moments[0])
    return Market(build_state(_config(balances), feed=replay, clock=clock), clock, moments)


def recorded_market(session: str, symbols: list[str], start: datetime, end: datetime,
                    balances: dict[str, Decimal]) -> Market:
    """The session's replay opened as `backtest --recorded` opens it (`open_market`)."""
    feed = load_session(session)
    clock = ManualClock(current_ms=feed.start_ms)
    state = build_state(_config(balances), feed=feed, clock=clock)
    return Market(state, clock, open_market(state, feed, symbols, start, end))


async def live_run(rules: Path, market: Market, *, end: datetime, tmp: Path) -> LiveRun:
    state, clock, moments = market.state, market.clock, market.moments
    sandbox = state.config
    recorder = Recorder(lambda: datetime.fromtimestamp(clock.now_ms() / 1000, UTC))
    holder: list[Watcher] = []
    counted: list[_Counted] = []

    def started(watcher: Watcher) -> None:
        """Before the watcher's start: its output recorded, its two clocked jobs counted
        (the scheduler takes the jobs from these attributes when the start ends)."""
        emit = watcher.ctx.emit

        def both(kind: str, data: dict[str, Any]) -> None:
            recorder.emit(kind, data)
            emit(kind, data)

        watcher.ctx.emit = both
        clock_job = _Counted(watcher.jobs.clock_job)
        timer_job = _Counted(watcher.orders.timer_job)
        watcher.jobs.clock_job = clock_job  # type: ignore[method-assign]
        watcher.orders.timer_job = timer_job  # type: ignore[method-assign]
        counted.extend((clock_job, timer_job))
        holder.append(watcher)

    async with serve(sandbox, state=state, run_feed=False) as box:
        config = load_config(None, {
            "exchange_url": box.url, "db": f"sqlite:///{tmp / 'live.sqlite'}", "view": "off",
            "log_format": "json", "order_family": "hf", "clock_interval_s": 0.005,
            "reconcile_interval_s": 3600, "reload_interval_s": 0})
        stop = asyncio.Event()
        task = asyncio.create_task(run_watcher(config, [rules], stop, started, clock=clock))
        try:
            deadline = time.monotonic() + 15
            while not (holder and holder[0].ctx.ready.is_set() and holder[0].market.live):
                if task.done():
                    task.result()
                    raise AssertionError("the watcher ended before it was ready")
                if time.monotonic() > deadline:
                    raise AssertionError("the watcher did not start")
                await asyncio.sleep(0.01)
            harness = Harness(state, clock, holder[0], recorder, counted)
            await harness.settle()
            for at in moments:
                await harness.advance_to(at)
                await harness.move(at)
                state.feed_step()
                await harness.settle()
            await harness.advance_to(int(end.timestamp() * 1000))
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
    engine = state.engine
    balances = {c: engine.account.total(c) for c in engine.account.totals}
    return LiveRun(recorder, recorder.outcomes(engine), balances, harness.moves)


OID = re.compile(r"re[0-9a-f]{8}-[0-9a-f]{26}")


def normalised(records: object, orders: dict[str, dict[str, Any]]) -> list[str]:
    """Records as JSON lines with each client oid (made from the store's own engine id, so
    each run's differ) replaced by what it names: its rule, firing and order type, and the
    exchange's order ids left out."""
    names = {oid: f"<{o['rule']}#{o['firing']} {o['type']}>" for oid, o in orders.items()}

    def line(record: object) -> str:
        if isinstance(record, dict):  # the exchange's own ids differ from run to run
            record = {k: v for k, v in record.items() if k not in ("leg_id", "order_id")}
        return OID.sub(lambda m: names.get(m.group(0), "<unknown order>"),
                       json.dumps(record, default=str, sort_keys=True))

    items = records if isinstance(records, list) else [records]
    return [line(r) for r in items]


def diff(name: str, live: list[str], backtest: list[str]) -> str:
    return "\n".join(difflib.unified_diff(live, backtest, f"{name} (live)",
                                          f"{name} (backtest)", lineterm=""))


def differences(live: LiveRun, back: Any) -> list[str]:
    """Every way the two runs differ, each as a unified diff: decision lines, orders, fills,
    order ends and balances (none: they decided, sent and filled the same)."""
    seen = live.recorder
    problems = []
    for name, mine, theirs in (
        ("decisions", normalised(seen.decisions, seen.orders),
         normalised(back.decisions, back.orders)),
        ("orders", normalised(list(seen.orders.values()), seen.orders),
         normalised(list(back.orders.values()), back.orders)),
        ("fills", normalised(seen.fills, seen.orders), normalised(back.fills, back.orders)),
        ("order ends", sorted(normalised([[k, *v] for k, v in live.outcomes.items()],
                                         seen.orders)),
         sorted(normalised([[k, *v] for k, v in back.outcomes.items()], back.orders))),
        ("balances", normalised(sorted(live.balances.items()), {}),
         normalised(sorted(back.end_balances.items()), {})),
    ):
        if mine != theirs:
            problems.append(diff(name, mine, theirs))
    return problems
