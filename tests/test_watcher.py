"""The watcher end to end, over real sockets: a sandbox on port 0 whose books the test pushes
(an `ExternalFeed`, so prices are exactly what each test needs), the real `rules-engine run`
assembly (`run_watcher`), a real SQLite file. Orders are counted in the sandbox's own record.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sandbox_support import Sandbox
from sqlalchemy import create_engine, text

from rules_engine.runtime._config import load_config
from rules_engine.runtime._jobs import Jobs
from rules_engine.runtime._run import run_watcher
from rules_engine.runtime._watcher import Watcher
from rules_engine.sandbox.clock import ManualClock
from rules_engine.sandbox.config import SandboxConfig
from rules_engine.sandbox.feeds import ExternalFeed, load_symbols
from rules_engine.sandbox.server import SandboxState
from rules_engine.sandbox.state import build_state
from rules_engine.sandbox.testing import serve
from rules_engine.store import Store

D = Decimal
PG_URL = os.environ.get("RULES_ENGINE_TEST_PG_URL")
SYMBOL = "BTC-USDT"


def moved_clock() -> ManualClock:
    """A clock the test moves, starting at the real time."""
    return ManualClock(current_ms=time.time_ns() // 1_000_000)


def book(bid: str, ask: str, size: str = "1") -> tuple[list[tuple[D, D]], list[tuple[D, D]]]:
    b, a = D(bid), D(ask)
    return ([(b, D(size)), (b - 10, D(size))], [(a, D(size)), (a + 10, D(size))])


@dataclass
class Rig:
    url: str
    state: SandboxState
    feed: ExternalFeed
    watcher: Watcher
    db: str
    http: aiohttp.ClientSession

    def push(self, bid: str, ask: str, trade: str | None = None) -> None:
        bids, asks = book(bid, ask)
        self.feed.push(SYMBOL, bids, asks,
                       trade=(D(trade), D("0.01"), "buy") if trade is not None else None)

    def orders(self) -> list[Any]:
        """The sandbox's own record: every order it accepted."""
        return list(self.state.engine.orders.values())

    async def admin(self, path: str, body: dict[str, Any] | None = None) -> None:
        async with self.http.post(self.url + "/sandbox/admin/" + path, json=body or {}) as r:
            assert r.status == 200, await r.text()

    def store(self) -> Store:
        return Store(self.db)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the condition")
        await asyncio.sleep(0.02)


async def settle(seconds: float) -> None:
    await asyncio.sleep(seconds)


@dataclass
class Venue:
    url: str
    state: SandboxState
    feed: ExternalFeed
    http: aiohttp.ClientSession
    clock: ManualClock | None = None


@asynccontextmanager
async def venue(bid: str = "59000", ask: str = "59010", trade: str | None = "59005",
                clock: ManualClock | None = None, **sandbox: Any) -> AsyncIterator[Venue]:
    """A sandbox whose books the test pushes. With `clock`, the sandbox and the watchers
    started on it (`watch`) share that time, and the test moves it (no real waiting)."""
    feed = ExternalFeed(load_symbols(), [SYMBOL, "ETH-USDT"])
    bids, asks = book(bid, ask)
    feed.push(SYMBOL, bids, asks, trade=(D(trade), D("0.01"), "buy") if trade else None)
    eb, ea = book("3000", "3001")
    feed.push("ETH-USDT", eb, ea)
    cfg = SandboxConfig().model_copy(update={"feed_interval_ms": 20, **sandbox})
    state = build_state(cfg, feed=feed, clock=clock)
    async with serve(cfg, state=state, run_feed=True) as box, aiohttp.ClientSession() as http:
        yield Venue(box.url, state, feed, http, clock)


@asynccontextmanager
async def watch(v: Venue, tmp_path: Path, rules: str, db: str | None = None,
                **settings: Any) -> AsyncIterator[Rig]:
    rules_file = tmp_path / "test.rules"
    rules_file.write_text(rules)
    db = db or f"sqlite:///{tmp_path / 'watcher.sqlite'}"
    config = load_config(None, {"exchange_url": v.url, "db": db, "view": "off",
                                "log_format": "json", "request_timeout_s": 1.0,
                                "order_window_ms": 1000, "resolve_interval_s": 0.2,
                                "poll_interval_s": 0.5, **settings})
    stop = asyncio.Event()
    holder: list[Watcher] = []
    task = asyncio.create_task(
        run_watcher(config, [rules_file], stop, holder.append, clock=v.clock))
    await until(lambda: bool(holder) or task.done(), 10)
    if task.done():
        task.result()
    watcher = holder[0]
    await until(lambda: watcher._ready.is_set() or task.done(), 10)
    if task.done():
        task.result()  # it stopped at start: its error is the test's
    await until(lambda: watcher.market.live and all(b.fresh for b in watcher.books.values()))
    try:
        yield Rig(v.url, v.state, v.feed, watcher, db, v.http)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


