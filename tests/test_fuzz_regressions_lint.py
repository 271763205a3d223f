"""What `benchmarks/fuzz` found in the linter, replayed: each input now gets diagnostics only.

The inputs are the fuzzer's (shortened where a shorter one crashed the same way); the comment
on each says what the old code raised, and where.
"""

from __future__ import annotations

import pytest
from fuzz_support import watchdog

from rules_engine.compiler import Compiler, compile_sources, shipped_symbols
from rules_engine.dsl import SourceFile, parse

# ------------------------------------------------------------------ the linter


def codes(text: str) -> list[str]:
    program = Compiler(shipped_symbols()).compile([SourceFile("fuzz.rules", text)])
    return [d.code for d in program.diagnostics]


@pytest.mark.parametrize(
    "text",
    [
        # RecursionError in compiler/_compile.py (_value, _binary, _collect_symbols)
        "when BTC-USDT last < 55000 place limit buy -0" + " + 0" * 400 + " at 55000\n",
        "when BTC-USDT bid < 60000" + " + 60000" * 800 + " place limit buy 0.01 at 59000\n",
        "when BTC-USDT last > sma(" + " + ".join(["200"] * 3000) + ") place market buy 50 USDT\n",
        "when BTC-USDT bid < " + "-" * 2000 + "1 place limit buy 0.01 at 59000\n",
        "when BTC-USDT bid < " + "(" * 3000 + "1" + ")" * 3000 + " + 0" * 60
        + " place limit buy 0.01 at 59000\n",
        # RecursionError in compiler/_conditions.py: the nesting check did not reach an
        # iceberg's visible size, a stop-limit's limit, a scaled order's prices or a stop-loss
        # leg's limit
        "when BTC-USDT bid < 60000 place limit buy 0.01 at 59000 iceberg visible 0.002"
        + " + 0.002" * 3000 + "\n",
        "when BTC-USDT last < 62000 place stop sell 0.01 at 61000 limit 60900" + " + 0" * 3000
        + "\n",
        "when BTC-USDT bid < 60000 place scaled buy 0.05 from 59000" + " + 0" * 3000
        + " to 57000 in 5\n",
        "rule e on BTC-USDT:\n    when ask < 60000\n    place limit buy 0.01 at ask\n"
        "rule x on BTC-USDT:\n    after e filled\n"
        "    place limit sell filled_size at fill_price + 3%\n"
        "    stop-loss at fill_price - 2% limit fill_price" + " - 0" * 3000 + " on exchange\n",
    ],
)
def test_an_expression_nested_too_deeply_is_e009(text: str) -> None:
    assert "E009" in codes(text)


def test_an_expression_of_fifty_levels_still_compiles() -> None:
    text = "when BTC-USDT bid < 60000" + " + 0" * 49 + " place limit buy 0.01 at 59000\n"
    assert codes(text) == []


@pytest.mark.parametrize(
    ("text", "code"),
    [
        # decimal.InvalidOperation (DivisionImpossible) at compiler/_compile.py, the
        # increment checks of price, size and funds
        ("when BTC-USDT bid < 60000 place limit buy " + "9" * 469 + " at 59000\n", "E302"),
        ("when BTC-USDT bid < 60000 place market buy " + "9" * 5000 + ".5 USDT\n", "E306"),
        # ValueError: int() of 5000 digits, at dsl/ast.py (Dur.seconds) and in the compiler
        ("rule r on BTC-USDT:\n    when bid < 60000\n    place limit buy 0.01 at 59000\n"
         "    cancel after " + "9" * 5000 + "m\n", "E204"),
        ("rule r on BTC-USDT:\n    when bid < 60000\n    place limit buy 0.01 at 59000\n"
         "    repeat every 1h max " + "9" * 5000 + "\n", "E409"),
        ("when BTC-USDT sma(" + "9" * 5000 + ", 1h) < 60000 place limit buy 0.01 at 59000\n",
         "E108"),
        # compiled, then an OverflowError in the watcher's timedelta / SQLite's INTEGER
        ("when BTC-USDT bid < 60000 for 99999999999999999999d place limit buy 0.01 at 59000\n",
         "E204"),
        ("rule r on BTC-USDT:\n    when bid < 60000\n    place limit buy 0.01 at 59000\n"
         "    repeat every 1h max 99999999999999999999\n", "E409"),
    ],
)
def test_huge_numbers_get_their_diagnostic(text: str, code: str) -> None:
    assert code in codes(text)


def test_a_huge_price_is_checked_against_its_increment_exactly() -> None:
    # DivisionImpossible: 10**300 % 0.1 needs more than the default 28 digits of precision
    price = "9" * 300  # the literal, rounded to 28 digits as every literal is: 1E+300
    # no crash, no E304; the safety checks rightly say that this buy pays far above the market
    assert codes(f"when BTC-USDT bid < 60000 place limit buy 0.01 at {price}\n") == [
        "W702",
        "W704",
    ]


def test_a_lone_carriage_return_after_a_broken_header_does_not_hang_the_parser() -> None:
    # the parser resumed at the same line forever (dsl/_parser.py, parse)
    text = ("rule mixed on BTCconditions -USDT:\n\nrule mixed on BTCconditions -USDT:\n"
            "    \r (bid + ask) / 2 < 57000 and not (change < -10%) or volume > 50000\n"
            "    place limit buy 0.001 at mid - (((((2)))))%\n\n"
            "rule band code BTC-USDT:\n    when last between 55000 and 56000\n"
            "    place limit buy 0.002 at last - 0.5%\n")
    with watchdog(10.0):
        result = parse(SourceFile("hang.rules", text))
    lines = [d.span.line for d in result.diagnostics]
    assert len(lines) == len(set(zip(lines, [d.code for d in result.diagnostics], strict=True)))
    assert 7 in lines  # the rule after the broken ones is still checked


def test_lines_are_the_lexers_lines() -> None:
    # splitlines() also broke lines at "\r", "\x0c" and "\u2028", so the caret was shown
    # under another line than the one the diagnostic named
    source = SourceFile("x.rules", "a\rb\x0cc\u2028d\nsecond\r\nthird")
    assert [source.line(n) for n in (1, 2, 3, 4)] == ["a\rb\x0cc\u2028d", "second", "third", ""]
    data = b"when BTC-USDT bid < 60000\x0c place limit buy 0.01 at 59000\n# caf\xe9\n"
    program = compile_sources([SourceFile.from_bytes("x.rules", data)])
    assert [(d.code, d.span.line) for d in program.diagnostics if d.code == "E005"] == [
        ("E005", 2)
    ]
