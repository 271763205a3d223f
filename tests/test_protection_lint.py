"""Compile checks of held protection: buy-side brackets, guards, `% of filled_size`,
`stop-loss trailing by`, `move stop-loss ... after RULE filled` and `exit after D`; each
diagnostic fires on its mistake and stays silent on the correct rule beside it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rules_engine.compiler import compile_sources
from rules_engine.compiler import model as M
from rules_engine.dsl import SourceFile

D = Decimal
ENTRY = "rule entry on BTC-USDT:\n    when ask < 58000\n    place limit buy 0.01 at 57990\n"
SHORT = "rule entry on BTC-USDT:\n    when bid > 70000\n    place limit sell 0.01 at 70010\n"
TP = ("rule tp1 on BTC-USDT:\n    after entry filled\n"
      "    place limit sell 50% of filled_size at fill_price + 2%\n")


def program(text: str) -> M.CompiledProgram:
    return compile_sources([SourceFile("t.rules", text)])


def codes(text: str) -> list[str]:
    return [d.code for d in program(text).diagnostics if d.is_error]


def rule(text: str, name: str) -> M.CompiledRule:
    prog = program(text)
    assert prog.ok, [d.message for d in prog.diagnostics]
    return prog.by_identity[name]


def test_a_buy_side_bracket_compiles_and_its_inversion_is_e705() -> None:
    good = (SHORT + "rule cover on BTC-USDT:\n    after entry filled\n"
            "    place limit buy filled_size at fill_price - 3%\n"
            "    stop-loss at fill_price + 2%\n")
    cover = rule(good, "cover")
    assert cover.order is not None and cover.order.side == "buy"
    assert cover.order.stop_loss == M.Offset(M.Fill("fill_price"), D("1.02"))
    bad = good.replace("fill_price + 2%", "fill_price - 2%")
    [diag] = [d for d in program(bad).diagnostics if d.code == "E705"]
    assert "at or below the entry's fill price" in diag.message
    consts = ("rule b on BTC-USDT:\n    when last < 60000\n    place limit buy 0.01 at 59000\n"
              "    stop-loss at {}\n")
    assert codes(consts.format("58000")) == ["E705"]  # a buy's stop below its take-profit
    assert codes(consts.format("61000")) == []


def test_a_guard_with_two_targets_compiles_with_its_protection() -> None:
    text = (ENTRY + TP + TP.replace("tp1", "tp2").replace("2%", "4%")
            + "rule guard on BTC-USDT:\n    after entry filled\n"
            "    stop-loss at fill_price - 2%\n"
            "    move stop-loss to fill_price after tp1 filled\n    exit after 4h\n")
    guard = rule(text, "guard")
    assert guard.order is None and guard.actions == ()
    assert guard.protection == M.Protection(
        True, M.Offset(M.Fill("fill_price"), D("0.98")), None, "tp1", M.Fill("fill_price"),
        4 * 3600)
    tp1 = rule(text, "tp1")
    assert tp1.order is not None
    assert tp1.order.size.amount == M.Arith("*", M.Fill("filled_size"), M.Const(D("0.5")))


@pytest.mark.parametrize(("text", "code", "says"), [
    (ENTRY + "rule g on BTC-USDT:\n    when bid < 1\n    stop-loss at 50000\n",
     "E408", "a guard"),
    (SHORT + "rule g on BTC-USDT:\n    after entry filled\n    stop-loss at fill_price - 2%\n",
     "E705", "the guard buys"),
    (ENTRY + "rule g on ETH-USDT:\n    after entry filled\n    stop-loss at fill_price - 2%\n",
     "E415", "same symbol"),
    (ENTRY + TP.replace("+ 2%", "+ 2%\n    stop-loss at fill_price - 1%")
     + "rule g on BTC-USDT:\n    after entry filled\n    stop-loss at fill_price - 2%\n",
     "E415", "stop-loss of its own"),
    (ENTRY + "rule g on BTC-USDT:\n    after entry filled\n    stop-loss at fill_price - 2%\n"
     "rule h on BTC-USDT:\n    after entry filled\n    stop-loss at fill_price - 3%\n",
     "E415", "one guard per entry"),
    (ENTRY + "rule g on BTC-USDT:\n    after entry filled\n    stop-loss at fill_price - 2%\n"
     "    move stop-loss to fill_price after tp9 filled\n", "E413", "tp9 is not a rule"),
    (ENTRY + "rule other on BTC-USDT:\n    when bid < 1\n    place limit sell 0.01 at 70000\n"
     "rule g on BTC-USDT:\n    after entry filled\n    stop-loss at fill_price - 2%\n"
     "    move stop-loss to fill_price after other filled\n", "E413", "is not armed by"),
    (ENTRY + "rule b on BTC-USDT:\n    after entry filled\n"
     "    place limit sell filled_size at fill_price + 3%\n"
     "    move stop-loss to fill_price after entry filled\n", "E413", "needs a stop-loss"),
    (ENTRY + "rule b on BTC-USDT:\n    after entry filled\n"
     "    place limit sell filled_size at fill_price + 3%\n    stop-loss trailing by 2%\n"
     "    move stop-loss to fill_price after entry filled\n", "E413", "moves by itself"),
    (ENTRY + TP + "rule b on BTC-USDT:\n    after entry filled\n"
     "    place limit sell 50% of filled_size at fill_price + 3%\n"
     "    stop-loss at fill_price - 2%\n"
     "    move stop-loss to fill_price + 4% after tp1 filled\n", "E705", "new stop"),
    ("rule b on BTC-USDT:\n    when bid > 1\n    place limit sell 0.01 at 70000\n"
     "    exit after 1h\n", "E416", "chain"),
    (ENTRY + "rule b on BTC-USDT:\n    after entry filled\n    place market sell filled_size\n"
     "    exit after 1h\n", "E416", "resting"),
    (ENTRY + "rule b on BTC-USDT:\n    after entry filled\n"
     "    place limit sell filled_size at fill_price + 3%\n    stop-loss trailing by 0.5\n",
     "E418", "a percent"),
    (ENTRY + "rule b on BTC-USDT:\n    after entry filled\n"
     "    place limit sell filled_size at fill_price + 3%\n    stop-loss trailing by 100%\n",
     "E418", "below 100%"),
    (ENTRY + "rule b on BTC-USDT:\n    after entry filled\n"
     "    place limit sell 150% of filled_size at fill_price + 3%\n", "E310", "at most 100%"),
    (ENTRY + "rule b on BTC-USDT:\n    after entry filled\n"
     "    place limit sell 50% of fill_price at fill_price + 3%\n", "E310", "`of fill_price`"),
    ("rule b on BTC-USDT:\n    when bid > 1\n    place limit sell 50% of filled_size at 70000\n",
     "E203", "chained rule"),
    (ENTRY + TP + TP.replace("tp1", "tp2").replace("50%", "60%"), "E417", "110% of its fill"),
    (ENTRY + TP + "rule whole on BTC-USDT:\n    after entry filled\n"
     "    place trailing-stop sell filled_size by 2%\n", "E417", "150% of its fill"),
])
def test_each_protection_mistake_has_its_diagnostic(text: str, code: str, says: str) -> None:
    found = [d for d in program(text).diagnostics if d.code == code]
    assert found, [f"{d.code} {d.message}" for d in program(text).diagnostics]
    assert any(says in d.message for d in found), [d.message for d in found]


def test_a_trailing_bracket_and_time_exit_compile_to_their_protection() -> None:
    text = (ENTRY + "rule b on BTC-USDT:\n    after entry filled\n"
            "    place limit sell filled_size at fill_price + 5%\n"
            "    stop-loss trailing by 2%\n    exit after 30m\n")
    b = rule(text, "b")
    assert b.order is not None and b.order.stop_loss == M.Offset(M.Fill("fill_price"), D("0.98"))
    assert b.protection == M.Protection(False, None, D("0.02"), None, None, 1800)


def test_exit_stays_a_plain_name_for_rules_and_references() -> None:
    text = (ENTRY + "rule exit on BTC-USDT:\n    after entry filled\n"
            "    place limit sell filled_size at fill_price + 3%\n    exit after 2h\n"
            "rule told on BTC-USDT:\n    after exit canceled\n    notify \"gone\"\n")
    held = rule(text, "exit").protection
    assert held is not None and held.exit_seconds == 7200
    assert rule(text, "told").after == ("exit", "canceled")


def test_targets_that_share_the_fill_exactly_are_not_e417() -> None:
    text = ENTRY + TP + TP.replace("tp1", "tp2") + SHORT.replace("entry", "other").replace(
        "BTC", "ETH").replace("70000", "4000").replace("70010", "4001")
    assert "E417" not in codes(text)


def test_rules_without_protection_keep_their_identity_text() -> None:
    plain = rule(ENTRY, "entry")
    assert plain.protection is None and "Protection" not in plain.canonical
