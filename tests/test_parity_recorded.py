"""Parity over a recorded WebSocket session: the same rules over eight seconds of the shipped
2021-04-25 KuCoin session (level2 and tickers as they came), once by the live watcher
(`run_watcher`, its scheduler running) against a sandbox on port 0 replaying the session
under its test clock, once by `backtest --recorded`'s driver in-process, decide, send and
fill the same (`tests/parity_support.py` compares every record). A market order walks the
recorded book, its chained limit sell (with a stop-loss) fills against recorded bids, and a
`for 1s` / `repeat every 1s` / `cancel after 1s` rule fires three times with timers falling
due between two recorded messages."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from parity_support import differences, live_run, recorded_market

from rules_engine.backtest import Settings
from rules_engine.backtest._recorded import load_session, run_recorded
from rules_engine.compiler._snapshot import shipped_symbols
from rules_engine.runtime._reload import RuleFiles

RULES = """\
rule dip on BCHSV-USDT:
    when last < 243
    place market buy 6

rule take on BCHSV-USDT:
    after dip filled
    place limit sell filled_size at 242.79
    stop-loss at 242.5

rule wide on BCHSV-USDT:
    when spread > 0.1% for 1s
    place limit buy 0.5 at bid - 0.2
    cancel after 1s
    repeat every 1s max 3
"""

START = datetime(2021, 4, 25, 19, 18, 54, tzinfo=UTC)
END = datetime(2021, 4, 25, 19, 19, 2, tzinfo=UTC)
BALANCES = {"USDT": Decimal(2000)}


async def test_live_and_backtest_agree_over_a_recorded_session(tmp_path: Path) -> None:
    rules_file = tmp_path / "bsv.rules"
    rules_file.write_text(RULES)
    market = recorded_market("2021-04-25", ["BCHSV-USDT"], START, END, BALANCES)
    live = await live_run(rules_file, market, end=END, tmp=tmp_path)
    table = shipped_symbols()
    rules, _ = RuleFiles([rules_file], table, ()).load()
    back = await run_recorded(list(rules), table, load_session("2021-04-25"), lambda *_: [],
                              Settings(START, END, 1, dict(BALANCES)))
    problems = differences(live, back)
    assert not problems, "live and backtest differ:\n" + "\n".join(problems)

    fired = Counter(d["rule"] for d in back.decisions if d["kind"] == "fired")
    assert fired == {"dip": 1, "take": 1, "wide": 3}
    assert Counter((f["rule"], f["liquidity"]) for f in back.fills) == {
        ("dip", "taker"): 3, ("take", "maker"): 2}  # the buy took three recorded levels
    ends = Counter((back.orders[oid]["rule"], end[1]) for oid, end in back.outcomes.items())
    # cancel after 1s: the first two; the third (fired at 19:19:01.823) still rests at the end
    assert ends[("wide", "canceled")] == 2 and ends[("wide", "")] == 1
    fired_at = [d["time"] for d in back.decisions if d["kind"] == "fired"]
    assert "2021-04-25T19:18:55+00:00" in fired_at  # `for 1s` due between two messages
    assert len(market.moments) > 300
