"""KuCoin payloads -> core events. The only place KuCoin's field names reach. Pure.

`parse_ws_message` takes one decoded WebSocket frame of `"type": "message"`; spot topics the
client uses become core events, the level2 topic becomes the book's `Delta`, and everything
else (futures, margin, indexes, topics the client does not use) raises `UnsupportedPayload`
with the topic named. A malformed payload of a supported topic raises `MalformedPayload`
naming the field. Neither is a crash: both are `PayloadError`s the caller logs and drops.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from rules_engine.adapters.kucoin._book import Delta
from rules_engine.core.market import (
    Balance,
    BalanceEvent,
    Candle,
    Fill,
    OrderEvent,
    OrderState,
    Stats24h,
    StopOrderEvent,
    Ticker,
)

__all__ = [
    "MalformedPayload",
    "PayloadError",
    "UnsupportedPayload",
    "parse_accounts",
    "parse_candles_reply",
    "parse_fills_page",
    "parse_level2",
    "parse_order",
    "parse_orders_page",
    "parse_stats",
    "parse_ws_message",
]


class PayloadError(ValueError):
    """A payload the client cannot turn into a core event."""


class UnsupportedPayload(PayloadError):
    pass


class MalformedPayload(PayloadError):
    pass


def _time(value: Any) -> datetime:
    """KuCoin times are ms, or ns on some private topics, as numbers or strings."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise MalformedPayload(f"not a timestamp: {value!r}") from None
    if number > 10**17:  # nanoseconds
        number //= 1_000_000
    elif number < 10**11:  # seconds (candles)
        number *= 1000
    return datetime.fromtimestamp(number / 1000, UTC)


def _dec(data: Mapping[str, Any], key: str, *, required: bool = False) -> Decimal | None:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise MalformedPayload(f"field {key!r} is missing")
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise MalformedPayload(f"field {key!r} is not a number: {value!r}") from None
    if not number.is_finite():
        raise MalformedPayload(f"field {key!r} is not finite: {value!r}")
    return number


def _need(data: Mapping[str, Any], key: str) -> Decimal:
    value = _dec(data, key, required=True)
    assert value is not None
    return value


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedPayload(f"field {key!r} is missing")
    return value


def _ticker(symbol: str, data: Mapping[str, Any]) -> Ticker:
    sequence = data.get("sequence")
    return Ticker(
        symbol=symbol,
        price=_dec(data, "price"),
        size=_dec(data, "size"),
        best_bid=_dec(data, "bestBid"),
        best_bid_size=_dec(data, "bestBidSize"),
        best_ask=_dec(data, "bestAsk"),
        best_ask_size=_dec(data, "bestAskSize"),
        sequence=int(sequence) if sequence not in (None, "") else None,
        time=_time(data.get("time", data.get("Time"))),
    )


def _candle(symbol: str, interval: str, row: list[Any]) -> Candle:
    if len(row) < 7:
        raise MalformedPayload(f"a candle has 7 columns, this one {len(row)}")
    values = dict(zip(("t", "o", "c", "h", "l", "v", "q"), row, strict=False))
    return Candle(
        symbol,
        interval,
        _time(values["t"]),
        _need(values, "o"),
        _need(values, "c"),
        _need(values, "h"),
        _need(values, "l"),
        _need(values, "v"),
        _need(values, "q"),
    )


def _order(data: Mapping[str, Any]) -> OrderEvent:
    return OrderEvent(
        kind=_text(data, "type"),
        symbol=_text(data, "symbol"),
        order_id=_text(data, "orderId"),
        client_oid=data.get("clientOid") or None,
        side=_text(data, "side"),
        order_type=_text(data, "orderType"),
        price=_dec(data, "price"),
        size=_dec(data, "size"),
        filled_size=_dec(data, "filledSize"),
        remain_size=_dec(data, "remainSize"),
        match_price=_dec(data, "matchPrice"),
        match_size=_dec(data, "matchSize"),
        trade_id=data.get("tradeId") or None,
        time=_time(data.get("ts", data.get("orderTime"))),
    )


