"""The symbols snapshot shipped with the package (derived from real KuCoin data, dated)."""

from __future__ import annotations

import functools
import json
from importlib import resources

from rules_engine.core.symbols import SymbolTable, parse_symbols_reply

__all__ = ["shipped_symbols"]


@functools.cache
def shipped_symbols() -> SymbolTable:
    data = resources.files("rules_engine").joinpath("data", "symbols_snapshot.json").read_bytes()
    return parse_symbols_reply(json.loads(data), source="the shipped snapshot")
