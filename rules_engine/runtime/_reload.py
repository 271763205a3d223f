"""The rule files a watcher runs, and hot reload: notice an edit, lint, apply what is clean.

`RuleFiles.load()` reads and compiles every file (a file with an error stops the start with
its diagnostics). `RuleFiles.changed()` looks for rule files new in the watched folders, and
compares each file's size and modification time with what was last read; when one differs,
`reload()` compiles the set again (the compiler parses only the files whose bytes changed) and
returns the rules to run: those of every clean file, and, for a file with errors, the version
that was running (a file is rejected whole; the running version stays), with the diagnostics
that rejected it. A file that cannot be read (deleted, say) keeps its running version too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rules_engine.compiler import CompiledRule, Compiler
from rules_engine.core.symbols import SymbolTable
from rules_engine.dsl import Diagnostic, Severity, SourceFile, format_text

__all__ = ["RULE_SUFFIXES", "Reloaded", "RuleFiles", "RulesRejected", "rule_files_in",
           "traded_symbols"]

RULE_SUFFIXES = (".rules",)


def rule_files_in(folder: Path) -> list[Path]:
    """Every rule file under `folder`, at any depth, in a stable order."""
    try:
        return sorted(p for p in folder.rglob("*") if p.suffix in RULE_SUFFIXES and p.is_file())
    except OSError:  # the folder went away: nothing new in it
        return []


class RulesRejected(Exception):
    def __init__(self, report: str) -> None:
        super().__init__("the rule files have errors")
        self.report = report


@dataclass(frozen=True)
class Reloaded:
    rules: tuple[CompiledRule, ...]
    sources: dict[str, str]  # identity -> the rule's text as written
    rejected: dict[str, str]  # path -> the diagnostics that rejected it (its old rules run)
    unreadable: dict[str, str]  # path -> why it could not be read (its old rules run)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def traded_symbols(rules: Iterable[CompiledRule]) -> list[str]:
    """Every symbol the rules read or trade, in a stable order."""
    found: dict[str, None] = {}
    for rule in rules:
        for symbol in sorted(rule.symbols):
            found.setdefault(symbol)
        if rule.order is not None:
            found.setdefault(rule.order.symbol)
    return list(found)


class RuleFiles:
    """The rule files a watcher runs: `paths`, and any that appear later in `folders` (the
    folders given to `run`, whose files at start are among `paths`). `venue_symbols`, when
    set, are all the symbols the venue carries (paper mode's local venue carries those of
    the rules it started with): a reloaded file whose rules need another is rejected."""

    def __init__(self, paths: Sequence[Path], symbols: SymbolTable,
                 folders: Sequence[Path] = (), *, signals: frozenset[str] | None = None) -> None:
        self.paths = list(paths)
        self.folders = tuple(folders)
        self.venue_symbols: frozenset[str] | None = None
        self.compiler = Compiler(symbols, signals=signals)  # W112 for signals not configured
        self._stamps: dict[Path, tuple[int, int] | None] = {}
        self.running: tuple[CompiledRule, ...] = ()
        self.texts: dict[str, str] = {}

    def _read(self) -> tuple[list[SourceFile], dict[str, str]]:
        sources, unreadable = [], {}
        for path in self.paths:
            self._stamps[path] = _stamp(path)
            try:
                sources.append(SourceFile.read(path, display=str(path)))
            except OSError as err:
                unreadable[str(path)] = err.strerror or str(err)
        return sources, unreadable

    def load(self) -> tuple[tuple[CompiledRule, ...], dict[str, str]]:
        sources, unreadable = self._read()
        if unreadable:
            path, why = next(iter(unreadable.items()))
            raise RulesRejected(f"cannot read {path}: {why}")
        program = self.compiler.compile(sources)
        errors = [d for d in program.diagnostics if d.severity is Severity.ERROR]
        if errors:
            raise RulesRejected(
                format_text(errors, {s.path: s for s in sources})
                + f"\n{len(errors)} error(s): nothing runs until `rules-engine lint` is clean"
            )
        self.running, self.texts = program.rules, _texts(program.rules, sources)
        return self.running, self.texts

    def changed(self) -> bool:
        return self._found_new() or any(
            _stamp(path) != stamp for path, stamp in self._stamps.items())

    def _found_new(self) -> bool:
        """Rule files new in a watched folder join the set (read at the next `reload`)."""
        known = set(self.paths)
        new = [p for folder in self.folders for p in rule_files_in(folder) if p not in known]
        self.paths.extend(dict.fromkeys(new))
        return bool(new)

    def reload(self) -> Reloaded:
        sources, unreadable = self._read()
        program = self.compiler.compile(sources)
        errors: dict[str, list[Diagnostic]] = {}
        for diagnostic in program.diagnostics:
            if diagnostic.severity is Severity.ERROR:
                errors.setdefault(diagnostic.path, []).append(diagnostic)
        by_path = {s.path: s for s in sources}
        rejected = {path: format_text(found, by_path) for path, found in errors.items()}
        for path, why in self._off_venue(program.rules).items():
            rejected.setdefault(path, why)
        kept_paths = set(rejected) | set(unreadable)
        clean = tuple(rule for rule in program.rules if rule.path not in rejected)
        rules = list(clean)
        identities = {rule.identity for rule in rules}
        for rule in self.running:  # a rejected or unreadable file: its running version stays
            if rule.path in kept_paths and rule.identity not in identities:
                rules.append(rule)
                identities.add(rule.identity)
        texts = _texts(clean, sources)
        for rule in rules:
            if rule.identity not in texts and rule.identity in self.texts:
                texts[rule.identity] = self.texts[rule.identity]
        self.running, self.texts = tuple(rules), texts
        return Reloaded(self.running, texts, rejected, unreadable)

    def _off_venue(self, rules: Iterable[CompiledRule]) -> dict[str, str]:
        """path -> why, for each file with a rule on a symbol the venue does not carry."""
        if self.venue_symbols is None:
            return {}
        out: dict[str, str] = {}
        for rule in rules:
            missing = [s for s in traded_symbols([rule]) if s not in self.venue_symbols]
            if missing and rule.path not in out:
                out[rule.path] = (
                    f"{rule.path}:{rule.span.line}: rule {rule.identity} needs "
                    f"{', '.join(missing)}, which the paper venue does not carry (it carries "
                    f"the symbols of the rules the watcher started with: "
                    f"{', '.join(sorted(self.venue_symbols))}); restart the watcher to add it")
        return out


def _texts(rules: tuple[CompiledRule, ...], sources: list[SourceFile]) -> dict[str, str]:
    """Each rule's lines as written in its file, by identity."""
    by_path = {source.path: source for source in sources}
    out: dict[str, str] = {}
    for rule in rules:
        source = by_path.get(rule.path)
        if source is not None:
            lines = range(rule.span.line, rule.span.end_line + 1)
            out[rule.identity] = "\n".join(source.line(n) for n in lines)
    return out
