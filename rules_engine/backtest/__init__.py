"""The backtest: the rules, the evaluator and the live watcher's order lifecycle, unchanged,
over candle history on a virtual clock, against the sandbox's matching engine in-process.

    run_backtest(rules, table, candles, history, settings) -> Run   (`_driver.py`)
    run_recorded(rules, table, session, history, settings) -> Run   (`_recorded.py`)
    summary(run) / text(summary, names)                              (`_report.py`)
    chart_data(run) / figure(data) / write_chart(run, path)          (`_chart.py`)
    write_html(run, path)                                            (`_html.py`)
    Recorder: decisions, orders, fills of a run, live or not         (`_record.py`)
    LocalVenue, LocalFeed, InProcessSession                          (`_local.py`)

The candle price path and its books are `rules_engine.sandbox.replay`'s, shared with a
sandbox served on a port (the parity test's live side).
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
