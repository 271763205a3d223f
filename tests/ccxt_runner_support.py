"""ccxt's own per-method tests and structure validators, run against the sandbox.

ccxt 4.5.90 ships its test runner under `ccxt/test` (`tests_sync.py`, `tests_async.py`) and the
per-method tests it calls (`ccxt/test/exchange/{sync,async}/test_<method>.py`,
`ccxt/pro/test/Exchange/test_<method>.py`), each of which calls the exchange method and checks
the result with ccxt's validators (`ccxt/test/exchange/base`). The runner itself is a command
line program that refuses to run from an installed package and reads keys from its own files,
so this module does what its `run_public_tests`/`run_private_tests`/`test_method` do for a spot
symbol: the same method lists, the same skip rules (a method ccxt's kucoin class does not have is
UNSUPPORTED, a method with no test file is UNIMPLEMENTED), and the same per-method test called
with no skipped properties, i.e. every validator on. Only the base URL (and the WebSocket
endpoint, which ccxt takes from the sandbox's bullet reply) points at the sandbox.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import ccxt

__all__ = ["PRIVATE", "PUBLIC", "WS_PRIVATE", "WS_PUBLIC", "arguments", "plan", "test_function"]

# The runner's lists for a spot symbol, with their arguments (tests_sync.py, run_public_tests
# and run_private_tests: S is the symbol, C the currency code, L the list of symbols;
# `fetchCurrencies` is in both for spot; createOrder runs under --fundedTests).
PUBLIC: dict[str, list[str]] = {
    "features": [], "afterConstruct": [], "fetchCurrencies": [], "fetchTicker": ["S"],
    "fetchTickers": ["S"], "fetchLastPrices": ["S"], "fetchOHLCV": ["S"], "fetchTrades": ["S"],
    "fetchOrderBook": ["S"], "fetchOrderBooks": [], "fetchBidsAsks": [], "fetchStatus": [],
    "fetchTime": [],
}
PRIVATE: dict[str, list[str]] = {
    "signIn": [], "fetchBalance": [], "fetchAccounts": [], "fetchTransactionFees": [],
    "fetchTradingFees": [], "fetchStatus": [], "fetchOrders": ["S"], "fetchOpenOrders": ["S"],
    "fetchClosedOrders": ["S"], "fetchMyTrades": ["S"], "fetchLeverageTiers": ["L"],
    "fetchLedger": ["C"], "fetchTransactions": ["C"], "fetchDeposits": ["C"],
    "fetchWithdrawals": ["C"], "fetchTransfers": ["C"], "fetchBorrowInterest": ["C", "S"],
    "cancelAllOrders": ["S"], "fetchCanceledOrders": ["S"], "fetchMarginModes": ["S"],
    "fetchPosition": ["S"], "fetchDeposit": ["C"], "createDepositAddress": ["C"],
    "fetchDepositAddress": ["C"], "fetchDepositAddresses": ["C"],
    "fetchDepositAddressesByNetwork": ["C"], "fetchBorrowRateHistory": ["C"],
    "fetchLedgerEntry": ["C"], "fetchCurrencies": [], "createOrder": ["S"],
}
WS_PUBLIC: dict[str, list[str]] = {
    "watchOHLCV": ["S"], "watchOHLCVForSymbols": ["S"], "watchTicker": ["S"],
    "watchTickers": ["S"], "watchBidsAsks": ["S"], "watchOrderBook": ["S"],
    "watchOrderBookForSymbols": ["L"], "watchTrades": ["S"], "watchTradesForSymbols": ["L"],
}
WS_PRIVATE: dict[str, list[str]] = {
    "watchBalance": ["C"], "watchMyTrades": ["S"], "watchOrders": ["S"], "watchPosition": ["S"],
    "watchPositions": ["S"],
}


def arguments(template: list[str], symbol: str, code: str) -> list[Any]:
    values = {"S": symbol, "C": code, "L": [symbol]}
    return [values[t] for t in template]


def _ccxt_dir() -> Path:
    return Path(ccxt.__file__).resolve().parent


def _snake(method: str) -> str:
    """ccxt's file name for a method: fetchOHLCV -> fetch_ohlcv, fetchL2OrderBook ->
    fetch_l2_order_book, watchOHLCVForSymbols -> watch_ohlcv_for_symbols."""
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", method)
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    return text.lower()


def _folder(kind: str) -> Path:
    if kind == "pro":
        return _ccxt_dir() / "pro" / "test" / "Exchange"
    return _ccxt_dir() / "test" / "exchange" / kind


def _load(path: Path) -> ModuleType:
    name = "ccxt_runner_" + path.parent.name + "_" + path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_function(method: str, kind: str) -> Callable[..., Any] | None:
    """ccxt's test for `method` (kind: sync, async or pro), or None if ccxt has none."""
    path = _folder(kind) / f"test_{_snake(method)}.py"
    if not path.exists():
        return None
    fn: Callable[..., Any] = getattr(_load(path), f"test_{_snake(method)}")
    return fn


def plan(exchange: Any, methods: dict[str, list[str]], kind: str
         ) -> dict[str, str | Callable[..., Any]]:
    """Per method: the test to run, or why the runner would skip it."""
    out: dict[str, str | Callable[..., Any]] = {}
    for method in methods:
        structural = method in ("features", "afterConstruct")
        if not structural and not exchange.has.get(method):
            out[method] = "UNSUPPORTED (ccxt's kucoin class does not have it)"
            continue
        fn = test_function(method, kind)
        out[method] = fn if fn is not None else "UNIMPLEMENTED (ccxt ships no test for it)"
    return out
