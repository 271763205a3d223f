"""No input makes lint crash: random and mutated rule text yields diagnostics, nothing else."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules_engine.compiler import Compiler, shipped_symbols
from rules_engine.dsl import KEYWORDS, SourceFile, format_github, format_json, format_text

ROOT = Path(__file__).resolve().parent.parent
CORPUS = [p.read_text() for p in sorted((ROOT / "examples").glob("*.rules"))]
WORDS = [
    *sorted(KEYWORDS),
    *["post-only", "trailing-stop", "stop-loss", "UTC", "BTC-USDT", "ETH-USDT", "1INCH-USDT"],
    *["bid", "ask", "last", "spread", "mid", "sma(200, 1h)", "rsi(14, 1h)", "bid_depth(0.5%)"],
    *["fill_price", "filled_size", "USDT", "60000", "0.01", "2%", "10m", "08:00"],
    *["2026-06-30T12:00Z", '"text"', "<", "<=", ">", "==", "+", "-", "*", "/", "(", ")"],
    *[",", ":", "#c", "\n", "\n    ", "  ", "\t", "\r\n", "\ufffd", "\u00e9", "\x00", '"', "%"],
    *["mon-fri", "x", "Z"],
]


def check(text: str) -> None:
    source = SourceFile("fuzz.rules", text)
    program = Compiler(shipped_symbols()).compile([source])
    lines = max(len(text.splitlines()), 1)
    for d in program.diagnostics:
        assert d.code[0] in "EWN" and d.code[1:].isdigit(), d
        assert 1 <= d.span.line <= lines + 1, d
        assert d.span.column >= 1, d
        assert d.message
    format_text(program.diagnostics, {source.path: source})
    format_json(program.diagnostics)
    format_github(program.diagnostics)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(WORDS), max_size=40).map(" ".join))
def test_random_token_soup_only_yields_diagnostics(text: str) -> None:
    check(text)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_random_unicode_only_yields_diagnostics(text: str) -> None:
    check(text)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(CORPUS))
    for _ in range(draw(st.integers(1, 6))):
        if not text:
            break
        start = draw(st.integers(0, len(text) - 1))
        end = draw(st.integers(start, min(len(text), start + 12)))
        op = draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        piece = draw(st.sampled_from(WORDS))
        if op == "delete":
            text = text[:start] + text[end:]
        elif op == "insert":
            text = text[:start] + piece + text[start:]
        elif op == "replace":
            text = text[:start] + piece + text[end:]
        else:
            text = text[:end] + text[start:end] + text[end:]
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_examples_only_yield_diagnostics(text: str) -> None:
    check(text)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_yield_diagnostics(data: bytes) -> None:
    source = SourceFile.from_bytes("bytes.rules", data)
    Compiler(shipped_symbols()).compile([source])
