"""Compiled rules: identities, fingerprints, resolved symbols, typed values, reload cache."""

from __future__ import annotations

from decimal import Decimal

from rules_engine.compiler import Compiler, compile_sources, shipped_symbols
from rules_engine.compiler import model as M
from rules_engine.dsl import SourceFile

ONE = "when BTC-USDT bid < 60000 place limit buy 0.01 at 59000\n"
TWO = "when ETH-USDT ask > 4000 place market sell 0.05\n"


def compiled(text: str) -> M.CompiledProgram:
    return compile_sources([SourceFile("t.rules", text)])


def test_unnamed_identity_survives_edits_to_other_lines_and_layout() -> None:
    first = compiled(ONE + TWO).rules[0]
    moved = compiled(
        "# a comment\n\n"
        + TWO
        + "when  BTC-USDT bid<60000   place limit buy 0.010 at 59000.0 # x\n"
    )
    again = next(r for r in moved.rules if r.symbol == "BTC-USDT")
    assert first.identity == again.identity
    assert first.fingerprint == again.fingerprint
    assert first.identity.startswith("rule-")


def test_a_change_of_meaning_changes_the_fingerprint_and_unnamed_identity() -> None:
    a = compiled(ONE).rules[0]
    b = compiled(ONE.replace("60000", "60001")).rules[0]
    assert a.fingerprint != b.fingerprint
    assert a.identity != b.identity


def test_a_named_rule_keeps_its_identity_when_its_meaning_changes() -> None:
    text = "rule dip on BTC-USDT:\n    when bid < {}\n    place limit buy 0.01 at 59000\n"
    a = compiled(text.format(60000)).rules[0]
    b = compiled(text.format(61000)).rules[0]
    assert a.identity == b.identity == "dip"
    assert a.fingerprint != b.fingerprint


def test_compiled_rules_are_immutable_and_hashable() -> None:
    rule = compiled(ONE).rules[0]
    assert hash(rule.condition) == hash(compiled(ONE).rules[0].condition)
    try:
        rule.identity = "x"  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("a compiled rule must be frozen")


def test_values_are_resolved_and_typed() -> None:
    text = (
        "rule r on BTC-USDT:\n"
        "    when spread < 0.1% and ETH-USDT last between 1000 and 2000 and change < -10%\n"
        "    place limit sell 0.01 at ask + 2%\n"
    )
    rule = compiled(text).rules[0]
    assert rule.symbols == frozenset({"BTC-USDT", "ETH-USDT"})
    assert isinstance(rule.condition, M.All)
    spread, low, high, change = rule.condition.parts
    assert spread == M.Compare(
        "<",
        M.Arith("/", M.Field("BTC-USDT", "spread"), M.Field("BTC-USDT", "mid")),
        M.Const(Decimal("0.001")),
    )
    assert low == M.Compare(">=", M.Field("ETH-USDT", "last"), M.Const(Decimal(1000)))
    assert high == M.Compare("<=", M.Field("ETH-USDT", "last"), M.Const(Decimal(2000)))
    assert change == M.Compare("<", M.Field("BTC-USDT", "change"), M.Const(Decimal("-0.1")))
    order = rule.order
    assert order is not None
    assert order.price == M.Offset(M.Field("BTC-USDT", "ask"), Decimal("1.02"))


def test_inside_place_a_bare_field_means_the_orders_symbol() -> None:
    rule = compiled("when ETH-USDT last < 2000 place limit buy 0.05 at bid - 1\n").rules[0]
    assert rule.order is not None
    assert rule.order.price == M.Arith("-", M.Field("ETH-USDT", "bid"), M.Const(Decimal(1)))


def test_windows_wrap_past_midnight_and_days_past_sunday() -> None:
    text = (
        "rule w on BTC-USDT:\n    when bid < 5\n    place market buy 50 USDT\n"
        "    during 22:00-02:00 UTC on sat-mon\n"
    )
    window = compiled(text).rules[0].window
    assert window == M.Window(22 * 60, 2 * 60, frozenset({6, 7, 1}))


def test_reloading_an_unchanged_file_does_no_parsing() -> None:
    compiler = Compiler(shipped_symbols())
    source = SourceFile("a.rules", ONE)
    first = compiler.compile([source])
    assert compiler.parses == 1
    second = compiler.compile([SourceFile("a.rules", ONE)])
    assert compiler.parses == 1
    assert first.rules == second.rules
    compiler.compile([SourceFile("a.rules", ONE + TWO)])
    assert compiler.parses == 2


def test_duplicates_are_found_across_files_loaded_together() -> None:
    a = SourceFile(
        "a.rules", "rule x on BTC-USDT:\n    when bid < 5\n    place market buy 50 USDT\n"
    )
    b = SourceFile(
        "b.rules", "rule x on ETH-USDT:\n    when bid < 5\n    place market buy 50 USDT\n"
    )
    program = compile_sources([a, b])
    assert [(d.code, d.path) for d in program.errors] == [("E401", "b.rules")]
    assert "a.rules:1" in program.errors[0].message


def test_the_shortcut_for_one_comparison_agrees_with_testing_every_region() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from rules_engine.compiler._analysis import _decide, _points, _test
    from rules_engine.compiler._vocab import ANY, NON_NEGATIVE, POSITIVE, RATE, RSI

    @given(
        st.sampled_from(["<", "<=", ">", ">=", "==", "!="]),
        st.decimals(min_value=-200, max_value=200, places=2),
        st.sampled_from([ANY, NON_NEGATIVE, POSITIVE, RATE, RSI]),
    )
    def agree(op: str, c: Decimal, domain: object) -> None:
        from rules_engine.compiler._vocab import Domain

        assert isinstance(domain, Domain)
        truths = [_test(op, x, c) for x in _points(domain, [c])]
        assert _decide(op, c, domain) == (any(truths), all(truths))

    agree()


