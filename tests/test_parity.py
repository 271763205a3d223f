"""Parity: the backtest runs the code that trades. The same rule file over the same recorded
market (two days of the shipped real KuCoin BTC-USDT hourly candles, on the way to the fall
to 60,000), once by the live watcher (`run_watcher`, the `rules-engine run` entry, its
scheduler running) against a sandbox on port 0 replaying that market under its test clock
(`tests/parity_support.py`), once by `run_backtest` (in-process, skipping what cannot
matter), decides, sends and fills the same: every decision line, every order (rule, firing,
side, type, price, size), every fill (time, price, size, fee, maker or taker), every order's
end on the exchange and the final balances.

The rules are the examples' (examples/lifecycle.rules, chains.rules, triggers.rules) with
their price levels moved into this market's range and their durations set off the path's
quarter hours, so timers fall due between two points of the market: `cancel after` and
`repeat every` (dip_ladder), a chain into a bracket whose stop-loss triggers (entry,
bracket), a chain into a trailing stop that fills (breakout, trailing) and `for`
(sustained). dip_ladder drops the example's `spread < 0.1%`: the replayed book's spread is
always two ticks, and a spread rule would keep the backtest from skipping any candle, where
this test wants skipping in play.

The newer constructs have a rule file of their own (PROTECTION_RULES): a bracket `on
exchange` (one OCO order), risk sizing, a guard over two targets with `move stop-loss` and
`exit after`, and `pnl`, `position` and `% of position` in a chain.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from parity_support import candle_market, differences, live_run

from rules_engine.backtest import Settings, run_backtest
from rules_engine.compiler._snapshot import shipped_symbols
from rules_engine.history import read_candles
from rules_engine.runtime._reload import RuleFiles
from rules_engine.sandbox.feeds import FeedTick
from rules_engine.sandbox.replay import CandleReplay, price_path

D = Decimal

RULES = """\
rule dip_ladder on BTC-USDT:
    when ask <= 72000
    place limit buy 0.01 at ask - 5 post-only
    cancel after 25m
    repeat every 50m max 3

rule entry on BTC-USDT:
    when ask <= 66000
    place limit buy 0.01 at ask - 5

rule bracket on BTC-USDT:
    after entry filled
    place limit sell filled_size at fill_price + 3%
    stop-loss at fill_price - 2%

rule breakout on BTC-USDT:
    when last crosses above 70000
    place market buy 100 USDT

rule trailing on BTC-USDT:
    after breakout filled
    place trailing-stop sell filled_size by 2%

rule sustained on BTC-USDT:
    when last > 71000 for 20m
    place limit sell 0.01 at last + 0.2%
"""

START, END = datetime(2026, 2, 4, tzinfo=UTC), datetime(2026, 2, 6, tzinfo=UTC)
BALANCES = {"USDT": D(10000), "BTC": D("0.1")}


async def test_the_live_watcher_and_the_backtest_decide_send_and_fill_the_same(
    tmp_path: Path,
) -> None:
    rules_file = tmp_path / "parity.rules"
    rules_file.write_text(RULES)
    table = shipped_symbols()
    candles = list(read_candles(None, "BTC-USDT", "1h", START, END))
    assert len(candles) == 48

    live = await live_run(rules_file, candle_market(table, candles, 3600, BALANCES), end=END,
                          tmp=tmp_path)
    rules, _ = RuleFiles([rules_file], table, ()).load()
    back = await run_backtest(list(rules), table, iter(candles), lambda *_: [],
                              Settings(START, END, 3600, dict(BALANCES)))

    problems = differences(live, back)
    assert not problems, "live and backtest differ:\n" + "\n".join(problems)

    # The run exercised what it claims to.
    fired = Counter(d["rule"] for d in back.decisions if d["kind"] == "fired")
    assert fired == {"dip_ladder": 3, "entry": 1, "bracket": 1, "breakout": 1, "trailing": 1,
                     "sustained": 1}
    assert Counter(d["kind"] for d in back.decisions)["rule.rearm"] == 2  # repeat every
    ends = Counter((back.orders[oid]["rule"], end[1]) for oid, end in back.outcomes.items())
    assert ends[("dip_ladder", "canceled")] == 3  # cancel after 25m, each time
    fills = Counter((f["rule"], f["side"], f["liquidity"]) for f in back.fills)
    assert fills == {("sustained", "sell", "maker"): 1, ("breakout", "buy", "taker"): 1,
                     ("trailing", "sell", "taker"): 1, ("entry", "buy", "maker"): 1,
                     ("bracket", "sell", "taker"): 1}  # the bracket's stop-loss sold
    assert back.skipped > 0  # the backtest skipped quiet candles; the live run saw them all
    assert live.moves > 4 * len(candles), live.moves  # and stopped where timers fell due


PROTECTION_RULES = """\
rule entry on BTC-USDT:
    when ask <= 71000
    place limit buy 0.01 at ask - 5

