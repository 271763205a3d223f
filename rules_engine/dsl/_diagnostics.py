"""Diagnostics are values: every check returns them, one run reports them all.

A diagnostic has a stable code (documented in docs/diagnostics.md with a bad example and the
fix), a severity, a message that names the problem and, where there is one, the fix, and a
1-based span (`end_column` is exclusive, as in most editors' ranges).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from rules_engine.dsl._source import SourceFile
from rules_engine.dsl.ast import Span

__all__ = ["Diagnostic", "Edit", "Severity", "format_github", "format_json", "format_text"]


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


class Edit(NamedTuple):
    """Replace the text of `span` (on one line; empty to insert) with `text`."""

    span: Span
    text: str


class Diagnostic(NamedTuple):
    path: str
    span: Span
    code: str
    severity: Severity
    message: str
    fix: tuple[Edit, ...] = ()  # a certain fix (`rules-engine lint --fix`), or none

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.path, self.span.line, self.span.column, self.code)

    def as_dict(self) -> dict[str, object]:
        found: dict[str, object] = {
            "path": self.path,
            "line": self.span.line,
            "column": self.span.column,
            "end_line": self.span.end_line,
            "end_column": self.span.end_column,
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
        }
        if self.fix:
            found["fix"] = [
                {"line": e.span.line, "column": e.span.column, "end_column": e.span.end_column,
                 "text": e.text}
                for e in self.fix
            ]
        return found


def _caret(source: SourceFile | None, diag: Diagnostic) -> list[str]:
    if source is None:
        return []
    text = source.line(diag.span.line)
    if not text.strip():
        return []
    text = text.expandtabs(1)
    start = max(diag.span.column - 1, 0)
    if diag.span.end_line == diag.span.line:
        width = max(diag.span.end_column - diag.span.column, 1)
    else:
        width = max(len(text) - start, 1)
    width = min(width, max(len(text) - start, 1))
    return [f"    {text}", "    " + " " * start + "^" + "~" * (width - 1)]


def format_text(diags: Sequence[Diagnostic], sources: dict[str, SourceFile]) -> str:
    """`path:line:col: CODE message`, then the source line and a caret under the span."""
    out: list[str] = []
    for diag in diags:
        sev = "" if diag.severity is Severity.ERROR else f"{diag.severity.value}: "
        out.append(
            f"{diag.path}:{diag.span.line}:{diag.span.column}: {diag.code} {sev}{diag.message}"
        )
        out.extend(_caret(sources.get(diag.path), diag))
    return "\n".join(out)


def format_json(diags: Iterable[Diagnostic]) -> str:
    return json.dumps([d.as_dict() for d in diags], indent=2)


def _escape_github(value: str, *, prop: bool) -> str:
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        value = value.replace(":", "%3A").replace(",", "%2C")
    return value


def format_github(diags: Iterable[Diagnostic]) -> str:
    """GitHub Actions workflow commands: `::error file=...,line=...::message`."""
    out = []
    for d in diags:
        kind = {"error": "error", "warning": "warning", "note": "notice"}[d.severity.value]
        props = ",".join(
            f"{k}={_escape_github(str(v), prop=True)}"
            for k, v in (
                ("file", d.path),
                ("line", d.span.line),
                ("col", d.span.column),
                ("endLine", d.span.end_line),
                ("endColumn", d.span.end_column),
                ("title", d.code),
            )
        )
        out.append(f"::{kind} {props}::{_escape_github(f'{d.code} {d.message}', prop=False)}")
    return "\n".join(out)
