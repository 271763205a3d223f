"""The safety diagnostics (docs/diagnostics.md, "Money"): each fires on its mistake, names the
amount at stake, and stays silent on the examples and on correct rules that look alike."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from rules_engine.cli import main
from rules_engine.compiler import MarketSnapshot, SafetyLimits, compile_sources
from rules_engine.dsl import Diagnostic, SourceFile

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.rules"))
SAFETY = {"W701", "W702", "W703", "W704", "E705", "W706", "W707", "W708", "W709", "W710", "N711"}
TRAIL = "rule t on BTC-USDT:\n    when last > 60000\n    place trailing-stop sell 0.01 by "
ENTRY = "rule entry on BTC-USDT:\n    when ask < 58000\n    place limit buy 0.01 at 57990\n"


def diags(
    text: str, market: MarketSnapshot | None = None, limits: SafetyLimits | None = None
) -> list[Diagnostic]:
    source = SourceFile("t.rules", text)
    return list(compile_sources([source], market=market, limits=limits).diagnostics)


def found(text: str, code: str, **kw: object) -> list[Diagnostic]:
    return [d for d in diags(text, **kw) if d.code == code]  # type: ignore[arg-type]


# (code, the mistake, correct rules that look alike)
CASES: list[tuple[str, str, list[str]]] = [
    (
        "W701",
        "rule dca on BTC-USDT:\n    when last < 60000\n    place market buy 0.01\n"
        "    repeat every 1h\n",
        [
            "rule dca on BTC-USDT:\n    when last < 60000\n    place market buy 0.01\n"
            "    repeat every 1h max 24\n",
            "rule dca on BTC-USDT:\n    when last < 60000\n    place market buy 0.01\n"
            "    repeat every 1h\n    expires in 7d\n",
            'rule tell on BTC-USDT:\n    when last < 60000\n    notify "low"\n'
            "    repeat every 1h\n",
        ],
    ),
    (
        "W702",
        "when BTC-USDT last < 60000 place market buy 100\n",
        [
            "when BTC-USDT last < 60000 place market buy 100 USDT\n",
            "when BTC-USDT last < 60000 place market buy 0.5\n",
            "when BTC-USDT rsi(14, 1h) < 30 place market buy 100\n",  # no price: silent
        ],
    ),
    (
        "W703",
        "rule s on BTC-USDT:\n    when last < 60000\n    place stop sell 0.01 at 61000\n",
        [
            "rule s on BTC-USDT:\n    when last < 62000\n    place stop sell 0.01 at 61000\n",
            "rule s on BTC-USDT:\n    when last > 60000\n    place stop buy 0.01 at 61000\n",
            "rule s on BTC-USDT:\n    when last < 62000\n    place stop sell 0.01 at last - 1%\n",
        ],
    ),
    (
        "W704",
        "rule tp on BTC-USDT:\n    when last > 60000\n    place limit sell 0.01 at 59000\n",
        [
            "rule tp on BTC-USDT:\n    when last > 60000\n    place limit sell 0.01 at 61000\n",
            "rule tp on BTC-USDT:\n    when last > 60000\n    place limit sell 0.01 at 59900\n",
            "rule tp on BTC-USDT:\n    when last > 60000\n    place limit sell 0.01 at bid ioc\n",
            "rule b on BTC-USDT:\n    when ask < 60000\n    place limit buy 0.01 at ask\n",
            "rule b on BTC-USDT:\n    when ask < 60000\n    place limit buy 0.01 at ask - 1%\n",
        ],
    ),
    (
        "E705",
        ENTRY + "rule bracket on BTC-USDT:\n    after entry filled\n"
        "    place limit sell filled_size at fill_price - 3%\n    stop-loss at fill_price - 4%\n",
        [
            ENTRY + "rule bracket on BTC-USDT:\n    after entry filled\n"
            "    place limit sell filled_size at fill_price + 3%\n"
            "    stop-loss at fill_price - 2%\n",
            ENTRY + "rule bracket on BTC-USDT:\n    after entry filled\n"
            "    place limit sell filled_size at 62000\n    stop-loss at fill_price - 2%\n",
        ],
    ),
    (
        "W706",
        ENTRY + "rule exit on BTC-USDT:\n    after entry filled\n"
        "    place limit sell 100% of BTC at fill_price + 3%\n",
        [
            ENTRY + "rule exit on BTC-USDT:\n    after entry filled\n"
            "    place limit sell filled_size at fill_price + 3%\n",
            "rule exit on BTC-USDT:\n    when last > 70000\n    place limit sell 100% of BTC\n",
        ],
    ),
    (
        "W707",
        "rule all_in on BTC-USDT:\n    when last < 50000\n    place market buy 100% of USDT\n",
        [
            "rule all_in on BTC-USDT:\n    when last < 50000\n    place market buy 99.8% of USDT\n",
            "rule out on BTC-USDT:\n    when last > 70000\n    place market sell 100% of BTC\n",
        ],
    ),
    (
        "W708",
        "rule m on ETH-USDT:\n    when change > 5\n    place market buy 100 USDT\n",
        [
            "rule m on ETH-USDT:\n    when change > 5%\n    place market buy 100 USDT\n",
            "rule m on ETH-USDT:\n    when change > 0.05\n    place market buy 100 USDT\n",
            "rule m on ETH-USDT:\n    when last > 5\n    place market buy 100 USDT\n",
        ],
    ),
    (
        "W709",
        TRAIL + "0.0001%\n",
        [TRAIL + "2%\n", TRAIL + "40%\n"],
    ),
    (
        "W709",
        TRAIL + "60%\n",
        [TRAIL + "50%\n"],
    ),
    (
        "W710",
        "rule f on BTC-USDT:\n    when ETH-USDT last < 2000\n    place market buy 50 USDT\n",
        [
            "rule f on BTC-USDT:\n    when ETH-USDT last < 2000 and BTC-USDT ask < 60000\n"
            "    place market buy 50 USDT\n",
            "rule f on BTC-USDT:\n    when ETH-USDT last < 2000\n"
            "    place limit buy 0.01 at 59000\n",
            "rule f on BTC-USDT:\n    when ETH-USDT last < 2000 and last < 60000\n"
            "    place market buy 50 USDT\n",
        ],
    ),
    (
        "N711",
        "rule r on BTC-USDT:\n    when last < 50000\n    cancel all\n    place market sell 0.01\n",
        [
            'rule r on BTC-USDT:\n    when last < 50000\n    cancel all\n    notify "out"\n',
        ],
    ),
    (
        "W708",
        "rule m on ETH-USDT:\n    when change(24, 1h) > 3\n    place market buy 100 USDT\n",
        [
            "rule m on ETH-USDT:\n    when change(24, 1h) > 3%\n    place market buy 100 USDT\n",
            "rule m on ETH-USDT:\n    when change(24, 1h) > 0.03\n    place market buy 100 USDT\n",
            "rule m on ETH-USDT:\n    when atr(24, 1h) > 3\n    place market buy 100 USDT\n",
        ],
    ),
]


@pytest.mark.parametrize(
    ("code", "bad", "good"), CASES, ids=[f"{c[0]}-{n}" for n, c in enumerate(CASES)]
)
def test_fires_on_its_mistake_and_not_on_rules_that_look_alike(
    code: str, bad: str, good: list[str]
) -> None:
    assert found(bad, code), diags(bad)
    for text in good:
        assert not found(text, code), (text, found(text, code))
        assert not [d for d in diags(text) if d.is_error], text


def test_every_safety_code_is_tested_here() -> None:
    assert {c[0] for c in CASES} == SAFETY
    assert found(TRAIL + "60%\n", "W709")[0].message.startswith("a trailing distance of 60%")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_examples_raise_no_safety_diagnostic(path: Path) -> None:
    source = SourceFile.read(path)
    for market in (None, MarketSnapshot({"BTC-USDT": Decimal(60000)}, datetime.now(UTC))):
        codes = {d.code for d in compile_sources([source], market=market).diagnostics}
        assert not codes & SAFETY, codes & SAFETY


def test_the_inverted_bracket_is_an_error_in_literal_prices_too() -> None:
    text = (
        "rule b on BTC-USDT:\n    when last > 60000\n    place limit sell 0.01 at 61000\n"
        "    stop-loss at 62000\n"
    )
    (diag,) = found(text, "E705")
    assert diag.is_error and diag.span.line == 4
    assert "take-profit is at or below the stop-loss" in diag.message
    assert not found(text.replace("62000", "59000"), "E705")


def test_a_stop_loss_above_the_fill_is_an_inverted_bracket() -> None:
    text = ENTRY + (
        "rule b on BTC-USDT:\n    after entry filled\n"
        "    place limit sell filled_size at fill_price + 3%\n    stop-loss at fill_price + 1%\n"
    )
    (diag,) = found(text, "E705")
    assert "triggers as soon as the entry fills" in diag.message


def test_messages_name_the_amount_at_stake_and_the_price_source() -> None:
    (w702,) = found("when BTC-USDT last < 60000 place market buy 100\n", "W702")
    assert "6,000,000 USDT" in w702.message
    assert "the price the rule's condition names" in w702.message
    assert "write `100 USDT`" in w702.message
    market = MarketSnapshot({"BTC-USDT": Decimal(50000)}, datetime(2026, 1, 2, tzinfo=UTC), "X")
    (w702,) = found("when BTC-USDT rsi(14, 1h) < 30 place market buy 100\n", "W702", market=market)
    assert "5,000,000 USDT" in w702.message and "last price in X of 2026-01-02" in w702.message
    (w701,) = found(CASES[0][1], "W701")
    assert "600 USDT" in w701.message and "14,400 USDT a day" in w701.message
    (w704,) = found(CASES[3][1], "W704")
    assert "1.67% below" in w704.message and "590 USDT" in w704.message
    (w706,) = found(CASES[5][1], "W706")
    assert "0.06 USDT at 60000" in found(CASES[8][1], "W709")[0].message
    assert "entry buys 0.01 BTC" in w706.message and "filled_size" in w706.message


def test_relative_prices_are_checked_against_the_market_and_the_fill() -> None:
    buy_high = "rule b on BTC-USDT:\n    when bid < 60000\n    place limit buy 0.01 at ask + 1%\n"
    assert "1% above the market" in found(buy_high, "W704")[0].message
    chained = ENTRY + (
        "rule x on BTC-USDT:\n    after entry filled\n"
        "    place limit sell filled_size at fill_price - 2%\n"
    )
    assert "below the parent's fill price" in found(chained, "W704")[0].message
    stop_up = ENTRY + (
        "rule x on BTC-USDT:\n    after entry filled\n"
        "    place stop sell filled_size at fill_price + 1%\n"
    )
    assert found(stop_up, "W703")


def test_configured_limits_bound_repeat_and_set_the_value_threshold() -> None:
    repeat = CASES[0][1]
    assert not found(repeat, "W701", limits=SafetyLimits(max_rule_notional=Decimal(2000)))
    small = "when BTC-USDT last < 60000 place market buy 0.1\n"  # 6,000 USDT
    assert not found(small, "W702")
    (diag,) = found(small, "W702", limits=SafetyLimits(Decimal(1000), source="--config w.toml"))
    assert "max_order_notional 1000 in --config w.toml" in diag.message


def test_value_is_compared_with_the_files_other_orders() -> None:
    text = (
        "when BTC-USDT last < 60000 place market buy 20 USDT\n"
        "when BTC-USDT last < 59000 place market buy 30 USDT\n"
        "when BTC-USDT last < 58000 place market buy 0.1\n"  # 5,800 USDT, 232x the median 25
    )
    (diag,) = found(text, "W702")
    assert diag.span.line == 3 and "median value of this file's other USDT orders (25" in (
        diag.message
    )


def test_cli_reads_risk_limits_from_config_and_max_order_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "r.rules"
    rules.write_text(CASES[0][1])
    config = tmp_path / "w.toml"
    config.write_text('[risk]\nmax_daily_notional = "5000"\n')
    assert main(["lint", str(rules)]) == 0
    assert "W701" in capsys.readouterr().out
    assert main(["lint", "--config", str(config), str(rules)]) == 0
    assert "W701" not in capsys.readouterr().out
    assert main(["lint", "--max-order-value", "100", str(rules)]) == 0
    assert "above max_order_notional 100 in --max-order-value" in capsys.readouterr().out
    config.write_text('[risk]\nmax_daily_notional = "-5"\n')
    assert main(["lint", "--config", str(config), str(rules)]) == 2
    assert "risk.max_daily_notional must be an amount above zero" in capsys.readouterr().err
    config.write_text("[risk\n")
    assert main(["lint", "--config", str(config), str(rules)]) == 2
    assert "is not TOML" in capsys.readouterr().err
