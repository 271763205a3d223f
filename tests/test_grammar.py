"""The grammar: LALR without conflicts in strict mode, shipped with the package, and lexed alike
by the project's fast lexer and Lark's own lexers."""

from __future__ import annotations

from pathlib import Path

import pytest
from lark import Lark
from lark.exceptions import UnexpectedInput

from rules_engine.dsl import SourceFile, grammar_path, make_lark, parse

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.rules"))
BROKEN = sorted((ROOT / "tests" / "data" / "broken").glob("*.rules"))


@pytest.mark.parametrize("lexer", ["basic", "contextual"])
def test_grammar_is_conflict_free_in_strict_mode(lexer: str) -> None:
    # strict=True makes Lark fail on any shift/reduce conflict or terminal collision.
    make_lark(strict=True, lexer=lexer)


def test_the_grammar_is_found_from_the_installed_package() -> None:
    path = grammar_path()
    assert path.is_file()
    assert path.read_text().startswith("// The rule language of rules_engine")


LEXERS = (make_lark(lexer="basic", transformer=False), make_lark(transformer=False))


def _tokens(lark: Lark, text: str) -> list[tuple[str, str, int, int, int, int]] | str:
    try:
        return [
            (t.type, t.value, t.line, t.column, t.end_line, t.end_column) for t in lark.lex(text)
        ]
    except UnexpectedInput as err:
        return f"error at {err.line}:{err.column}"


@pytest.mark.parametrize("path", EXAMPLES + BROKEN, ids=lambda p: p.name)
def test_fast_lexer_yields_exactly_the_tokens_of_larks_basic_lexer(path: Path) -> None:
    text = path.read_text()
    basic, fast = LEXERS
    for line in text.splitlines(keepends=True):
        assert _tokens(fast, line) == _tokens(basic, line)
    if "@" not in text and '"unterminated' not in text:
        assert _tokens(fast, text) == _tokens(basic, text)


def test_every_node_carries_a_span_inside_the_text() -> None:
    source = SourceFile.read(ROOT / "examples" / "brief.rules")
    lines = source.text.splitlines()
    result = parse(source)
    assert result.diagnostics == []
    stack: list[object] = list(result.rules)
    seen = 0
    while stack:
        node = stack.pop()
        span = getattr(node, "span", None)
        if span is not None:
            seen += 1
            assert 1 <= span.line <= span.end_line <= len(lines)
            assert span.column >= 1
            if span.line == span.end_line:
                assert span.end_column > span.column
        if isinstance(node, tuple):
            stack.extend(x for x in node if isinstance(x, tuple))
    assert seen > 100


def test_keywords_need_spaces_but_subtraction_does_not() -> None:
    source = SourceFile("k.rules", "when BTC-USDT bid < 60000 place limit buy 0.01 at ask-5\n")
    result = parse(source)
    assert result.diagnostics == []
    place = result.rules[0].clauses[1]
    assert type(place).__name__ == "Place"
