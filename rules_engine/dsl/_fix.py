"""Certain fixes (`rules-engine lint --fix`): the edits diagnostics carry, applied to text."""

from __future__ import annotations

from collections.abc import Iterable

from rules_engine.dsl._diagnostics import Diagnostic, Edit

__all__ = ["apply_fixes"]


def apply_fixes(text: str, diagnostics: Iterable[Diagnostic]) -> tuple[str, int]:
    """`text` with every fix of `diagnostics` applied, and how many diagnostics were fixed.

    Edits are on one line each; where two diagnostics' edits overlap, the later diagnostic's
    are left for the next round (the caller lints again and applies what is still certain)."""
    lines = text.split("\n")
    taken: dict[int, list[tuple[int, int]]] = {}
    chosen: list[Edit] = []
    fixed = 0
    for diag in diagnostics:
        if not diag.fix or not _free(diag.fix, taken, lines):
            continue
        fixed += 1
        for edit in diag.fix:
            taken.setdefault(edit.span.line, []).append((edit.span.column, edit.span.end_column))
            chosen.append(edit)
    for edit in sorted(chosen, key=lambda e: (e.span.line, e.span.column), reverse=True):
        line = lines[edit.span.line - 1]
        start, end = edit.span.column - 1, edit.span.end_column - 1
        lines[edit.span.line - 1] = line[:start] + edit.text + line[end:]
    return "\n".join(lines), fixed


def _free(
    edits: tuple[Edit, ...], taken: dict[int, list[tuple[int, int]]], lines: list[str]
) -> bool:
    for edit in edits:
        span = edit.span
        if span.end_line != span.line or not 1 <= span.line <= len(lines):
            return False
        if not 1 <= span.column <= span.end_column <= len(lines[span.line - 1]) + 1:
            return False
        for start, end in taken.get(span.line, []):
            # overlapping, or two inserts at one place: order unknown, leave it
            if (span.column < end and start < span.end_column) or span.column == start:
                return False
    return True
