"""Property tests of the matching engine over random sequences of orders, cancels and feed moves.

Invariants after every step: holds equal what open orders hold, nothing is negative, balances
move exactly by the fills and their fees, the book is never crossed, and a client that applies
the emitted level2 changes to the first snapshot holds exactly the engine's book.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules_engine.sandbox.engine import Engine, L2Change, Order, OrderRequest
from rules_engine.sandbox.feeds import load_symbols

D = Decimal
NOW = 1_767_225_600_000
TICK = D("0.1")
MID = 1000  # in ticks: price 100.0

place = st.tuples(
    st.just("place"), st.sampled_from(["buy", "sell"]), st.sampled_from(["limit", "market"]),
    st.integers(-15, 15), st.integers(1, 300),
    st.sampled_from(["GTC", "IOC", "FOK", "post", "hidden", "CN", "CO", "CB", "DC"]),
)
cancel = st.tuples(st.just("cancel"), st.integers(0, 50))
feed = st.tuples(st.just("feed"), st.integers(-10, 10), st.integers(1, 4))
ops = st.lists(st.one_of(place, cancel, feed, feed), min_size=15, max_size=50)


def _feed_levels(center: int, spread: int) -> tuple[list[tuple[Decimal, Decimal]],
                                                    list[tuple[Decimal, Decimal]]]:
    bids = [((center - spread - i) * TICK, D("0.3") + D(i) / 10) for i in range(8)]
    asks = [((center + spread + i) * TICK, D("0.25") + D(i) / 10) for i in range(8)]
    return bids, asks


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_engine_invariants_hold_for_any_sequence(steps: list[tuple[object, ...]]) -> None:
    start = {"USDT": D(5000), "BTC": D(20)}
    e = Engine(load_symbols(), start, maker_fee=D("0.001"), taker_fee=D("0.002"))
    bids, asks = _feed_levels(MID, 1)
    e.apply_feed("BTC-USDT", bids, asks, NOW)
    seq, snap_bids, snap_asks = e.snapshot("BTC-USDT")
    client = {"bids": dict(snap_bids), "asks": dict(snap_asks)}
    client_seq = seq
    placed: list[Order] = []
    center = MID
    for n, step in enumerate(steps):
        now = NOW + n
        events: list[object]
        if step[0] == "place":
            _, side, kind, offset, size_units, flavour = step
            req = OrderRequest(
                symbol="BTC-USDT", side=side, type=kind, client_oid=f"p{n}",  # type: ignore[arg-type]
                price=(center + offset) * TICK if kind == "limit" else None,  # type: ignore[operator]
                size=D(size_units) / 1000 if kind == "limit" or side == "sell" else None,  # type: ignore[arg-type]
                funds=D(size_units) if kind == "market" and side == "buy" else None,  # type: ignore[arg-type]
                time_in_force=flavour if flavour in ("IOC", "FOK") else "GTC",  # type: ignore[arg-type]
                post_only=flavour == "post", hidden=flavour == "hidden",
                stp=flavour if flavour in ("CN", "CO", "CB") or (
                    flavour == "DC" and kind == "limit") else "",  # type: ignore[arg-type]
            )
            result, events = e.place(req, now)  # type: ignore[assignment]
            if isinstance(result, Order):
                placed.append(result)
        elif step[0] == "cancel":
            if not placed:
                continue
            target = placed[step[1] % len(placed)]  # type: ignore[operator]
            _, events = e.cancel(target.id, now)  # type: ignore[assignment]
        else:
            center += step[1]  # type: ignore[operator]
            bids, asks = _feed_levels(center, step[2])  # type: ignore[arg-type]
            events = e.apply_feed("BTC-USDT", bids, asks, now)  # type: ignore[assignment]
        for event in events:
            if isinstance(event, L2Change) and event.symbol == "BTC-USDT":
                assert event.sequence == client_seq + 1
                client_seq = event.sequence
                side_book = client[event.side]
                if event.size == 0:
                    side_book.pop(event.price, None)
                else:
                    side_book[event.price] = event.size
        _check(e, start, client, client_seq)


def _check(e: Engine, start: dict[str, Decimal], client: dict[str, dict[Decimal, Decimal]],
           client_seq: int) -> None:
    acct = e.account
    for currency in ("USDT", "BTC"):
        held = sum((o.hold for o in e.orders.values() if o.active and
                    (currency == "USDT") == (o.side == "buy")), D(0))
        assert acct.held(currency) == held
        assert acct.available(currency) >= 0
        assert acct.held(currency) >= 0
    fills = e.fills
    base = start["BTC"] + sum((f.size if f.side == "buy" else -f.size for f in fills), D(0))
    quote = start["USDT"] + sum(
        (-(f.funds + f.fee) if f.side == "buy" else f.funds - f.fee for f in fills), D(0))
    assert acct.total("BTC") == base and acct.total("USDT") == quote
    seq, bids, asks = e.snapshot("BTC-USDT")
    assert (client_seq, client["bids"], client["asks"]) == (seq, dict(bids), dict(asks))
    if bids and asks:
        assert bids[0][0] < asks[0][0]
    open_ids = set().union(*e.open_ids.values()) if e.open_ids else set()
    assert open_ids == {o.id for o in e.orders.values() if o.active}
    for order in e.orders.values():
        assert order.deal_size >= 0 and order.remaining >= 0
        assert order.in_book == (order.status == "open")
        for name in ("bids", "asks"):
            for _price, level in e.books["BTC-USDT"].levels(name):
                assert level.shown == sum((o.visible for o in level.orders), D(0))
