"""The backtest: the rules, the evaluator and the live watcher's order lifecycle, unchanged,
over candle history on a virtual clock, against the sandbox's matching engine in-process.

    run_backtest(rules, table, candles, history, settings) -> Run   (`_driver.py`)
    summary(run) / text(summary, names)                              (`_report.py`)
    LocalVenue, LocalFeed, InProcessSession                          (`_local.py`)
"""

from rules_engine.backtest._driver import (
    BacktestError,
    Run,
    Settings,
    merged,
    price_path,
    run_backtest,
)
from rules_engine.backtest._report import summary, text

__all__ = ["BacktestError", "Run", "Settings", "merged", "price_path", "run_backtest",
           "summary", "text"]
