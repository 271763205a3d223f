"""A fast lexer for the rule grammar, built from the grammar's own terminal definitions.

Lark's standard lexers spend most of their time per token in generic bookkeeping. This one
compiles every terminal of the grammar into one alternation (in Lark's own priority order),
folds keywords into the NAME-like terminals that also match them (as Lark does), and counts
lines only on the two newline terminals, the only ones that can span lines. It accepts
exactly the tokens Lark's basic lexer accepts; tests compare the two on every example.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, ClassVar

from lark import Token
from lark.exceptions import UnexpectedCharacters
from lark.lexer import Lexer, PatternStr

__all__ = ["FastLexer"]

_NEWLINE_TERMINALS = frozenset(["_NL", "_NL_IND"])


class FastLexer(Lexer):
    """A Lark custom lexer (interface 0: `lex(text)`)."""

    __future_interface__: ClassVar[int] = 0

    def __init__(self, lexer_conf: Any) -> None:
        terminals = list(lexer_conf.terminals)
        flags = 0
        for flag in (lexer_conf.g_regex_flags and [lexer_conf.g_regex_flags]) or []:
            flags |= flag
        regex_terms = [t for t in terminals if not isinstance(t.pattern, PatternStr)]
        keywords: dict[str, dict[str, str]] = {}
        folded: set[str] = set()
        for term in terminals:
            if not isinstance(term.pattern, PatternStr):
                continue
            for other in regex_terms:
                if other.priority > term.priority:
                    continue
                if re.fullmatch(other.pattern.to_regexp(), term.pattern.value):
                    keywords.setdefault(other.name, {})[term.pattern.value] = term.name
                    folded.add(term.name)
        kept = [t for t in terminals if t.name not in folded]
        kept.sort(key=lambda t: (-t.priority, -t.pattern.max_width, -len(t.pattern.value), t.name))
        self._names = [t.name for t in kept]
        self._regex = re.compile(
            "|".join(f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in kept), flags
        )
        self._keywords = keywords
        self._ignore = frozenset(lexer_conf.ignore)
        self._terminals = kept

    def lex(self, data: Any) -> Iterator[Token]:  # type: ignore[override]
        text: str = data
        match = self._regex.match
        keywords = self._keywords
        ignore = self._ignore
        new: Any = Token._future_new  # untyped in lark
        pos = 0
        line = 1
        line_start = 0
        end = len(text)
        while pos < end:
            m = match(text, pos)
            if m is None:
                raise UnexpectedCharacters(  # type: ignore[no-untyped-call]
                    text,
                    pos,
                    line,
                    pos - line_start + 1,
                    allowed={t.name for t in self._terminals},
                )
            kind: str = m.lastgroup  # type: ignore[assignment]
            value = m.group()
            stop = m.end()
            if kind in _NEWLINE_TERMINALS:
                newlines = value.count("\n")
                end_line = line + newlines
                end_col = stop - (text.rfind("\n", pos, stop) + 1) + 1
                if kind not in ignore:
                    yield new(kind, value, pos, line, pos - line_start + 1, end_line, end_col, stop)
                line = end_line
                line_start = text.rfind("\n", pos, stop) + 1
            elif kind not in ignore:
                remap = keywords.get(kind)
                if remap is not None:
                    kind = remap.get(value, kind)
                col = pos - line_start + 1
                yield new(kind, value, pos, line, col, line, col + stop - pos, stop)
            pos = stop
