"""A watcher whose process was paused (SIGSTOP) and resumed (SIGCONT) never acts on what it
reads of the time it was stopped, over real processes and sockets.

The sandbox runs in this process with an `ExternalFeed` (the test sets its books) and short
pings (interval 1 s, timeout 1 s: the feed's window is 2 s); the watcher is a real
`rules-engine run` process on a SQLite file. While the watcher is stopped, the book moves under
the rule's level and back: the crossing exists only in the messages buffered in the watcher's
socket, which are seconds old when it resumes. The soak once found a watcher that fired on
them (a book 15.8 s behind the exchange). Then a fresh crossing must still fire, so the check
fails both ways.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from lifecycle_support import WatcherRun, until, watcher_toml
from test_watcher import Venue, watch

from rules_engine.dashboard._metrics import StoreCollector
from rules_engine.sandbox.config import SandboxConfig
from rules_engine.sandbox.feeds import ExternalFeed, load_symbols
from rules_engine.sandbox.state import build_state
from rules_engine.sandbox.testing import serve, serve_in_thread
from rules_engine.store._record import status_report

D = Decimal
SYMBOL = "BTC-USDT"
RULE = f"rule dip on {SYMBOL}:\n    when bid < 58000\n    place limit buy 0.001 at 50000\n"
PING_MS = 1000  # the sandbox's pingInterval and pingTimeout: a window of 2 s


def _book(bid: str, ask: str) -> tuple[list[tuple[D, D]], list[tuple[D, D]]]:
    b, a = D(bid), D(ask)
    return [(b, D(1)), (b - 10, D(1))], [(a, D(1)), (a + 10, D(1))]


@pytest.mark.skipif(os.name != "posix" or not hasattr(signal, "SIGSTOP"),
                    reason="SIGSTOP and SIGCONT need a POSIX system")
async def test_a_watcher_resumed_after_a_pause_never_fires_on_what_it_missed(
    tmp_path: Path,
) -> None:
    feed = ExternalFeed(load_symbols(), [SYMBOL, "ETH-USDT"])
    feed.push(SYMBOL, *_book("59000", "59010"))
    feed.push("ETH-USDT", *_book("3000", "3001"))
    cfg = SandboxConfig().model_copy(update={
        "feed_interval_ms": 20, "ping_interval_ms": PING_MS, "ping_timeout_ms": PING_MS})
    state = build_state(cfg, feed=feed)
    rules = tmp_path / "dip.rules"
    rules.write_text(RULE, encoding="utf-8")
    config = tmp_path / "watcher.toml"
    config.write_text(watcher_toml(lease_stale_s=30.0, reload_interval_s=0), encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'store.sqlite'}"
    where = f"files in {tmp_path}"

    async with serve(cfg, state=state, run_feed=True) as box:
        watcher = await WatcherRun.spawn(tmp_path, "watcher", [rules], url=box.url, db=db,
                                         config=config)
        try:
            assert await watcher.wait_for("feed.live", 30), f"no live feed ({where})"
            await asyncio.sleep(1.0)  # the book synced; bid 59000: the rule is false
            assert not state.engine.orders, watcher.tail()

            watcher.signal(signal.SIGSTOP)
            await asyncio.sleep(0.5)
            feed.push(SYMBOL, *_book("57500", "57510"))  # the rule's condition, unseen
            await asyncio.sleep(0.5)
            feed.push(SYMBOL, *_book("59000", "59010"))  # and back
            await asyncio.sleep(3.0)  # stopped 4 s in all: past the window and its 1 s
            watcher.signal(signal.SIGCONT)

            # What it reads now is seconds old: it waits until the feed proves it current.
            assert await until(lambda: watcher.count("feed.live") >= 2, 20), (
                f"the feed did not come back ({where}):\n{watcher.tail()}")
            await asyncio.sleep(1.0)
            placed = [o.req.price for o in state.engine.orders.values()]
            assert placed == [], (f"fired on data older than the feed's window ({where}):\n"
                                  f"{watcher.tail()}")
            assert watcher.count("feed.stalled") >= 1, watcher.tail()
            [stalled] = watcher.events("feed.stalled")[:1]
            assert stalled["stalled_s"] >= 3.0, stalled

            feed.push(SYMBOL, *_book("57500", "57510"))  # a fresh crossing fires
            assert await until(lambda: len(state.engine.orders) == 1, 10), (
                f"no firing on a fresh crossing ({where}):\n{watcher.tail()}")
            [order] = state.engine.orders.values()
            assert order.req.price == D("50000") and order.req.side == "buy"
        finally:
            code = await watcher.stop()
        assert code == 0, watcher.tail()
        assert "Traceback" not in watcher.text(), watcher.tail()



async def test_a_decision_taken_on_resume_before_any_frame_is_read_sees_the_stall(
    tmp_path: Path,
) -> None:
    """A timer can run first when the loop resumes, before the reader reads what waited in
    the socket: the clock job asks the feed first, so the market is stale before anything is
    decided on it. The watcher runs in this process, the sandbox on its own thread; the loop
    is blocked 3 s (the window is 2 s), then the clock job runs without yielding."""
    feed = ExternalFeed(load_symbols(), [SYMBOL, "ETH-USDT"])
    feed.push(SYMBOL, *_book("59000", "59010"))
    feed.push("ETH-USDT", *_book("3000", "3001"))
    cfg = SandboxConfig().model_copy(update={
        "feed_interval_ms": 20, "ping_interval_ms": PING_MS, "ping_timeout_ms": PING_MS})
    with serve_in_thread(cfg, feed=feed) as box:
        async with aiohttp.ClientSession() as http:
            v = Venue(box.url, box.state, feed, http)
            async with watch(v, tmp_path, RULE) as r:
                watcher = r.watcher
                assert watcher.market.live and watcher.market.values
                time.sleep(3.0)  # the stall itself: the loop does not run
                await watcher.jobs.clock_job()  # no await inside: nothing else runs first
                assert not watcher.market.live and not watcher.market.values
                store = r.store()
                events = [e for e in store.events() if e.kind == "feed.stalled"]
                # `status` and /metrics read the feed's last state event: stalled is not live.
                market = status_report(store, datetime.now(UTC))["feeds"]["market"]
                feed_live = {sample.labels["feed"]: sample.value
                             for family in StoreCollector(store, None).collect()
                             if family.name == "rules_engine_feed_live"
                             for sample in family.samples}
                store.close()
                assert len(events) == 1 and events[0].payload["stalled_s"] >= 2.9, events
                assert market.startswith("stalled since") and feed_live["market"] == 0, (
                    market, feed_live)
                await until(lambda: watcher.market.live and bool(watcher.market.values), 10)
