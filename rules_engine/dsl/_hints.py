"""Syntax errors a beginner makes, named as such, with the certain fix where there is one.

Look-alike characters (a dash from a word processor, smart quotes, a non-breaking space) are
found before parsing, one diagnostic each (E010), and parsed as the character they stand for,
so the rest of the file is checked as if it were fixed. The other hints turn a generic
"unexpected token" into what was meant: a keyword misspelt or in upper case (E012), a duration
in upper case (E013), a symbol without its dash (E014), a multi-word construct written another
way (E012), a rule header without its `:` (E011), and clause lines that are not indented under
their header, reported once for the block (E015).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable, Mapping

from lark import Token

from rules_engine.dsl import ast as A
from rules_engine.dsl._diagnostics import Diagnostic, Edit, Severity
from rules_engine.dsl._source import SourceFile

__all__ = ["CLAUSE_WORDS", "lookalikes", "token_hint", "unindented_clauses"]

# character -> what to type instead
LOOKALIKES = {
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2212": "-",  # minus sign
    "\u2010": "-",  # hyphen
    "\u2011": "-",  # non-breaking hyphen
    "\u201c": '"',  # left double quotation mark
    "\u201d": '"',  # right double quotation mark
    "\u201e": '"',  # double low-9 quotation mark
    "\u2018": '"',  # left single quotation mark: strings use double quotes
    "\u2019": '"',  # right single quotation mark
    "\u00a0": " ",  # no-break space
    "\u2007": " ",  # figure space
    "\u2009": " ",  # thin space
    "\u202f": " ",  # narrow no-break space
    "\u200b": "",  # zero width space
    "\ufeff": "",  # a byte-order mark inside the file
    "\u2264": "<=",
    "\u2265": ">=",
    "\u2260": "!=",
    "\u00d7": "*",
    "\u00f7": "/",
    "\uff1a": ":",  # fullwidth colon
}
_STARTERS = frozenset(["when", "place", "notify", "cancel", "after", "stop-loss"])
_QUOTES = frozenset('"\u201c\u201d\u201e\u2018\u2019')

CLAUSE_WORDS = frozenset(
    ["when", "place", "stop-loss", "cancel", "notify", "once", "repeat", "expires", "after",
     "during", "exit"]
)


def _name(char: str) -> str:
    return f"U+{ord(char):04X} {unicodedata.name(char, 'character')}"


def lookalikes(source: SourceFile) -> tuple[list[Diagnostic], str]:
    """E010 for every look-alike character outside strings and comments, and the text to
    parse: each replaced by one character of what it stands for (columns stay true)."""
    text = source.text
    if text.isascii():
        return [], text
    out: list[Diagnostic] = []
    parsed = list(text)
    offset = 0
    for number, line in enumerate(text.split("\n"), start=1):
        opener = ""  # the quote that opened the string the scan is in
        for col, char in enumerate(line):
            if char == "#" and not opener:
                break
            if opener == '"':  # an ASCII string: any character is content, until its quote
                opener = "" if char == '"' else opener
                continue
            if char in _QUOTES:
                opener = "" if opener else char
            elif opener:
                continue  # inside a string opened by a smart quote
            if char not in LOOKALIKES:
                continue
            typed = LOOKALIKES[char]
            span = A.Span(number, col + 1, number, col + 2)
            message = (
                f"{_name(char)} looks like {typed!r} but is not: type {typed!r} instead"
                if typed
                else f"invisible character {_name(char)}: delete it"
            )
            out.append(
                Diagnostic(source.path, span, "E010", Severity.ERROR, message, (Edit(span, typed),))
            )
            # one character in its place, so columns stay true (the file is rejected anyway)
            parsed[offset + col] = {"": " ", "!=": "<"}.get(typed, typed[:1])
        offset += len(line) + 1
    return out, "".join(parsed)


# ------------------------------------------------------------------ tokens the parser refused

# multi-word constructs: how people write them -> the language's spelling (None: not in it)
_CONSTRUCTS: list[tuple[re.Pattern[str], str | None, str]] = [
    (re.compile(r"(?i)\bstop[-_ ]?loss\b"), "stop-loss", ""),
    (re.compile(r"(?i)\btrailing[-_ ]?stop\b"), "trailing-stop", ""),
    (re.compile(r"(?i)\bpost[-_ ]?only\b"), "post-only", ""),
    (re.compile(r"(?i)\bfill[-_ ]price\b"), "fill_price", ""),
    (re.compile(r"(?i)\bfilled[-_ ]size\b"), "filled_size", ""),
    (
        re.compile(r"(?i)\bstop[-_ ]?limit\b"),
        None,
        "a stop-limit is written `place stop buy|sell SIZE at TRIGGER limit PRICE`: a KuCoin "
        "stop order that rests as a limit order at PRICE once triggered (without `limit` it "
        "trades at market), and `stop-loss at PRICE` beside a `place limit sell` makes a "
        "bracket",
    ),
    (
        re.compile(r"(?i)\btake[-_ ]?profit\b"),
        None,
        "a take-profit is written `place limit sell SIZE at PRICE` (with `stop-loss at PRICE` "
        "beside it for a bracket)",
    ),
]

_WORD = re.compile(r"[A-Za-z0-9_]+")


def _word_at(line: str, column: int) -> tuple[int, str]:
    """The identifier-like word that covers 1-based `column`, and its 1-based start."""
    for match in _WORD.finditer(line):
        if match.start() < column <= match.end():
            return match.start() + 1, match.group(0)
    return column, ""


def token_hint(
    source: SourceFile,
    tok: Token,
    expected_words: set[str],
    joined_symbols: Mapping[str, str],
) -> Diagnostic | None:
    """A precise diagnostic for a token the parser refused, or None for the generic one."""
    line_no, col = tok.line or 1, tok.column or 1
    line = source.line(line_no)

    def diag(code: str, start: int, end: int, message: str, typed: str | None) -> Diagnostic:
        span = A.Span(line_no, start, line_no, end)
        edits = (Edit(span, typed),) if typed is not None else ()
        return Diagnostic(source.path, span, code, Severity.ERROR, message, edits)

    for pattern, canonical, explain in _CONSTRUCTS:
        for match in pattern.finditer(line):
            if not match.start() < col <= match.end():
                continue
            written = match.group(0)
            if canonical is None:
                return diag("E012", match.start() + 1, match.end() + 1, explain, None)
            if written != canonical:
                return diag(
                    "E012", match.start() + 1, match.end() + 1,
                    f"{written!r} is written {canonical!r}", canonical,
                )
    if tok.type not in ("NAME", "CURRENCY", "SYMBOL"):
        return None
    start, word = _word_at(line, col)
    end = start + len(word)
    if not word:
        return None
    # `1H`: a number followed by an upper-case unit
    unit = re.fullmatch(r"(\d+)([SMHD])", word)
    if unit is not None:
        digits, letter = unit.groups()
        if letter == "M":
            return diag(
                "E013", start, end,
                f"durations are lower case: {digits}m is {digits} minutes (there is no month "
                "timeframe)", None,
            )
        return diag(
            "E013", start, end,
            f"durations and timeframes are lower case: write {word.lower()!r}", word.lower(),
        )
    before = re.search(r"([A-Za-z0-9]+)[ \t]+$", line[: start - 1])
    if before is not None and tok.type == "NAME" and before.group(1).islower():
        # `when btcusdt bid`: the symbol was read as a field, the field is what broke
        symbol = joined_symbols.get(before.group(1).upper())
        if symbol is not None:
            b_start, b_end = before.start(1) + 1, before.end(1) + 1
            message = f"symbols are written with a dash: {symbol}"
            return diag("E014", b_start, b_end, message, symbol)
    symbol = joined_symbols.get(word.upper())
    if symbol is not None:
        return diag("E014", start, end, f"symbols are written with a dash: {symbol}", symbol)
    lower = word.lower()
    if lower in expected_words and word != lower:
        return diag("E012", start, end, f"keywords are lower case: write {lower!r}", lower)
    close = _closest(lower, expected_words)
    if tok.type == "NAME" and close:
        if len(close) == 1:
            return diag(
                "E012", start, end, f"unknown keyword {word!r} (did you mean {close[0]!r}?)",
                close[0],
            )
        return diag(
            "E012", start, end,
            f"unknown keyword {word!r} (did you mean {close[0]!r} or {close[1]!r}?)", None,
        )
    return None


def _closest(word: str, candidates: set[str]) -> list[str]:
    """The keywords `word` may be a slip for: one when it is clearly the closest."""
    scored = sorted(
        ((difflib.SequenceMatcher(None, word, c).ratio(), c) for c in candidates if c.islower()),
        reverse=True,
    )
    close = [(score, c) for score, c in scored if score >= _CUTOFF]
    if len(close) > 1 and close[0][0] - close[1][0] >= _MARGIN:
        return [close[0][1]]
    return [c for _, c in close[:2]]


_CUTOFF = 0.65  # `adn` for `and` (0.67) is a slip; `od` for `of` (0.5) may be anything
_MARGIN = 0.1  # a candidate this much closer than the next is the one meant


def missing_colon(source: SourceFile, line_no: int) -> Diagnostic:
    """E011 at the end of a rule header that has no `:`."""
    text = source.line(line_no)
    code = text.split("#", 1)[0].rstrip()
    span = A.Span(line_no, len(code) + 1, line_no, len(code) + 2)
    return Diagnostic(
        source.path, A.Span(line_no, 1, line_no, len(code) + 1), "E011", Severity.ERROR,
        "a rule header ends with ':' (`rule NAME on SYMBOL:`), then its clauses on indented "
        "lines",
        (Edit(A.Span(span.line, span.column, span.line, span.column), ":"),),
    )


def unindented_clauses(
    source: SourceFile, header_line: int, is_header: Callable[[str], bool]
) -> Diagnostic | None:
    """E015 once for the clause lines written in column 1 under a `rule NAME:` header, with
    the fix that indents them; None when the next line is not a clause."""
    lines: list[int] = []
    number = header_line + 1
    while True:
        text = source.line(number)
        if not text.strip() or text[:1] in (" ", "\t") or is_header(text):
            break
        first = _WORD.match(text)
        word = text.split()[0] if first is None else first.group(0)
        if word.lower() not in CLAUSE_WORDS and not text.lower().startswith("stop-loss"):
            break
        code = text.split("#", 1)[0].split('"', 1)[0].lower()
        if len(set(re.findall(r"[a-z-]+", code)) & _STARTERS) > 1:
            break  # a trigger and an action on one line: a one-liner, not a clause
        lines.append(number)
        number += 1
    if not lines:
        return None
    first_line, last_line = lines[0], lines[-1]
    which = f"line {first_line}" if first_line == last_line else f"lines {first_line}-{last_line}"
    name = _WORD.findall(source.line(header_line))
    rule = name[1] if len(name) > 1 else "the rule"
    edits = tuple(Edit(A.Span(n, 1, n, 1), "    ") for n in lines)
    return Diagnostic(
        source.path,
        A.Span(first_line, 1, last_line, len(source.line(last_line)) + 1),
        "E015",
        Severity.ERROR,
        f"the clauses of rule {rule} must be indented under its header: indent {which}",
        edits,
    )
