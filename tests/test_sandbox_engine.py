"""The pure matching engine: priority, order types, holds, fees and KuCoin's event order."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rules_engine.sandbox.engine import (
    BalanceEvent,
    Engine,
    IllegalTransitionError,
    L2Change,
    Order,
    OrderEvent,
    OrderRequest,
    StopEvent,
)
from rules_engine.sandbox.errors import ApiError
from rules_engine.sandbox.feeds import load_symbols

D = Decimal
NOW = 1_767_225_600_000


def engine() -> Engine:
    e = Engine(load_symbols(), {"USDT": D(100000), "BTC": D(2)}, maker_fee=D("0.001"),
               taker_fee=D("0.002"))
    e.apply_feed("BTC-USDT", [(D("99.9"), D("1")), (D("99.8"), D("2"))],
                 [(D("100.1"), D("1")), (D("100.2"), D("2"))], NOW)
    engines.append(e)
    return e


_counter = iter(range(10**6))


def req(**kw: object) -> OrderRequest:
    base: dict[str, object] = {"symbol": "BTC-USDT", "side": "buy", "type": "limit",
                               "client_oid": f"c{next(_counter)}"}
    base.update(kw)
    return OrderRequest(**base)  # type: ignore[arg-type]


def assert_cached_levels(e: Engine) -> None:
    """Every level's cached visible size equals the sum over its orders."""
    for book in e.books.values():
        for name in ("bids", "asks"):
            for _price, level in book.levels(name):
                assert level.shown == sum((o.visible for o in level.orders), D(0))


@pytest.fixture(autouse=True)
def _check_levels_after(request: pytest.FixtureRequest) -> None:
    engines.clear()
    yield
    for e in engines:
        assert_cached_levels(e)


engines: list[Engine] = []


def kinds(events: list[object]) -> list[tuple[str, str]]:
    return [(e.type, e.status) for e in events if isinstance(e, OrderEvent)]


def test_taker_events_come_in_kucoin_order_and_open_only_when_resting() -> None:
    e = engine()
    order, events = e.place(req(price=D("100.2"), size=D("3.5"), client_oid="a"), NOW)
    assert isinstance(order, Order)
    assert kinds(events) == [
        ("received", "new"), ("match", "match"), ("match", "match"), ("open", "open"),
    ]
    assert order.deal_size == D(3) and order.remaining == D("0.5")
    _, more = e.place(req(price=D("100.1"), size=D("0.1"), client_oid="b"), NOW)
    assert kinds(more) == [("received", "new"), ("open", "open")]


def test_a_crossing_feed_fills_resting_orders_as_maker() -> None:
    e = engine()
    order, _ = e.place(req(price=D("100"), size=D("0.5"), client_oid="m"), NOW)
    assert isinstance(order, Order) and order.status == "open"
    events = e.apply_feed("BTC-USDT", [(D("99.5"), D("1"))], [(D("99.9"), D("3"))], NOW + 1)
    assert kinds(events) == [("match", "open"), ("filled", "done")]
    assert e.account.total("BTC") == D("2.5")
    # Maker fee (0.001) on 0.5 * 100.
    assert e.account.total("USDT") == D(100000) - D(50) - D("0.05")
    assert e.account.held("USDT") == 0


def test_post_only_that_would_take_is_cancelled_and_holds_nothing() -> None:
    e = engine()
    order, events = e.place(req(price=D("100.1"), size=D("0.1"), post_only=True), NOW)
    assert isinstance(order, Order) and order.done_reason == "canceled"
    assert kinds(events) == [("received", "new"), ("canceled", "done")]
    assert not [x for x in events if isinstance(x, BalanceEvent)]


def test_fok_fills_all_or_nothing_and_ioc_cancels_the_rest() -> None:
    e = engine()
    fok, events = e.place(req(price=D("100.1"), size=D("1.5"), time_in_force="FOK"), NOW)
    assert isinstance(fok, Order) and fok.deal_size == 0
    assert kinds(events) == [("received", "new"), ("canceled", "done")]
    ioc, events = e.place(req(price=D("100.1"), size=D("1.5"), time_in_force="IOC",
                              client_oid="ioc"), NOW)
    assert isinstance(ioc, Order) and ioc.deal_size == 1 and ioc.canceled_size == D("0.5")
    assert kinds(events) == [("received", "new"), ("match", "match"), ("canceled", "done")]


def test_hidden_orders_rest_without_showing_in_the_book() -> None:
    e = engine()
    seq = e.books["BTC-USDT"].sequence
    order, events = e.place(req(price=D("99"), size=D("0.2"), hidden=True), NOW)
    assert isinstance(order, Order) and order.in_book
    assert not [x for x in events if isinstance(x, L2Change)]
    assert e.books["BTC-USDT"].sequence == seq
    assert (D("99"), D("0.2")) not in e.snapshot("BTC-USDT")[1]


