"""Informational public routes: currencies with their chains, markets, fiat prices,
announcements, the caller's IP, the call auction, and the account's user info.

Currencies come from the shipped `data/currencies.json` (every currency of `symbols.json`; see
its notice), plus a one-chain row for any other currency the feed trades (the recorded feed's
2021 symbols). Fiat prices are the synthetic feed's last prices against USDT, with USDT at 1 USD.
No symbol runs a call auction (`callauctionIsEnabled` is false in the symbol rows), so the
auction book is empty and its figures are null; the WebSocket call-auction topics are accepted and
stay silent for the same reason. There are no announcements in a sandbox: the list is an empty
page of KuCoin's shape.
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

from rules_engine.sandbox import errors
from rules_engine.sandbox.engine import fmt
from rules_engine.sandbox.errors import ApiError, ApiFailureError
from rules_engine.sandbox.rest import Ctx, Route, page_of
from rules_engine.sandbox.state import SandboxState

__all__ = ["currency_rows", "routes"]

ANNOUNCEMENT_TYPES = ("latest-announcements", "activities", "product-updates", "vip",
                      "maintenance-updates", "delistings", "others", "api-campaigns",
                      "new-listings", "futures-announcements")


@cache
def _shipped() -> tuple[dict[str, Any], ...]:
    text = resources.files("rules_engine.sandbox").joinpath("data", "currencies.json")
    rows: list[dict[str, Any]] = json.loads(text.read_text("utf-8"))["data"]
    return tuple(rows)


def _generic(currency: str) -> dict[str, Any]:
    chain = {"chainName": currency, "withdrawalMinSize": "1", "depositMinSize": None,
             "withdrawFeeRate": "0", "withdrawalMinFee": "0.1", "isWithdrawEnabled": True,
             "isDepositEnabled": True, "confirms": 12, "preConfirms": 12, "contractAddress": "",
             "withdrawPrecision": 8, "maxWithdraw": None, "maxDeposit": None, "needTag": False,
             "chainId": currency.lower()}
    return {"currency": currency, "name": currency, "fullName": currency, "precision": 8,
            "confirms": None, "contractAddress": None, "isMarginEnabled": False,
            "isDebitEnabled": False, "chains": [chain]}


def currency_rows(state: SandboxState) -> list[dict[str, Any]]:
    rows = [json.loads(json.dumps(r)) for r in _shipped()]  # callers may not change the cache
    known = {r["currency"] for r in rows}
    rows += [_generic(c) for c in sorted(state.symbols.currencies) if c not in known]
    return rows


async def h_currencies(ctx: Ctx) -> Any:
    return currency_rows(ctx.state)


async def h_currency(ctx: Ctx) -> Any:
    wanted = ctx.match["currency"]
    row = next((r for r in currency_rows(ctx.state) if r["currency"] == wanted), None)
    if row is None:
        raise ApiFailureError(ApiError("400100", "Currency not exists", 400))
    chain = ctx.q("chain")
    if chain:
        row["chains"] = [c for c in row["chains"] if c["chainId"] == chain.lower()]
        if not row["chains"]:
            raise ApiFailureError(ApiError("900014", "Invalid chainId", 400))
    return row


async def h_markets(ctx: Ctx) -> Any:
    markets = {str(r.get("market") or "USDS") for r in ctx.state.feed.symbol_rows()}
    return sorted(markets)


def usd_price(state: SandboxState, currency: str) -> Decimal | None:
    """The last price of `currency` in USDT (USDT itself is 1), or None if nothing trades it."""
    if currency == "USDT":
        return Decimal(1)
    symbol = f"{currency}-USDT"
    if symbol not in state.symbols:
        return None
    last = state.engine.stats[symbol].last
    if not last:
        _seq, bids, asks = state.engine.snapshot(symbol, 1)
        if not bids or not asks:
            return None
        last = (bids[0][0] + asks[0][0]) / 2
    return last


async def h_prices(ctx: Ctx) -> Any:
    base = (ctx.q("base") or "USD").upper()
    if base not in ("USD", "USDT"):
        raise ApiFailureError(errors.bad_param(
            "base: the sandbox prices in USD only (its feed quotes USDT at 1 USD)"))
    names = [c for c in (ctx.q("currencies") or "").split(",") if c]
    names = names or [r["currency"] for r in currency_rows(ctx.state)]
    prices: dict[str, str] = {}
    for name in names:
        price = usd_price(ctx.state, name)
        if price is not None:
            prices[name] = fmt(price)
    return prices


async def h_announcements(ctx: Ctx) -> Any:
    kind = ctx.q("annType")
    if kind is not None and kind not in ANNOUNCEMENT_TYPES:
        raise ApiFailureError(errors.bad_param(
            f"annType must be one of {', '.join(ANNOUNCEMENT_TYPES)}"))
    return page_of([], ctx)


async def h_my_ip(ctx: Ctx) -> Any:
    return ctx.request.remote or ""


async def h_user_info(ctx: Ctx) -> Any:
    return {"level": 0, "subQuantity": 0, "spotSubQuantity": 0, "marginSubQuantity": 0,
            "futuresSubQuantity": 0, "optionSubQuantity": 0, "maxSubQuantity": 5,
            "maxDefaultSubQuantity": 5, "maxSpotSubQuantity": 0, "maxMarginSubQuantity": 0,
            "maxFuturesSubQuantity": 0, "maxOptionSubQuantity": 0}


async def h_auction_book(ctx: Ctx) -> Any:
    if ctx.match["size"] not in ("20", "100"):
        raise ApiFailureError(errors.not_found())
    symbol = ctx.symbol() or ""
    return {"time": ctx.state.now_ms(), "sequence": str(ctx.state.engine.books[symbol].sequence),
            "bids": [], "asks": []}


async def h_auction_info(ctx: Ctx) -> Any:
    symbol = ctx.symbol()
    return {"symbol": symbol, "estimatedPrice": None, "estimatedSize": None,
            "sellOrderRangeLowPrice": None, "sellOrderRangeHighPrice": None,
            "buyOrderRangeLowPrice": None, "buyOrderRangeHighPrice": None,
            "time": ctx.state.now_ms()}


def routes() -> list[Route]:
    r = Route
    return [
        r("GET", "/api/v3/currencies/{currency}", h_currency, 3, "public", False),
        r("GET", "/api/v3/currencies", h_currencies, 3, "public", False),
        r("GET", "/api/v1/markets", h_markets, 3, "public", False),
        r("GET", "/api/v1/prices", h_prices, 3, "public", False),
        r("GET", "/api/v3/announcements", h_announcements, 20, "public", False),
        r("GET", "/api/v1/my-ip", h_my_ip, 3, "public", False),
        r("GET", "/api/v1/market/orderbook/callauction/level2_{size}", h_auction_book, 3,
          "public", False),
        r("GET", "/api/v1/market/callauctionData", h_auction_info, 3, "public", False),
        r("GET", "/api/v2/user-info", h_user_info, 20, "management", True),
    ]
