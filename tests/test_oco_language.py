"""`stop-loss at STOP limit LIMIT on exchange`: the grammar, the compiled order, the compile
checks E419-E422, the N712 note on engine-held brackets, and the order table keeping an OCO
through a plain halt."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from rules_engine.compiler import compile_sources
from rules_engine.compiler import model as M
from rules_engine.dsl import SourceFile
from rules_engine.engine._lifecycle import apply
from rules_engine.engine._order_types import CancelOrder, Halt, OrderRecord
from rules_engine.store import client_oid
from rules_engine.store._oco import oco_oid

ENTRY = "rule entry on BTC-USDT:\n    when ask < 58000\n    place limit buy 0.01 at 57990\n"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def bracket(take_profit: str, stop_loss: str) -> str:
    return (ENTRY + "rule exit on BTC-USDT:\n    after entry filled\n"
            f"    place limit sell {take_profit}\n    stop-loss {stop_loss}\n")


def compiled(text: str) -> tuple[list[M.CompiledRule], list[tuple[str, int, int]]]:
    program = compile_sources([SourceFile("b.rules", text)])
    return list(program.rules), [(d.code, d.span.line, d.span.column)
                                 for d in program.diagnostics]


def test_an_on_exchange_bracket_compiles_its_stop_legs_limit() -> None:
    rules, found = compiled(bracket("filled_size at fill_price + 3%",
                                    "at fill_price - 2% limit fill_price - 2.5% on exchange"))
    assert found == []
    order = rules[1].order
    assert order is not None and order.on_exchange and order.stop_limit is not None
    assert "on_exchange=True" in repr(order) and "stop_limit=" in repr(order)


def test_an_engine_held_bracket_keeps_its_text_and_gets_the_note() -> None:
    rules, found = compiled(bracket("filled_size at fill_price + 3%", "at fill_price - 2%"))
    order = rules[1].order
    assert order is not None and not order.on_exchange
    assert "stop_limit" not in repr(order) and "on_exchange" not in repr(order)  # fingerprint
    assert found == [("N712", 7, 5)]


def test_each_misplaced_part_of_an_on_exchange_stop_loss_is_named() -> None:
    cases = {
        "at fill_price - 2% on exchange": "E419",
        "at fill_price - 2% limit fill_price - 3% on moon": "E419",
        "at fill_price - 2% limit fill_price - 3%": "E420",
        "at fill_price - 2% limit fill_price - 1% on exchange": "E422",
        "at 50000 limit 50100 on exchange": "E422",
    }
    for stop_loss, code in cases.items():
        rules, found = compiled(bracket("filled_size at fill_price + 3%", stop_loss))
        assert code in [c for c, _, _ in found], (stop_loss, found)
        assert rules == []  # a file with an error contributes no rule
    on = "at fill_price - 2% limit fill_price - 2.5% on exchange"
    for take_profit in ("filled_size at fill_price + 3% hidden", "100 USDT at fill_price + 3%"):
        _, found = compiled(bracket(take_profit, on))
        assert "E421" in [c for c, _, _ in found], (take_profit, found)


def test_a_plain_halt_keeps_an_oco_and_halt_all_cancels_it() -> None:
    record = OrderRecord("re-oco", "open", "oco", "sell", Decimal("0.002"),
                         exchange_id="o1")
    assert record.protective
    kept = apply(record, Halt(False), T0)
    assert kept.record == record and kept.commands == ()
    cancelled = apply(record, Halt(True), T0)
    assert cancelled.record.status == "cancel_requested"
    assert CancelOrder("re-oco", "o1") in cancelled.commands


def test_a_misspelt_on_exchange_gets_the_spelling_not_a_symbol_hint() -> None:
    for written in ("on-exchange", "onexchange", "on exchange limit 57900"):
        stop = ("at 58000 limit 57900 " + written) if "limit" not in written else (
            "at 58000 " + written)
        program = compile_sources([SourceFile("b.rules", bracket("0.01 at 60000", stop))])
        [error] = [d for d in program.diagnostics if d.code == "E002"]
        assert "stop-loss at STOP limit LIMIT on exchange" in error.message, error.message
        assert "upper case" not in error.message


def test_each_oco_of_a_firing_has_its_own_client_oid() -> None:
    oids = [oco_oid("engine-1", "exit", 3, k) for k in range(50)]
    assert oids[0] == client_oid("engine-1", "exit", 3)  # the first is the firing's own
    assert len(set(oids)) == 50 and oids == [oco_oid("engine-1", "exit", 3, k)
                                             for k in range(50)]  # a pure function
    assert all(len(o) <= 40 and o.replace("-", "").isalnum() for o in oids)
    others = {client_oid("engine-1", "exit", n) for n in range(100)}
    assert not others & set(oids[1:])  # never another firing's clientOid


def test_protection_only_the_engine_holds_cannot_go_on_the_exchange() -> None:
    on = "at fill_price - 2% limit fill_price - 2.5% on exchange"
    for extra in ("    exit after 4h\n", ):
        _, found = compiled(bracket("filled_size at fill_price + 3%", on) + extra)
        assert "E421" in [c for c, _, _ in found], (extra, found)
    _, found = compiled(bracket("filled_size at fill_price + 3%", "at fill_price - 2%")
                        + "    exit after 4h\n")
    [note] = [c for c in found if c[0] == "N712"]
    assert note == ("N712", 7, 5)
