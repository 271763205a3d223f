"""The language's vocabulary as data: fields, functions, timeframes, days, value domains."""

from __future__ import annotations

from decimal import Decimal

__all__ = [
    "BANDS",
    "BOOK_FUNCTIONS",
    "CANDLE_FUNCTIONS",
    "CHAIN_NAMES",
    "CURRENCY_FUNCTIONS",
    "DAYS",
    "FIELDS",
    "FILL_NAMES",
    "INDICATORS",
    "MACDS",
    "PERCENT_FIELDS",
    "TIMEFRAMES",
    "Domain",
    "domain_of",
]

FIELDS = frozenset(
    ["bid", "ask", "last", "mid", "spread", "bid_size", "ask_size", "volume", "change"]
)
# Fields a percent may be compared with: `spread < 0.1%` (a share of mid), `change > 5%`.
PERCENT_FIELDS = frozenset(["spread", "change"])
FILL_NAMES = frozenset(["fill_price", "filled_size"])
# The chain's values (docs/language.md, Position and account values), by name as written.
CHAIN_NAMES = {"position": "position", "pnl": "pnl", "pnl%": "pnl_pct"}
# Functions of a currency: `balance(USDT)`.
CURRENCY_FUNCTIONS = frozenset(["balance"])
BOOK_FUNCTIONS = frozenset(["bid_depth", "ask_depth"])
BANDS = frozenset(["bb_upper", "bb_middle", "bb_lower"])
MACDS = frozenset(["macd", "macd_signal", "macd_hist"])
INDICATORS = (
    frozenset(["sma", "ema", "rsi", "highest", "lowest", "atr", "vwap", "change"])
    | BANDS
    | MACDS
)
# `change` and `volume` are fields too: `change` (24h) and `change(n, tf)`, `volume` (24h)
# and `volume(tf)` (of the last closed candle); the parentheses tell them apart.
CANDLE_FUNCTIONS = frozenset(["high", "low", "close", "volume"])
FUNCTIONS = BOOK_FUNCTIONS | INDICATORS | CANDLE_FUNCTIONS
TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "1d")
DAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}
MAX_PERIOD = 1000  # candles of history an indicator may ask for

INF = Decimal("Infinity")


class Domain:
    """The values a quantity can take: `low`/`high` bounds, each closed or open."""

    __slots__ = ("high", "high_closed", "low", "low_closed", "why")

    def __init__(
        self, low: Decimal, low_closed: bool, high: Decimal, high_closed: bool, why: str
    ) -> None:
        self.low, self.low_closed, self.high, self.high_closed = low, low_closed, high, high_closed
        self.why = why

    def contains(self, x: Decimal) -> bool:
        lo = x > self.low or (self.low_closed and x == self.low)
        hi = x < self.high or (self.high_closed and x == self.high)
        return lo and hi


POSITIVE = Domain(Decimal(0), False, INF, False, "is always above 0")
NON_NEGATIVE = Domain(Decimal(0), True, INF, False, "is never below 0")
RATE = Domain(Decimal(-1), True, INF, False, "is never below -100%")
RSI = Domain(Decimal(0), True, Decimal(100), True, "is always between 0 and 100")
ANY = Domain(-INF, False, INF, False, "")

_FIELD_DOMAINS = {
    "bid": POSITIVE,
    "ask": POSITIVE,
    "last": POSITIVE,
    "mid": POSITIVE,
    "spread": NON_NEGATIVE,
    "bid_size": NON_NEGATIVE,
    "ask_size": NON_NEGATIVE,
    "volume": NON_NEGATIVE,
    "change": RATE,
}


def domain_of(kind: str, name: str) -> Domain:
    """Domain of a field (`kind` 'field'), a function result or a fill value."""
    if kind == "field":
        return _FIELD_DOMAINS.get(name, ANY)
    if kind == "spread_ratio":
        return NON_NEGATIVE
    if name == "rsi":
        return RSI
    if name in ("bid_depth", "ask_depth", "filled_size", "atr", "volume", "balance"):
        return NON_NEGATIVE
    if name == "change":
        return RATE
    if name in (
        "sma", "ema", "highest", "lowest", "high", "low", "close", "fill_price",
        "bb_middle", "bb_upper", "vwap",
    ):
        return POSITIVE
    return ANY
