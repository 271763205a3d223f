"""Public market data: the server time and status, symbols, tickers, 24-hour stats, order
books, the last trades and candles (routed by `rest.routes()`); and the informational
routes of this module's own `routes()`: currencies with their chains, markets, fiat prices,
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
from rules_engine.sandbox.feeds import Candle
from rules_engine.sandbox.rest_common import Ctx, Route, int_param, page_of
from rules_engine.sandbox.state import SandboxState
from rules_engine.sandbox.ws import CANDLE_TYPES

__all__ = ["candles", "currency_rows", "routes"]

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


# ---- public market data (routed by `rest.routes()`) --------------------------------------


async def h_timestamp(ctx: Ctx) -> Any:
    return ctx.state.now_ms()


async def h_status(ctx: Ctx) -> Any:
    return {"status": "open", "msg": f"sandbox {ctx.state.instance_id}"}


def _symbol_rows(state: SandboxState) -> list[dict[str, Any]]:
    return [dict(r) for r in state.feed.symbol_rows() if r["symbol"] in state.symbols]


async def h_symbols(ctx: Ctx) -> Any:
    market = ctx.q("market")
    rows = _symbol_rows(ctx.state)
    return [r for r in rows if market is None or r.get("market") == market]


async def h_symbol(ctx: Ctx) -> Any:
    symbol = ctx.match["symbol"]
    for row in _symbol_rows(ctx.state):
        if row["symbol"] == symbol:
            return row
    raise ApiFailureError(errors.symbol_not_exists())


def _ticker(state: SandboxState, symbol: str) -> dict[str, Any]:
    engine = state.engine
    st = state.stats_24h(symbol)
    _seq, bids, asks = engine.snapshot(symbol, 1)
    change = st.last - st.open if st.open else Decimal(0)
    rate = (change / st.open).quantize(Decimal("0.0001")) if st.open else Decimal(0)
    avg = (st.vol_value / st.vol).quantize(state.symbols[symbol].price_increment) if st.vol else st.last  # noqa: E501
    return {
        "symbol": symbol, "symbolName": symbol,
        "buy": fmt(bids[0][0]) if bids else None, "bestBidSize": fmt(bids[0][1]) if bids else None,
        "sell": fmt(asks[0][0]) if asks else None, "bestAskSize": fmt(asks[0][1]) if asks else None,
        "changeRate": fmt(rate), "changePrice": fmt(change), "high": fmt(st.high),
        "low": fmt(st.low), "vol": fmt(st.vol), "volValue": fmt(st.vol_value),
        "last": fmt(st.last), "averagePrice": fmt(avg),
        "takerFeeRate": fmt(state.config.taker_fee_rate),
        "makerFeeRate": fmt(state.config.maker_fee_rate),
        "takerCoefficient": "1", "makerCoefficient": "1",
    }


async def h_all_tickers(ctx: Ctx) -> Any:
    return {
        "time": ctx.state.now_ms(),
        "ticker": [_ticker(ctx.state, s) for s in ctx.state.symbols],
    }


async def h_stats(ctx: Ctx) -> Any:
    symbol = ctx.symbol()
    assert symbol is not None
    row = _ticker(ctx.state, symbol)
    for name in ("symbolName", "bestBidSize", "bestAskSize"):
        row.pop(name)
    row["time"] = ctx.state.now_ms()
    return row


async def h_level1(ctx: Ctx) -> Any:
    symbol = ctx.symbol()
    assert symbol is not None
    engine = ctx.state.engine
    seq, bids, asks = engine.snapshot(symbol, 1)
    st = engine.stats[symbol]
    return {
        "time": ctx.state.now_ms(), "sequence": str(seq), "price": fmt(st.last),
        "size": fmt(st.last_size),
        "bestBid": fmt(bids[0][0]) if bids else None,
        "bestBidSize": fmt(bids[0][1]) if bids else None,
        "bestAsk": fmt(asks[0][0]) if asks else None,
        "bestAskSize": fmt(asks[0][1]) if asks else None,
    }


def _book(ctx: Ctx, limit: int | None) -> dict[str, Any]:
    symbol = ctx.symbol()
    assert symbol is not None
    seq, bids, asks = ctx.state.engine.snapshot(symbol, limit)
    return {
        "time": ctx.state.now_ms(), "sequence": str(seq),
        "bids": [[fmt(p), fmt(s)] for p, s in bids], "asks": [[fmt(p), fmt(s)] for p, s in asks],
    }


async def h_level2_20(ctx: Ctx) -> Any:
    return _book(ctx, 20)


async def h_level2_100(ctx: Ctx) -> Any:
    return _book(ctx, 100)


async def h_level2_full(ctx: Ctx) -> Any:
    return _book(ctx, None)


async def h_histories(ctx: Ctx) -> Any:
    """The last 100 prints of the market (the feed's and the account's), oldest first."""
    symbol = ctx.symbol()
    assert symbol is not None
    return [
        {"sequence": str(t.sequence), "price": fmt(t.price), "size": fmt(t.size),
         "side": t.side, "time": t.time_ms * 1_000_000}
        for t in ctx.state.recent_trades.get(symbol, ())
    ]


def candles(
    state: SandboxState, symbol: str, granularity: int, start_s: int,
            end_s: int) -> list[list[str]]:
    """History from the feed plus live one-minute buckets, grouped by `granularity`."""
    rows: dict[int, list[Decimal]] = {}

    def add(  # noqa: PLR0917 - one candle's columns, in KuCoin's order
        start: int, o: Decimal, c: Decimal, h: Decimal, lo: Decimal, v: Decimal,
            t: Decimal) -> None:
        bucket = start - start % granularity
        row = rows.get(bucket)
        if row is None:
            rows[bucket] = [o, c, h, lo, v, t]
        else:
            row[1] = c
            row[2] = max(row[2], h)
            row[3] = min(row[3], lo)
            row[4] += v
            row[5] += t

    live = state.minute_candles.get(symbol, {})
    first_live = min(live) if live else None
    if granularity >= 3600:
        history: list[Candle] = state.feed.history(symbol)
        for candle in history:
            if first_live is None or candle.start_s + 3600 <= first_live:
                add(candle.start_s, candle.open, candle.close, candle.high, candle.low,
                    candle.volume, candle.turnover)
    for minute in sorted(live):
        o, c, h, lo, v, t = live[minute]
        add(minute, o, c, h, lo, v, t)
    out = []
    for start in sorted(rows, reverse=True):
        if start < start_s or (end_s and start >= end_s):
            continue
        o, c, h, lo, v, t = rows[start]
        out.append([str(start), fmt(o), fmt(c), fmt(h), fmt(lo), fmt(v), fmt(t)])
    return out[:1500]


async def h_candles(ctx: Ctx) -> Any:
    symbol = ctx.symbol()
    assert symbol is not None
    kind = ctx.q("type", required=True)
    assert kind is not None
    granularity = CANDLE_TYPES.get(kind)
    if granularity is None:
        raise ApiFailureError(errors.bad_param("type is invalid"))
    start = int_param(ctx.q("startAt"), "startAt", 0)
    end = int_param(ctx.q("endAt"), "endAt", 0)
    return candles(ctx.state, symbol, granularity, start, end)


async def h_empty_list(ctx: Ctx) -> Any:
    return []


async def h_margin_symbols(ctx: Ctx) -> Any:
    return {"timestamp": ctx.state.now_ms(), "items": []}


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
