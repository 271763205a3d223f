"""Brackets on the exchange, end to end: the watcher against the sandbox on port 0 (the rig of
tests/test_watcher.py), a real SQLite file. A bracket written `on exchange` is one KuCoin OCO
order; its legs' fills and cancels are recorded from the exchange, a partial fill of the entry
resizes it (cancel confirmed, then a replacement under a fresh clientOid), it protects while no
watcher runs, and `[brackets] on_exchange = false` keeps it engine-held."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lifecycle_support import WatcherRun, watcher_toml
from lifecycle_support import until as lifecycle_until
from sqlalchemy import create_engine, text
from test_watcher import PG_URL, SYMBOL, D, Rig, rig, until, venue, watch

from rules_engine.sandbox import oco
from rules_engine.store import Store

BRACKET = (
    "rule dip on BTC-USDT:\n    when ask < 60000\n    place market buy 0.002\n"
    "rule exit on BTC-USDT:\n    after dip filled\n"
    "    place limit sell filled_size at fill_price + 3%\n"
    "    stop-loss at fill_price - 2% limit fill_price - 2.5% on exchange\n"
    "rule told on BTC-USDT:\n    after exit filled\n    notify \"the bracket closed\"\n"
)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLite file, or a fresh schema of the test PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'oco.sqlite'}"
        return
    if not PG_URL:
        pytest.skip("RULES_ENGINE_TEST_PG_URL is not set: PostgreSQL tests need a server")
    schema = "oco_" + uuid.uuid4().hex[:12]
    admin = create_engine(PG_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def ocos(r: Rig) -> list[Any]:
    """The sandbox's own record of OCO orders, oldest first."""
    return sorted(r.state.engine.ocos.values(), key=lambda o: (o.created_at, o.id))


def kinds(store: Store, oid: str) -> list[str]:
    return [e.kind for e in store.events() if e.client_oid == oid]


def oco_status(db: str) -> str | None:
    """The store's status of its one OCO order (None: none yet)."""
    store = Store(db)
    try:
        rows = [o.status for o in store.orders() if o.family == "oco"]
    finally:
        store.close()
    return rows[0] if rows else None


async def oco_placed(r: Rig) -> Any:
    await until(lambda: len(ocos(r)) == 1 and not r.watcher.pending
                and all(t.record.status == "open" for t in r.watcher.tracked.values()), 5)
    [oco] = ocos(r)
    return oco


async def test_a_take_profit_leg_fill_is_recorded_with_the_stop_legs_cancel(
    tmp_path: Path, store_url: str,
) -> None:
    async with rig(tmp_path, BRACKET, db=store_url) as r:
        oco = await oco_placed(r)
        assert (oco.price, oco.stop_price, oco.limit_price) == (
            D("60780.3"), D("57829.8"), D("57534.8"))
        assert oco.size == D("0.002") and oco.side == "sell"
        assert [o.req.type for o in r.orders() if o.req.side == "sell"] == ["limit"]
        r.feed.push(SYMBOL, [(D("60900"), D("1"))], [(D("60910"), D("1"))])
        await until(lambda: not r.watcher.tracked and r.watcher.fired == 3, 8)
        store = r.store()
        [row] = [o for o in store.orders() if o.family == "oco"]
        assert row.client_oid == oco.client_oid and row.exchange_id == oco.id
        assert row.status == "filled" and row.filled_size == D("0.002")
        assert [f.price for f in store.fills() if f.client_oid == row.client_oid] == [
            D("60780.3")]
        legs = [e.payload for e in store.events() if e.kind.startswith("oco.leg")]
        assert [(p["leg"], p.get("size")) for p in legs] == [
            ("take-profit", "0.002"), ("stop-loss", None)]
        assert {f.identity for f in store.firings()} >= {"told"}
        store.close()


PARTIAL = (
    "rule dip on BTC-USDT:\n    when ask < 59050\n    place limit buy 0.003 at 59010\n"
    "rule exit on BTC-USDT:\n    after dip filled\n"
    "    place limit sell filled_size at fill_price + 3%\n"
    "    stop-loss at fill_price - 2% limit fill_price - 2.5% on exchange\n"
)


