"""A stop-limit order end to end: the watcher against the sandbox on port 0 (tests/test_watcher.py's
rig). It rests untriggered on the stop-order endpoint, the last price crosses its trigger, it rests
on the book as a limit order at its limit price (same id and clientOid), and it fills when the
market reaches that price; the watcher tracks it to filled."""

from __future__ import annotations

from pathlib import Path

from test_watcher import D, rig, until

from rules_engine.adapters.kucoin import KucoinVenue
from rules_engine.core.outcome import Action


async def test_a_stop_limit_rests_then_triggers_rests_at_its_limit_and_fills(
    tmp_path: Path,
) -> None:
    rules = ("rule btc_stop_limit on BTC-USDT:\n    when last < 62000\n"
             "    place stop sell 0.001 at 58000 limit 57900\n")
    async with rig(tmp_path, rules, trade="59005") as r:
        await until(lambda: r.watcher.fired == 1 and not r.watcher.pending)
        [stop] = r.state.engine.stop_orders.values()
        assert (stop.req.stop, stop.req.type) == ("loss", "limit")
        assert (stop.req.stop_price, stop.req.price) == (D("58000"), D("57900"))
        assert stop.stop_status == "NEW" and r.orders() == []  # not an order until it triggers
        await until(lambda: r.watcher.tracked and all(
            t.record.status == "open" for t in r.watcher.tracked.values()))

        # The last price gaps through the trigger to below the limit: it triggers, and the
        # limit sell rests above the market, at its limit, instead of selling at market.
        r.push("57800", "57850", trade="57820")
        await until(lambda: len(r.orders()) == 1)
        [order] = r.orders()
        assert stop.stop_status == "TRIGGERED" and order.id == stop.id
        assert (order.req.type, order.req.side, order.price) == ("limit", "sell", D("57900"))
        await until(lambda: order.in_book)
        assert order.deal_size == 0 and order.active
        [tracked] = r.watcher.tracked.values()
        assert tracked.record.status == "open"  # the watcher still tracks it

        # The market comes back up to the limit: it fills there.
        r.push("57950", "57960", trade="57955")
        await until(lambda: not r.watcher.tracked, 5)
        assert order.deal_size == D("0.001") and not order.active
        store = r.store()
        [row] = store.orders()
        assert row.status == "filled" and row.filled_size == D("0.001")
        assert row.exchange_id == stop.id and row.order_type == "stop"
        assert row.price == D("58000")  # the store shows a stop's trigger
        assert [f.price for f in store.fills()] == [D("57900")]  # at its limit, not the bid
        kinds = [e.kind for e in store.events() if e.client_oid == row.client_oid]
        assert "stop.triggered" in kinds and kinds[-1] == "order.filled"
        store.close()


async def test_cancel_all_cancels_a_triggered_stop_limit_resting_on_the_book(
    tmp_path: Path,
) -> None:
    rules = ("rule guard on BTC-USDT:\n    when last < 62000\n"
             "    place stop sell 0.001 at 58000 limit 57900\n"
             "rule panic on BTC-USDT:\n    when last < 57000\n    cancel all\n")
    async with rig(tmp_path, rules, trade="59005") as r:
        await until(lambda: r.watcher.fired == 1 and not r.watcher.pending)
        r.push("57800", "57850", trade="57820")  # triggered: rests as a limit sell at 57900
        await until(lambda: len(r.orders()) == 1 and r.orders()[0].in_book)
        [order] = r.orders()
        r.push("56900", "56950", trade="56920")  # `cancel all` fires
        await until(lambda: not r.watcher.tracked, 8)
        assert not order.active and order.deal_size == 0
        store = r.store()
        assert [o.status for o in store.orders()] == ["canceled"]
        store.close()


async def test_a_triggered_stop_limit_the_stop_endpoint_will_not_cancel_is_cancelled_by_client_oid(
    tmp_path: Path,
) -> None:
    """Whether KuCoin's stop-order cancel reaches a triggered stop-limit is not documented: the
    venue then cancels it by clientOid as the ordinary order it has become. The stop endpoint's
    refusal is made real by naming an id it does not hold."""
    rules = ("rule guard on BTC-USDT:\n    when last < 62000\n"
             "    place stop sell 0.001 at 58000 limit 57900\n")
    async with rig(tmp_path, rules, trade="59005") as r:
        await until(lambda: r.watcher.fired == 1 and not r.watcher.pending)
        r.push("57800", "57850", trade="57820")
        await until(lambda: len(r.orders()) == 1 and r.orders()[0].in_book)
        [order] = r.orders()
        venue = r.watcher.ctx.venue
        assert isinstance(venue, KucoinVenue)
        stranger = "vs0000000000000000000000"
        refused = await venue._calls.cancel_stop(stranger)
        assert refused.action in (Action.ABSENT, Action.REJECT) and order.active
        outcome = await venue.cancel(order.req.client_oid, "BTC-USDT", "stop", stranger)
        assert outcome.action is Action.OK
        await until(lambda: not order.active)
        assert order.deal_size == 0
