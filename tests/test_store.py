"""The store on a real SQLite file and on the real PostgreSQL (RULES_ENGINE_TEST_PG_URL)."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from rules_engine.store import (
    IllegalTransition,
    LeaseHeld,
    LeaseLost,
    Store,
    VenueMismatch,
    client_oid,
)
from rules_engine.store._repo import engine_prefix
from rules_engine.store._schema import Firing

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PG_URL = os.environ.get("RULES_ENGINE_TEST_PG_URL")


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
        s.migrate()
        yield s
        s.close()
        return
    if not PG_URL:
        pytest.skip("RULES_ENGINE_TEST_PG_URL is not set: PostgreSQL tests need a server")
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(PG_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    s = Store(PG_URL, schema=schema)
    try:
        s.migrate()
        yield s
    finally:
        s.close()
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def owned(store: Store) -> Store:
    """A store whose lease this Store object holds: what a watcher fires through."""
    store.acquire_lease("test-watcher", NOW, timedelta(seconds=15))
    return store


def test_the_engine_id_is_created_once_and_kept(store: Store) -> None:
    first = store.engine_id()
    assert first == store.engine_id() and len(first) == 32


def test_an_intent_is_committed_with_its_event_before_anything_is_sent(owned: Store) -> None:
    store = owned
    firing = store.record_intent(
        "dip",
        1,
        version=1,
        inputs={"BTC-USDT bid": "59000"},
        intent={"symbol": "BTC-USDT", "price": "59000"},
        now=NOW,
    )
    assert firing.client_oid == client_oid(store.engine_id(), "dip", 1)
    assert [f.status for f in store.open_firings()] == ["intent"]
    fired = store.events("fired")
    assert len(fired) == 1 and fired[0].payload["inputs"] == {"BTC-USDT bid": "59000"}


def test_transitions_follow_the_table_and_each_writes_its_event(owned: Store) -> None:
    store = owned
    firing = store.record_intent(
        "dip", 1, version=1, inputs={}, intent={"symbol": "BTC-USDT"}, now=NOW
    )
    store.move_firing(firing.id, "sent", NOW)
    store.move_firing(firing.id, "unknown", NOW)
    with pytest.raises(IllegalTransition, match="UNKNOWN -> REFUSED"):
        store.move_firing(firing.id, "refused", NOW)
    store.move_firing(firing.id, "acknowledged", NOW, {"order_id": "abc"})
    assert store.open_firings() == []
    kinds = [e.kind for e in store.events()]
    assert kinds == ["fired", "firing.sent", "firing.unknown", "firing.acknowledged"]


def test_a_firing_number_is_recorded_once(owned: Store) -> None:
    store = owned
    store.record_intent("dip", 1, version=1, inputs={}, intent={"symbol": "BTC-USDT"}, now=NOW)
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        store.record_intent("dip", 1, version=1, inputs={}, intent={"symbol": "BTC-USDT"}, now=NOW)
    assert len(store.events("fired")) == 1  # the failed transaction left no event either


def test_fills_are_recorded_once_and_money_is_exact(owned: Store) -> None:
    store = owned
    firing = store.record_intent(
        "dip", 1, version=1, inputs={}, intent={"symbol": "BTC-USDT"}, now=NOW
    )
    assert firing.client_oid is not None
    from rules_engine.store._schema import Order

    with store.session() as session, session.begin():
        session.add(
            Order(
                client_oid=firing.client_oid,
                firing_id=firing.id,
                symbol="BTC-USDT",
                side="buy",
                order_type="limit",
                price=Decimal("59000.1"),
                size=Decimal("0.00012345"),
                funds=None,
                status="open",
                filled_size=Decimal(0),
                filled_value=Decimal(0),
                family="hf",
                deadline=None,
                updated_at=NOW,
            )
        )
    price = Decimal("59000.123456789012345678")
    fill = {
        "price": price,
        "size": Decimal("0.00012345"),
        "fee": None,
        "fee_currency": None,
        "time": NOW,
    }
    assert store.record_fill("t1", firing.client_oid, **fill)
    assert not store.record_fill("t1", firing.client_oid, **fill)
    with store.session() as session:
        order = session.get(Order, firing.client_oid)
        assert order is not None and order.price == Decimal("59000.1")
        assert order.updated_at == NOW and order.updated_at.tzinfo is not None
    assert len(store.events("fill")) == 1


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        store.record_intent("dip", 1, version=1, inputs={}, intent=None, now=datetime(2026, 1, 1))


def test_a_second_watcher_is_refused_while_the_first_is_alive(store: Store) -> None:
    assert store.acquire_lease("watcher-a", NOW, timedelta(seconds=30)) == 1
    other = Store(store.engine.url.render_as_string(hide_password=False), schema=store.schema)
    try:
        with pytest.raises(LeaseHeld, match="watcher-a"):
            other.acquire_lease("watcher-b", NOW + timedelta(seconds=10), timedelta(seconds=30))
        assert other.fence is None
        assert other.acquire_lease("watcher-b", NOW + timedelta(seconds=31),
                                   timedelta(seconds=30)) == 2
        with pytest.raises(LeaseLost, match="another watcher took the store over"):
            store.heartbeat(NOW + timedelta(seconds=32))
        other.heartbeat(NOW + timedelta(seconds=32))
    finally:
        other.close()


def test_a_different_venue_is_refused(store: Store) -> None:
    store.check_venue("sandbox-1")
    store.check_venue("sandbox-1")
    with pytest.raises(VenueMismatch, match="another venue"):
        store.check_venue("sandbox-2")


def test_sqlite_is_durable_against_power_loss(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'd.sqlite'}")
    store.migrate()
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    store.close()


def test_migrating_again_changes_nothing(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'm.sqlite'}")
    store.migrate()
    firing = store.record_intent("dip", 1, version=1, inputs={}, intent=None, now=NOW)
    store.migrate()
    with store.session() as session:
        assert session.get(Firing, firing.id) is not None
    store.close()


@given(
    engine=st.text(min_size=1, max_size=40),
    identity=st.text(min_size=1, max_size=60),
    number=st.integers(1, 10**9),
)
def test_client_oids_are_deterministic_short_and_clean(
    engine: str, identity: str, number: int
) -> None:
    oid = client_oid(engine, identity, number)
    assert oid == client_oid(engine, identity, number)
    assert len(oid) <= 40 and re.fullmatch(r"[A-Za-z0-9_-]+", oid)
    assert oid.startswith(engine_prefix(engine))
    assert client_oid(engine + "x", identity, number) != oid
    assert client_oid(engine, identity, number + 1) != oid


def test_the_migrations_create_exactly_the_models(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from rules_engine.store._schema import Base

    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_a_stop_loss_dropped_before_it_was_sent_is_held_again_with_its_firing(
    owned: Store,
) -> None:
    store = owned
    from rules_engine.store._repo import StateRow

    state = StateRow("exit", 1, "done", 1, {"status": "done"}, None)
    order = {"exchange_id": None, "symbol": "BTC-USDT", "side": "sell", "order_type": "limit",
             "price": Decimal("60000"), "size": Decimal("0.001"), "funds": None,
             "status": "pending", "filled_size": Decimal(0), "filled_value": Decimal(0),
             "family": "hf", "deadline": NOW}
    leg = {"client_oid": "re-leg-1", "exchange_id": None, "symbol": "BTC-USDT", "side": "sell",
           "order_type": "stop-loss", "price": Decimal("58000"), "size": Decimal("0.001"),
           "funds": None, "status": "held", "filled_size": Decimal(0),
           "filled_value": Decimal(0), "family": "hf", "deadline": None}
    intent = {"symbol": "BTC-USDT"}
    store.fire("exit", 1, version=1, inputs={}, intent=intent, order=order, state=state,
               now=NOW, legs=(leg,))
    tp = client_oid(store.engine_id(), "exit", 1)
    store.settle("re-leg-1", NOW, order_to="canceled", payload={"why": "cancel all"})
    store.settle(tp, NOW, firing_to="unknown")
    store.settle(tp, NOW, firing_to="not_placed", order_to="not_placed")
    store.fire("exit", 1, version=1, inputs={}, intent=intent, order=order, state=state,
               now=NOW, legs=(leg,), again=True)
    rows = {o.client_oid: o for o in store.orders()}
    assert rows["re-leg-1"].status == "held" and rows[tp].status == "pending"
    store.send_leg("re-leg-1", NOW, size=Decimal("0.001"), deadline_at=None)  # can be sent
    assert {o.client_oid: o.status for o in store.orders()}["re-leg-1"] == "pending"
    # One that reached the exchange is never held again.
    store.settle("re-leg-1", NOW, order_to="canceled", exchange_id="x1")
    store.settle(tp, NOW, firing_to="unknown")
    store.settle(tp, NOW, firing_to="not_placed", order_to="not_placed")
    with pytest.raises(IllegalTransition, match="CANCELED -> HELD"):
        store.fire("exit", 1, version=1, inputs={}, intent=intent, order=order, state=state,
                   now=NOW, legs=(leg,), again=True)


def test_unblock_requests_hold_until_taken_even_for_the_longest_rule_names(
    store: Store,
) -> None:
    """An identity may be 128 characters and a request's key only 64: the key is a hash."""
    long_name, short = "r" * 128, "dip"
    store.load_rules([(long_name, "f1", "c", "a.rules", None), (short, "f2", "c", "a.rules",
                                                                   None)], NOW)
    assert store.rule_state(short) is None  # loaded, no state saved yet
    store.request_unblock(long_name, NOW, "me")
    store.request_unblock(short, NOW, "me")
    store.request_unblock(short, NOW, "me again")  # asked twice: still one request
    assert store.unblocks() == sorted([long_name, short])
    store.unblock_done(long_name)
    assert store.unblocks() == [short]
    kinds = [(e.kind, e.identity) for e in store.events("unblock.requested")]
    assert len(kinds) == 3 and (("unblock.requested", long_name) in kinds)