rule oco on BTC-USDT:
    after entry filled
    place limit sell filled_size at fill_price + 3%
    stop-loss at fill_price - 2% limit fill_price - 2.5% on exchange

rule risk_dip on BTC-USDT:
    when ask < 62500
    place limit buy risk 1% of USDT stop 59000 at ask

rule low on BTC-USDT:
    when last < 60500
    place market buy 0.02

rule tp1 on BTC-USDT:
    after low filled
    place limit sell 50% of filled_size at fill_price + 7%

rule tp2 on BTC-USDT:
    after low filled
    place limit sell 50% of filled_size at fill_price + 12%

rule guard on BTC-USDT:
    after low filled
    stop-loss at fill_price - 2%
    move stop-loss to fill_price after tp1 filled
    exit after 250m

rule rebound on BTC-USDT:
    when last crosses above 65000
    place market buy 0.02

rule take_half on BTC-USDT:
    after rebound filled
    when pnl > 2
    place market sell 50% of position

rule cut on BTC-USDT:
    after rebound filled
    when position > 0 and pnl% < -1%
    place market sell position
"""


async def test_brackets_guards_and_positions_are_the_same_live_and_in_the_backtest(
    tmp_path: Path,
) -> None:
    """The newer constructs over 30 hours of the same candles (the fall to 60,000 and the
    rebound): an OCO bracket on the exchange whose stop leg triggers and sells, its
    take-profit leg cancelled by the exchange (oco); risk sizing (risk_dip); a guard with two
    targets, its stop moved to the entry's price when the first target fills and its
    `exit after` (250 minutes, off the path's quarter hours) cancelling the second target
    and selling what is left (low, tp1, tp2, guard); `pnl`, `% of position`, `position` and
    `pnl%` in a chain (rebound, take_half, cut). Both sides decide (the held stops' moves,
    triggers and sales and the OCO legs' ends included), send and fill the same."""
    rules_file = tmp_path / "protection.rules"
    rules_file.write_text(PROTECTION_RULES)
    table = shipped_symbols()
    start, end = datetime(2026, 2, 5, 2, tzinfo=UTC), datetime(2026, 2, 6, 8, tzinfo=UTC)
    candles = list(read_candles(None, "BTC-USDT", "1h", start, end))
    assert len(candles) == 30
    live = await live_run(rules_file, candle_market(table, candles, 3600, BALANCES), end=end,
                          tmp=tmp_path)
    rules, _ = RuleFiles([rules_file], table, ()).load()
    back = await run_backtest(list(rules), table, iter(candles), lambda *_: [],
                              Settings(start, end, 3600, dict(BALANCES)))
    problems = differences(live, back)
    assert not problems, "live and backtest differ:\n" + "\n".join(problems)

    # The run exercised what it claims to.
    fired = Counter(d["rule"] for d in back.decisions if d["kind"] == "fired")
    assert fired == {rule: 1 for rule in ("entry", "oco", "risk_dip", "low", "tp1", "tp2",
                                          "guard", "rebound", "take_half", "cut")}, fired
    orders = {o["rule"]: o for o in back.orders.values()}
    assert orders["risk_dip"]["size"] == "0.02925874"  # 1% of 10,000 USDT risked to 59,000
    ends = {f"{back.orders[key.split()[0]]['rule']}{key[len(key.split()[0]):]}": end[:2]
            for key, end in back.outcomes.items()}
    assert ends["oco stop leg"] == ("done", "filled")  # the OCO's stop leg sold ...
    assert ends["oco limit leg"] == ("done", "canceled")  # ... and the exchange cancelled
    assert ends["tp2"] == ("done", "canceled")  # by the guard's time exit
    kinds = [(d["kind"], d.get("rule")) for d in back.decisions]
    held = [d for d in back.decisions if d["kind"].startswith(("stop_loss.", "exit."))]
    assert [d["kind"] for d in held] == ["stop_loss.moved", "exit.due", "stop_loss.sent"]
    assert held[0]["to"] == "60000.1"  # to the entry's fill, after tp1 filled
    assert held[1]["time"] == "2026-02-06T04:40:00+00:00"  # fired 00:30, exit after 250m
    assert ("oco.leg_filled", "oco") in kinds
    fills = Counter((f["rule"], f["side"]) for f in back.fills)
    assert fills == {(rule, side): 1 for rule, side in (
        ("entry", "buy"), ("oco", "sell"), ("risk_dip", "buy"), ("low", "buy"),
        ("tp1", "sell"), ("guard", "sell"), ("rebound", "buy"), ("take_half", "sell"),
        ("cut", "sell"))}, fills
    sold = {f["rule"]: f["size"] for f in back.fills}
    assert (sold["take_half"], sold["cut"]) == (D("0.010"), D("0.01"))  # half, then the rest


CANDLE_RULES = """\
rule band on BTC-USDT:
    when close(1h) < bb_lower(20, 2, 1h)
    place limit buy 0.001 at 1000
    repeat every 1h max 20

rule swing on BTC-USDT:
    when highest(6, 1h) > close(1h) + 800 and change(3, 1h) < -0.5%
    place market buy 0.001
    repeat every 1h max 20

rule wide on BTC-USDT:
    when close(1h) > sma(10, 1h) + 300 and lowest(12, 1h) < close(1h) - 500
    place limit buy 0.001 at 1000
    repeat every 1h max 20

rule turn on BTC-USDT:
    when macd_hist(12, 26, 9, 1h) crosses above 0
    place limit buy 0.001 at 1000
"""


async def test_rules_on_candle_prices_decide_the_same_live_and_in_the_backtest(
    tmp_path: Path,
) -> None:
    """Rules on candle prices (the bands, highest, lowest, change, sma, MACD) over three days
    of the same candles, no history before the start on either side: the live watcher reads
    the candles the sandbox builds from the replayed prints, the backtest the candles it
    feeds from the data; both decide, send and fill the same. (Candle volume and turnover are
    not compared here: the sandbox's are its prints' and the account's own trades', the
    backtest's the data's; docs/backtesting.md.) The MACD rule never has enough candles: the
    why-not-yet job explains it on both sides (without the fix in runtime/_why.py it stopped
    both watchers)."""
    rules_file = tmp_path / "candles.rules"
    rules_file.write_text(CANDLE_RULES)
    table = shipped_symbols()
    start, end = datetime(2026, 2, 3, tzinfo=UTC), datetime(2026, 2, 6, tzinfo=UTC)
    candles = list(read_candles(None, "BTC-USDT", "1h", start, end))
    balances = {"USDT": D(10000)}
    live = await live_run(rules_file, candle_market(table, candles, 3600, balances), end=end,
                          tmp=tmp_path)
    rules, _ = RuleFiles([rules_file], table, ()).load()
    back = await run_backtest(list(rules), table, iter(candles), lambda *_: [],
                              Settings(start, end, 3600, dict(balances)))
    problems = differences(live, back)
    assert not problems, "live and backtest differ:\n" + "\n".join(problems)
    fired = Counter(d["rule"] for d in back.decisions if d["kind"] == "fired")
    assert set(fired) == {"band", "swing", "wide"}, fired
    assert back.skipped == 0  # candle rules: every candle stepped


def test_the_candle_replay_steps_the_path_points_by_the_clock() -> None:
    """The sandbox's `CandleReplay`: the opening market first, then each path point once its
    moment has come (several at once when the clock jumped past them), in order."""
    table = shipped_symbols()
    candles = list(read_candles(None, "BTC-USDT", "1h", START, START + (END - START) / 24))
    assert len(candles) == 2
    replay = CandleReplay(table, candles, 3600)
    t0 = int(START.timestamp() * 1000)
    assert list(replay.moments()) == [t0 + i * 900_000 for i in range(8)]
    prints = [p for c in candles for p in price_path(c)]

    def printed(ticks: list[FeedTick]) -> list[Decimal]:
        return [t.trade[0] for t in ticks if t.trade is not None]

    assert printed(replay.step(0)) == prints[:1]  # the opening, whatever the clock says
    assert printed(replay.step(t0 - 1)) == []
    assert printed(replay.step(t0)) == prints[:1]
    assert printed(replay.step(t0 + 2_700_000)) == prints[1:4]
    assert printed(replay.step(t0 + 10_000_000)) == prints[4:]
    [tick] = CandleReplay(table, candles[:1], 3600).step(0)
    bid, ask = tick.bids[0][0], tick.asks[0][0]
    assert (bid, ask) == (prints[0] - D("0.1"), prints[0] + D("0.1"))  # a tick either side
    assert len(tick.bids) == len(tick.asks) == 10
