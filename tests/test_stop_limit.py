"""Stop-limit orders: `place stop sell 0.01 at 61000 limit 60900`, from the text to the body.

Lint checks the trigger and the limit against the symbol's ticks and against each other; a pair
only known when the rule fires is resolved, rounded and checked then; the body is KuCoin's stop
order with a limit price. The watcher's run against the sandbox is in tests/test_watcher.py."""

from __future__ import annotations

from decimal import Decimal

from rules_engine.compiler import compile_sources, shipped_symbols
from rules_engine.compiler import model as M
from rules_engine.dsl import SourceFile
from rules_engine.engine import Blocked, OrderIntent, order_body, resolve_order

BTC = shipped_symbols()["BTC-USDT"]  # priceIncrement 0.1
MARKET = {
    M.Field("BTC-USDT", "bid"): Decimal("60000.07"),
    M.Field("BTC-USDT", "ask"): Decimal("60000.13"),
    M.Field("BTC-USDT", "last"): Decimal("60000.1"),
}


def lint(place: str, when: str = "last < 62000") -> list[tuple[str, str]]:
    text = f"rule r on BTC-USDT:\n    when {when}\n    {place}\n"
    program = compile_sources([SourceFile("t.rules", text)])
    return [(d.code, d.message) for d in program.diagnostics]


def spec(place: str, when: str = "last < 62000") -> M.OrderSpec:
    text = f"rule r on BTC-USDT:\n    when {when}\n    {place}\n"
    program = compile_sources([SourceFile("t.rules", text)])
    assert program.errors == (), program.errors
    order = program.by_identity["r"].order
    assert order is not None
    return order


def test_a_stop_limit_compiles_with_its_trigger_and_its_limit() -> None:
    order = spec("place stop sell 0.01 at 61000 limit 60900")
    assert (order.order_type, order.price, order.limit) == (
        "stop", M.Const(Decimal(61000)), M.Const(Decimal(60900)))
    assert lint("place stop sell 0.01 at 61000 limit 61000") == []  # at the trigger: allowed
    buy = spec("place stop buy 0.01 at 63000 limit 63100 post-only", when="last > 60000")
    assert (buy.side, buy.limit, buy.post_only) == ("buy", M.Const(Decimal(63100)), True)


def test_a_plain_stop_keeps_its_canonical_text_and_identity() -> None:
    order = spec("place stop sell 0.01 at 61000")
    assert order.limit is None and "limit" not in repr(order)
    assert "limit=Const(value=Decimal('6.09E+4'))" in repr(
        spec("place stop sell 0.01 at 61000 limit 60900"))


def test_a_limit_on_the_wrong_side_of_the_trigger_is_an_error() -> None:
    [(code, message)] = lint("place stop sell 0.01 at 61000 limit 61100")
    assert code == "E314" and "sell's limit is above its trigger" in message
    [(code, message)] = lint("place stop buy 0.01 at 63000 limit 62900", when="last > 60000")
    assert code == "E314" and "buy's limit is below its trigger" in message
    # written relative to the same price, decided for every price
    [(code, _)] = lint("place stop sell 0.01 at last - 1% limit last - 0.5%")
    assert code == "E314"
    assert lint("place stop sell 0.01 at last - 1% limit last - 1.5%") == []
    # different anchors are not decided by lint (see the firing below)
    assert lint("place stop sell 0.01 at 59000 limit last - 1%") == []


def test_trigger_and_limit_are_checked_against_the_symbols_ticks() -> None:
    found = lint("place stop sell 0.01 at 61000.05 limit 60900.05")
    assert sorted(code for code, _ in found) == ["E304", "E304"]
    messages = sorted(m for _, m in found)
    assert messages[0].startswith("limit price 60900.05 is not a multiple") and (
        messages[0].endswith("write 60900.1"))
    assert messages[1].startswith("trigger price 61000.05 is not a multiple")


def test_limit_belongs_to_stop_orders_only() -> None:
    [(code, message)] = lint("place limit sell 0.01 at 63000 limit 62900")
    assert code == "E309" and "a limit order's price is its `at`" in message
    [(code, _)] = lint("place market sell 0.01 limit 62900")
    assert code == "E309"
    # options stay limit-only for a plain stop
    [(code, _)] = lint("place stop sell 0.01 at 61000 hidden")
    assert code == "E308"


def test_the_limit_is_rounded_like_a_limit_price_when_the_rule_fires() -> None:
    sell = resolve_order(spec("place stop sell 0.01 at last - 1% limit last - 1.05%"), MARKET, BTC)
    assert isinstance(sell, OrderIntent)
    assert (sell.stop_price, sell.price) == (Decimal("59400.1"), Decimal("59370.1"))
    buy = resolve_order(spec("place stop buy 0.01 at last + 1% limit last + 1.05%",
                             when="last > 1"), MARKET, BTC)
    assert isinstance(buy, OrderIntent)
    assert (buy.stop_price, buy.price) == (Decimal("60600.1"), Decimal("60630.1"))


def test_a_pair_on_the_wrong_side_only_when_it_fires_is_blocked() -> None:
    result = resolve_order(spec("place stop sell 0.01 at 59000 limit last - 1%"), MARKET, BTC)
    assert isinstance(result, Blocked)
    assert result.reason == ("the limit price 59400.1 is above the trigger 59000: a stop sell's "
                             "limit belongs at or below its trigger")
    stale = resolve_order(spec("place stop sell 0.01 at 59000 limit last - 3%"), {}, BTC)
    assert stale == Blocked("the order's limit price depends on data that is not fresh")


def test_the_body_is_a_kucoin_stop_order_with_a_limit_price() -> None:
    intent = resolve_order(spec("place stop sell 0.01 at 61000 limit 60900 hidden"), MARKET, BTC)
    assert isinstance(intent, OrderIntent)
    assert order_body(intent, "re1-sl", family="stop", server_ms=1) == {
        "clientOid": "re1-sl", "symbol": "BTC-USDT", "side": "sell", "type": "limit",
        "stop": "loss", "stopPrice": "61000", "price": "60900", "size": "0.01",
        "timeInForce": "GTC", "hidden": True,
    }
    market = resolve_order(spec("place stop buy 0.01 at 63000", when="last > 60000"),
                           MARKET, BTC)
    assert isinstance(market, OrderIntent)
    assert order_body(market, "re1-sm", family="stop", server_ms=1) == {
        "clientOid": "re1-sm", "symbol": "BTC-USDT", "side": "buy", "type": "market",
        "stop": "entry", "stopPrice": "63000", "size": "0.01",
    }