@asynccontextmanager
async def rig(tmp_path: Path, rules: str, *, bid: str = "59000", ask: str = "59010",
              trade: str | None = "59005", clock: ManualClock | None = None,
              **settings: Any) -> AsyncIterator[Rig]:
    async with venue(bid, ask, trade, clock) as v, watch(v, tmp_path, rules, **settings) as r:
        yield r


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'watcher.sqlite'}"
        return
    if not PG_URL:
        pytest.skip("RULES_ENGINE_TEST_PG_URL is not set: PostgreSQL tests need a server")
    schema = "w_" + uuid.uuid4().hex[:12]
    admin = create_engine(PG_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


async def test_the_briefs_one_liner_places_exactly_one_order(
    tmp_path: Path, db_url: str
) -> None:
    rules = "when BTC-USDT bid < 60000 place limit buy 0.01\n"
    async with venue() as v, watch(v, tmp_path, rules, db=db_url) as r:
        await until(lambda: len(r.orders()) == 1)
        order = r.orders()[0]
        assert (order.req.side, order.req.type) == ("buy", "limit")
        assert order.req.size == D("0.01") and order.req.price == D("59000")  # joins the bid
        for n in range(20):  # the bid stays under 60000: a level condition never re-fires
            r.push(str(59000 - n), str(59010 - n))
            await settle(0.03)
        assert len(r.orders()) == 1
        store = r.store()
        [firing] = store.firings()
        assert firing.status == "acknowledged" and firing.client_oid == order.req.client_oid
        assert firing.inputs["values"]["BTC-USDT bid"] == "59000"
        assert firing.inputs["books"][SYMBOL]["state"] == "live"
        kinds = [e.kind for e in store.events() if e.client_oid == firing.client_oid]
        assert kinds[:2] == ["fired", "firing.sent"]  # intent first, in one commit
        assert "firing.acknowledged" in kinds
        store.close()


async def test_a_level_rule_fires_when_it_becomes_true_and_only_once(tmp_path: Path) -> None:
    rules = "when BTC-USDT ask < 58000 place limit buy 0.001 at 57000\n"
    async with rig(tmp_path, rules) as r:
        await settle(0.3)
        assert r.orders() == []  # ask 59010: false
        r.push("57900", "57950")
        await until(lambda: len(r.orders()) == 1)
        r.push("58500", "58510")  # false again: a rule without `repeat` stays done
        await settle(0.2)
        r.push("57800", "57850")
        await settle(0.4)
        assert len(r.orders()) == 1
        [state] = r.watcher.states.values()
        assert state.status == "done" and state.firings == 1


async def test_crosses_fires_only_on_a_crossing(tmp_path: Path) -> None:
    rules = "when BTC-USDT last crosses above 61000 place market buy 100 USDT\n"
    async with rig(tmp_path, rules, trade="61500") as r:
        await settle(0.3)
        # Already above when first seen: a first observation is a baseline, not an edge.
        r.push("61400", "61410", trade="61600")
        await settle(0.3)
        assert r.orders() == []
        r.push("60400", "60410", trade="60500")  # below
        await settle(0.3)
        assert r.orders() == []
        r.push("61100", "61110", trade="61200")  # crossing
        await until(lambda: len(r.orders()) == 1)
        order = r.orders()[0]
        assert order.req.type == "market" and order.req.funds == D("100")
        r.push("60400", "60410", trade="60500")
        await settle(0.2)
        r.push("61100", "61110", trade="61300")  # a second crossing: the rule is done
        await settle(0.4)
        assert len(r.orders()) == 1


async def test_an_out_of_sync_book_never_fires(tmp_path: Path) -> None:
    rules = "when BTC-USDT bid < 58000 place limit buy 0.001 at 57000\n"
    async with rig(tmp_path, rules) as r:
        # The snapshot endpoint fails, and the next level2 message is lost: a gap.
        await r.admin("faults", {"http_5xx": True, "skip_level2": 1})
        r.push("59001", "59011")  # lost
        await settle(0.1)
        r.push("57500", "57510")  # the rule's condition, in the message after the gap
        await until(lambda: not r.watcher.books[SYMBOL].fresh)
        await settle(0.6)
        assert r.orders() == []
        assert r.watcher.market.values.get(next(iter(r.watcher.rules.index.leaves()))) is None
        await r.admin("faults", {"http_5xx": False, "skip_level2": 0})
        await until(lambda: len(r.orders()) == 1, 10)  # resynced: now it may fire
        store = r.store()
        assert any(e.kind == "book.gap" for e in store.events())
        store.close()


async def test_a_stale_feed_never_fires(tmp_path: Path) -> None:
    rules = "when BTC-USDT last < 58000 place market buy 50 USDT\n"
    async with rig(tmp_path, rules) as r:
        # Drop every WebSocket and refuse new tokens: the feed is stale until it is back.
        await r.admin("faults", {"http_5xx": True})
        await r.admin("drop-ws")
        await until(lambda: not r.watcher.market.live)
        r.push("57500", "57510", trade="57505")
        await settle(0.6)
        assert r.orders() == []
        await r.admin("faults", {"http_5xx": False})
        await until(lambda: r.watcher.market.live, 10)
        r.push("57400", "57410", trade="57405")  # a fresh trade on the live connection
        await until(lambda: len(r.orders()) == 1, 10)
        store = r.store()
        kinds = [e.kind for e in store.events()]
        assert "feed.stale" in kinds and kinds.index("feed.stale") < kinds.index("fired")
        store.close()


async def test_an_order_whose_reply_times_out_is_adopted_not_resent(
    tmp_path: Path, db_url: str
) -> None:
    rules = "when BTC-USDT bid < 58000 place limit buy 0.001 at 57000\n"
    async with venue() as v, watch(v, tmp_path, rules, db=db_url,
                                   request_timeout_s=0.3) as r:
        await r.admin("faults", {"timeout_after_accept": True})
        r.push("57900", "57910")
        await until(lambda: len(r.orders()) == 1)
        store = r.store()
        # The reply never comes: the request times out (0.3 s), after the order channel
        # already showed the order.
        await until(lambda: any(e.kind == "order.reply_after_ack" for e in store.events()), 5)
        store.close()
        await r.admin("faults", {"timeout_after_accept": False})
        await r.admin("release")
        await until(lambda: not r.watcher.pending, 10)
        await settle(0.5)
        assert len(r.orders()) == 1  # the exchange showed it: adopted, never sent twice
        store = r.store()
        [firing] = store.firings()
        assert firing.status == "acknowledged"
        assert store.orders()[0].exchange_id == r.orders()[0].id
        store.close()


async def test_an_order_with_the_engines_prefix_unknown_to_the_store_is_adopted(
    tmp_path: Path,
) -> None:
    rules = "when BTC-USDT bid < 1 place limit buy 0.01\n"
    async with venue() as v:
        async with watch(v, tmp_path, rules) as r:
            prefix = r.watcher.ctx.prefix
        # As if a commit had been lost: an order of this engine the store never recorded.
        box = Sandbox(v.url, v.state, v.http)
        oid = prefix + "lost0commit0000000000000000"[: 40 - len(prefix)]
        await box.ok("POST", "/api/v1/hf/orders", body={
            "clientOid": oid, "symbol": SYMBOL, "side": "buy", "type": "limit",
            "price": "50000", "size": "0.001"})
        async with watch(v, tmp_path, rules) as r:
            assert oid in r.watcher.tracked
            store = r.store()
            [row] = [o for o in store.orders() if o.client_oid == oid]
            assert row.status == "open" and row.price == D("50000")
            assert any(e.kind == "order.adopted" and e.client_oid == oid
                       for e in store.events())
            store.close()


async def test_a_refused_order_blocks_its_rule_with_the_reason_and_is_not_retried(
    tmp_path: Path,
) -> None:
    rules = "rule too_big on BTC-USDT:\n    when bid < 60000\n    place limit buy 50 at 58000\n"
    async with rig(tmp_path, rules) as r:
        await until(lambda: r.watcher.states["too_big"].status == "blocked")
        await settle(0.3)
        assert r.orders() == []  # refused: the sandbox kept nothing
        assert "200004" in r.watcher.rules.reasons["too_big"]
        store = r.store()
        [firing] = store.firings()
        assert firing.status == "refused"
        store.close()


async def test_a_second_watcher_on_the_same_database_refuses_to_start(tmp_path: Path) -> None:
    async with rig(tmp_path, "when BTC-USDT bid < 1 place limit buy 0.01\n") as r:
        config = load_config(None, {"exchange_url": r.url, "db": r.db, "view": "off"})
        rules_file = tmp_path / "test.rules"
        from rules_engine.runtime._run import Fatal

        with pytest.raises(Fatal, match="another watcher"):
            await run_watcher(config, [rules_file], asyncio.Event())


async def test_a_start_waits_out_an_exchange_that_fails_after_the_symbols_were_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The venue check, the order family and recovery's reads ask again while the exchange
    answers 503 (CI's soak once lost a watcher to 3 s of 5xx there): the start goes on once
    the exchange is back, and the family is still the one the venue reports (`hf`), never a
    guess made from an error."""
    from rules_engine.sandbox.config import FaultConfig

    rules = tmp_path / "down.rules"
    rules.write_text("when BTC-USDT bid < 1 place limit buy 0.01\n")
    async with venue() as v:
        db = f"sqlite:///{tmp_path / 'down.sqlite'}"
        config = load_config(None, {"exchange_url": v.url, "view": "off", "log_format": "json",
                                    "db": db, "request_timeout_s": 1.0, "heartbeat_s": 0.5,
                                    "lease_stale_s": 2.0})
        loop = asyncio.get_running_loop()

        holder: list[Watcher] = []

        def started(watcher: Watcher) -> None:  # the symbols are read; the venue check is next
            holder.append(watcher)
            v.state.config.faults = FaultConfig(http_5xx=True)
            loop.call_later(4.0, setattr, v.state.config, "faults", FaultConfig())

        stop = asyncio.Event()
        task = asyncio.create_task(run_watcher(config, [rules], stop, started))
        await until(lambda: bool(holder) or task.done(), 10)
        try:
            await asyncio.sleep(3.0)  # the exchange is still down: the start waits...
            assert not holder[0]._ready.is_set()
            store = Store(db)
            lease = store.lease()
            store.close()
            assert lease is not None  # ...and keeps its lease fresh for all that time
            beat = lease.heartbeat.replace(tzinfo=lease.heartbeat.tzinfo or UTC)
            assert (holder[0].ctx.now() - beat).total_seconds() < 2
            await until(lambda: holder[0]._ready.is_set() or task.done(), 30)
            assert not task.done(), task.result()
            assert holder[0].ctx.venue.family == "hf"
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
    misses = [line for line in capsys.readouterr().err.splitlines()
              if '"exchange.unreachable"' in line]
    assert misses and all("Service Unavailable" in m for m in misses)
    assert '"why": "the exchange\'s status: ' in misses[0]


async def test_a_fresh_sandbox_is_refused_instead_of_reconciled(tmp_path: Path) -> None:
    rules = "when BTC-USDT bid < 1 place limit buy 0.01\n"
    async with rig(tmp_path, rules):
        pass
    from rules_engine.runtime._run import Fatal

    with pytest.raises(Fatal, match="another venue"):
        async with rig(tmp_path, rules):
            pass


async def test_an_unknown_order_proven_absent_after_the_deadline_is_sent_again_once(
    tmp_path: Path,
) -> None:
    clock = moved_clock()
    rules = "when BTC-USDT bid < 58000 place limit buy 0.001 at 57000\n"
    async with rig(tmp_path, rules, clock=clock) as r:
        await r.admin("faults", {"http_5xx": True})  # the POST gets a 503: outcome unknown
        r.push("57900", "57910")
        await until(lambda: any(p.unknown for p in r.watcher.pending.values()), 5)
        assert r.orders() == []
        await r.admin("faults", {"http_5xx": False})
        await settle(0.6)  # lookups answer "no such order", but before the deadline
        assert r.orders() == [] and r.watcher.pending  # that proves nothing yet
        # After the deadline (1 s window + 1 s timeout, server time) two agreeing lookups
        # prove it absent, and the same firing is decided again.
        clock.advance(2_500)
        await until(lambda: len(r.orders()) == 1, 15)
        await until(lambda: not r.watcher.pending, 5)
        await settle(0.5)
        assert len(r.orders()) == 1
        store = r.store()
        [firing] = store.firings()
        assert firing.number == 1 and firing.status == "acknowledged"
        assert r.orders()[0].req.client_oid == firing.client_oid  # the same clientOid
        kinds = [e.kind for e in store.events() if e.client_oid == firing.client_oid]
        assert kinds.index("firing.unknown") < kinds.index("firing.not_placed") < kinds.index(
            "fired.again")
        store.close()


async def test_a_parent_decided_again_after_a_restart_arms_its_fired_children_only_once(
    tmp_path: Path,
) -> None:
    """`after R fired` goes with R's firing, once. A firing of R proven not placed is decided
    again with the same number: its children were armed by its first commit. The watcher
    that decides it again may be a later one (the soak found this): the retry is part of
    the rule's stored state, not of the process that proved it."""
    clock = moved_clock()
    rules = ("rule parent on BTC-USDT:\n    when bid < 58000\n    place limit buy 0.001 at 57000\n"
             "rule child on BTC-USDT:\n    after parent fired\n"
             "    place limit buy 0.001 at 56000\n")
    async with venue(clock=clock) as v:
        async with watch(v, tmp_path, rules) as r:
            await r.admin("faults", {"http_5xx": True})  # both sends: outcome unknown
            r.push("57900", "57910")
            await until(lambda: sum(p.unknown for p in r.watcher.pending.values()) == 2, 5)
            await r.admin("faults", {"http_5xx": False})
            r.push("58100", "58110")  # the parent's condition is false when it is proven
            clock.advance(2_500)  # past the deadline: both proven not placed
            # The child, whose parent event is back in place, is decided again at once.
            await until(lambda: [o.req.client_oid for o in r.orders()] != [], 15)
            await settle(0.5)
            assert r.watcher.states["parent"].status == "armed"  # waits for its condition
        async with watch(v, tmp_path, rules) as r:
            r.push("57900", "57910")
            await until(lambda: len(r.orders()) >= 2, 10)  # the parent's, sent again
            await settle(0.6)
            store = r.store()
            numbers = sorted((f.identity, f.number) for f in store.firings())
            kinds = [e.kind for e in store.events() if e.identity == "parent"]
            store.close()
        assert numbers == [("child", 1), ("parent", 1)], numbers
        assert "fired.again" in kinds
        assert len(v.state.engine.orders) == 2  # one order per firing, none twice


async def test_paper_mode_fills_orders_locally_against_the_market_it_follows(
    tmp_path: Path,
) -> None:
    """A second sandbox stands in for KuCoin's public feed; the paper watcher's orders go to
    its own local sandbox, whose books are the followed market's."""
    market_cfg = SandboxConfig().model_copy(update={"feed_interval_ms": 50})
    async with serve(market_cfg, run_feed=True) as market:
        rules = tmp_path / "paper.rules"
        rules.write_text("when BTC-USDT bid > 1 place market buy 100 USDT\n"
                         "when BTC-USDT ask > 1 place limit buy 0.001 at bid - 1000\n")
        config = load_config(None, {"mode": "paper", "market_url": market.url,
                                    "db": f"sqlite:///{tmp_path / 'paper.sqlite'}",
                                    "view": "off", "log_format": "json"})
        stop = asyncio.Event()
        holder: list[Watcher] = []
        task = asyncio.create_task(run_watcher(config, [rules], stop, holder.append))
        await until(lambda: bool(holder) or task.done(), 10)
        watcher = holder[0]
        try:
            await until(lambda: watcher.fired == 2 and not watcher.pending, 15)
            await until(lambda: len(watcher.tracked) == 1, 10)  # the market order filled
            store = Store(config.db or "")
            filled = [o for o in store.orders() if o.status == "filled"]
            resting = [o for o in store.orders() if o.status == "open"]
            assert len(filled) == 1 and len(resting) == 1
            fills = store.fills()
            assert fills and all(f.client_oid == filled[0].client_oid for f in fills)
            best_ask = market.state.engine.books[SYMBOL].best("asks")
            assert best_ask is not None
            assert abs(fills[0].price - best_ask) / best_ask < D("0.01")  # the market's price
            store.close()
            assert watcher.ctx.venue.base_url != market.url
            assert market.state.engine.orders == {}  # nothing was sent to the market itself
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)


async def test_repeat_re_arms_after_the_cooldown_once_the_condition_was_false(
    tmp_path: Path,
) -> None:
    clock = moved_clock()
    rules = ("rule again on BTC-USDT:\n    when bid < 58000\n    place limit buy 0.001 at 50000\n"
             "    repeat every 1s max 2\n")
    async with rig(tmp_path, rules, clock=clock) as r:
        r.push("57900", "57910")
        await until(lambda: len(r.orders()) == 1)
        clock.advance(1_300)  # the cooldown passed, but the condition was never false
        await settle(0.3)
        assert len(r.orders()) == 1
        r.push("58100", "58110")
        await settle(0.2)
        r.push("57800", "57810")
        await until(lambda: len(r.orders()) == 2)
        r.push("58100", "58110")
        clock.advance(1_200)
        await settle(0.2)
        r.push("57700", "57710")
        await settle(0.4)
        assert len(r.orders()) == 2  # max 2
        assert r.watcher.states["again"].status == "done"
        oids = {o.req.client_oid for o in r.orders()}
        assert len(oids) == 2  # firing 1 and firing 2: two clientOids


async def test_candle_values_come_from_closed_candles_of_the_exchange(tmp_path: Path) -> None:
    """The synthetic sandbox serves real hourly BTC-USDT candles as history."""
    cfg = SandboxConfig().model_copy(update={"feed_interval_ms": 50})
    async with serve(cfg, run_feed=True) as box, aiohttp.ClientSession() as http:
        v = Venue(box.url, box.state, None, http)  # type: ignore[arg-type]
        rules = ("rule candles on BTC-USDT:\n    when close(1h) > 1 and sma(3, 1h) > 1\n"
                 "    place limit buy 0.001 at 1000\n")
        async with watch(v, tmp_path, rules) as r:
            await until(lambda: r.watcher.fired == 1, 10)
            store = r.store()
            [firing] = store.firings()
            store.close()
        async with http.get(box.url + "/api/v1/market/candles",
                            params={"symbol": SYMBOL, "type": "1hour"}) as reply:
            rows = (await reply.json())["data"]
        closes = [D(row[2]) for row in sorted(rows, key=lambda row: int(row[0]))]
        # The newest candle is still open: the last closed one is the one before it.
        assert firing.inputs["values"]["BTC-USDT close(1h)"] == str(closes[-2])
        expected = sum(closes[-4:-1]) / 3
        assert abs(D(firing.inputs["values"]["BTC-USDT sma(3, 1h)"]) - expected) < D("0.0001")


async def test_an_adopted_order_of_a_firing_the_store_lost_is_never_decided_again(
    tmp_path: Path,
) -> None:
    rules = "rule dip on BTC-USDT:\n    when bid < 58000\n    place limit buy 0.001 at 50000\n"
    async with venue() as v:
        async with watch(v, tmp_path, rules) as r:
            engine_id = r.watcher.ctx.engine_id
        # Firing 1 reached the exchange but its commit was lost (as with a power loss on a
        # disk that lies about fsync): the store knows nothing of it.
        from rules_engine.store import client_oid

        oid = client_oid(engine_id, "dip", 1)
        await Sandbox(v.url, v.state, v.http).ok("POST", "/api/v1/hf/orders", body={
            "clientOid": oid, "symbol": SYMBOL, "side": "buy", "type": "limit",
            "price": "50000", "size": "0.001"})
        bids, asks = book("57900", "57910")
        v.feed.push(SYMBOL, bids, asks)
        async with watch(v, tmp_path, rules) as r:
            await settle(0.6)
            assert r.watcher.states["dip"].status == "done"
            assert r.watcher.tracked[oid].identity == "dip"
        assert [o.req.client_oid for o in v.state.engine.orders.values()] == [oid]


async def test_cancel_after_cancels_what_is_still_open_and_a_timer_due_while_down_runs_at_start(
    tmp_path: Path,
) -> None:
    clock = moved_clock()
    rules = ("rule brief on BTC-USDT:\n    when bid < 60000\n    place limit buy 0.001 at 50000\n"
             "    cancel after 10m\n")
    async with venue(clock=clock) as v:
        async with watch(v, tmp_path, rules) as r:
            await until(lambda: len(r.orders()) == 1 and not r.watcher.pending)
            clock.advance(599_000)
            await settle(0.3)
            assert r.orders()[0].status != "done"  # not before its 10 minutes
            clock.advance(1_000)
            await until(lambda: r.orders()[0].status == "done", 5)  # cancelled at 10 m
            await until(lambda: not r.watcher.tracked)
        rules2 = rules.replace("brief", "slow").replace("10m", "1h")
        async with watch(v, tmp_path, rules2) as r:
            await until(lambda: len(r.orders()) == 2 and not r.watcher.pending)
        clock.advance(3_600_000 + 5_000)  # its timer falls due while no watcher runs
        async with watch(v, tmp_path, rules2) as r:
            await until(lambda: all(o.status == "done" for o in r.orders()), 5)
            store = r.store()
            late = [e for e in store.events() if e.kind == "timer.late"]
            assert len(late) == 1 and late[0].payload["timer"] == "cancel after"
            assert late[0].payload["late_s"] >= 5
            cancels = [e.payload["why"] for e in store.events()
                       if e.kind == "order.cancel_requested"]
            assert cancels == ["cancel after", "cancel after"]
            store.close()


async def test_many_rules_firing_at_once_stay_within_every_risk_limit(tmp_path: Path) -> None:
    rules = "".join(
        f"rule r{n} on BTC-USDT:\n    when bid < 60000\n    place limit buy 0.002 at 50000\n"
        f"    repeat every 1s max 3\n" for n in range(12)
    ) + "when BTC-USDT bid < 60000 place market buy 0.01\n"  # about 590 USDT: too big
    limits = {"max_order_notional": "150", "max_rule_notional": "250",
              "max_daily_notional": "700", "max_open_orders": 5, "max_firings_per_minute": 6}
    path = str(tmp_path / "test.rules")
    async with venue(bid="61000", ask="61010") as v, watch(
        v, tmp_path, rules, risk=limits, risk_files={path: {"max_order_notional": "120"}}
    ) as r:
        r.push("59000", "59010")  # every rule's condition at once
        await settle(3.0)
        orders = r.orders()
        values = [o.req.price * o.req.size for o in orders if o.req.price is not None]
        assert 0 < len(orders) <= 5 and len(values) == len(orders)  # open orders, per minute
        assert all(value <= 120 for value in values)  # the file's tighter order limit
        assert sum(values) <= 700
        by_rule: dict[str, D] = {}
        store = r.store()
        for firing in store.firings():
            if firing.status == "acknowledged":
                by_rule[firing.identity] = by_rule.get(firing.identity, D(0)) + D(
                    firing.intent["notional"])
        reasons = [e.payload["reason"] for e in store.events() if e.kind == "firing.blocked"]
        store.close()
        assert all(total <= 250 for total in by_rule.values())
        assert any("risk.max_open_orders 5" in reason for reason in reasons)
        assert any("risk.max_order_notional 120" in reason for reason in reasons)


async def test_risk_usage_is_rebuilt_from_the_store_on_restart(tmp_path: Path) -> None:
    first = "rule one on BTC-USDT:\n    when bid < 60000\n    place limit buy 0.001 at 50000\n"
    second = first.replace("one", "two")
    async with venue() as v:
        async with watch(v, tmp_path, first, risk={"max_open_orders": 1}) as r:
            await until(lambda: len(r.orders()) == 1 and not r.watcher.pending)
        async with watch(v, tmp_path, first + second, risk={"max_open_orders": 1}) as r:
            await until(lambda: r.watcher.states["two"].status == "blocked")
            assert "risk.max_open_orders 1 reached" in r.watcher.rules.reasons["two"]
            assert len(r.orders()) == 1


async def test_a_stop_order_is_tracked_through_its_trigger_and_fill(tmp_path: Path) -> None:
    rules = ("rule btc_stop on BTC-USDT:\n    when last < 62000\n"
             "    place stop sell 0.001 at 58000\n")
    async with rig(tmp_path, rules, trade="59005") as r:
        await until(lambda: r.watcher.fired == 1 and not r.watcher.pending)
        [stop] = r.state.engine.stop_orders.values()
        assert stop.req.stop == "loss" and stop.req.stop_price == D("58000")
        assert stop.stop_status == "NEW" and r.orders() == []  # not an order until it triggers
        r.push("57900", "57910", trade="57905")  # the last price falls through 58000
        await until(lambda: not r.watcher.tracked, 5)
        store = r.store()
        [order] = store.orders()
        assert order.status == "filled" and order.filled_size == D("0.001")
        assert order.exchange_id == stop.id
        assert [f.price for f in store.fills()] == [D("57900")]
        kinds = [e.kind for e in store.events() if e.client_oid == order.client_oid]
        assert "stop.triggered" in kinds and kinds[-1] == "order.filled"
        store.close()


async def test_cancel_all_cancels_a_stop_order_that_has_not_triggered(tmp_path: Path) -> None:
    rules = ("rule guard on BTC-USDT:\n    when last < 62000\n    place stop sell 0.001 at 50000\n"
             "rule panic on BTC-USDT:\n    when last < 58500\n    cancel all\n"
             '    notify "cancelled every BTC-USDT order"\n')
    async with rig(tmp_path, rules, trade="59005") as r:
        await until(lambda: r.watcher.fired == 1 and not r.watcher.pending)
        r.push("58400", "58410", trade="58405")
        await until(lambda: not r.watcher.tracked, 5)
        [stop] = r.state.engine.stop_orders.values()
        assert stop.stop_status in ("CANCELLED", "CANCELED")
        store = r.store()
        assert [o.status for o in store.orders()] == ["canceled"]
        notes = [e.payload["text"] for e in store.events() if e.kind == "notify"]
        assert notes == ["cancelled every BTC-USDT order"]
        store.close()


async def test_notify_reaches_webhooks_with_retries_and_a_dead_one_never_blocks_trading(
    tmp_path: Path,
) -> None:
    from aiohttp import web

    received: list[dict[str, Any]] = []
    failures = {"left": 2}

    async def hook(request: web.Request) -> web.Response:
        if failures["left"] > 0:
            failures["left"] -= 1
            return web.Response(status=503)
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook/secret-token", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rules = ('rule tell on BTC-USDT:\n    when bid < 60000\n    place limit buy 0.001 at 50000\n'
             '    notify "BTC under 60k"\n')
    try:
        async with rig(tmp_path, rules, webhooks=[
            f"http://127.0.0.1:{port}/hook/secret-token", "http://127.0.0.1:9/dead"
        ], webhook_attempts=3) as r:
            await until(lambda: len(r.orders()) == 1)  # trading goes on regardless
            await until(lambda: len(received) == 1, 5)
            assert received[0]["rule"] == "tell" and received[0]["text"] == "BTC under 60k"
            store = r.store()
            await until(lambda: any(e.kind == "notify.failed" for e in store.events()), 10)
            [sent] = [e.payload for e in store.events() if e.kind == "notify.sent"]
            [failed] = [e.payload for e in store.events() if e.kind == "notify.failed"]
            store.close()
            assert sent["attempts"] == 3  # two 503s, then delivered
            assert failed["webhook"] == "127.0.0.1:9" and failed["attempts"] == 3
            assert "secret-token" not in str(sent) + str(failed)
    finally:
        await runner.cleanup()


