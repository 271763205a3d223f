"""Core value types shared by every layer: pure data, no IO."""

from rules_engine.core.symbols import SymbolInfo, SymbolTable

__all__ = ["SymbolInfo", "SymbolTable"]
