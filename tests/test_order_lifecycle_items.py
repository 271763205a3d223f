"""Issue 12, items 4 and 7: what the order table does not expect never stops the watcher, and
the order behaviour a trader hits (firings deferred by the per-minute limit, an inverted
bracket refused before its entry is sent, the re-arm recorded).

The watcher runs in-process as tests/test_watcher.py drives it (`rig`: the sandbox on port 0
with the books the test pushes, the real `rules-engine run` assembly, a real SQLite file, the
sandbox's clock moved by the test where time matters). What the exchange holds is the
sandbox's own record; what the engine decided is read from the store.

Two of the item 4 tests put the store in a state the order table does not expect while the
watcher runs (one UPDATE of the order's and firing's status, through a second connection):
that is the record the soak reached under clock skew (an order proven not placed that the
exchange holds; a firing already acknowledged that the watcher decides again), reproduced
here without the minutes of faults it took there. Everything after that UPDATE is real: the
exchange's events, the lookups, the cancels.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from test_watcher import moved_clock, rig, settle, until

from rules_engine.store import IllegalTransition, Store
from rules_engine.store._repo import StateRow

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent


def _events(db: str, kind: str | None = None, identity: str | None = None) -> list[Any]:
    store = Store(db)
    try:
        return [e for e in store.events()
                if (kind is None or e.kind == kind)
                and (identity is None or e.identity == identity)]
    finally:
        store.close()


def _force(db: str, oid: str, *, firing: str | None, order: str | None) -> None:
    """Put one firing and its order in the given statuses behind the watcher's back."""
    engine = create_engine(db)
    try:
        with engine.begin() as connection:
            if firing is not None:
                connection.execute(text("UPDATE firings SET status = :s WHERE client_oid = :o"),
                                   {"s": firing, "o": oid})
            if order is not None:
                connection.execute(text("UPDATE orders SET status = :s WHERE client_oid = :o"),
                                   {"s": order, "o": oid})
    finally:
        engine.dispose()


def _oids_sent(r: Any) -> list[str]:
    return [o.req.client_oid for o in r.orders()]


# ============================================================ item 4: totality, in the store


def _stored_order(tmp_path: Path) -> tuple[Store, str]:
    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    store.migrate()
    store.acquire_lease("watcher", NOW, timedelta(seconds=15))
    order = {"exchange_id": None, "symbol": "BTC-USDT", "side": "buy", "order_type": "limit",
             "price": Decimal("59000"), "size": Decimal("0.001"), "funds": None,
             "status": "pending", "filled_size": Decimal(0), "filled_value": Decimal(0),
             "family": "hf", "deadline": NOW + timedelta(seconds=10)}
    store.fire("dip", 1, version=1, inputs={}, intent={"symbol": "BTC-USDT"}, order=order,
               state=StateRow("dip", 1, "done", 1, {"status": "done"}, None), now=NOW)
    [firing] = store.firings()
    return store, str(firing.client_oid)


# Each case: how the order got where it is (legal steps), then the outside event the table does
# not expect there, and the (firing, order) statuses that must be kept.
UNEXPECTED = {
    "a confirmed cancel of an order proven not placed (the soak's crash loop)": (
        [{"firing_to": "unknown"}, {"firing_to": "not_placed", "order_to": "not_placed"}],
        {"order_to": "canceled"}, ("not_placed", "not_placed")),
    "a canceled event for an order the store holds filled": (
        [{"firing_to": "acknowledged", "order_to": "open"}, {"order_to": "filled"}],
        {"order_to": "canceled"}, ("acknowledged", "filled")),
    "an acknowledgement for an order proven not placed (a late reply)": (
        [{"firing_to": "unknown"}, {"firing_to": "not_placed", "order_to": "not_placed"}],
        {"firing_to": "acknowledged", "order_to": "open"}, ("not_placed", "not_placed")),
    "a timed-out reply for a firing already acknowledged and open": (
        [{"firing_to": "acknowledged", "order_to": "open"}],
        {"firing_to": "unknown"}, ("acknowledged", "open")),
    "a refusal for an order already open": (
        [{"firing_to": "acknowledged", "order_to": "open"}],
        {"firing_to": "refused", "order_to": "refused"}, ("acknowledged", "open")),
}


