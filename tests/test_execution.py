"""Execution constructs without a watcher: what lint says of icebergs, scaled orders and TWAPs,
the slices a firing becomes (sizes, prices on ticks, times), the iceberg's KuCoin body, when a
TWAP slice is sent or skipped, and the risk limits counting every slice of a scaled order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from rules_engine.compiler import compile_sources, shipped_symbols
from rules_engine.compiler import model as M
from rules_engine.dsl import SourceFile
from rules_engine.engine import Blocked, OrderIntent, order_body, resolve_order
from rules_engine.engine._risk import Exposure, Limits, check_all
from rules_engine.engine._slices import (
    Slice,
    group_of,
    plan_slices,
    rule_of,
    slice_order,
    twap_step,
)

D = Decimal
BTC = shipped_symbols()["BTC-USDT"]  # priceIncrement 0.1, baseIncrement 0.00000001
MARKET = {M.Field("BTC-USDT", "bid"): D("60000.07"), M.Field("BTC-USDT", "ask"): D("60000.13"),
          M.Field("BTC-USDT", "last"): D("60000.1")}
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def codes(place: str) -> list[str]:
    text = f"rule r on BTC-USDT:\n    when last < 62000\n    {place}\n"
    return [d.code for d in compile_sources([SourceFile("t.rules", text)]).diagnostics]


def spec(place: str) -> M.OrderSpec:
    text = f"rule r on BTC-USDT:\n    when last < 62000\n    {place}\n"
    program = compile_sources([SourceFile("t.rules", text)])
    assert program.errors == (), program.errors
    order = program.by_identity["r"].order
    assert order is not None
    return order


def test_lint_accepts_the_briefs_forms_and_names_each_mistake() -> None:
    assert codes("place limit buy 1 at 59000 iceberg visible 0.1") == []
    assert codes("place scaled buy 0.05 from 59000 to 57000 in 5") == []
    assert codes("place scaled buy 0.05 from bid to bid - 2% in 5") == []
    assert codes("place twap buy 1 over 2h every 5m limit ask + 0.2%") == []
    assert codes("place market buy 1 iceberg visible 0.1") == ["E320"]
    assert codes("place limit buy 1 at 59000 iceberg visible 0.1 hidden post-only") == [
        "E320", "E320"]
    assert codes("place limit buy 1 at 59000 iceberg visible 0.1 ioc") == ["E320"]
    assert codes("place limit buy 1 at 59000 iceberg visible 2") == ["E321"]
    assert codes("place limit buy 1 at 59000 iceberg visible 0.000000001") == ["E321"]
    # Below 1/20 of the size (KuCoin's older docs): a warning naming the least to show.
    assert codes("place limit buy 1 at 59000 iceberg visible 0.01") == ["W325"]
    assert codes("place limit buy 1 at 59000 iceberg visible 0.05") == []
    assert codes("place scaled buy 0.05 from 59000 to 57000 in 5 iceberg visible 0.0004") == [
        "W325"]  # a slice of 0.01 shows 0.0005 at least
    assert codes("place scaled buy 0.05 from 59000 to 57000 in 5 iceberg visible 0.0005") == []
    assert codes("place limit buy 1 at 59000 iceberg visible 0.000000001") == ["E321"]
    assert codes("place scaled buy 0.05 from 59000 to 57000 in 1") == ["E322"]
    assert codes("place scaled buy 0.05 from 59000 to 57000 in 101") == ["E322"]
    assert codes("place scaled buy 0.05 from 59000 to 59000.2 in 5") == ["E322"]
    assert codes("place scaled buy 0.05 from 59000.05 to 57000 in 5") == ["E304"]
    assert codes("place scaled buy 0.00005 from 59000 to 57000 in 10") == ["E323"]
    assert codes("place twap buy 1 over 2h every 7m") == ["E324"]
    assert codes("place twap buy 1 over 1d every 1m") == ["E324"]  # 1440 slices
    assert codes("place twap buy 100 USDT over 2h every 5m") == ["E326"]
    assert codes("place twap buy 1 over 2h every 5m ioc") == ["E308"]  # market slices


def test_a_plain_order_keeps_its_canonical_text() -> None:
    order = spec("place limit buy 0.01 at 59000")
    assert "visible" not in repr(order) and "slicing" not in repr(order)


def test_a_scaled_firing_becomes_evenly_spaced_slices_on_ticks_in_the_traders_favour() -> None:
    order = spec("place scaled buy 0.05 from bid to bid - 2% in 3")
    slices = plan_slices(order, MARKET, BTC, NOW)
    assert not isinstance(slices, Blocked)
    # 60000.07 to 58800.0686: each rounded down (a buy) to the 0.1 tick
    assert [s.price for s in slices] == [D("60000.0"), D("59400.0"), D("58800.0")]
    assert [s.size for s in slices] == [D("0.01666666"), D("0.01666666"), D("0.01666668")]
    assert sum(s.size for s in slices) == D("0.05")
    sell = plan_slices(spec("place scaled sell 0.05 from ask to ask + 1% in 2"), MARKET, BTC, NOW)
    assert not isinstance(sell, Blocked)
    assert [s.price for s in sell] == [D("60000.2"), D("60600.2")]  # a sell rounds up
    intent = resolve_order(slice_order(order, slices[1]), MARKET, BTC)
    assert isinstance(intent, OrderIntent)
    assert (intent.order_type, intent.price, intent.size) == ("limit", D("59400.0"),
                                                              D("0.01666666"))


def test_twap_slices_fall_due_every_interval_and_are_priced_when_sent() -> None:
    order = spec("place twap buy 1 over 2h every 5m limit ask + 0.2%")
    slices = plan_slices(order, MARKET, BTC, NOW)
    assert not isinstance(slices, Blocked) and len(slices) == 24
    assert [s.due for s in slices[:3]] == [NOW, NOW + timedelta(minutes=5),
                                           NOW + timedelta(minutes=10)]
    assert slices[-1].due == NOW + timedelta(minutes=115) and slices[0].price is None
    assert Slice.load(slices[5].dump()) == slices[5]
    intent = resolve_order(slice_order(order, slices[0]), MARKET, BTC)
    assert isinstance(intent, OrderIntent) and intent.price == D("60120.1")  # x 1.002, down
    market = spec("place twap sell 1 over 2h every 5m")
    first = plan_slices(market, MARKET, BTC, NOW)
    assert not isinstance(first, Blocked)
    sent = resolve_order(slice_order(market, first[0]), MARKET, BTC)
    assert isinstance(sent, OrderIntent) and sent.order_type == "market"


def test_a_twap_slice_is_sent_within_its_interval_and_skipped_after_it() -> None:
    due = NOW
    assert twap_step(due, 300, NOW - timedelta(seconds=1)) == "wait"
    assert twap_step(due, 300, NOW) == "send"
    assert twap_step(due, 300, NOW + timedelta(seconds=299)) == "send"
    assert twap_step(due, 300, NOW + timedelta(seconds=300)) == "skip"


def test_slice_identities_name_their_rule() -> None:
    group = group_of("ladder", 3)
    assert group == "ladder/slices-3" and rule_of(group) == "ladder" and rule_of("x") == "x"


def test_an_iceberg_body_carries_iceberg_and_visible_size() -> None:
    intent = resolve_order(spec("place limit buy 1 at 59000 iceberg visible 0.1"), MARKET, BTC)
    assert isinstance(intent, OrderIntent) and intent.visible_size == D("0.1")
    body = order_body(intent, "oid1", family="hf", server_ms=1)
    assert body["iceberg"] is True and body["visibleSize"] == "0.1" and "hidden" not in body
    hidden = resolve_order(spec("place limit buy 1 at 59000 hidden"), MARKET, BTC)
    assert isinstance(hidden, OrderIntent)
    hidden_body = order_body(hidden, "oid2", family="hf", server_ms=1)
    assert hidden_body["hidden"] is True and "iceberg" not in hidden_body


def test_the_risk_limits_count_every_slice_of_a_scaled_order() -> None:
    order = spec("place scaled buy 0.005 from 50000 to 49000 in 5")
    slices = plan_slices(order, MARKET, BTC, NOW)
    assert not isinstance(slices, Blocked)
    orders = []
    for piece in slices:
        intent = resolve_order(slice_order(order, piece), MARKET, BTC)
        assert isinstance(intent, OrderIntent) and intent.price and intent.size
        orders.append((intent, intent.price * intent.size))
    exposure = Exposure()
    assert check_all(orders, "r", limits=Limits(max_rule_notional=D("250")),
                     exposure=exposure, now=NOW) is None  # 247.5 in all
    reason = check_all(orders, "r", limits=Limits(max_rule_notional=D("200")),
                       exposure=exposure, now=NOW)
    assert reason is not None and reason.startswith("slice 5: ")
    assert check_all(orders, "r", limits=Limits(max_open_orders=4), exposure=exposure,
                     now=NOW) is not None
    assert exposure.by_rule == {} and exposure.open_orders == 0  # left as it was
