"""rules_engine: a declarative rule language and watcher for conditional orders on KuCoin spot.

The few names a user of the library needs; everything else lives in its layer's package
(`dsl`, `compiler`, `engine`, `adapters.kucoin`, `store`, `sandbox`).
"""

from rules_engine.compiler import CompiledProgram, CompiledRule, compile_sources
from rules_engine.dsl import Diagnostic, Severity, SourceFile

__all__ = [
    "CompiledProgram",
    "CompiledRule",
    "Diagnostic",
    "Severity",
    "SourceFile",
    "__version__",
    "compile_sources",
]

__version__ = "0.1.0"