@pytest.mark.parametrize("case", sorted(UNEXPECTED))
def test_settle_is_total_an_unexpected_event_is_an_anomaly_on_record(
    tmp_path: Path, case: str
) -> None:
    before, event, kept = UNEXPECTED[case]
    store, oid = _stored_order(tmp_path)
    try:
        for n, step in enumerate(before, start=1):
            store.settle(oid, NOW + timedelta(seconds=n), **step)
        count = len(store.events())
        try:
            store.settle(oid, NOW + timedelta(seconds=9), payload={"why": "test"}, **event)
        except IllegalTransition as err:
            pytest.fail(f"{case}: settle raised IllegalTransition({err}) instead of recording "
                        "an anomaly")
        [firing] = store.firings()
        order = store.order(oid)
        assert order is not None
        assert (firing.status, order.status) == kept, case
        new = store.events()[count:]
        anomalies = [e for e in new if e.kind in ("order.anomaly", "firing.anomaly")]
        assert anomalies, f"{case}: no anomaly recorded; new events: {[e.kind for e in new]}"
        assert all(e.client_oid == oid and " -> " in e.payload["move"] for e in anomalies)
        assert not [e for e in new if e.kind not in ("order.anomaly", "firing.anomaly")], (
            f"{case}: the unexpected event moved something: {[e.kind for e in new]}")
        # The store goes on: the next legal step still works.
        store.settle(oid, NOW + timedelta(seconds=10), exchange_id="x-1")
        assert store.order(oid).exchange_id == "x-1"  # type: ignore[union-attr]
    finally:
        store.close()


# ======================================================= item 4: totality, the running watcher


async def test_cancel_all_reaching_an_order_the_store_holds_not_placed_never_stops_the_watcher(
    tmp_path: Path,
) -> None:
    """The soak's crash loop: an order the store holds proven not placed (but which the
    exchange has) is cancelled by a rule's `cancel all`; the exchange confirms the cancel.
    The watcher records an anomaly and keeps trading: a later rule's order goes out, once."""
    rules = ("rule rest on BTC-USDT:\n    when bid < 60000\n    place limit buy 0.001 at 50000\n"
             "\nrule sweep on BTC-USDT:\n    when bid < 58500\n    cancel all\n"
             "\nrule later on BTC-USDT:\n    when bid < 58000\n"
             "    place limit buy 0.001 at 50100\n")
    async with rig(tmp_path, rules) as r:
        await until(lambda: len(r.orders()) == 1 and not r.watcher.pending)
        [oid] = _oids_sent(r)
        await until(lambda: r.store().order(oid).status == "open")  # type: ignore[union-attr]
        _force(r.db, oid, firing="not_placed", order="not_placed")

        r.push("58400", "58410", trade="58405")  # sweep: cancel all reaches `rest`'s order
        await until(lambda: not r.orders()[0].active, 5)  # the exchange cancelled it
        await settle(1.0)  # its canceled event and the cancel's confirmation come back
        r.push("57900", "57910", trade="57905")  # later fires: the watcher still trades
        await until(lambda: len(r.orders()) == 2, 5)
        await settle(1.0)
        sent = _oids_sent(r)
        assert len(sent) == len(set(sent)) == 2, sent
        # The store held another status than the order's table: recorded, never a crash.
        anomalies = _events(r.db, "order.anomaly")
        moves = [e.payload["move"] for e in anomalies if e.client_oid == oid]
        assert moves and all(m.startswith("not_placed -> ") for m in moves), (
            [(e.client_oid, e.payload) for e in anomalies])
        assert not r.watcher.failed, r.watcher.stop_reason