def test_price_time_priority_between_resting_orders() -> None:
    e = engine()
    first, _ = e.place(req(side="sell", price=D("100.5"), size=D("0.1"), client_oid="s1"), NOW)
    second, _ = e.place(req(side="sell", price=D("100.5"), size=D("0.1"), client_oid="s2"), NOW)
    better, _ = e.place(req(side="sell", price=D("100.4"), size=D("0.1"), client_oid="s3"), NOW)
    e.apply_feed("BTC-USDT", [(D("99"), D("1"))], [(D("101"), D("1"))], NOW)
    taker, _ = e.place(req(price=D("100.5"), size=D("0.15"), client_oid="t"), NOW)
    assert isinstance(first, Order) and isinstance(second, Order)
    assert isinstance(better, Order) and isinstance(taker, Order)
    assert better.status == "done" and first.deal_size == D("0.05") and second.deal_size == 0


def test_market_sell_by_size_and_buy_by_funds() -> None:
    e = engine()
    sell, events = e.place(req(side="sell", type="market", size=D("1.5")), NOW)
    assert isinstance(sell, Order) and sell.deal_size == D("1.5")
    assert sell.deal_funds == D("99.9") + D("0.5") * D("99.8")
    assert kinds(events)[-1] == ("filled", "done")
    buy, _ = e.place(req(type="market", funds=D("150"), client_oid="f"), NOW)
    assert isinstance(buy, Order) and buy.deal_funds <= 150 and buy.deal_size > 1


def test_validation_errors_are_kucoin_codes() -> None:
    e = engine()
    cases = {
        "400100": req(price=D("100.05"), size=D("0.1")),
        "900001": req(symbol="XXX-USDT", price=D("1"), size=D("1")),
        "200004": req(price=D("100"), size=D("5000")),
        "600100": req(price=D("1"), size=D("0.00001")),
    }
    for code, request in cases.items():
        result, events = e.place(request, NOW)
        assert isinstance(result, ApiError) and result.code == code, (code, result)
        assert events == []


def test_duplicate_client_oid_is_refused_while_retained() -> None:
    e = engine()
    e.place(req(price=D("99"), size=D("0.1"), client_oid="dup"), NOW)
    again, _ = e.place(req(price=D("99"), size=D("0.1"), client_oid="dup"), NOW)
    assert isinstance(again, ApiError) and again.code == "126044"


def test_illegal_transition_raises() -> None:
    e = engine()
    order, _ = e.place(req(type="market", funds=D("50")), NOW)
    assert isinstance(order, Order) and order.status == "done"
    with pytest.raises(IllegalTransitionError, match="DONE -> OPEN"):
        order.move("open")


def test_stop_order_triggers_on_last_price() -> None:
    e = engine()
    stop, events = e.place(req(side="sell", type="market", size=D("0.1"), stop="loss",
                               stop_price=D("99.5")), NOW)
    assert isinstance(stop, Order) and stop.id.startswith("vs") and len(stop.id) == 24
    other, _ = e.place(req(side="sell", type="market", size=D("0.1"), stop="loss",
                           stop_price=D("90")), NOW)
    assert isinstance(other, Order) and other.id != stop.id
    assert [x.type for x in events if isinstance(x, StopEvent)] == ["open"]
    events = e.apply_feed("BTC-USDT", [(D("99.9"), D("1"))], [(D("100.1"), D("1"))], NOW,
                          trade=(D("99.6"), D("0.1"), "sell"))
    assert not events or not [x for x in events if isinstance(x, StopEvent)]
    events = e.apply_feed("BTC-USDT", [(D("99.3"), D("1"))], [(D("99.4"), D("1"))], NOW,
                          trade=(D("99.4"), D("0.1"), "sell"))
    assert [x.type for x in events if isinstance(x, StopEvent)] == ["triggered"]
    assert ("filled", "done") in kinds(events)
    triggered = e.orders[stop.id]  # the order keeps the stop order's id
    assert triggered.stop_triggered and triggered.deal_size == D("0.1")
    assert {x.order.id for x in events if isinstance(x, OrderEvent)} == {stop.id}
    assert e.account.total("BTC") == D("1.9")


def test_gtt_orders_expire() -> None:
    e = engine()
    order, _ = e.place(req(price=D("99"), size=D("0.1"), time_in_force="GTT", cancel_after=5),
                       NOW)
    assert e.expire(NOW + 4999) == []
    assert kinds(e.expire(NOW + 5000)) == [("canceled", "done")]
    assert isinstance(order, Order) and not order.active


def test_partial_cancel_is_an_update_with_the_old_size_and_releases_hold() -> None:
    e = engine()
    order, _ = e.place(req(price=D("99"), size=D("0.5")), NOW)
    assert isinstance(order, Order)
    held = e.account.held("USDT")
    same, events = e.reduce(order.id, D("0.2"), NOW)
    assert same is order and order.remaining == D("0.3") and order.active
    updates = [x for x in events if isinstance(x, OrderEvent)]
    assert [(u.type, u.status, u.old_size) for u in updates] == [("update", "open", D("0.5"))]
    assert e.account.held("USDT") == held - D(99) * D("0.2") * D("1.002")
    assert (D(99), D("0.3")) in e.snapshot("BTC-USDT")[1]
    _, events = e.reduce(order.id, D("0.3"), NOW)
    assert kinds(events) == [("canceled", "done")] and e.account.held("USDT") == 0


