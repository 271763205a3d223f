"""Named KuCoin calls for market data, accounts, fills and stop orders, parsed where the
watcher needs core values. Thin: each is one `KucoinRest.call` with KuCoin's path and shape.
"""

from __future__ import annotations

from datetime import datetime

from rules_engine.adapters.kucoin._errors import Action, Outcome
from rules_engine.adapters.kucoin._parsing import parse_candles_reply
from rules_engine.adapters.kucoin._rest import KucoinRest
from rules_engine.core.market import Candle
from rules_engine.core.symbols import SymbolTable, parse_symbols_reply

__all__ = ["KucoinMarket"]

CANDLE_TYPES = (
    "1min",
    "3min",
    "5min",
    "15min",
    "30min",
    "1hour",
    "2hour",
    "4hour",
    "6hour",
    "8hour",
    "12hour",
    "1day",
    "1week",
    "1month",
)


class KucoinMarket:
    def __init__(self, rest: KucoinRest) -> None:
        self.rest = rest

    async def symbols(self) -> SymbolTable:
        outcome = await self.rest.call("GET", "/api/v2/symbols")
        if outcome.action is not Action.OK:
            raise ConnectionError(f"symbols: {outcome.message or outcome.action.value}")
        return parse_symbols_reply(
            {"code": "200000", "data": outcome.data},
            source=self.rest.base_url + "/api/v2/symbols",
            as_of=None,
        )

    async def level1(self, symbol: str) -> Outcome:
        return await self.rest.call(
            "GET", "/api/v1/market/orderbook/level1", params=[("symbol", symbol)]
        )

    async def level2(self, symbol: str, depth: int = 100) -> Outcome:
        """`level2_20`/`level2_100` (public), or the full book (`depth=0`, signed)."""
        if depth == 0:
            return await self.rest.call(
                "GET", "/api/v3/market/orderbook/level2", params=[("symbol", symbol)], signed=True
            )
        if depth not in (20, 100):
            raise ValueError("KuCoin serves level2_20 and level2_100 only (or 0: the full book)")
        return await self.rest.call(
            "GET", f"/api/v1/market/orderbook/level2_{depth}", params=[("symbol", symbol)]
        )

    async def candles(self, symbol: str, kind: str, start: datetime, end: datetime) -> list[Candle]:
        """Closed and current candles between `start` and `end`, oldest first."""
        outcome = await self.candles_reply(symbol, kind, start, end)
        if outcome.action is not Action.OK:
            raise ConnectionError(f"candles: {outcome.message or outcome.action.value}")
        return parse_candles_reply(symbol, kind, outcome.data)

    async def candles_reply(self, symbol: str, kind: str, start: datetime,
                            end: datetime) -> Outcome:
        """The exchange's reply to `candles`, unparsed (for a caller that retries)."""
        if kind not in CANDLE_TYPES:
            raise ValueError(f"candle type must be one of {', '.join(CANDLE_TYPES)}")
        return await self.rest.call(
            "GET",
            "/api/v1/market/candles",
            params=[
                ("symbol", symbol),
                ("type", kind),
                ("startAt", str(int(start.timestamp()))),
                ("endAt", str(int(end.timestamp()))),
            ],
        )

    async def accounts(self, currency: str | None = None) -> Outcome:
        params = [("type", "trade")] + ([("currency", currency)] if currency else [])
        return await self.rest.call("GET", "/api/v1/accounts", params=params, signed=True)

    async def fills(self, symbol: str, family: str = "hf", order_id: str | None = None) -> Outcome:
        path = "/api/v1/hf/fills" if family == "hf" else "/api/v1/fills"
        params = [("symbol", symbol)] + ([("orderId", order_id)] if order_id else [])
        return await self.rest.call("GET", path, params=params, signed=True)

    async def place_stop(self, order: dict[str, str]) -> Outcome:
        """A KuCoin stop order (`stop` loss|entry, `stopPrice`, ...)."""
        return await self.rest.call(
            "POST", "/api/v1/stop-order", body=order, signed=True, order=True
        )

    async def stop_by_client_oid(self, client_oid: str, symbol: str) -> Outcome:
        return await self.rest.call(
            "GET",
            "/api/v1/stop-order/queryOrderByClientOid",
            params=[("clientOid", client_oid), ("symbol", symbol)],
            signed=True,
        )

    async def cancel_stop(self, order_id: str) -> Outcome:
        return await self.rest.call("DELETE", f"/api/v1/stop-order/{order_id}", signed=True)
