"""Reading the watcher's record: what `status`, `audit` and `why` show. Read-only queries
returning plain JSON-ready values (decimals and times as text)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import inspect, or_, select
from sqlalchemy.orm import Session

from rules_engine.store._repo import FINAL_ORDERS, Store
from rules_engine.store._schema import (
    Event,
    Fill,
    Firing,
    Lease,
    Meta,
    Order,
    RuleState,
    RuleVersion,
)

__all__ = ["FEED_STATES", "audit", "event_kinds", "is_current", "kind_filter",
           "last_feed_states", "status_report", "why"]

# The events that say a feed's state, by feed: the last one of each is its state now.
FEED_STATES = {"market": ("feed.live", "feed.stale", "feed.stalled"),
               "orders": ("orders_feed.live", "orders_feed.stale")}


def last_feed_states(session: Session) -> dict[str, Event | None]:
    """Each feed's last state event (None: none recorded), as `status` and /metrics read it."""
    return {feed: session.scalars(select(Event).where(Event.kind.in_(kinds))
                                  .order_by(Event.id.desc()).limit(1)).first()
            for feed, kinds in FEED_STATES.items()}

_TABLES = {"meta", "rule_versions", "rule_states", "firings", "orders", "fills", "events",
           "lease", "alembic_version"}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="milliseconds")


def _text(value: Any) -> str | None:
    return None if value is None else format(value, "f") if hasattr(value, "as_tuple") else (
        str(value))


def is_current(store: Store) -> bool:
    """The store has the watcher's tables; an older schema is brought up to date (as the
    watcher does at start: migrations only add), but a store is never created here."""
    with store.engine.connect() as connection:
        names = set(inspect(connection).get_table_names())
    if not names >= _TABLES:
        return False
    store.migrate()
    return True


_SLICES = "/slices-"  # a slice's firing identity: RULE/slices-FIRING (engine/_slices.py)


def _order_row(order: Order, owner: tuple[str, int] | None) -> dict[str, Any]:
    rule, piece = (None, None) if owner is None else owner
    if rule is not None and _SLICES in rule:  # a slice of a scaled order or a TWAP
        rule = rule.split(_SLICES, 1)[0]
    else:
        piece = None
    return {
        "client_oid": order.client_oid, "exchange_id": order.exchange_id,
        "symbol": order.symbol, "side": order.side, "type": order.order_type,
        "price": _text(order.price), "size": _text(order.size), "funds": _text(order.funds),
        "status": order.status, "filled_size": _text(order.filled_size),
        "filled_value": _text(order.filled_value), "family": order.family,
        "deadline": _iso(order.deadline), "updated_at": _iso(order.updated_at), "rule": rule,
        "slice": piece,
    }


def _waits(status: str, state: Any) -> str | None:
    """Why a cooling rule waits: a `repeat` for its pause to end and for its condition to be
    false again (a level that stays true never re-arms it), a schedule for its next slot."""
    if status != "cooling" or not isinstance(state, dict) or not state.get("rearm_at"):
        return None
    why = f"until {state['rearm_at']}"
    if state.get("seen_false") is False:
        why += " and until its condition is false again"
    return why


def status_report(store: Store, now: datetime) -> dict[str, Any]:
    with store.session() as session:
        lease = session.get(Lease, 1)
        meta = {row.key: row.value for row in session.scalars(select(Meta))}
        latest: dict[str, RuleVersion] = {}
        for version in session.scalars(select(RuleVersion).order_by(RuleVersion.version)):
            latest[version.identity] = version
        rules = []
        for state in session.scalars(select(RuleState).order_by(RuleState.identity)):
            rules.append({
                "rule": state.identity, "version": state.version, "status": state.status,
                "firings": state.firings, "reason": state.reason,
                "path": latest[state.identity].path if state.identity in latest else None,
                "updated_at": _iso(state.updated_at),
                "waits": _waits(state.status, state.state),
            })
        owners = {f.client_oid: (f.identity, f.number) for f in session.scalars(
            select(Firing).where(Firing.client_oid.is_not(None)))}
        open_orders = [
            _order_row(order, owners.get(order.client_oid))
            for order in session.scalars(
                select(Order).where(Order.status.not_in(FINAL_ORDERS | {"not_placed"}))
                .order_by(Order.updated_at)
            )
        ]
        vanished = [
            _order_row(order, owners.get(order.client_oid))
            for order in session.scalars(
                select(Order).where(Order.status == "vanished")
                .order_by(Order.updated_at.desc()).limit(50)
            )
        ]
        feeds: dict[str, str] = {}
        for key, last in last_feed_states(session).items():
            feeds[key] = "unknown" if last is None else (
                f"{last.kind.split('.')[-1]} since {_iso(last.at)}"
                + (f" ({last.payload.get('reason')})" if last.payload.get("reason") else ""))
        stopped = session.scalars(
            select(Event).where(Event.kind.in_(("trading.stopped", "watcher.starting",
                                                "recovered")))
            .order_by(Event.id.desc()).limit(1)
        ).first()
    watcher = None
    if lease is not None:
        age = (now - lease.heartbeat).total_seconds()
        watcher = {"owner": lease.owner, "alive": lease.alive, "heartbeat": _iso(lease.heartbeat),
                   "heartbeat_age_s": age}
    from rules_engine.store._explain import halt_state, last_prices, live_why, not_yet, positions

    halt = halt_state(store)
    trading = "stopped: " + str(stopped.payload.get("reason")) if (
        stopped is not None and stopped.kind == "trading.stopped") else "on"
    if halt is not None:
        trading = "halted"
    return {"watcher": watcher, "venue": meta.get("venue_instance"),
            "engine_id": meta.get("engine_id"), "feeds": feeds, "trading": trading,
            "halt": halt, "rules": rules, "open_orders": open_orders,
            "vanished_orders": vanished,
            "positions": positions(store), "prices": last_prices(store),
            "not_yet": not_yet(store), "live_not_yet": live_why(store)}


