"""`rules-engine backtest --recorded SESSION` end to end: the shipped 2021-04-25 KuCoin
WebSocket session replayed as it came (level2 and ticker), a market order walking the
recorded book, a limit order filled by recorded liquidity, the report's numbers checked by
hand against the recording; a session file of one's own; bad sessions named."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from rules_engine.cli import main

D = Decimal

RULES = """\
rule dip on BCHSV-USDT:
    when last < 243
    place market buy 6

rule take on BCHSV-USDT:
    after dip filled
    place limit sell filled_size at 243.1
"""


def test_the_shipped_session_replays_as_it_came(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "bsv.rules"
    rules.write_text(RULES)
    out = tmp_path / "run.json"
    assert main(["backtest", str(rules), "--recorded", "2021-04-25", "--balance", "2000 USDT",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["from"] == "2021-04-25T19:18:46.364000+00:00"  # the session's first message
    fired = [(d["time"], d["rule"]) for d in doc["decisions"] if d["kind"] == "fired"]
    # 9.931 s in, the ticker's price falls to 242.781 (from 243.65): dip fires, and its
    # fill arms take at once.
    assert fired == [("2021-04-25T19:18:56.296000+00:00", "dip"),
                     ("2021-04-25T19:18:56.296000+00:00", "take")]
    fills = [(f["rule"], f["side"], D(f["price"]), D(f["size"]), D(f["fee"]), f["liquidity"],
              f["time"][11:23]) for f in doc["fills"]]
    # The recorded asks then (the REST snapshot and the level2 updates up to that moment):
    # 4.51280965 at 243.021, 0.96 at 243.073, 4.29825582 at 243.097. The market buy of 6
    # walks them. The sell at 243.1 rests until the recorded bids cross it: 27.220 s in,
    # 5 at 243.137, which it takes as maker; the next update shows that level again as
    # recorded (the recording cannot know the order took it), and the last 1 fills.
    assert fills == [
        ("dip", "buy", D("243.021"), D("4.51280965"), D("1.09670751395265"), "taker",
         "19:18:56.296"),
        ("dip", "buy", D("243.073"), D("0.96"), D("0.23335008"), "taker", "19:18:56.296"),
        ("dip", "buy", D("243.097"), D("0.52719035"), D("0.12815839251395"), "taker",
         "19:18:56.296"),
        ("take", "sell", D("243.1"), D(5), D("1.2155"), "maker", "19:19:13.584"),
        ("take", "sell", D("243.1"), D(1), D("0.2431"), "maker", "19:19:13.585"),
    ]
    report = doc["report"]
    # 2000 - 1458.2159864666 (the buys) - 1.4582159864666 + 1458.6 (the sells) - 1.4586
    assert D(report["end_equity"]) == D("1997.4671975469334")
    assert D(report["start_equity"]) == D(2000)
    assert report["trades"] == 5 and report["unit"] == "updates" and report["skipped"] == 0
    names = {v: k for k, v in doc["names"].items()}
    take = report["rules"][names["take"]]
    # 6 x (243.1 - 1458.2159864666 / 6) - 1.4586 (the average cost divides: 28 digits)
    hand = D("1458.6") - D("1458.2159864666") - D("1.4586")
    assert abs(D(take["realised"]) - hand) < D("1e-20")
    assert "updates  " in printed and "2,000.00 -> 1,997.47 USDT" in printed


def test_a_session_file_of_ones_own(tmp_path: Path) -> None:
    """Frames as recorded (no REST snapshot: the book is built from level2 updates)."""
    def frame(ts: float, subject: str, data: dict[str, object]) -> str:
        kind = "level2" if subject == "trade.l2update" else "ticker"
        return json.dumps({"ts": ts, "dir": "in", "msg": {
            "type": "message", "subject": subject, "topic": f"/market/{kind}:BCHSV-USDT",
            "data": data}})

    lines = [
        frame(1000.0, "trade.l2update", {
            "sequenceStart": 1, "sequenceEnd": 3, "symbol": "BCHSV-USDT",
            "changes": {"asks": [["100.0", "1", "1"], ["100.5", "2", "2"]],
                        "bids": [["99.5", "3", "3"]]}}),
        frame(1000.5, "trade.ticker", {"price": "99.9", "size": "0.1", "bestAsk": "100.0",
                                       "bestBid": "99.5"}),
        frame(1001.0, "trade.ticker", {"price": "99.6", "size": "0.1", "bestAsk": "100.0",
                                       "bestBid": "99.5"}),
        frame(1002.0, "trade.l2update", {
            "sequenceStart": 4, "sequenceEnd": 4, "symbol": "BCHSV-USDT",
            "changes": {"asks": [["100.0", "0", "4"]], "bids": []}}),
    ]
    session = tmp_path / "mine.ndjson"
    session.write_text("\n".join(lines) + "\n")
    rules = tmp_path / "r.rules"
    rules.write_text("rule low on BCHSV-USDT:\n    when last < 99.8\n"
                     "    place market buy 1.5\n")
    out = tmp_path / "run.json"
    assert main(["backtest", str(rules), "--recorded", str(session), "--balance", "500 USDT",
                 "--quiet", "--json", str(out)]) == 0
    fills = [(f["price"], f["size"], f["time"]) for f in json.loads(out.read_text())[
        "fills"]]
    # 99.6 at 1001 s: the buy of 1.5 takes 1 at 100.0 and 0.5 at 100.5.
    at = "1970-01-01T00:16:41+00:00"
    assert fills == [("100.0", "1", at), ("100.5", "0.5", at)]


def test_bad_sessions_name_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "bsv.rules"
    rules.write_text(RULES)
    assert main(["backtest", str(rules), "--recorded", str(tmp_path / "none.ndjson")]) == 2
    assert "give 2021-04-25 (the shipped session)" in capsys.readouterr().err
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"ts": 1, "dir": "in", "msg": {}}\nnot json\n')
    assert main(["backtest", str(rules), "--recorded", str(bad)]) == 2
    assert "line 2: not a recorded frame" in capsys.readouterr().err
    broken = tmp_path / "broken.ndjson"
    broken.write_text(json.dumps({"ts": 1, "dir": "in", "msg": {
        "type": "message", "subject": "trade.l2update", "topic": "/market/level2:BCHSV-USDT",
        "data": {"sequenceEnd": 2, "changes": {"asks": [["1", "x", "2"]], "bids": []}}}}))
    assert main(["backtest", str(rules), "--recorded", str(broken)]) == 2
    assert "line 1: a level2 update needs sequenceEnd" in capsys.readouterr().err
    other = tmp_path / "btc.rules"
    other.write_text("rule x on BTC-USDT:\n    when last < 1\n    place market buy 0.001\n")
    assert main(["backtest", str(other), "--recorded", "2021-04-25"]) == 2
    assert "the recorded market has no BTC-USDT" in capsys.readouterr().err
    assert main(["backtest", str(rules)]) == 2
    assert "give --from DATE and --to DATE (or --recorded SESSION)" in capsys.readouterr().err
