"""KuCoin adapter costs, each as a ratio to a floor measured in the same run.

* level2 delta apply: every change of the real recorded session (2021-04-25) applied to the
  book with its sequence checks, best bid and ask read after each delta; JSON decoding is
  excluded (frames are decoded before timing). Floor: the same changes written straight into
  bare SortedDicts. Goal: 300,000 changes/s (issue 3) and >= 0.8 of the floor (issue 12;
  0.5 before). Price-"0" no-ops are counted apart.
* order signing: `sign_request` for an HF order body. Floor: one `hmac.digest` of the same
  prehash.
* ticker frame: `orjson.loads` and `parse_ws_message` of a recorded ticker frame into the core
  `Ticker`. Floor: `orjson.loads` alone.
Run: python benchmarks/bench_kucoin.py
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from sortedcontainers import SortedDict

from rules_engine.adapters.kucoin._book import Delta, Level2Book
from rules_engine.adapters.kucoin._parsing import parse_ws_message
from rules_engine.adapters.kucoin._signing import Credentials, Secret, Signer

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "kucoin"
NOW = datetime(2021, 4, 25, tzinfo=UTC)


def best_of(fn: Callable[[], object], repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure(repeats: int = 5, n: int = 20_000) -> dict[str, Any]:
    """Each figure with its floor (per second, best of `repeats`; `n` signatures and ticker
    frames a run)."""
    frames = []
    ticker_raw = b""
    for line in (DATA / "cryptofeed_kucoin_ws_2021-04-25.ndjson").read_text().splitlines():
        record = json.loads(line)
        msg = record.get("msg") or {}
        if msg.get("subject") == "trade.l2update" and msg["data"]["symbol"] == "BCHSV-USDT":
            d = msg["data"]
            frames.append(
                Delta(
                    int(d["sequenceStart"]),
                    int(d["sequenceEnd"]),
                    d["changes"]["bids"],
                    d["changes"]["asks"],
                )
            )
        if msg.get("subject") == "trade.ticker" and not ticker_raw:
            ticker_raw = orjson.dumps(msg)
    changes = sum(len(f.bids) + len(f.asks) for f in frames)

    def book_run() -> None:
        book = Level2Book("BCHSV-USDT", NOW)
        book.on_snapshot(frames[0].start - 1, [], [], NOW)
        for frame in frames:
            book.on_delta(frame, NOW)
            book.best_bid()
            book.best_ask()

    def floor_run() -> None:
        bids: SortedDict = SortedDict()
        asks: SortedDict = SortedDict()
        for frame in frames:
            for side, rows in ((bids, frame.bids), (asks, frame.asks)):
                for price, size, _ in rows:
                    side[Decimal(price)] = Decimal(size)

    probe = Level2Book("BCHSV-USDT", NOW)
    probe.on_snapshot(frames[0].start - 1, [], [], NOW)
    for frame in frames:
        probe.on_delta(frame, NOW)
    book_rate = changes / best_of(book_run, repeats)
    floor_rate = changes / best_of(floor_run, repeats)

    creds = Credentials("key", Secret("f03a5284-5c39-4aaa-9b20-dea10bdcf8e3"), Secret("p"))
    body = (
        b'{"clientOid":"re-1a2b3c","side":"buy","symbol":"BTC-USDT","type":"limit",'
        b'"price":"30000","size":"0.001"}'
    )
    signer = Signer(creds)
    sign_rate = n / best_of(
        lambda: [
            signer.sign("POST", "/api/v1/hf/orders", timestamp_ms=1700000000000 + i, body=body)
            for i in range(n)
        ],
        repeats,
    )
    prehash = b"1700000000000POST/api/v1/hf/orders" + body
    key = b"f03a5284-5c39-4aaa-9b20-dea10bdcf8e3"
    hmac_rate = n / best_of(
        lambda: [hmac.digest(key, prehash, hashlib.sha256) for _ in range(n)], repeats
    )

    decode_rate = n / best_of(lambda: [orjson.loads(ticker_raw) for _ in range(n)], repeats)
    ticker_rate = n / best_of(
        lambda: [parse_ws_message(orjson.loads(ticker_raw)) for _ in range(n)], repeats
    )

    return {
        "level2_changes_per_s": book_rate, "level2_floor_per_s": floor_rate,
        "level2_ratio": book_rate / floor_rate, "level2_changes": changes,
        "level2_deltas": len(frames), "level2_noops": probe.noops,
        "sign_per_s": sign_rate, "hmac_per_s": hmac_rate,
        "ticker_per_s": ticker_rate, "decode_per_s": decode_rate,
    }


def main() -> int:
    r = measure()
    book_rate, floor_rate = r["level2_changes_per_s"], r["level2_floor_per_s"]
    sign_rate, hmac_rate = r["sign_per_s"], r["hmac_per_s"]
    ticker_rate, decode_rate = r["ticker_per_s"], r["decode_per_s"]
    print(f"KuCoin adapter benchmark, Python {sys.version.split()[0]}")
    print(
        f"  level2 apply: {book_rate:,.0f} changes/s ({r['level2_changes']:,} changes in "
        f"{r['level2_deltas']:,} deltas, best bid/ask read after each; {r['level2_noops']} "
        "price-0 no-ops among them)"
    )
    print(
        f"    floor (bare SortedDict writes): {floor_rate:,.0f}/s, ratio "
        f"{book_rate / floor_rate:.2f} (goal >= 0.8); goal 300,000/s: "
        f"{'met' if book_rate >= 300_000 else 'MISSED'}"
    )
    print(
        f"  order signing: {sign_rate:,.0f}/s; floor hmac.digest {hmac_rate:,.0f}/s, ratio "
        f"{sign_rate / hmac_rate:.2f}"
    )
    print(
        f"  ticker frame decoded and parsed: {ticker_rate:,.0f}/s; floor orjson.loads "
        f"{decode_rate:,.0f}/s, ratio {ticker_rate / decode_rate:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