def kind_filter(kind: str) -> Any:
    """`--kind` as the log prints it or as the store keeps it: `firing.` (every kind that
    starts so), `firing` (the same), `order.filled` (exactly), or a name the watcher's log
    prints for a stored kind (`acknowledged` for `firing.acknowledged`, `filled` for
    `order.filled`): a kind matches itself, `KIND.*` and `*.KIND`."""
    stem = kind.rstrip(".")
    if kind.endswith("."):
        return Event.kind.startswith(kind)
    return or_(Event.kind == stem, Event.kind.startswith(stem + "."),
               Event.kind.endswith("." + stem))


def event_kinds(store: Store) -> list[str]:
    """Every kind of event the store holds."""
    with store.session() as session:
        return sorted(session.scalars(select(Event.kind).distinct()))


def audit(
    store: Store,
    *,
    rule: str | None = None,
    symbol: str | None = None,
    kind: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """Events, oldest first. `symbol` keeps the events of that symbol's orders, of the rules
    that traded it, and those whose payload names it."""
    with store.session() as session:
        query = select(Event).order_by(Event.id)
        if rule is not None:
            query = query.where(Event.identity == rule)
        if kind is not None:
            query = query.where(kind_filter(kind))
        if since is not None:
            query = query.where(Event.at >= since)
        if until is not None:
            query = query.where(Event.at <= until)
        events = list(session.scalars(query))
        oids: set[str] = set()
        identities: set[str] = set()
        if symbol is not None:
            oids = {o.client_oid for o in session.scalars(
                select(Order).where(Order.symbol == symbol))}
            identities = {f.identity for f in session.scalars(select(Firing))
                          if (f.intent or {}).get("symbol") == symbol}
    rows = []
    for event in events:
        if symbol is not None and not (
            event.client_oid in oids or event.identity in identities
            or (isinstance(event.payload, dict) and event.payload.get("symbol") == symbol)
        ):
            continue
        rows.append({"id": event.id, "at": _iso(event.at), "kind": event.kind,
                     "rule": event.identity, "client_oid": event.client_oid,
                     "payload": event.payload})
    return rows


def why(store: Store, key: str) -> dict[str, Any] | None:
    """An order by clientOid or exchange id: its firing, rule version, inputs, every event
    of the order and of its rule from the firing on, and its fills."""
    with store.session() as session:
        order = session.get(Order, key)
        if order is None:
            order = session.scalars(select(Order).where(Order.exchange_id == key)).first()
        if order is None:
            return None
        firing = session.scalars(
            select(Firing).where(Firing.client_oid == order.client_oid)).one_or_none()
        version = None
        if firing is not None:
            version = session.scalars(select(RuleVersion).where(
                RuleVersion.identity == firing.identity, RuleVersion.version == firing.version
            )).one_or_none()
        query = select(Event).where(Event.client_oid == order.client_oid)
        events = list(session.scalars(query.order_by(Event.id)))
        if firing is not None:
            rule_events = session.scalars(
                select(Event).where(Event.identity == firing.identity,
                                    Event.client_oid.is_(None),
                                    Event.at >= firing.created_at).order_by(Event.id).limit(50)
            )
            events = sorted([*events, *rule_events], key=lambda e: e.id)
        fills = list(session.scalars(
            select(Fill).where(Fill.client_oid == order.client_oid).order_by(Fill.time)))
    return {
        "order": _order_row(order, (firing.identity, firing.number) if firing else None),
        "firing": None if firing is None else {
            "rule": firing.identity, "number": firing.number, "version": firing.version,
            "status": firing.status, "inputs": firing.inputs, "intent": firing.intent,
            "created_at": _iso(firing.created_at),
        },
        "version": None if version is None else {
            "version": version.version, "fingerprint": version.fingerprint,
            "canonical": version.canonical, "path": version.path, "source": version.source,
        },
        "events": [{"id": e.id, "at": _iso(e.at), "kind": e.kind, "rule": e.identity,
                    "payload": e.payload} for e in events],
        "fills": [{"trade_id": f.trade_id, "price": _text(f.price), "size": _text(f.size),
                   "fee": _text(f.fee), "time": _iso(f.time)} for f in fills],
    }
