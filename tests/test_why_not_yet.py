"""Why a rule has not fired yet, on the running watcher's live values: each comparison's
current value against its threshold, the closed candles an indicator still lacks (a real
sandbox serving 6 hourly candles to a rule on `sma(20, 1h)`), the next time a timed rule can
decide; shown by the watcher's snapshot (the terminal view, the dashboard) and by
`rules-engine status` through the row the watcher keeps in the store."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rules_engine.cli import main
from rules_engine.runtime._config import load_config
from rules_engine.runtime._run import run_watcher
from rules_engine.runtime._watcher import Watcher
from rules_engine.sandbox.config import SandboxConfig
from rules_engine.sandbox.feeds import Candle, ExternalFeed, load_symbols
from rules_engine.sandbox.state import build_state
from rules_engine.sandbox.testing import serve

D = Decimal
SYMBOL = "BTC-USDT"
RULES = """\
rule slow_sma on BTC-USDT:
    when bid > sma(20, 1h)
    place limit buy 0.001 at bid - 100

rule low_bid on BTC-USDT:
    when bid < 50000 and ask < 70000
    place limit buy 0.001 at 40000

rule held_an_hour on BTC-USDT:
    when bid > 1 for 1h
    place limit buy 0.001 at 40000
"""


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def _history(count: int) -> list[Candle]:
    """`count` hourly candles, the last one the hour before this one (all closed)."""
    hour = int(time.time()) // 3600 * 3600
    return [Candle(hour - 3600 * (count - i), D(59000 + i), D(59001 + i), D(59002 + i),
                   D(58999 + i), D(1), D(59000)) for i in range(count)]


async def test_a_rule_short_of_candles_says_how_many_it_has_and_when_it_will_have_enough(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    feed = ExternalFeed(load_symbols(), [SYMBOL])
    feed.set_history(SYMBOL, _history(6))
    feed.push(SYMBOL, [(D(59000), D(1)), (D(58990), D(1))], [(D(59010), D(1)), (D(59020), D(1))])
    config = SandboxConfig().model_copy(update={"feed_interval_ms": 20})
    state = build_state(config, feed=feed)
    db = f"sqlite:///{tmp_path / 'why.sqlite'}"
    rules = tmp_path / "why.rules"
    rules.write_text(RULES)
    async with serve(config, state=state, run_feed=True) as box:
        settings = load_config(None, {"exchange_url": box.url, "db": db, "view": "off",
                                      "log_format": "json", "request_timeout_s": 2.0})
        stop = asyncio.Event()
        holder: list[Watcher] = []
        task = asyncio.create_task(run_watcher(settings, [rules], stop, holder.append))
        try:
            await _until(lambda: bool(holder) or task.done())
            watcher = holder[0]
            await _until(lambda: watcher.ctx.ready.is_set() and watcher.market.live
                         and all(b.fresh for b in watcher.books.values()))
            await _until(lambda: watcher.states["held_an_hour"].true_since is not None)
            why = {row["rule"]: row for row in watcher.snapshot()["not_yet"]}

            sma = why["slow_sma"]
            assert sma["status"] == "armed"
            assert sma["conditions"] == [{"text": "BTC-USDT bid > BTC-USDT sma(20, 1h)",
                                          "left": "59000", "right": None, "holds": None}]
            [lack] = sma["lacks"]
            assert lack.startswith("BTC-USDT sma(20, 1h): 6 of 20 closed 1h candles; enough "
                                   "once the candle closing at ")
            # 14 more closes: the open hour's, then 13 more.
            hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
            assert (hour + timedelta(hours=14)).isoformat() in lack
            assert sma["next_due"] is None and "6 of 20" in sma["short"]

            low = why["low_bid"]
            assert [(c["text"], c["left"], c["right"], c["holds"]) for c in low["conditions"]] \
                == [("BTC-USDT bid < 50000", "59000", "50000", False),
                    ("BTC-USDT ask < 70000", "59010", "70000", True)]
            assert low["lacks"] == []

            held = why["held_an_hour"]
            since = watcher.states["held_an_hour"].true_since
            assert since is not None
            assert held["next_due"] == (since + timedelta(hours=1)).isoformat()
            assert held["waits_for"].startswith(f"its condition has held since "
                                                f"{since.isoformat()}")

            # `status` reads what the watcher keeps in the store (its job, every 5 s).
            assert watcher.jobs.scheduler.get_job("why not yet") is not None
            watcher.save_why()
            code = await asyncio.to_thread(main, ["status", "--db", db])
            out = capsys.readouterr().out
            assert code == 0, out
            assert "on the running watcher's live values as of" in out
            assert "BTC-USDT bid > BTC-USDT sma(20, 1h): 59000 against ? (unknown)" in out
            assert "lacks BTC-USDT sma(20, 1h): 6 of 20 closed 1h candles" in out
            assert "BTC-USDT bid < 50000: 59000 against 50000 (does not hold)" in out
            assert f"next decides at {(since + timedelta(hours=1)).isoformat()}" in out
            code = await asyncio.to_thread(main, ["status", "--db", db, "--format", "json"])
            report: dict[str, Any] = json.loads(capsys.readouterr().out)
            stored = {r["rule"]: r for r in report["live_not_yet"]["rules"]}
            assert stored["slow_sma"]["lacks"] == [lack]
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
    # With no watcher running, `status` says what the store alone tells (no stale values).
    code = main(["status", "--db", db])
    out = capsys.readouterr().out
    assert code == 0 and "running watcher's live values as of" not in out
    assert "slow_sma: armed since" in out


def test_a_macd_rule_short_of_candles_is_explained_not_fatal() -> None:
    """MACD's candles needed depend on its slow and signal periods (the leaf's params): the
    explanation reads them (without them `history_needed` raised, and the why-not-yet job
    stopped the watcher the first time a MACD rule lacked candles)."""
    from rules_engine.compiler import model as M
    from rules_engine.core.market import Candle as MarketCandle
    from rules_engine.engine._candles import CandleSeries, history_needed
    from rules_engine.runtime._why import _candles_short

    now = datetime(2026, 1, 2, 12, 30, tzinfo=UTC)
    series = CandleSeries(SYMBOL, "1h", keep=200)
    start = datetime(2026, 1, 2, 2, tzinfo=UTC)
    series.load([MarketCandle(SYMBOL, "1hour", start + timedelta(hours=i), D(1), D(1), D(1),
                              D(1), D(1), D(1)) for i in range(10)], now)
    leaf = M.Indicator(SYMBOL, "macd_hist", 12, "1h", (D(26), D(9)))
    need = history_needed("macd_hist", 12, (D(26), D(9)))
    text = _candles_short(leaf, series, now)
    assert f"10 of {need} closed 1h candles" in text  # 02:00 to 11:00, all closed at 12:30
