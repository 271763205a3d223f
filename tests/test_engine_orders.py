"""Orders resolved when a rule fires: rounding in the trader's favour, limits, fresh inputs."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rules_engine.compiler import compile_sources, shipped_symbols
from rules_engine.compiler import model as M
from rules_engine.dsl import SourceFile
from rules_engine.engine import Blocked, Fill, OrderIntent, resolve_order

BTC = shipped_symbols()["BTC-USDT"]  # priceIncrement 0.1, baseIncrement 1e-8, minFunds 0.1
MARKET = {
    M.Field("BTC-USDT", "bid"): Decimal("60000.07"),
    M.Field("BTC-USDT", "ask"): Decimal("60000.13"),
    M.Field("BTC-USDT", "last"): Decimal("60000.1"),
}


def order(place: str, *, chained: bool = False) -> M.OrderSpec:
    head = "rule p on BTC-USDT:\n    when bid > 1\n    place limit buy 0.01 at 60000\n"
    head = head if chained else ""
    trigger = "    after p filled\n" if chained else "    when bid > 1\n"
    text = f"{head}rule r on BTC-USDT:\n{trigger}    {place}\n"
    program = compile_sources([SourceFile("t.rules", text)])
    assert program.errors == (), program.errors
    spec = program.by_identity["r"].order
    assert spec is not None
    return spec


def resolved(place: str, **kw: object) -> OrderIntent:
    result = resolve_order(order(place, chained="fill" in place), MARKET, BTC, **kw)  # type: ignore[arg-type]
    assert isinstance(result, OrderIntent), result
    return result


def test_limit_prices_round_in_the_traders_favour() -> None:
    assert resolved("place limit buy 0.01 at bid - 0.01").price == Decimal("60000.0")
    assert resolved("place limit sell 0.01 at ask + 0.01").price == Decimal("60000.2")


def test_a_limit_order_without_a_price_joins_its_own_side() -> None:
    assert resolved("place limit buy 0.01").price == Decimal("60000.0")
    assert resolved("place limit sell 0.01").price == Decimal("60000.2")


def test_stop_triggers_round_toward_the_market() -> None:
    intent = resolved("place stop sell 0.01 at last - 0.05%")
    assert intent.stop_price == Decimal("59970.1")  # 59970.0495 rounded up, toward the market
    assert intent.price is None


def test_sizes_and_funds_round_down() -> None:
    # bid / 486000 = 0.123456934...: lint cannot know it, the firing rounds it down
    assert resolved("place limit buy bid / 486000 at 60000").size == Decimal("0.12345693")
    intent = resolved("place market buy last / 6000 USDT")  # 10.0000166...
    assert (intent.funds, intent.size) == (Decimal("10.000016"), None)


def test_funds_of_a_limit_order_become_a_size_at_its_price() -> None:
    assert resolved("place limit buy 100 USDT at 50000").size == Decimal("0.002")


def test_shares_use_the_available_balance_of_what_is_spent() -> None:
    buy = resolved("place market buy 50% of USDT", balances={"USDT": Decimal(1000)})
    assert buy.funds == Decimal(500)
    sell = resolved("place market sell 25% of BTC", balances={"BTC": Decimal("0.5")})
    assert sell.size == Decimal("0.125")
    blocked = resolve_order(order("place market buy 50% of USDT"), MARKET, BTC)
    assert isinstance(blocked, Blocked) and "balance" in blocked.reason


def test_fill_values_come_from_the_parent_order() -> None:
    fill = Fill(Decimal("57990"), Decimal("0.01"))
    intent = resolve_order(
        order("place limit sell filled_size at fill_price + 3%", chained=True),
        MARKET,
        BTC,
        fill=fill,
    )
    assert isinstance(intent, OrderIntent)
    assert (intent.size, intent.price) == (Decimal("0.01"), Decimal("59729.7"))


@pytest.mark.parametrize(
    ("place", "reason"),
    [
        ("place limit buy bid / 10000000000 at bid", "baseMinSize"),
        ("place limit buy 0.00001 at bid / 10000", "minFunds"),
        ("place limit buy 0.01 at sma(20, 1h)", "not fresh"),
        ("place limit buy 0.01 at bid - 70000", "not above zero"),
    ],
)
def test_orders_that_break_a_limit_are_blocked_with_the_reason(place: str, reason: str) -> None:
    result = resolve_order(order(place), MARKET, BTC)
    assert isinstance(result, Blocked) and reason in result.reason


def test_a_share_too_small_for_quote_min_size_is_blocked() -> None:
    result = resolve_order(
        order("place market buy 1% of USDT"), MARKET, BTC, balances={"USDT": Decimal(5)}
    )
    assert isinstance(result, Blocked) and "quoteMinSize" in result.reason