async def exchange_ocos(r: Rig) -> list[tuple[str, str, str, D]]:
    """The exchange's OCO list and each one's detail, over REST: (clientOid, status, first
    leg's status, size), oldest first."""
    venue: Any = r.watcher.ctx.venue
    page = await venue.oco.page(SYMBOL)
    assert page.data["totalNum"] == len(page.data["items"])
    out = []
    for item in reversed(page.data["items"]):  # newest first on the exchange
        detail = (await venue.oco.detail(item["orderId"])).data
        sizes = {leg["size"] for leg in detail["orders"]}
        assert len(sizes) == 1  # both legs hold the same coins
        out.append((item["clientOid"], item["status"], detail["orders"][0]["status"],
                    D(sizes.pop())))
    return out


def thin(ask: str) -> tuple[list[tuple[D, D]], list[tuple[D, D]]]:
    """A book whose best ask offers 0.001 BTC only."""
    return [(D("59000"), D("1"))], [(D(ask), D("0.001")), (D("59100"), D("1"))]


async def test_a_partial_entry_fill_protects_at_once_and_each_further_fill_resizes_the_oco(
    tmp_path: Path, store_url: str,
) -> None:
    async with rig(tmp_path, PARTIAL, bid="59000", ask="59100", db=store_url) as r:
        r.feed.push(SYMBOL, *thin("59010"))  # the entry fires and takes 0.001 of its 0.003
        await until(lambda: len(ocos(r)) == 1 and ocos(r)[0].size == D("0.001")
                    and all(t.record.status == "open" for t in r.watcher.tracked.values()), 5)
        [entry] = [o for o in r.orders() if o.req.side == "buy"]
        assert entry.deal_size == D("0.001") and entry.active  # protection from the first fill
        first = await exchange_ocos(r)
        assert [(s, leg, size) for _, s, leg, size in first] == [("NEW", "NEW", D("0.001"))]

        r.feed.push(SYMBOL, *thin("59005"))  # 0.001 more fills: 0.002 of 0.003
        await until(lambda: len(ocos(r)) == 2 and not r.watcher.pending and all(
            t.record.status == "open" for t in r.watcher.tracked.values()), 5)
        second = await exchange_ocos(r)
        assert [(s, size) for _, s, _, size in second] == [
            ("CANCELLED", D("0.001")), ("NEW", D("0.002"))]

        r.feed.push(SYMBOL, *thin("59008"))  # the last 0.001: the entry is filled
        await until(lambda: len(ocos(r)) == 3 and not r.watcher.pending and all(
            t.record.status == "open" for t in r.watcher.tracked.values()), 5)
        assert not entry.active and entry.deal_size == D("0.003")
        final = await exchange_ocos(r)
        assert [(s, size) for _, s, _, size in final] == [
            ("CANCELLED", D("0.001")), ("CANCELLED", D("0.002")), ("NEW", D("0.003"))]
        oids = [oid for oid, *_ in final]
        assert len(set(oids)) == 3  # a fresh clientOid each time

        store = r.store()
        rows = {o.client_oid: o for o in store.orders() if o.family == "oco"}
        assert [rows[oid].status for oid in oids] == ["canceled", "canceled", "open"]
        assert [e.payload["replacement"] for e in store.events()
                if e.kind == "oco.replaced"] == [1, 2]
        exits = [f for f in store.firings() if f.identity == "exit"]
        assert len(exits) == 1 and exits[0].client_oid == oids[0]  # one firing, three OCOs
        store.close()
        # Exactly the position is protected: the coins the entry bought, once.
        assert sum((o.size for o in ocos(r) if o.client_oid == oids[-1]), D(0)) == D("0.003")


