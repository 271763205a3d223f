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
from typing import Any, NamedTuple

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
    "Bullet",
    "MalformedPayload",
    "PayloadError",
    "UnsupportedPayload",
    "parse_accounts",
    "parse_bullet",
    "parse_candles_reply",
    "parse_fills_page",
    "parse_level2",
    "parse_order",
    "parse_orders_page",
    "parse_server_time",
    "parse_stats",
    "parse_ws_message",
]


class PayloadError(ValueError):
    """A payload the client cannot turn into a core event."""


class UnsupportedPayload(PayloadError):
    pass


class MalformedPayload(PayloadError):
    pass


_LAST_MS = 253402300799999  # 9999-12-31T23:59:59.999Z, the last time a datetime holds
# No price, size or amount KuCoin sends is above 1e40 or (other than zero) below 1e-40: such
# a number is finite for Decimal, but the evaluator's arithmetic on it would overflow.
MAX_EXPONENT = 40


def _in_range(number: Decimal) -> bool:
    """Finite, and zero or of a magnitude between 1e-40 and 1e40."""
    return number.is_finite() and (not number or -MAX_EXPONENT <= number.adjusted() <= MAX_EXPONENT)


def _time(value: Any) -> datetime:
    """KuCoin times are ms, or ns on some private topics, as numbers or strings."""
    if isinstance(value, bool):
        raise MalformedPayload(f"not a timestamp: {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an infinite float
        raise MalformedPayload(f"not a timestamp: {value!r}") from None
    if number > 10**17:  # nanoseconds
        number //= 1_000_000
    elif number < 10**11:  # seconds (candles)
        number *= 1000
    if not 0 <= number <= _LAST_MS:
        raise MalformedPayload(f"timestamp out of range: {value!r}")
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
    if not _in_range(number):
        raise MalformedPayload(f"field {key!r} is out of range: {value!r}")
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


def _opt_text(data: Mapping[str, Any], key: str) -> str | None:
    """An optional text field: a string, or None when absent or empty."""
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedPayload(f"field {key!r} is not a string: {value!r}")
    return value


def _opt_id(data: Mapping[str, Any], key: str) -> str | None:
    """An optional id KuCoin writes as a string or a number (tradeId): as text, or None."""
    value = data.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedPayload(f"field {key!r} is not an id: {value!r}")
    return str(value)


def _ticker(symbol: str, data: Mapping[str, Any]) -> Ticker:
    sequence = data.get("sequence")
    if isinstance(sequence, bool | float):
        raise MalformedPayload(f"field 'sequence' is not an integer: {sequence!r}")
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


def _candle(symbol: str, interval: str, row: Any) -> Candle:
    if not isinstance(row, list):
        raise MalformedPayload(f"a candle must be a list of 7 columns: {row!r}")
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
        client_oid=_opt_text(data, "clientOid"),
        side=_text(data, "side"),
        order_type=_text(data, "orderType"),
        price=_dec(data, "price"),
        size=_dec(data, "size"),
        filled_size=_dec(data, "filledSize"),
        remain_size=_dec(data, "remainSize"),
        match_price=_dec(data, "matchPrice"),
        match_size=_dec(data, "matchSize"),
        trade_id=_opt_id(data, "tradeId"),
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
        number, amount = Decimal(price), Decimal(size)
        if not (_in_range(number) and _in_range(amount)) or not _digits(sequence):
            raise MalformedPayload(f"a {side} change is not numeric: {row!r}")
        if number < 0 or amount < 0:
            raise MalformedPayload(f"a {side} change is negative: {row!r}")
        # "0.0" is the no-op price too, which the book knows only as "0"
        checked.append(row if number or price == "0" else ["0", size, sequence])
    return checked


def _digits(text: str) -> bool:
    """At most 20 ASCII digits (`str.isdigit` also accepts superscripts, which `int` refuses,
    and `int` refuses more than 4300 digits)."""
    return len(text) <= 20 and text.isascii() and text.isdigit()


def _sequence(data: Mapping[str, Any], key: str) -> int:
    """A sequence number: a non-negative integer, or a string of ASCII digits."""
    value = data.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _digits(value):
        return int(value)
    raise MalformedPayload(f"field {key!r} is not a sequence number: {value!r}")


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
            start, end = _sequence(data, "sequenceStart"), _sequence(data, "sequenceEnd")
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
                _opt_text(data, "stop"),
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
                _opt_text(data, "relationEvent"),
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
    try:
        candles = [_candle(symbol, interval, row) for row in data]
    except (TypeError, ValueError, ArithmeticError) as error:
        if isinstance(error, PayloadError):
            raise
        raise MalformedPayload(f"candles reply: {type(error).__name__}: {error}") from None
    return sorted(candles, key=lambda c: c.open_time)


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
            client_oid=_opt_text(data, "clientOid"),
            symbol=_text(data, "symbol"),
            side=_text(data, "side"),
            order_type=_text(data, "type"),
            price=_dec(data, "price"),
            size=_dec(data, "size"),
            funds=_dec(data, "funds"),
            filled_size=_need(data, "dealSize"),
            filled_funds=_need(data, "dealFunds"),
            fee=_dec(data, "fee"),
            fee_currency=_opt_text(data, "feeCurrency"),
            active=active,
            created=_time(data.get("createdAt")),
        )
    except PayloadError:
        raise
    except (TypeError, ValueError, ArithmeticError) as error:
        raise MalformedPayload(f"order: {type(error).__name__}: {error}") from None


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
                trade_id=_opt_id(item, "tradeId") or "",
                order_id=_text(item, "orderId"),
                symbol=_text(item, "symbol"),
                side=_text(item, "side"),
                price=_need(item, "price"),
                size=_need(item, "size"),
                funds=_dec(item, "funds"),
                fee=_dec(item, "fee"),
                fee_currency=_opt_text(item, "feeCurrency"),
                liquidity=_opt_text(item, "liquidity"),
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
    """One `[price, size]` row, both checked to be finite numbers that are not negative,
    kept as KuCoin wrote them."""
    if not isinstance(row, list) or len(row) < 2:
        raise ValueError(f"a level must be [price, size]: {row!r}")
    price, size = str(row[0]), str(row[1])
    number, amount = Decimal(price), Decimal(size)
    if not (_in_range(number) and _in_range(amount)) or number <= 0 or amount < 0:
        raise ValueError(f"a level needs a price above zero and a size not below: {row!r}")
    return [price, size]


