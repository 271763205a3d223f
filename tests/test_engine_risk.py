"""Risk limits: valuing an order (walking the book for market orders) and each limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from rules_engine.engine import OrderIntent
from rules_engine.engine._risk import Exposure, Limits, check, value_order

D = Decimal
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ASKS = [(D("100"), D("1")), (D("101"), D("2")), (D("105"), D("10"))]


def order(kind: str = "limit", side: str = "buy", size: str | None = "1", *,
          funds: str | None = None, price: str | None = "100",
          stop: str | None = None) -> OrderIntent:
    return OrderIntent("BTC-USDT", side, kind, D(size) if size else None,
                       D(funds) if funds else None, D(price) if price else None,
                       D(stop) if stop else None, None, "GTC", False, False)


def test_limit_and_stop_orders_are_worth_price_times_size() -> None:
    assert value_order(order(size="0.5", price="60000"), None) == D("30000.0")
    assert value_order(order("stop", "sell", "2", price=None, stop="10"), None) == D("20")


def test_a_market_order_by_size_is_valued_by_walking_the_far_side() -> None:
    assert value_order(order("market", size="2", price=None), ASKS) == D("201")  # 100 + 101
    assert value_order(order("market", size="20", price=None), ASKS) == (
        "the book holds less than the order would take")
    assert value_order(order("market", size="2", price=None), None) == (
        "a market order by size needs a live book to be valued")


def test_slippage_beyond_the_cap_blocks_a_market_order() -> None:
    cheap = order("market", size="2", price=None)  # average 100.5: 0.5% from 100
    assert value_order(cheap, ASKS, D("0.01")) == D("201")
    reason = value_order(cheap, ASKS, D("0.004"))
    assert isinstance(reason, str) and "max_slippage" in reason
    by_funds = order("market", size=None, funds="1000", price=None)  # walks into 105
    assert isinstance(value_order(by_funds, ASKS, D("0.02")), str)
    assert value_order(by_funds, ASKS, D("0.05")) == D("1000")


def test_each_limit_names_itself_when_it_blocks() -> None:
    exposure = Exposure()
    intent = order()
    assert check(intent, D(100), "r", limits=Limits(max_order_notional=D(99)),
                 exposure=exposure, now=T0) == (
        "order value 100 is above risk.max_order_notional 99")
    # A product of normalised operands (0.001 x 5E+4) reads as a person writes it.
    assert check(intent, D("0.001") * D("5E+4"), "r", limits=Limits(
        max_order_notional=D("10.50")), exposure=exposure, now=T0) == (
        "order value 50 is above risk.max_order_notional 10.5")
    assert "allowed_symbols" in str(check(intent, D(1), "r", limits=Limits(
        allowed_symbols=frozenset({"ETH-USDT"})), exposure=exposure, now=T0))
    exposure.add("r", T0.date(), D(150))
    assert "max_rule_notional" in str(check(intent, D(100), "r", limits=Limits(
        max_rule_notional=D(200)), exposure=exposure, now=T0))
    assert check(intent, D(100), "other", limits=Limits(max_rule_notional=D(200)),
                 exposure=exposure, now=T0) is None
    assert "max_daily_notional" in str(check(intent, D(100), "other", limits=Limits(
        max_daily_notional=D(200)), exposure=exposure, now=T0))
    tomorrow = T0 + timedelta(days=1)
    assert check(intent, D(100), "other", limits=Limits(max_daily_notional=D(200)),
                 exposure=exposure, now=tomorrow) is None
    assert "max_open_orders 1" in str(check(intent, D(1), "r", limits=Limits(
        max_open_orders=1), exposure=exposure, now=T0))


def test_firings_per_minute_count_a_sliding_minute() -> None:
    exposure = Exposure()
    limits = Limits(max_firings_per_minute=2)
    for seconds in (0, 30):
        exposure.fired(T0 + timedelta(seconds=seconds))
    assert "max_firings_per_minute" in str(
        check(order(), D(1), "r", limits=limits, exposure=exposure, now=T0 + timedelta(seconds=59)))
    assert check(order(), D(1), "r", limits=limits, exposure=exposure,
                 now=T0 + timedelta(seconds=60)) is None


def test_an_order_keeps_its_share_until_final_then_what_it_traded() -> None:
    exposure = Exposure()
    exposure.add("r", T0.date(), D(100))
    assert exposure.open_orders == 1 and exposure.by_day[T0.date()] == D(100)
    exposure.settle("r", T0.date(), D(100), D(40))  # cancelled after trading 40
    assert exposure.open_orders == 0 and exposure.by_rule["r"] == D(40)
    exposure.add("r", T0.date(), D(100))
    exposure.settle("r", T0.date(), D(100), D(0))  # proven never placed
    assert exposure.by_day[T0.date()] == D(40)


def test_a_rule_file_can_only_tighten_the_config() -> None:
    config = Limits(max_order_notional=D(500), max_open_orders=10,
                    allowed_symbols=frozenset({"BTC-USDT", "ETH-USDT"}))
    file = Limits(max_order_notional=D(900), max_open_orders=3, max_daily_notional=D(1000),
                  allowed_symbols=frozenset({"ETH-USDT", "XRP-USDT"}))
    both = config.tighten(file)
    assert both.max_order_notional == D(500) and both.max_open_orders == 3
    assert both.max_daily_notional == D(1000)
    assert both.allowed_symbols == frozenset({"ETH-USDT"})
