"""docs/diagnostics.md documents every code the linter can emit, and its examples are true:
each "Bad" block reports the code, each "Fix" block reports no error and not that code."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from rules_engine.compiler import MarketSnapshot, compile_sources
from rules_engine.dsl import SourceFile

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "diagnostics.md").read_text()
SECTION = re.compile(r"^### ([EWN]\d{3}) .*?(?=^### |^## |\Z)", re.MULTILINE | re.DOTALL)
BLOCK = re.compile(r"(Bad|Fix):\n```rules\n(.*?)```", re.DOTALL)
MARKET = MarketSnapshot({"BTC-USDT": Decimal(60000)}, datetime(2026, 1, 1, tzinfo=UTC))
SIGNALS = frozenset({"breakout"})  # the signals of the config the examples are linted with


def sections() -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for match in SECTION.finditer(DOC):
        found[match.group(1)] = dict(BLOCK.findall(match.group(0)))
    return found


def emitted_codes() -> set[str]:
    codes: set[str] = set()
    for path in (ROOT / "rules_engine").rglob("*.py"):
        codes |= set(re.findall(r'"([EWN]\d{3})"', path.read_text()))
    return codes


def lint(text: str) -> list[tuple[str, bool]]:
    data = text.encode().replace(b"\\xe9", b"\xe9")
    program = compile_sources([SourceFile.from_bytes("doc.rules", data)], market=MARKET,
                              signals=SIGNALS)
    return [(d.code, d.is_error) for d in program.diagnostics]


def test_every_code_the_linter_emits_is_documented() -> None:
    assert emitted_codes() == set(sections())


@pytest.mark.parametrize("code", sorted(sections()))
def test_documented_bad_example_reports_the_code_and_the_fix_cures_it(code: str) -> None:
    blocks = sections()[code]
    assert set(blocks) == {"Bad", "Fix"}, f"{code} needs a Bad and a Fix block"
    assert code in [c for c, _ in lint(blocks["Bad"])]
    fixed = lint(blocks["Fix"])
    assert code not in [c for c, _ in fixed]
    assert not [c for c, is_error in fixed if is_error], fixed


LANGUAGE = (ROOT / "docs" / "language.md").read_text()


@pytest.mark.parametrize(
    "block", re.findall(r"```rules\n(.*?)```", LANGUAGE, re.DOTALL), ids=lambda b: b[:30]
)
def test_every_language_reference_example_lints_without_errors(block: str) -> None:
    assert not [code for code, is_error in lint(block) if is_error]