def _rows(data: Mapping[str, Any], key: str) -> list[Any]:
    rows = data.get(key)
    if rows is None:
        return []
    if not isinstance(rows, list):
        raise MalformedPayload(f"level2: field {key!r} is not a list")
    return rows


def parse_level2(data: Any) -> tuple[int, list[list[str]], list[list[str]]]:
    """A level2 snapshot: (sequence, bids high to low, asks low to high), checked."""
    if not isinstance(data, dict):
        raise MalformedPayload("a book must be an object")
    try:
        sequence = _sequence(data, "sequence")
        bids = [_level(row) for row in _rows(data, "bids")]
        asks = [_level(row) for row in _rows(data, "asks")]
    except PayloadError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, ArithmeticError) as error:
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


class Bullet(NamedTuple):
    """A WebSocket token reply: the token, the first server's endpoint, its ping timing (s)."""

    token: str
    endpoint: str
    ping_interval: float
    ping_timeout: float


def parse_bullet(data: Any) -> Bullet:
    """`POST /api/v1/bullet-public` (or `bullet-private`) data: the token, and the first of
    `instanceServers` (its endpoint, `pingInterval` and `pingTimeout` in ms)."""
    if not isinstance(data, dict):
        raise MalformedPayload("a WebSocket token reply must be an object")
    servers = data.get("instanceServers")
    if not isinstance(servers, list) or not servers or not isinstance(servers[0], dict):
        raise MalformedPayload("the WebSocket token reply has no 'instanceServers'")
    server = servers[0]
    endpoint = server.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint.startswith(("wss://", "ws://")):
        raise MalformedPayload(f"the WebSocket endpoint is not a ws:// URL: {endpoint!r}")
    return Bullet(
        _text(data, "token"),
        endpoint,
        _ms(server, "pingInterval", 18000) / 1000,
        _ms(server, "pingTimeout", 10000) / 1000,
    )


def _ms(data: Mapping[str, Any], key: str, default: int) -> int:
    """A positive duration in ms (at most a day), or `default` when absent."""
    value = data.get(key, default)
    if isinstance(value, str) and _digits(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 86_400_000:
        raise MalformedPayload(f"field {key!r} is not a duration in ms: {value!r}")
    return value


def parse_server_time(data: Any) -> int:
    """`GET /api/v1/timestamp` data: the server's time in ms."""
    if isinstance(data, bool) or not isinstance(data, int) or not 0 < data <= _LAST_MS:
        raise MalformedPayload(f"the server time is not a time in ms: {data!r}")
    return data
