"""Every recorded spot WebSocket payload the client uses parses into a core event; the
others (futures, margin, indexes) raise a clean UnsupportedPayload, never anything else."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rules_engine.adapters.kucoin._book import Delta
from rules_engine.adapters.kucoin._parsing import (
    MalformedPayload,
    UnsupportedPayload,
    parse_accounts,
    parse_candles_reply,
    parse_fills_page,
    parse_level2,
    parse_order,
    parse_orders_page,
    parse_stats,
    parse_ws_message,
)
from rules_engine.core.market import (
    Balance,
    BalanceEvent,
    Candle,
    OrderEvent,
    OrderState,
    Stats24h,
    StopOrderEvent,
    Ticker,
)

DATA = Path(__file__).parent / "data" / "kucoin"
USED = {
    "/market/ticker": Ticker,
    "/market/level2": Delta,
    "/market/candles": Candle,
    "/market/snapshot": Stats24h,
    "/spotMarket/tradeOrdersV2": OrderEvent,
    "/spotMarket/tradeOrders": OrderEvent,
    "/spotMarket/advancedOrders": StopOrderEvent,
    "/account/balance": BalanceEvent,
}


def recorded_frames() -> list[dict[str, Any]]:
    frames = [
        json.loads(line)
        for line in (DATA / "gocryptotrader_kucoin_wsHandleData.ndjson").read_text().splitlines()
    ]
    frames += [
        json.loads(line)
        for line in (DATA / "gocryptotrader_kucoin_wsMarketSnapshot.ndjson")
        .read_text()
        .splitlines()
    ]
    fixtures = json.loads((DATA / "jkorf_kucoin_ws_spot_subscription_fixtures.json").read_text())
    for exchange in fixtures["files"]:
        items = (
            exchange
            if isinstance(exchange, list)
            else exchange.get("messages", exchange.get("exchange", []))
        )
        frames += [e["msg"] for e in items if e.get("dir") == "server_push"]
    for line in (DATA / "cryptofeed_kucoin_ws_2021-04-25.ndjson").read_text().splitlines():
        record = json.loads(line)
        if record["dir"] == "in" and record["msg"].get("type") == "message":
            frames.append(record["msg"])
    return frames


FRAMES = recorded_frames()


def test_every_recorded_frame_parses_or_is_cleanly_unsupported() -> None:
    parsed = unsupported = 0
    for frame in FRAMES:
        prefix = frame["topic"].partition(":")[0]
        if prefix in USED:
            event = parse_ws_message(frame)
            assert isinstance(event, USED[prefix]), frame
            parsed += 1
        else:
            with pytest.raises(UnsupportedPayload, match="not supported"):
                parse_ws_message(frame)
            unsupported += 1
    assert parsed > 4000 and unsupported > 20


def test_the_v2_order_channel_gives_the_order_states() -> None:
    kinds = {
        parse_ws_message(f).kind
        for f in FRAMES  # type: ignore[attr-defined]
        if f["topic"].startswith("/spotMarket/tradeOrders")
    }
    assert {"received", "open", "match", "filled", "canceled", "update"} <= kinds


def test_values_are_exact_and_times_are_utc() -> None:
    frame = next(f for f in FRAMES if f["topic"] == "/market/ticker:all")
    ticker = parse_ws_message(frame)
    assert isinstance(ticker, Ticker)
    assert ticker.symbol == "FTM-ETH" and ticker.best_bid == Decimal("0.0002894")
    assert ticker.time == datetime(2023, 2, 25, 10, 29, 27, 673000, tzinfo=UTC)
    match = next(
        f
        for f in FRAMES
        if f["topic"] == "/spotMarket/tradeOrders" and f["data"]["type"] == "match"
    )
    event = parse_ws_message(match)
    assert isinstance(event, OrderEvent) and event.match_price == Decimal("0.96738")
    assert event.time.tzinfo is UTC and event.time.year == 2020


def test_rest_candles_come_newest_first_in_open_close_high_low_order() -> None:
    rows = [
        ["1706605200", "43300", "43350", "43400", "43200", "10", "433000"],
        ["1706601600", "43000", "43300", "43310", "42990", "12", "516000"],
    ]
    candles = parse_candles_reply("BTC-USDT", "1hour", rows)
    assert [c.open_time.hour for c in candles] == [8, 9]  # oldest first
    assert (candles[1].open, candles[1].close, candles[1].high, candles[1].low) == (
        Decimal(43300),
        Decimal(43350),
        Decimal(43400),
        Decimal(43200),
    )


@pytest.mark.parametrize(
    "frame",
    [
        {"topic": "/market/ticker:BTC-USDT", "data": {"price": "abc", "time": 1}},
        {"topic": "/market/level2:BTC-USDT", "data": {"sequenceStart": 1}},
        {
            "topic": "/market/level2:BTC-USDT",
            "data": {
                "sequenceStart": 1,
                "sequenceEnd": 2,
                "changes": {"bids": [["abc", "1", "2"]]},
            },
        },
        {
            "topic": "/market/level2:BTC-USDT",
            "data": {"sequenceStart": 1, "sequenceEnd": 2, "changes": {"asks": [["1", "1"]]}},
        },
        {
            "topic": "/market/level2:BTC-USDT",
            "data": {"sequenceStart": 3, "sequenceEnd": 2, "changes": {}},
        },
        {"topic": "/account/balance", "data": {"currency": "BTC"}},
        {"topic": "/market/candles:BTC-USDT_1min", "data": {"candles": ["1", "2"]}},
        {"topic": "/spotMarket/tradeOrdersV2", "data": {"type": "open"}},
        {"topic": 5, "data": {}},
    ],
)
def test_malformed_payloads_are_clean_errors(frame: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload):
        parse_ws_message(frame)


STATIC = json.loads((DATA / "ccxt_static_response_kucoin.json").read_text())["methods"]
REST_PARSERS = {
    "fetchOpenOrders": parse_orders_page,
    "fetchClosedOrders": parse_orders_page,
    "fetchOrder": parse_order,
    "fetchMyTrades": parse_fills_page,
    "fetchTicker": parse_stats,
    "fetchOrderBook": parse_level2,
}


def test_recorded_rest_replies_the_client_uses_parse_into_core_types() -> None:
    parsed = 0
    for method, parser in REST_PARSERS.items():
        for case in STATIC[method]:
            result = parser(case["httpResponse"]["data"])
            assert result
            parsed += 1
    ohlcv = STATIC["fetchOHLCV"][0]["httpResponse"]["data"]
    assert len(parse_candles_reply("BTC-USDT", "1hour", ohlcv)) == len(ohlcv)
    order = parse_order(STATIC["fetchOrder"][0]["httpResponse"]["data"])
    assert isinstance(order, OrderState) and order.symbol == "LTC-USDT" and not order.active
    assert parsed >= 6


def test_spot_balances_parse_and_margin_ones_are_unsupported() -> None:
    spot, cross, isolated = (c["httpResponse"]["data"] for c in STATIC["fetchBalance"])
    balances = parse_accounts(spot)
    assert balances and all(isinstance(b, Balance) for b in balances)
    for margin in (cross, isolated):
        with pytest.raises(UnsupportedPayload):
            parse_accounts(margin)
