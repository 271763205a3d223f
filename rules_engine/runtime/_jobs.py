"""The watcher's periodic work, as APScheduler interval jobs on its loop: one run at a time
each, a late run coalesced, a failing one stops the watcher (fail-stop). What a job decides
uses the watcher's clock (`ctx.now`), so a test clock reaches it too.

    clock        candles that closed, values past their age, timed rules due, deferred
                 firings whose window opened, sliced orders' slices due
    order timers the order table's timers due (`cancel after`, a cancel asked again with
                 backoff, an order of unknown outcome looked up again)
    heartbeat    the lease (a lost lease stops the watcher at once)
    poll         open orders over REST while the order channel is down
    reconcile    every open order looked up, even with the channel live (a lost push, an
                 order the exchange forgot)
    control      halt, resume, resolve, unblock
    time sync    the exchange's clock
    why not yet  each rule's live why-not-yet into the store, for `status` (every 5 s)
    reload       edited rule files
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC
from typing import TYPE_CHECKING, Any

from apscheduler.events import EVENT_JOB_ERROR
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from rules_engine.runtime._context import Context, LeaseLostError
from rules_engine.store import LeaseLost

if TYPE_CHECKING:
    from rules_engine.runtime._watcher import Watcher

__all__ = ["WHY_EVERY_S", "Jobs"]

WHY_EVERY_S = 5.0  # how often the why-not-yet rows reach the store (for `status`)


class Jobs:
    def __init__(self, ctx: Context, watcher: Watcher) -> None:
        self.ctx = ctx
        self.w = watcher
        self.private_live = False
        self.running: set[asyncio.Task[Any]] = set()
        self.scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )

    def start(self) -> None:
        config = self.ctx.config
        w = self.w
        every: list[tuple[Callable[[], Any], float, str]] = [
            (self.clock_job, config.clock_interval_s, "clock"),
            (w.orders.timer_job, min(config.clock_interval_s, 0.25), "order timers"),
            (self.heartbeat_job, config.heartbeat_s, "heartbeat"),
            (self.poll_job, config.poll_interval_s, "poll while the channel is down"),
            (self.reconcile_job, config.reconcile_interval_s, "reconcile"),
            (w.controls.control_job, 0.25, "halt, resume, resolve"),
            (self.time_job, config.time_sync_s, "time sync"),
            (self.why_job, WHY_EVERY_S, "why not yet"),
        ]
        if w.controls.reloader is not None and config.reload_interval_s > 0:
            every.append((w.controls.reload_job, config.reload_interval_s, "hot reload"))
        for job, seconds, name in every:
            self.scheduler.add_job(self._guarded(job), "interval", seconds=seconds, id=name,
                                   name=name)
        self.scheduler.add_listener(self._job_failed, EVENT_JOB_ERROR)
        self.scheduler.start()

    async def stop(self) -> None:
        """No new runs; a running job ends on its own (not cancelled), within 5 s."""
        if self.scheduler.running:
            self.scheduler.pause()
        tasks = list(self.ctx.tasks) + list(self.running)
        if tasks:
            _, running = await asyncio.wait(tasks, timeout=5)
            for task in running:
                task.cancel()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def _guarded(self, job: Callable[[], Any]) -> Callable[[], Any]:
        async def run() -> None:
            if self.ctx.stop.is_set():
                return
            task = asyncio.current_task()
            if task is not None:  # `stop` waits for a job that is running
                self.running.add(task)
            try:
                await job()
            except Exception as error:  # fail-stop with one line (no scheduler traceback)
                self.ctx.fail_on(error)
            finally:
                if task is not None:
                    self.running.discard(task)

        return run

    async def run_once(self, job: Callable[[], Any]) -> None:
        """One run of `job` as the scheduler runs it (a failure stops the watcher with its
        reason): for a caller that keeps its own clock (a backtest)."""
        await self._guarded(job)()

    def _job_failed(self, event: Any) -> None:
        self.ctx.fail_on(event.exception)

    # ------------------------------------------------------------ the jobs

    async def clock_job(self) -> None:
        w = self.w
        now = self.ctx.now()
        w.firing.apply(w.feeds.advance(now), now)
        due = w.rules.timers.pop_due(now)
        if due:  # only the timed rules whose moment has come
            w.firing.evaluate([w.rules.rules[i] for i in due if i in w.rules.rules], now)
        deferred = w.firing.due(now)
        if deferred:
            w.firing.evaluate(deferred, now)
        w.firing.slices.due(now)  # a TWAP's slices whose time came, slices sent again
        w.held_orders.on_time(now)  # `exit after` deadlines

    async def heartbeat_job(self) -> None:
        self.w.orders.check_fence(renewing=True)  # an expired lease is not renewed
        try:
            self.ctx.store.heartbeat(self.ctx.now())
        except LeaseLost as err:
            raise LeaseLostError(str(err)) from None
        self.w.orders.fenced()

    async def keep_lease(self) -> None:
        while True:
            await asyncio.sleep(self.ctx.config.heartbeat_s)
            await self.heartbeat_job()

    async def poll_job(self) -> None:
        if not self.private_live:  # the order channel is down: REST is the fallback
            await self.w.orders.poll_all()

    async def reconcile_job(self) -> None:
        """Every open order looked up over REST even while the order channel is live: a
        lost push is found, and an order the exchange no longer knows is settled."""
        if self.private_live:
            await self.w.orders.poll_all()

    async def why_job(self) -> None:
        self.w.save_why()

    async def time_job(self) -> None:
        await self.ctx.venue.sync_time()

    def on_private_state(self, state: str, reason: str) -> None:
        live = state == "live"
        if live != self.private_live:
            self.private_live = live
            self.ctx.event("orders_feed.live" if live else "orders_feed.stale",
                           {} if live else {"reason": reason})
            if live:  # events missed while it was down: one REST pass catches them up
                self.ctx.spawn(self.w.orders.poll_all())
