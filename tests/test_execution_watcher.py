"""Execution constructs end to end: the watcher against the sandbox on port 0
(tests/test_watcher.py's rig). An iceberg reaches KuCoin with `iceberg` and `visibleSize`; a
scaled order becomes its limit orders at evenly spaced prices, each a firing of its own with
its own clientOid; a TWAP sends one slice per interval on the watcher's clock, and a restart
neither sends a recorded slice again nor bunches the ones that fell due while it was down."""

from __future__ import annotations

from pathlib import Path

from test_reload import rewrite
from test_watcher import D, Rig, moved_clock, rig, settle, until, venue, watch

from rules_engine.engine._slices import group_of
from rules_engine.store import client_oid
from rules_engine.store._record import status_report


async def test_an_iceberg_is_sent_with_its_visible_size(tmp_path: Path) -> None:
    rules = ("rule ice on BTC-USDT:\n    when bid < 60000\n"
             "    place limit buy 0.01 at 50000 iceberg visible 0.002\n")
    async with rig(tmp_path, rules) as r:
        await until(lambda: len(r.orders()) == 1 and not r.watcher.pending)
        [order] = r.orders()
        assert order.req.iceberg and order.req.visible_size == D("0.002")
        assert not order.req.hidden and order.visible == D("0.002")  # the book shows a part


async def test_a_scaled_order_places_its_slices_each_a_firing_with_its_own_client_oid(
    tmp_path: Path,
) -> None:
    rules = ("rule ladder on BTC-USDT:\n    when bid < 60000\n"
             "    place scaled buy 0.005 from 50000 to 49000 in 5\n")
    async with rig(tmp_path, rules) as r:
        await until(lambda: len(r.orders()) == 5 and not r.watcher.pending)
        prices = sorted((o.req.price for o in r.orders()), reverse=True)
        assert prices == [D("50000"), D("49750"), D("49500"), D("49250"), D("49000")]
        assert {o.req.size for o in r.orders()} == {D("0.001")}
        store = r.store()
        engine_id = store.engine_id()
        group = group_of("ladder", 1)
        slices = [f for f in store.firings() if f.identity == group]
        assert [f.number for f in slices] == [1, 2, 3, 4, 5]
        assert {f.client_oid for f in slices} == {o.req.client_oid for o in r.orders()}
        assert [f.client_oid for f in slices] == [client_oid(engine_id, group, k)
                                                  for k in range(1, 6)]
        [parent] = [f for f in store.firings() if f.identity == "ladder"]
        assert parent.status == "done" and len(parent.inputs["slices"]["slices"]) == 5
        assert [e.payload["group"] for e in store.events("slices.ended")] == [group]
        snap = r.watcher.snapshot()
        assert sorted(o["slice"] for o in snap["open_orders"]) == [1, 2, 3, 4, 5]
        report = status_report(store, r.watcher.ctx.now())
        assert sorted((o["rule"], o["slice"]) for o in report["open_orders"]) == [
            ("ladder", k) for k in range(1, 6)]
        store.close()


async def test_a_twap_sends_a_slice_per_interval_and_a_restart_skips_what_fell_due_while_down(
    tmp_path: Path,
) -> None:
    clock = moved_clock()
    rules = ("rule slow on BTC-USDT:\n    when bid < 60000\n"
             "    place twap buy 0.004 over 4m every 1m limit bid - 10%\n")
    async with venue(clock=clock) as v:
        async with watch(v, tmp_path, rules) as r:
            await until(lambda: len(r.orders()) == 1 and not r.watcher.pending)
            first = r.orders()[0]
            assert first.req.size == D("0.001") and first.req.price == D("53100")
            clock.advance(30_000)
            await settle(0.5)
            assert len(r.orders()) == 1  # the next slice is not due yet
            clock.advance(31_000)  # slice 2 is due
            await until(lambda: len(r.orders()) == 2 and not r.watcher.pending)
        clock.advance(125_000)  # slice 3's interval passes while no watcher runs
        async with watch(v, tmp_path, rules) as r:
            await until(lambda: len(r.orders()) == 3 and not r.watcher.pending)
            await settle(0.5)
            assert len(r.orders()) == 3  # slice 4 once, slice 3 skipped, nothing twice
            oids = [o.req.client_oid for o in r.orders()]
            assert len(set(oids)) == 3
            store = r.store()
            group = group_of("slow", 1)
            slices = {f.number: f for f in store.firings() if f.identity == group}
            assert sorted(slices) == [1, 2, 3, 4]
            assert slices[3].status == "blocked" and slices[3].client_oid is None
            assert all(slices[k].status == "acknowledged" for k in (1, 2, 4))
            assert [e.payload["group"] for e in store.events("slices.ended")] == [group]
            store.close()


TWAP = ("rule slow on BTC-USDT:\n    when bid < 60000\n"
        "    place twap buy 0.004 over 4m every 1m limit bid - 10%\n")


