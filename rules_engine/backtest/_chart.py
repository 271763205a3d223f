"""`--chart FILE.png`: the price with each buy and sell marked where it filled, and the
equity curve under it.

    chart_data(run) -> ChartData     what is plotted, as plain lists (testable without a plot)
    figure(data)    -> Figure        the plot (matplotlib's object API, no pyplot, no state)
    write_chart(run, path)           both, saved as PNG

matplotlib is an optional extra (`pip install 'rules-engine[chart]'`): it is some 40 MB with
numpy and only this option needs it. Without it `--chart` fails with the command to run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from rules_engine.backtest._driver import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["SIZE", "ChartData", "ChartError", "chart_data", "figure", "write_chart"]

SIZE = (12.0, 7.0)  # inches
DPI = 100
BUY, SELL = "#1a9850", "#d73027"


class ChartError(Exception):
    """The chart cannot be drawn: the message says what to do."""


@dataclass
class ChartData:
    symbol: str
    quote: str
    prices: list[tuple[datetime, float]] = field(default_factory=list)
    buys: list[tuple[datetime, float]] = field(default_factory=list)
    sells: list[tuple[datetime, float]] = field(default_factory=list)
    equity: list[tuple[datetime, float]] = field(default_factory=list)
    other_fills: int = 0  # fills of other symbols: not on this price line


def chart_data(run: Run) -> ChartData:
    """The first symbol's closes and its fills (at their time and price), the equity at each
    candle close. Fills of other symbols are counted, not drawn."""
    symbol = next(iter(run.prices), "")
    data = ChartData(symbol, run.quote)
    data.prices = [(t, float(p)) for t, p in run.prices.get(symbol, [])]
    data.equity = [(t, float(v)) for t, v in run.equity]
    for fill in run.fills:
        if fill["symbol"] != symbol:
            data.other_fills += 1
            continue
        point = (datetime.fromisoformat(fill["time"]), float(Decimal(fill["price"])))
        (data.buys if fill["side"] == "buy" else data.sells).append(point)
    return data


def figure(data: ChartData) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ChartError("--chart needs matplotlib: pip install 'rules-engine[chart]'") from None
    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    price_ax, equity_ax = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    if data.prices:
        times, values = zip(*data.prices, strict=True)
        price_ax.plot(times, values, color="#4d4d4d", linewidth=0.8, label=data.symbol)
    for points, colour, marker, label in ((data.buys, BUY, "^", "buy"),
                                          (data.sells, SELL, "v", "sell")):
        if points:
            times, values = zip(*points, strict=True)
            price_ax.scatter(times, values, color=colour, marker=marker, s=48, zorder=3,
                             label=f"{label} ({len(points)})", gid=label)
    price_ax.set_ylabel(f"{data.symbol} ({data.quote})")
    price_ax.legend(loc="upper left")
    price_ax.grid(alpha=0.3)
    title = f"{data.symbol}: fills where they filled"
    if data.other_fills:
        title += f" ({data.other_fills} fills of other symbols not shown)"
    price_ax.set_title(title)
    if data.equity:
        times, values = zip(*data.equity, strict=True)
        equity_ax.plot(times, values, color="#2166ac", linewidth=1.0)
    equity_ax.set_ylabel(f"equity ({data.quote})")
    equity_ax.grid(alpha=0.3)
    equity_ax.tick_params(axis="x", labelrotation=20)
    return fig


def write_chart(run: Run, path: Path) -> ChartData:
    """Draw the run and save it as PNG at `path`; what was plotted."""
    data = chart_data(run)
    fig = figure(data)
    try:
        fig.savefig(path, format="png")
    except OSError as err:
        raise ChartError(f"cannot write {path}: {err}") from None
    return data
