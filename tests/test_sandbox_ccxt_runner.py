"""ccxt 4.5.90's own per-method tests, with its validators on every result, against the sandbox
(issue 17): sync, async and pro, spot. See tests/ccxt_runner_support.py for how this follows
ccxt's runner (`ccxt/test/tests_sync.py`).

A method the runner would run is either passed here, skipped by the runner's own rules (ccxt's
kucoin class lacks it, or ccxt ships no test for it), or excused below with its reason.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import ccxt
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
import pytest
from ccxt_runner_support import PRIVATE, PUBLIC, WS_PRIVATE, WS_PUBLIC, arguments, plan
from sandbox_support import demo_credentials, point_ccxt_at, threaded

SYMBOL, CODE = "BTC/USDT", "USDT"

# Methods ccxt's kucoin class has but that are not spot, or whose ccxt test cannot run as shipped.
EXCUSED = {
    "fetchLeverageTiers": "margin/derivatives: ccxt's kucoin class refuses a spot symbol "
                          "itself (BadRequest: symbols must be of the same type swap)",
    "fetchBorrowInterest": "margin: the sandbox emulates spot only",
    "watchPosition": "derivatives (positions): the sandbox emulates spot only",
    "watchPositions": "derivatives (positions): the sandbox emulates spot only",
    "createOrder": "ccxt 4.5.90's Python test_create_order adds a float to a str in its first "
                   "debug line (TypeError in the test itself, before any request); order "
                   "placement through ccxt is covered by tests/test_sandbox_ccxt.py",
}
# Properties ccxt's validators check that KuCoin's documented reply does not carry (ccxt's own
# runner skips such properties per exchange in its skip list, which the package does not ship).
SKIPPED_PROPERTIES: dict[str, dict[str, Any]] = {
    # KuCoin's spot ledger items (old and HF) have no `status` (the SDK's models have none);
    # ccxt reads it only from the futures ledger, so on spot it is always None.
    "fetchLedger": {"status": True},
}


def _prepare(ex: Any) -> None:
    """What an account that traded has: a fill, a cancelled order, an open one."""
    ex.load_markets()
    ex.create_order(SYMBOL, "market", "buy", 0.01)
    cancelled = ex.create_order(SYMBOL, "limit", "buy", 0.001, 1000.0)
    ex.cancel_order(cancelled["id"], SYMBOL)
    ex.create_order(SYMBOL, "limit", "buy", 0.001, 1000.0, {"clientOid": uuid.uuid4().hex})


def _outcomes(ex: Any, methods: dict[str, list[str]], kind: str,
              call: Callable[[Callable[..., Any], list[Any]], Any]) -> dict[str, str]:
    results: dict[str, str] = {}
    for method, what in plan(ex, methods, kind).items():
        if isinstance(what, str):
            results[method] = what
            continue
        if method in EXCUSED:
            results[method] = "EXCUSED"
            continue
        skipped = SKIPPED_PROPERTIES.get(method, {})
        try:
            call(what, [ex, skipped, *arguments(methods[method], SYMBOL, CODE)])
        except Exception as exc:  # every failure is reported with its method
            results[method] = f"FAILED {type(exc).__name__}: {str(exc)[:500]}"
        else:
            results[method] = "PASSED"
    return results


async def _gathered(ex: Any, methods: dict[str, list[str]]) -> dict[str, str]:
    results: dict[str, str] = {}
    runs: dict[str, Any] = {}
    for method, what in plan(ex, methods, "pro").items():
        if isinstance(what, str):
            results[method] = what
        elif method in EXCUSED:
            results[method] = "EXCUSED"
        else:
            args = arguments(methods[method], SYMBOL, CODE)
            runs[method] = what(ex, SKIPPED_PROPERTIES.get(method, {}), *args)
    done = await asyncio.gather(*runs.values(), return_exceptions=True)
    for method, outcome in zip(runs, done, strict=True):
        results[method] = (f"FAILED {type(outcome).__name__}: {str(outcome)[:500]}"
                           if isinstance(outcome, BaseException) else "PASSED")
    return results


def _check(results: dict[str, str], must_pass: set[str]) -> None:
    failed = {m: r for m, r in results.items() if r.startswith("FAILED")}
    assert not failed, failed
    passed = {m for m, r in results.items() if r == "PASSED"}
    assert must_pass <= passed, sorted(must_pass - passed)


CORE = {"features", "afterConstruct", "fetchCurrencies", "fetchTicker", "fetchTickers",
        "fetchOHLCV", "fetchTrades", "fetchOrderBook", "fetchStatus", "fetchBalance",
        "fetchAccounts", "fetchOpenOrders", "fetchClosedOrders", "fetchMyTrades", "fetchLedger",
        "fetchDeposits", "fetchWithdrawals", "fetchTransfers"}


def test_ccxt_runner_sync_spot_methods_pass_with_validators() -> None:
    with threaded() as box:
        ex = point_ccxt_at(ccxt.kucoin(demo_credentials()), box.url)
        _prepare(ex)
        results = _outcomes(ex, PUBLIC | PRIVATE, "sync", lambda fn, args: fn(*args))
    _check(results, CORE)


def test_ccxt_runner_async_spot_methods_pass_with_validators() -> None:
    with threaded() as box:
        sync = point_ccxt_at(ccxt.kucoin(demo_credentials()), box.url)
        _prepare(sync)

        async def main() -> dict[str, str]:
            ex = point_ccxt_at(ccxt_async.kucoin(demo_credentials()), box.url)
            try:
                await ex.load_markets()
                loop = asyncio.get_running_loop()

                def call(fn: Callable[..., Any], args: list[Any]) -> Any:
                    # _outcomes is synchronous: run each coroutine on this loop from a thread.
                    return asyncio.run_coroutine_threadsafe(fn(*args), loop).result(60)

                return await loop.run_in_executor(
                    None, lambda: _outcomes(ex, PUBLIC | PRIVATE, "async", call))
            finally:
                await ex.close()

        results = asyncio.run(main())
    _check(results, CORE)


@pytest.mark.slow
def test_ccxt_runner_pro_watch_methods_pass_with_validators() -> None:
    with threaded() as box:
        sync = point_ccxt_at(ccxt.kucoin(demo_credentials()), box.url)
        _prepare(sync)
        stop = threading.Event()

        def trade() -> None:
            # Private watches wait for account activity: an order and its cancel every 0.2 s.
            while not stop.is_set():
                placed = sync.create_order(SYMBOL, "limit", "buy", 0.001, 1000.0)
                sync.cancel_order(placed["id"], SYMBOL)
                sync.create_order(SYMBOL, "market", "buy", 0.001)
                time.sleep(0.2)

        async def main() -> dict[str, str]:
            # As ccxt's async runner does (run_tests gathers its tests), the watches run
            # together: each of ccxt's watch tests keeps watching for 15 s.
            ex = point_ccxt_at(ccxt_pro.kucoin(demo_credentials()), box.url)
            try:
                await ex.load_markets()
                return await _gathered(ex, WS_PUBLIC | WS_PRIVATE)
            finally:
                await ex.close()

        worker = threading.Thread(target=trade, daemon=True)
        worker.start()
        try:
            results = asyncio.run(main())
        finally:
            stop.set()
            worker.join(10)
    _check(results, {"watchTicker", "watchOrderBook", "watchTrades", "watchOHLCV",
                     "watchBalance", "watchOrders", "watchMyTrades"})
