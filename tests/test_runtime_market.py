"""The market state's freshness verdicts and values (pure), and rule states stored exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from rules_engine.adapters.kucoin._book import Delta, Level2Book
from rules_engine.compiler import model as M
from rules_engine.core.market import Stats24h, Ticker
from rules_engine.engine import Arm, Fill, RuleState, dump_state, load_state, restore
from rules_engine.runtime._market import MarketState

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
D = Decimal
BID, ASK, LAST = M.Field("BTC-USDT", "bid"), M.Field("BTC-USDT", "ask"), M.Field("BTC-USDT", "last")
MID, SPREAD = M.Field("BTC-USDT", "mid"), M.Field("BTC-USDT", "spread")
DEPTH = M.Depth("BTC-USDT", "bid", D("0.001"))


def ticker(last: str, bid: str = "100", ask: str = "101") -> Ticker:
    return Ticker("BTC-USDT", D(last), D("1"), D(bid), D("2"), D(ask), D("3"), 1, T0)


def live_book() -> Level2Book:
    book = Level2Book("BTC-USDT", T0)
    book.on_snapshot(10, [["60000", "1"], ["59990", "2"], ["59000", "5"]],
                     [["60010", "1.5"], ["60020", "1"]], T0)
    return book


def test_nothing_is_fresh_until_the_connection_is_live() -> None:
    market = MarketState([LAST])
    market.on_ticker(ticker("100"), T0)
    assert market.refresh("BTC-USDT", T0) == []
    market.live = True
    [change] = market.refresh("BTC-USDT", T0)
    assert (change.old, change.new) == (None, D("100")) and market.values[LAST] == D("100")


def test_a_dropped_connection_makes_every_value_unknown() -> None:
    market = MarketState([LAST, BID])
    market.live = True
    market.on_ticker(ticker("100"), T0)
    market.refresh("BTC-USDT", T0)
    market.live = False
    changes = market.refresh_all(T0)
    assert {c.leaf for c in changes} == {LAST, BID} and all(c.new is None for c in changes)
    assert market.values == {}


def test_a_followed_books_sides_come_from_the_book_only_and_only_while_it_is_live() -> None:
    market = MarketState([BID, ASK, MID, SPREAD, DEPTH])
    market.live = True
    book = live_book()
    market.set_book("BTC-USDT", book)
    market.on_ticker(ticker("1", bid="1", ask="2"), T0)  # the ticker disagrees: ignored
    market.refresh("BTC-USDT", T0)
    assert market.values[BID] == D("60000") and market.values[ASK] == D("60010")
    assert market.values[MID] == D("60005") and market.values[SPREAD] == D("10")
    # bid_depth(0.1%): bids within 0.1% of mid (>= 59944.995): 60000 and 59990.
    assert market.values[DEPTH] == D("3")
    book.on_delta(Delta(13, 13, [["59995", "1", "13"]], []), T0)  # a gap: 11 and 12 missing
    market.refresh("BTC-USDT", T0)
    assert BID not in market.values and DEPTH not in market.values  # not the ticker's bid


def test_an_age_limit_makes_a_quiet_value_stale() -> None:
    market = MarketState([LAST], max_age={"last": 5})
    market.live = True
    market.on_ticker(ticker("100"), T0)
    market.refresh("BTC-USDT", T0)
    assert market.refresh("BTC-USDT", T0 + timedelta(seconds=5)) == []
    [change] = market.refresh("BTC-USDT", T0 + timedelta(seconds=6))
    assert change.new is None


def test_without_a_limit_a_quiet_market_on_a_live_connection_stays_fresh() -> None:
    market = MarketState([LAST, M.Field("BTC-USDT", "volume")])
    market.live = True
    market.on_ticker(ticker("100"), T0)
    market.on_stats(Stats24h("BTC-USDT", D("100"), D("0.01"), D("1234"), None, None, T0), T0)
    market.refresh("BTC-USDT", T0)
    assert market.refresh("BTC-USDT", T0 + timedelta(days=1)) == []
    assert market.values[M.Field("BTC-USDT", "volume")] == D("1234")


def test_only_symbols_whose_rules_read_the_book_follow_it() -> None:
    market = MarketState([LAST, M.Field("ETH-USDT", "ask"), M.Depth("XRP-USDT", "ask", D("1"))])
    assert sorted(market.book_symbols()) == ["ETH-USDT", "XRP-USDT"]


decimals = st.decimals(min_value=-10**6, max_value=10**6, places=6, allow_nan=False)


@given(
    status=st.sampled_from(["waiting", "armed", "cooling", "done", "blocked"]),
    firings=st.integers(0, 10**6),
    baselines=st.lists(st.none() | st.tuples(decimals, decimals), max_size=3),
    arms=st.lists(st.tuples(st.integers(1, 99), st.none() | st.tuples(decimals, decimals)),
                  max_size=3),
    seconds=st.integers(0, 10**7),
)
def test_rule_states_are_stored_exactly(
    status: str, firings: int, baselines: list[tuple[D, D] | None],
    arms: list[tuple[int, tuple[D, D] | None]], seconds: int,
) -> None:
    state = RuleState(status, firings, T0, T0 + timedelta(seconds=seconds), seconds % 2 == 0,
                      None, tuple(baselines),
                      tuple(Arm(n, None if f is None else Fill(*f)) for n, f in arms))
    assert load_state(dump_state(state)) == state
    restored = restore(state)
    assert restored.true_since is None and all(b is None for b in restored.baselines)
    assert restored._replace(true_since=state.true_since, baselines=state.baselines) == state
