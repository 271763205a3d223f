"""Rules that read candle indicators are stepped at every candle close of a backtest, never
skipped: their values change at each close whatever the price does, which no quiet band can
see. Over the shipped BTC-USDT hourly candles, such rules (ATR, the Bollinger bands, MACD,
highest/lowest, change(n, tf), close(tf)) decide the same with skipping on and off, no candle
is skipped, and the guard is what makes it so: with it taken away the same run skips candles
and decides otherwise."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rules_engine.backtest import Run, Settings, run_backtest
from rules_engine.backtest._driver import _Driver
from rules_engine.compiler._snapshot import shipped_symbols
from rules_engine.history import read_candles
from rules_engine.runtime._reload import RuleFiles
from rules_engine.store import Store, live_why

RULES = """\
rule wide on BTC-USDT:
    when atr(14, 1h) > 600
    place limit buy 0.001 at 1000
    repeat every 1h max 100

rule band on BTC-USDT:
    when close(1h) < bb_lower(20, 2, 1h)
    place limit buy 0.001 at 1000
    repeat every 1h max 100

rule turn on BTC-USDT:
    when macd_hist(12, 26, 9, 1h) crosses above 0
    place limit buy 0.001 at 1000
    repeat every 1h max 100

rule channel on BTC-USDT:
    when highest(24, 1h) > close(1h) + 1500 and change(4, 1h) < -0.5%
    place limit buy 0.001 at 1000
    repeat every 1h max 100
"""

START, END = datetime(2026, 1, 10, tzinfo=UTC), datetime(2026, 1, 17, tzinfo=UTC)


def _history(symbol: str, kind: str, a: datetime, b: datetime) -> list[Any]:
    """The shipped hourly candles before the start: the indicators are known at once."""
    return list(read_candles(None, symbol, "1h", a, b)) if kind == "1hour" else []


def _run(tmp_path: Path, skip: bool) -> Run:
    rules_file = tmp_path / "indicators.rules"
    rules_file.write_text(RULES)
    table = shipped_symbols()
    rules, _ = RuleFiles([rules_file], table, ()).load()
    settings = Settings(START, END, 3600, {"USDT": Decimal(10000)}, skip=skip)
    candles = read_candles(None, "BTC-USDT", "1h", START, END)
    return asyncio.run(run_backtest(list(rules), table, candles, _history, settings))


def _fired(run: Run) -> list[tuple[str, str]]:
    return [(d["time"], d["rule"]) for d in run.decisions if d["kind"] == "fired"]


def _same(records: object) -> str:
    return re.sub(r"re[0-9a-f]{8}-[0-9a-f]+", "OID",
                  json.dumps(records, default=str, sort_keys=True))


def test_indicator_rules_are_stepped_at_every_candle_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    skipping, stepping = _run(tmp_path, True), _run(tmp_path, False)
    assert skipping.candles == 168
    assert (skipping.stepped, skipping.skipped) == (168, 0)
    assert _same(skipping.decisions) == _same(stepping.decisions)
    fired = Counter(rule for _, rule in _fired(stepping))
    assert set(fired) == {"wide", "band", "turn", "channel"}, fired  # each rule decided
    # Values of closed candles change at closes only: every firing is at a close (on the
    # hour), at many different closes.
    moments = {datetime.fromisoformat(at) for at, _ in _fired(stepping)}
    assert all(m.minute == m.second == 0 for m in moments), sorted(moments)
    assert len(moments) > 15

    # The guard taken away (every symbol skippable): quiet candles are skipped, the
    # indicators miss their closes, and the rules decide otherwise. This is what the
    # assertions above would catch.
    monkeypatch.setattr(_Driver, "unskippable", lambda self: set())
    unguarded = _run(tmp_path, True)
    assert unguarded.skipped > 0
    assert _fired(unguarded) != _fired(stepping)


def test_the_backtest_runs_the_why_not_yet_job_as_live_does(tmp_path: Path) -> None:
    """The watcher's why-not-yet job runs in a backtest too (once a simulated day), so what
    it does live happens here: a MACD rule short of candles is explained in the store,
    where it once stopped the live watcher."""
    rules_file = tmp_path / "macd.rules"
    rules_file.write_text("rule turn on BTC-USDT:\n"
                          "    when macd_hist(12, 26, 9, 1h) crosses above 0\n"
                          "    place limit buy 0.001 at 1000\n")
    table = shipped_symbols()
    rules, _ = RuleFiles([rules_file], table, ()).load()
    db = f"sqlite:///{tmp_path / 'store.sqlite'}"
    start, end = datetime(2026, 1, 10, tzinfo=UTC), datetime(2026, 1, 12, tzinfo=UTC)
    settings = Settings(start, end, 3600, {"USDT": Decimal(1000)}, db=db)
    candles = read_candles(None, "BTC-USDT", "1h", start, end)
    run = asyncio.run(run_backtest(list(rules), table, candles, lambda *_: [], settings))
    assert run.candles == 48 and not run.decisions
    store = Store(db)
    try:
        text = json.dumps(live_why(store), default=str)
    finally:
        store.close()
    assert "closed 1h candles; enough once the candle closing at" in text
