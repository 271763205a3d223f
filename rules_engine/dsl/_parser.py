"""Rule text -> syntax tree, with syntax errors turned into diagnostics.

The Lark parser is built once per process (and its tables cached on disk by Lark), and the
tree is built by an inline transformer while parsing, with spans taken from tokens. A syntax
error does not stop the file: parsing restarts on the next line, so one run reports every
broken line. Semantic checks never run here (see rules_engine.compiler).
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from rules_engine.dsl import ast as A
from rules_engine.dsl._diagnostics import Diagnostic, Severity
from rules_engine.dsl._hints import lookalikes, missing_colon, token_hint, unindented_clauses
from rules_engine.dsl._lexer import FastLexer
from rules_engine.dsl._source import REPLACEMENT, SourceFile

__all__ = [
    "KEYWORDS",
    "ParseResult",
    "gc_paused",
    "grammar_path",
    "grammar_text",
    "make_lark",
    "parse",
]

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
    ]
)

_HEADER_RE = re.compile(r"^rule[ \t]+([a-z_][a-z0-9_]*)", re.MULTILINE)


def grammar_path() -> Path:
    """The grammar shipped in the wheel, or the repository's own when installed editable."""
    shipped = resources.files("rules_engine").joinpath("grammar", "rules.lark")
    if shipped.is_file():
        return Path(str(shipped))
    return Path(__file__).resolve().parents[2] / "grammar" / "rules.lark"


def grammar_text() -> str:
    return grammar_path().read_text(encoding="utf-8")


def _span(tok: Token) -> A.Span:
    return A.Span(tok.line or 1, tok.column or 1, tok.end_line or 1, tok.end_column or 1)


def _word(tok: Token) -> A.Word:
    return A.Word(tok.value, _span(tok))


