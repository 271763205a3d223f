"""Every example lints clean (warnings allowed), alone and all together as a watcher loads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules_engine.compiler import compile_sources
from rules_engine.dsl import SourceFile, parse

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.rules"))


def test_there_is_an_example_for_every_feature_family() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {
        "brief",
        "quickstart",
        "one_liners",
        "triggers",
        "indicators",
        "lifecycle",
        "orders",
        "chains",
        "actions",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_lints_without_errors(path: Path) -> None:
    source = SourceFile.read(path)
    program = compile_sources([source])
    assert program.errors == ()
    assert len(program.rules) == len(parse(source).rules) > 0


def test_all_examples_load_together_without_duplicate_identities() -> None:
    program = compile_sources([SourceFile.read(p) for p in EXAMPLES])
    assert program.errors == ()
    identities = [r.identity for r in program.rules]
    assert len(identities) == len(set(identities))


def test_the_brief_examples_compile_to_what_the_brief_says() -> None:
    program = compile_sources([SourceFile.read(p) for p in EXAMPLES if p.stem == "brief"])
    rules = program.by_identity
    assert set(rules) >= {
        "dip_buyer",
        "dip_exit",
        "eth_breakout",
        "eth_hold",
        "thin_book",
        "eth_trail",
        "btc_stop",
        "panic",
    }
    one_liner = next(r for r in program.rules if r.name is None)
    order = one_liner.order
    assert order is not None
    assert (order.symbol, order.order_type, order.side, order.price) == (
        "BTC-USDT",
        "limit",
        "buy",
        None,
    )  # joins the book: no price
    dip = rules["dip_buyer"]
    assert dip.cancel_after_seconds == 600
    assert (dip.repeat_seconds, dip.max_firings) == (3600, 3)
    assert dip.order is not None and dip.order.post_only
    exit_ = rules["dip_exit"]
    assert exit_.after == ("dip_buyer", "filled")
    assert exit_.order is not None and exit_.order.stop_loss is not None
    assert rules["eth_hold"].for_seconds == 30
    assert rules["btc_stop"].order is not None and rules["btc_stop"].order.order_type == "stop"
    trail = rules["eth_trail"].order
    assert trail is not None and str(trail.trail) == "0.02"
    window = rules["thin_book"].window
    assert window is not None
    assert (window.start_minute, window.end_minute) == (8 * 60, 20 * 60)
    assert window.days == frozenset({1, 2, 3, 4, 5})
    assert rules["eth_breakout"].order is not None
    assert rules["eth_breakout"].order.size.kind == "funds"