TRAIL = "rule trail on BTC-USDT:\n    when last > 1\n    place trailing-stop sell 0.001 by 2%\n"


async def test_a_trailing_stop_follows_its_high_and_sells_once_the_price_falls_back(
    tmp_path: Path,
) -> None:
    async with venue(bid="59000", ask="59010", trade="59005") as v:
        async with watch(v, tmp_path, TRAIL) as r:
            await until(lambda: r.watcher.fired == 1)
            assert r.orders() == []  # held by the engine: nothing on the exchange yet
            r.push("59990", "60010", trade="60000")  # a new high: the mark follows
            await until(lambda: r.watcher.held and
                        next(iter(r.watcher.held.values())).mark == D("60000"))
            r.push("58890", "58910", trade="58900")  # 1.8% under the high: not yet
            await settle(0.3)
            assert r.orders() == []
        # The mark survives a restart; a fall while it was down triggers it at once.
        v.feed.push(SYMBOL, *book("58790", "58800"), trade=(D("58795"), D("0.01"), "sell"))
        async with watch(v, tmp_path, TRAIL) as r:
            await until(lambda: len(r.orders()) == 1, 5)
            [order] = r.orders()
            assert (order.req.side, order.req.type, order.req.size) == ("sell", "market",
                                                                       D("0.001"))
            await until(lambda: not r.watcher.tracked and not r.watcher.pending, 5)
            store = r.store()
            [row] = store.orders()
            [firing] = store.firings()
            kinds = [e.kind for e in store.events() if e.client_oid == row.client_oid]
            store.close()
            assert row.status == "filled" and row.client_oid == order.req.client_oid
            assert firing.intent["triggered"]["mark"] == "60000"
            assert kinds.index("firing.held") < kinds.index("firing.sent") < kinds.index(
                "order.filled")


