"""The language's later constructs end to end: the real `rules-engine run` assembly against the
sandbox on port 0 (see tests/test_watcher.py), a real SQLite file, real sockets."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp
from test_watcher import SYMBOL, Venue, moved_clock, settle, until, venue, watch

from rules_engine.core.market import Candle
from rules_engine.engine._indicators import atr, bollinger, change, macd, vwap
from rules_engine.sandbox.config import SandboxConfig
from rules_engine.sandbox.testing import serve
from rules_engine.store._record import status_report

D = Decimal


async def test_new_indicators_read_the_closed_candles_the_exchange_serves(
    tmp_path: Path,
) -> None:
    """ATR, the bands, MACD, VWAP, candle volume and change(n, tf) of the synthetic sandbox's
    real hourly BTC-USDT candles, as the firing recorded them, against the same functions over
    the candles its REST API serves, the open one left out."""
    cfg = SandboxConfig().model_copy(update={"feed_interval_ms": 50})
    async with serve(cfg, run_feed=True) as box, aiohttp.ClientSession() as http:
        v = Venue(box.url, box.state, None, http)
        rules = (
            "rule studies on BTC-USDT:\n"
            "    when atr(14, 1h) > 0 and bb_upper(20, 2.5, 1h) > bb_lower(20, 2.5, 1h)"
            " and macd_hist(1h) > -1000000 and vwap(24, 1h) > 1 and volume(1h) > 0"
            " and change(24, 1h) > -50% and bb_middle(20, 1h) > 1\n"
            "    place limit buy 0.001 at 1000\n"
        )
        async with watch(v, tmp_path, rules) as r:
            await until(lambda: r.watcher.fired == 1, 10)
            store = r.store()
            [firing] = store.firings()
            store.close()
        async with http.get(box.url + "/api/v1/market/candles",
                            params={"symbol": SYMBOL, "type": "1hour"}) as reply:
            rows = sorted((await reply.json())["data"], key=lambda row: int(row[0]))
    closed = rows[:-1]  # the newest candle is still open
    closes = [D(row[2]) for row in closed]

    candles = [
        Candle(SYMBOL, "1hour", datetime.fromtimestamp(int(row[0]), tz=UTC),
               *(D(x) for x in row[1:7]))
        for row in closed
    ]
    seen = firing.inputs["values"]
    bands = bollinger(closes, 20, D("2.5"))
    line = macd(closes[-155:], 12, 26, 9)
    assert bands is not None and line is not None
    assert seen["BTC-USDT atr(14, 1h)"] == str(atr(candles[-109:], 14))
    assert seen["BTC-USDT bb_upper(20, 2.5, 1h)"] == str(bands[2])
    assert seen["BTC-USDT bb_lower(20, 2.5, 1h)"] == str(bands[0])
    assert seen["BTC-USDT bb_middle(20, 1h)"] == str(bands[1])
    assert seen["BTC-USDT macd_hist(12, 26, 9, 1h)"] == str(line.histogram)
    assert seen["BTC-USDT vwap(24, 1h)"] == str(vwap(candles, 24))
    assert seen["BTC-USDT volume(1h)"] == str(candles[-1].volume)
    assert seen["BTC-USDT change(24, 1h)"] == str(change(closes, 24))


HOUR_MS = 3_600_000


async def test_a_schedule_buys_every_hour_from_its_start_up_to_its_max(tmp_path: Path) -> None:
    clock = moved_clock()
    rules = "rule dca on BTC-USDT:\n    every 1h max 2\n    place market buy 10 USDT\n"
    async with venue(clock=clock) as v, watch(v, tmp_path, rules) as r:
        await until(lambda: len(r.orders()) == 1)  # the first slot is the start
        first = r.orders()[0].req
        assert (first.side, first.type, first.funds) == ("buy", "market", D(10))
        store = r.store()
        [row] = status_report(store, r.watcher.ctx.now())["rules"]
        assert row["status"] == "cooling" and row["waits"].startswith("until ")
        clock.advance(HOUR_MS // 2)
        await settle(0.4)
        assert len(r.orders()) == 1  # half an hour: no slot yet
        clock.advance(HOUR_MS // 2 + 1_000)
        await until(lambda: len(r.orders()) == 2)
        clock.advance(5 * HOUR_MS)
        await settle(0.4)
        assert len(r.orders()) == 2  # max 2
        assert r.watcher.rules.states["dca"].status == "done"
        assert {o.req.client_oid for o in r.orders()} == {
            f.client_oid for f in store.firings()}
        store.close()


async def test_a_daily_schedule_fires_at_its_local_time_in_its_zone(tmp_path: Path) -> None:
    clock = moved_clock()
    zone = zoneinfo.ZoneInfo("Asia/Kolkata")  # +05:30: a zone no UTC minute grid hides
    slot = (datetime.fromtimestamp(clock.current_ms / 1000, tz=UTC) + timedelta(minutes=3)
            ).astimezone(zone).replace(second=0, microsecond=0)
    rules = (f"rule daily on BTC-USDT:\n    every day at {slot:%H:%M} Asia/Kolkata max 1\n"
             "    place market buy 10 USDT\n")
    async with venue(clock=clock) as v, watch(v, tmp_path, rules) as r:
        await settle(0.4)
        assert r.orders() == []
        assert r.watcher.rules.states["daily"].rearm_at == slot.astimezone(UTC)
        clock.advance(4 * 60_000)
        await until(lambda: len(r.orders()) == 1)
        assert r.watcher.rules.states["daily"].status == "done"