def test_highest_and_lowest_compile_to_indicators_with_their_usage_on_misuse() -> None:
    program = compiled(
        "when BTC-USDT last > highest(20, 1h) and last < lowest(5, 4h) + 10%"
        " place market buy 10 USDT\n"
    )
    assert program.ok, program.diagnostics
    (rule,) = program.rules
    assert M.Indicator("BTC-USDT", "highest", 20, "1h") in repr_leaves(rule.condition)
    bad = compiled("when BTC-USDT last > highest(1h) place market buy 10 USDT\n")
    assert [d.code for d in bad.diagnostics] == ["E108"]
    assert "highest(n, timeframe), such as highest(20, 1h)" in bad.diagnostics[0].message


def repr_leaves(cond: object) -> list[object]:
    found: list[object] = []
    stack = [cond]
    while stack:
        node = stack.pop()
        if isinstance(node, M.Indicator):
            found.append(node)
        elif isinstance(node, tuple):
            stack.extend(node)
    return found


# ------------------------------------------------------------------ volatility, momentum, volume


def leaves_of(text: str) -> list[object]:
    program = compiled(text)
    assert program.ok, program.diagnostics
    return repr_leaves(program.rules[0].condition)


def test_an_indicator_rule_of_before_params_keeps_its_identity() -> None:
    # Computed on the commit before `Indicator.params` existed: stored states stay attached.
    rule = compiled(
        "when BTC-USDT last > sma(200, 1h) and rsi(14, 1h) < 30 place market buy 50 USDT\n"
    ).rules[0]
    assert (rule.identity, rule.fingerprint) == ("rule-1ae932f5f736", "1ae932f5f7367341")


def test_bands_and_macd_compile_with_their_defaults_spelt_out() -> None:
    two = (Decimal(2),)
    assert leaves_of("when BTC-USDT last < bb_lower(20, 1h) place market buy 10 USDT\n") == [
        M.Indicator("BTC-USDT", "bb_lower", 20, "1h", two)
    ]
    short = compiled("when BTC-USDT last > bb_upper(20, 1h) place market buy 10 USDT\n")
    spelt = compiled("when BTC-USDT last > bb_upper(20, 2.0, 1h) place market buy 10 USDT\n")
    assert short.rules[0].identity == spelt.rules[0].identity  # the same meaning
    macd = M.Indicator("BTC-USDT", "macd_hist", 12, "4h", (Decimal(26), Decimal(9)))
    assert leaves_of("when BTC-USDT macd_hist(4h) > 0 place market buy 10 USDT\n") == [macd]
    assert leaves_of(
        "when BTC-USDT macd_hist(12, 26, 9, 4h) > 0 place market buy 10 USDT\n"
    ) == [macd]
    assert M.label(macd) == "BTC-USDT macd_hist(12, 26, 9, 4h)"


def test_change_over_candles_is_a_rate_and_volume_of_a_candle_a_candle_field() -> None:
    found = leaves_of(
        "when BTC-USDT change(24, 1h) > 5% and atr(14, 1h) > 0 and vwap(24, 1h) > 0"
        " place market buy 10 USDT\n"
    )
    assert M.Indicator("BTC-USDT", "change", 24, "1h") in found
    program = compiled("when BTC-USDT volume(1h) > 100 and volume > 5 place market buy 10 USDT\n")
    assert program.ok, program.diagnostics
    cond = program.rules[0].condition
    assert isinstance(cond, M.All)
    assert [part.left for part in cond.parts if isinstance(part, M.Compare)] == [
        M.CandleField("BTC-USDT", "volume", "1h"),
        M.Field("BTC-USDT", "volume"),
    ]


def test_misused_new_indicators_are_e108_with_their_usage() -> None:
    cases = {
        "macd(26, 12, 9, 1h) > 0": "fast period (26) must be below its slow one (12)",
        "macd(12, 26, 1h) > 0": "macd(timeframe) or macd(fast, slow, signal, timeframe)",
        "bb_upper(1, 1h) > 0": "bb_upper period must be between 2 and 1000",
        "bb_upper(20, 0, 1h) > 1": "above 0 and at most 10",
        "bb_middle(20, 2, 1h) > 1": "bb_middle(n, timeframe)",
        "atr(14) > 1": "atr(n, timeframe), such as atr(14, 1h)",
        "volume(1h, 2) > 1": "`volume` alone is the 24h volume",
        "vwap(1h) > 1": "vwap(n, timeframe)",
    }
    for condition, message in cases.items():
        program = compiled(f"when BTC-USDT {condition} place market buy 10 USDT\n")
        assert [d.code for d in program.diagnostics] == ["E108"], condition
        assert message in program.diagnostics[0].message, program.diagnostics[0].message


def test_impossible_conditions_on_new_indicators_are_found() -> None:
    for condition in ("atr(14, 1h) < 0", "change(3, 1h) < -100%", "volume(1h) < 0",
                      "vwap(24, 1h) <= 0"):
        program = compiled(f"when BTC-USDT {condition} place market buy 10 USDT\n")
        assert [d.code for d in program.diagnostics] == ["E501"], condition
    # bands below zero and MACD of either sign are possible: no diagnostic
    assert compiled("when BTC-USDT bb_lower(20, 1h) < 0 and macd(1h) < 0"
                    " place market buy 10 USDT\n").diagnostics == ()
