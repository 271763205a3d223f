"""Rule text -> syntax tree, with syntax errors turned into diagnostics.

The Lark parser is built once per process (and its tables cached on disk by Lark), and the
tree is built by an inline transformer while parsing, with spans taken from tokens. A syntax
error does not stop the file: parsing restarts on the next line, so one run reports every
broken line. Semantic checks never run here (see rules_engine.compiler). The grammar and
the parser are built in `_grammar`, the tree by `_builder`'s callbacks, and syntax errors
become diagnostics in `_syntax_errors`.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import NamedTuple

from lark import Lark
from lark.exceptions import UnexpectedInput

from rules_engine.dsl import ast as A
from rules_engine.dsl._diagnostics import Diagnostic
from rules_engine.dsl._grammar import (
    _HEADER_RE,
    KEYWORDS,
    _parser,
    grammar_path,
    grammar_text,
    make_lark,
)
from rules_engine.dsl._hints import lookalikes
from rules_engine.dsl._source import SourceFile
from rules_engine.dsl._syntax_errors import (
    _PLACEHOLDER,
    _bad_bytes,
    _broken_line,
    _item_start,
    _resume_text,
    _syntax_diagnostic,
)

__all__ = [
    "KEYWORDS",
    "ParseResult",
    "gc_paused",
    "grammar_path",
    "grammar_text",
    "make_lark",
    "parse",
]

@contextmanager
def gc_paused() -> Iterator[None]:
    """The parser allocates many small objects that all survive; collecting mid-parse is waste."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class ParseResult(NamedTuple):
    rules: list[A.RuleNode]
    diagnostics: list[Diagnostic]
    broken_names: frozenset[str]


def parse(source: SourceFile, joined_symbols: Mapping[str, str] | None = None) -> ParseResult:
    """Parse one file. Broken lines become diagnostics; the rules that parsed are returned.

    The whole file is parsed in one call when it is valid. After a syntax error, the complete
    rules before the broken one are parsed on their own, and parsing resumes on the line after
    the error (with earlier lines blanked, so line numbers stay true), until the end.
    """
    diagnostics: list[Diagnostic] = []
    if source.had_bad_bytes:
        diagnostics.extend(_bad_bytes(source))
    rules: list[A.RuleNode] = []
    broken: set[str] = set()
    parser = _parser()
    found, text = lookalikes(source)  # parsed as the characters they stand for
    diagnostics.extend(found)
    joined = joined_symbols or {}
    chunk = text
    resumed = 0  # the line parsing last resumed after
    with gc_paused():
        while True:
            try:
                _keep(rules, _run(parser, chunk), source.path)
                break
            except UnexpectedInput as err:
                diagnostic = _syntax_diagnostic(source, err, joined)
                if diagnostic not in diagnostics:
                    diagnostics.append(diagnostic)
                lines = chunk.split("\n")
                # An error at or above the resumed line is one the placeholder header met
                # (the resumed line itself broke): move on past it, so parsing always ends.
                bad = max(_broken_line(err, len(lines)), resumed + 1)
                if diagnostic.code == "E015":  # the unindented clauses were reported once
                    bad = max(bad, diagnostic.span.end_line)
                resumed = bad
                start = _item_start(lines, bad)
                broken.update(_HEADER_RE.findall("\n".join(lines[start - 1 : bad])))
                if start > 1:
                    # A prefix of whole rules parses; should it not, it adds nothing.
                    with suppress(UnexpectedInput):
                        _keep(rules, _run(parser, "\n".join(lines[: start - 1])), source.path)
                if bad >= len(lines):
                    break
                chunk = _resume_text(text, bad)
    return ParseResult(rules, diagnostics, frozenset(broken))


def _run(parser: Lark, text: str) -> list[A.RuleNode]:
    items: list[A.RuleNode] = parser.parse(text)  # type: ignore[assignment]  # built by _AstBuilder
    return items


def _keep(rules: list[A.RuleNode], items: list[A.RuleNode], path: str) -> None:
    for node in items:
        if node.name is not None and node.name.text == _PLACEHOLDER:
            continue
        rules.append(node._replace(path=path))


