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
from typing import Any

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


def best_rate(label: str, fn: Callable[[], object], count: int, repeats: int = REPEATS,
              say: Callable[[str], None] = print) -> float:
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    rate = count / min(times)
    say(
        f"  {label:<38} {rate:>10,.0f} rules/s  (best of {repeats}, median "
        f"{count / statistics.median(times):,.0f})"
    )
    return rate


def measure(rules: int = RULES, *, repeats: int = REPEATS, lark_defaults: bool = True,
            say: Callable[[str], None] = print) -> dict[str, Any]:
    """The lint figures (rules/s, best of `repeats`): lex alone, parse alone, the full lint,
    the reload of an unchanged file, and (`lark_defaults`) Lark's default parser; `say`
    receives each figure's line as it is measured."""
    text = generate(rules)
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
        assert len(program.rules) == rules, program.diagnostics[:3]

    def rate(label: str, fn: Callable[[], object]) -> float:
        return best_rate(label, fn, rules, repeats, say)

    say(f"lint benchmark: {rules:,} one-line rules, Python {sys.version.split()[0]}")
    defaults_rate: float | None = None
    if lark_defaults:
        defaults = Lark(grammar_text(), parser="lalr", maybe_placeholders=False)
        defaults_rate = rate("Lark defaults (parse tree only)", lambda: defaults.parse(text))
    lex_rate = rate("lex alone", lex)
    parse_rate = rate("parse alone (same parser, AST built)", parse_only)
    full_rate = rate("full lint (parse + compile + checks)", full)
    compiler = Compiler(symbols)
    compiler.compile([source])
    parses_before = compiler.parses
    reload_rate = rate("reload of the unchanged file", lambda: compiler.compile([source]))
    return {
        "rules": rules, "repeats": repeats,
        "lint_rules_per_s": full_rate, "parse_rules_per_s": parse_rate,
        "lex_rules_per_s": lex_rate, "lark_defaults_rules_per_s": defaults_rate,
        "ratio_full_to_parse": full_rate / parse_rate, "reload_rules_per_s": reload_rate,
        "reload_parses": compiler.parses - parses_before,
    }


def main() -> int:
    r = measure()
    full_rate, ratio = r["lint_rules_per_s"], r["ratio_full_to_parse"]
    print(f"  ratio full / parse alone: {ratio:.2f}  (goal >= 0.60)")
    print(f"  goal >= 6,000 rules/s: {'met' if full_rate >= 6000 else 'MISSED'}")
    print(f"  reload parsed {r['reload_parses']} file(s) (goal 0)")
    print(
        json.dumps(
            {
                "lint_rules_per_s": round(full_rate),
                "parse_rules_per_s": round(r["parse_rules_per_s"]),
                "lex_rules_per_s": round(r["lex_rules_per_s"]),
                "lark_defaults_rules_per_s": round(r["lark_defaults_rules_per_s"]),
                "ratio_full_to_parse": round(ratio, 3),
                "reload_rules_per_s": round(r["reload_rules_per_s"]),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