async def test_halt_keeps_a_trailing_stop_and_halt_all_cancels_it(tmp_path: Path) -> None:
    async with rig(tmp_path, TRAIL) as r:
        await until(lambda: bool(r.watcher.held))
        from test_control_cli import cli

        assert await cli("halt", "--db", r.db) == 0
        assert r.watcher.held  # protective: kept, and still managed
        assert await cli("resume", "--db", r.db) == 0
        assert await cli("halt", "--all", "--db", r.db) == 0
        await until(lambda: not r.watcher.held)
        store = r.store()
        # The order table: a held order cancelled never reached the exchange (not placed).
        assert [o.status for o in store.orders()] == ["not_placed"]
        assert [f.status for f in store.firings()] == ["done"]
        store.close()
        assert r.orders() == []


BRACKET = (
    "rule dip on BTC-USDT:\n    when ask < 60000\n    place market buy 0.002\n"
    "rule exit on BTC-USDT:\n    after dip filled\n"
    "    place limit sell filled_size at fill_price + 3%\n"
    "    stop-loss at fill_price - 2%\n"
)


def sold(r: Rig) -> D:
    return sum((o.deal_size for o in r.orders() if o.req.side == "sell"), D(0))


async def bracket_placed(r: Rig) -> tuple[Any, Any]:
    await until(lambda: len(r.watcher.legs) == 1 and not r.watcher.pending, 5)
    [leg] = r.watcher.legs.values()
    [tp] = [o for o in r.orders() if o.req.side == "sell"]
    assert tp.req.type == "limit" and tp.req.size == D("0.002")
    return leg, tp


