"""The backtest: the rules, the evaluator and the live watcher's order lifecycle, unchanged,
over candle history on a virtual clock, against the sandbox's matching engine in-process.

    run_backtest(rules, table, candles, history, settings) -> Run   (`_driver.py`)
    summary(run) / text(summary, names)                              (`_report.py`)
    chart_data(run) / figure(data) / write_chart(run, path)          (`_chart.py`)
    LocalVenue, LocalFeed, InProcessSession                          (`_local.py`)
"""

from rules_engine.backtest._chart import ChartData, ChartError, chart_data, figure, write_chart
from rules_engine.backtest._driver import (
    BacktestError,
    Run,
    Settings,
    merged,
    price_path,
    run_backtest,
)
from rules_engine.backtest._report import summary, text

__all__ = ["BacktestError", "ChartData", "ChartError", "Run", "Settings", "chart_data", "figure",
           "merged", "price_path", "run_backtest", "summary", "text", "write_chart"]