def _changes(changes: Mapping[str, Any], side: str) -> list[list[str]]:
    """Level2 rows `[price, size, sequence]`: three strings, numbers all, checked here so the
    book never meets a malformed one."""
    rows = changes.get(side, [])
    if not isinstance(rows, list):
        raise MalformedPayload(f"changes.{side} is not a list")
    checked = []
    for row in rows:
        if not (isinstance(row, list) and len(row) == 3 and all(isinstance(x, str) for x in row)):
            raise MalformedPayload(f"a {side} change must be [price, size, sequence]: {row!r}")
        price, size, sequence = row
        if not (Decimal(price).is_finite() and Decimal(size).is_finite()) or not sequence.isdigit():
            raise MalformedPayload(f"a {side} change is not numeric: {row!r}")
        checked.append(row)
    return checked


def parse_ws_message(frame: Mapping[str, Any]) -> object:
    """One `"type": "message"` frame -> a core event (or a level2 `Delta`)."""
    topic = frame.get("topic")
    data = frame.get("data")
    if not isinstance(topic, str) or not isinstance(data, dict):
        raise MalformedPayload("a message needs a topic and a data object")
    prefix, _, rest = topic.partition(":")
    try:
        if prefix == "/market/ticker":
            symbol = rest if rest != "all" else str(frame.get("subject"))
            return _ticker(symbol, data)
        if prefix == "/market/level2":
            changes = data.get("changes")
            if not isinstance(changes, dict):
                raise MalformedPayload("field 'changes' is missing")
            start, end = int(data["sequenceStart"]), int(data["sequenceEnd"])
            if start > end:
                raise MalformedPayload(f"sequenceStart {start} is after sequenceEnd {end}")
            return Delta(start, end, _changes(changes, "bids"), _changes(changes, "asks"))
        if prefix == "/market/candles":
            symbol, _, interval = rest.rpartition("_")
            candles = data.get("candles")
            if not isinstance(candles, list):
                raise MalformedPayload("field 'candles' is missing")
            return _candle(symbol, interval, candles)
        if prefix == "/market/snapshot":
            inner = data.get("data")
            if not isinstance(inner, dict):
                raise MalformedPayload("field 'data' is missing")
            return Stats24h(
                _text(inner, "symbol"),
                _dec(inner, "lastTradedPrice"),
                _dec(inner, "changeRate"),
                _dec(inner, "vol"),
                _dec(inner, "high"),
                _dec(inner, "low"),
                _time(inner.get("datetime")),
            )
        if prefix in ("/spotMarket/tradeOrdersV2", "/spotMarket/tradeOrders"):
            return _order(data)
        if prefix == "/spotMarket/advancedOrders":
            return StopOrderEvent(
                _text(data, "type"),
                _text(data, "symbol"),
                _text(data, "orderId"),
                _text(data, "side"),
                data.get("stop") or None,
                _dec(data, "stopPrice"),
                _dec(data, "size"),
                _time(data.get("ts", data.get("createdAt"))),
            )
        if prefix == "/account/balance":
            return BalanceEvent(
                _text(data, "currency"),
                _need(data, "total"),
                _need(data, "available"),
                _need(data, "hold"),
                data.get("relationEvent") or None,
                _time(data.get("time")),
            )
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as error:
        if isinstance(error, PayloadError):
            raise
        raise MalformedPayload(f"{topic}: {type(error).__name__}: {error}") from None
    raise UnsupportedPayload(f"topic {topic!r} is not supported by the spot client")


def parse_candles_reply(symbol: str, interval: str, data: Any) -> list[Candle]:
    """`GET /api/v1/market/candles` rows (newest first, open-close-high-low order) -> candles,
    oldest first."""
    if not isinstance(data, list):
        raise MalformedPayload("candles reply: 'data' is not a list")
    return sorted((_candle(symbol, interval, row) for row in data), key=lambda c: c.open_time)


def _items(data: Any) -> list[Mapping[str, Any]]:
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise MalformedPayload("a page needs an 'items' list")
    items: list[Mapping[str, Any]] = data["items"]
    return items


