"""`rules-engine data download` end to end against the sandbox's candle endpoint (a real
server on port 0): more candles than one page, a gap with no candles, a resumed download,
and the shipped BTC-USDT hourly candles read with no download at all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from rules_engine.cli import main
from rules_engine.history import CandleCache, HistoryError, read_candles
from rules_engine.sandbox.config import SandboxConfig
from rules_engine.sandbox.feeds import Candle, ExternalFeed, load_symbols
from rules_engine.sandbox.testing import serve_in_thread

START = datetime(2025, 1, 1, tzinfo=UTC)
HOURS = 1700  # more than one page of 1,500
GAP = range(1490, 1510)  # twenty hours without a candle, across the page boundary


def _history() -> list[Candle]:
    out = []
    for hour in range(HOURS):
        if hour in GAP:
            continue
        price = Decimal(50000 + hour)
        out.append(Candle(int((START + timedelta(hours=hour)).timestamp()), price,
                          price + 1, price + 5, price - 5, Decimal("2.5"), price * 2))
    return out


@pytest.fixture
def sandbox_url() -> object:
    feed = ExternalFeed(load_symbols(), ["BTC-USDT"])
    feed.set_history("BTC-USDT", _history())
    with serve_in_thread(SandboxConfig(), run_feed=False, feed=feed) as running:
        yield running.url


def test_download_pages_gaps_and_resumes(sandbox_url: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    cache_file = tmp_path / "candles.sqlite"
    half = (START + timedelta(hours=1000)).isoformat()
    end = (START + timedelta(hours=HOURS)).isoformat()
    common = ["--timeframe", "1h", "--cache", str(cache_file), "--exchange-url", sandbox_url]
    assert main(["data", "download", "BTC-USDT", "--from", "2025-01-01", "--to", half,
                 *common]) == 0
    assert "1000 candles stored" in capsys.readouterr().err
    # Resumed: only [half, end) is asked for; the gap is stored as covered, not missing.
    assert main(["data", "download", "BTC-USDT", "--from", "2025-01-01", "--to", end,
                 *common]) == 0
    err = capsys.readouterr().err
    assert f"{HOURS - 1000 - len(GAP)} candles stored, {HOURS - len(GAP)} in" in err
    with CandleCache(cache_file) as cache:
        assert cache.missing("BTC-USDT", "1h", int(START.timestamp()),
                             int(START.timestamp()) + HOURS * 3600) == []
        got = list(read_candles(cache, "BTC-USDT", "1h", START, START + timedelta(hours=HOURS)))
    assert len(got) == HOURS - len(GAP)
    expected = [c for c in _history()]
    assert [int(c.open_time.timestamp()) for c in got] == [c.start_s for c in expected]
    assert [(c.open, c.close, c.high, c.low) for c in got] == [
        (c.open, c.close, c.high, c.low) for c in expected]
    # Nothing is missing any more: a third run asks for nothing and stores nothing.
    assert main(["data", "download", "BTC-USDT", "--from", "2025-01-01", "--to", end,
                 *common]) == 0
    assert "0 candles stored" in capsys.readouterr().err


def test_download_refuses_bad_arguments(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    cache = ["--cache", str(tmp_path / "c.sqlite")]
    assert main(["data", "download", "btc-usdt", "--from", "2025-01-01", "--to",
                 "2025-01-02", *cache]) == 2
    assert "BASE-QUOTE" in capsys.readouterr().err
    assert main(["data", "download", "BTC-USDT", "--timeframe", "7m", "--from", "2025-01-01",
                 "--to", "2025-01-02", *cache]) == 2
    assert "--timeframe '7m' is not one of" in capsys.readouterr().err
    assert main(["data", "download", "BTC-USDT", "--from", "January", "--to", "2025-01-02",
                 *cache]) == 2
    assert "--from 'January' is not a date" in capsys.readouterr().err
    assert main(["data", "download", "BTC-USDT", "--from", "2025-01-02", "--to", "2025-01-01",
                 *cache]) == 2
    assert "must be after" in capsys.readouterr().err


def test_shipped_hourly_candles_need_no_download(tmp_path: Path) -> None:
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    with CandleCache(tmp_path / "empty.sqlite") as cache:
        got = list(read_candles(cache, "BTC-USDT", "1h", start, end))
        assert len(got) == 24 and got[0].open_time == start
        with pytest.raises(HistoryError, match="rules-engine data download ETH-USDT"):
            read_candles(cache, "ETH-USDT", "1h", start, end)
