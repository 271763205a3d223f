"""The matching engine's values: an order request and the order it becomes, an OCO, the events
each engine step returns (KuCoin's order, balance, level2, trade and stop-order messages), fills,
ledger entries, the account and a symbol's 24-hour figures. No behaviour beyond their own
fields: the engine (`engine.py`) moves them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Literal

__all__ = [
    "CLIENT_OID",
    "ORDER_TRANSITIONS",
    "ZERO",
    "Account",
    "BalanceEvent",
    "Event",
    "Fill",
    "IllegalTransitionError",
    "L2Change",
    "LedgerEntry",
    "Oco",
    "Order",
    "OrderEvent",
    "OrderRequest",
    "OrderSnapshot",
    "Side",
    "Stats",
    "Status",
    "StopEvent",
    "TradeEvent",
    "account_id",
    "floor_to",
    "fmt",
    "multiple_of",
    "snapshot_of",
]

Side = Literal["buy", "sell"]
Status = Literal["new", "open", "done"]
ZERO = Decimal(0)
CLIENT_OID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")

# The order lifecycle as a table: a move not listed here is a bug and raises.
ORDER_TRANSITIONS: frozenset[tuple[Status, Status]] = frozenset(
    {("new", "open"), ("new", "done"), ("open", "done")}
)


class IllegalTransitionError(RuntimeError):
    pass


def account_id(currency: str) -> str:
    """A stable 24-hex-digit id for the trading account of one currency (same across runs)."""
    return hashlib.sha256(f"trade:{currency}".encode()).hexdigest()[:24]


def fmt(value: Decimal) -> str:
    """KuCoin's decimal text: plain notation, no exponent, no trailing zeros."""
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text




def floor_to(value: Decimal, step: Decimal) -> Decimal:
    """`value` rounded down to a multiple of `step`."""
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def multiple_of(value: Decimal, step: Decimal) -> bool:
    return (value % step) == 0



@dataclass(frozen=True, slots=True)
class OrderRequest:
    symbol: str
    side: Side
    type: Literal["limit", "market"]
    client_oid: str
    price: Decimal | None = None
    size: Decimal | None = None
    funds: Decimal | None = None
    time_in_force: str = "GTC"
    cancel_after: int = -1
    post_only: bool = False
    hidden: bool = False
    iceberg: bool = False
    visible_size: Decimal | None = None
    stp: str = ""
    remark: str = ""
    tags: str = ""
    hf: bool = True
    stop: str | None = None
    stop_price: Decimal | None = None


@dataclass(slots=True)
class Order:
    id: str
    req: OrderRequest
    created_at: int
    updated_at: int
    status: Status = "new"
    deal_size: Decimal = ZERO
    deal_funds: Decimal = ZERO
    fee: Decimal = ZERO
    canceled_size: Decimal = ZERO
    canceled_funds: Decimal = ZERO
    hold: Decimal = ZERO
    in_book: bool = False
    done_reason: str = ""
    stop_triggered: bool = False
    stop_status: str = ""  # stop orders: NEW until triggered, then TRIGGERED / CANCELLED
    oco_id: str = ""  # a leg of an OCO order (`oco.py`): the OCO's id

    @property
    def symbol(self) -> str:
        return self.req.symbol

    @property
    def side(self) -> Side:
        return self.req.side

    @property
    def price(self) -> Decimal:
        return self.req.price or ZERO

    @property
    def size(self) -> Decimal:
        return self.req.size or ZERO

    @property
    def remaining(self) -> Decimal:
        if self.req.size is None:
            return ZERO
        return self.req.size - self.deal_size - self.canceled_size

    @property
    def visible(self) -> Decimal:
        if self.req.hidden:
            return ZERO
        if self.req.iceberg and self.req.visible_size is not None:
            return min(self.remaining, self.req.visible_size)
        return self.remaining

    @property
    def active(self) -> bool:
        return self.status != "done"

    def move(self, to: Status) -> None:
        if (self.status, to) not in ORDER_TRANSITIONS:
            raise IllegalTransitionError(f"{self.status.upper()} -> {to.upper()}")
        self.status = to


