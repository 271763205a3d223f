"""Market feeds: the seeded walk, the candle replay and the recorded 2021 session."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sandbox_support import running
from test_sandbox_ws import ClientBook, _connect, _drain, _subscribe

from rules_engine.sandbox.clock import ManualClock
from rules_engine.sandbox.config import SandboxConfig
from rules_engine.sandbox.feeds import (
    FOLLOWERS,
    CandleFeed,
    RecordedFeed,
    SyntheticFeed,
    load_candles,
)


def test_the_synthetic_walk_is_seeded_and_anchored_on_the_last_real_close() -> None:
    one = SyntheticFeed(seed=5, start_ms=0, interval_ms=200)
    two = SyntheticFeed(seed=5, start_ms=0, interval_ms=200)
    other = SyntheticFeed(seed=6, start_ms=0, interval_ms=200)
    a = [one.step(i * 200) for i in range(30)]
    assert a == [two.step(i * 200) for i in range(30)]
    assert a != [other.step(i * 200) for i in range(30)]
    first = a[0][0]
    last_close = load_candles()[-1].close
    assert abs(first.bids[0][0] - last_close) / last_close < Decimal("0.001")
    for ticks in a:
        for tick in ticks:
            assert len(tick.bids) == 50 and len(tick.asks) == 50
            assert tick.bids[0][0] < tick.asks[0][0]
    eth = a[-1][1]
    assert eth.symbol == "ETH-USDT" and eth.bids[0][0] % Decimal("0.01") == 0


def test_the_candle_replay_walks_through_open_high_low_close() -> None:
    feed = CandleFeed(seed=1, start_ms=0, interval_ms=100, speed=3600.0)  # 1 candle per second
    candle = feed.candles[0]
    path = [feed.price_at(ms) for ms in range(1000)]
    span = candle.high - candle.low
    assert path[0] == candle.open
    assert all(candle.low <= p <= candle.high for p in path)
    assert candle.high - max(path) < span / 100 and min(path) - candle.low < span / 100
    assert abs(feed.price_at(999) - candle.close) < candle.high - candle.low
    assert feed.price_at(1000) == feed.candles[1].open
    tick = feed.step(500)[0]
    assert tick.bids[0][0] <= feed.price_at(500) + 1


def test_the_recorded_feed_starts_from_the_recorded_snapshots() -> None:
    feed = RecordedFeed(start_ms=0)
    assert "BCHSV-USDT" in feed.symbols() and len(feed.symbols()) == 9
    first = {t.symbol: t for t in feed.step(0)}
    snap = feed.snapshots["BCHSV-USDT"]
    assert first["BCHSV-USDT"].bids[0] == tuple(Decimal(x) for x in snap["bids"][0])  # type: ignore[index]
    ticks = [feed.step(ms) for ms in range(0, 40_000, 250)]
    assert sum(len(t) for t in ticks) > 100
    assert feed.books["BCHSV-USDT"].sequence > int(str(snap["sequence"]))


async def test_a_client_book_follows_the_recorded_replay_exactly() -> None:
    clock = ManualClock()
    async with running(clock=clock, feed_name="recorded", speed=4.0) as box:
        rows = await box.ok("GET", "/api/v2/symbols", signed=False)
        assert {r["symbol"] for r in rows} == set(box.state.symbols)
        ws = await _connect(box)
        await _subscribe(ws, "/market/level2:BCHSV-USDT")
        book = ClientBook()
        book.load(await box.ok("GET", "/api/v3/market/orderbook/level2",
                               {"symbol": "BCHSV-USDT"}))
        moved = 0
        for _ in range(40):
            clock.advance(250)
            box.state.feed_step()
            for message in await _drain(ws, 0.01):
                assert book.apply(message["data"])
                moved += 1
            seq, bids, asks = box.state.engine.snapshot("BCHSV-USDT")
            assert (book.seq, book.bids, book.asks) == (seq, dict(bids), dict(asks))
        assert moved > 10
        await ws.close()


def test_the_synthetic_feed_can_serve_ten_symbols_following_btc() -> None:
    symbols = ("BTC-USDT", *sorted(FOLLOWERS))
    feed = SyntheticFeed(seed=2, start_ms=0, interval_ms=200, symbols=symbols)
    assert set(feed.symbols()) == set(symbols) and len(symbols) == 10
    for step in range(20):
        ticks = {t.symbol: t for t in feed.step(step * 200)}
        assert set(ticks) == set(symbols)
        btc_mid = (ticks["BTC-USDT"].bids[0][0] + ticks["BTC-USDT"].asks[0][0]) / 2
        for symbol, tick in ticks.items():
            info = feed.symbols()[symbol]
            assert tick.bids[0][0] < tick.asks[0][0]
            assert all(p % info.price_increment == 0 and s >= info.base_min_size
                       for p, s in tick.bids + tick.asks)
            if symbol != "BTC-USDT":
                ratio = FOLLOWERS[symbol][0]
                assert abs(tick.bids[0][0] / (btc_mid * ratio) - 1) < Decimal("0.02")
    assert feed.history("DOGE-USDT")[-1].close < 1
    with pytest.raises(ValueError, match="no synthetic market"):
        SyntheticFeed(seed=2, start_ms=0, interval_ms=200, symbols=("SOL-USDT",))


async def test_a_config_chooses_the_synthetic_symbols() -> None:
    config = SandboxConfig.model_validate({"synthetic_symbols": ["BTC-USDT", "XRP-USDT"]})
    async with running(config) as box:
        rows = await box.ok("GET", "/api/v2/symbols", signed=False)
        assert {r["symbol"] for r in rows} == {"BTC-USDT", "XRP-USDT"}
        xrp = next(r for r in rows if r["symbol"] == "XRP-USDT")
        assert xrp["priceIncrement"] == "0.00001" and xrp["baseMinSize"] == "0.1"
        book = await box.ok("GET", "/api/v1/market/orderbook/level2_20", {"symbol": "XRP-USDT"},
                            signed=False)
        assert len(book["asks"]) == 20
