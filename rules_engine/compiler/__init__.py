"""AST -> compiled rules with stable identities, and every semantic check. Pure."""

from rules_engine.compiler import _model as model
from rules_engine.compiler._compile import MarketSnapshot, RuleCompiler, compile_rule
from rules_engine.compiler._model import CompiledProgram, CompiledRule
from rules_engine.compiler._program import Compiler, compile_sources
from rules_engine.compiler._safety import SafetyLimits
from rules_engine.compiler._snapshot import shipped_symbols

__all__ = [
    "CompiledProgram",
    "CompiledRule",
    "Compiler",
    "MarketSnapshot",
    "RuleCompiler",
    "SafetyLimits",
    "compile_rule",
    "compile_sources",
    "model",
    "shipped_symbols",
]
