"""The order table's `Record` commands written by the store (`Store.save_order`), on a real
SQLite file and the real PostgreSQL: what the table decides is what a restart reads back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from test_store import NOW, PG_URL

from rules_engine.engine._lifecycle import apply, place
from rules_engine.engine._order_types import (
    CancelAsked,
    CancelOrder,
    LookedUp,
    LookUpOrder,
    OrderRecord,
    Record,
    Recovered,
    Transition,
    Unknown,
)
from rules_engine.runtime._orders import FIRING_MOVES
from rules_engine.store import StateRow, Store, client_oid
from rules_engine.store._repo import ORDER_TRANSITIONS

DEADLINE = NOW + timedelta(seconds=10)
STATE = StateRow("buy", 1, "done", 1, {"status": "done"}, None)
ORDER = {"exchange_id": None, "symbol": "BTC-USDT", "side": "buy", "order_type": "limit",
         "price": Decimal("50000"), "size": Decimal("0.001"), "funds": None,
         "status": "pending", "filled_size": Decimal(0), "filled_value": Decimal(0),
         "family": "hf", "deadline": DEADLINE}


@pytest.fixture(params=["sqlite", "postgres"])
def owned(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated store whose lease this Store object holds (what a watcher writes
    through), on SQLite and on PostgreSQL in a schema of its own."""
    if request.param == "postgres" and not PG_URL:
        pytest.skip("RULES_ENGINE_TEST_PG_URL is not set: PostgreSQL tests need a server")
    schema = None if request.param == "sqlite" else "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(PG_URL) if schema is not None and PG_URL else None
    if admin is not None:
        with admin.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
    db = Store(PG_URL, schema=schema) if admin is not None and PG_URL else Store(
        f"sqlite:///{tmp_path / 'store.sqlite'}")
    try:
        db.migrate()
        db.acquire_lease("test-watcher", NOW, timedelta(seconds=15))
        yield db
    finally:
        db.close()
        if admin is not None:
            with admin.begin() as connection:
                connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()


def _save(store: Store, before: OrderRecord, transition: Transition) -> None:
    """What the order manager does with a transition's `Record`."""
    for command in transition.commands:
        if isinstance(command, Record):
            moved = before.status != command.record.status
            store.save_order(command.record, NOW, command.event, dict(command.detail),
                             firing_to=FIRING_MOVES.get((before.status, command.record.status))
                             if moved else None)


def _restored(store: Store, oid: str) -> OrderRecord:
    """The record a restart rebuilds from the row (as `runtime/_recovery.py` does)."""
    [row] = [o for o in store.orders() if o.client_oid == oid]
    return OrderRecord(oid, row.status, row.family, row.side, row.size, row.filled_size,
                       row.filled_value, row.exchange_id, row.deadline, None, row.cancel_at,
                       tuple(row.cancel or ()))


def test_the_store_moves_orders_only_as_the_order_table_does() -> None:
    from rules_engine.engine._lifecycle import STATUS_TRANSITIONS

    assert ORDER_TRANSITIONS is STATUS_TRANSITIONS
    assert ("held", "canceled") not in ORDER_TRANSITIONS  # held and dropped: not_placed


def test_a_cancel_asked_while_the_outcome_is_unknown_survives_a_restart(owned: Store) -> None:
    store = owned
    oid = client_oid(store.engine_id(), "buy", 1)
    cancel_at = NOW + timedelta(minutes=10)
    store.fire("buy", 1, version=1, inputs={}, intent={"symbol": "BTC-USDT"},
               order={**ORDER, "cancel_at": cancel_at}, state=STATE, now=NOW)
    record = place(oid, family="hf", side="buy", size=Decimal("0.001"),
                   deadline=DEADLINE, cancel_at=cancel_at).record
    unknown = apply(record, Unknown("timeout"), NOW)
    _save(store, record, unknown)
    asked = apply(unknown.record, CancelAsked("cancel all of panic"), NOW)
    _save(store, unknown.record, asked)
    assert not any(isinstance(c, CancelOrder) for c in asked.commands)  # not shown yet
    assert store.firing_of(oid).status == "unknown"  # type: ignore[union-attr]

    # A restart reads back the status, the cancel asked and its `cancel after`.
    back = _restored(store, oid)
    assert (back.status, back.cancel, back.cancel_at) == (
        "unknown", ("cancel all of panic",), cancel_at)
    recovered = apply(back, Recovered(), NOW)
    assert any(isinstance(c, LookUpOrder) for c in recovered.commands)
    # The exchange shows it: the remembered cancel is sent at once, and recorded first.
    shown = apply(recovered.record, LookedUp("found", NOW + timedelta(seconds=1),
                                             exchange_id="x1"), NOW)
    assert [type(c) for c in shown.commands][:2] == [Record, CancelOrder]
    _save(store, recovered.record, shown)
    [row] = store.orders()
    assert (row.status, row.exchange_id) == ("cancel_requested", "x1")
    assert store.firing_of(oid).status == "acknowledged"  # type: ignore[union-attr]
    kinds = [e.kind for e in store.events() if e.client_oid == oid]
    assert kinds == ["fired", "firing.sent", "firing.unknown", "order.unknown",
                     "order.cancel_asked", "firing.acknowledged", "order.cancel_requested"]