def parse_order(data: Any) -> OrderState:
    """An order from a lookup (HF `active`, legacy `isActive`)."""
    if not isinstance(data, dict):
        raise MalformedPayload("an order must be an object")
    active = data.get("active", data.get("isActive"))
    if not isinstance(active, bool):
        raise MalformedPayload("field 'active' (or 'isActive') is missing")
    try:
        return OrderState(
            order_id=_text(data, "id"),
            client_oid=data.get("clientOid") or None,
            symbol=_text(data, "symbol"),
            side=_text(data, "side"),
            order_type=_text(data, "type"),
            price=_dec(data, "price"),
            size=_dec(data, "size"),
            funds=_dec(data, "funds"),
            filled_size=_need(data, "dealSize"),
            filled_funds=_need(data, "dealFunds"),
            fee=_dec(data, "fee"),
            fee_currency=data.get("feeCurrency") or None,
            active=active,
            created=_time(data.get("createdAt")),
        )
    except PayloadError:
        raise
    except (TypeError, ValueError) as error:
        raise MalformedPayload(f"order: {error}") from None


def parse_orders_page(data: Any) -> list[OrderState]:
    return [parse_order(item) for item in _items(data)]


def _object(item: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(item, dict):
        raise MalformedPayload(f"{what} must be an object")
    return item


def parse_fills_page(data: Any) -> list[Fill]:
    fills = []
    for raw in _items(data):
        item = _object(raw, "a fill")
        fills.append(
            Fill(
                trade_id=str(item.get("tradeId") or ""),
                order_id=_text(item, "orderId"),
                symbol=_text(item, "symbol"),
                side=_text(item, "side"),
                price=_need(item, "price"),
                size=_need(item, "size"),
                funds=_dec(item, "funds"),
                fee=_dec(item, "fee"),
                fee_currency=item.get("feeCurrency") or None,
                liquidity=item.get("liquidity"),
                time=_time(item.get("createdAt")),
            )
        )
        if not fills[-1].trade_id:
            raise MalformedPayload("field 'tradeId' is missing")
    return fills


def parse_stats(data: Any) -> Stats24h:
    """`GET /api/v1/market/stats`."""
    if not isinstance(data, dict):
        raise MalformedPayload("stats must be an object")
    return Stats24h(
        _text(data, "symbol"),
        _dec(data, "last"),
        _dec(data, "changeRate"),
        _dec(data, "vol"),
        _dec(data, "high"),
        _dec(data, "low"),
        _time(data.get("time")),
    )


def _level(row: Any) -> list[str]:
    """One `[price, size]` row, both checked to be finite numbers, kept as KuCoin wrote them."""
    price, size = str(row[0]), str(row[1])
    if not (Decimal(price).is_finite() and Decimal(size).is_finite()):
        raise ValueError(f"not a finite level: {row!r}")
    return [price, size]


def parse_level2(data: Any) -> tuple[int, list[list[str]], list[list[str]]]:
    """A level2 snapshot: (sequence, bids high to low, asks low to high), checked."""
    if not isinstance(data, dict):
        raise MalformedPayload("a book must be an object")
    try:
        sequence = int(data["sequence"])
        bids = [_level(row) for row in data.get("bids") or []]
        asks = [_level(row) for row in data.get("asks") or []]
    except (KeyError, TypeError, ValueError, IndexError, InvalidOperation) as error:
        raise MalformedPayload(f"level2: {type(error).__name__}: {error}") from None
    return sequence, bids, asks


def parse_accounts(data: Any) -> list[Balance]:
    """`GET /api/v1/accounts` (spot accounts). Margin account shapes are unsupported."""
    if isinstance(data, dict):
        raise UnsupportedPayload("margin account balances are not supported by the spot client")
    if not isinstance(data, list):
        raise MalformedPayload("accounts must be a list")
    balances = []
    for item in data:
        if not isinstance(item, dict):
            raise MalformedPayload("an account must be an object")
        if item.get("type") not in ("trade", "trade_hf", "main"):
            raise UnsupportedPayload(f"account type {item.get('type')!r} is not spot")
        balances.append(
            Balance(
                _text(item, "currency"),
                _need(item, "balance"),
                _need(item, "available"),
                _need(item, "holds"),
            )
        )
    return balances