class _AstBuilder:
    """Builds syntax-tree nodes while the LALR parser reduces (no intermediate parse tree).

    Each method is named after a grammar rule (or its `-> alias`) and receives the rule's kept
    children: named tokens and the values of sub-rules (see `_install_callbacks`).
    """

    # ---- atoms
    def number(self, tok: Token) -> A.Num:
        return A.Num(tok.value, _span(tok))

    def percent(self, tok: Token) -> A.Pct:
        return A.Pct(tok.value[:-1], _span(tok))

    def duration(self, tok: Token) -> A.Dur:
        return A.Dur(tok.value, _span(tok))

    def bare_field(self, name: Token) -> A.FieldRef:
        span = _span(name)
        return A.FieldRef(None, name.value, span, span, None)

    def symbol_field(self, sym: Token, name: Token) -> A.FieldRef:
        ssp = _span(sym)
        nsp = _span(name)
        return A.FieldRef(sym.value, name.value, ssp.to(nsp), nsp, ssp)

    def call(self, name: Token, *args: Any) -> A.Call:
        nsp = _span(name)
        return A.Call(None, name.value, _args(args), nsp, nsp, None)

    def symbol_call(self, sym: Token, name: Token, *args: Any) -> A.Call:
        ssp = _span(sym)
        return A.Call(sym.value, name.value, _args(args), ssp, _span(name), ssp)

    # ---- operators
    def neg(self, minus: Token, operand: A.Expr) -> A.Neg:
        return A.Neg(operand, _span(minus).to(operand.span))

    def binary(self, left: A.Expr, op: Token, right: A.Expr) -> A.Bin:
        return A.Bin(op.value, left, right, left.span.to(right.span), _span(op))

    def compare(self, left: A.Expr, op: Token, right: A.Expr) -> A.Cmp:
        return A.Cmp(op.value, left, right, left.span.to(right.span), _span(op))

    def crosses(self, left: A.Expr, direction: Token, right: A.Expr) -> A.Cross:
        return A.Cross(direction.value, left, right, left.span.to(right.span))

    def between(self, operand: A.Expr, low: A.Expr, high: A.Expr) -> A.Between:
        return A.Between(operand, low, high, operand.span.to(high.span))

    def and_(self, left: A.Expr, right: A.Expr) -> A.BoolOp:
        return A.BoolOp("and", left, right, left.span.to(right.span))

    def or_(self, left: A.Expr, right: A.Expr) -> A.BoolOp:
        return A.BoolOp("or", left, right, left.span.to(right.span))

    def not_(self, kw: Token, operand: A.Expr) -> A.Not:
        return A.Not(operand, _span(kw).to(operand.span))

    def signal(self, kw: Token, name: Token, window: A.Dur | None = None) -> A.SignalRef:
        raw = name.value[1:-1]
        text = re.sub(r"\\(.)", r"\1", raw)
        end = window.span if window is not None else _span(name)
        return A.SignalRef(text, window, _span(kw).to(end), _span(name))

    def within(self, tok: Token) -> A.Dur:
        return A.Dur(tok.value, _span(tok))

    # ---- keyword groups (`!rule`s keep their single token)
    def order_type(self, tok: Token) -> Token:
        return tok

    side = option = event = direction = order_type

    # ---- clauses
    def when(self, cond: A.Expr, for_dur: A.Dur | None = None) -> A.When:
        end = for_dur.span if for_dur is not None else cond.span
        return A.When(cond, for_dur, cond.span.to(end))

    def for_duration(self, tok: Token) -> A.Dur:
        return A.Dur(tok.value, _span(tok))

    def size_base(self, amount: A.Expr) -> A.Size:
        return A.Size("base", amount, None, amount.span)

    def size_funds(self, amount: A.Expr, cur: Token) -> A.Size:
        return A.Size("funds", amount, _word(cur), amount.span.to(_span(cur)))

    def size_share(self, amount: A.Expr, cur: Token) -> A.Size:
        return A.Size("share", amount, _word(cur), amount.span.to(_span(cur)))

    def price(self, expr: A.Expr) -> tuple[str, A.Expr]:
        return ("at", expr)

    def limit_price(self, expr: A.Expr) -> tuple[str, A.Expr]:
        return ("limit", expr)

    def trail(self, expr: A.Expr) -> tuple[str, A.Expr]:
        return ("by", expr)

    def place(self, order_type: Token, side: Token, size: A.Size, *rest: Any) -> A.Place:
        price: A.Expr | None = None
        limit: A.Expr | None = None
        trail: A.Expr | None = None
        options: list[A.Word] = []
        end = size.span
        for item in rest:
            if not isinstance(item, tuple):  # a token (an option)
                options.append(_word(item))
                end = options[-1].span
            elif item[0] == "at":
                price = item[1]
                end = item[1].span
            elif item[0] == "limit":
                limit = item[1]
                end = item[1].span
            else:
                trail = item[1]
                end = item[1].span
        otype = _word(order_type)
        return A.Place(otype, _word(side), size, price, trail, tuple(options), otype.span.to(end),
                       limit)

    def stop_loss(self, kw: Token, price: A.Expr) -> A.StopLoss:
        return A.StopLoss(price, _span(kw).to(price.span))

    def cancel_after(self, dur: Token) -> A.CancelAfter:
        d = A.Dur(dur.value, _span(dur))
        return A.CancelAfter(d, d.span)

    def cancel_all(self, kw: Token, all_: Token) -> A.CancelAll:
        return A.CancelAll(_span(kw).to(_span(all_)))

    def cancel_orders(self, name: Token) -> A.CancelOrders:
        w = _word(name)
        return A.CancelOrders(w, w.span)

    def notify(self, tok: Token) -> A.Notify:
        raw = tok.value[1:-1]
        text = re.sub(r"\\(.)", r"\1", raw)
        return A.Notify(text, _span(tok))

    def once(self, kw: Token) -> A.Once:
        return A.Once(_span(kw))

    def repeat(self, every: Token, max_count: A.Num | None = None) -> A.Repeat:
        d = A.Dur(every.value, _span(every))
        return A.Repeat(d, max_count, d.span.to(max_count.span if max_count else d.span))

    def repeat_max(self, tok: Token) -> A.Num:
        return A.Num(tok.value, _span(tok))

    def expires_in(self, dur: Token) -> A.ExpiresIn:
        d = A.Dur(dur.value, _span(dur))
        return A.ExpiresIn(d, d.span)

    def expires_at(self, tok: Token) -> A.ExpiresAt:
        w = _word(tok)
        return A.ExpiresAt(w, w.span)

    def after(self, name: Token, event: Token) -> A.After:
        rule, ev = _word(name), _word(event)
        return A.After(rule, ev, rule.span.to(ev.span))

    def days(self, first: Token, _minus: Token | None = None, last: Token | None = None) -> Any:
        return (_word(first), _word(last) if last is not None else None)

    def zone(self, tok: Token) -> A.Word:
        return _word(tok)

    def during(self, start: Token, _minus: Token, end: Token, zone: A.Word,
               days: Any = None) -> A.During:
        first, last = days if days is not None else (None, None)
        s, e = _word(start), _word(end)
        tail = (last or first or zone).span
        return A.During(s, e, first, last, s.span.to(tail), zone)

    def every_interval(self, every: Token, max_count: A.Num | None = None) -> A.Every:
        d = A.Dur(every.value, _span(every))
        end = max_count.span if max_count is not None else d.span
        return A.Every(d, None, None, None, None, max_count, d.span.to(end))

    def every_at(self, first: Token, *rest: Any) -> A.Every:
        """`every NAME [- NAME] at TIME [zone] [max N]`: children after the first name are
        `MINUS NAME`, TIME, the zone's word and the max's number, as given."""
        last: A.Word | None = None
        time: A.Word | None = None
        zone: A.Word | None = None
        max_count: A.Num | None = None
        items = list(rest)
        if items and isinstance(items[0], Token) and items[0].type == "MINUS":
            last = _word(items[1])
            items = items[2:]
        for item in items:
            if isinstance(item, A.Num):
                max_count = item
            elif isinstance(item, A.Word):
                zone = item
            else:
                time = _word(item)
        assert time is not None  # the grammar requires it
        head = _word(first)
        end = (max_count or zone or time).span
        return A.Every(None, head, last, time, zone, max_count, head.span.to(end))

    # ---- rules
    def on_symbol(self, tok: Token) -> A.Word:
        return _word(tok)

    def one_liner(self, *clauses: Any) -> A.RuleNode:
        span = clauses[0].span.to(clauses[-1].span)
        return A.RuleNode(None, None, tuple(clauses), span, "")

    def named_rule(self, name: Token, *rest: Any) -> A.RuleNode:
        on: A.Word | None = None
        clauses = list(rest)
        if clauses and isinstance(clauses[0], A.Word):
            on = clauses.pop(0)
        w = _word(name)
        end = clauses[-1].span if clauses else w.span
        return A.RuleNode(w, on, tuple(clauses), w.span.to(end), "")

    def start(self, *items: A.RuleNode) -> list[A.RuleNode]:
        return list(items)


