"""Syntax errors -> diagnostics, and where parsing resumes after one."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import suppress

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from rules_engine.dsl import ast as A
from rules_engine.dsl._builder import _span
from rules_engine.dsl._diagnostics import Diagnostic, Severity
from rules_engine.dsl._grammar import _HEADER_RE, KEYWORDS, _parser
from rules_engine.dsl._hints import missing_colon, token_hint, unindented_clauses
from rules_engine.dsl._source import REPLACEMENT, SourceFile

_PLACEHOLDER = "_recovered_"  # the header put before a resumed line, whose rule is dropped

def _broken_line(err: UnexpectedInput, total: int) -> int:
    """1-based line of the error; a bad line break counts for the line it leads to."""
    if isinstance(err, UnexpectedToken):
        tok = err.token
        if tok.type == "_NL_IND":
            return tok.end_line or total
        if tok.type == "$END":
            return total
        return tok.line or total
    line = getattr(err, "line", total)
    return line if isinstance(line, int) and line > 0 else total


def _item_start(lines: list[str], bad: int) -> int:
    """1-based first line of the rule that holds line `bad` (a line starting in column 1)."""
    for number in range(min(bad, len(lines)), 0, -1):
        line = lines[number - 1]
        if line[:1] not in ("", " ", "\t", "#", "\r"):
            return number
    return 1


def _lines_before(text: str, line: int) -> int:
    """Character offset of the start of 1-based `line`."""
    pos = 0
    for _ in range(line - 1):
        nxt = text.find("\n", pos)
        if nxt < 0:
            return len(text)
        pos = nxt + 1
    return pos


def _resume_text(text: str, restart: int) -> str:
    """Text from 0-based line `restart` on, earlier lines blanked so numbers stay true.

    When the resumed line is indented (a clause of the rule that broke), a placeholder header
    goes on the blanked line just above it so the parser accepts the rest of the block; the
    placeholder rule is dropped from the result (it only serves to find more syntax errors).
    """
    rest = text[_lines_before(text, restart + 1) :]
    first = rest.split("\n", 1)[0]
    if first[:1] in (" ", "\t") and first.strip() and not first.strip().startswith("#"):
        return "\n" * (restart - 1) + f"rule {_PLACEHOLDER}:\n" + rest
    return "\n" * restart + rest


def _bad_bytes(source: SourceFile) -> Iterator[Diagnostic]:
    for number, line in enumerate(source.text.split("\n"), start=1):  # the lexer's lines
        col = line.find(REPLACEMENT)
        if col >= 0:
            yield Diagnostic(
                source.path,
                A.Span(number, col + 1, number, col + 2),
                "E005",
                Severity.ERROR,
                "bytes that are not valid UTF-8; save the file as UTF-8",
            )


_DESCRIBE = {
    "NAME": "a name",
    "SYMBOL": "a symbol such as BTC-USDT",
    "NUMBER": "a number",
    "PERCENT": "a percent such as 2%",
    "DURATION": "a duration such as 10m",
    "TIME": "a time such as 08:00",
    "TIMESTAMP": "a timestamp such as 2026-06-30T12:00Z",
    "CURRENCY": "a currency such as USDT",
    "STRING": 'a "quoted string"',
    "COMPARE": "a comparison (< <= > >= == !=)",
    "MUL_OP": "'*' or '/'",
    "_NL": "the end of the line",
    "_NL_IND": "an indented clause line",
    "$END": "the end of the file",
}


def _describe_terminal(name: str) -> str:
    if name in _DESCRIBE:
        return _DESCRIBE[name]
    try:
        pattern = _parser().get_terminal(name).pattern
    except KeyError:
        return name.lower()
    return repr(pattern.value) if pattern.type == "str" else name.lower()


def _describe_token(tok: Token) -> str:
    if tok.type in ("_NL", "_NL_IND"):
        return "end of line"
    if tok.type == "$END":
        return "end of file"
    if tok.type in _DESCRIBE and tok.type not in ("MUL_OP", "COMPARE"):
        return f"{_DESCRIBE[tok.type].split(' such as')[0].removeprefix('a ')} {str(tok)!r}"
    return repr(str(tok))


def _expected_words(expected: list[str]) -> set[str]:
    """The keywords (and SYMBOL, when a symbol may come) among expected terminals."""
    words = {"SYMBOL"} if "SYMBOL" in expected else set()
    lark = _parser()
    for name in expected:
        with suppress(KeyError):
            pattern = lark.get_terminal(name).pattern
            if pattern.type == "str" and pattern.value[:1].isalpha():
                words.add(pattern.value)
    return words


def _syntax_diagnostic(
    source: SourceFile, err: UnexpectedInput, joined: Mapping[str, str]
) -> Diagnostic:
    line = getattr(err, "line", 1) or 1
    column = getattr(err, "column", 1) or 1
    if isinstance(err, UnexpectedCharacters):
        text = source.line(line)
        char = text[column - 1] if 0 < column <= len(text) else ""
        span = A.Span(line, column, line, column + 1)
        if char == REPLACEMENT:
            return Diagnostic(
                source.path,
                span,
                "E005",
                Severity.ERROR,
                "bytes that are not valid UTF-8; save the file as UTF-8",
            )
        if char == '"':
            return Diagnostic(
                source.path,
                span,
                "E006",
                Severity.ERROR,
                'unterminated string: close it with " on the same line',
            )
        return Diagnostic(
            source.path,
            span,
            "E001",
            Severity.ERROR,
            f"unexpected character {char!r}{_char_hint(char)}",
        )
    assert isinstance(err, UnexpectedToken)
    tok = err.token
    expected = sorted(err.expected)
    if tok.type == "_NL_IND" and "COLON" in expected:
        return missing_colon(source, tok.line or line)
    if tok.type == "_NL" and "_NL_IND" in expected:
        once = unindented_clauses(
            source, tok.line or line, lambda text: _HEADER_RE.match(text) is not None
        )
        if once is not None:
            return once
    hinted = token_hint(source, tok, _expected_words(expected), joined)
    if hinted is not None:
        return hinted
    if tok.type == "_NL_IND":
        # Report at the indented line itself, not at the break before it.
        where = _indented_line(source, tok)
        return Diagnostic(
            source.path,
            where,
            "E004",
            Severity.ERROR,
            "indented line outside a rule: indent clause lines only under a "
            "`rule NAME:` header, start one-liners in column 1",
        )
    if tok.type == "$END" or (tok.type == "_NL" and "_NL_IND" not in expected):
        span = _end_of_line_span(source, tok, line)
        return Diagnostic(
            source.path,
            span,
            "E003",
            Severity.ERROR,
            f"the line ends too early: expected {_expected_text(expected)}",
        )
    if tok.type == "_NL" and "_NL_IND" in expected:
        span = _end_of_line_span(source, tok, line)
        return Diagnostic(
            source.path,
            span,
            "E007",
            Severity.ERROR,
            "a rule header must be followed by its clauses, each on an indented line below it",
        )
    span = _span(tok)
    if "NAME" in expected and str(tok) in KEYWORDS:
        return Diagnostic(
            source.path,
            span,
            "E008",
            Severity.ERROR,
            f"{str(tok)!r} is a reserved keyword and cannot be used as a name",
        )
    if tok.type == "CURRENCY" and "NAME" in expected:
        word = _word_at(source, span)
        return Diagnostic(
            source.path,
            span._replace(end_column=span.column + len(word)),
            "E008",
            Severity.ERROR,
            f"names are lower case ([a-z_][a-z0-9_]*): write {word.lower()!r}",
        )
    if tok.type == "NAME" and "SYMBOL" in expected and "-" not in str(tok):
        return Diagnostic(
            source.path,
            span,
            "E002",
            Severity.ERROR,
            f"expected a symbol such as BTC-USDT, got {str(tok)!r} "
            "(symbols are upper case BASE-QUOTE)",
        )
    hint = ""
    line = source.line(span.line)
    lower_symbol = next((m for m in _LOWER_SYMBOL.finditer(line)
                         if m.group(0) not in _HYPHENATED), None)
    if lower_symbol:
        hint = f" (symbols are upper case: {lower_symbol.group(0).upper()})"
    elif "stop-loss" in line and "exchange" in line:
        hint = (" (a stop-loss on the exchange is written `stop-loss at STOP limit LIMIT on "
                "exchange`, in that order)")
    return Diagnostic(
        source.path,
        span,
        "E002",
        Severity.ERROR,
        f"unexpected {_describe_token(tok)}{hint}: expected {_expected_text(expected)}",
    )


_LOWER_SYMBOL = re.compile(r"\b[a-z0-9]*[a-z][a-z0-9]*-[a-z][a-z0-9]*\b")
_HYPHENATED = frozenset({"stop-loss", "trailing-stop", "post-only", "on-exchange"})  # not symbols


def _word_at(source: SourceFile, span: A.Span) -> str:
    match = re.match(r"[A-Za-z0-9_]+", source.line(span.line)[span.column - 1 :])
    return match.group(0) if match else ""


def _expected_text(expected: list[str]) -> str:
    names = sorted({_describe_terminal(e) for e in expected if e != "$END"})
    if "$END" in expected:
        names.append("the end of the file")
    if len(names) > 8:
        return ", ".join(names[:8]) + f" or {len(names) - 8} more"
    if len(names) > 1:
        return ", ".join(names[:-1]) + " or " + names[-1]
    return names[0] if names else "something else"


def _char_hint(char: str) -> str:
    if char == "%":
        return " (a percent is written with its number: 2%)"
    if char.isalpha() and char.isupper():
        return " (symbols are written BASE-QUOTE, such as BTC-USDT)"
    if char == "'":
        return ' (strings use double quotes: "text")'
    return ""


def _end_of_line_span(source: SourceFile, tok: Token, line: int) -> A.Span:
    number = tok.line if tok.type != "$END" and tok.line else line
    if tok.type == "$END":
        number = max(source.text.rstrip().count("\n") + 1, 1)
    text = source.line(number)
    stripped = text.split("#", 1)[0].rstrip()
    col = len(stripped) + 1
    return A.Span(number, col, number, col + 1)


def _indented_line(source: SourceFile, tok: Token) -> A.Span:
    end_line = tok.end_line or tok.line or 1
    text = source.line(end_line)
    col = len(text) - len(text.lstrip()) + 1
    return A.Span(end_line, col, end_line, len(text.rstrip()) + 1)
