"""The candle cache: one SQLite file (stdlib, no server, no new dependency).

Why SQLite rather than Parquet: a download is written page by page (1,500 candles) and must
survive being interrupted, which is one transaction per page here and a rewrite of a file in
Parquet; the backtest reads a range in time order with a cursor, so memory stays flat with
the length of the history; prices keep their exact decimal text (no float). A year of
1-minute candles of one symbol is 525,600 rows, 47 MB measured (`docs/backtesting.md`).

    candles   (symbol, timeframe, start) -> open, high, low, close, volume, turnover (text)
    covered   (symbol, timeframe, start, end): ranges already asked for, gaps included, so a
              download resumed later asks only for what is missing
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from rules_engine.core.market import Candle

__all__ = ["CandleCache", "default_cache_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS candles (
    symbol TEXT NOT NULL, timeframe TEXT NOT NULL, start INTEGER NOT NULL,
    open TEXT NOT NULL, high TEXT NOT NULL, low TEXT NOT NULL, close TEXT NOT NULL,
    volume TEXT NOT NULL, turnover TEXT NOT NULL,
    PRIMARY KEY (symbol, timeframe, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS covered (
    symbol TEXT NOT NULL, timeframe TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL
);
"""


def default_cache_path() -> Path:
    """`$RULES_ENGINE_DATA`, else `$XDG_DATA_HOME/rules-engine/candles.sqlite` (else
    `~/.local/share/...`)."""
    given = os.environ.get("RULES_ENGINE_DATA")
    if given:
        return Path(given)
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "rules-engine" / "candles.sqlite"


class CandleCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> CandleCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, symbol: str, timeframe: str, candles: Iterable[Candle], start: int,
            end: int) -> int:
        """Store one page's candles and mark `[start, end)` (seconds) as asked for, in one
        transaction: an interrupted download loses at most the page in flight."""
        rows = [(symbol, timeframe, int(c.open_time.timestamp()), str(c.open), str(c.high),
                 str(c.low), str(c.close), str(c.volume), str(c.turnover)) for c in candles]
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO candles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("INSERT INTO covered VALUES (?, ?, ?, ?)",
                             (symbol, timeframe, start, end))
        return len(rows)

    def covered(self, symbol: str, timeframe: str) -> list[tuple[int, int]]:
        """The ranges asked for, merged, in order."""
        rows = self._db.execute(
            "SELECT start, end FROM covered WHERE symbol = ? AND timeframe = ? ORDER BY start",
            (symbol, timeframe)).fetchall()
        merged: list[tuple[int, int]] = []
        for start, end in rows:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged

    def missing(self, symbol: str, timeframe: str, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of `[start, end)` not asked for yet."""
        gaps = []
        cursor = start
        for a, b in self.covered(symbol, timeframe):
            if b <= cursor:
                continue
            if a >= end:
                break
            if a > cursor:
                gaps.append((cursor, a))
            cursor = max(cursor, b)
        if cursor < end:
            gaps.append((cursor, end))
        return gaps

    def count(self, symbol: str, timeframe: str) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM candles WHERE symbol = ? AND timeframe = ?",
                               (symbol, timeframe)).fetchone()
        return int(row[0])

    def read(self, symbol: str, timeframe: str, kind: str, start: int,
             end: int) -> Iterator[Candle]:
        """The candles of `[start, end)`, oldest first, streamed (`kind`: KuCoin's type)."""
        cursor = self._db.execute(
            "SELECT start, open, high, low, close, volume, turnover FROM candles "
            "WHERE symbol = ? AND timeframe = ? AND start >= ? AND start < ? ORDER BY start",
            (symbol, timeframe, start, end))
        while True:
            rows = cursor.fetchmany(2000)
            if not rows:
                return
            for at, o, h, lo, c, v, t in rows:
                yield Candle(symbol, kind, datetime.fromtimestamp(at, UTC), Decimal(o),
                             Decimal(c), Decimal(h), Decimal(lo), Decimal(v), Decimal(t))