async def test_a_brackets_stop_loss_cancels_the_take_profit_then_sells_the_position(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, BRACKET) as r:
        leg, tp = await bracket_placed(r)
        assert tp.req.price == D("60780.3") and leg.trigger == D("57829.8")  # rounded up
        r.push("56990", "57000", trade="56995")  # the price falls through the stop-loss
        await until(lambda: not r.watcher.tracked and not r.watcher.pending, 5)
        assert tp.status == "done" and tp.deal_size == 0  # cancelled, confirmed first
        [stop] = [o for o in r.orders() if o.req.side == "sell" and o.req.type == "market"]
        assert stop.req.client_oid == leg.oid and stop.deal_size == D("0.002")
        assert sold(r) == D("0.002")  # exactly the position


async def test_a_partly_filled_take_profit_leaves_the_stop_loss_only_the_rest(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, BRACKET) as r:
        leg, tp = await bracket_placed(r)
        v_bids = [(D("60790"), D("0.001")), (D("60700"), D("1"))]  # 0.001 at or above the TP
        r.feed.push(SYMBOL, v_bids, [(D("60800"), D("1"))])
        await until(lambda: tp.deal_size == D("0.001"), 5)
        r.push("56990", "57000", trade="56995")
        await until(lambda: not r.watcher.tracked and not r.watcher.pending, 5)
        [stop] = [o for o in r.orders() if o.req.client_oid == leg.oid]
        assert stop.req.size == D("0.001")  # resized to what the take-profit left
        assert sold(r) == D("0.002")


