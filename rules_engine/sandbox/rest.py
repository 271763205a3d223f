"""KuCoin's REST surface: the route table (method, path, handler, weight, pool, signed,
permission) of the handlers by area, and the WebSocket tokens (bullets). The server wraps each
route with authentication, rate limiting and error replies.

What the handlers share (`Ctx`, `Route`, parameters, JSON shapes, `page_of`) is in
`rest_common.py`; the handlers are in `rest_market.py` (public market data), `rest_account.py`
(the account, balances, fees), `rest_orders.py` (HF and old-API orders, fills) and
`rest_stops.py` (stop orders). `routes()` is the core table (the backtest serves it too); the
server registers the area modules' own `routes()` (and `rest_oco.routes()`) before it.
"""

from __future__ import annotations

from typing import Any

from rules_engine.sandbox import rest_account as account
from rules_engine.sandbox import rest_market as market
from rules_engine.sandbox import rest_oco as oco
from rules_engine.sandbox import rest_orders as orders
from rules_engine.sandbox import rest_stops as stops
from rules_engine.sandbox import ws
from rules_engine.sandbox.rest_common import (
    Ctx,
    Route,
    bool_param,
    dec_param,
    fill_json,
    hf_order,
    int_param,
    legacy_order,
    ok_body,
    order_request,
    page_of,
    stop_order,
)
from rules_engine.sandbox.rest_market import candles
from rules_engine.sandbox.rest_orders import check_window, place_many, sync_row

__all__ = ["Ctx", "Route", "all_routes", "bool_param", "candles", "check_window", "dec_param",
           "fill_json", "hf_order", "int_param", "legacy_order", "ok_body", "order_request",
           "page_of", "place_many", "routes", "stop_order", "sync_row"]


# ---- bullets ----------------------------------------------------------------------------------


def _bullet(ctx: Ctx, private: bool) -> dict[str, Any]:
    token = ws.issue_token(ctx.state, ctx.key if private else None)
    host = ctx.request.host
    cfg = ctx.state.config
    return {
        "token": token,
        "instanceServers": [{
            "endpoint": f"ws://{host}/endpoint", "encrypt": False, "protocol": "websocket",
            "pingInterval": cfg.ping_interval_ms, "pingTimeout": cfg.ping_timeout_ms,
        }],
    }


async def h_bullet_public(ctx: Ctx) -> Any:
    return _bullet(ctx, False)


async def h_bullet_private(ctx: Ctx) -> Any:
    return _bullet(ctx, True)


# ---- the route table --------------------------------------------------------------------------