async def test_a_slice_refused_by_the_exchange_blocks_its_rule_and_stops_its_plan(
    tmp_path: Path,
) -> None:
    """Each slice of 0.001 at 53100 locks 53.1 USDT: the sandbox holds 120, so slice 3 is
    refused for the balance. Its refusal is recorded, the rule is blocked with the reason, slice
    4 is never sent (named in `slices.ended`), and a restart does not take the plan up again."""
    clock = moved_clock()
    async with venue(clock=clock, balances={"USDT": D("120"), "BTC": D("0")}) as v:
        async with watch(v, tmp_path, TWAP) as r:
            for count in (1, 2):
                await until(lambda n=count: len(r.orders()) == n and not r.watcher.pending)
                clock.advance(60_000)
            await until(lambda: r.watcher.states["slow"].status == "blocked")
            assert "200004" in r.watcher.rules.reasons["slow"]
            clock.advance(60_000)  # slice 4 falls due: the plan was stopped
            await settle(0.5)
            assert len(r.orders()) == 2 and not r.watcher.ctx.failed
        clock.advance(60_000)
        async with watch(v, tmp_path, TWAP) as r:
            await settle(0.5)
            assert len(r.orders()) == 2  # nothing taken up again, nothing sent twice
            assert r.watcher.states["slow"].status == "blocked"
            store = r.store()
            group = group_of("slow", 1)
            slices = {f.number: f for f in store.firings() if f.identity == group}
            assert sorted(slices) == [1, 2, 3]
            assert [slices[k].status for k in (1, 2, 3)] == ["acknowledged", "acknowledged",
                                                             "refused"]
            [ended] = store.events("slices.ended")
            assert ended.payload["group"] == group and ended.payload["not_sent"] == [4]
            assert "slice 3 was refused" in ended.payload["why"]
            assert not store.events("slices.resumed")
            store.close()


async def test_a_reload_that_edits_a_running_twap_ends_its_plan_and_keeps_what_was_sent(
    tmp_path: Path,
) -> None:
    """An edit is how a person changes what a rule trades: the plan of the old text stops
    (its slices not sent yet never are), the slice already sent stays on the book, tracked; a
    comment-only edit changes nothing. Removing the rule with `on_removed_rule = "cancel"`
    cancels its slices' orders."""
    clock = moved_clock()
    async with venue(clock=clock) as v:
        async with watch(v, tmp_path, TWAP, on_removed_rule="cancel") as r:
            await until(lambda: len(r.orders()) == 1 and not r.watcher.pending)
            rewrite(tmp_path / "test.rules", "# a comment only\n" + TWAP)
            await settle(1.5)
            clock.advance(60_000)
            await until(lambda: len(r.orders()) == 2 and not r.watcher.pending)
            rewrite(tmp_path / "test.rules", TWAP.replace("0.004", "0.002"))
            await until(lambda: r.watcher.rules.versions["slow"] == 2)
            clock.advance(60_000)
            await settle(0.5)
            assert len(r.orders()) == 2  # the edited rule's plan sent nothing more
            store = r.store()
            [ended] = store.events("slices.ended")
            assert ended.payload["not_sent"] == [3, 4] and "edited" in ended.payload["why"]
            assert sorted(o.status for o in store.orders()) == ["open", "open"]
            store.close()
            rewrite(tmp_path / "test.rules", "# nothing here any more\n")
            await until(lambda: not r.watcher.tracked, 5)
            store = r.store()
            assert sorted(o.status for o in store.orders()) == ["canceled", "canceled"]
            store.close()
        clock.advance(60_000)
        async with watch(v, tmp_path, TWAP) as r:  # the rule back: a new version, no resume
            await settle(0.5)
            store = r.store()
            assert not store.events("slices.resumed")
            assert len({o.req.client_oid for o in r.orders()}) == len(r.orders())
            store.close()


async def test_a_twap_slice_proven_not_placed_after_its_interval_is_not_sent_late(
    tmp_path: Path,
) -> None:
    """Slice 2's request gets a 503 (outcome unknown); by the time lookups prove it absent,
    its interval has passed and slice 3 is due: slice 2 stays not placed instead of going out
    beside slice 3."""
    clock = moved_clock()
    async with venue(clock=clock) as v, watch(v, tmp_path, TWAP) as r:
        await until(lambda: len(r.orders()) == 1 and not r.watcher.pending)
        await r.admin("faults", {"http_5xx": True})
        clock.advance(60_000)
        await until(lambda: any(p.unknown for p in r.watcher.pending.values()), 5)
        await r.admin("faults", {"http_5xx": False})
        clock.advance(65_000)  # past slice 2's deadline and interval: slice 3 is due
        await until(lambda: _kinds(r, "slice.not_resent", "fired.again"), 15)
        await settle(0.8)
        store = r.store()
        group = group_of("slow", 1)
        slices = {f.number: f for f in store.firings() if f.identity == group}
        assert {o.req.client_oid for o in r.orders()} == {slices[1].client_oid,
                                                          slices[3].client_oid}
        assert slices[2].status == "not_placed"
        [skipped] = store.events("slice.not_resent")
        assert skipped.payload["slice"] == 2 and "interval" in skipped.payload["why"]
        store.close()


def _kinds(r: Rig, *kinds: str) -> bool:
    """Whether the store has an event of one of `kinds`."""
    store = r.store()
    try:
        return any(store.events(kind) for kind in kinds)
    finally:
        store.close()
