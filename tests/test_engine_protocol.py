"""The firing protocol's decisions, and an intent sent as a real order to the sandbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from rules_engine.adapters.kucoin._errors import Action
from rules_engine.adapters.kucoin._rest import KucoinOrders, KucoinRest
from rules_engine.adapters.kucoin._signing import Credentials, Secret
from rules_engine.compiler import compile_sources, shipped_symbols
from rules_engine.compiler import model as M
from rules_engine.dsl import SourceFile
from rules_engine.engine import (
    Lookup,
    OrderIntent,
    Resolution,
    deadline,
    order_body,
    resolve_order,
    resolve_unknown,
)
from rules_engine.sandbox.config import SandboxConfig
from rules_engine.sandbox.testing import serve

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_found_is_adopted_at_once() -> None:
    assert resolve_unknown([Lookup("failed", s(1)), Lookup("found", s(2))], s(30)) is (
        Resolution.ADOPT
    )


def test_not_found_counts_only_after_the_deadline_and_when_two_lookups_agree() -> None:
    deadline_at = s(20)
    assert resolve_unknown([Lookup("absent", s(5)), Lookup("absent", s(10))], deadline_at) is (
        Resolution.WAIT
    )  # before the deadline the order may still arrive
    assert resolve_unknown([Lookup("absent", s(21))], deadline_at) is Resolution.WAIT
    assert resolve_unknown([Lookup("absent", s(21)), Lookup("failed", s(22))], deadline_at) is (
        Resolution.WAIT
    )  # a failed lookup proves nothing
    assert resolve_unknown([Lookup("absent", s(21)), Lookup("absent", s(25))], deadline_at) is (
        Resolution.NOT_PLACED
    )


def test_without_a_deadline_an_unknown_order_waits_for_the_exchange_or_a_person() -> None:
    lookups = [Lookup("absent", s(n)) for n in range(1, 100, 10)]
    assert resolve_unknown(lookups, None) is Resolution.WAIT


def test_only_hf_orders_have_a_deadline() -> None:
    assert deadline("hf", T0, 10_000, 5) == s(15)
    assert deadline("legacy", T0, 10_000, 5) is None


def test_order_bodies_carry_kucoins_fields() -> None:
    limit = OrderIntent(
        "BTC-USDT",
        "buy",
        "limit",
        Decimal("0.01"),
        None,
        Decimal("59000.0"),
        None,
        None,
        "GTC",
        True,
        False,
    )
    body = order_body(limit, "re1-x", family="hf", server_ms=1700000000000)
    assert body == {
        "clientOid": "re1-x",
        "symbol": "BTC-USDT",
        "side": "buy",
        "type": "limit",
        "price": "59000.0",
        "size": "0.01",
        "timeInForce": "GTC",
        "postOnly": True,
        "clientTimestamp": 1700000000000,
        "allowMaxTimeWindow": 10_000,
    }
    market = OrderIntent(
        "BTC-USDT", "buy", "market", None, Decimal("100"), None, None, None, "GTC", False, False
    )
    assert order_body(market, "re1-y", family="legacy", server_ms=0) == {
        "clientOid": "re1-y",
        "symbol": "BTC-USDT",
        "side": "buy",
        "type": "market",
        "funds": "100",
    }


async def test_a_fired_rule_becomes_an_acknowledged_order_and_a_late_one_is_refused() -> None:
    rule = compile_sources(
        [SourceFile("r.rules", "when BTC-USDT bid < 1000000 place limit buy 0.001 at bid - 10%\n")]
    ).rules[0]
    assert rule.order is not None
    market = {M.Field("BTC-USDT", "bid"): Decimal("60000")}
    intent = resolve_order(rule.order, market, shipped_symbols()["BTC-USDT"])
    assert isinstance(intent, OrderIntent) and intent.price == Decimal("54000.0")
    async with serve(SandboxConfig()) as box:
        c = box.credentials()
        creds = Credentials(c["api_key"], Secret(c["api_secret"]), Secret(c["api_passphrase"]))
        async with KucoinRest(box.url, creds) as rest:
            await rest.sync_time()
            orders = KucoinOrders(rest, "hf")
            body = order_body(intent, "re-proto-1", family="hf", server_ms=rest.server_ms())
            assert (await orders.place(body)).action is Action.OK
            found = await orders.by_client_oid("re-proto-1", "BTC-USDT")
            assert found.action is Action.OK
            assert resolve_unknown([Lookup("found", T0)], None) is Resolution.ADOPT
            # A request that reaches the gateway after its window is refused, never placed.
            late = order_body(
                intent,
                "re-proto-2",
                family="hf",
                server_ms=rest.server_ms() - 60_000,
                window_ms=1_000,
            )
            refused = await orders.place(late)
            assert (refused.action, refused.code) == (Action.UNKNOWN, "126041")
            # ... and the protocol proves it absent by looking it up, as for any unknown order.
            absent = await orders.by_client_oid("re-proto-2", "BTC-USDT")
            assert absent.action is Action.ABSENT
