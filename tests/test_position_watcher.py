"""`position`, `% of position`, `pnl%`, `balance(CUR)` and risk sizing end to end: the real
`rules-engine run` assembly against the sandbox on port 0 (tests/test_watcher.py), a real
SQLite file, real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import time
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

from test_backtest import _cache
from test_watcher import db_url, rig, settle, until, venue, watch

from rules_engine.cli import main
from rules_engine.compiler import model as M

D = Decimal
__all__ = ["db_url"]  # the fixture: SQLite, and PostgreSQL when RULES_ENGINE_TEST_PG_URL is set

CHAIN = (
    "rule entry on BTC-USDT:\n"
    "    when ask < 60000\n"
    "    place market buy 0.004\n"
    "rule half on BTC-USDT:\n"
    "    after entry filled\n"
    "    when position > 0 and balance(USDT) > 100\n"
    "    place market sell 50% of position\n"
    "rule cut on BTC-USDT:\n"
    "    after entry filled\n"
    "    when pnl% < -5%\n"
    "    place market sell position\n"
)


async def test_a_chain_sells_half_its_position_then_the_rest_when_pnl_falls(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, CHAIN) as r:
        await until(lambda: len(r.orders()) == 2 and not r.watcher.pending, 10)
        buy, half = r.orders()
        assert (buy.req.side, buy.deal_size) == ("buy", D("0.004"))
        # 50% of what the chain bought (the sandbox charges its fee in USDT)
        assert (half.req.side, half.req.type, half.req.size) == ("sell", "market", D("0.002"))
        await until(lambda: half.deal_size == D("0.002"), 5)
        store = r.store()
        [fired] = [f for f in store.firings() if f.identity == "half"]
        store.close()
        assert fired.inputs["values"]["position"] == "0.004"
        assert D(fired.inputs["values"]["balance(USDT)"]) > 100
        assert len(r.orders()) == 2  # pnl% is about -0.2% (spread and fees): no cut yet
        # pnl% is of the chain: its pnl over what it paid for its position (236.04 USDT).
        # Half was sold at about its cost, so the other half must fall by over 10% for it:
        # (52000 - 59010) * 0.002 - 0.02 realised - 0.354 fees = -14.394, -6.1%.
        r.push("55000", "55010", trade="55005")  # -6.8% for the half still held, -3.6% in all
        await settle(0.3)
        assert len(r.orders()) == 2
        r.push("52000", "52010", trade="52005")
        await until(lambda: len(r.orders()) == 3 and not r.watcher.pending, 5)
        cut = r.orders()[2]
        # what the chain still holds, not what the entry bought
        assert (cut.req.side, cut.req.size) == ("sell", D("0.002"))
        store = r.store()
        [fired] = [f for f in store.firings() if f.identity == "cut"]
        store.close()
        pnl_rate = (D("-14.02") - D("0.02") - D("0.001") * (D("236.04") + D("118"))) / D(
            "236.04")
        assert D(fired.inputs["values"]["pnl%"]) == pnl_rate


async def test_a_chains_position_is_rebuilt_from_the_recorded_fills_after_a_restart(
    tmp_path: Path, db_url: str,
) -> None:
    rules = (
        "rule entry on BTC-USDT:\n    when ask < 60000\n    place market buy 0.003\n"
        "rule exit on BTC-USDT:\n    after entry filled\n"
        "    when position > 0 and bid > 59500\n    place market sell position\n"
    )
    async with venue() as v:
        async with watch(v, tmp_path, rules, db=db_url) as r:
            await until(lambda: len(r.orders()) == 1 and not r.watcher.pending, 10)
            await until(lambda: r.watcher.rules.states["exit"].status == "armed", 5)
        async with watch(v, tmp_path, rules, db=db_url) as r:
            assert r.watcher.firing.chains.book_of(("entry", 1), "BTC-USDT").position == D(
                "0.003")
            rows = {row["rule"]: row for row in r.watcher.not_yet()}
            held, bid = rows["exit"]["conditions"]  # why-not-yet reads the chain too
            assert (held["text"], held["left"], held["holds"]) == ("position > 0", "0.003", True)
            assert (bid["text"], bid["holds"]) == ("BTC-USDT bid > 59500", False)
            r.push("59600", "59610", trade="59605")
            await until(lambda: len(r.orders()) == 2 and not r.watcher.pending, 5)
            exit_order = r.orders()[1]
            assert (exit_order.req.side, exit_order.req.size) == ("sell", D("0.003"))


async def test_risk_sizing_buys_what_loses_the_risked_share_at_the_stop(tmp_path: Path) -> None:
    rules = (
        "rule entry on BTC-USDT:\n    when ask < 60000\n"
        "    place limit buy risk 1% of USDT stop 58000 at 59000\n"
    )
    async with rig(tmp_path, rules) as r:
        await until(lambda: len(r.orders()) == 1 and not r.watcher.pending, 10)
        [order] = r.orders()
        balance = D("100000")  # the sandbox's USDT
        per_unit = D(1000) + D("0.001") * (D(59000) + D(58000))  # the fee at both ends
        expected = (balance * D("0.01") / per_unit).quantize(D("0.00000001"), ROUND_FLOOR)
        assert (order.req.type, order.req.price, order.req.size) == ("limit", D(59000),
                                                                     expected)
        # at the stop, with the fees, the loss is at most 1% of the balance
        assert expected * per_unit <= balance * D("0.01")


async def test_risk_sizing_below_the_minimum_blocks_with_the_reason(tmp_path: Path) -> None:
    rules = (
        "rule entry on BTC-USDT:\n    when ask < 60000\n"
        "    place limit buy risk 0.0001% of USDT stop 30000 at 59000\n"
    )
    async with rig(tmp_path, rules) as r:
        await until(lambda: r.watcher.rules.states["entry"].status == "blocked", 10)
        reason = r.watcher.rules.reasons["entry"]
        assert "below BTC-USDT's baseMinSize" in reason and "risk more" in reason
        assert r.orders() == []


async def test_a_balance_is_unknown_while_the_order_channel_is_down(tmp_path: Path) -> None:
    rules = (
        "rule rich on BTC-USDT:\n    when balance(USDT) > 50000 and ask < 59000\n"
        "    place market buy 0.001\n"
    )
    async with rig(tmp_path, rules) as r:
        values = r.watcher.market.values
        await until(lambda: M.Balance("USDT") in values, 5)
        assert values[M.Balance("USDT")] == D("100000")  # the sandbox's, once live
        # Every WebSocket dropped and new tokens refused: the order channel is down.
        await r.admin("faults", {"http_5xx": True})
        await r.admin("drop-ws")
        await until(lambda: M.Balance("USDT") not in values, 10)
        await r.admin("faults", {"http_5xx": False})
        await until(lambda: r.watcher.market.live, 10)
        await until(lambda: M.Balance("USDT") in values, 10)  # live again: known again
        assert r.orders() == []
        r.push("58000", "58010", trade="58005")
        await until(lambda: len(r.orders()) == 1, 5)
        store = r.store()
        [fired] = store.firings()
        store.close()
        assert fired.inputs["values"]["balance(USDT)"] == "100000"


async def test_the_backtest_sizes_by_risk_and_sells_the_chains_position(
    tmp_path: Path,
) -> None:
    """The backtest runs the same watcher: risk sizing from the simulated balance, and the
    position read from the chain's simulated fills (tests/test_backtest.py's short history)."""
    rules = tmp_path / "risk.rules"
    rules.write_text(
        "rule entry on BTC-USDT:\n    when last < 49500\n"
        "    place limit buy risk 1% of USDT stop 47000 at 49000\n"
        "rule exit on BTC-USDT:\n    after entry filled\n"
        "    when position > 0 and last > 50500\n    place market sell position\n")
    out = tmp_path / "run.json"
    args = ["backtest", str(rules), "--from", "2026-01-01", "--to", "2026-01-01T05:00",
            "--balance", "1000 USDT", "--fees", "0.001,0.001", "--cache",
            str(_cache(tmp_path / "c.sqlite")), "--json", str(out)]
    code = await asyncio.to_thread(main, args)
    assert code == 0
    fills = json.loads(out.read_text())["fills"]
    # 1% of 1000 USDT over a loss of 2000 + 0.1% x (49000 + 47000) per BTC
    size = (D(10) / D(2096)).quantize(D("0.00000001"), ROUND_FLOOR)
    assert [(f["rule"], f["side"], D(f["size"])) for f in fills] == [
        ("entry", "buy", size), ("exit", "sell", size)]


async def test_a_rule_reading_a_balance_added_by_a_reload_fires_on_it(tmp_path: Path) -> None:
    first = "rule keep on BTC-USDT:\n    when bid < 50000\n    place limit buy 0.001 at 49000\n"
    rich = ("rule rich on ETH-USDT:\n    when balance(ETH) >= 10 and ask < 4000\n"
            "    place limit buy 0.01 at 2000\n")
    async with rig(tmp_path, first) as r:
        await until(lambda: r.watcher.firing.private_live, 5)
        path = tmp_path / "test.rules"
        path.write_text(first + rich)
        stamp = time.time_ns() + 1_000_000_000  # a new modification time
        os.utime(path, ns=(stamp, stamp))
        await until(lambda: len(r.orders()) == 1, 10)  # the sandbox holds 10 ETH
        assert r.orders()[0].req.symbol == "ETH-USDT"


async def test_chains_are_read_from_the_store_when_a_reload_brings_the_first_reader(
    tmp_path: Path,
) -> None:
    entry = "rule entry on BTC-USDT:\n    when ask < 60000\n    place market buy 0.002\n"
    reader = ("rule hold on BTC-USDT:\n    after entry filled\n"
              "    when position > 0\n    place limit sell position at 70000\n")
    async with rig(tmp_path, entry) as r:
        await until(lambda: len(r.orders()) == 1 and not r.watcher.pending, 10)
        await until(lambda: r.orders()[0].deal_size == D("0.002"), 5)
        chains = r.watcher.firing.chains
        assert not chains.loaded  # no rule reads a chain: the store is not read for them
        path = tmp_path / "test.rules"
        path.write_text(entry + reader)
        stamp = time.time_ns() + 1_000_000_000  # a new modification time
        os.utime(path, ns=(stamp, stamp))
        await until(lambda: chains.loaded, 10)
        # the entry's fill, followed before the reload, counted once
        assert chains.book_of(("entry", 1), "BTC-USDT").position == D("0.002")
