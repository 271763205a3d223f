"""Compiled rules: immutable, typed, with resolved symbols and stable identities.

This is what the engine evaluates. Every value is a small immutable tuple, so compiled rules
can be shared, hashed and compared, and their `repr` is a normalised text of their meaning
(see `CompiledRule.canonical`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from rules_engine.dsl import Diagnostic
from rules_engine.dsl.ast import Span

__all__ = [
    "All",
    "AnyOf",
    "Arith",
    "Balance",
    "CancelAllAction",
    "CancelOrdersAction",
    "CandleField",
    "Chain",
    "Compare",
    "CompiledProgram",
    "CompiledRule",
    "Cond",
    "Const",
    "Crosses",
    "Depth",
    "Field",
    "Fill",
    "Indicator",
    "MarketSnapshot",
    "Negate",
    "Negation",
    "NotifyAction",
    "Offset",
    "OrderSpec",
    "PlaceAction",
    "Protection",
    "Schedule",
    "Signal",
    "Signaled",
    "SizeSpec",
    "Slicing",
    "Value",
    "Window",
    "digest",
    "label",
]

@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """Last prices known at lint time (a saved `allTickers` reply), for W602 and the safety
    checks; `source` says where they came from in messages."""

    last: Mapping[str, Decimal]
    as_of: datetime
    source: str = "the market snapshot"


# ------------------------------------------------------------------ values


class Const(NamedTuple):
    value: Decimal


class Field(NamedTuple):
    """A market field of one symbol: bid ask last mid spread bid_size ask_size volume change."""

    symbol: str
    name: str


class Depth(NamedTuple):
    """Base size resting within `pct` percent of mid on one side (`bid_depth(0.5%)`)."""

    symbol: str
    side: str
    pct: Decimal


class Indicator(NamedTuple):
    """A candle function over `period` closed candles of `timeframe` (engine/_indicators.py):
    `sma ema rsi change bb_upper bb_middle bb_lower macd macd_signal macd_hist` of closes,
    `highest lowest atr vwap` of whole candles. `params` holds what follows the period: the
    bands' width in deviations (`bb_upper`, `bb_lower`), MACD's slow and signal periods (the
    period is its fast one)."""

    symbol: str
    kind: str
    period: int
    timeframe: str
    params: tuple[Decimal, ...] = ()

    def __repr__(self) -> str:
        # Without params the text is the one of before params existed: a rule's canonical
        # text, hence its fingerprint and an unnamed rule's identity, must not change.
        head = f"Indicator(symbol={self.symbol!r}, kind={self.kind!r}, period={self.period!r}"
        tail = f", timeframe={self.timeframe!r}"
        if self.params:
            tail += f", params={self.params!r}"
        return head + tail + ")"


class CandleField(NamedTuple):
    """`high`/`low`/`close`/`volume` (base) of the last closed candle of `timeframe`."""

    symbol: str
    kind: str
    timeframe: str


class Fill(NamedTuple):
    """`fill_price` (volume-weighted) or `filled_size` of the parent rule's order."""

    kind: str


class Chain(NamedTuple):
    """A value of the rule's chain (docs/language.md, Position and account values):
    `position` (base held), `pnl` (quote, realised + unrealised - fees), `pnl_pct` (pnl as
    a rate of what the chain paid to open its position), on the rule's symbol."""

    kind: str
    symbol: str


class Balance(NamedTuple):
    """`balance(USDT)`: the account's available balance of a currency, while it is fresh."""

    currency: str


class Arith(NamedTuple):
    op: str
    left: Value
    right: Value


class Offset(NamedTuple):
    """`base + 2%` is `Offset(base, 1.02)`; `base - 2%` is `Offset(base, 0.98)`."""

    base: Value
    factor: Decimal


class Negate(NamedTuple):
    operand: Value


Value = (
    Const | Field | Depth | Indicator | CandleField | Fill | Arith | Offset | Negate | Chain
    | Balance
)

# ------------------------------------------------------------------ conditions


class Compare(NamedTuple):
    op: str
    left: Value
    right: Value


class Crosses(NamedTuple):
    """`left crosses above right`: previous fresh left <= right and current left > right."""

    direction: str
    left: Value
    right: Value


