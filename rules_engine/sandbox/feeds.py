"""Market feeds: what moves the sandbox's books.

A feed is a pure, seeded producer: `step(now_ms)` returns one `FeedTick` per symbol (the full
set of price levels the rest of the market shows, and maybe a trade print). The server applies
ticks to the engine on a timer; tests call `step` directly.

* `SyntheticFeed` — a seeded random walk anchored on the real BTC-USDT hourly candles shipped in
  `data/kucoin_BTC-USDT_1h.csv`: it starts at the last real close, its volatility is the candles'
  own hourly volatility, and its history (for `/api/v1/market/candles`) is the real candles
  shifted to end at the start time. ETH-USDT follows BTC at a fixed ratio plus its own noise.
* `RecordedFeed` — replays the real recorded KuCoin session of 2021-04-25 (its symbols, REST
  snapshots and level2 updates; data from the cryptofeed project).
* `CandleFeed` — replays the real candles, each one as a path open -> high -> low -> close (or
  open -> low -> high -> close for a falling candle), `speed` candle-hours per hour, looping.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import random
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from importlib import resources
from typing import Protocol

from rules_engine.core.symbols import SymbolInfo, SymbolTable, parse_symbols_reply

__all__ = [
    "Candle",
    "CandleFeed",
    "Feed",
    "FeedTick",
    "RecordedFeed",
    "SyntheticFeed",
    "load_candles",
    "load_symbols",
]

HOUR_MS = 3_600_000
ETH_RATIO = Decimal("0.032")


@dataclass(frozen=True, slots=True)
class Candle:
    start_s: int
    open: Decimal
    close: Decimal
    high: Decimal
    low: Decimal
    volume: Decimal
    turnover: Decimal


@dataclass(frozen=True, slots=True)
class FeedTick:
    symbol: str
    bids: tuple[tuple[Decimal, Decimal], ...]
    asks: tuple[tuple[Decimal, Decimal], ...]
    trade: tuple[Decimal, Decimal, str] | None = None


class Feed(Protocol):
    name: str

    def symbols(self) -> SymbolTable: ...

    def step(self, now_ms: int) -> list[FeedTick]: ...

    def history(self, symbol: str) -> list[Candle]: ...

    def symbol_rows(self) -> list[dict[str, object]]: ...


def _data(name: str) -> str:
    return resources.files("rules_engine.sandbox").joinpath("data", name).read_text("utf-8")


def load_symbols() -> SymbolTable:
    """BTC-USDT and ETH-USDT with KuCoin's real increments and minimums (see the file's note)."""
    document = json.loads(_data("symbols.json"))
    return parse_symbols_reply({"code": "200000", "data": document["data"]}, source="sandbox")


def raw_symbol_rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads(_data("symbols.json"))["data"]
    return rows


def load_candles() -> list[Candle]:
    """The shipped real BTC-USDT 1h candles, oldest first."""
    rows = csv.DictReader(_data("kucoin_BTC-USDT_1h.csv").splitlines())
    out = []
    for row in rows:
        close = Decimal(row["close"])
        volume = Decimal(row["volume"])
        out.append(
            Candle(
                int(row["timestamp_ms"]) // 1000, Decimal(row["open"]), close,
                Decimal(row["high"]), Decimal(row["low"]), volume, volume * close,
            )
        )
    return out


def _quantize(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


@dataclass
class _SideBook:
    levels: dict[int, Decimal] = field(default_factory=dict)  # price in ticks -> size


@dataclass
class _Walker:
    """One symbol's random book around a mid price held in ticks."""

    info: SymbolInfo
    mid_ticks: int
    typical_size: Decimal
    level_count: int
    rng: random.Random
    bids: _SideBook = field(default_factory=_SideBook)
    asks: _SideBook = field(default_factory=_SideBook)

    def _size(self) -> Decimal:
        factor = Decimal(str(round(self.rng.lognormvariate(0.0, 1.0), 6)))
        size = _quantize(self.typical_size * factor, self.info.base_increment)
        return max(size, self.info.base_min_size)

    def _rebuild(self) -> None:
        spread = self.rng.choice((1, 1, 1, 2, 3))
        best_bid = self.mid_ticks - (spread // 2) - (spread % 2)
        best_ask = best_bid + spread
        for side, start, direction in ((self.bids, best_bid, -1), (self.asks, best_ask, 1)):
            # Drop levels now on the wrong side, then fill up to the level count.
            side.levels = {
                t: s
                for t, s in side.levels.items()
                if (t <= start if direction < 0 else t >= start)
            }
            if start not in side.levels:
                side.levels[start] = self._size()
            tick = start
            while len(side.levels) < self.level_count:
                tick += direction * self.rng.choice((1, 1, 2, 3, 5))
                if tick <= 0:
                    break
                side.levels.setdefault(tick, self._size())
            ordered = sorted(side.levels, reverse=direction < 0)[: self.level_count]
            side.levels = {t: side.levels[t] for t in ordered}
            for _ in range(3):
                t = self.rng.choice(ordered)
                side.levels[t] = self._size()

    def tick(self, sigma_ticks: float, anchor: int | None) -> FeedTick:
        move = round(self.rng.gauss(0.0, sigma_ticks))
        if anchor is not None:
            self.mid_ticks = anchor + round(self.rng.gauss(0.0, sigma_ticks))
        else:
            self.mid_ticks = max(self.mid_ticks + move, self.level_count * 5)
        self._rebuild()
        inc = self.info.price_increment
        trade = None
        if self.rng.random() < 0.5:
            side = self.rng.choice(("buy", "sell"))
            best = min(self.asks.levels) if side == "buy" else max(self.bids.levels)
            trade = (best * inc, self._size(), side)
        return FeedTick(
            self.info.symbol,
            tuple((t * inc, s) for t, s in sorted(self.bids.levels.items(), reverse=True)),
            tuple((t * inc, s) for t, s in sorted(self.asks.levels.items())),
            trade,
        )


def _hourly_sigma(candles: list[Candle]) -> float:
    closes = [float(c.close) for c in candles[-500:]]
    rets = [math.log(b / a) for a, b in itertools.pairwise(closes)]
    mean = sum(rets) / len(rets)
    return math.sqrt(sum((r - mean) ** 2 for r in rets) / (len(rets) - 1))


# Synthetic price levels of the symbols that follow BTC-USDT, as a share of its price. These are
# invented (round figures near early-2026 levels), not market data; only BTC-USDT's path is real.
FOLLOWERS: dict[str, tuple[Decimal, Decimal]] = {
    # symbol: (price / BTC price, typical level size in base units)
    "ETH-USDT": (ETH_RATIO, Decimal("0.8")),
    "BCH-USDT": (Decimal("0.0065"), Decimal("4")),
    "LTC-USDT": (Decimal("0.0012"), Decimal("25")),
    "LINK-USDT": (Decimal("0.0002"), Decimal("150")),
    "DOT-USDT": (Decimal("0.00006"), Decimal("500")),
    "XRP-USDT": (Decimal("0.00003"), Decimal("1000")),
    "ADA-USDT": (Decimal("0.0000095"), Decimal("3000")),
    "TRX-USDT": (Decimal("0.0000042"), Decimal("8000")),
    "DOGE-USDT": (Decimal("0.0000025"), Decimal("10000")),
}
DEFAULT_SYMBOLS = ("BTC-USDT", "ETH-USDT")


class SyntheticFeed:
    """BTC-USDT walks with the real candles' volatility; every other symbol follows it at its
    `FOLLOWERS` ratio plus its own noise. `symbols` picks which are served (BTC-USDT always)."""

    name = "synthetic"

    def __init__(self, *, seed: int, start_ms: int, interval_ms: int, level_count: int = 50,
                 speed: float = 1.0, symbols: tuple[str, ...] = DEFAULT_SYMBOLS) -> None:
        unknown = sorted(set(symbols) - set(FOLLOWERS) - {"BTC-USDT"})
        if unknown:
            raise ValueError(f"no synthetic market for {unknown}; known: "
                             f"{['BTC-USDT', *sorted(FOLLOWERS)]}")
        table = load_symbols()
        served = {"BTC-USDT", *symbols}
        self._symbols = SymbolTable(
            symbols={k: v for k, v in table.symbols.items() if k in served},
            as_of=table.as_of, source=table.source,
        )
        self.candles = load_candles()
        self.start_ms = start_ms
        self.rng = random.Random(seed)
        last = self.candles[-1].close
        sigma_h = _hourly_sigma(self.candles) * math.sqrt(max(speed, 0.0001))
        steps_per_hour = HOUR_MS / interval_ms
        self.sigma_frac = sigma_h / math.sqrt(steps_per_hour)
        btc = self._symbols["BTC-USDT"]
        self.btc = _Walker(btc, int(last / btc.price_increment), Decimal("0.05"), level_count,
                           random.Random(self.rng.getrandbits(64)))
        self.followers: list[tuple[_Walker, Decimal]] = []
        for symbol, (ratio, size) in FOLLOWERS.items():
            if symbol not in self._symbols:
                continue
            info = self._symbols[symbol]
            mid = _quantize(last * ratio, info.price_increment)
            walker = _Walker(info, int(mid / info.price_increment), size, level_count,
                             random.Random(self.rng.getrandbits(64)))
            self.followers.append((walker, ratio))

    @property
    def eth(self) -> _Walker:
        return next(w for w, _ in self.followers if w.info.symbol == "ETH-USDT")

    def symbols(self) -> SymbolTable:
        return self._symbols

    def symbol_rows(self) -> list[dict[str, object]]:
        return [r for r in raw_symbol_rows() if r["symbol"] in self._symbols]

    def _follow(self, noise: float) -> list[FeedTick]:
        btc_mid = self.btc.mid_ticks * self.btc.info.price_increment
        ticks = []
        for walker, ratio in self.followers:
            inc = walker.info.price_increment
            anchor = int(_quantize(btc_mid * ratio, inc) / inc)
            ticks.append(walker.tick(self.sigma_frac * walker.mid_ticks * noise, anchor))
        return ticks

    def step(self, now_ms: int) -> list[FeedTick]:
        first = self.btc.tick(self.sigma_frac * self.btc.mid_ticks, None)
        return [first, *self._follow(0.3)]

    def history(self, symbol: str) -> list[Candle]:
        """Real candles shifted to end at the start; followers scaled by their ratio."""
        last_start = self.candles[-1].start_s
        shift = (self.start_ms // HOUR_MS) * 3600 - HOUR_MS // 1000 - last_start
        info = self._symbols.get(symbol)
        if info is None:
            return []
        scale = Decimal(1) if symbol == "BTC-USDT" else FOLLOWERS[symbol][0]
        inc = info.price_increment

        def px(value: Decimal) -> Decimal:
            return _quantize(value * scale, inc)

        return [
            Candle(c.start_s + shift, px(c.open), px(c.close), px(c.high), px(c.low),
                   _quantize(c.volume / scale, info.base_increment), c.turnover)
            for c in self.candles
        ]


class CandleFeed(SyntheticFeed):
    """Replays the real candles through open, high, low and close; `speed` x real time."""

    name = "candles"

    def __init__(self, *, seed: int, start_ms: int, interval_ms: int, level_count: int = 50,
                 speed: float = 60.0, symbols: tuple[str, ...] = DEFAULT_SYMBOLS) -> None:
        super().__init__(seed=seed, start_ms=start_ms, interval_ms=interval_ms,
                         level_count=level_count, speed=1.0, symbols=symbols)
        self.speed = speed
        self.replay_start = start_ms

    def price_at(self, now_ms: int) -> Decimal:
        elapsed_h = (now_ms - self.replay_start) * self.speed / HOUR_MS
        whole = int(elapsed_h)
        index = whole % len(self.candles)  # the replay loops after the last candle
        frac = Decimal(str(round(min(elapsed_h - whole, 1.0), 6)))
        c = self.candles[index]
        path = (
            [c.open, c.high, c.low, c.close] if c.close >= c.open
            else [c.open, c.low, c.high, c.close]
        )
        pos = frac * 3
        seg = min(int(pos), 2)
        within = pos - seg
        return path[seg] + (path[seg + 1] - path[seg]) * within

    def step(self, now_ms: int) -> list[FeedTick]:
        inc = self.btc.info.price_increment
        first = self.btc.tick(0.0, int(self.price_at(now_ms) / inc))
        return [first, *self._follow(0.0)]


@dataclass
class _RecordedBook:
    sequence: int
    bids: dict[Decimal, Decimal]
    asks: dict[Decimal, Decimal]


class RecordedFeed:
    """Replays the real KuCoin session of 2021-04-25 (cryptofeed's recording), looping.

    Each symbol starts from its recorded REST snapshot; recorded level2 updates are applied by
    KuCoin's rules (skip `sequenceEnd <= sequence`, per-change sequence filter, size 0 deletes),
    at `speed` x the recorded pace; recorded tickers are the trade prints. The sandbox's own
    sequences are its own: only the levels the recording shows reach the engine.
    """

    name = "recorded"

    def __init__(self, *, start_ms: int, level_count: int = 50, speed: float = 1.0) -> None:
        document = json.loads(_data("recorded_symbols_2021-04-25.json"))
        self._rows: list[dict[str, object]] = document["data"]
        self._symbols = parse_symbols_reply({"code": "200000", "data": self._rows},
                                            source="recorded 2021-04-25")
        self.start_ms = start_ms
        self.speed = speed
        self.level_count = level_count
        self.snapshots: dict[str, dict[str, object]] = {}
        for line in _data(
            "cryptofeed_kucoin_rest_orderbook_level2_snapshots_2021-04-25.ndjson"
        ).splitlines():
            record = json.loads(line)
            symbol = record["url"].split("symbol=")[1]
            self.snapshots[symbol] = record["response"]["data"]
        self.records: list[tuple[float, dict[str, object]]] = []
        for line in _data("cryptofeed_kucoin_ws_2021-04-25.ndjson").splitlines():
            record = json.loads(line)
            msg = record.get("msg")
            if record["dir"] != "in" or not isinstance(msg, dict) or msg.get("type") != "message":
                continue
            if msg.get("subject") in ("trade.l2update", "trade.ticker"):
                self.records.append((float(record["ts"]), msg))
        self.t0 = self.records[0][0]
        self.duration = self.records[-1][0] - self.t0
        self._reset(start_ms)

    def _reset(self, lap_start_ms: int) -> None:
        self.lap_start_ms = lap_start_ms
        self.cursor = 0
        self.books = {
            symbol: _RecordedBook(
                int(str(snap["sequence"])),
                {Decimal(p): Decimal(s) for p, s in snap["bids"]},  # type: ignore[attr-defined]
                {Decimal(p): Decimal(s) for p, s in snap["asks"]},  # type: ignore[attr-defined]
            )
            for symbol, snap in self.snapshots.items()
            if symbol in self._symbols
        }
        self.fresh = set(self.books)

    def symbols(self) -> SymbolTable:
        return self._symbols

    def symbol_rows(self) -> list[dict[str, object]]:
        return [dict(r) for r in self._rows]

    def history(self, symbol: str) -> list[Candle]:
        return []

    def _apply(self, msg: dict[str, object], trades: dict[str, tuple[Decimal, Decimal, str]],
               changed: set[str]) -> None:
        data = msg["data"]
        assert isinstance(data, dict)
        topic = str(msg["topic"])
        symbol = topic.partition(":")[2]
        book = self.books.get(symbol)
        if book is None:
            return
        if msg["subject"] == "trade.ticker":
            price, size = Decimal(data["price"]), Decimal(data["size"])
            side = "buy" if price >= Decimal(data["bestAsk"]) else "sell"
            trades[symbol] = (price, size, side)
            changed.add(symbol)
            return
        if int(data["sequenceEnd"]) <= book.sequence:
            return
        for name, side_book in (("bids", book.bids), ("asks", book.asks)):
            for price_text, size_text, seq_text in data["changes"][name]:
                price, size = Decimal(price_text), Decimal(size_text)
                if int(seq_text) <= book.sequence or price == 0:
                    continue
                if size == 0:
                    side_book.pop(price, None)
                else:
                    side_book[price] = size
        book.sequence = int(data["sequenceEnd"])
        changed.add(symbol)

    def step(self, now_ms: int) -> list[FeedTick]:
        elapsed = (now_ms - self.lap_start_ms) / 1000 * self.speed
        if elapsed > self.duration + 1:
            self._reset(now_ms)
            elapsed = 0.0
        trades: dict[str, tuple[Decimal, Decimal, str]] = {}
        changed = set(self.fresh)
        self.fresh = set()
        while self.cursor < len(self.records) and self.records[self.cursor][0] - self.t0 <= elapsed:
            self._apply(self.records[self.cursor][1], trades, changed)
            self.cursor += 1
        ticks = []
        for symbol in sorted(changed):
            book = self.books[symbol]
            bids = sorted(book.bids.items(), reverse=True)[: self.level_count]
            asks = sorted(book.asks.items())[: self.level_count]
            if bids and asks and bids[0][0] >= asks[0][0]:
                continue  # a momentarily crossed recorded book is not shown
            ticks.append(FeedTick(symbol, tuple(bids), tuple(asks), trades.get(symbol)))
        return ticks
