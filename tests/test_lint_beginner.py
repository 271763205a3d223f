"""The syntax errors a beginner makes, named as such (E010-E015), and `lint --fix` / `--diff`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rules_engine.cli import main
from rules_engine.compiler import compile_sources
from rules_engine.dsl import Diagnostic, SourceFile, apply_fixes

GOOD = "when BTC-USDT bid < 60000 place limit buy 0.01 at 59000\n"


def diags(text: str | bytes) -> list[Diagnostic]:
    data = text.encode() if isinstance(text, str) else text
    return list(compile_sources([SourceFile.from_bytes("t.rules", data)]).diagnostics)


def one(text: str, code: str) -> Diagnostic:
    found = diags(text)
    assert [d.code for d in found] == [code], found
    return found[0]


def fixed(text: str) -> str:
    return apply_fixes(text, diags(text))[0]


@pytest.mark.parametrize(
    ("text", "code", "message", "after"),
    [
        (GOOD.replace("when", "wehn"), "E012", "did you mean 'when'?", GOOD),
        (
            GOOD.replace("bid < 60000", "bid < 60000 AND BTC-USDT ask < 60100"),
            "E012",
            "keywords are lower case: write 'and'",
            GOOD.replace("bid < 60000", "bid < 60000 and BTC-USDT ask < 60100"),
        ),
        (GOOD.replace("when", "When"), "E012", "write 'when'", GOOD),
        (GOOD.replace("59000", "59000 post_only"), "E012", "'post_only' is written 'post-only'",
         GOOD.replace("59000", "59000 post-only")),
        (
            "when BTC-USDT last > sma(200, 1H) place limit buy 0.01 at 59000\n",
            "E013",
            "write '1h'",
            "when BTC-USDT last > sma(200, 1h) place limit buy 0.01 at 59000\n",
        ),
        (GOOD.replace("BTC-USDT", "BTCUSDT"), "E014", "with a dash: BTC-USDT", GOOD),
        (GOOD.replace("BTC-USDT", "btcusdt"), "E014", "with a dash: BTC-USDT", GOOD),
        (GOOD.replace("59000", "ask \u2013 5"), "E010", "U+2013 EN DASH looks like '-'",
         GOOD.replace("59000", "ask - 5")),
        (GOOD.replace("bid <", "bid\u00a0<"), "E010", "U+00A0 NO-BREAK SPACE", GOOD),
        (GOOD.replace("bid <", "bid \u2264"), "E010", "type '<='", GOOD.replace("<", "<=", 1)),
        (GOOD.replace("bid ", "bid\u200b "), "E010", "invisible character", GOOD),
        (
            "rule dip on BTC-USDT\n    when bid < 60000\n    place limit buy 0.01 at 59000\n",
            "E011",
            "a rule header ends with ':'",
            "rule dip on BTC-USDT:\n    when bid < 60000\n    place limit buy 0.01 at 59000\n",
        ),
    ],
)
def test_each_beginner_mistake_is_named_and_fixed(
    text: str, code: str, message: str, after: str
) -> None:
    diag = one(text, code)
    assert message in diag.message
    assert diag.fix, "a certain fix comes with it"
    assert fixed(text) == after
    assert not diags(after)


def test_smart_quotes_around_a_string_are_two_errors_and_one_fix() -> None:
    text = 'when BTC-USDT bid < 60000 notify \u201clow\u201d\n'
    found = diags(text)
    assert [(d.code, d.span.column) for d in found] == [("E010", 34), ("E010", 38)]
    assert fixed(text) == 'when BTC-USDT bid < 60000 notify "low"\n'


def test_look_alikes_inside_strings_and_comments_are_fine() -> None:
    text = (
        'when BTC-USDT bid < 60000 notify "it\u2019s \u2013 low\u00a0now"'
        "  # \u2014 ok \u201cyes\u201d\n"
    )
    assert diags(text) == []


def test_a_byte_order_mark_is_accepted_and_columns_stay_true() -> None:
    assert diags(b"\xef\xbb\xbf" + GOOD.encode()) == []
    (diag,) = diags(b"\xef\xbb\xbfwhen BTC-USDT bidd < 60000 place limit buy 0.01 at 59000\n")
    assert (diag.code, diag.span.column) == ("E104", 15)


def test_missing_indentation_is_reported_once_not_as_a_cascade() -> None:
    text = "rule dip on BTC-USDT:\nwhen bid < 60000\nplace limit buy 0.01 at 59000\n\n" + GOOD
    diag = one(text, "E015")
    assert (diag.span.line, diag.span.end_line) == (2, 3)
    assert "indent lines 2-3" in diag.message
    assert fixed(text) == (
        "rule dip on BTC-USDT:\n    when bid < 60000\n    place limit buy 0.01 at 59000\n\n" + GOOD
    )


def test_multi_word_constructs_that_do_not_exist_are_explained_without_a_fix() -> None:
    diag = one(GOOD.replace("limit buy", "stop-limit buy"), "E012")
    assert "a stop-limit is written `place stop buy|sell SIZE at TRIGGER limit PRICE`" in (
        diag.message) and not diag.fix
    diag = one(GOOD.replace("limit buy", "take-profit buy"), "E012")
    assert "place limit sell" in diag.message and not diag.fix


def test_a_keyword_slip_is_fixed_only_when_one_keyword_is_clearly_closest() -> None:
    tail = "when BTC-USDT bid < 60000 place limit buy 0.01 at 59000 {}\n"
    diag = one(tail.format("cance all"), "E012")
    assert "did you mean 'cancel'?" in diag.message and diag.fix
    assert fixed(tail.format("adn")) == tail.format("and")  # a transposition
    diag = one(tail.format("ore"), "E012")  # as close to `or` as to `once`? no: `or`
    assert diag.message.endswith("(did you mean 'or'?)")
    diag = one(
        "rule a on BTC-USDT:\n    when bid < 60000 fo 10m\n    place limit buy 0.01 at 1\n",
        "E012",
    )
    assert "(did you mean 'for' or 'fok'?)" in diag.message and not diag.fix


def test_an_upper_case_month_is_not_fixed() -> None:
    diag = one("when BTC-USDT last > sma(200, 1M) place limit buy 0.01 at 59000\n", "E013")
    assert "no month timeframe" in diag.message and not diag.fix


def test_the_corpus_and_examples_are_unchanged_by_fix() -> None:
    root = Path(__file__).resolve().parent.parent / "examples"
    for path in sorted(root.glob("*.rules")):
        text = path.read_text()
        assert fixed(text) == text, path


def test_lint_fix_writes_certain_fixes_keeps_the_bom_and_reports_what_is_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.rules"
    text = (
        "When BTC-USDT bid < 60000 Place limit buy 0.01 at 59000\n"  # two rounds on one line
        "rule dip on BTC-USDT\n    when bid < 58000\n    place stop-limit buy 0.01 at 59000\n"
    )
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert main(["lint", "--fix", str(path)]) == 1
    captured = capsys.readouterr()
    assert "fixed 3 problem(s) in 1 file(s)" in captured.err
    assert "E012 a stop-limit is written" in captured.out
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    assert data[3:].decode() == (
        "when BTC-USDT bid < 60000 place limit buy 0.01 at 59000\n"
        "rule dip on BTC-USDT:\n    when bid < 58000\n    place stop-limit buy 0.01 at 59000\n"
    )


def test_lint_diff_shows_the_fixes_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.rules"
    path.write_text(GOOD.replace("BTC-USDT", "BTCUSDT"))
    assert main(["lint", "--diff", str(path)]) == 1
    out = capsys.readouterr().out
    assert "-when BTCUSDT bid" in out and "+when BTC-USDT bid" in out
    assert path.read_text() == GOOD.replace("BTC-USDT", "BTCUSDT")
    path.write_text(GOOD)
    assert main(["lint", "--diff", str(path)]) == 0
    assert capsys.readouterr().out == ""


def test_json_output_carries_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.rules"
    path.write_text(GOOD.replace("when", "WHEN"))
    assert main(["lint", "--format", "json", str(path)]) == 1
    (item,) = json.loads(capsys.readouterr().out)
    assert item["code"] == "E012"
    assert item["fix"] == [{"line": 1, "column": 1, "end_column": 5, "text": "when"}]