async def test_a_firing_the_store_holds_acknowledged_is_adopted_not_sent_again(
    tmp_path: Path,
) -> None:
    """The new owner of item 1 died on ACKNOWLEDGED -> SENT: its firing, unknown to it and
    proven not placed, was acknowledged in the store by the watcher before it. Deciding it
    again must adopt the store's record (`firing.anomaly`), send nothing, and go on."""
    clock = moved_clock()
    rules = ("rule dip on BTC-USDT:\n    when bid < 58000\n    place limit buy 0.001 at 57000\n"
             "\nrule other on BTC-USDT:\n    when bid < 57000\n"
             "    place limit buy 0.001 at 56000\n")
    async with rig(tmp_path, rules, clock=clock) as r:
        await r.admin("faults", {"http_5xx": True})  # the POST gets a 503: outcome unknown
        r.push("57900", "57910")
        await until(lambda: any(p.unknown for p in r.watcher.pending.values()), 5)
        await r.admin("faults", {"http_5xx": False})
        store = r.store()
        [firing] = store.firings()
        store.close()
        oid = str(firing.client_oid)
        _force(r.db, oid, firing="acknowledged", order="open")
        clock.advance(2_500)  # past the deadline: two lookups prove it absent
        await until(lambda: not r.watcher.pending, 10)
        await settle(1.0)  # the firing decided again (its condition still holds), and adopted
        assert r.orders() == [], f"sent: {_oids_sent(r)}"
        adopted = [e for e in _events(r.db, "firing.anomaly", "dip")]
        assert adopted, [e.kind for e in _events(r.db)]
        assert any("ACKNOWLEDGED -> SENT" in str(e.payload.get("move", "")).upper()
                   for e in adopted), [e.payload for e in adopted]
        r.push("56900", "56910")  # the watcher still trades
        await until(lambda: len(r.orders()) == 1, 5)
        await settle(0.5)
        sent = _oids_sent(r)
        assert len(sent) == 1 and sent[0] != oid, sent


# ====================================== item 7 (a): the per-minute limit defers, never blocks


async def test_max_firings_per_minute_defers_the_firings_past_it_and_never_blocks_the_rule(
    tmp_path: Path,
) -> None:
    clock = moved_clock()
    start = clock.current_ms
    rules = ("rule burst on BTC-USDT:\n    when bid < 58000\n    place limit buy 0.001 at 50000\n"
             "    repeat every 1s\n")

    async def again(low: str) -> None:  # false, then true again once the cooldown passed
        r.push("58100", "58110")
        await settle(0.3)
        r.push(low, str(int(low) + 10))

    def never_blocked() -> None:
        blocked = _events(r.db, "firing.blocked", "burst")
        assert r.watcher.states["burst"].status != "blocked" and not blocked, (
            f"the rule was blocked: {[e.payload for e in blocked]}")

    async with rig(tmp_path, rules, clock=clock, risk={"max_firings_per_minute": 2}) as r:
        r.push("57900", "57910")  # firing 1 at start + 0 s
        await until(lambda: len(r.orders()) == 1)
        clock.advance(5_000)
        await again("57800")  # firing 2 at start + 5 s
        await until(lambda: len(r.orders()) == 2)
        clock.advance(1_200)
        await again("57700")  # the 3rd within the minute: deferred to start + 60 s
        await settle(1.0)
        deferred = _events(r.db, "firing.deferred", "burst")
        never_blocked()
        assert len(deferred) == 1 and len(r.orders()) == 2, (
            f"deferred events: {[e.payload for e in deferred]}; orders: {len(r.orders())}")

        clock.current_ms = start + 60_100  # the window allows one more: the 3rd fires
        await until(lambda: len(r.orders()) == 3, 5)
        clock.advance(1_500)
        await again("57600")  # the 4th at start + 61.6 s: firing 2 (+5 s) is still in it
        await settle(1.0)
        never_blocked()
        assert len(_events(r.db, "firing.deferred", "burst")) == 2 and len(r.orders()) == 3
        clock.current_ms = start + 65_100  # firing 2 leaves the window: the 4th fires
        await until(lambda: len(r.orders()) == 4, 5)
        await settle(0.5)
        never_blocked()
        created = sorted(o.created_at - start for o in r.orders())
        assert created[2] >= 60_000 and created[3] >= 65_000, created
        sent = _oids_sent(r)
        assert len(set(sent)) == 4, sent
        store = r.store()
        firings = store.firings()
        store.close()
        assert [(f.number, f.status) for f in firings] == [
            (n, "acknowledged") for n in (1, 2, 3, 4)], [(f.number, f.status) for f in firings]


