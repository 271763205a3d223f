"""Brackets on the exchange, end to end: the watcher against the sandbox on port 0 (the rig of
tests/test_watcher.py), a real SQLite file. A bracket written `on exchange` is one KuCoin OCO
order; its legs' fills and cancels are recorded from the exchange, a partial fill of the entry
resizes it (cancel confirmed, then a replacement under a fresh clientOid), it protects while no
watcher runs, and `[brackets] on_exchange = false` keeps it engine-held."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_watcher import SYMBOL, D, Rig, rig, until

from rules_engine.store import Store

BRACKET = (
    "rule dip on BTC-USDT:\n    when ask < 60000\n    place market buy 0.002\n"
    "rule exit on BTC-USDT:\n    after dip filled\n"
    "    place limit sell filled_size at fill_price + 3%\n"
    "    stop-loss at fill_price - 2% limit fill_price - 2.5% on exchange\n"
    "rule told on BTC-USDT:\n    after exit filled\n    notify \"the bracket closed\"\n"
)


def ocos(r: Rig) -> list[Any]:
    """The sandbox's own record of OCO orders, oldest first."""
    return sorted(r.state.engine.ocos.values(), key=lambda o: (o.created_at, o.id))


def kinds(store: Store, oid: str) -> list[str]:
    return [e.kind for e in store.events() if e.client_oid == oid]


async def oco_placed(r: Rig) -> Any:
    await until(lambda: len(ocos(r)) == 1 and not r.watcher.pending
                and all(t.record.status == "open" for t in r.watcher.tracked.values()), 5)
    [oco] = ocos(r)
    return oco


async def test_a_take_profit_leg_fill_is_recorded_with_the_stop_legs_cancel(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, BRACKET) as r:
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