async def test_an_oco_bracket_sells_with_no_watcher_running_and_the_restart_records_it(
    tmp_path: Path,
) -> None:
    """The watcher is a real process, killed with SIGKILL once its OCO rests; the price then
    falls through the stop: the exchange sells on its own. The next watcher, on the same
    store, records the stop leg's fill and the take-profit's cancel from the exchange, and
    the chained rule `after exit filled` fires."""
    rules = tmp_path / "oco.rules"
    rules.write_text(BRACKET)
    config = tmp_path / "watcher.toml"
    config.write_text(watcher_toml())
    db = f"sqlite:///{tmp_path / 'oco.sqlite'}"
    async with venue() as v:
        first = await WatcherRun.spawn(tmp_path, "first", [rules], url=v.url, db=db,
                                       config=config)
        try:
            assert await lifecycle_until(lambda: any(
                oco.status(v.state.engine, o) == "NEW" for o in v.state.engine.ocos.values()),
                30, 0.05), first.tail()
            [placed] = v.state.engine.ocos.values()
            assert await lifecycle_until(lambda: oco_status(db) == "open", 10, 0.05)
            first.signal(signal.SIGKILL)
            assert await first.exit(10) == -signal.SIGKILL
        finally:
            await first.stop()
        store = Store(db)
        [row] = [o for o in store.orders() if o.family == "oco"]
        assert row.status == "open" and row.filled_size == 0  # what the dead watcher knew
        store.close()

        # No watcher runs: the price falls through the stop; the exchange sells by itself.
        v.feed.push(SYMBOL, [(D("57600"), D("1"))], [(D("57700"), D("1"))],
                    trade=(D("57650"), D("0.01"), "sell"))
        await lifecycle_until(lambda: oco.status(v.state.engine, placed) == "DONE", 5, 0.02)
        sale = v.state.engine.orders[placed.stop_id]
        assert (sale.deal_size, sale.req.price) == (D("0.002"), D("57534.8"))
        assert not v.state.engine.orders[placed.limit_id].active  # cancelled by the exchange

        second = await WatcherRun.spawn(tmp_path, "second", [rules], url=v.url, db=db,
                                        config=config)
        try:
            def recorded() -> bool:
                check = Store(db)
                try:
                    return any(f.identity == "told" for f in check.firings())
                finally:
                    check.close()

            assert await lifecycle_until(recorded, 30, 0.1), second.tail()
        finally:
            assert await second.stop() == 0, second.tail()
    store = Store(db)
    [row] = [o for o in store.orders() if o.family == "oco"]
    assert (row.status, row.filled_size, row.exchange_id) == ("filled", D("0.002"), placed.id)
    [fill] = [f for f in store.fills() if f.client_oid == row.client_oid]
    assert fill.size == D("0.002") and fill.price >= D("57534.8")
    legs = [(e.kind, e.payload["leg"]) for e in store.events() if e.kind.startswith("oco.leg")]
    assert legs == [("oco.leg_canceled", "take-profit"), ("oco.leg_filled", "stop-loss")]
    assert "order.filled" in kinds(store, row.client_oid)
    store.close()


async def test_the_config_fallback_keeps_an_on_exchange_bracket_engine_held(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, BRACKET, brackets={"on_exchange": False}) as r:
        await until(lambda: len(r.watcher.legs) == 1 and not r.watcher.pending, 5)
        assert ocos(r) == []  # nothing on the exchange's OCO endpoint
        [leg] = r.watcher.legs.values()
        [tp] = [o for o in r.orders() if o.req.side == "sell"]
        assert tp.req.type == "limit" and leg.trigger == D("57829.8")
        r.push("56990", "57000", trade="56995")  # the engine's stop-loss sells at market
        await until(lambda: not r.watcher.tracked and not r.watcher.pending, 5)
        [sale] = [o for o in r.orders() if o.req.client_oid == leg.oid]
        assert sale.req.type == "market" and sale.deal_size == D("0.002")
        store = r.store()
        said = [e.payload for e in store.events() if e.kind == "brackets.engine_held"]
        store.close()
        assert len(said) == 1 and said[0]["rules"] == ["exit"]
        assert "on_exchange = false" in said[0]["why"]


