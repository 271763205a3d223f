"""The grammar and the one LALR parser of the process, built on first use."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from lark import Lark

from rules_engine.dsl._builder import _AstBuilder, _install_callbacks
from rules_engine.dsl._lexer import FastLexer

__all__ = ["KEYWORDS", "grammar_path", "grammar_text", "make_lark"]

KEYWORDS = frozenset(
    [
        "rule",
        "on",
        "when",
        "for",
        "place",
        "market",
        "limit",
        "stop",
        "buy",
        "sell",
        "at",
        "by",
        "of",
        "ioc",
        "fok",
        "hidden",
        "cancel",
        "after",
        "all",
        "orders",
        "notify",
        "once",
        "repeat",
        "every",
        "max",
        "expires",
        "in",
        "filled",
        "fired",
        "canceled",
        "during",
        "and",
        "or",
        "not",
        "crosses",
        "above",
        "below",
        "between",
        "signal",
        "within",
        "iceberg",
        "visible",
        "scaled",
        "from",
        "to",
        "twap",
        "over",
        "move",
        "risk",
    ]
)

def grammar_path() -> Path:
    """The grammar shipped in the wheel, or the repository's own when installed editable."""
    shipped = resources.files("rules_engine").joinpath("grammar", "rules.lark")
    if shipped.is_file():
        return Path(str(shipped))
    return Path(__file__).resolve().parents[2] / "grammar" / "rules.lark"


def grammar_text() -> str:
    return grammar_path().read_text(encoding="utf-8")


_HEADER_RE = re.compile(r"^rule[ \t]+([a-z_][a-z0-9_]*)", re.MULTILINE)


def make_lark(*, strict: bool = False, lexer: str = "fast", transformer: bool = True) -> Lark:
    """A Lark parser over the project's grammar.

    `lexer="fast"` (the default) is the project's `FastLexer`, which yields exactly the tokens
    of Lark's `basic` lexer; tests also build `basic` and `contextual` ones, with strict=True.
    """
    lark = Lark(
        grammar_text(),
        parser="lalr",
        lexer=FastLexer if lexer == "fast" else lexer,
        strict=strict,
        maybe_placeholders=False,
        # Lark keeps the analysed grammar in a temporary file keyed by the grammar's hash:
        # building the tables takes ~0.45 s, loading them ~0.01 s.
        cache=not strict,
    )
    if transformer:
        _install_callbacks(lark, _AstBuilder())
    # `Lark.lex` rebuilds its lexer on every call unless one is kept here.
    lark.lexer = lark.parser.lexer if lexer == "fast" else lark._build_lexer()
    return lark


_LARK: Lark | None = None


def _parser() -> Lark:
    global _LARK  # noqa: PLW0603 - the one parser of the process, built on first use
    if _LARK is None:
        _LARK = make_lark()
    return _LARK