def _one_limit_buy(store: Store) -> str:
    """Rule `dip`'s first firing, a resting limit buy, committed as sent: its clientOid."""
    from rules_engine.store._repo import StateRow

    state = StateRow("dip", 1, "done", 1, {"status": "done"}, None)
    order = {"exchange_id": None, "symbol": "BTC-USDT", "side": "buy", "order_type": "limit",
             "price": Decimal("50000"), "size": Decimal("0.001"), "funds": None,
             "status": "pending", "filled_size": Decimal(0), "filled_value": Decimal(0),
             "family": "hf", "deadline": NOW}
    store.fire("dip", 1, version=1, inputs={}, intent={"symbol": "BTC-USDT"}, order=order,
               state=state, now=NOW)
    return client_oid(store.engine_id(), "dip", 1)


def test_a_step_reported_from_outside_that_the_table_lacks_is_an_anomaly_not_a_crash(
    owned: Store,
) -> None:
    """Issue 12 item 4: `cancel all` reached an order proven not placed, and the watcher
    died on IllegalTransition('order NOT_PLACED -> CANCELED'), restart after restart."""
    store = owned
    oid = _one_limit_buy(store)
    store.settle(oid, NOW, firing_to="unknown")
    store.settle(oid, NOW, firing_to="not_placed", order_to="not_placed")
    # What arrives now from the exchange or a person has no move from here: recorded.
    store.settle(oid, NOW, order_to="canceled", payload={"why": "cancel all"})
    store.settle(oid, NOW, firing_to="acknowledged", order_to="filled")
    row = store.order(oid)
    firing = store.firing_of(oid)
    assert row is not None and row.status == "not_placed"
    assert firing is not None and firing.status == "not_placed"
    moves = [e.payload["move"] for e in store.events("order.anomaly")]
    assert moves == ["not_placed -> canceled", "not_placed -> filled"]
    assert [e.payload["move"] for e in store.events("firing.anomaly")] == [
        "not_placed -> acknowledged"]


def test_the_exchange_reporting_a_fill_after_a_cancel_wins(owned: Store) -> None:
    """Fills are money: `canceled -> filled` is a move (the order table's one reopening of a
    canceled order)."""
    store = owned
    oid = _one_limit_buy(store)
    store.settle(oid, NOW, firing_to="acknowledged", order_to="open")
    store.settle(oid, NOW, order_to="canceled")
    store.settle(oid, NOW, order_to="filled")
    row = store.order(oid)
    assert row is not None and row.status == "filled"
    assert store.events("order.anomaly") == []
