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
* `ExternalFeed` — books pushed in by its caller (the watcher's paper mode follows the real
  KuCoin market with its own client and pushes each book here); `step` returns a tick only for
  the symbols whose book or print changed since the previous step.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import random
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from importlib import resources
from typing import Protocol

from rules_engine.core.symbols import SymbolInfo, SymbolTable, parse_symbols_reply

__all__ = [
    "Candle",
    "CandleFeed",
    "ExternalFeed",
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

    def __init__(self, *, start_ms: int, level_count: int = 50, speed: float = 1.0,
                 loop: bool = True, session: str | None = None,
                 snapshots: str | None = None) -> None:
        """`session` and `snapshots`: another recording's NDJSON text in the shipped one's
        form (default: the shipped session and its REST snapshots; a session given without
        snapshots starts each book empty). `loop=False`: the replay stops at its end."""
        document = json.loads(_data("recorded_symbols_2021-04-25.json"))
        self._rows: list[dict[str, object]] = document["data"]
        self._symbols = parse_symbols_reply({"code": "200000", "data": self._rows},
                                            source="recorded 2021-04-25")
        self.start_ms = start_ms
        self.speed = speed
        self.level_count = level_count
        self.snapshots: dict[str, dict[str, object]] = {}
        self.loop = loop
        if session is None:
            session = _data("cryptofeed_kucoin_ws_2021-04-25.ndjson")
            snapshots = _data(
                "cryptofeed_kucoin_rest_orderbook_level2_snapshots_2021-04-25.ndjson")
        for line in (snapshots or "").splitlines():
            record = json.loads(line)
            symbol = record["url"].split("symbol=")[1]
            self.snapshots[symbol] = record["response"]["data"]
        self.records: list[tuple[float, dict[str, object]]] = []
        for line in session.splitlines():
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
        for _, msg in self.records:  # a symbol with no snapshot starts empty
            symbol = str(msg["topic"]).partition(":")[2]
            if symbol in self._symbols and symbol not in self.books:
                self.books[symbol] = _RecordedBook(0, {}, {})
        self.fresh = {s for s, book in self.books.items() if book.bids and book.asks}

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
        if self.loop and elapsed > self.duration + 1:
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


Level = tuple[Decimal, Decimal]
Trade = tuple[Decimal, Decimal, str]


def _plain(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def symbol_row(info: SymbolInfo) -> dict[str, object]:
    """A `/api/v2/symbols` row made from parsed metadata (for callers that kept no raw rows)."""
    return {
        "symbol": info.symbol, "name": info.symbol, "baseCurrency": info.base_currency,
        "quoteCurrency": info.quote_currency, "feeCurrency": info.quote_currency,
        "baseMinSize": _plain(info.base_min_size), "quoteMinSize": _plain(info.quote_min_size),
        "baseMaxSize": _plain(info.base_max_size), "quoteMaxSize": _plain(info.quote_max_size),
        "baseIncrement": _plain(info.base_increment),
        "quoteIncrement": _plain(info.quote_increment),
        "priceIncrement": _plain(info.price_increment), "minFunds": _plain(info.min_funds),
        "isMarginEnabled": False, "enableTrading": info.enable_trading,
    }


def _levels(symbol: str, name: str, levels: Iterable[Sequence[Decimal]]) -> tuple[Level, ...]:
    """Checked levels of one side: Decimal (price, size) pairs, both finite and > 0, in book
    order (bids strictly high to low, asks strictly low to high)."""
    out: list[Level] = []
    for index, level in enumerate(levels):
        if len(level) != 2:
            raise ValueError(f"{symbol}: {name}[{index}] must be a (price, size) pair, "
                             f"got {level!r}")
        price, size = level
        if not isinstance(price, Decimal) or not isinstance(size, Decimal):
            raise TypeError(f"{symbol}: {name}[{index}] must hold Decimals, got {level!r}")
        if not (price.is_finite() and size.is_finite()) or price <= 0 or size <= 0:
            raise ValueError(f"{symbol}: {name}[{index}] has a non-positive or non-finite "
                             f"price or size: {price} x {size}")
        if out and (price >= out[-1][0] if name == "bids" else price <= out[-1][0]):
            order = "high to low" if name == "bids" else "low to high"
            raise ValueError(f"{symbol}: {name} must be strictly {order}; {name}[{index}] "
                             f"at {price} follows {out[-1][0]}")
        out.append((price, size))
    return tuple(out)


@dataclass(slots=True)
class _Pushed:
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    trade: Trade | None


class ExternalFeed:
    """A feed whose books come from its caller: `push` stores a symbol's latest full book (and
    maybe a trade print), `step` hands over what changed since the previous step.

    The symbol table is the caller's (real KuCoin metadata); `symbols` picks the ones carried,
    which are the sandbox's symbols. `rows` are the matching raw `/api/v2/symbols` rows to serve
    (rows missing are made from the table). Between two steps only the latest book of a symbol
    counts, and only the latest print. A step with no push since the previous one returns
    nothing, so the sandbox's sequences move only when the pushed market does. `level_count`,
    if given, keeps only the best levels of each side. Pure: no IO and no clock; `push` and
    `step` may run on different threads.
    """

    name = "external"

    def __init__(self, table: SymbolTable, symbols: Iterable[str], *,
                 rows: Iterable[Mapping[str, object]] | None = None,
                 level_count: int | None = None) -> None:
        carried = list(dict.fromkeys(symbols))
        if not carried:
            raise ValueError("an external feed needs at least one symbol")
        unknown = [s for s in carried if s not in table]
        if unknown:
            raise ValueError(f"symbols not in the symbol table ({table.source}): {unknown}")
        if level_count is not None and level_count < 1:
            raise ValueError(f"level_count must be at least 1, got {level_count}")
        self._symbols = SymbolTable(
            symbols={s: table[s] for s in carried}, as_of=table.as_of, source=table.source,
            derived=table.derived,
        )
        given = {str(r.get("symbol")): dict(r) for r in rows or ()}
        self._rows = [given.get(s) or symbol_row(table[s]) for s in carried]
        self.level_count = level_count
        self._histories: dict[str, list[Candle]] = {}
        self._pending: dict[str, _Pushed] = {}
        self._shown: dict[str, tuple[tuple[Level, ...], tuple[Level, ...]]] = {}
        self._lock = threading.Lock()

    def _check_symbol(self, symbol: str) -> None:
        if symbol not in self._symbols:
            raise ValueError(f"{symbol!r} is not carried by this external feed "
                             f"(carried: {list(self._symbols)})")

    def push(self, symbol: str, bids: Iterable[Sequence[Decimal]],
             asks: Iterable[Sequence[Decimal]], trade: Trade | None = None) -> None:
        """Store `symbol`'s latest full book: bids high to low, asks low to high, Decimal
        (price, size) pairs. `trade` is a market print (price, size, taker side "buy"/"sell")
        that moves the last price (and triggers stop orders). A symbol not carried, a level
        that is not positive or out of order, a crossed book or a bad print raise ValueError
        (TypeError for non-Decimal values) naming the symbol; nothing is stored then."""
        self._check_symbol(symbol)
        checked_bids = _levels(symbol, "bids", bids)
        checked_asks = _levels(symbol, "asks", asks)
        if checked_bids and checked_asks and checked_bids[0][0] >= checked_asks[0][0]:
            raise ValueError(f"{symbol}: crossed book, best bid {checked_bids[0][0]} >= "
                             f"best ask {checked_asks[0][0]}")
        if trade is not None:
            if len(trade) != 3:
                raise ValueError(f"{symbol}: a trade is (price, size, side), got {trade!r}")
            price, size, side = trade
            if not isinstance(price, Decimal) or not isinstance(size, Decimal):
                raise TypeError(f"{symbol}: trade price and size must be Decimals: {trade!r}")
            if not (price.is_finite() and size.is_finite()) or price <= 0 or size <= 0:
                raise ValueError(f"{symbol}: trade price and size must be > 0: {trade!r}")
            if side not in ("buy", "sell"):
                raise ValueError(f"{symbol}: trade side must be 'buy' or 'sell', got {side!r}")
        if self.level_count is not None:
            checked_bids = checked_bids[: self.level_count]
            checked_asks = checked_asks[: self.level_count]
        with self._lock:
            previous = self._pending.get(symbol)
            if trade is None and previous is not None:
                trade = previous.trade  # a print not yet stepped is kept
            self._pending[symbol] = _Pushed(checked_bids, checked_asks, trade)

    def step(self, now_ms: int) -> list[FeedTick]:
        """One tick per symbol whose book (or print) changed since the previous step."""
        if not self._pending:
            return []
        with self._lock:
            pending, self._pending = self._pending, {}
        ticks = []
        for symbol, pushed in pending.items():
            book = (pushed.bids, pushed.asks)
            if pushed.trade is None and self._shown.get(symbol) == book:
                continue
            self._shown[symbol] = book
            ticks.append(FeedTick(symbol, pushed.bids, pushed.asks, pushed.trade))
        return ticks

    def has_book(self, symbol: str) -> bool:
        """Whether a book of `symbol` was pushed (and stepped or waiting for the next step)."""
        self._check_symbol(symbol)
        return symbol in self._shown or symbol in self._pending

    def set_history(self, symbol: str, candles: Iterable[Candle]) -> None:
        """Hourly candles, oldest first, for `/api/v1/market/candles` and 24 h stats. Give them
        before building the state: its last price starts at the last candle's close."""
        self._check_symbol(symbol)
        self._histories[symbol] = sorted(candles, key=lambda c: c.start_s)

    def symbols(self) -> SymbolTable:
        return self._symbols

    def symbol_rows(self) -> list[dict[str, object]]:
        return [dict(r) for r in self._rows]

    def history(self, symbol: str) -> list[Candle]:
        return list(self._histories.get(symbol, ()))