def test_active_orders_per_symbol_are_limited() -> None:
    e = Engine(load_symbols(), {"USDT": D(100000)}, maker_fee=D(0), taker_fee=D(0),
               max_open_per_symbol=3)
    for n in range(3):
        order, _ = e.place(req(price=D("50"), size=D("0.01"), client_oid=f"lim{n}"), NOW)
        assert isinstance(order, Order)
    refused, events = e.place(req(price=D("50"), size=D("0.01"), client_oid="lim3"), NOW)
    assert isinstance(refused, ApiError) and refused.code == "200003" and events == []


@pytest.mark.parametrize(
    ("mode", "taker_left", "maker_left", "taker_kinds"),
    [
        ("CN", D(0), D("0.3"), [("received", "new"), ("canceled", "done")]),
        ("CO", D("0.2"), D(0), [("received", "new"), ("open", "open")]),
        ("CB", D(0), D(0), [("received", "new"), ("canceled", "done")]),
        ("DC", D(0), D("0.1"), [("received", "new"), ("canceled", "done")]),
    ],
)
def test_self_trade_prevention_modes(mode: str, taker_left: D, maker_left: D,
                                     taker_kinds: list[tuple[str, str]]) -> None:
    e = engine()
    maker, _ = e.place(req(side="sell", price=D("100"), size=D("0.3"), client_oid="mk"), NOW)
    assert isinstance(maker, Order) and maker.status == "open"
    taker, events = e.place(req(price=D("100"), size=D("0.2"), stp=mode, client_oid="tk"), NOW)
    assert isinstance(taker, Order)
    assert taker.deal_size == 0 and maker.deal_size == 0  # never trades with itself
    assert taker.remaining == taker_left and maker.remaining == maker_left
    mine = [(x.type, x.status) for x in events
            if isinstance(x, OrderEvent) and x.order.id == taker.id]
    assert mine == taker_kinds
    if mode == "DC":
        update = [x for x in events if isinstance(x, OrderEvent) and x.order.id == maker.id]
        assert [(u.type, u.old_size) for u in update] == [("update", D("0.3"))]
    assert e.account.held("USDT") == (taker.hold if taker.active else 0)


def test_stp_validation() -> None:
    e = engine()
    bad, _ = e.place(req(price=D("100"), size=D("0.1"), stp="XX"), NOW)
    assert isinstance(bad, ApiError) and bad.code == "400100"
    market, _ = e.place(req(type="market", funds=D("10"), stp="DC"), NOW)
    assert isinstance(market, ApiError) and market.code == "400100"


def test_prune_forgets_orders_past_retention_but_keeps_open_ones() -> None:
    e = Engine(load_symbols(), {"USDT": D(100000)}, maker_fee=D(0), taker_fee=D(0),
               retention_ms=1000)
    e.apply_feed("BTC-USDT", [(D("99.9"), D("1"))], [(D("100.1"), D("1"))], NOW)
    done, _ = e.place(req(type="market", funds=D("10"), client_oid="gone"), NOW)
    resting, _ = e.place(req(price=D("50"), size=D("0.01"), client_oid="stays"), NOW)
    assert isinstance(done, Order) and isinstance(resting, Order)
    assert e.prune(NOW + 1000) == 0
    assert e.prune(NOW + 1001) == 1
    assert set(e.orders) == {resting.id} and "gone" not in e.by_client_oid
    assert e.fills  # fills are kept for 7 days
    last_seq = e.fills[-1].seq
    e.prune(NOW + 8 * 24 * 3600 * 1000)
    assert e.fills == [] and set(e.orders) == {resting.id}
    e.place(req(type="market", funds=D("10"), client_oid="later"), NOW + 8 * 24 * 3600 * 1000)
    assert e.fills[0].seq == last_seq + 1  # fill ids are never reused


def test_a_stop_limit_is_checked_when_placed_and_rests_at_its_limit_once_triggered() -> None:
    e = engine()
    bad, _ = e.place(req(side="sell", type="limit", price=D("99.05"), size=D("0.1"),
                         stop="loss", stop_price=D("99.5")), NOW)
    assert isinstance(bad, ApiError) and bad.msg == "Price increment invalid."
    stop, _ = e.place(req(side="sell", type="limit", price=D("99.2"), size=D("0.1"),
                          stop="loss", stop_price=D("99.5")), NOW)
    assert isinstance(stop, Order)
    # the last trade falls through the trigger and the bids below the limit: it rests
    events = e.apply_feed("BTC-USDT", [(D("98.9"), D("1"))], [(D("99.0"), D("1"))], NOW,
                          trade=(D("99.0"), D("0.1"), "sell"))
    assert [x.type for x in events if isinstance(x, StopEvent)] == ["triggered"]
    triggered = e.orders[stop.id]
    assert triggered.in_book and triggered.price == D("99.2") and triggered.deal_size == 0