class All(NamedTuple):
    parts: tuple[Cond, ...]


class AnyOf(NamedTuple):
    parts: tuple[Cond, ...]


class Negation(NamedTuple):
    operand: Cond


class Signal(NamedTuple):
    """The market leaf of an inbound signal (`POST /signal`): its value is the watcher's time
    of the latest accepted one, in seconds since the epoch; absent until one arrived."""

    name: str


class Signaled(NamedTuple):
    """`signal "NAME" within D`: a signal of that name arrived at most `window_seconds` ago
    and the rule has not fired on it yet. Never unknown: a signal never seen is false."""

    signal: Signal
    window_seconds: int


Cond = Compare | Crosses | All | AnyOf | Negation | Signaled

# ------------------------------------------------------------------ actions


class SizeSpec(NamedTuple):
    """`base`: amount of base currency; `funds`: amount of quote; `share`: fraction (0, 1] of
    the available balance of `currency`; `risk`: the base size whose loss from the entry to
    `stop` is the fraction `amount` of the available `currency` (the quote) balance."""

    kind: str
    amount: Value
    currency: str | None
    stop: Value | None = None

    def __repr__(self) -> str:
        # Without a stop the text is the one of before risk sizing: identities stay.
        text = f"SizeSpec(kind={self.kind!r}, amount={self.amount!r}, currency={self.currency!r}"
        return text + (f", stop={self.stop!r})" if self.stop is not None else ")")


class OrderSpec(NamedTuple):
    symbol: str
    order_type: str  # market | limit | stop | trailing-stop
    side: str  # buy | sell
    size: SizeSpec
    price: Value | None  # limit price, or the trigger price of a stop
    trail: Decimal | None  # trailing distance as a fraction (0.02 for `by 2%`)
    time_in_force: str  # GTC | IOC | FOK
    post_only: bool
    hidden: bool
    stop_loss: Value | None  # the engine-held stop of a bracket
    limit: Value | None = None  # a stop-limit's limit price (`price` is then its trigger)
    stop_limit: Value | None = None  # a bracket's stop leg limit (`stop-loss at X limit Y`)
    on_exchange: bool = False  # `on exchange`: the bracket is one KuCoin OCO order
    visible: Value | None = None  # an iceberg's visible size (base)
    slicing: Slicing | None = None  # a scaled order or a TWAP: the order of each slice

    def __repr__(self) -> str:
        # Without the fields added later (a stop-limit's limit, a bracket's stop leg limit,
        # `on exchange`, an iceberg's visible size, slicing) at their defaults, the text is
        # the one of before they existed: a rule's canonical text, hence its fingerprint and
        # an unnamed rule's identity, must not change.
        shown = [f for f in self._fields
                 if f not in _LATER_FIELDS or getattr(self, f) != _LATER_FIELDS[f]]
        return "OrderSpec(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in shown) + ")"


_LATER_FIELDS: dict[str, object] = {"limit": None, "stop_limit": None, "on_exchange": False,
                                    "visible": None, "slicing": None}


class Slicing(NamedTuple):
    """An order placed as `slices` slices (docs/language.md, "Execution"). `scaled`: limit
    orders at once, at prices evenly spaced from `start` to `end` (both included); `twap`:
    one slice every `every_seconds` from the firing on, each priced at its own time by the
    order's `price` (a limit order), or a market order when it has none. The order's size is
    the total; each slice has the total / slices, rounded down to the lot."""

    kind: str  # scaled | twap
    slices: int  # how many
    start: Value | None = None
    end: Value | None = None
    every_seconds: int | None = None


class Protection(NamedTuple):
    """The engine-held protection of a bracket (beside its `place`) or of a guard (a rule
    `after ENTRY filled` with a stop-loss and no `place`), beyond a bracket's fixed stop:

    `guard`: the rule is a guard: one held stop for what the chain still holds (its side is
    the entry's opposite); `stop`: the guard's stop-loss trigger (a bracket's is its
    `OrderSpec.stop_loss`), None for a time exit alone; `trail`: `stop-loss trailing by`
    as a fraction; `move_after`, `move_to`: `move stop-loss to PRICE after RULE filled`;
    `exit_seconds`: `exit after D`."""

    guard: bool
    stop: Value | None
    trail: Decimal | None
    move_after: str | None
    move_to: Value | None
    exit_seconds: int | None


