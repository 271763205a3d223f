"""The REST client against the sandbox over real sockets: orders in both families, clientOid
lookups, a 429 storm ridden out, clock skew corrected, auth failures stopping traffic."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from rules_engine.adapters.kucoin._errors import Action, Outcome
from rules_engine.adapters.kucoin._rest import KucoinOrders, KucoinRest
from rules_engine.adapters.kucoin._signing import Credentials, Secret
from rules_engine.sandbox.config import QuotaConfig, SandboxConfig
from rules_engine.sandbox.testing import RunningSandbox, serve


def creds(box: RunningSandbox, *, secret: str | None = None) -> Credentials:
    c = box.credentials()
    return Credentials(
        c["api_key"], Secret(secret or c["api_secret"]), Secret(c["api_passphrase"]), "2"
    )


@pytest.fixture
async def box() -> AsyncIterator[RunningSandbox]:
    async with serve(SandboxConfig()) as running:
        yield running


def limit_order(symbol: str = "BTC-USDT", price: str = "10000") -> dict[str, str]:
    return {
        "clientOid": "t-" + uuid.uuid4().hex[:20],
        "symbol": symbol,
        "side": "buy",
        "type": "limit",
        "price": price,
        "size": "0.001",
    }


@pytest.mark.parametrize("family", ["hf", "legacy"])
async def test_orders_are_placed_found_by_client_oid_listed_and_cancelled(
    box: RunningSandbox, family: str
) -> None:
    async with KucoinRest(box.url, creds(box)) as rest:
        assert (await rest.sync_time()).action is Action.OK
        orders = KucoinOrders(rest, family)
        first, second = limit_order(), limit_order()
        placed = await orders.place(first)
        assert placed.action is Action.OK, placed
        order_id = placed.data["orderId"]
        assert (await orders.place(second)).action is Action.OK
        found = await orders.by_client_oid(first["clientOid"], "BTC-USDT")
        assert found.action is Action.OK and found.data["id"] == order_id
        assert (await orders.by_id(order_id, "BTC-USDT")).data["clientOid"] == first["clientOid"]
        listed = await orders.active("BTC-USDT")
        ids = {item["id"] for item in listed.data["items"]}
        assert order_id in ids and len(ids) >= 2
        assert (await orders.cancel(order_id, "BTC-USDT")).action is Action.OK
        cancelled = await orders.cancel_by_client_oid(second["clientOid"], "BTC-USDT")
        assert cancelled.action is Action.OK
        again = await orders.cancel(order_id, "BTC-USDT")
        assert again.action is Action.ABSENT  # already cancelled: no such open order
        left = await orders.active("BTC-USDT")
        assert not {item["id"] for item in left.data["items"]} & {order_id}


async def test_cancel_all_for_a_symbol(box: RunningSandbox) -> None:
    async with KucoinRest(box.url, creds(box)) as rest:
        orders = KucoinOrders(rest, "hf")
        for _ in range(3):
            assert (await orders.place(limit_order())).action is Action.OK
        assert (await orders.cancel_all("BTC-USDT")).action is Action.OK
        assert (await orders.active("BTC-USDT")).data["items"] == []


async def test_family_is_detected_as_kucoin_does(box: RunningSandbox) -> None:
    """The sandbox's account is HF (`true`); an exchange answering 503 proves nothing, so the
    family is not guessed (an HF account's orders sent to the legacy endpoints would fail)."""
    from rules_engine.sandbox.config import FaultConfig

    async with KucoinRest(box.url, creds(box), attempts=1) as rest:
        assert await KucoinOrders.detect_family(rest) == "hf"
        box.state.config.faults = FaultConfig(http_5xx=True)
        with pytest.raises(ConnectionError, match="order family"):
            await KucoinOrders.detect_family(rest)


def test_the_family_of_each_kind_of_answer() -> None:
    def answer(action: Action, data: object = None) -> Outcome:
        return Outcome(action, None, "", 200, data)

    assert KucoinOrders.family_of(answer(Action.OK, True)) == "hf"
    assert KucoinOrders.family_of(answer(Action.OK, False)) == "legacy"
    assert KucoinOrders.family_of(answer(Action.REJECT)) == "legacy"  # no such endpoint
    for transient in (Action.RETRY, Action.UNKNOWN, Action.NOT_SENT):
        assert KucoinOrders.family_of(answer(transient)) is None


async def test_a_duplicate_client_oid_says_adopt_it(box: RunningSandbox) -> None:
    async with KucoinRest(box.url, creds(box)) as rest:
        orders = KucoinOrders(rest, "hf")
        order = limit_order()
        assert (await orders.place(order)).action is Action.OK
        assert (await orders.place(order)).action is Action.DUPLICATE


async def test_a_429_storm_is_ridden_out_without_losing_a_request() -> None:
    config = SandboxConfig(quotas=QuotaConfig(spot=12, public=2000, window_ms=300))
    async with serve(config) as box, KucoinRest(box.url, creds(box)) as rest:
        orders = KucoinOrders(rest, "hf")
        wanted = [limit_order(price=str(10000 + n)) for n in range(30)]
        results = await asyncio.gather(*(orders.place(o) for o in wanted))
        assert [r.action for r in results] == [Action.OK] * 30
        assert rest.seen[Action.NOT_SENT] > 0  # the storm happened, and was ridden out
        listed = await orders.active("BTC-USDT", page_size=100)
        got = {item["clientOid"] for item in listed.data["items"]}
        assert got == {o["clientOid"] for o in wanted}  # each placed exactly once


async def test_a_skewed_local_clock_is_corrected_from_the_server(box: RunningSandbox) -> None:
    skew = 60_000  # the local clock is a minute fast: every signature would be refused
    import time

    async with KucoinRest(
        box.url, creds(box), wall_ms=lambda: time.time_ns() // 1_000_000 + skew
    ) as rest:
        orders = KucoinOrders(rest, "hf")
        outcome = await orders.place(limit_order())  # 400002 -> resync -> sent again
        assert outcome.action is Action.OK
        assert abs(rest.offset_ms + skew) < 2_000


async def test_an_auth_failure_stops_signed_traffic(box: RunningSandbox) -> None:
    async with KucoinRest(box.url, creds(box, secret="wrong-secret")) as rest:
        orders = KucoinOrders(rest, "hf")
        first = await orders.place(limit_order())
        # a wrong secret breaks the passphrase HMAC too: 400004 (or 400005 for the signature)
        assert first.action is Action.STOP and first.code in ("400004", "400005")
        second = await orders.active("BTC-USDT")
        assert second is first  # not sent at all: the client stopped itself
        assert "wrong-secret" not in repr(rest.__dict__) and "wrong-secret" not in str(first)


async def test_an_unreachable_exchange_is_an_outcome_not_a_crash() -> None:
    async with KucoinRest(
        "http://127.0.0.1:9", None, attempts=2, sleep=lambda s: asyncio.sleep(0)
    ) as rest:
        outcome = await rest.call("GET", "/api/v1/timestamp")
        assert outcome.action is Action.RETRY and "Connect" in outcome.message


async def test_the_server_time_is_measured_again_periodically(box: RunningSandbox) -> None:
    async with KucoinRest(box.url) as rest:
        stop = asyncio.Event()
        task = asyncio.create_task(rest.keep_time(stop, every=0.05))
        for _ in range(100):
            if rest.time_syncs >= 3:
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 5)
        assert rest.time_syncs >= 3 and abs(rest.offset_ms) < 2_000
