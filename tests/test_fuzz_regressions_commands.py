"""What `benchmarks/fuzz` found in the commands, the watcher and the config loader, replayed:
each input now gets its clean error (exit status 2 with the reason, `ConfigError`), or is
dropped the way the watcher drops a malformed frame.

The inputs are the fuzzer's; the comment on each says what the old code raised, and where.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fuzz_support import DEEP, NOW, delta_frame, ticker_frame
from fuzzing import FeedStand

from rules_engine.adapters.kucoin._book import BookState
from rules_engine.adapters.kucoin._rest import KucoinRest
from rules_engine.cli import main
from rules_engine.cli.market import _Market
from rules_engine.engine._candles import CandleSeries
from rules_engine.runtime._config import ConfigError, load_config

# ------------------------------------------------------------------ the market command


class _QuietMarket(_Market):
    """The `market` command's state without its network: resyncs are counted."""

    def resync(self, symbol: str) -> None:
        self.resyncs = getattr(self, "resyncs", 0) + 1


@pytest.mark.parametrize(
    "frame",
    [
        # KeyError: 'sequenceStart' / 'sequenceEnd'; TypeError: int() of a list or None;
        # ValueError: int("1e13"); AttributeError: 'list' object has no attribute 'get'
        delta_frame([], sequenceStart=None),
        {**delta_frame([]), "data": {"sequenceStart": [1], "symbol": "FET-BTC"}},
        delta_frame([], sequenceEnd="1e13"),
        {**delta_frame([]), "data": {**delta_frame([])["data"], "changes": ["asks", None]}},
        # ValueError: not enough values to unpack, in the book
        delta_frame([["0.00002369", "0"]], sequenceStart=True),
        # TypeError: 'float' object is not iterable, in the book
        {**delta_frame([]), "data": {**delta_frame([])["data"], "changes": {"asks": 1e20}}},
        # IndexError: a ticker without a topic
        {"type": "message", "subject": "trade.ticker", "data": ticker_frame()["data"]},
    ],
)
def test_the_market_command_drops_a_malformed_frame(frame: dict[str, Any]) -> None:
    market = _QuietMarket(KucoinRest("http://127.0.0.1:9"), ["FET-BTC", "BCHSV-USDT"])
    for book in market.books.values():
        book.on_snapshot(0, [["1", "1"]], [["2", "1"]], NOW)
    market.on_message(frame)
    assert market.tickers == {}


def test_the_market_command_keeps_parsed_tickers() -> None:
    market = _QuietMarket(KucoinRest("http://127.0.0.1:9"), ["BCHSV-USDT"])
    market.on_message(ticker_frame())
    report = market.report(5)["BCHSV-USDT"]
    assert (report["bid"], report["ask"], report["last"]) == ("242.647", "243.65", "243.65")


# ------------------------------------------------------------------ the watcher


def test_the_watcher_routes_a_frame_by_what_it_parsed_to_not_by_its_subject() -> None:
    # ValueError: too many values to unpack (a candle, or a ticker, given to the book as a
    # delta because the frame's subject said trade.l2update): the watcher stopped on it
    stand = FeedStand(NOW, ["BTC-USDT"], [],
                      {("BTC-USDT", "1h"): CandleSeries("BTC-USDT", "1h", keep=30)})
    candle = {"type": "message", "topic": "/market/candles:BTC-USDT_1hour",
              "subject": "trade.l2update", "data": {"symbol": "BTC-USDT", "candles": [
                  "1706637600", "43396.4", "43369.4", "43491.9", "43285.2", "135.02905655",
                  "5859577.939581874"], "time": 1706637600000000000}}
    ticker = {**ticker_frame(), "topic": "/market/ticker:BTC-USDT", "subject": "trade.l2update"}
    for frame in (candle, ticker):
        stand.frame(frame)
    assert stand.changed == ["BTC-USDT"]  # the ticker; the candle's series is not loaded
    assert stand.books["BTC-USDT"].state is BookState.LIVE


# ------------------------------------------------------------------ lint's files


@pytest.mark.parametrize("option", ["--symbols", "--tickers"])
def test_a_json_file_nested_too_deeply_is_a_usage_error(
    tmp_path: Path, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # RecursionError at cli/lint.py (_load_json)
    rules, document = tmp_path / "a.rules", tmp_path / "doc.json"
    rules.write_text("when BTC-USDT bid < 60000 place limit buy 0.01 at 59000\n")
    document.write_text('{"code":"200000","data":' + DEEP + "}")
    assert main(["lint", option, str(document), str(rules)]) == 2
    assert "nested too deeply" in capsys.readouterr().err


@pytest.mark.parametrize("stamp", [-62135596800001, 10**30])
def test_a_tickers_file_with_a_time_out_of_range_is_a_usage_error(
    tmp_path: Path, stamp: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # ValueError: year 0 is out of range / OverflowError, at cli/lint.py (parse_all_tickers)
    rules, tickers = tmp_path / "a.rules", tmp_path / "tickers.json"
    rules.write_text("when BTC-USDT bid < 60000 place limit buy 0.01 at 59000\n")
    tickers.write_text(json.dumps({"code": "200000", "data": {
        "time": stamp, "ticker": [{"symbol": "BTC-USDT", "last": "60000"}]}}))
    assert main(["lint", "--tickers", str(tickers), str(rules)]) == 2
    assert "data.time" in capsys.readouterr().err


def test_a_ticker_too_small_for_arithmetic_is_left_out_of_the_market(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # decimal.Overflow in W602 (compiler/_compile.py): (price - last) / last, last 1e-999999999
    rules, tickers = tmp_path / "a.rules", tmp_path / "tickers.json"
    rules.write_text("when FET-BTC last > 0 place limit buy 1 at 0.00000771\n")
    tickers.write_text(json.dumps({"code": "200000", "data": {"time": 1619378326628, "ticker": [
        {"symbol": "FET-BTC", "last": "1e-999999999"}]}}))
    assert main(["lint", "--tickers", str(tickers), str(rules)]) == 0
    assert "W602" not in capsys.readouterr().out


# ------------------------------------------------------------------ the watcher's config


@pytest.mark.parametrize(
    "toml",
    [
        "order_window_ms = " + "9" * 5000 + "\n",  # ValueError: int() of 5000 digits
        "webhooks = " + "[" * 3000 + "]" * 3000 + "\n",  # RecursionError in tomllib
    ],
)
def test_a_config_file_tomllib_cannot_read_is_a_config_error(tmp_path: Path, toml: str) -> None:
    path = tmp_path / "watcher.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, {})
