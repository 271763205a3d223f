"""OCO orders on the sandbox over real sockets: holds, one leg cancelling the other on a fill
or a trigger, partial fills, cancels, the detail and list, the journal across a restart."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

from sandbox_support import Sandbox, running

from rules_engine.sandbox.clock import ManualClock
from rules_engine.sandbox.config import SandboxConfig
from rules_engine.sandbox.engine import OrderEvent, StopEvent
from rules_engine.sandbox.state import SandboxState, build_state

D = Decimal
SYMBOL = "BTC-USDT"


def _move(box: Sandbox, bid: str, ask: str, last: str | None = None,
          size: str = "5") -> list[Any]:
    """The whole market becomes one bid and one ask (and a print at `last`)."""
    state = box.state
    trade = (D(last), D("0.001"), "sell") if last is not None else None
    events = state.engine.apply_feed(SYMBOL, [(D(bid), D(size))], [(D(ask), D(size))],
                                     state.now_ms(), trade)
    state.publish(events)
    return events


def _quiet(state: SandboxState) -> None:
    """Seed every book of a restored sandbox with a market far from the OCO's prices before
    it starts (else its start-up seeds them from the synthetic feed, whose prices would
    cross the restored limit leg at once)."""
    for symbol in state.symbols:
        state.engine.apply_feed(symbol, [(D("100"), D("5"))], [(D("100.2"), D("5"))],
                                state.now_ms())


async def _balance(box: Sandbox, currency: str) -> tuple[Decimal, Decimal]:
    rows = await box.ok("GET", "/api/v1/accounts", {"currency": currency, "type": "trade"})
    return D(rows[0]["available"]), D(rows[0]["holds"])


async def _sell_oco(box: Sandbox, cid: str, size: str = "0.5") -> str:
    _move(box, "100", "100.2", "100.1")
    data = await box.ok("POST", "/api/v3/oco/order", body={
        "symbol": SYMBOL, "side": "sell", "price": "105", "size": size, "stopPrice": "95",
        "limitPrice": "94.5", "clientOid": cid, "remark": "bracket"})
    assert set(data) == {"orderId"} and len(data["orderId"]) == 24
    oco_id: str = data["orderId"]
    return oco_id


async def test_a_sell_oco_holds_its_base_once_and_shows_both_legs() -> None:
    async with running() as box:
        before, _ = await _balance(box, "BTC")
        oco_id = await _sell_oco(box, "oco-hold")
        available, held = await _balance(box, "BTC")
        assert held == D("0.5") and available == before - D("0.5")
        detail = await box.ok("GET", f"/api/v3/oco/order/details/{oco_id}")
        assert detail["status"] == "NEW" and detail["clientOid"] == "oco-hold"
        limit, stop = detail["orders"]
        assert limit["id"].startswith("vs") and stop["id"].startswith("vs")
        assert (limit["price"], limit["stopPrice"], limit["status"]) == ("105", "105", "NEW")
        assert (stop["price"], stop["stopPrice"], stop["status"]) == ("94.5", "95", "NEW")
        # The stop leg is one of the account's stop orders, naming its OCO.
        row = await box.ok("GET", f"/api/v1/stop-order/{stop['id']}")
        assert row["relatedNo"] == oco_id and row["limitPrice"] == "94.5"
        # The limit leg rests on the book.
        book = await box.ok("GET", "/api/v1/market/orderbook/level2_20", {"symbol": SYMBOL},
                            signed=False)
        assert ["105", "0.5"] in book["asks"]
        # Both legs cannot spend the coins twice: the rest of the BTC is all that is left.
        status, body, _ = await box.call("POST", "/api/v3/oco/order", body={
            "symbol": SYMBOL, "side": "sell", "price": "105", "size": str(available + 1),
            "stopPrice": "95", "limitPrice": "94.5", "clientOid": "oco-too-big"})
        assert status == 200 and body["code"] == "200004"


async def test_a_limit_leg_fill_cancels_the_stop_leg_in_the_same_step() -> None:
    async with running() as box:
        oco_id = await _sell_oco(box, "oco-fill")
        detail = await box.ok("GET", f"/api/v3/oco/order/details/{oco_id}")
        limit_id, stop_id = (leg["id"] for leg in detail["orders"])
        # The market rises through 105: a bid of 0.2 there takes part of the limit leg.
        events = _move(box, "105", "105.5", size="0.2")
        kinds = [(type(e).__name__, e.order.id, e.type) for e in events
                 if isinstance(e, OrderEvent | StopEvent)]
        assert ("OrderEvent", limit_id, "match") in kinds
        assert ("StopEvent", stop_id, "cancel") in kinds
        row = await box.ok("GET", f"/api/v3/oco/order/{oco_id}")
        assert row["status"] == "DONE"
        detail = await box.ok("GET", f"/api/v3/oco/order/details/{oco_id}")
        assert [leg["status"] for leg in detail["orders"]] == ["NEW", "CANCELLED"]
        _, held = await _balance(box, "BTC")
        assert held == D("0.3")  # what is left of the limit leg, still resting
        order = await box.ok("GET", f"/api/v1/orders/{limit_id}")
        assert order["dealSize"] == "0.2" and order["isActive"] is True
        # A fall through the old stop changes nothing now: the stop leg is gone.
        _move(box, "90", "90.5", "90")
        assert (await box.ok("GET", f"/api/v1/stop-order/{stop_id}"))["status"] == "CANCELLED"
        # Cancelling the OCO takes what is left of the limit leg.
        cancelled = await box.ok("DELETE", f"/api/v3/oco/order/{oco_id}")
        assert cancelled == {"cancelledOrderIds": [limit_id]}
        assert await _balance(box, "BTC") == (D("0.8"), D("0"))
        status, body, _ = await box.call("DELETE", f"/api/v3/oco/order/{oco_id}")
        assert status == 200 and body["code"] == "400100"


async def test_a_stop_leg_trigger_cancels_the_limit_leg_then_rests_and_fills() -> None:
    async with running() as box:
        oco_id = await _sell_oco(box, "oco-stop")
        detail = await box.ok("GET", f"/api/v3/oco/order/details/{oco_id}")
        limit_id, stop_id = (leg["id"] for leg in detail["orders"])
        # A print at 95 triggers the stop leg; no bid at 94.5 or above: its order rests.
        events = _move(box, "94", "95", "95")
        kinds = [(e.order.id, e.type) for e in events if isinstance(e, OrderEvent | StopEvent)]
        assert kinds.index((limit_id, "canceled")) < kinds.index((stop_id, "triggered"))
        assert (stop_id, "open") in kinds
        assert (await box.ok("GET", f"/api/v3/oco/order/{oco_id}"))["status"] == "TRIGGERED"
        assert await _balance(box, "BTC") == (D("0.5"), D("0.5"))  # still held once
        detail = await box.ok("GET", f"/api/v3/oco/order/details/{oco_id}")
        assert [leg["status"] for leg in detail["orders"]] == ["CANCELLED", "TRIGGERED"]
        # The market comes back up to 94.5: the triggered order sells.
        _move(box, "94.5", "94.7")
        assert (await box.ok("GET", f"/api/v3/oco/order/{oco_id}"))["status"] == "DONE"
        order = await box.ok("GET", f"/api/v1/orders/{stop_id}")
        assert order["dealSize"] == "0.5" and order["price"] == "94.5"
        assert await _balance(box, "BTC") == (D("0.5"), D("0"))
        fills = await box.ok("GET", "/api/v1/fills", {"orderId": stop_id})
        assert [f["size"] for f in fills["items"]] == ["0.5"]
        assert not (await box.ok("GET", "/api/v1/fills", {"orderId": limit_id}))["items"]


async def test_a_buy_oco_holds_for_the_dearer_leg_and_a_trigger_fills_at_once() -> None:
    async with running() as box:
        _move(box, "100", "100.2", "100.1")
        before, _ = await _balance(box, "USDT")
        data = await box.ok("POST", "/api/v3/oco/order", body={
            "symbol": SYMBOL, "side": "buy", "price": "95", "size": "1", "stopPrice": "104",
            "limitPrice": "105", "clientOid": "oco-buy", "tradeType": "TRADE"})
        oco_id = data["orderId"]
        available, held = await _balance(box, "USDT")
        assert held == D("105") * D("1.001") and available == before - held
        _move(box, "103.9", "104", "104")  # the stop leg fires and buys at the 104 ask
        assert (await box.ok("GET", f"/api/v3/oco/order/{oco_id}"))["status"] == "DONE"
        available, held = await _balance(box, "USDT")
        assert held == 0 and available == before - D("104") * D("1.001")


async def test_queries_lists_cancels_and_codes() -> None:
    async with running(clock=ManualClock()) as box:
        first = await _sell_oco(box, "oco-a", "0.1")
        box.state.clock.advance(1000)  # type: ignore[attr-defined]
        second = await _sell_oco(box, "oco-b", "0.1")
        by_cid = await box.ok("GET", "/api/v3/oco/client-order/oco-b")
        assert by_cid == {"orderId": second, "symbol": SYMBOL, "clientOid": "oco-b",
                          "orderTime": by_cid["orderTime"], "status": "NEW"}
        page = await box.ok("GET", "/api/v3/oco/orders", {"symbol": SYMBOL})
        assert [i["orderId"] for i in page["items"]] == [second, first]  # newest first
        assert (page["totalNum"], page["pageSize"], page["currentPage"]) == (2, 50, 1)
        only = await box.ok("GET", "/api/v3/oco/orders", {"orderIds": first, "pageSize": 10})
        assert [i["orderId"] for i in only["items"]] == [first]
        none = await box.ok("GET", "/api/v3/oco/orders", {"startAt": by_cid["orderTime"] + 1})
        assert none["items"] == []
        for path in ("/api/v3/oco/order/5a5a5a5a0000000000000fff",
                     "/api/v3/oco/client-order/nobody",
                     "/api/v3/oco/order/details/5a5a5a5a0000000000000fff"):
            status, body, _ = await box.call("GET", path)
            assert status == 200 and body["code"] == "126043", path
        status, body, _ = await box.call("DELETE", "/api/v3/oco/client-order/nobody")
        assert body["code"] == "400100"
        status, body, _ = await box.call("POST", "/api/v3/oco/order", body={
            "symbol": SYMBOL, "side": "sell", "price": "105", "size": "0.1", "stopPrice": "95",
            "limitPrice": "94.5", "clientOid": "oco-a"})
        assert body == {"code": "400100", "msg": "validation.createOrder.clientOidDuplicated"}
        status, body, _ = await box.call("POST", "/api/v3/oco/order", body={
            "symbol": SYMBOL, "side": "sell", "price": "95", "size": "0.1", "stopPrice": "105",
            "limitPrice": "94.5", "clientOid": "oco-c"})
        assert body["code"] == "400100" and "below its price" in body["msg"]
        status, body, _ = await box.call("POST", "/api/v3/oco/order", body={
            "symbol": SYMBOL, "side": "sell", "price": "105", "size": "0.1",
            "limitPrice": "94.5", "clientOid": "oco-d"})
        assert body == {"code": "400100", "msg": "stopPrice is required"}
        gone = await box.ok("DELETE", "/api/v3/oco/client-order/oco-a")
        detail = await box.ok("GET", f"/api/v3/oco/order/details/{first}")
        assert gone["cancelledOrderIds"] == [leg["id"] for leg in detail["orders"]]
        assert detail["status"] == "CANCELLED"
        third = await _sell_oco(box, "oco-e", "0.1")
        batch = await box.ok("DELETE", "/api/v3/oco/orders",
                             {"symbol": SYMBOL, "orderIds": f"{second},{first}"})
        assert len(batch["cancelledOrderIds"]) == 2  # the first was already over
        rest = await box.ok("DELETE", "/api/v3/oco/orders")
        assert len(rest["cancelledOrderIds"]) == 2
        assert (await box.ok("GET", f"/api/v3/oco/order/{third}"))["status"] == "CANCELLED"
        assert await _balance(box, "BTC") == (D("1"), D("0"))


async def test_an_oco_survives_a_restart_from_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    killed = tmp_path / "killed"
    killed.mkdir()
    clock = ManualClock()
    first = build_state(SandboxConfig(), state_file=path, clock=clock)
    async with running(state=first) as box:
        oco_id = await _sell_oco(box, "oco-kept")
        await box.state.settled()
        # What a SIGKILL leaves now: the snapshot from start-up and the journal since.
        journal = (tmp_path / "state.json.journal").read_bytes()
        assert b"oco-kept" in journal
        shutil.copy(path, killed / "state.json")
        (killed / "state.json.journal").write_bytes(journal)
    assert first.journal is not None
    first.journal.close()
    second = build_state(SandboxConfig(), state_file=killed / "state.json", clock=clock)
    _quiet(second)
    async with running(state=second) as box:
        assert (await box.ok("GET", "/api/v3/oco/client-order/oco-kept"))["orderId"] == oco_id
        assert await _balance(box, "BTC") == (D("0.5"), D("0.5"))
        detail = await box.ok("GET", f"/api/v3/oco/order/details/{oco_id}")
        assert [leg["status"] for leg in detail["orders"]] == ["NEW", "NEW"]
        limit_id, stop_id = (leg["id"] for leg in detail["orders"])
        _move(box, "94", "95", "95")  # the restored stop leg still fires
        assert (await box.ok("GET", f"/api/v3/oco/order/{oco_id}"))["status"] == "TRIGGERED"
        assert (await box.ok("GET", f"/api/v1/orders/{limit_id}"))["isActive"] is False
        assert (await box.ok("GET", f"/api/v1/orders/{stop_id}"))["isActive"] is True
        await box.state.settled()
    assert second.journal is not None
    second.journal.close()
    # A clean stop folded it into the snapshot: a third start still has the triggered order
    # resting at 94.5, and the bid at 100 it starts with takes it.
    third = build_state(SandboxConfig(), state_file=killed / "state.json", clock=clock)
    assert third.engine.orders[stop_id].active
    _quiet(third)
    async with running(state=third) as box:
        assert (await box.ok("GET", f"/api/v3/oco/order/{oco_id}"))["status"] == "DONE"
        assert (await box.ok("GET", f"/api/v1/orders/{stop_id}"))["dealSize"] == "0.5"
    assert third.journal is not None
    third.journal.close()


async def test_each_leg_pushes_its_own_events_on_the_private_channel() -> None:
    async with running() as box:
        bullet = await box.ok("POST", "/api/v1/bullet-private")
        server = bullet["instanceServers"][0]
        ws = await box.http.ws_connect(f"{server['endpoint']}?token={bullet['token']}"
                                       "&connectId=c1")
        assert (await ws.receive_json(timeout=2))["type"] == "welcome"
        for n, topic in enumerate(("/spotMarket/advancedOrders", "/spotMarket/tradeOrdersV2")):
            await ws.send_json({"id": str(n), "type": "subscribe", "topic": topic,
                                "privateChannel": True, "response": True})
            assert (await ws.receive_json(timeout=2))["type"] == "ack"
        oco_id = await _sell_oco(box, "oco-ws")
        detail = await box.ok("GET", f"/api/v3/oco/order/details/{oco_id}")
        limit_id, stop_id = (leg["id"] for leg in detail["orders"])
        _move(box, "94", "95", "95")  # the stop leg fires: the limit leg goes, its order rests
        await box.state.settled()
        seen: list[tuple[str, str, str]] = []
        while True:
            try:
                message = await ws.receive_json(timeout=0.2)
            except TimeoutError:
                break
            data = message["data"]
            seen.append((message["topic"].split("/")[-1], data["orderId"], data["type"]))
        await ws.close()
        assert seen == [
            ("advancedOrders", stop_id, "open"),
            ("tradeOrdersV2", limit_id, "received"), ("tradeOrdersV2", limit_id, "open"),
            ("tradeOrdersV2", limit_id, "canceled"),
            ("advancedOrders", stop_id, "triggered"),
            ("tradeOrdersV2", stop_id, "received"), ("tradeOrdersV2", stop_id, "open"),
        ]