async def test_a_resize_cut_short_by_a_stop_goes_on_after_the_restart(tmp_path: Path) -> None:
    """The exchange answers every REST request with 503 while the entry fills more: the OCO's
    cancel (the first half of the resize) is asked and not confirmed when the watcher stops.
    The next watcher sends the cancel again, sees the OCO final, then places the replacement."""
    async with venue(bid="59000", ask="59100") as v:
        async with watch(v, tmp_path, PARTIAL) as r:
            r.feed.push(SYMBOL, *thin("59010"))
            await until(lambda: oco_status(r.db) == "open", 5)
            await r.admin("faults", {"http_5xx": True})
            r.feed.push(SYMBOL, *thin("59005"))  # 0.002 filled: the OCO must grow
            await until(lambda: oco_status(r.db) == "cancel_requested", 5)
            [first] = ocos(r)
            assert oco.status(v.state.engine, first) == "NEW"  # the cancel never got through
        async with v.http.post(v.url + "/sandbox/admin/faults", json={"http_5xx": False}) as ok:
            assert ok.status == 200
        async with watch(v, tmp_path, PARTIAL) as r:
            await until(lambda: len(ocos(r)) == 2 and not r.watcher.pending and all(
                t.record.status == "open" for t in r.watcher.tracked.values()), 8)
            final = await exchange_ocos(r)
            assert [(s, size) for _, s, _, size in final] == [
                ("CANCELLED", D("0.001")), ("NEW", D("0.002"))]
            store = r.store()
            [replaced] = [e for e in store.events() if e.kind == "oco.replaced"]
            store.close()
            assert replaced.payload["replaces"] == first.client_oid


async def test_an_entry_that_filled_more_while_no_watcher_ran_is_resized_at_the_restart(
    tmp_path: Path,
) -> None:
    async with venue(bid="59000", ask="59100") as v:
        async with watch(v, tmp_path, PARTIAL) as r:
            r.feed.push(SYMBOL, *thin("59010"))
            await until(lambda: oco_status(r.db) == "open", 5)
        r.feed.push(SYMBOL, *thin("59005"))  # no watcher: the entry fills 0.001 more
        [entry] = [o for o in r.orders() if o.req.side == "buy"]
        await until(lambda: entry.deal_size == D("0.002"), 5)
        async with watch(v, tmp_path, PARTIAL) as r:
            await until(lambda: len(ocos(r)) == 2 and not r.watcher.pending and all(
                t.record.status == "open" for t in r.watcher.tracked.values()), 8)
            final = await exchange_ocos(r)
            assert [(s, size) for _, s, _, size in final] == [
                ("CANCELLED", D("0.001")), ("NEW", D("0.002"))]
            store = r.store()
            exits = [f for f in store.firings() if f.identity == "exit"]
            store.close()
            assert len(exits) == 1  # the restart armed nothing twice


async def test_a_buy_side_bracket_on_the_exchange_buys_back_through_its_stop_leg(
    tmp_path: Path,
) -> None:
    rules = (
        "rule pop on BTC-USDT:\n    when bid > 58000\n    place market sell 0.002\n"
        "rule cover on BTC-USDT:\n    after pop filled\n"
        "    place limit buy filled_size at fill_price - 3%\n"
        "    stop-loss at fill_price + 2% limit fill_price + 2.5% on exchange\n"
    )
    async with rig(tmp_path, rules) as r:
        placed = await oco_placed(r)  # sold at the bid, 59000
        assert placed.side == "buy" and placed.size == D("0.002")
        assert (placed.price, placed.stop_price, placed.limit_price) == (
            D("57230"), D("60180"), D("60475"))
        r.push("60400", "60410", trade="60405")  # through the stop: a limit buy at 60475
        await until(lambda: not r.watcher.tracked and not r.watcher.pending, 8)
        bought = r.state.engine.orders[placed.stop_id]
        assert bought.deal_size == D("0.002") and bought.req.side == "buy"
        store = r.store()
        [row] = [o for o in store.orders() if o.family == "oco"]
        legs = [(e.kind, e.payload["leg"]) for e in store.events()
                if e.kind.startswith("oco.leg")]
        store.close()
        assert row.status == "filled" and row.filled_size == D("0.002")
        assert legs == [("oco.leg_canceled", "take-profit"), ("oco.leg_filled", "stop-loss")]
