"""Named market, account, fill and stop-order calls, and the private order channel, against
the sandbox over real sockets."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from rules_engine.adapters.kucoin._errors import Action
from rules_engine.adapters.kucoin._market import KucoinMarket
from rules_engine.adapters.kucoin._parsing import parse_ws_message
from rules_engine.adapters.kucoin._rest import KucoinOrders, KucoinRest
from rules_engine.adapters.kucoin._signing import Credentials, Secret
from rules_engine.adapters.kucoin._ws import KucoinWs
from rules_engine.core.market import OrderEvent
from rules_engine.sandbox.config import SandboxConfig
from rules_engine.sandbox.testing import RunningSandbox, serve


def creds(box: RunningSandbox) -> Credentials:
    c = box.credentials()
    return Credentials(c["api_key"], Secret(c["api_secret"]), Secret(c["api_passphrase"]))


async def test_market_data_accounts_fills_and_stop_orders() -> None:
    async with serve(SandboxConfig()) as box, KucoinRest(box.url, creds(box)) as rest:
        market = KucoinMarket(rest)
        table = await market.symbols()
        assert table["BTC-USDT"].price_increment > 0
        assert (await market.level1("BTC-USDT")).action is Action.OK
        partial = await market.level2("BTC-USDT", 20)
        full = await market.level2("BTC-USDT", 0)
        assert len(partial.data["bids"]) <= 20 and len(full.data["bids"]) >= len(
            partial.data["bids"]
        )
        now = datetime.now(UTC)
        candles = await market.candles("BTC-USDT", "1hour", now - timedelta(days=2), now)
        assert candles and candles == sorted(candles, key=lambda c: c.open_time)
        accounts = await market.accounts("USDT")
        assert accounts.action is Action.OK and Decimal(accounts.data[0]["available"]) > 0
        orders = KucoinOrders(rest, "hf")
        bought = await orders.place(
            {
                "clientOid": "mkt-1",
                "symbol": "BTC-USDT",
                "side": "buy",
                "type": "market",
                "funds": "100",
            }
        )
        assert bought.action is Action.OK
        fills = await market.fills("BTC-USDT", order_id=bought.data["orderId"])
        assert fills.action is Action.OK and fills.data["items"]
        stop = await market.place_stop(
            {
                "clientOid": "stop-1",
                "symbol": "BTC-USDT",
                "side": "sell",
                "type": "market",
                "stop": "loss",
                "stopPrice": "1000",
                "size": "0.001",
            }
        )
        assert stop.action is Action.OK
        found = await market.stop_by_client_oid("stop-1", "BTC-USDT")
        assert found.action is Action.OK
        assert (await market.cancel_stop(stop.data["orderId"])).action is Action.OK


async def test_the_private_order_channel_reports_an_order_from_received_to_canceled() -> None:
    async with serve(SandboxConfig()) as box, KucoinRest(box.url, creds(box)) as rest:
        events: list[OrderEvent] = []

        def on_message(frame: dict[str, Any]) -> None:
            event = parse_ws_message(frame)
            if isinstance(event, OrderEvent):
                events.append(event)

        states: list[str] = []
        ws = KucoinWs(
            rest,
            on_message=on_message,
            private=True,
            on_state=lambda state, why: states.append(state),
        )
        ws.subscribe(["/spotMarket/tradeOrdersV2"])
        stop = asyncio.Event()
        task = asyncio.create_task(ws.run(stop))
        try:
            for _ in range(200):
                if states and states[-1] == "live":
                    break
                await asyncio.sleep(0.02)
            orders = KucoinOrders(rest, "hf")
            placed = await orders.place(
                {
                    "clientOid": "priv-1",
                    "symbol": "BTC-USDT",
                    "side": "buy",
                    "type": "limit",
                    "price": "1000",
                    "size": "0.001",
                }
            )
            await orders.cancel(placed.data["orderId"], "BTC-USDT")
            for _ in range(200):
                if any(e.kind == "canceled" for e in events):
                    break
                await asyncio.sleep(0.02)
            assert [e.kind for e in events] == ["received", "open", "canceled"]
            assert {e.client_oid for e in events} == {"priv-1"}
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