@dataclass(frozen=True, slots=True)
class Oco:
    """One OCO order (`POST /api/v3/oco/order`): a limit leg resting at `price` and a stop leg
    (a stop order: `stop_price` triggers a limit at `limit_price`), both of `size`. The legs
    are ordinary engine orders carrying `oco_id`; the OCO's status is derived from them."""

    id: str
    client_oid: str
    symbol: str
    side: Side
    price: Decimal
    stop_price: Decimal
    limit_price: Decimal
    size: Decimal
    remark: str
    created_at: int
    limit_id: str
    stop_id: str


@dataclass(frozen=True, slots=True)
class OrderEvent:
    order: OrderSnapshot
    type: str  # received | open | match | update | filled | canceled
    status: str  # new | open | match | done
    ts_ns: int
    match_price: Decimal | None = None
    match_size: Decimal | None = None
    trade_id: str | None = None
    liquidity: str | None = None
    old_size: Decimal | None = None


@dataclass(frozen=True, slots=True)
class OrderSnapshot:
    id: str
    client_oid: str
    symbol: str
    side: str
    type: str
    price: Decimal
    size: Decimal
    funds: Decimal | None
    deal_size: Decimal
    remaining: Decimal
    canceled_size: Decimal
    created_at: int


@dataclass(frozen=True, slots=True)
class BalanceEvent:
    currency: str
    total: Decimal
    available: Decimal
    hold: Decimal
    available_change: Decimal
    hold_change: Decimal
    relation_event: str
    symbol: str
    order_id: str
    trade_id: str
    time_ms: int


@dataclass(frozen=True, slots=True)
class L2Change:
    symbol: str
    side: str  # "bids" | "asks"
    price: Decimal
    size: Decimal
    sequence: int
    time_ms: int


@dataclass(frozen=True, slots=True)
class TradeEvent:
    symbol: str
    price: Decimal
    size: Decimal
    side: str  # taker side
    trade_id: str
    maker_order_id: str
    taker_order_id: str
    sequence: int
    time_ms: int


@dataclass(frozen=True, slots=True)
class StopEvent:
    order: OrderSnapshot
    stop: str
    stop_price: Decimal
    type: str  # open | triggered | cancel
    trigger_success: bool | None
    ts_ns: int


Event = OrderEvent | BalanceEvent | L2Change | TradeEvent | StopEvent


@dataclass(frozen=True, slots=True)
class Fill:
    symbol: str
    trade_id: str
    order_id: str
    counter_order_id: str
    side: str
    liquidity: str
    price: Decimal
    size: Decimal
    funds: Decimal
    fee: Decimal
    fee_rate: Decimal
    fee_currency: str
    order_type: str
    created_at: int
    seq: int


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One change of a currency's balance (the account ledgers): `change` is signed, `fee` the
    part of it that was a fee, `balance` the total after it."""

    id: int
    currency: str
    change: Decimal
    fee: Decimal
    balance: Decimal
    biz_type: str
    symbol: str
    order_id: str
    trade_id: str
    created_at: int



@dataclass(slots=True)
class Account:
    totals: dict[str, Decimal] = field(default_factory=dict)
    holds: dict[str, Decimal] = field(default_factory=dict)

    def total(self, currency: str) -> Decimal:
        return self.totals.get(currency, ZERO)

    def held(self, currency: str) -> Decimal:
        return self.holds.get(currency, ZERO)

    def available(self, currency: str) -> Decimal:
        return self.total(currency) - self.held(currency)


@dataclass(slots=True)
class Stats:
    last: Decimal = ZERO
    last_size: Decimal = ZERO
    open: Decimal = ZERO
    high: Decimal = ZERO
    low: Decimal = ZERO
    vol: Decimal = ZERO
    vol_value: Decimal = ZERO



def snapshot_of(order: Order) -> OrderSnapshot:
    """The order as its events carry it."""
    return OrderSnapshot(
        order.id, order.req.client_oid, order.symbol, order.side, order.req.type,
        order.price, order.size, order.req.funds, order.deal_size, max(order.remaining, ZERO),
        order.canceled_size, order.created_at,
    )