def _args(args: tuple[Any, ...]) -> tuple[A.Expr, ...]:
    return tuple(a for a in args if a is not None)


_LARK: Lark | None = None


class _Splice(list[Any]):
    """The children of an inlined `_rule`, spliced into its parent's children."""


def _install_callbacks(lark: Lark, builder: _AstBuilder) -> None:
    """Replace Lark's generic tree-building callbacks with direct calls into `builder`.

    Lark's parse-tree builder wraps every reduction in several generic layers (filtering,
    inlining, placeholders, transformer dispatch); for this grammar a specialised closure per
    rule does the same job in one call: drop anonymous and `_`-named tokens, splice the
    children of inlined `_rules`, return the only child of a `?rule`, and call the builder.
    """
    driver = lark.parser.parser.parser  # Lark's LALR driver, built or loaded from the cache
    callbacks: dict[Any, Callable[[list[Any]], Any]] = {}
    for rule in driver.callbacks:
        keep_all = rule.options.keep_all_tokens
        keep = [
            i
            for i, sym in enumerate(rule.expansion)
            if not (sym.is_term and not keep_all and (sym.filter_out or sym.name.startswith("_")))
        ]
        splice = any(
            not rule.expansion[i].is_term and rule.expansion[i].name.startswith("_") for i in keep
        )
        name = rule.alias or rule.origin.name
        inline = rule.origin.name.startswith("_")
        expand1 = bool(rule.options.expand1) and not rule.alias  # an alias is always built
        method = getattr(builder, str(name), None)
        callbacks[rule] = _make_callback(
            keep,
            size=len(rule.expansion),
            splice=splice,
            inline=inline,
            expand1=expand1,
            method=method,
            name=str(name),
        )
    driver.callbacks = callbacks  # read afresh by every parse


def _make_callback(
    keep: list[int],
    *,
    size: int,
    splice: bool,
    inline: bool,
    expand1: bool,
    method: Callable[..., Any] | None,
    name: str,
) -> Callable[[list[Any]], Any]:
    every = keep == list(range(size))

    def children(s: list[Any]) -> list[Any]:
        kept = s if every else [s[i] for i in keep]
        if not splice:
            return kept
        # A left-recursive repetition hands back its own growing list first: extend it in
        # place (it is referenced only from the parser's stack) instead of copying it.
        out: list[Any] = kept[0] if type(kept[0]) is _Splice else [kept[0]]
        for child in kept[1:]:
            if type(child) is _Splice:
                out.extend(child)
            else:
                out.append(child)
        return out

    if inline:

        def spliced(s: list[Any]) -> _Splice:
            kept = children(s)
            return kept if type(kept) is _Splice else _Splice(kept)

        return spliced
    if method is None:
        if not expand1:
            raise LookupError(f"the grammar rule {name!r} has no builder method")
        return lambda s: children(s)[0]
    call = method
    if expand1:

        def expand_or_call(s: list[Any]) -> Any:
            kept = children(s)
            return kept[0] if len(kept) == 1 else call(*kept)

        return expand_or_call
    if every and not splice:
        return lambda s: call(*s)
    return lambda s: call(*children(s))


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


def _parser() -> Lark:
    global _LARK  # noqa: PLW0603 - the one parser of the process, built on first use
    if _LARK is None:
        _LARK = make_lark()
    return _LARK


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


_PLACEHOLDER = "_recovered_"


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
    lower_symbol = _LOWER_SYMBOL.search(source.line(span.line))
    if lower_symbol:
        hint = f" (symbols are upper case: {lower_symbol.group(0).upper()})"
    return Diagnostic(
        source.path,
        span,
        "E002",
        Severity.ERROR,
        f"unexpected {_describe_token(tok)}{hint}: expected {_expected_text(expected)}",
    )


_LOWER_SYMBOL = re.compile(r"\b[a-z0-9]*[a-z][a-z0-9]*-[a-z][a-z0-9]*\b")


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
