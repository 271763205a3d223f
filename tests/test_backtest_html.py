"""`backtest --html FILE`: the page is read back as written: self-contained (plotly.js
inlined, no script fetched), one marker per fill at its time and price, the price and the
equity at every candle close."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from test_backtest import RULES, _cache

from rules_engine.cli import main


def _traces(page: str) -> dict[str, dict[str, Any]]:
    """The figure's traces by name, decoded from the page's `Plotly.newPlot(id, data, ...)`."""
    start = page.index("Plotly.newPlot(")
    rest = page[start + len("Plotly.newPlot("):]
    rest = rest[rest.index(",") + 1:].lstrip()  # past the element id
    data, _ = json.JSONDecoder().raw_decode(rest)
    return {trace["name"]: trace for trace in data}


def test_the_page_marks_every_fill_and_works_offline(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("plotly")
    rules = tmp_path / "two.rules"
    rules.write_text(RULES)
    page_path = tmp_path / "run.html"
    out = tmp_path / "run.json"
    assert main(["backtest", str(rules), "--from", "2026-01-01", "--to", "2026-01-01T05:00",
                 "--balance", "1000 USDT", "--cache", str(_cache(tmp_path / "c.sqlite")),
                 "--quiet", "--html", str(page_path), "--json", str(out)]) == 0
    page = page_path.read_text("utf-8")
    # Self-contained: plotly.js is in the page, no script is loaded from anywhere.
    assert re.search(r"plotly\.js v\d", page)
    assert not re.search(r"<script[^>]*\bsrc=", page)
    traces = _traces(page)
    assert list(traces) == ["price", "buy", "sell", "equity"]
    fills = json.loads(out.read_text())["fills"]
    marked = {side: list(zip(traces[side]["x"], traces[side]["y"], strict=True))
              for side in ("buy", "sell")}
    assert marked == {
        side: [(f["time"], float(f["price"])) for f in fills if f["side"] == side]
        for side in ("buy", "sell")}
    assert len(marked["buy"]) + len(marked["sell"]) == len(fills) == 2
    # The price and the equity at each of the five candle closes.
    assert len(traces["price"]["y"]) == len(traces["equity"]["y"]) == 5
    assert traces["equity"]["y"][-1] == pytest.approx(1029.008999)
    assert main(["backtest", str(rules), "--from", "2026-01-01", "--to", "2026-01-01T05:00",
                 "--cache", str(tmp_path / "c.sqlite"), "--quiet",
                 "--html", str(tmp_path / "missing" / "x.html")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_without_plotly_html_stops_before_the_run(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    rules = tmp_path / "two.rules"
    rules.write_text(RULES)
    monkeypatch.setitem(sys.modules, "plotly", None)  # `import plotly` raises ImportError
    assert main(["backtest", str(rules), "--from", "2026-01-01", "--to", "2026-01-01T05:00",
                 "--cache", str(_cache(tmp_path / "c.sqlite")), "--html",
                 str(tmp_path / "x.html")]) == 2
    captured = capsys.readouterr()
    assert "--html needs plotly: pip install 'rules-engine[html]'" in captured.err
    assert captured.out == "" and not (tmp_path / "x.html").exists()