async def test_bracket_legs_racing_in_one_update_never_sell_more_than_the_position(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, BRACKET) as r:
        leg, tp = await bracket_placed(r)
        # One feed update: the bids go through the take-profit (it fills) and a print far
        # below the stop-loss comes with it (it triggers).
        r.feed.push(SYMBOL, [(D("60900"), D("1"))], [(D("60910"), D("1"))],
                    trade=(D("50000"), D("0.01"), "sell"))
        await until(lambda: not r.watcher.tracked and not r.watcher.pending, 5)
        assert tp.deal_size == D("0.002")
        assert [o for o in r.orders() if o.req.client_oid == leg.oid] == []  # never sent
        assert sold(r) == D("0.002")
        store = r.store()
        [row] = [o for o in store.orders() if o.client_oid == leg.oid]
        store.close()
        assert row.status == "not_placed"  # dropped while held: it never reached the exchange


async def test_a_stop_loss_sale_proven_never_placed_is_sent_again_once_at_its_next_trigger(
    tmp_path: Path,
) -> None:
    """The order table keeps a bracket's stop-loss whose sale the exchange proved absent
    waiting in not_placed: the next price past its trigger sends it again, same clientOid."""
    clock = moved_clock()
    async with venue(clock=clock) as v, watch(v, tmp_path, BRACKET) as r:
        leg, tp = await bracket_placed(r)
        api = Sandbox(v.url, v.state, v.http)  # the take-profit cancelled by hand first
        await api.ok("DELETE", f"/api/v1/hf/orders/client-order/{tp.req.client_oid}",
                     params={"symbol": SYMBOL})
        await until(lambda: tp.req.client_oid not in r.watcher.tracked, 5)
        await r.admin("faults", {"http_5xx": True})  # the stop-loss's sale: a 503
        r.push("56990", "57000", trade="56995")
        await until(lambda: any(p.unknown for p in r.watcher.pending.values()), 5)
        await r.admin("faults", {"http_5xx": False})
        clock.advance(2_500)  # past the HF deadline: two lookups prove it absent
        await until(lambda: not r.watcher.pending and
                    r.watcher.tracked[leg.oid].status == "not_placed", 10)
        assert [o for o in r.orders() if o.req.client_oid == leg.oid] == []
        r.push("58990", "59000", trade="58995")  # back above its trigger...
        r.push("56890", "56900", trade="56895")  # ...and through it again
        await until(lambda: not r.watcher.tracked and not r.watcher.pending, 10)
        [sale] = [o for o in r.orders() if o.req.client_oid == leg.oid]
        assert sale.req.type == "market" and sale.deal_size == D("0.002")
        store = r.store()
        [row] = [o for o in store.orders() if o.client_oid == leg.oid]
        store.close()
        assert row.status == "filled"


