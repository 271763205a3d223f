"""Position and account values, and risk sizing: the chain's book from its fills
(engine/_position.py), the values the evaluator reads, risk-sized orders resolved at firing,
the chains of firings (runtime/_chains.py), and the compiler's checks (E208, E315, ...)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rules_engine.compiler import compile_sources, shipped_symbols
from rules_engine.compiler import model as M
from rules_engine.dsl import SourceFile
from rules_engine.engine import Arm, Blocked, OrderIntent, resolve_order, truth, value
from rules_engine.engine._position import ChainFill, book, pnl, pnl_rate, unrealised
from rules_engine.runtime._chains import Chains, balance_changes

D = Decimal
BTC = shipped_symbols()["BTC-USDT"]  # priceIncrement 0.1, baseIncrement 1e-8
RATE = D("0.001")


def chain(*fills: ChainFill, fee_rate: Decimal = RATE):  # type: ignore[no-untyped-def]
    return book(fills, base="BTC", quote="USDT", fee_rate=fee_rate)


# ------------------------------------------------------------------ the book


def test_two_buys_average_their_entry_and_a_sale_realises_against_it() -> None:
    b = chain(ChainFill("buy", D(100), D(1), D("0.1"), "USDT"),
              ChainFill("buy", D(110), D(1), D("0.11"), "USDT"),
              ChainFill("sell", D(120), D("0.5"), D("0.06"), "USDT"))
    assert (b.bought, b.sold, b.position) == (D(2), D("0.5"), D("1.5"))
    assert b.average_entry == D(105)
    assert b.realised == D("7.5")  # (120 - 105) * 0.5
    assert b.fees == D("0.27")
    assert b.invested == D(210)
    assert unrealised(b, D(104), D(106)) == D("-1.5")  # a long is valued at the bid
    assert pnl(b, D(104), D(106)) == D("7.5") - D("1.5") - D("0.27")
    assert pnl_rate(b, D(104), D(106)) == D("5.73") / D(210)


def test_a_closed_position_has_no_average_and_needs_no_price() -> None:
    b = chain(ChainFill("buy", D(100), D(1), D(0), "USDT"),
              ChainFill("sell", D(90), D(1), D(0), "USDT"))
    assert (b.position, b.average_entry, b.realised) == (D(0), None, D(-10))
    assert pnl(b, None, None) == D(-10)  # nothing open: known without a market


def test_a_short_chain_is_valued_at_the_ask_and_an_overfill_flips_it() -> None:
    b = chain(ChainFill("sell", D(100), D(2), D(0), "USDT"))
    assert b.position == D(-2)
    assert pnl(b, D(95), None) is None  # a short needs the ask
    assert pnl(b, D(1), D(96)) == D(8)  # (100 - 96) * 2
    flipped = chain(ChainFill("sell", D(100), D(2), D(0), "USDT"),
                    ChainFill("buy", D(90), D(3), D(0), "USDT"))
    assert flipped.position == D(1) and flipped.average_entry == D(90)
    assert flipped.realised == D(20) and flipped.invested == D(290)


def test_fees_recorded_in_base_reduce_the_position_and_unrecorded_ones_are_estimated() -> None:
    b = chain(ChainFill("buy", D(100), D(1), D("0.001"), "BTC"))
    assert b.position == D("0.999") and b.fees == D("0.1")
    assert pnl(b, D(100), D(101)) == D("-0.1")
    estimated = chain(ChainFill("buy", D(100), D(1)), ChainFill("sell", D(100), D(1), D(1),
                                                                  "KCS"))
    assert estimated.fees == D("0.2")  # 0.1% of each fill's value


def test_pnl_rate_is_unknown_before_the_chain_bought_anything() -> None:
    assert pnl_rate(chain(), D(1), D(2)) is None
    assert pnl(chain(), None, None) == 0


# ------------------------------------------------------------------ compiling


def compiled(text: str) -> M.CompiledProgram:
    return compile_sources([SourceFile("t.rules", text)])


def codes(text: str) -> list[tuple[str, str]]:
    return [(d.code, d.message) for d in compiled(text).diagnostics if d.code[0] in "EW"]


ENTRY = "rule entry on BTC-USDT:\n    when ask < 60000\n    place limit buy 0.01 at 59000\n"


def test_chain_values_compile_in_a_chained_rule_on_its_symbol() -> None:
    program = compiled(ENTRY + (
        "rule exit on BTC-USDT:\n    after entry filled\n"
        "    when position > 0 and pnl% < -5% and pnl > -100 and balance(USDT) > 10\n"
        "    place market sell 50% of position\n"))
    assert program.errors == ()
    rule = program.by_identity["exit"]
    assert rule.condition == M.All((
        M.Compare(">", M.Chain("position", "BTC-USDT"), M.Const(D(0))),
        M.Compare("<", M.Chain("pnl_pct", "BTC-USDT"), M.Const(D("-0.05"))),
        M.Compare(">", M.Chain("pnl", "BTC-USDT"), M.Const(D(-100))),
        M.Compare(">", M.Balance("USDT"), M.Const(D(10))),
    ))
    assert rule.order is not None
    assert rule.order.size == M.SizeSpec(
        "base", M.Arith("*", M.Chain("position", "BTC-USDT"), M.Const(D("0.5"))), None)


def test_position_without_a_chain_is_e208_with_the_fix() -> None:
    [(code, message)] = codes("rule r on BTC-USDT:\n    when position > 0\n"
                              "    place market sell 0.001\n")
    assert code == "E208" and "add `after RULE filled`" in message
    [(code, _)] = codes("rule r on BTC-USDT:\n    when bid > 1\n"
                        "    place market sell 50% of position\n")
    assert code == "E208"
    assert codes("rule r on BTC-USDT:\n    when pnl% < -5%\n    place market sell 0.001\n")[
        0][0] == "E208"


def test_misspelt_and_misused_position_and_balance_say_what_to_write() -> None:
    chained = ENTRY + "rule x on BTC-USDT:\n    after entry filled\n"
    [(code, message)] = codes(chained + "    place market sell 50% of positon\n")
    assert code == "E310" and "did you mean 'position'" in message
    [(code, message)] = codes(chained + "    place market sell 150% of position\n")
    assert code == "E310" and "at most 100%" in message
    [(code, message)] = codes(chained + "    when BTC-USDT position > 0\n"
                              "    place market sell position\n")
    assert code == "E104" and "takes no symbol" in message
    [(code, message)] = codes("when balance > 5 and BTC-USDT bid > 1 "
                              "place market buy 0.001\n")
    assert code == "E108" and "balance(USDT)" in message
    [(code, message)] = codes("when balance(USDTT) > 5 and BTC-USDT bid > 1 "
                              "place market buy 0.001\n")
    assert code == "E103" and "did you mean 'USDT'" in message
    [(code, _)] = codes("when BTC-USDT bid > 1 and balance(14, 1h) > 5 "
                        "place market buy 0.001\n")
    assert code == "E108"
    [(code, _)] = codes("when BTC-USDT bid > 1 and sma(USDT) > 5 place market buy 0.001\n")
    assert code == "E105"


@pytest.mark.parametrize(("place", "needle"), [
    ("place limit buy risk 1% of USDT stop 60000 at 59000", "at or above the buy's entry"),
    ("place limit buy risk 1% of USDT stop 59000 at 59000", "at or above the buy's entry"),
    ("place limit sell risk 1% of USDT stop 58000 at 59000", "at or below the sell's entry"),
    ("place limit buy risk 1% of USDT stop ask + 1% at ask", "at or above the buy's entry"),
    ("place market buy risk 1% of USDT stop last + 10", "at or above the buy's entry"),
    ("place limit buy risk 0% of USDT stop 58000 at 59000", "above 0% and at most 100%"),
    ("place limit buy risk 101% of USDT stop 58000 at 59000", "above 0% and at most 100%"),
    ("place limit buy risk 5 of USDT stop 58000 at 59000", "takes a percent"),
    ("place limit buy risk 1% of BTC stop 58000 at 59000", "write `risk 1% of USDT`"),
    ("place trailing-stop sell risk 1% of USDT stop 62000 by 2%", "entry price"),
])
def test_risk_sizing_mistakes_are_e315(place: str, needle: str) -> None:
    found = codes(f"rule r on BTC-USDT:\n    when bid > 1\n    {place}\n")
    assert [c for c, _ in found] == ["E315"], found
    assert needle in found[0][1]


def test_risk_sizing_on_the_right_side_compiles() -> None:
    for place in ("place limit buy risk 1% of USDT stop 58000 at 59000",
                  "place limit buy risk 1% of USDT stop ask - 2% at ask",
                  "place market sell risk 0.5% of USDT stop last + 2%",
                  "place stop buy risk 1% of USDT stop 57000 at 61000"):
        program = compiled(f"rule r on BTC-USDT:\n    when bid > 1\n    {place}\n")
        assert program.errors == (), (place, program.errors)


def test_the_chained_exit_sized_from_the_balance_suggests_the_position() -> None:
    found = codes(ENTRY + "rule x on BTC-USDT:\n    after entry filled\n"
                  "    place limit sell 100% of BTC at fill_price + 2%\n")
    [message] = [m for c, m in found if c == "W706"]
    assert "`filled_size`" in message and "`position`" in message
    assert "`50% of position`" in message


# ------------------------------------------------------------------ evaluating


def spec(text: str) -> M.OrderSpec:
    program = compiled(ENTRY + text)
    assert program.errors == (), program.errors
    order = program.by_identity["r"].order
    assert order is not None
    return order


MARKET: dict[object, Decimal] = {
    M.Field("BTC-USDT", "bid"): D(59000), M.Field("BTC-USDT", "ask"): D("59010"),
    M.Balance("USDT"): D(10000),
}
RISK = "rule r on BTC-USDT:\n    when bid > 1\n    {}\n"


def test_a_risk_size_loses_the_share_at_the_stop_fees_included() -> None:
    order = spec(RISK.format("place limit buy risk 1% of USDT stop 58000 at 59000"))
    intent = resolve_order(order, MARKET, BTC, fee_rate=RATE)
    assert isinstance(intent, OrderIntent)
    per_unit = D(1000) + RATE * (D(59000) + D(58000))
    assert intent.size == D("0.08952551")  # 100 / 1117 = 0.0895255147..., rounded down
    assert intent.size * per_unit <= D(100) < (intent.size + D("1e-8")) * per_unit
    market = resolve_order(spec(RISK.format("place market buy risk 1% of USDT stop 58010")),
                           MARKET, BTC)
    assert isinstance(market, OrderIntent) and market.size == D("0.1")  # at the ask, no fee


def test_a_risk_size_is_blocked_with_its_reason() -> None:
    order = spec(RISK.format("place limit buy risk 1% of USDT stop bid - 1% at 58000"))
    blocked = resolve_order(order, MARKET, BTC)  # the stop 58410 is above the 58000 entry
    assert isinstance(blocked, Blocked) and "at or above the entry price 58000" in blocked.reason
    unknown = {k: v for k, v in MARKET.items() if k != M.Balance("USDT")}
    order = spec(RISK.format("place limit buy risk 1% of USDT stop 58000 at 59000"))
    blocked = resolve_order(order, unknown, BTC)
    assert isinstance(blocked, Blocked) and "USDT balance is not known" in blocked.reason
    close = spec(RISK.format("place limit buy risk 100% of USDT stop 58999 at 59000"))
    blocked = resolve_order(close, MARKET, BTC)
    assert isinstance(blocked, Blocked) and "more than the available 10000 USDT" in (
        blocked.reason)
    tiny = spec(RISK.format("place limit buy risk 0.00001% of USDT stop 1000 at 59000"))
    blocked = resolve_order(tiny, MARKET, BTC)
    assert isinstance(blocked, Blocked) and "below BTC-USDT's baseMinSize" in blocked.reason


def test_a_sale_of_a_position_the_chain_does_not_hold_is_blocked() -> None:
    order = spec("rule r on BTC-USDT:\n    after entry filled\n    place market sell position\n")
    for held in (D(0), D("-0.5")):
        seen = {**MARKET, M.Chain("position", "BTC-USDT"): held}
        blocked = resolve_order(order, seen, BTC)
        assert isinstance(blocked, Blocked) and "not above zero" in blocked.reason
    seen = {**MARKET, M.Chain("position", "BTC-USDT"): D("0.123456789")}
    intent = resolve_order(order, seen, BTC)
    assert isinstance(intent, OrderIntent) and intent.size == D("0.12345678")


def test_chain_values_absent_from_the_market_are_unknown() -> None:
    cond = M.Compare("<", M.Chain("pnl_pct", "BTC-USDT"), M.Const(D("-0.05")))
    assert truth(cond, MARKET) is None
    assert truth(cond, {**MARKET, M.Chain("pnl_pct", "BTC-USDT"): D("-0.06")}) is True
    assert value(M.Balance("USDT"), MARKET) == D(10000)


# ------------------------------------------------------------------ chains


def test_a_chain_is_its_root_firing_and_every_firing_armed_from_it() -> None:
    chains = Chains(RATE, shipped_symbols())
    chains.join("exit", 1, "entry", 2)  # exit's firing 1 was armed by entry's firing 2
    chains.join("after_exit", 4, "exit", 1)
    assert chains.root_of("after_exit", 4) == ("entry", 2)
    assert chains.root_of("entry", 2) == ("entry", 2)
    assert chains.add(("entry", 2), "t1", "o1", "BTC-USDT",
                      ChainFill("buy", D(100), D(1), D(0), "USDT")) == ("entry", 2)
    assert chains.add(("entry", 2), "t1", "o1", "BTC-USDT",
                      ChainFill("buy", D(100), D(1), D(0), "USDT")) is None  # once
    chains.add(("exit", 1), "t2", "o2", "BTC-USDT", ChainFill("sell", D(110), D("0.25"),
                                                              D(0), "USDT"))
    chains.add(("entry", 1), "t3", "o3", "BTC-USDT", ChainFill("buy", D(1), D(9), D(0),
                                                               "USDT"))  # another chain
    assert chains.book_of(("entry", 2), "BTC-USDT").position == D("0.75")
    rule = compiled(ENTRY + "rule exit on BTC-USDT:\n    after entry filled\n"
                    "    when pnl > 0\n    place market sell position\n").by_identity["exit"]
    view = chains.view(rule, Arm(2, None), MARKET)
    assert view.get(M.Chain("position", "BTC-USDT")) == D("0.75")
    # realised 2.5, unrealised (59000 - 100) * 0.75, no fees recorded beyond 0
    assert view[M.Chain("pnl", "BTC-USDT")] == D("2.5") + D(58900) * D("0.75")
    assert chains.view(rule, None, MARKET) is MARKET  # no pending arm: no chain


def test_balances_are_known_only_while_the_order_channel_is_live() -> None:
    values: dict[object, Decimal] = {}
    changes = balance_changes(values, {"USDT", "ETH"}, {"USDT": D(5)}, live=True)
    assert values == {M.Balance("USDT"): D(5), M.Balance("ETH"): D(0)}  # none held: 0
    assert len(changes) == 2
    balance_changes(values, {"USDT", "ETH"}, {"USDT": D(5)}, live=False)
    assert values == {}
    balance_changes(values, {"USDT"}, {}, live=True)
    assert values == {}  # never read: unknown


def test_pnl_percent_compared_with_a_bare_number_is_w708() -> None:
    found = codes(ENTRY + "rule cut on BTC-USDT:\n    after entry filled\n"
                  "    when pnl% < -5\n    place market sell position\n")
    [(code, message)] = found
    assert code == "W708" and "write `-5%`" in message
    assert codes(ENTRY + "rule cut on BTC-USDT:\n    after entry filled\n"
                 "    when pnl% < -5%\n    place market sell position\n") == []


def test_a_risk_stop_computed_below_zero_blocks() -> None:
    order = spec(RISK.format("place limit buy risk 1% of USDT stop bid - 60000 at 58000"))
    blocked = resolve_order(order, MARKET, BTC)
    assert isinstance(blocked, Blocked) and "risk stop -1000 is not above zero" in blocked.reason
