"""Lint throughput: 10,000 generated one-line rules parsed, compiled and checked.

Prints rules/s for: lexing alone, parsing alone (the same Lark parser, grammar and options the
linter uses, building the syntax tree), and the full lint (parse + compile + every check), with
the ratio full / parse-alone. Goals (issue 2): full >= 6,000 rules/s, ratio >= 0.6. Also checks
that recompiling an unchanged file does no parsing. Run: python benchmarks/bench_lint.py
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal

from lark import Lark

from rules_engine.compiler import Compiler, shipped_symbols
from rules_engine.dsl import SourceFile
from rules_engine.dsl._parser import _parser, grammar_text

RULES = 10_000
REPEATS = 5


def generate(count: int, seed: int = 7) -> str:
    """One-liners over real symbols, with prices and sizes on each symbol's increments."""
    rng = random.Random(seed)
    table = shipped_symbols()
    usdt = sorted(s for s, i in table.items() if i.quote_currency == "USDT" and i.enable_trading)
    fields = ["bid", "ask", "last", "mid"]
    lines = []
    for n in range(count):
        sym = usdt[n % len(usdt)]
        info = table[sym]
        level = Decimal(rng.randint(100, 100000)) * info.price_increment * 10
        size = info.base_min_size * rng.randint(2, 50)
        size = (size // info.base_increment) * info.base_increment
        field = rng.choice(fields)
        op = rng.choice(["<", "<=", ">", ">="])
        side = "buy" if op in ("<", "<=") else "sell"
        kind = n % 4
        if kind == 0:
            lines.append(f"when {sym} {field} {op} {level} place limit {side} {size} at {level}")
        elif kind == 1:
            lines.append(
                f"when {sym} {field} {op} {level} place limit {side} {size} at {field} - 1%"
            )
        elif kind == 2:
            lines.append(f"when {sym} last crosses above {level} place market {side} {size}")
        else:
            lines.append(
                f"when {sym} {field} {op} {level} and {sym} spread < 0.5% "
                f"place limit {side} {size} at {level} post-only"
            )
    return "\n".join(lines) + "\n"


def best_rate(label: str, fn: Callable[[], object], count: int) -> float:
    times = []
    for _ in range(REPEATS):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    rate = count / min(times)
    print(
        f"  {label:<38} {rate:>10,.0f} rules/s  (best of {REPEATS}, median "
        f"{count / statistics.median(times):,.0f})"
    )
    return rate


def main() -> int:
    text = generate(RULES)
    source = SourceFile("bench.rules", text)
    parser = _parser()
    symbols = shipped_symbols()

    def lex() -> None:
        for _ in parser.lex(text):
            pass

    def parse_only() -> None:
        gc.disable()
        try:
            parser.parse(text)
        finally:
            gc.enable()

    def full() -> None:
        program = Compiler(symbols).compile([source])
        assert len(program.rules) == RULES, program.diagnostics[:3]

    defaults = Lark(grammar_text(), parser="lalr", maybe_placeholders=False)

    def lark_defaults() -> None:
        defaults.parse(text)

    print(f"lint benchmark: {RULES:,} one-line rules, Python {sys.version.split()[0]}")
    defaults_rate = best_rate("Lark defaults (parse tree only)", lark_defaults, RULES)
    lex_rate = best_rate("lex alone", lex, RULES)
    parse_rate = best_rate("parse alone (same parser, AST built)", parse_only, RULES)
    full_rate = best_rate("full lint (parse + compile + checks)", full, RULES)
    compiler = Compiler(symbols)
    compiler.compile([source])
    parses_before = compiler.parses
    reload_rate = best_rate(
        "reload of the unchanged file", lambda: compiler.compile([source]), RULES
    )
    ratio = full_rate / parse_rate
    print(f"  ratio full / parse alone: {ratio:.2f}  (goal >= 0.60)")
    print(f"  goal >= 6,000 rules/s: {'met' if full_rate >= 6000 else 'MISSED'}")
    print(f"  reload parsed {compiler.parses - parses_before} file(s) (goal 0)")
    print(
        json.dumps(
            {
                "lint_rules_per_s": round(full_rate),
                "parse_rules_per_s": round(parse_rate),
                "lex_rules_per_s": round(lex_rate),
                "lark_defaults_rules_per_s": round(defaults_rate),
                "ratio_full_to_parse": round(ratio, 3),
                "reload_rules_per_s": round(reload_rate),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
