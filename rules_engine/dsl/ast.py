"""The syntax tree of a rule file. Every node carries its span; nodes are immutable tuples.

Nodes are `NamedTuple`s rather than frozen dataclasses because the parser builds tens of
thousands of them per second and tuple construction is several times cheaper.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "After",
    "Between",
    "Bin",
    "BoolOp",
    "Call",
    "CancelAfter",
    "CancelAll",
    "CancelOrders",
    "Clause",
    "Cmp",
    "Cross",
    "CurrencyCall",
    "Dur",
    "During",
    "Every",
    "ExitAfter",
    "ExpiresAt",
    "ExpiresIn",
    "Expr",
    "FieldRef",
    "MoveStop",
    "Neg",
    "Not",
    "Notify",
    "Num",
    "Once",
    "Pct",
    "Place",
    "Repeat",
    "RuleNode",
    "SignalRef",
    "Size",
    "Slicing",
    "Span",
    "StopLoss",
    "TrailingStopLoss",
    "When",
    "Word",
]


class Span(NamedTuple):
    """1-based line and column of the first character; end column is exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int

    def to(self, other: Span) -> Span:
        return Span(self.line, self.column, other.end_line, other.end_column)


class Word(NamedTuple):
    """A keyword or name as written, with its span (order types, sides, options...)."""

    text: str
    span: Span


# ------------------------------------------------------------------ expressions


class Num(NamedTuple):
    text: str
    span: Span


class Pct(NamedTuple):
    """A percent literal; `text` is the number without the `%` sign."""

    text: str
    span: Span


class Dur(NamedTuple):
    """A duration or timeframe literal such as `30s`, `10m`, `1h`, `7d`."""

    text: str
    span: Span

    @property
    def seconds(self) -> int:
        return int(self.text[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[self.text[-1]]


class FieldRef(NamedTuple):
    """`bid`, or `BTC-USDT bid`; also `fill_price`/`filled_size` (symbol is None)."""

    symbol: str | None
    name: str
    span: Span
    name_span: Span
    symbol_span: Span | None


class Call(NamedTuple):
    """`sma(200, 1h)` or `ETH-USDT rsi(14, 1h)`."""

    symbol: str | None
    name: str
    args: tuple[Expr, ...]
    span: Span
    name_span: Span
    symbol_span: Span | None


class Bin(NamedTuple):
    op: str
    left: Expr
    right: Expr
    span: Span
    op_span: Span


class Neg(NamedTuple):
    operand: Expr
    span: Span


class Cmp(NamedTuple):
    op: str
    left: Expr
    right: Expr
    span: Span
    op_span: Span


class Cross(NamedTuple):
    direction: str
    left: Expr
    right: Expr
    span: Span


class Between(NamedTuple):
    operand: Expr
    low: Expr
    high: Expr
    span: Span


class BoolOp(NamedTuple):
    op: str
    left: Expr
    right: Expr
    span: Span


class Not(NamedTuple):
    operand: Expr
    span: Span


class CurrencyCall(NamedTuple):
    """`balance(USDT)`: a function of a currency (the account's available balance)."""

    name: str
    currency: Word
    span: Span
    name_span: Span


class SignalRef(NamedTuple):
    """`signal "breakout" [within 5m]`: an inbound signal received within the window."""

    name: str
    window: Dur | None
    span: Span
    name_span: Span


Expr = (
    Num | Pct | Dur | FieldRef | Call | Bin | Neg | Cmp | Cross | Between | BoolOp | Not
    | SignalRef | CurrencyCall
)

# ------------------------------------------------------------------ clauses


class When(NamedTuple):
    cond: Expr
    for_duration: Dur | None
    span: Span


class Size(NamedTuple):
    """`0.01` (base), `100 USDT` (funds), `10% of USDT` (a share of the balance), `50% of
    position` or `50% of filled_size` (`share_of`: `currency` holds the word after `of`), or
    `risk 1% of USDT stop 58000` (`risk`: the stop price in `stop`)."""

    kind: str
    amount: Expr
    currency: Word | None
    span: Span
    stop: Expr | None = None


class Place(NamedTuple):
    order_type: Word
    side: Word
    size: Size
    price: Expr | None
    trail: Expr | None
    options: tuple[Word, ...]
    span: Span
    limit: Expr | None = None  # a stop-limit's limit price (`... at 61000 limit 60900`)
    visible: Expr | None = None  # an iceberg's visible size (`iceberg visible 0.1`)
    slicing: Slicing | None = None  # a scaled order or a TWAP (`order_type` says which)


class Slicing(NamedTuple):
    """How a scaled order or a TWAP splits into slices: `from A to B in N` (scaled: `start`,
    `end`, `slices`) or `over D every E` (TWAP: `over`, `every`)."""

    start: Expr | None
    end: Expr | None
    slices: Num | None
    over: Dur | None
    every: Dur | None


class StopLoss(NamedTuple):
    price: Expr
    span: Span
    limit: Expr | None = None  # `limit PRICE`: the stop leg's limit (an exchange-held bracket)
    where: Word | None = None  # `on exchange`: where the bracket lives (None: the engine)


class TrailingStopLoss(NamedTuple):
    """`stop-loss trailing by 2%`: an engine-held stop that follows the best price."""

    distance: Expr
    span: Span


class MoveStop(NamedTuple):
    """`move stop-loss to PRICE after RULE filled`: the held stop's trigger moves once the
    sibling RULE's order of the same chain fills."""

    price: Expr
    rule: Word
    span: Span


class ExitAfter(NamedTuple):
    """`exit after 4h`: a time exit, counted from the rule's firing."""

    duration: Dur
    span: Span


class CancelAfter(NamedTuple):
    duration: Dur
    span: Span


class CancelAll(NamedTuple):
    span: Span


class CancelOrders(NamedTuple):
    rule: Word
    span: Span


class Notify(NamedTuple):
    text: str
    span: Span


class Once(NamedTuple):
    span: Span


class Repeat(NamedTuple):
    every: Dur
    max_count: Num | None
    span: Span


class ExpiresIn(NamedTuple):
    duration: Dur
    span: Span


class ExpiresAt(NamedTuple):
    timestamp: Word
    span: Span


class After(NamedTuple):
    rule: Word
    event: Word
    span: Span


class During(NamedTuple):
    start: Word
    end: Word
    first_day: Word | None
    last_day: Word | None
    span: Span
    zone: Word | None = None  # `UTC` or an IANA name (`Europe/Berlin`)


class Every(NamedTuple):
    """`every 1h [max N]` (`interval`), or `every day|DAY[-DAY] at HH:MM [ZONE] [max N]`
    (`first_day` is `day` for every day)."""

    interval: Dur | None
    first_day: Word | None
    last_day: Word | None
    time: Word | None
    zone: Word | None
    max_count: Num | None
    span: Span


Clause = (
    When
    | Place
    | StopLoss
    | TrailingStopLoss
    | MoveStop
    | ExitAfter
    | CancelAfter
    | CancelAll
    | CancelOrders
    | Notify
    | Once
    | Repeat
    | ExpiresIn
    | ExpiresAt
    | After
    | During
    | Every
)


class RuleNode(NamedTuple):
    """A named rule (`name` set) or a one-liner (`name` None)."""

    name: Word | None
    on: Word | None
    clauses: tuple[Clause, ...]
    span: Span
    path: str
