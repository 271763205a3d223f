"""The KuCoin adapter's OCO calls over real sockets: against the sandbox on port 0 (place,
look up with both legs and their fills, cancel by clientOid and by id), and against a small
HTTP server that answers malformed payloads (a clear `failed` lookup, never a traceback)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from sandbox_support import Sandbox, running

from rules_engine.adapters.kucoin import Credentials, KucoinRest, KucoinVenue, Secret, oco_body
from rules_engine.adapters.kucoin._oco import parse_oco, parse_oco_detail, parse_oco_list
from rules_engine.adapters.kucoin._parsing import MalformedPayload
from rules_engine.core.outcome import Action

D = Decimal
SYMBOL = "BTC-USDT"


@asynccontextmanager
async def kucoin(box: Sandbox) -> AsyncIterator[KucoinVenue]:
    key = box.state.config.first_key()
    creds = Credentials(key.api_key, Secret(key.api_secret.get_secret_value()),
                        Secret(key.api_passphrase.get_secret_value()))
    async with KucoinRest(box.url, creds) as rest:
        await rest.sync_time()
        yield KucoinVenue(rest)


def _market(box: Sandbox, bid: str, ask: str, last: str) -> None:
    state = box.state
    state.publish(state.engine.apply_feed(SYMBOL, [(D(bid), D("5"))], [(D(ask), D("5"))],
                                          state.now_ms(), (D(last), D("0.001"), "sell")))


def _body(cid: str) -> dict[str, str]:
    return oco_body(client_oid=cid, symbol=SYMBOL, side="sell", price=D("105"),
                    size=D("0.5"), stop_price=D("95"), limit_price=D("94.5"))


async def test_an_oco_is_placed_looked_up_with_both_legs_and_cancelled_by_client_oid() -> None:
    async with running() as box, kucoin(box) as venue:
        _market(box, "100", "100.2", "100.1")
        placed = await venue.place(_body("re-oco-1"), "oco")
        assert placed.action is Action.OK and len(placed.data["orderId"]) == 24
        seen = await venue.look_up_oco("re-oco-1", SYMBOL)
        assert seen.kind == "found" and seen.order is not None and seen.fills == ()
        order = seen.order
        assert (order.order_id, order.client_oid, order.status, order.active) == (
            placed.data["orderId"], "re-oco-1", "NEW", True)
        assert [(leg.role, leg.price, leg.stop_price, leg.size, leg.status)
                for leg in order.legs] == [
            ("take-profit", D("105"), D("105"), D("0.5"), "NEW"),
            ("stop-loss", D("94.5"), D("95"), D("0.5"), "NEW")]
        cancelled = await venue.cancel("re-oco-1", SYMBOL, "oco", None)
        assert cancelled.action is Action.OK and len(cancelled.data["cancelledOrderIds"]) == 2
        after = await venue.look_up_oco("re-oco-1", SYMBOL)
        assert after.order is not None and after.order.status == "CANCELLED"
        assert not after.order.active
        again = await venue.cancel_oco(placed.data["orderId"], "re-oco-1")
        assert again.action is Action.ABSENT  # nothing left to cancel: not an error to retry
        assert (await venue.look_up_oco("re-oco-none", SYMBOL)).kind == "absent"


async def test_a_lookup_reads_the_fills_of_the_leg_that_traded() -> None:
    async with running() as box, kucoin(box) as venue:
        _market(box, "100", "100.2", "100.1")
        assert (await venue.place_oco(_body("re-oco-2"))).action is Action.OK
        _market(box, "93", "93.2", "94")  # through the stop: a limit sell at 94.5 rests
        _market(box, "95", "95.2", "95.1")  # the bids reach its limit: it fills
        seen = await venue.look_up_oco("re-oco-2", SYMBOL)
        assert seen.order is not None and seen.order.status == "DONE"
        [take_profit, stop] = seen.order.legs
        assert (take_profit.status, stop.status) == ("CANCELLED", "DONE")
        assert {f.order_id for f in seen.fills} == {stop.leg_id}
        size, value = seen.filled
        assert size == D("0.5") and value == sum((f.price * f.size for f in seen.fills), D(0))


@pytest.mark.parametrize(("data", "says"), [
    (None, "must be an object"),
    ({"orderId": "x", "clientOid": "c", "symbol": SYMBOL, "status": "NEW"}, "timestamp"),
    ({"orderId": "x", "clientOid": "c", "symbol": SYMBOL, "orderTime": 1, "status": "odd"},
     "not a known status"),
    ({"clientOid": "c", "symbol": SYMBOL, "orderTime": 1, "status": "NEW"}, "'orderId'"),
])
def test_a_malformed_oco_says_what_is_wrong(data: Any, says: str) -> None:
    with pytest.raises(MalformedPayload, match=says):
        parse_oco(data)


def test_a_malformed_detail_or_list_says_what_is_wrong() -> None:
    head = {"orderId": "x", "clientOid": "c", "symbol": SYMBOL, "orderTime": 1,
            "status": "NEW"}
    with pytest.raises(MalformedPayload, match="two legs"):
        parse_oco_detail({**head, "orders": [{}]})
    leg = {"id": "l", "symbol": SYMBOL, "side": "sell", "price": "1", "stopPrice": "1",
           "size": "1", "status": "NEW"}
    with pytest.raises(MalformedPayload, match="'price' is not a number"):
        parse_oco_detail({**head, "orders": [leg, {**leg, "price": "abc"}]})
    with pytest.raises(MalformedPayload, match="'side'"):
        parse_oco_detail({**head, "orders": [leg, {**leg, "side": "up"}]})
    with pytest.raises(MalformedPayload, match="totalNum"):
        parse_oco_list({"items": []})
    orders, total = parse_oco_list({"items": [head], "totalNum": 1})
    assert total == 1 and orders[0].order_id == "x"


async def test_a_lookup_of_a_malformed_reply_fails_clearly() -> None:
    """A venue that answers KuCoin's envelope with a body of the wrong shape: the lookup is
    `failed` with the reason (proves nothing, asked again), never an exception."""
    replies = {"/api/v3/oco/client-order/re-bad": {"orderId": "o1", "clientOid": "re-bad",
                                                  "symbol": SYMBOL, "orderTime": 1,
                                                  "status": "NEW"},
               "/api/v3/oco/order/details/o1": {"orderId": "o1", "clientOid": "re-bad",
                                               "symbol": SYMBOL, "orderTime": 1,
                                               "status": "NEW", "orders": "two"}}

    async def answer(request: web.Request) -> web.Response:
        data = replies.get(request.path)
        return web.json_response({"code": "200000", "data": data})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        creds = Credentials("k", Secret("s"), Secret("p"))
        async with KucoinRest(f"http://127.0.0.1:{port}", creds) as rest:
            seen = await KucoinVenue(rest).look_up_oco("re-bad", SYMBOL)
        assert seen.kind == "failed" and "'orders' with its two legs" in seen.message
    finally:
        await runner.cleanup()


async def test_a_partly_filled_take_profit_keeps_the_oco_active_until_it_is_done() -> None:
    """A fill of the limit leg cancels the stop leg and makes the OCO DONE, but the rest of
    the limit leg still rests: the OCO is not over until that ends too."""
    async with running() as box, kucoin(box) as venue:
        _market(box, "100", "100.2", "100.1")
        assert (await venue.place_oco(_body("re-oco-3"))).action is Action.OK
        state = box.state
        state.publish(state.engine.apply_feed(SYMBOL, [(D("105"), D("0.2"))],
                                              [(D("106"), D("5"))], state.now_ms()))
        seen = await venue.look_up_oco("re-oco-3", SYMBOL)
        assert seen.order is not None and seen.order.status == "DONE"
        assert [leg.status for leg in seen.order.legs] == ["NEW", "CANCELLED"]
        assert seen.order.active and seen.filled[0] == D("0.2")
        assert (await venue.cancel_oco(None, "re-oco-3")).action is Action.OK
        done = await venue.look_up_oco("re-oco-3", SYMBOL)
        assert done.order is not None and not done.order.active
