"""The lease: atomic takeover between real processes, the epoch, and the fence on every commit
that lets an order out. SQLite files and the real PostgreSQL (RULES_ENGINE_TEST_PG_URL)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lease_support import OWNERS_HOST, racer
from sqlalchemy import create_engine, delete, insert, select, text

from rules_engine.store import Store
from rules_engine.store._lease import LeaseHeld, LeaseLost
from rules_engine.store._repo import StateRow, client_oid
from rules_engine.store._schema import Event, Firing, Lease, Order

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=15)
PG_URL = os.environ.get("RULES_ENGINE_TEST_PG_URL")

Db = tuple[str, str | None]  # (url, schema): one database, opened by as many Stores as needed


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite'}", None
        return
    if not PG_URL:
        pytest.skip("RULES_ENGINE_TEST_PG_URL is not set: PostgreSQL tests need a server")
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(PG_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield PG_URL, schema
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def opened(db: Db) -> Iterator[Callable[[], Store]]:
    """Open Stores on the one database (migrated once), closed at the end."""
    stores: list[Store] = []

    def open_one() -> Store:
        store = Store(db[0], schema=db[1])
        if not stores:
            store.migrate()
        stores.append(store)
        return store

    yield open_one
    for store in stores:
        store.close()


def _dead_pid() -> int:
    """The pid of a process that ran on this host and is gone."""
    done = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    return int(done.stdout)


def _set_lease(store: Store, mode: str, dead_pid: int) -> int:
    """The lease before a round: `stale` (an owner elsewhere, silent for an hour), `dead`
    (an owner of this host, heartbeat fresh, whose process is gone) or `fresh` (none).
    Returns its epoch (0 for none)."""
    table = Lease.__table__
    now = datetime.now(UTC)
    with store.engine.begin() as connection:
        epoch = connection.execute(select(table.c.epoch)).scalar() or 0
        connection.execute(delete(table))
        if mode == "fresh":
            return 0
        owner = (f"elsewhere:1:stale-{epoch}" if mode == "stale"
                 else f"{OWNERS_HOST}:{dead_pid}:dead-{epoch}")
        beat = now - timedelta(hours=1) if mode == "stale" else now
        connection.execute(insert(table), {"id": 1, "owner": owner, "heartbeat": beat,
                                           "alive": True, "epoch": epoch})
    return int(epoch)


def test_two_watchers_starting_together_never_both_own_the_store(db: Db) -> None:
    """Issue 12, item 2: two processes released by one barrier call `acquire_lease` over a
    store whose owner is dead (a stale heartbeat; a pid that no longer runs), 30 rounds, then
    over a fresh store, 30 rounds: each round exactly one owns it at the next epoch, the
    other gets LeaseHeld naming it (main: both owned it in most rounds on SQLite, and on a
    fresh store the loser got a raw IntegrityError)."""
    rounds = 60
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)
    results = context.Queue()
    racers = [context.Process(target=racer, args=(db, name, rounds, barrier, results))
              for name in ("a", "b")]
    for process in racers:
        process.start()
    store = Store(db[0], schema=db[1])
    store.migrate()
    dead_pid = _dead_pid()
    wrong: list[str] = []
    try:
        for number in range(rounds):
            mode = "fresh" if number >= rounds // 2 else ("stale", "dead")[number % 2]
            epoch = _set_lease(store, mode, dead_pid)
            barrier.wait(timeout=60)
            got = sorted((results.get(timeout=60) for _ in range(2)), key=lambda r: r[3] != "owner")
            with store.engine.connect() as connection:
                row = connection.execute(select(Lease.__table__)).one()
            [(_, _, winner, won), (_, _, _, lost)] = got
            if (won != "owner" or not lost.startswith(f"LeaseHeld: another watcher ({winner})")
                    or row.owner != winner or row.epoch != epoch + 1 or not row.alive):
                wrong.append(f"round {number} ({mode}): {[r[3][:90] for r in got]}, "
                             f"lease {row.owner} at epoch {row.epoch}")
    finally:
        for process in racers:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        store.close()
    assert wrong == [], f"{len(wrong)} of {rounds} rounds went wrong: {wrong[:4]}"
    assert [process.exitcode for process in racers] == [0, 0]


# ------------------------------------------------------------------ the epoch and the fence


def _fire(store: Store, identity: str, *, again: bool = False, legs: bool = False,
          now: datetime = NOW) -> None:
    order = {"exchange_id": None, "symbol": "BTC-USDT", "side": "buy", "order_type": "limit",
             "price": Decimal("59000"), "size": Decimal("0.001"), "funds": None,
             "status": "pending", "filled_size": Decimal(0), "filled_value": Decimal(0),
             "family": "hf", "deadline": now + timedelta(seconds=10)}
    leg = {"client_oid": f"leg-{identity}", "exchange_id": None, "symbol": "BTC-USDT",
           "side": "sell", "order_type": "stop-loss", "price": Decimal("58000"),
           "size": Decimal("0.001"), "funds": None, "status": "held",
           "filled_size": Decimal(0), "filled_value": Decimal(0), "family": "hf",
           "deadline": None}
    store.fire(identity, 1, version=1, inputs={"bid": "59000"}, intent={"symbol": "BTC-USDT"},
               order=order, state=StateRow(identity, 1, "done", 1, {"status": "done"}, None),
               now=now, again=again, legs=(leg,) if legs else ())


def _counts(store: Store) -> tuple[int, int, int]:
    return len(store.firings()), len(store.orders()), len(store.events())


def test_each_acquisition_raises_the_epoch_and_a_migrated_old_store_starts_at_zero(
    tmp_path: Path,
) -> None:
    """A store made before migration 0004 (its lease row included) is upgraded by
    `Store.migrate`: the old lease reads as epoch 0, the next acquisition makes it 1."""
    from alembic import command
    from alembic.config import Config

    from rules_engine.store._repo import _migrations

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    old = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(_migrations()))
    with old.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
        connection.execute(text("INSERT INTO lease (id, owner, heartbeat, alive) VALUES "
                                "(1, 'old-watcher', '2026-03-02 11:00:00.000000', 1)"))
    old.dispose()
    store = Store(url)
    try:
        store.migrate()
        lease = store.lease()
        assert lease is not None and (lease.owner, lease.epoch) == ("old-watcher", 0)
        assert store.acquire_lease("new", NOW, TTL) == 1
        assert store.acquire_lease("new", NOW, TTL) == 2  # again: a new epoch, same owner
        assert store.fence == ("new", 2)
    finally:
        store.close()


def test_a_store_that_lost_its_lease_cannot_commit_an_order(
    opened: Callable[[], Store],
) -> None:
    """Watcher A owns the store at epoch 1 and sends; it is paused past the lease; B takes
    over at epoch 2. A's next firing (first or again), triggered stop and stop-loss leg are
    all refused with LeaseLost and write nothing; so is its heartbeat; B fires."""
    a, b = opened(), opened()
    assert a.acquire_lease("watcher-a", NOW, TTL) == 1
    _fire(a, "entry", legs=True)
    oid = client_oid(a.engine_id(), "entry", 1)
    a.settle(oid, NOW, firing_to="unknown")
    a.settle(oid, NOW, firing_to="not_placed", order_to="not_placed")
    with pytest.raises(LeaseHeld, match="watcher-a"):  # A's fire renewed the lease
        b.acquire_lease("watcher-b", NOW + TTL - timedelta(seconds=1), TTL)
    assert b.acquire_lease("watcher-b", NOW + TTL, TTL) == 2
    before = _counts(a)
    later = NOW + TTL + timedelta(seconds=1)
    lost = "lost its lease on the store .epoch 1; watcher-b holds it now, at epoch 2.: " \
        "another watcher took the store over, so this one must stop sending and exit"
    with pytest.raises(LeaseLost, match=lost):
        _fire(a, "other", now=later)
    with pytest.raises(LeaseLost, match=lost):
        _fire(a, "entry", again=True, legs=True, now=later)
    with pytest.raises(LeaseLost, match=lost):
        a.send_leg("leg-entry", later, size=Decimal("0.001"), deadline_at=None)
    with pytest.raises(LeaseLost, match=lost):
        a.trigger("leg-entry", later, intent={"type": "market"}, order={"order_type": "market"},
                  payload={})
    with pytest.raises(LeaseLost, match=lost):
        a.record_intent("other", 2, version=1, inputs={}, intent={"symbol": "BTC-USDT"},
                        now=later)
    with pytest.raises(LeaseLost, match=lost):
        a.heartbeat(later)
    # Every other write of A's too, not only what lets an order out: a status moved back,
    # a fill, a rule's state or an event written over what B wrote would mislead B's next
    # recovery (the soak found an order A moved from filled back to open, re-arming its
    # chained rule a second time).
    with pytest.raises(LeaseLost, match=lost):
        a.settle(oid, later, order_to="open", exchange_id="x-1")
    with pytest.raises(LeaseLost, match=lost):
        a.add_fill("trade-1", oid, price=Decimal("59000"), size=Decimal("0.001"), fee=None,
                   fee_currency=None, time=later)
    with pytest.raises(LeaseLost, match=lost):
        a.log("watcher.note", later, {"from": "a"})
    state = a.rule_state("entry")
    assert state is not None
    with pytest.raises(LeaseLost, match=lost):
        a.save_states([state], later, [("rule.rearm", "entry", {})])
    with pytest.raises(LeaseLost, match=lost):
        a.mark("leg-entry", Decimal("1"), later)
    assert _counts(a) == before  # nothing written by any of them
    assert {o.client_oid: o.status for o in a.orders()}["leg-entry"] == "held"
    a.release_lease()  # not A's any more: B's lease stays alive
    lease = b.lease()
    assert lease is not None and (lease.owner, lease.epoch, lease.alive) == ("watcher-b", 2, True)
    b.heartbeat(later)
    _fire(b, "other", now=later)
    _fire(b, "entry", again=True, legs=True, now=later)
    assert {o.client_oid: o.status for o in b.orders()}[oid] == "pending"
    with b.session() as session:
        assert session.scalars(select(Firing.identity).order_by(Firing.id)).all() == [
            "entry", "other"]
        assert session.scalars(select(Event).where(Event.kind == "fired.again")).all()


def test_the_lease_is_renewed_by_every_firing_and_released_only_by_its_holder(
    opened: Callable[[], Store],
) -> None:
    a, b = opened(), opened()
    a.acquire_lease("watcher-a", NOW, TTL)
    _fire(a, "dip", now=NOW + timedelta(seconds=100))  # no heartbeat since NOW, but a firing
    with pytest.raises(LeaseHeld, match="watcher-a"):
        b.acquire_lease("watcher-b", NOW + timedelta(seconds=110), TTL)
    assert b.fence is None
    a.release_lease()
    assert a.fence is None
    assert b.acquire_lease("watcher-b", NOW + timedelta(seconds=111), TTL) == 2
    with pytest.raises(LeaseLost, match="holds no lease"):
        _fire(a, "again")  # released: a Store without a lease cannot send


def test_a_store_that_never_acquired_the_lease_reads_but_cannot_fire(
    opened: Callable[[], Store],
) -> None:
    """`status` and the other tools read without a lease; nothing that sends can commit."""
    owner, tool = opened(), opened()
    owner.acquire_lease("watcher", NOW, TTL)
    _fire(owner, "dip")
    assert tool.fence is None
    assert [f.identity for f in tool.firings()] == ["dip"] and len(tool.orders()) == 1
    with pytest.raises(LeaseLost, match="holds no lease"):
        _fire(tool, "other")
    with pytest.raises(LeaseLost, match="holds no lease"):
        tool.heartbeat(NOW)
    assert _counts(tool) == _counts(owner)
    with owner.session() as session:
        assert session.get(Order, client_oid(owner.engine_id(), "other", 1)) is None


def test_main_s_watcher_calls_keep_working_until_it_moves_to_the_new_ones(
    opened: Callable[[], Store],
) -> None:
    """`heartbeat(owner, now)` and `release_lease(owner)`: the watcher on main calls these;
    the owner must be this Store's fence's."""
    store: Any = opened()
    store.acquire_lease("watcher", NOW, TTL)
    store.heartbeat("watcher", NOW + timedelta(seconds=1))
    with pytest.raises(LeaseLost):
        store.heartbeat("someone-else", NOW + timedelta(seconds=2))
    store.release_lease("someone-else")  # not ours: nothing happens
    assert store.lease().alive
    store.release_lease("watcher")
    assert not store.lease().alive
