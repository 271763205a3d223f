"""The rule language front end: text -> syntax tree (with spans) -> syntax diagnostics. Pure."""

from rules_engine.dsl import ast
from rules_engine.dsl._diagnostics import (
    Diagnostic,
    Edit,
    Severity,
    format_github,
    format_json,
    format_text,
)
from rules_engine.dsl._fix import apply_fixes
from rules_engine.dsl._parser import KEYWORDS, ParseResult, grammar_path, make_lark, parse
from rules_engine.dsl._source import SourceFile

__all__ = [
    "KEYWORDS",
    "Diagnostic",
    "Edit",
    "ParseResult",
    "Severity",
    "SourceFile",
    "apply_fixes",
    "ast",
    "format_github",
    "format_json",
    "format_text",
    "grammar_path",
    "make_lark",
    "parse",
]