# ===================================== item 7 (b): an inverted bracket refused before its entry

# The bracket's legs are on the wrong sides of the fill: the take-profit sells below it, the
# stop-loss sits above it. Written with market values (bid / ask < 1) that lint cannot judge.
INVERTED = ("rule entry on BTC-USDT:\n    when ask < 60000\n    place limit buy 0.001 at ask\n"
            "\nrule exit on BTC-USDT:\n    after entry filled\n"
            "    place limit sell filled_size at fill_price * bid / ask\n"
            "    stop-loss at fill_price * ask / bid\n")


async def test_an_inverted_bracket_blocks_its_entry_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, INVERTED) as r:
        await until(lambda: bool(_events(r.db, "firing.blocked", "entry"))
                    or bool(r.orders()), 10)
        await settle(0.5)
        seen = [(o.req.side, o.req.price, o.status) for o in r.orders()]
        assert r.orders() == [], (
            f"the entry reached the exchange: {seen}"
            f"; blocked: {[e.identity for e in _events(r.db, 'firing.blocked')]}")
        assert r.watcher.states["entry"].status == "blocked"
        [blocked] = _events(r.db, "firing.blocked", "entry")
        reason = blocked.payload["reason"]
        assert "inverted" in reason and "exit" in reason, reason
        store = r.store()
        firings = store.firings()
        orders = store.orders()
        store.close()
        assert [(f.identity, f.status) for f in firings] == [("entry", "blocked")]
        assert orders == []


def test_lint_reports_a_bracket_inverted_in_its_text_as_an_error(tmp_path: Path) -> None:
    path = tmp_path / "inverted.rules"
    path.write_text("rule entry on BTC-USDT:\n    when ask < 60000\n"
                    "    place limit buy 0.001 at ask\n\nrule exit on BTC-USDT:\n"
                    "    after entry filled\n"
                    "    place limit sell filled_size at fill_price - 2%\n"
                    "    stop-loss at fill_price + 2%\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "rules_engine", "lint", str(path)],
                          capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
    out = done.stdout + done.stderr
    assert done.returncode == 1, f"exit {done.returncode}:\n{out}"
    assert "inverted" in out.lower() and f"{path.name}:8" in out, out
    assert "Traceback" not in out


# ================================================== item 7 (c): re-armed and fired in one step


async def test_a_rule_that_re_arms_and_fires_in_the_same_step_records_the_rearm(
    tmp_path: Path,
) -> None:
    clock = moved_clock()
    rules = ("rule again on BTC-USDT:\n    when bid < 58000\n    place limit buy 0.001 at 50000\n"
             "    repeat every 1s\n")
    async with rig(tmp_path, rules, clock=clock) as r:
        r.push("57900", "57910")
        await until(lambda: len(r.orders()) == 1)
        r.push("58100", "58110")  # false during the cooldown
        await settle(0.3)
        r.push("57800", "57810")  # true again, still cooling: nothing yet
        await settle(0.3)
        assert len(r.orders()) == 1
        clock.advance(1_300)  # the cooldown ends with the condition true: re-arm and fire
        r.push("57790", "57800")
        await until(lambda: len(r.orders()) == 2, 5)
        await settle(0.3)
        steps = [(e.kind, e.at) for e in _events(r.db, identity="again")
                 if e.kind in ("rule.rearm", "fired")]
        kinds = sorted(kind for kind, _ in steps)
        assert kinds == ["fired", "fired", "rule.rearm"], steps
        # Recorded by the step that fired the second time (one commit, one time).
        [rearm_at] = [at for kind, at in steps if kind == "rule.rearm"]
        assert rearm_at == max(at for kind, at in steps if kind == "fired"), steps
