"""Compile every file a watcher loads together: per-rule compile plus cross-rule checks.

`Compiler` keeps, per file path, the hash of the bytes it last parsed and the result, so a
reload of an unchanged file does no parsing (only the cheap cross-rule checks run again).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rules_engine.compiler import _model as M
from rules_engine.compiler._base import _did_you_mean
from rules_engine.compiler._brackets import bracket_notes
from rules_engine.compiler._compile import MarketSnapshot, RuleCompiler
from rules_engine.compiler._protection import protection_problems
from rules_engine.compiler._safety import SafetyLimits, check_file
from rules_engine.compiler._snapshot import shipped_symbols
from rules_engine.compiler._templates import names as template_names
from rules_engine.compiler._templates import pnl_chain
from rules_engine.core.symbols import SymbolTable
from rules_engine.dsl import Diagnostic, Severity, SourceFile, parse
from rules_engine.dsl._parser import gc_paused
from rules_engine.dsl.ast import After, CancelOrders, RuleNode, Span

__all__ = ["Compiler", "compile_sources"]


@dataclass(frozen=True, slots=True)
class _FileResult:
    digest: str
    nodes: tuple[RuleNode, ...]
    rules: tuple[M.CompiledRule, ...]
    diagnostics: tuple[Diagnostic, ...]
    broken_names: frozenset[str]


class Compiler:
    """Compiles sets of rule files; remembers unchanged files between calls."""

    def __init__(
        self,
        symbols: SymbolTable,
        market: MarketSnapshot | None = None,
        limits: SafetyLimits | None = None,
        signals: frozenset[str] | None = None,
    ) -> None:
        self.symbols = symbols
        self.market = market
        self.limits = limits or SafetyLimits()
        self.signals = signals  # configured signal names (W112); None: unknown, not checked
        joined: dict[str, str | None] = {}
        for symbol in symbols:  # BTCUSDT -> BTC-USDT, for E014; ambiguous spellings dropped
            key = symbol.replace("-", "")
            joined[key] = None if key in joined else symbol
        self._joined = {k: v for k, v in joined.items() if v is not None}
        self._files: dict[str, _FileResult] = {}
        self.parses = 0  # how many files were actually parsed (reloads of unchanged files: 0)

    def _file(self, source: SourceFile) -> _FileResult:
        digest = hashlib.sha256(source.text.encode("utf-8", "surrogatepass")).hexdigest()
        cached = self._files.get(source.path)
        if cached is not None and cached.digest == digest:
            return cached
        self.parses += 1
        parsed = parse(source, self._joined)
        compiler = RuleCompiler(source, self.symbols, self.market, self.signals)
        rules = []
        pairs = []
        with gc_paused():  # everything built here survives: a collection would find nothing
            for node in parsed.rules:
                rule = compiler.compile(node)
                if rule is not None:
                    rules.append(rule)
                    pairs.append((node, rule))
            safety = check_file(source, pairs, self.symbols, self.market, self.limits)
            safety += bracket_notes(source, pairs)
        result = _FileResult(
            digest,
            tuple(parsed.rules),
            tuple(rules),
            tuple(parsed.diagnostics) + tuple(compiler.diagnostics) + tuple(safety),
            parsed.broken_names,
        )
        self._files[source.path] = result
        return result

    def compile(self, sources: Sequence[SourceFile]) -> M.CompiledProgram:
        results = [(s, self._file(s)) for s in sources]
        diagnostics: list[Diagnostic] = []
        for _, result in results:
            diagnostics.extend(result.diagnostics)
        diagnostics.extend(_cross_rule_checks(results))
        rejected = {d.path for d in diagnostics if d.is_error}
        # A file with an error is rejected whole: a watcher never runs half a file.
        rules = tuple(
            rule
            for source, result in results
            if source.path not in rejected
            for rule in result.rules
        )
        diagnostics.sort(key=Diagnostic.sort_key)
        return M.CompiledProgram(rules, tuple(diagnostics))


def _cross_rule_checks(results: Iterable[tuple[SourceFile, _FileResult]]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    seen: dict[str, tuple[str, Span]] = {}
    names: set[str] = set()
    broken: set[str] = set()
    places: dict[str, bool] = {}
    parents: dict[str, tuple[str, str, Span]] = {}  # child -> (parent, path, span)
    cancels: list[tuple[str, CancelOrders]] = []
    for source, result in results:
        broken |= result.broken_names
        for node in result.nodes:
            if node.name is not None:
                names.add(node.name.text)
            for clause in node.clauses:
                if isinstance(clause, CancelOrders):
                    cancels.append((source.path, clause))
        # Named rules count even when they failed to compile: the name is still taken.
        identities = [(n.name.text, n.name.span) for n in result.nodes if n.name is not None]
        identities += [(r.identity, r.span) for r in result.rules if r.name is None]
        for identity, span in identities:
            first = seen.get(identity)
            if first is not None:
                what = (
                    f"rule {identity!r}"
                    if not identity.startswith("rule-")
                    else ("an identical unnamed rule")
                )
                out.append(
                    Diagnostic(
                        source.path,
                        span,
                        "E401",
                        Severity.ERROR,
                        f"{what} is already defined at {first[0]}:{first[1].line}: rule identities "
                        "must be unique across every file loaded together; rename one",
                    )
                )
            else:
                seen[identity] = (source.path, span)
        for rule in result.rules:
            places[rule.identity] = rule.order is not None
        for node in result.nodes:
            for clause in node.clauses:
                if isinstance(clause, After):
                    child = node.name.text if node.name else f"line {node.span.line}"
                    parents[child] = (clause.rule.text, source.path, clause.rule.span)
    known = names | broken
    for parent, path, span in parents.values():
        if parent not in known:
            hint = _did_you_mean(parent, names)
            out.append(
                Diagnostic(
                    path,
                    span,
                    "E402",
                    Severity.ERROR,
                    f"`after` names an unknown rule {parent!r}{hint}",
                )
            )
    for path, clause in cancels:
        if clause.rule.text not in known:
            hint = _did_you_mean(clause.rule.text, names)
            out.append(
                Diagnostic(
                    path,
                    clause.rule.span,
                    "E407",
                    Severity.ERROR,
                    f"`cancel orders of` names an unknown rule {clause.rule.text!r}{hint}",
                )
            )
    for source, result in results:
        for rule in result.rules:
            if rule.after and rule.after[1] in ("filled", "canceled"):
                parent = rule.after[0]
                if parent in places and not places[parent]:
                    out.append(
                        Diagnostic(
                            source.path,
                            rule.span,
                            "E411",
                            Severity.ERROR,
                            f"`after {parent} {rule.after[1]}` can never happen: {parent} places "
                            "no order",
                        )
                    )
    by_identity = {r.identity: r for _, result in results for r in result.rules}
    for source, result in results:
        for rule in result.rules:
            if rule.after is None or rule.after[1] != "filled":
                continue  # without `after R filled`, {pnl} was reported by the rule's compile
            if not any(isinstance(a, M.NotifyAction) and "pnl" in template_names(a.text)
                       for a in rule.actions):
                continue
            chain = pnl_chain(rule, by_identity)
            if isinstance(chain, str):
                out.append(Diagnostic(
                    source.path, rule.span, "E609", Severity.ERROR,
                    f"{{pnl}} needs a chain ENTRY -> EXIT -> this rule (`after EXIT filled`, "
                    f"EXIT `after ENTRY filled`, on opposite sides): {rule.identity} {chain}"))
    out.extend(protection_problems(
        ((source.path, rule) for source, result in results for rule in result.rules),
        by_identity))
    # cycles of `after`
    reported: set[str] = set()
    for start in parents:
        path_seen: list[str] = []
        current = start
        while current in parents and current not in path_seen:
            path_seen.append(current)
            current = parents[current][0]
        if current in path_seen:
            cycle = path_seen[path_seen.index(current) :]
            key = min(cycle)
            if key in reported:
                continue
            reported.add(key)
            _, path, span = parents[key]
            chain = " -> ".join([*cycle[cycle.index(key) :], *cycle[: cycle.index(key)], key])
            out.append(
                Diagnostic(
                    path,
                    span,
                    "E403",
                    Severity.ERROR,
                    f"`after` chains form a cycle ({chain}): no rule in it can ever be armed",
                )
            )
    return out


def compile_sources(
    sources: Sequence[SourceFile],
    symbols: SymbolTable | None = None,
    market: MarketSnapshot | None = None,
    limits: SafetyLimits | None = None,
    signals: frozenset[str] | None = None,
) -> M.CompiledProgram:
    """Parse, compile and check `sources` together (the shipped symbols snapshot by default)."""
    if symbols is None:
        symbols = shipped_symbols()
    return Compiler(symbols, market, limits, signals).compile(sources)