async def test_a_stop_loss_already_on_the_exchange_at_a_restart_is_tracked_not_triggered(
    tmp_path: Path,
) -> None:
    """The crash test's seed 20260601: the watcher was killed after the stop-loss's sale was
    acknowledged and before its fill arrived. Recovery took the open leg for one still waiting
    for its trigger: it never looked the order up (the store kept it open while the exchange
    had filled it), a `cancel all` dropped it as if nothing were on the exchange, and the next
    price past the trigger sent it again (`IllegalTransition: order OPEN -> PENDING`)."""
    from rules_engine.store import Store as StoreOf

    async with venue() as v:
        async with watch(v, tmp_path, BRACKET) as r:
            leg, tp = await bracket_placed(r)
            db = r.db
        # What the killed watcher had done: the take-profit cancelled and confirmed, the
        # stop-loss's market sale sent and acknowledged (it filled at once), nothing more.
        api = Sandbox(v.url, v.state, v.http)
        await api.ok("DELETE", f"/api/v1/hf/orders/client-order/{tp.req.client_oid}",
                     params={"symbol": SYMBOL})
        sale = await api.ok("POST", "/api/v1/hf/orders", body={
            "clientOid": leg.oid, "symbol": SYMBOL, "side": "sell", "type": "market",
            "size": "0.002"})
        store = StoreOf(db)
        now = datetime.now(UTC)
        store.acquire_lease("killed-watcher", now, timedelta(seconds=15))  # sends are fenced
        store.settle(tp.req.client_oid, now, order_to="canceled")
        store.send_leg(leg.oid, now, size=D("0.002"), deadline_at=None)
        store.settle(leg.oid, now, order_to="open", exchange_id=sale["orderId"])
        store.release_lease()
        store.close()
        bids, asks = book("56990", "57000")  # the price is past the trigger all along
        v.feed.push(SYMBOL, bids, asks, trade=(D("56995"), D("0.01"), "sell"))
        async with watch(v, tmp_path, BRACKET) as r:
            await until(lambda: not r.watcher.tracked and not r.watcher.legs, 5)
            await settle(0.5)
            assert not r.watcher.failed
            store = r.store()
            [row] = [o for o in store.orders() if o.client_oid == leg.oid]
            store.close()
            assert row.status == "filled" and row.filled_size == D("0.002")
            assert sold(r) == D("0.002")  # sold once: never sent again


async def test_a_chain_whose_parent_filled_while_the_watcher_was_down_is_armed_on_restart(
    tmp_path: Path,
) -> None:
    rules = ("rule entry on BTC-USDT:\n    when bid < 60000\n    place limit buy 0.002 at 58500\n"
             "rule exit on BTC-USDT:\n    after entry filled\n"
             "    place limit sell filled_size at fill_price + 1%\n")
    async with venue() as v:
        async with watch(v, tmp_path, rules) as r:
            await until(lambda: len(r.orders()) == 1 and not r.watcher.pending)
            [entry] = r.orders()
        # The market falls through the resting buy while no watcher runs: it fills.
        v.feed.push(SYMBOL, *book("58000", "58400"))
        await until(lambda: entry.deal_size == D("0.002"), 5)
        async with watch(v, tmp_path, rules) as r:
            await until(lambda: len(r.orders()) == 2, 5)  # recovery found the fill, armed
            exit_order = r.orders()[1]
            assert exit_order.req.side == "sell" and exit_order.req.size == D("0.002")
            assert exit_order.req.price == D("59085")  # 58500 + 1%
            store = r.store()
            [armed] = [e.payload for e in store.events() if e.kind == "rule.armed"]
            [child] = [f for f in store.firings() if f.identity == "exit"]
            store.close()
            assert armed["parent_firing"] == 1 and armed["event"] == "filled"
            assert child.inputs["arm"]["fill"] == ["58500", "0.002"]


