"""Engine-held protection end to end, against the sandbox on port 0 with a real SQLite file:
buy-side brackets, a guard shared by two take-profit targets with a break-even move, a time
exit (also across a restart), and a trailing stop-loss inside a bracket."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from test_watcher import (  # noqa: F401 - db_url is a fixture
    SYMBOL,
    Rig,
    book,
    db_url,
    moved_clock,
    rig,
    settle,
    until,
    venue,
    watch,
)

D = Decimal

SHORT = (
    "rule short on BTC-USDT:\n    when bid > 58000\n    place market sell 0.002\n"
    "rule cover on BTC-USDT:\n    after short filled\n"
    "    place limit buy filled_size at fill_price - 3%\n"
    "    stop-loss at fill_price + 2%\n"
)


def side_total(r: Rig, side: str) -> D:
    return sum((o.deal_size for o in r.orders() if o.req.side == side), D(0))


def only(r: Rig, oid: str) -> Any:
    [order] = [o for o in r.orders() if o.req.client_oid == oid]
    return order


async def test_a_buy_side_bracket_stops_out_above_cancelling_its_take_profit_first(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, SHORT) as r:
        await until(lambda: len(r.watcher.legs) == 1 and not r.watcher.pending, 5)
        [leg] = r.watcher.legs.values()
        [tp] = [o for o in r.orders() if o.req.side == "buy"]
        # Sold at the bid 59000: the take-profit buys back 3% below, the stop 2% above.
        assert tp.req.type == "limit" and tp.req.price == D("57230")
        assert leg.side == "buy" and leg.trigger == D("60180") and leg.size == D("0.002")
        r.push("60150", "60170", trade="60170")  # under the stop: nothing yet
        await settle(0.3)
        assert [o for o in r.orders() if o.req.client_oid == leg.oid] == []
        r.push("60190", "60200", trade="60195")  # the price rises through the stop
        await until(lambda: not r.watcher.tracked and not r.watcher.pending, 5)
        assert tp.status == "done" and tp.deal_size == 0  # cancelled and confirmed first
        stop = only(r, leg.oid)
        assert (stop.req.side, stop.req.type, stop.deal_size) == ("buy", "market", D("0.002"))
        assert side_total(r, "buy") == side_total(r, "sell") == D("0.002")  # flat again


GUARD = (
    "rule entry on BTC-USDT:\n    when ask < 60000\n    place market buy 0.002\n"
    "rule tp1 on BTC-USDT:\n    after entry filled\n"
    "    place limit sell 50% of filled_size at fill_price + 1%\n"
    "rule tp2 on BTC-USDT:\n    after entry filled\n"
    "    place limit sell 50% of filled_size at fill_price + 3%\n"
    "rule guard on BTC-USDT:\n    after entry filled\n"
    "    stop-loss at fill_price - 2%\n"
    "    move stop-loss to fill_price after tp1 filled\n"
)


async def guard_placed(r: Rig) -> tuple[Any, Any, Any]:
    await until(lambda: len(r.watcher.legs) == 1 and not r.watcher.pending
                and len([o for o in r.orders() if o.req.side == "sell"]) == 2, 5)
    [leg] = r.watcher.legs.values()
    tp1, tp2 = sorted((o for o in r.orders() if o.req.side == "sell"), key=lambda o: o.req.price)
    return leg, tp1, tp2


async def test_two_targets_share_one_guard_that_moves_to_break_even_and_closes_the_rest(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, GUARD) as r:
        leg, tp1, tp2 = await guard_placed(r)
        # Bought at the ask 59010: two halves at +1% and +3%, one stop for the whole.
        assert (tp1.req.size, tp1.req.price) == (D("0.001"), D("59600.1"))
        assert (tp2.req.size, tp2.req.price) == (D("0.001"), D("60780.3"))
        assert leg.side == "sell" and leg.size == D("0.002") and leg.trigger == D("57829.8")
        assert set(leg.siblings) == {tp1.req.client_oid, tp2.req.client_oid}
        # The first target fills: the stop moves to the entry's fill (break-even).
        r.feed.push(SYMBOL, [(D("59700"), D("0.001")), (D("59000"), D("1"))],
                    [(D("59800"), D("1"))], trade=(D("59700"), D("0.001"), "buy"))
        await until(lambda: tp1.deal_size == D("0.001") and leg.trigger == D("59010"), 5)
        # The price falls back under the entry: the guard cancels tp2 (confirmed), then
        # sells what is left: the half tp1 did not take.
        r.push("58990", "59000", trade="58995")
        await until(lambda: not r.watcher.tracked and not r.watcher.pending, 5)
        assert tp2.status == "done" and tp2.deal_size == 0
        sale = only(r, leg.oid)
        assert (sale.req.type, sale.req.size, sale.deal_size) == ("market", D("0.001"),
                                                                   D("0.001"))
        assert side_total(r, "sell") == D("0.002")  # never more than the position
        store = r.store()
        moved = [e.payload for e in store.events() if e.kind == "stop_loss.moved"]
        [row] = [o for o in store.orders() if o.client_oid == leg.oid]
        store.close()
        assert moved == [{"from": "57829.8", "to": "59010"}]
        assert row.status == "filled" and row.filled_size == D("0.001")


async def test_a_guard_whose_targets_filled_everything_is_dropped_unsent(tmp_path: Path) -> None:
    async with rig(tmp_path, GUARD) as r:
        leg, tp1, tp2 = await guard_placed(r)
        r.feed.push(SYMBOL, [(D("60800"), D("1"))], [(D("60810"), D("1"))],
                    trade=(D("60800"), D("0.01"), "buy"))  # both targets fill
        await until(lambda: not r.watcher.legs and not r.watcher.tracked, 5)
        assert tp1.deal_size == tp2.deal_size == D("0.001")
        assert [o for o in r.orders() if o.req.client_oid == leg.oid] == []
        store = r.store()
        [row] = [o for o in store.orders() if o.client_oid == leg.oid]
        store.close()
        assert row.status == "not_placed"  # dropped while held: it never reached the exchange


TIMED = (
    "rule dip on BTC-USDT:\n    when ask < 60000\n    place market buy 0.002\n"
    "rule exit on BTC-USDT:\n    after dip filled\n"
    "    place limit sell filled_size at fill_price + 3%\n"
    "    stop-loss at fill_price - 2%\n"
    "    exit after 1h\n"
)


async def test_a_time_exit_cancels_the_take_profit_then_sells_at_market_across_a_restart(
    tmp_path: Path,
) -> None:
    clock = moved_clock()
    async with venue(clock=clock) as v:
        async with watch(v, tmp_path, TIMED) as r:
            await until(lambda: len(r.watcher.legs) == 1 and not r.watcher.pending, 5)
            [leg] = r.watcher.legs.values()
            [tp] = [o for o in r.orders() if o.req.side == "sell"]
            clock.advance(59 * 60_000)  # 59 minutes: not yet
            await settle(0.4)
            assert [o for o in r.orders() if o.req.client_oid == leg.oid] == []
        # The watcher is down when the hour ends; the deadline is the recorded one.
        clock.advance(2 * 60_000)
        async with watch(v, tmp_path, TIMED) as r:
            await until(lambda: not r.watcher.tracked and not r.watcher.pending, 5)
            assert tp.status == "done" and tp.deal_size == 0
            sale = only(r, leg.oid)
            assert (sale.req.type, sale.deal_size) == ("market", D("0.002"))
            assert side_total(r, "sell") == D("0.002")
            store = r.store()
            [due] = [e.payload for e in store.events() if e.kind == "exit.due"]
            store.close()
            assert due["late_s"] >= 60  # it was due while no watcher ran


TRAILING = (
    "rule dip on BTC-USDT:\n    when ask < 60000\n    place market buy 0.002\n"
    "rule exit on BTC-USDT:\n    after dip filled\n"
    "    place limit sell filled_size at fill_price + 5%\n"
    "    stop-loss trailing by 2%\n"
)


async def test_a_trailing_stop_loss_in_a_bracket_follows_the_high_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    async with venue() as v:
        async with watch(v, tmp_path, TRAILING) as r:
            await until(lambda: len(r.watcher.legs) == 1 and not r.watcher.pending, 5)
            [leg] = r.watcher.legs.values()
            assert leg.mark == D("59010") and leg.trigger == D("57829.8")  # from the fill
            r.push("59990", "60010", trade="60000")  # a new high: the stop follows
            await until(lambda: leg.mark == D("60000") and leg.trigger == D("58800"), 5)
            r.push("58890", "58910", trade="58900")  # above the new stop: nothing
            await settle(0.3)
            assert [o for o in r.orders() if o.req.client_oid == leg.oid] == []
        async with watch(v, tmp_path, TRAILING) as r:  # the mark is kept across a restart
            await until(lambda: len(r.watcher.legs) == 1, 5)
            [leg] = r.watcher.legs.values()
            assert leg.mark == D("60000") and leg.trigger == D("58800")
            r.push("58780", "58790", trade="58785")
            await until(lambda: not r.watcher.tracked and not r.watcher.pending, 5)
            sale = only(r, leg.oid)
            assert (sale.req.type, sale.deal_size) == ("market", D("0.002"))
            assert side_total(r, "sell") == D("0.002")


async def test_a_guard_restored_after_a_restart_still_covers_what_its_targets_left(
    tmp_path: Path, db_url: str  # noqa: F811 - the fixture
) -> None:
    async with venue() as v:
        async with watch(v, tmp_path, GUARD, db=db_url) as r:
            leg, tp1, tp2 = await guard_placed(r)
        # While no watcher runs, tp1 fills: at the restart the guard moves to break-even
        # (the move is caught up from the stored fill) and still covers tp2's half.
        bids, asks = [(D("59700"), D("0.001")), (D("59000"), D("1"))], [(D("59800"), D("1"))]
        v.feed.push(SYMBOL, bids, asks, trade=(D("59700"), D("0.001"), "buy"))
        await until(lambda: tp1.deal_size == D("0.001"), 5)
        async with watch(v, tmp_path, GUARD, db=db_url) as r:
            await until(lambda: len(r.watcher.legs) == 1 and r.watcher.legs[leg.oid].moved, 5)
            restored = r.watcher.legs[leg.oid]
            assert restored.trigger == D("59010") and set(restored.siblings) == set(leg.siblings)
            r.feed.push(SYMBOL, *book("58990", "59000"), trade=(D("58995"), D("0.01"), "sell"))
            await until(lambda: not r.watcher.tracked and not r.watcher.pending, 5)
            assert tp2.status == "done" and tp2.deal_size == 0
            assert only(r, leg.oid).deal_size == D("0.001")
            assert side_total(r, "sell") == D("0.002")


async def test_a_time_exit_waits_while_the_book_would_slip_past_the_limit(tmp_path: Path) -> None:
    clock = moved_clock()
    async with venue(clock=clock) as v, watch(
        v, tmp_path, TIMED.replace("fill_price - 2%", "fill_price - 20%"),
        risk={"max_slippage": "0.005"},
    ) as r:
        await until(lambda: len(r.watcher.legs) == 1 and not r.watcher.pending, 5)
        [leg] = r.watcher.legs.values()
        [tp] = [o for o in r.orders() if o.req.side == "sell"]
        # A thin bid: selling 0.002 would walk 1.7% down the book.
        r.feed.push(SYMBOL, [(D("59000"), D("0.001")), (D("58000"), D("1"))],
                    [(D("59010"), D("1"))])
        clock.advance(61 * 60_000)  # the hour is over
        await until(lambda: tp.status == "done", 5)  # the take-profit is cancelled first...
        await settle(0.5)
        assert [o for o in r.orders() if o.req.client_oid == leg.oid] == []  # ...the sale waits
        store = r.store()
        waits = [e.payload for e in store.events() if e.kind == "stop_loss.waiting"]
        store.close()
        assert len(waits) == 1 and "max_slippage" in waits[0]["why"]  # said once
        r.push("59000", "59010")  # the book deepens: it goes at the next tick
        await until(lambda: not r.watcher.tracked and not r.watcher.pending, 5)
        assert only(r, leg.oid).deal_size == D("0.002")
        assert side_total(r, "sell") == D("0.002")


async def test_a_guards_time_exit_cancels_every_target_then_closes_what_they_left(
    tmp_path: Path,
) -> None:
    clock = moved_clock()
    rules = GUARD.replace("    move stop-loss to fill_price after tp1 filled\n",
                          "    exit after 2h\n")
    async with venue(clock=clock) as v, watch(v, tmp_path, rules) as r:
        leg, tp1, tp2 = await guard_placed(r)
        r.feed.push(SYMBOL, [(D("59650"), D("0.0004")), (D("59000"), D("1"))],
                    [(D("59800"), D("1"))])  # tp1 fills in part
        await until(lambda: tp1.deal_size == D("0.0004"), 5)
        clock.advance(2 * 3600_000 + 1_000)
        await until(lambda: not r.watcher.tracked and not r.watcher.pending, 5)
        assert tp1.status == tp2.status == "done" and tp2.deal_size == 0
        sale = only(r, leg.oid)
        assert (sale.req.type, sale.deal_size) == ("market", D("0.0016"))  # 0.002 - 0.0004
        assert side_total(r, "sell") == D("0.002")


async def test_a_guard_on_a_short_buys_back_what_its_target_left_when_the_price_rises(
    tmp_path: Path,
) -> None:
    rules = ("rule short on BTC-USDT:\n    when bid > 58000\n    place market sell 0.002\n"
             "rule cover on BTC-USDT:\n    after short filled\n"
             "    place limit buy 50% of filled_size at fill_price - 2%\n"
             "rule guard on BTC-USDT:\n    after short filled\n"
             "    stop-loss at fill_price + 1%\n")
    async with rig(tmp_path, rules) as r:
        await until(lambda: len(r.watcher.legs) == 1 and not r.watcher.pending
                    and any(o.req.side == "buy" for o in r.orders()), 5)
        [leg] = r.watcher.legs.values()
        [cover] = [o for o in r.orders() if o.req.side == "buy"]
        assert (leg.side, leg.size, leg.trigger) == ("buy", D("0.002"), D("59590"))
        assert (cover.req.size, cover.req.price) == (D("0.001"), D("57820"))
        r.push("59600", "59610", trade="59605")  # up through the guard's stop
        await until(lambda: not r.watcher.tracked and not r.watcher.pending, 5)
        assert cover.status == "done" and cover.deal_size == 0
        assert (only(r, leg.oid).req.side, only(r, leg.oid).deal_size) == ("buy", D("0.002"))
        assert side_total(r, "buy") == side_total(r, "sell") == D("0.002")


async def test_an_entry_whose_guard_would_stop_out_at_once_is_refused_before_it_is_sent(
    tmp_path: Path,
) -> None:
    rules = ("rule entry on BTC-USDT:\n    when ask < 60000\n    place limit buy 0.002 at 59000\n"
             "rule guard on BTC-USDT:\n    after entry filled\n    stop-loss at 59500\n")
    async with rig(tmp_path, rules) as r:
        await until(lambda: "entry" in r.watcher.rules.reasons, 5)
        assert "its guard guard is on the wrong side" in r.watcher.rules.reasons["entry"]
        assert r.orders() == []  # nothing sent: no position without its protection


async def test_a_guards_sale_acknowledged_before_a_crash_is_tracked_not_sent_again(
    tmp_path: Path,
) -> None:
    """The watcher was killed after the guard cancelled its targets and its market sale was
    acknowledged, before the fill arrived: the restart looks the sale up (a guard's row
    belongs to a firing with no order of its own) and never sends it again."""
    from datetime import UTC, datetime, timedelta

    from sandbox_support import Sandbox

    from rules_engine.store import Store

    async with venue() as v:
        async with watch(v, tmp_path, GUARD) as r:
            leg, tp1, tp2 = await guard_placed(r)
            db = r.db
        api = Sandbox(v.url, v.state, v.http)
        for tp in (tp1, tp2):
            await api.ok("DELETE", f"/api/v1/hf/orders/client-order/{tp.req.client_oid}",
                         params={"symbol": SYMBOL})
        sale = await api.ok("POST", "/api/v1/hf/orders", body={
            "clientOid": leg.oid, "symbol": SYMBOL, "side": "sell", "type": "market",
            "size": "0.002"})
        store = Store(db)
        now = datetime.now(UTC)
        store.acquire_lease("killed-watcher", now, timedelta(seconds=15))
        for tp in (tp1, tp2):
            store.settle(tp.req.client_oid, now, order_to="canceled")
        store.send_leg(leg.oid, now, size=D("0.002"), deadline_at=None)
        store.settle(leg.oid, now, order_to="open", exchange_id=sale["orderId"])
        store.release_lease()
        store.close()
        v.feed.push(SYMBOL, *book("56990", "57000"), trade=(D("56995"), D("0.01"), "sell"))
        async with watch(v, tmp_path, GUARD) as r:
            await until(lambda: not r.watcher.tracked and not r.watcher.legs, 5)
            await settle(0.5)
            assert not r.watcher.failed
            store = r.store()
            [row] = [o for o in store.orders() if o.client_oid == leg.oid]
            store.close()
            assert row.status == "filled" and row.filled_size == D("0.002")
            assert side_total(r, "sell") == D("0.002")  # sold once


async def test_a_take_profit_with_a_time_exit_alone_closes_at_market_when_due(
    tmp_path: Path,
) -> None:
    clock = moved_clock()
    rules = TIMED.replace("    stop-loss at fill_price - 2%\n", "")
    async with venue(clock=clock) as v, watch(v, tmp_path, rules) as r:
        await until(lambda: len(r.watcher.legs) == 1 and not r.watcher.pending, 5)
        [leg] = r.watcher.legs.values()
        assert leg.trigger is None  # no price triggers it: only its deadline
        r.push("50000", "50010", trade="50005")
        await settle(0.3)
        assert [o for o in r.orders() if o.req.client_oid == leg.oid] == []
        clock.advance(3600_000 + 1_000)
        await until(lambda: not r.watcher.tracked and not r.watcher.pending, 5)
        assert only(r, leg.oid).deal_size == D("0.002")
        assert side_total(r, "sell") == D("0.002")