class PlaceAction(NamedTuple):
    order: OrderSpec


class CancelAllAction(NamedTuple):
    symbol: str


class CancelOrdersAction(NamedTuple):
    rule: str


class NotifyAction(NamedTuple):
    text: str


Action = PlaceAction | CancelAllAction | CancelOrdersAction | NotifyAction


class Window(NamedTuple):
    """`during HH:MM-HH:MM ZONE [on DAY-DAY]`: minutes of the day (end included) and ISO
    weekdays (1 = Monday) in the IANA time zone `zone`; `end < start` wraps past midnight."""

    start_minute: int
    end_minute: int
    days: frozenset[int] | None
    zone: str = "UTC"

    def __repr__(self) -> str:
        # In UTC the text is the one of before zones existed: identities stay.
        text = (f"Window(start_minute={self.start_minute!r}, end_minute={self.end_minute!r}, "
                f"days={self.days!r}")
        return text + (f", zone={self.zone!r})" if self.zone != "UTC" else ")")


class Schedule(NamedTuple):
    """A rule that fires on the clock, without a condition: `every D` (`seconds`: at once,
    then every D), or `every day|DAYS at HH:MM ZONE` (`minute` of the local day, ISO
    `days` or None for every day, in the IANA time zone `zone`)."""

    seconds: int | None
    minute: int | None
    days: frozenset[int] | None
    zone: str


# ------------------------------------------------------------------ rules


@dataclass(frozen=True, slots=True)
class CompiledRule:
    identity: str
    name: str | None
    path: str
    span: Span
    symbol: str | None
    symbols: frozenset[str]
    condition: Cond | None
    for_seconds: int
    actions: tuple[Action, ...]
    max_firings: int | None  # None: unlimited (repeat without max)
    repeat_seconds: int | None
    cancel_after_seconds: int | None
    expires_in_seconds: int | None
    expires_at: datetime | None
    after: tuple[str, str] | None  # (parent identity, filled|fired|canceled)
    window: Window | None
    canonical: str
    fingerprint: str
    crosses: tuple[Crosses, ...] = ()  # the condition's `crosses` atoms, in evaluation order
    schedule: Schedule | None = None  # `every ...`: fires on the clock, not on a condition
    protection: Protection | None = None  # engine-held extras of a bracket, or a guard

    @property
    def order(self) -> OrderSpec | None:
        for action in self.actions:
            if isinstance(action, PlaceAction):
                return action.order
        return None


@dataclass(frozen=True, slots=True)
class CompiledProgram:
    """Every rule of every file loaded together, and every diagnostic found on the way."""

    rules: tuple[CompiledRule, ...]
    diagnostics: tuple[Diagnostic, ...]
    by_identity: dict[str, CompiledRule] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.by_identity:
            self.by_identity.update((r.identity, r) for r in self.rules)

    @property
    def ok(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.is_error)


def digest(text: str, length: int = 16) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def label(value: object) -> str:
    """A compiled value as a person writes it: `BTC-USDT bid`, `rsi(14, 1h)`, `bid_depth`."""
    if isinstance(value, Field):
        return f"{value.symbol} {value.name}"
    if isinstance(value, Indicator):
        args = ", ".join([str(value.period), *(f"{p:f}" for p in value.params)])
        return f"{value.symbol} {value.kind}({args}, {value.timeframe})"
    if isinstance(value, CandleField):
        return f"{value.symbol} {value.kind}({value.timeframe})"
    if isinstance(value, Depth):
        return f"{value.symbol} {value.side}_depth({(value.pct * 100).normalize():f}%)"
    if isinstance(value, Fill):
        return value.kind
    if isinstance(value, Chain):
        return {"pnl_pct": "pnl%"}.get(value.kind, value.kind)
    if isinstance(value, Balance):
        return f"balance({value.currency})"
    if isinstance(value, Signal):
        return f'signal "{value.name}"'
    if isinstance(value, Arith) and isinstance(value.left, Field) and value.left.name == "spread":
        return f"{value.left.symbol} spread"
    return "the value"
