"""Venue-neutral market and account events: what the adapters turn exchange payloads into.

Money is `Decimal`, time is timezone-aware UTC; optional fields are None when the venue did
not say. Pure data, no IO.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

__all__ = ["BalanceEvent", "Candle", "OrderEvent", "Stats24h", "StopOrderEvent", "Ticker"]


class Ticker(NamedTuple):
    symbol: str
    price: Decimal | None  # last traded
    size: Decimal | None  # last traded size
    best_bid: Decimal | None
    best_bid_size: Decimal | None
    best_ask: Decimal | None
    best_ask_size: Decimal | None
    sequence: int | None
    time: datetime


class Candle(NamedTuple):
    symbol: str
    interval: str  # KuCoin's type: 1min, 1hour, ...
    open_time: datetime
    open: Decimal
    close: Decimal
    high: Decimal
    low: Decimal
    volume: Decimal  # base
    turnover: Decimal  # quote


class Stats24h(NamedTuple):
    symbol: str
    last: Decimal | None
    change_rate: Decimal | None
    volume: Decimal | None
    high: Decimal | None
    low: Decimal | None
    time: datetime


class OrderEvent(NamedTuple):
    """One change of an order: received, open, match, update, filled or canceled."""

    kind: str
    symbol: str
    order_id: str
    client_oid: str | None
    side: str
    order_type: str
    price: Decimal | None
    size: Decimal | None
    filled_size: Decimal | None
    remain_size: Decimal | None
    match_price: Decimal | None
    match_size: Decimal | None
    trade_id: str | None
    time: datetime


class StopOrderEvent(NamedTuple):
    kind: str  # open, triggered, cancel
    symbol: str
    order_id: str
    side: str
    stop: str | None  # loss or entry
    stop_price: Decimal | None
    size: Decimal | None
    time: datetime


class BalanceEvent(NamedTuple):
    currency: str
    total: Decimal
    available: Decimal
    hold: Decimal
    reason: str | None  # KuCoin's relationEvent
    time: datetime


class OrderState(NamedTuple):
    """An order as the exchange reports it on a lookup."""

    order_id: str
    client_oid: str | None
    symbol: str
    side: str
    order_type: str
    price: Decimal | None
    size: Decimal | None
    funds: Decimal | None
    filled_size: Decimal
    filled_funds: Decimal
    fee: Decimal | None
    fee_currency: str | None
    active: bool
    created: datetime


class Fill(NamedTuple):
    trade_id: str
    order_id: str
    symbol: str
    side: str
    price: Decimal
    size: Decimal
    funds: Decimal | None
    fee: Decimal | None
    fee_currency: str | None
    liquidity: str | None
    time: datetime


class Balance(NamedTuple):
    currency: str
    total: Decimal
    available: Decimal
    hold: Decimal