def test_a_held_order_cancelled_is_not_placed_and_its_firing_done(owned: Store) -> None:
    store = owned
    oid = client_oid(store.engine_id(), "buy", 1)
    store.fire("buy", 1, version=1, inputs={}, intent={"symbol": "BTC-USDT"},
               order={**ORDER, "status": "held", "order_type": "trailing-stop"}, state=STATE,
               now=NOW, held=True)
    record = place(oid, family="hf", side="sell", size=Decimal("0.001"), deadline=None,
                   held_as="trailing-stop").record
    dropped = apply(record, CancelAsked("halt --all"), NOW)
    _save(store, record, dropped)
    [row] = store.orders()
    assert row.status == "not_placed" and row.cancel == ["halt --all"]
    assert store.firing_of(oid).status == "done"  # type: ignore[union-attr]


def test_a_row_another_writer_moved_takes_the_tables_status_with_an_anomaly(
    owned: Store,
) -> None:
    store = owned
    oid = client_oid(store.engine_id(), "buy", 1)
    store.fire("buy", 1, version=1, inputs={}, intent={"symbol": "BTC-USDT"}, order=ORDER,
               state=STATE, now=NOW)
    store.settle(oid, NOW, order_to="unknown")
    store.settle(oid, NOW, order_to="open")  # as another writer might have
    record = OrderRecord(oid, "pending", "hf", "buy", Decimal("0.001"), exchange_id="x1")
    store.save_order(record, NOW, "order.pending", {"event": "sent"})
    [row] = store.orders()
    [anomaly] = [e for e in store.events() if e.kind == "order.anomaly"]
    # Not final: the table is the authority, and the move is on record.
    assert row.status == "pending" and anomaly.payload["move"] == "open -> pending"
    assert anomaly.payload["kept"] == "pending"


@pytest.mark.parametrize("final", ["filled", "refused", "canceled"])
def test_a_final_status_is_never_moved_back_by_a_stale_writer(owned: Store, final: str) -> None:
    """A watcher resumed after another took the store over (the soak's paused watcher) wrote
    `open` over `filled`; the next recovery looked the order up again and armed its `after
    ... filled` rule a second time. A final status is left only by a move the table makes
    (a late fill of a cancelled order, a firing proven not placed sent again)."""
    store = owned
    oid = client_oid(store.engine_id(), "buy", 1)
    store.fire("buy", 1, version=1, inputs={}, intent={"symbol": "BTC-USDT"}, order=ORDER,
               state=STATE, now=NOW)
    store.settle(oid, NOW, order_to=final)
    stale = OrderRecord(oid, "open", "hf", "buy", Decimal("0.001"), exchange_id="x1",
                        cancel=("halt",))
    armed = StateRow("after-buy", 1, "armed", 0, {"status": "armed"}, None)
    store.save_order(stale, NOW, "order.open", {"event": "acknowledged"}, also=(armed,),
                     events=(("armed", "after-buy", {}),))
    [row] = store.orders()
    [anomaly] = [e for e in store.events() if e.kind == "order.anomaly"]
    assert row.status == final
    assert anomaly.payload["move"] == f"{final} -> open" and anomaly.payload["kept"] == final
    # Kept out whole: no event names the move that never happened (the soak's audit found a
    # filled order whose last order event was `open`), no field of the stale record, and
    # not the rule rows of its step.
    moves = [e.kind for e in store.events() if e.client_oid == oid
             and e.kind.startswith("order.") and e.kind != "order.anomaly"]
    assert moves[-1] == f"order.{final}", moves
    assert row.exchange_id is None and not row.cancel
    assert store.rule_state("after-buy") is None
    assert not store.events("armed")
    if final == "canceled":  # a late fill of a cancelled order is a move the table makes
        store.save_order(stale._replace(status="filled"), NOW, "order.filled", {})
        [row] = store.orders()
        assert row.status == "filled"
