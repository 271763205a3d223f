"""Broken rule files yield the expected code, line and column for every mistake, in one run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rules_engine.compiler import compile_sources
from rules_engine.dsl import Severity, SourceFile

BROKEN = sorted((Path(__file__).parent / "data" / "broken").glob("*.rules"))
EXPECT = re.compile(r"^# expect (\w\d+) (\d+):(\d+)$", re.MULTILINE)


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.name)
def test_every_mistake_of_a_broken_file_is_reported_at_its_place(path: Path) -> None:
    source = SourceFile.read(path)
    expected = sorted(
        (code, int(line), int(col)) for code, line, col in EXPECT.findall(source.text)
    )
    assert expected, f"{path.name} has no `# expect` lines"
    program = compile_sources([source])
    found = sorted(
        (d.code, d.span.line, d.span.column)
        for d in program.diagnostics
        if d.severity is not Severity.NOTE
    )
    assert found == expected


def test_the_corpus_covers_many_distinct_codes() -> None:
    codes = {code for p in BROKEN for code, _, _ in EXPECT.findall(p.read_text())}
    assert len(codes) >= 40, sorted(codes)


def test_a_file_with_an_error_contributes_no_rules() -> None:
    good = SourceFile("good.rules", "when BTC-USDT bid < 59000 place limit buy 0.01 at 59000\n")
    bad = SourceFile(
        "bad.rules",
        "when BTC-USDT bid < 58000 place limit buy 0.01 at 58000\n"
        "when BTC-USDT bidd < 1 place limit buy 0.01 at 59000\n",
    )
    program = compile_sources([good, bad])
    assert [r.path for r in program.rules] == ["good.rules"]
    assert [d.code for d in program.errors] == ["E104"]