def routes() -> list[Route]:
    pub, spot, mgmt = "public", "spot", "management"
    r = Route
    return [
        r("GET", "/api/v1/timestamp", market.h_timestamp, 3, pub, False),
        r("GET", "/api/v1/status", market.h_status, 3, pub, False),
        r("GET", "/api/v2/symbols", market.h_symbols, 4, pub, False),
        r("GET", "/api/v2/symbols/{symbol}", market.h_symbol, 4, pub, False),
        r("GET", "/api/v1/market/allTickers", market.h_all_tickers, 15, pub, False),
        r("GET", "/api/v1/market/stats", market.h_stats, 15, pub, False),
        r("GET", "/api/v1/market/orderbook/level1", market.h_level1, 2, pub, False),
        r("GET", "/api/v1/market/orderbook/level2_20", market.h_level2_20, 2, pub, False),
        r("GET", "/api/v1/market/orderbook/level2_100", market.h_level2_100, 4, pub, False),
        r("GET", "/api/v3/market/orderbook/level2", market.h_level2_full, 3, spot, True),
        r("GET", "/api/v1/market/histories", market.h_histories, 3, pub, False),
        r("GET", "/api/v1/market/candles", market.h_candles, 3, pub, False),
        r("GET", "/api/v1/contracts/active", market.h_empty_list, 3, pub, False),
        r("GET", "/api/v3/margin/symbols", market.h_margin_symbols, 3, spot, True),
        r("GET", "/api/v1/isolated/symbols", market.h_empty_list, 3, spot, True),
        r("GET", "/api/ua/v1/account/mode", account.h_account_mode, 30, mgmt, True),
        r("GET", "/api/v1/hf/accounts/opened", account.h_hf_opened, 2, mgmt, True),
        r("GET", "/api/v1/user/api-key", account.h_api_key, 20, mgmt, True),
        r("GET", "/api/v1/trade-fees", account.h_trade_fees, 3, spot, True),
        r("GET", "/api/v1/base-fee", account.h_base_fee, 3, spot, True),
        r("GET", "/api/v1/accounts", account.h_accounts, 5, mgmt, True),
        r("GET", "/api/v1/accounts/{accountId}", account.h_account, 5, mgmt, True),
        r("POST", "/api/v1/bullet-public", h_bullet_public, 10, pub, False),
        r("POST", "/api/v1/bullet-private", h_bullet_private, 10, spot, True),
        # HF orders: fixed paths before the ones with an id in them.
        r("POST", "/api/v1/hf/orders", orders.h_hf_place, 1, spot, True, "Spot"),
        r("POST", "/api/v1/hf/orders/sync", orders.h_hf_place_sync, 1, spot, True, "Spot"),
        r("POST", "/api/v1/hf/orders/test", orders.h_hf_test, 1, spot, True, "Spot"),
        r("POST", "/api/v1/hf/orders/multi", orders.h_hf_multi, 1, spot, True, "Spot"),
        r("POST", "/api/v1/hf/orders/alter", orders.h_hf_alter, 1, spot, True, "Spot"),
        r("GET", "/api/v1/hf/orders/active", orders.h_hf_active, 2, spot, True),
        r("GET", "/api/v1/hf/orders/active/page", orders.h_hf_active_page, 2, spot, True),
        r("GET", "/api/v1/hf/orders/active/symbols", orders.h_hf_active_symbols, 2, spot, True),
        r("GET", "/api/v1/hf/orders/done", orders.h_hf_done, 2, spot, True),
        r("DELETE", "/api/v1/hf/orders/cancelAll", orders.h_hf_cancel_all, 30, spot, True, "Spot"),
        r("DELETE", "/api/v1/hf/orders", orders.h_hf_cancel_symbol, 2, spot, True, "Spot"),
        r("GET", "/api/v1/hf/orders/client-order/{clientOid}", orders.h_hf_get_client,
          2, spot, True),
        r("DELETE", "/api/v1/hf/orders/client-order/{clientOid}", orders.h_hf_cancel_client,
          1, spot, True, "Spot"),
        r("DELETE", "/api/v1/hf/orders/sync/client-order/{clientOid}", orders.h_hf_cancel_sync,
          1, spot, True, "Spot"),
        r("DELETE", "/api/v1/hf/orders/sync/{orderId}", orders.h_hf_cancel_sync,
          1, spot, True, "Spot"),
        r("DELETE", "/api/v1/hf/orders/cancel/{orderId}", orders.h_hf_cancel_partial,
          2, spot, True, "Spot"),
        r("GET", "/api/v1/hf/orders/{orderId}", orders.h_hf_get, 2, spot, True),
        r("DELETE", "/api/v1/hf/orders/{orderId}", orders.h_hf_cancel, 1, spot, True, "Spot"),
        r("GET", "/api/v1/hf/fills", orders.h_hf_fills, 2, spot, True),
        # Legacy orders.
        r("POST", "/api/v1/orders", orders.h_legacy_place, 2, spot, True, "Spot"),
        r("POST", "/api/v1/orders/multi", orders.h_legacy_multi, 3, spot, True, "Spot"),
        r("GET", "/api/v1/orders", orders.h_legacy_list, 2, spot, True),
        r("DELETE", "/api/v1/orders", orders.h_legacy_cancel_all, 20, spot, True, "Spot"),
        r("GET", "/api/v1/orders/{orderId}", orders.h_legacy_get, 2, spot, True),
        r("DELETE", "/api/v1/orders/{orderId}", orders.h_legacy_cancel, 3, spot, True, "Spot"),
        r("GET", "/api/v1/order/client-order/{clientOid}", orders.h_legacy_get_client,
          3, spot, True),
        r("DELETE", "/api/v1/order/client-order/{clientOid}", orders.h_legacy_cancel_client,
          3, spot, True, "Spot"),
        r("GET", "/api/v1/limit/orders", orders.h_legacy_recent, 3, spot, True),
        r("GET", "/api/v1/fills", orders.h_legacy_fills, 10, spot, True),
        r("GET", "/api/v1/limit/fills", orders.h_limit_fills, 20, spot, True),
        # Stop orders.
        r("POST", "/api/v1/stop-order", stops.h_stop_place, 1, spot, True, "Spot"),
        r("GET", "/api/v1/stop-order", stops.h_stop_list, 8, spot, True),
        r("GET", "/api/v1/stop-order/queryOrderByClientOid", stops.h_stop_get_client,
          3, spot, True),
        r("DELETE", "/api/v1/stop-order/cancelOrderByClientOid", stops.h_stop_cancel_client,
          5, spot, True, "Spot"),
        r("DELETE", "/api/v1/stop-order/cancel", stops.h_stop_cancel_batch, 3, spot, True, "Spot"),
        r("GET", "/api/v1/stop-order/{orderId}", stops.h_stop_get, 3, spot, True),
        r("DELETE", "/api/v1/stop-order/{orderId}", stops.h_stop_cancel, 3, spot, True, "Spot"),
    ]


def all_routes() -> list[Route]:
    """Every route the sandbox serves, in the order they are matched (fixed paths first):
    one list for its server and for the backtest's in-process session, so the backtest
    reaches every endpoint the live watcher does (OCO orders included)."""
    return [*account.routes(), *orders.routes(), *market.routes(), *oco.routes(), *routes()]
