"""`rules-engine market`: the client's synced book, checked against the exchange's own."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import aiohttp

from rules_engine.sandbox.config import SandboxConfig
from rules_engine.sandbox.testing import serve


async def run_market(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rules_engine",
        "market",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_once_json_shows_the_exchanges_book_exactly_when_it_is_still() -> None:
    async with serve(SandboxConfig()) as box:  # no feed: the book stands still
        code, out, err = await run_market(
            "BTC-USDT",
            "ETH-USDT",
            "--exchange-url",
            box.url,
            "--once",
            "--format",
            "json",
            "--depth",
            "100",
        )
        assert code == 0, err
        report = json.loads(out)
        async with aiohttp.ClientSession() as session:
            for symbol in ("BTC-USDT", "ETH-USDT"):
                async with session.get(
                    f"{box.url}/api/v1/market/orderbook/level2_100", params={"symbol": symbol}
                ) as reply:
                    book = (await reply.json())["data"]
                row = report[symbol]
                assert row["state"] == "live"
                assert row["sequence"] == int(book["sequence"])
                assert row["bids"] == book["bids"] and row["asks"] == book["asks"]
                assert row["bid"] == book["bids"][0][0] and row["ask"] == book["asks"][0][0]


async def test_once_follows_a_moving_market_to_a_live_book() -> None:
    async with serve(SandboxConfig(), run_feed=True) as box:
        code, out, err = await run_market(
            "BTC-USDT", "--exchange-url", box.url, "--once", "--format", "json"
        )
        assert code == 0, err
        row = json.loads(out)["BTC-USDT"]
        assert row["state"] == "live" and len(row["bids"]) == 10
        assert row["last"] is not None
        prices = [float(p) for p, _ in row["bids"]]
        assert prices == sorted(prices, reverse=True)
        assert float(row["bids"][0][0]) < float(row["asks"][0][0])


async def test_bad_arguments_and_unreachable_exchanges_exit_2_without_a_traceback() -> None:
    for args in (
        ["btc-usdt", "--once"],
        ["BTC-USDT", "--exchange-url", "ftp://x", "--once"],
        ["BTC-USDT", "--exchange-url", "http://127.0.0.1:9", "--once"],
    ):
        code, _, err = await run_market(*args)
        assert code == 2 and "Traceback" not in err and "error" in err
