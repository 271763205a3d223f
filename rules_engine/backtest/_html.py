"""`--html FILE`: the run as an interactive page (zoom, pan, hover for each fill's time,
price and size): the price with each buy and sell marked where it filled, the equity curve
under it, on one time axis.

    html_page(run) -> str        the page, self-contained (plotly.js inlined: works offline)
    write_html(run, path)        the page written to `path`; what was plotted

The data is `_chart.chart_data`'s, so the page and the PNG show the same points. plotly is an
optional extra (`pip install 'rules-engine[html]'`): the page embeds plotly.js (some 4.7 MB)
so it needs no network, and nothing else in the project needs plotly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rules_engine.backtest._chart import BUY, SELL, ChartData, ChartError, chart_data
from rules_engine.backtest._driver import Run

__all__ = ["TRACES", "html_page", "write_html"]

# The traces' names, in the page's order (a test reads them back by name).
TRACES = ("price", "buy", "sell", "equity")


def _series(points: list[tuple[Any, float]]) -> tuple[list[str], list[float]]:
    return [t.isoformat() for t, _ in points], [v for _, v in points]


def html_page(data: ChartData) -> str:
    try:
        from plotly import graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        raise ChartError("--html needs plotly: pip install 'rules-engine[html]'") from None
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=(0.7, 0.3),
                        vertical_spacing=0.04)
    times, values = _series(data.prices)
    fig.add_trace(go.Scatter(x=times, y=values, name="price", mode="lines",
                             line={"color": "#4d4d4d", "width": 1},
                             legendgroup="price"), row=1, col=1)
    for name, points, colour, symbol in (("buy", data.buys, BUY, "triangle-up"),
                                         ("sell", data.sells, SELL, "triangle-down")):
        times, values = _series(points)
        fig.add_trace(go.Scatter(
            x=times, y=values, name=name, mode="markers",
            marker={"color": colour, "symbol": symbol, "size": 11},
            hovertemplate=f"{name} %{{y}} at %{{x}}<extra></extra>"), row=1, col=1)
    times, values = _series(data.equity)
    fig.add_trace(go.Scatter(x=times, y=values, name="equity", mode="lines",
                             line={"color": "#2166ac", "width": 1.2}), row=2, col=1)
    title = f"{data.symbol}: fills where they filled"
    if data.other_fills:
        title += f" ({data.other_fills} fills of other symbols not shown)"
    fig.update_layout(title=title, hovermode="closest", template="plotly_white",
                      height=700, margin={"l": 60, "r": 20, "t": 50, "b": 40})
    fig.update_yaxes(title_text=f"{data.symbol} ({data.quote})", row=1, col=1)
    fig.update_yaxes(title_text=f"equity ({data.quote})", row=2, col=1)
    page: str = fig.to_html(include_plotlyjs=True, full_html=True,
                            config={"displaylogo": False})
    return page


def write_html(run: Run, path: Path) -> ChartData:
    """The page of `run` written to `path` (OSError when it cannot be)."""
    data = chart_data(run)
    path.write_text(html_page(data), encoding="utf-8")
    return data
