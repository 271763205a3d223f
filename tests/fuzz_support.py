"""Shared by the fuzz regression tests: the recorded frames they mutate, and the fuzzer's own
watchdog (`benchmarks/fuzzing.py`), so a replayed hang fails the same way it was found."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from fuzzing import Hang, watchdog  # benchmarks/fuzzing.py

__all__ = ["DEEP", "NOW", "Hang", "delta_frame", "ticker_frame", "watchdog"]

NOW = datetime(2021, 4, 25, 19, 18, tzinfo=UTC)
DEEP = "[" * 100_000 + "]" * 100_000  # JSON nested past any recursion limit


def ticker_frame(**data: Any) -> dict[str, Any]:
    """A recorded BCHSV-USDT ticker frame, with `data` fields replaced."""
    fields = {"bestAsk": "243.65", "bestBid": "242.647", "price": "243.65", "size": "0.08",
              "sequence": "1613277183909", "time": 1619378326732, **data}
    return {"type": "message", "topic": "/market/ticker:BCHSV-USDT", "subject": "trade.ticker",
            "data": fields}


def delta_frame(asks: list[Any], start: int = 1612712745588, **data: Any) -> dict[str, Any]:
    """A recorded FET-BTC level2 delta with these asks, with `data` fields replaced."""
    return {"type": "message", "topic": "/market/level2:FET-BTC", "subject": "trade.l2update",
            "data": {"sequenceStart": start, "sequenceEnd": start, "symbol": "FET-BTC",
                     "changes": {"asks": asks, "bids": []}, **data}}
