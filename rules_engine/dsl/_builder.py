"""The syntax tree builder: one callback per grammar rule, installed into Lark's LALR parser."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from lark import Lark, Token

from rules_engine.dsl import ast as A


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

    def currency_call(self, name: Token, cur: Token) -> A.CurrencyCall:
        nsp = _span(name)
        return A.CurrencyCall(name.value, _word(cur), nsp.to(_span(cur)), nsp)

    def pnl_percent(self, tok: Token) -> A.FieldRef:
        span = _span(tok)
        return A.FieldRef(None, tok.value, span, span, None)

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

    side = option = event = direction = scaled = twap = order_type

    def iceberg(self, kw: Token, _visible: Token, amount: A.Expr) -> tuple[str, A.Expr, A.Span]:
        return ("iceberg", amount, _span(kw))

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

    def size_share_of(self, amount: A.Expr, name: Token) -> A.Size:
        return A.Size("share_of", amount, _word(name), amount.span.to(_span(name)))

    def size_risk(self, amount: A.Expr, cur: Token, stop: A.Expr) -> A.Size:
        return A.Size("risk", amount, _word(cur), amount.span.to(stop.span), stop)

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
        visible: A.Expr | None = None
        for item in rest:
            if not isinstance(item, tuple):  # a token (an option)
                options.append(_word(item))
                end = options[-1].span
            elif item[0] == "iceberg":  # `iceberg visible SIZE`: an option with its size
                options.append(A.Word("iceberg", item[2]))
                visible = item[1]
                end = item[1].span
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
                       limit, visible)

    def place_scaled(self, kind: Token, side: Token, size: A.Size, start: A.Expr,  # noqa: PLR0917 - the grammar's children
                     end: A.Expr, count: Token, *options: Any) -> A.Place:
        """`place scaled buy 0.05 from 59000 to 57000 in 5 [options]`."""
        place = self.place(kind, side, size, *options)
        number = A.Num(count.value, _span(count))
        last = place.span if options else A.Span(
            place.span.line, place.span.column, number.span.end_line, number.span.end_column)
        return place._replace(span=last, slicing=A.Slicing(start, end, number, None, None))

    def place_twap(self, kind: Token, side: Token, size: A.Size, over: Token,
                   every: Token, *rest: Any) -> A.Place:
        """`place twap buy 1 over 2h every 5m [limit PRICE] [options]`."""
        place = self.place(kind, side, size, *rest)
        every_d = A.Dur(every.value, _span(every))
        last = place.span if rest else A.Span(
            place.span.line, place.span.column, every_d.span.end_line, every_d.span.end_column)
        return place._replace(span=last, slicing=A.Slicing(
            None, None, None, A.Dur(over.value, _span(over)), every_d))

    def stop_loss(self, kw: Token, price: A.Expr, *rest: Any) -> A.StopLoss:
        limit: A.Expr | None = None
        where: A.Word | None = None
        end = price.span
        for item in rest:
            if isinstance(item, A.Word):
                where, end = item, item.span
            else:
                limit, end = item, item.span
        return A.StopLoss(price, _span(kw).to(end), limit, where)

    def stop_limit(self, expr: A.Expr) -> A.Expr:
        return expr

    def stop_place(self, name: Token) -> A.Word:
        return _word(name)

    def stop_loss_trailing(self, kw: Token, distance: A.Expr) -> A.TrailingStopLoss:
        return A.TrailingStopLoss(distance, _span(kw).to(distance.span))

    def move_stop(self, kw: Token, price: A.Expr, name: Token) -> A.MoveStop:
        rule = _word(name)
        return A.MoveStop(price, rule, _span(kw).to(rule.span))

    def exit_after(self, kw: Token, dur: Token) -> A.ExitAfter:
        d = A.Dur(dur.value, _span(dur))
        return A.ExitAfter(d, _span(kw).to(d.span))

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