async def test_a_trailing_stop_whose_order_was_never_placed_is_held_again_and_sent_once(
    tmp_path: Path,
) -> None:
    clock = moved_clock()
    async with rig(tmp_path, TRAIL, trade="60000", clock=clock) as r:
        await until(lambda: bool(r.watcher.held))
        await r.admin("faults", {"http_5xx": True})  # the triggered order's POST: a 503
        r.push("58700", "58710", trade="58705")  # 2.2% under the mark: it triggers
        await until(lambda: any(p.unknown for p in r.watcher.pending.values()), 5)
        await r.admin("faults", {"http_5xx": False})
        clock.advance(2_500)  # past the HF deadline: two lookups prove it absent
        await until(lambda: bool(r.watcher.held) and not r.watcher.pending, 10)
        assert r.orders() == []  # decided again: held again, nothing sent twice
        r.push("58800", "58810", trade="58805")  # a new mark...
        r.push("57000", "57010", trade="57005")  # ...and the fall that triggers it
        await until(lambda: len(r.orders()) == 1 and not r.watcher.pending, 10)
        store = r.store()
        [firing] = store.firings()
        kinds = [e.kind for e in store.events() if e.client_oid == firing.client_oid]
        store.close()
        assert firing.number == 1 and firing.status == "acknowledged"
        assert r.orders()[0].req.client_oid == firing.client_oid
        assert kinds.count("firing.held") == 2 and "firing.not_placed" in kinds


async def test_with_the_order_channel_silent_rest_polling_finds_the_fill(tmp_path: Path) -> None:
    rules = "rule rest on BTC-USDT:\n    when bid < 60000\n    place limit buy 0.002 at 58500\n"
    async with rig(tmp_path, rules) as r:
        await until(lambda: len(r.orders()) == 1 and not r.watcher.pending)
        # The order channel goes silent (as a dropped subscription would): nothing it sends
        # reaches the watcher any more.
        assert r.watcher.private is not None
        r.watcher.private.on_message = lambda frame: None
        r.watcher.private.on_state = lambda state, reason: None
        r.watcher.jobs.private_live = False
        r.push("58000", "58400")  # the buy fills on the exchange
        await until(lambda: r.orders()[0].deal_size == D("0.002"), 5)
        await until(lambda: not r.watcher.tracked, 5)  # found by polling (every 0.5 s here)
        store = r.store()
        [order] = store.orders()
        fills = store.fills()
        store.close()
        assert order.status == "filled" and order.filled_size == D("0.002")
        assert sum((f.size for f in fills), D(0)) == D("0.002")  # each fill once, from REST


async def test_a_real_keys_secrets_never_reach_the_output_or_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pydantic import SecretStr

    from rules_engine.sandbox.config import KeyConfig

    secret, passphrase = "s3cr3t-Value-9f8e7d6c5b4a", "pass-Phrase-1a2b3c4d"
    key = KeyConfig(api_key="test-key-0001", api_secret=SecretStr(secret),
                    api_passphrase=SecretStr(passphrase), permissions=("General", "Spot"))
    monkeypatch.setenv("RULES_ENGINE_API_KEY", "test-key-0001")
    monkeypatch.setenv("RULES_ENGINE_API_SECRET", secret)
    monkeypatch.setenv("RULES_ENGINE_API_PASSPHRASE", passphrase)
    rules = "when BTC-USDT bid < 60000 place limit buy 0.01\n"
    async with venue(keys=(key,)) as v, watch(v, tmp_path, rules) as r:
        await until(lambda: len(r.orders()) == 1 and not r.watcher.pending)
        await r.admin("faults", {"http_5xx": True})  # errors are written too: none may leak
        r.push("59100", "59110")
        await settle(0.3)
        await r.admin("faults", {"http_5xx": False})
    out = capsys.readouterr()
    written = out.out + out.err
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("watcher.sqlite*"))
    assert '"event": "fired"' in written and stored  # the session really ran and wrote
    for hidden in (secret, passphrase):
        assert hidden not in written
        assert hidden.encode() not in stored


async def test_a_bracket_whose_stop_loss_cannot_be_placed_blocks_its_rule_with_the_reason(
    tmp_path: Path,
) -> None:
    rules = ("rule upside_down on BTC-USDT:\n    when bid < 60000\n"
             "    place limit sell 0.001 at 60000\n    stop-loss at bid + 5000\n")
    async with rig(tmp_path, rules) as r:
        await until(lambda: r.watcher.states["upside_down"].status == "blocked")
        assert "not on the losing side" in r.watcher.rules.reasons["upside_down"]
        await settle(0.2)
        assert r.orders() == [] and not r.watcher.legs  # neither leg was sent or held
        store = r.store()
        [firing] = store.firings()
        [row] = [s for s in store.events() if s.kind == "firing.blocked"]
        store.close()
        assert firing.status == "blocked" and "losing side" in row.payload["reason"]


async def test_cancel_after_cancels_a_trailing_stop_still_held(tmp_path: Path) -> None:
    clock = moved_clock()
    async with rig(tmp_path, TRAIL + "    cancel after 10m\n", trade="60000", clock=clock) as r:
        await until(lambda: bool(r.watcher.held))
        clock.advance(600_000)
        await until(lambda: not r.watcher.held and not r.watcher.tracked, 5)
        store = r.store()
        assert [o.status for o in store.orders()] == ["not_placed"]  # held: never sent
        assert [f.status for f in store.firings()] == ["done"]
        store.close()
        assert r.orders() == []  # it never reached the exchange


async def test_a_stop_waits_for_a_running_job_instead_of_cancelling_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGTERM while a job ran used to cancel it: APScheduler logged the CancelledError
    with a traceback, and the watcher counted it as a failed job (seen once under load)."""
    original = Jobs.clock_job

    async def slow_clock(self: Jobs) -> None:
        await original(self)
        await asyncio.sleep(0.3)  # longer than its 0.1 s interval: almost always running

    monkeypatch.setattr(Jobs, "clock_job", slow_clock)
    async with rig(tmp_path, "when BTC-USDT bid < 1 place limit buy 0.01\n") as r:
        await until(lambda: bool(r.watcher._jobs_running))
    assert not r.watcher.failed, r.watcher.stop_reason
    assert not [rec for rec in caplog.records
                if rec.name.startswith("apscheduler") and rec.levelno >= 40]
