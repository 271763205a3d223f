"""What `benchmarks/fuzz` found in the KuCoin adapter, replayed: each input now gets its clean
error (`MalformedPayload`, an `Outcome`, or a bounded value), never an exception.

The inputs are the fuzzer's (shortened where a shorter one crashed the same way); the comment
on each says what the old code raised, and where.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fuzz_support import DEEP, NOW, delta_frame, ticker_frame

from rules_engine.adapters.kucoin._book import Delta, Level2Book
from rules_engine.adapters.kucoin._errors import Action, Outcome, classify_reply
from rules_engine.adapters.kucoin._parsing import (
    MalformedPayload,
    parse_bullet,
    parse_candles_reply,
    parse_fills_page,
    parse_level2,
    parse_order,
    parse_server_time,
    parse_stats,
    parse_ws_message,
)
from rules_engine.adapters.kucoin._rest import (
    MAX_RETRY_AFTER,
    KucoinRest,
    RatePools,
    retry_after_seconds,
)
from rules_engine.adapters.kucoin._ws import KucoinWs, is_welcome
from rules_engine.core.symbols import SymbolDataError, SymbolInfo

STATS = {"time": 1709897710012, "symbol": "BTC-USDT", "last": "67400", "changeRate": "0.0089",
         "vol": "6442.17728633", "high": "67978.8", "low": "66541.4"}
ORDER = {"id": "65e371dd0ddaa40007cb437b", "symbol": "LTC-USDT", "type": "market",
         "side": "buy", "price": "0", "size": "0.01", "funds": "0", "dealFunds": "0.91937",
         "dealSize": "0.01", "fee": "0.00091937", "feeCurrency": "USDT",
         "clientOid": "5c52e11203aa677f33e493fb", "isActive": False, "createdAt": 1709400533384}
FILL = {"symbol": "LTC-USDT", "tradeId": "3607194733924353", "orderId": "65560a018b40f600",
        "side": "buy", "liquidity": "taker", "price": "72.8", "size": "0.0137",
        "funds": "0.99736", "fee": "0.00099736", "feeCurrency": "USDT",
        "createdAt": 1700137473000}




# ------------------------------------------------------------------ the error table


def test_a_reply_nested_deeper_than_json_reads_is_classified_not_raised() -> None:
    # RecursionError at adapters/kucoin/_errors.py (json.loads)
    body = ('{"code":"200000","data":' + DEEP + "}").encode()
    for order in (False, True):
        outcome = classify_reply(200, body, order=order)
        assert outcome.action is (Action.UNKNOWN if order else Action.RETRY)
        assert "non-JSON" in outcome.message


# ------------------------------------------------------------------ payload parsers


@pytest.mark.parametrize(
    "stamp",
    [1e308, float("inf"), 253402300800000, -62135596800001, -9223372036854775809, 10**30, True],
)
def test_a_timestamp_out_of_range_is_malformed(stamp: Any) -> None:
    # OverflowError (int(inf), platform time_t), OSError (errno 75), ValueError (year 10000)
    # from datetime.fromtimestamp in _parsing._time; True was read as 1970-01-01T00:00:01
    with pytest.raises(MalformedPayload, match="timestamp"):
        parse_stats({**STATS, "time": stamp})
    with pytest.raises(MalformedPayload):
        parse_ws_message(ticker_frame(time=stamp))
    with pytest.raises(MalformedPayload):
        parse_order({**ORDER, "createdAt": stamp})


def test_an_optional_text_field_of_another_type_is_malformed() -> None:
    # clientOid NaN and feeCurrency -Infinity came out as floats in str-typed fields
    with pytest.raises(MalformedPayload, match="clientOid"):
        parse_order({**ORDER, "clientOid": float("nan")})
    with pytest.raises(MalformedPayload, match="feeCurrency"):
        parse_fills_page({"items": [{**FILL, "feeCurrency": float("-inf")}]})
    with pytest.raises(MalformedPayload, match="liquidity"):
        parse_fills_page({"items": [{**FILL, "liquidity": ["taker"]}]})
    assert parse_fills_page({"items": [{**FILL, "tradeId": 3607194733924353}]})[0].trade_id == (
        "3607194733924353"
    )


def test_a_number_too_large_for_arithmetic_is_malformed() -> None:
    # "1e999999999" is a finite Decimal: the evaluator's arithmetic on it overflows later
    with pytest.raises(MalformedPayload, match="out of range"):
        parse_stats({**STATS, "last": "1e999999999"})
    with pytest.raises(MalformedPayload):
        parse_ws_message(delta_frame([["0.00000793", "1e-999999999", "1612712745588"]]))
    assert parse_stats({**STATS, "changeRate": "0E-50"}).change_rate == 0


@pytest.mark.parametrize(
    "change",
    [
        ["0.00000793", "-1e309", "1612712745588"],  # a negative size went into the book
        ["0.00000793", "1", "\u00b2"],  # "²".isdigit() is True; the book's int() raised
        ["0.00000793", "1", "9" * 5000],  # int() refuses more than 4300 digits
        ["-0.1", "1", "1612712745588"],
    ],
)
def test_a_level2_change_the_book_cannot_take_is_malformed(change: list[str]) -> None:
    with pytest.raises(MalformedPayload):
        parse_ws_message(delta_frame([change]))


def test_a_level2_change_at_price_zero_written_otherwise_stays_a_no_op() -> None:
    # "0.0" set a level at price 0 (only the literal "0" was the no-op)
    delta = parse_ws_message(delta_frame([["0.0", "5", "1612712745588"]]))
    assert isinstance(delta, Delta) and delta.asks == [["0", "5", "1612712745588"]]
    book = Level2Book("FET-BTC", NOW)
    book.on_snapshot(1612712745587, [["0.0000077", "1"]], [["0.0000078", "1"]], NOW)
    book.on_delta(delta, NOW)
    assert list(book.asks) == [book.best_ask()[0]] and book.noops == 1  # type: ignore[index]


@pytest.mark.parametrize("sequence", [True, 1.5, "-5", "1e13", "\u0661", None])
def test_a_level2_sequence_that_is_not_a_whole_number_is_malformed(sequence: Any) -> None:
    # int() raised TypeError/ValueError, or read True as 1 and 1.5 as 1
    with pytest.raises(MalformedPayload, match="sequence"):
        parse_ws_message(delta_frame([], sequenceStart=sequence))


@pytest.mark.parametrize(
    "book",
    [
        {"sequence": "11149534850", "bids": [["67539.7", "1"]], "asks": [["67539.8", -1]]},
        {"sequence": "11149534850", "bids": [["0.", "261.302"]], "asks": []},
        {"sequence": float("inf"), "bids": [], "asks": []},  # OverflowError from int(inf)
        {"sequence": "1", "bids": "[]", "asks": []},
        {"sequence": "1", "bids": [{"price": "1"}], "asks": []},
    ],
)
def test_a_level2_snapshot_the_book_cannot_take_is_malformed(book: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload):
        parse_level2(book)


def test_a_candle_row_that_is_not_a_list_is_malformed() -> None:
    # TypeError: object of type 'int' has no len(), in _parsing._candle
    with pytest.raises(MalformedPayload, match="candle"):
        parse_candles_reply("BTC-USDT", "1hour", [99999999999, 99999999999])


# ------------------------------------------------------------------ WebSocket plumbing

BULLET = {"token": "TOKEN", "instanceServers": [{
    "endpoint": "wss://push-private.kucoin.com/endpoint", "encrypt": True,
    "protocol": "websocket", "pingInterval": 18000, "pingTimeout": 10000}]}


@pytest.mark.parametrize(
    "data",
    [
        None,  # {"code": 200000} with no data: TypeError in KucoinWs._session
        {},  # KeyError: 'instanceServers'
        {"token": "TOKEN", "instanceServers": []},  # IndexError
        {"token": "TOKEN", "instanceServers": "0"},  # TypeError: string indices
        {"instanceServers": BULLET["instanceServers"]},  # KeyError: 'token'
        {**BULLET, "instanceServers": [{**BULLET["instanceServers"][0], "endpoint": {}}]},
        {**BULLET, "instanceServers": [{**BULLET["instanceServers"][0], "pingTimeout": None}]},
        {**BULLET, "instanceServers": [{**BULLET["instanceServers"][0], "pingInterval": "{}"}]},
        {**BULLET, "instanceServers": [{**BULLET["instanceServers"][0], "pingInterval": 0}]},
    ],
)
def test_a_malformed_token_reply_is_malformed(data: Any) -> None:
    with pytest.raises(MalformedPayload):
        parse_bullet(data)


def test_the_recorded_token_reply_parses() -> None:
    bullet = parse_bullet(BULLET)
    assert bullet.endpoint.startswith("wss://") and bullet.ping_interval == 18.0
    assert bullet.ping_timeout == 10.0 and bullet.token == "TOKEN"


async def test_a_malformed_token_reply_makes_the_feed_stale_instead_of_killing_it() -> None:
    class Rest:  # the one call `_session` makes before it connects
        _session = None

        async def call(self, method: str, path: str, **kw: Any) -> Outcome:
            return Outcome(Action.OK, "200000", "", 200, {"token": "TOKEN"})

    states: list[tuple[str, str]] = []
    client = KucoinWs(Rest(), on_message=lambda frame: None,  # type: ignore[arg-type]
                      on_state=lambda state, reason: states.append((state, reason)))
    await client._session(asyncio.Event())
    assert states == [("stale", "bad WebSocket token reply: the WebSocket token reply has no "
                                "'instanceServers'")]


async def test_a_duplicate_or_foreign_ack_leaves_the_reader_running() -> None:
    # InvalidStateError (a second ack of one id) and TypeError (an id that is an object)
    # escaped the reader loop and ended the connection's reader task
    client = KucoinWs(KucoinRest("http://127.0.0.1:9"), on_message=lambda frame: None)
    ack: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    client._acks["1"] = ack
    for text in ['{"id":"1","type":"ack"}', '{"id":"1","type":"ack"}', '{"id":"1","type":"error"}',
                 '{"id":{},"type":"ack"}', '{"id":[1],"type":"error"}', '["ack"]', "not json"]:
        client.on_text(text)
    assert ack.result() is True
    assert not is_welcome('["welcome"]') and not is_welcome("{") and is_welcome(
        '{"type":"welcome","id":"x"}')


def test_the_server_time_must_be_a_time_in_ms() -> None:
    assert parse_server_time(1619378326628) == 1619378326628
    for data in (True, "1619378326628", 1.5, -1, 10**30, None):
        with pytest.raises(MalformedPayload):
            parse_server_time(data)


# ------------------------------------------------------------------ REST headers


def test_retry_after_is_whole_seconds_and_bounded() -> None:
    # float("²") raised ValueError; 400 nines gave an infinite sleep
    assert retry_after_seconds("\u00b2") == 0.0
    assert retry_after_seconds("9" * 400) == MAX_RETRY_AFTER
    assert retry_after_seconds("1" + "0" * 5000) == MAX_RETRY_AFTER
    assert retry_after_seconds(" 3 ") == 3.0 and retry_after_seconds("") == 0.0
    assert retry_after_seconds("1.5") == 0.0


def test_rate_limit_headers_that_are_not_small_numbers_are_ignored() -> None:
    # OverflowError: integer division result too large for a float (a 2390-digit reset)
    pools = RatePools(clock=lambda: 0.0)
    huge = {"gw-ratelimit-limit": "2000", "gw-ratelimit-remaining": "1997",
            "gw-ratelimit-reset": "29" + "1" * 2400}
    assert pools.observe("spot", huge) is False
    assert pools.observe("spot", {**huge, "gw-ratelimit-reset": "\u00b2"}) is False
    assert pools.observe("spot", {**huge, "gw-ratelimit-reset": "29865"}) is True
    assert pools.wait_for("spot", 3) == 0.0


def test_a_symbol_with_an_increment_beyond_1e40_is_refused() -> None:
    row = {"symbol": "BTC-USDT", "baseCurrency": "BTC", "quoteCurrency": "USDT",
           "baseMinSize": "0.00001", "baseMaxSize": "10000000000", "baseIncrement": "1e-999999",
           "quoteIncrement": "0.000001", "priceIncrement": "0.1", "quoteMinSize": "0.1",
           "quoteMaxSize": "99999999"}
    with pytest.raises(SymbolDataError, match="baseIncrement"):
        SymbolInfo.from_kucoin(row)
