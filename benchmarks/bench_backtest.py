"""The backtest's speed and memory over a year of BTC-USDT 1-minute candles (525,600).

* **the year**: with no download possible here, the minutes are built from the shipped real
  KuCoin BTC-USDT hourly candles (2025-11-17 to 2026-03-22, 3,000 hours) by a documented,
  seeded path (`minute_candles`): the hours are played forward, then backward in time (each
  candle's open and close swapped), and so on, until the year is full, so the price stays in
  the range the market really had and never jumps; each hour becomes 60 minutes whose path
  starts at the hour's open, reaches its high and its low at two seeded minutes (in the order
  drawn) and ends at its close, with seeded noise between those anchors kept inside the
  hour's range; each minute's open is the previous minute's close, its wicks seeded and
  inside the hour's range; volume is the hour's spread over the minutes with seeded weights.
  Prices are on BTC-USDT's tick (0.1). `random.Random(seed)`, default seed 14.
* **the dip-buy row**: one rule buying a dip and a take-profit chain, `rules-engine backtest`'s
  driver (skipping on) against backtesting.py running the same strategy on the same candles
  in the same run (in its own virtual environment, never a dependency of the project).
* **the mix row**: 20 rules of the examples' mix, skipping against the same run stepping
  every candle (`--no-skip`) over a shorter stretch of the same minutes.
* **memory**: the peak resident memory of the backtest over 1/8, 1/2 and the whole history.

Run: python benchmarks/bench_backtest.py [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from rules_engine.core.market import Candle
from rules_engine.history import CandleCache, shipped_candles

HERE = Path(__file__).resolve().parent
YEAR = 525_600
START = datetime(2025, 1, 1, tzinfo=UTC)
TICK = Decimal("0.1")
SIZE_STEP = Decimal("0.00000001")


def _hours() -> Iterator[tuple[float, float, float, float, float]]:
    """The shipped hours forward, then backward, forever (open, high, low, close, volume)."""
    hours = [(float(c.open), float(c.high), float(c.low), float(c.close), float(c.volume))
             for c in shipped_candles()]
    while True:
        yield from hours
        yield from ((c, h, lo, o, v) for o, h, lo, c, v in reversed(hours))


def _tick(value: float) -> Decimal:
    return Decimal(round(value * 10)) * TICK


def minute_candles(count: int = YEAR, seed: int = 14, start: datetime = START
                   ) -> Iterator[Candle]:
    """`count` seeded BTC-USDT 1-minute candles from `start` (see the module's text)."""
    rng = random.Random(seed)
    made = 0
    at = start
    minute = timedelta(minutes=1)
    for o, h, lo, c, v in _hours():
        first, second = rng.sample(range(60), 2)
        t_hi, t_lo = (first, second) if rng.random() < 0.5 else (second, first)
        anchors = sorted([(-1, o), (t_hi, h), (t_lo, lo), (59, c)])
        closes = [0.0] * 60
        for (ta, pa), (tb, pb) in itertools.pairwise(anchors):
            span = tb - ta
            walk = [0.0]
            for _ in range(span):
                walk.append(walk[-1] + rng.gauss(0, 1))
            scale = (h - lo) / 12
            for i in range(1, span + 1):
                bridge = walk[i] - walk[span] * i / span
                value = pa + (pb - pa) * i / span + bridge * scale
                closes[ta + i] = min(max(value, lo), h)
        closes[t_hi], closes[t_lo], closes[59] = h, lo, c
        weights = [rng.random() + 0.5 for _ in range(60)]
        total = sum(weights)
        previous = o
        for m in range(60):
            mo, mc = previous, closes[m]
            wick = (h - lo) / 40
            mh = h if m == t_hi else min(h, max(mo, mc) + rng.random() * wick)
            ml = lo if m == t_lo else max(lo, min(mo, mc) - rng.random() * wick)
            volume = Decimal(round(v * weights[m] / total * 1e8)) * SIZE_STEP
            close = _tick(mc)
            yield Candle("BTC-USDT", "1min", at, _tick(mo), close, _tick(mh), _tick(ml),
                         volume, (volume * close).quantize(SIZE_STEP))
            previous = mc
            at += minute
            made += 1
            if made >= count:
                return


def build_cache(path: Path, count: int = YEAR, seed: int = 14) -> Path:
    """The minutes written into a candle cache page by page (1,500), as a download does."""
    page: list[Candle] = []
    began = int(START.timestamp())
    with CandleCache(path) as cache:
        for candle in minute_candles(count, seed):
            page.append(candle)
            if len(page) == 1500:
                cache.add("BTC-USDT", "1m", page, began, began + 1500 * 60)
                began += 1500 * 60
                page = []
        if page:
            cache.add("BTC-USDT", "1m", page, began, began + len(page) * 60)
    return path


# ================================================================ the strategies

DIP_RULES = """\
rule dip on BTC-USDT:
    when last < 88000
    place market buy 0.01
    repeat every 1d

rule take on BTC-USDT:
    after dip filled
    place limit sell filled_size at fill_price + 2%
"""

# The same strategy in backtesting.py: a market buy of 0.01 BTC when the close is under
# 88,000, at most once a day, each with a take-profit 2% over its fill. backtesting.py
# trades whole units, so its prices are those of 0.001 BTC and it buys 10 of them.
BTPY_SCRIPT = """\
import json, sqlite3, sys, time
import pandas as pd
from backtesting import Backtest, Strategy

path, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = sqlite3.connect(path).execute(
    "SELECT start, open, high, low, close, volume FROM candles WHERE symbol = 'BTC-USDT' "
    "AND timeframe = '1m' AND start >= ? AND start < ? ORDER BY start", (start, end)).fetchall()
frame = pd.DataFrame(rows, columns=["t", "Open", "High", "Low", "Close", "Volume"])
for column in ("Open", "High", "Low", "Close"):
    frame[column] = frame[column].astype(float) / 1000
frame["Volume"] = frame["Volume"].astype(float) * 1000
frame.index = pd.to_datetime(frame.pop("t"), unit="s")


class Dip(Strategy):
    def init(self):
        self.next_at = None

    def next(self):
        now = self.data.index[-1]
        close = self.data.Close[-1]
        if close < 88.0 and (self.next_at is None or now >= self.next_at):
            self.buy(size=10, tp=close * 1.02)
            self.next_at = now + pd.Timedelta(days=1)


test = Backtest(frame, Dip, cash=100_000, commission=0.001)
began = time.perf_counter()
stats = test.run()
print(json.dumps({"candles": len(frame), "seconds": time.perf_counter() - began,
                  "trades": int(stats["# Trades"])}))
"""


def mix_rules(open_price: Decimal) -> str:
    """20 rules of the examples' mix on BTC-USDT, at levels around `open_price`: five dips
    held for 30 m with `cancel after` and `repeat every`, each with a take-profit chain and
    its engine-held stop-loss (a bracket), five breakouts (`crosses above`, market buys),
    each with a trailing stop. (No candle indicators: a symbol whose rules read candles is
    always stepped.)"""
    out = []
    for i in range(5):
        low = (open_price * (1 - Decimal("0.008") * (i + 1))).quantize(Decimal(1))
        high = (open_price * (1 + Decimal("0.006") * (i + 1))).quantize(Decimal(1))
        out.append(f"""\
rule dip{i} on BTC-USDT:
    when last < {low} for 30m
    place limit buy 0.01 at last - 50
    cancel after 2h
    repeat every 6h max 4

rule take{i} on BTC-USDT:
    after dip{i} filled
    place limit sell filled_size at fill_price + 1%
    stop-loss at fill_price - 2%

rule breakout{i} on BTC-USDT:
    when last crosses above {high}
    place market buy 0.005

rule trail{i} on BTC-USDT:
    after breakout{i} filled
    place trailing-stop sell filled_size by 1.5%
""")
    return "\n".join(out)


# ================================================================ the measurements


def ours(cache_path: Path, rules_text: str, count: int, *, skip: bool = True,
         start: datetime = START) -> dict[str, Any]:
    """The backtest's driver over the first `count` minutes from `start` (in this process:
    call it in a child for its peak memory)."""
    import asyncio
    import tempfile

    from rules_engine.backtest import Settings, run_backtest
    from rules_engine.compiler._snapshot import shipped_symbols
    from rules_engine.history import read_candles
    from rules_engine.runtime._reload import RuleFiles

    table = shipped_symbols()
    end = start + timedelta(minutes=count)
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as folder:
        rules_file = Path(folder) / "bench.rules"
        rules_file.write_text(rules_text)
        rules, _ = RuleFiles([rules_file], table, ()).load()
        settings = Settings(start, end, 60, {"USDT": Decimal(100_000)}, skip=skip,
                            db=f"sqlite:///{Path(folder) / 'store.sqlite'}")
        with CandleCache(cache_path) as cache:
            candles = read_candles(cache, "BTC-USDT", "1m", start, end)
            began = time.perf_counter()
            run = asyncio.run(run_backtest(list(rules), table, candles, lambda *a: [],
                                           settings))
            seconds = time.perf_counter() - began
    return {"candles": run.candles, "stepped": run.stepped, "skipped": run.skipped,
            "seconds": seconds, "candles_per_s": run.candles / seconds,
            "fills": len(run.fills), "firings": sum(d["kind"] == "fired"
                                                    for d in run.decisions),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def ours_in_child(cache_path: Path, rules_text: str, count: int, *, skip: bool = True
                  ) -> dict[str, Any]:
    """`ours` in a fresh interpreter, so its peak memory is its own."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import bench_backtest as b; "
            "from pathlib import Path; print(json.dumps(b.ours(Path(sys.argv[2]), sys.argv[3],"
            " int(sys.argv[4]), skip=sys.argv[5] == '1')))")
    done = subprocess.run([sys.executable, "-c", code, str(HERE), str(cache_path), rules_text,
                           str(count), "1" if skip else "0"], capture_output=True, text=True,
                          timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the backtest child failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def backtesting_py(python: str | None, install: bool = True) -> tuple[str | None, str]:
    """The interpreter of an environment with backtesting.py: `python` if given, else a
    virtual environment under the temporary directory made once by pip (never the project's
    environment); None and the reason when it cannot be had."""
    if python:
        return python, "given"
    folder = Path(tempfile.gettempdir()) / "rules-engine-bench-backtesting-py"
    interpreter = folder / "bin" / "python"
    probe = [str(interpreter), "-c", "import backtesting"]
    if interpreter.exists() and subprocess.run(probe, capture_output=True,
                                               check=False).returncode == 0:
        return str(interpreter), f"venv {folder}"
    if not install:
        return None, ("left out of a quick run unless RULES_ENGINE_BACKTESTING_PY or "
                      "--with-backtesting-py names an interpreter with it")
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True,
                       capture_output=True, timeout=300)
        subprocess.run([str(interpreter), "-m", "pip", "install", "-q", "backtesting"],
                       check=True, capture_output=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as err:
        return None, f"backtesting.py could not be installed: {err}"
    return str(interpreter), f"venv {folder} (made now)"


def theirs(python: str, cache_path: Path, count: int, start: datetime = START
           ) -> dict[str, Any]:
    a = int(start.timestamp())
    done = subprocess.run([python, "-c", BTPY_SCRIPT, str(cache_path), str(a),
                           str(a + count * 60)], capture_output=True, text=True, timeout=900,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"backtesting.py failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["candles_per_s"] = result["candles"] / result["seconds"]
    return result


def measure(quick: bool = False, python: str | None = None,
            say: Callable[[str], None] = print) -> dict[str, Any]:
    """Every figure of the backtest rows (`quick`: 20,000 minutes, a smoke test)."""
    count = 20_000 if quick else YEAR
    mix_count = 240 if quick else 2_880
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as folder:
        cache_path = Path(folder) / "candles.sqlite"
        began = time.perf_counter()
        build_cache(cache_path, count)
        say(f"{count:,} minutes built in {time.perf_counter() - began:.1f} s")
        dip = ours_in_child(cache_path, DIP_RULES, count)
        say(f"ours: {dip}")
        small = ours_in_child(cache_path, DIP_RULES, count // 8)
        say(f"ours over 1/8: {small}")
        interpreter, how = backtesting_py(python, install=not quick)
        other = theirs(interpreter, cache_path, count) if interpreter else None
        say(f"backtesting.py ({how}): {other}")
        first = next(minute_candles(1))
        text = mix_rules(first.open)
        skipping = ours(cache_path, text, mix_count, skip=True)
        stepping = ours(cache_path, text, mix_count, skip=False)
        say(f"mix: skipping {skipping}, stepping {stepping}")
    return {"candles": count, "dip": dip, "dip_eighth": small, "backtesting_py": other,
            "backtesting_py_env": how, "mix_candles": mix_count, "mix_skipping": skipping,
            "mix_stepping": stepping, "seed": 14}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--with-backtesting-py", metavar="PYTHON", default=None,
                        help="an interpreter with backtesting.py installed (default: a venv "
                        "made under the temporary directory)")
    args = parser.parse_args()
    print(json.dumps(measure(args.quick, args.with_backtesting_py), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
