"""What `status` explains from the store alone: the kill switch, positions and P&L from the
fills, and why a rule has not fired yet as far as its stored state tells. Read-only; plain
JSON-ready values (decimals and times as text).

Positions are per rule and symbol, from that rule's orders' fills: buys add to the position,
sells take from it; the realised P&L is counted against the average cost of what is held
(a sale beyond the position opens a short the same way), before fees, which are listed apart
by currency. The unrealised P&L needs a price: the latest the store holds for the symbol (a
fill, or a firing's recorded inputs), with where it comes from; else it is unknown.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from rules_engine.store._repo import Store
from rules_engine.store._schema import Fill, Firing, Meta, Order, RuleState, RuleVersion

__all__ = ["halt_state", "last_prices", "live_why", "not_yet", "positions", "rule_story",
           "save_live_why"]

LIVE_WHY_KEY = "live_why"
LIVE_WHY_RULES = 200  # at most this many rules' rows are kept (the first by name)

_PRICE_INPUTS = ("last", "mid", "bid", "ask")


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f") if value else "0"


def halt_state(store: Store) -> dict[str, Any] | None:
    """The kill switch as `rules-engine halt` left it: who threw it, when, whether a watcher
    acknowledged it; None when it is off."""
    halt = store.halt()
    if halt is None:
        return None
    return {"since": halt.get("at"), "by": halt.get("by"), "all": bool(halt.get("all")),
            "acknowledged": store.halt_acknowledged() == halt.get("request")}


def last_prices(store: Store) -> dict[str, dict[str, str]]:
    """Per symbol the latest price the store holds: a fill's, or a value a firing recorded
    (`SYMBOL last`, `mid`, `bid`, `ask`), whichever is newer."""
    best: dict[str, tuple[datetime, Decimal, str]] = {}

    def offer(symbol: str, at: datetime, price: Decimal, source: str) -> None:
        if symbol not in best or at > best[symbol][0]:
            best[symbol] = (at, price, source)

    with store.session() as session:
        for fill, symbol in session.execute(
                select(Fill, Order.symbol).join(Order, Order.client_oid == Fill.client_oid)):
            offer(symbol, fill.time, fill.price, "a fill")
        for firing in session.scalars(select(Firing)):
            values = (firing.inputs or {}).get("values") or {}
            for name, value in values.items():
                symbol, _, field = str(name).rpartition(" ")
                if field in _PRICE_INPUTS and symbol:
                    try:
                        offer(symbol, firing.created_at, Decimal(str(value)),
                              f"the {field} a firing saw")
                    except ArithmeticError:
                        continue
                    break
    return {s: {"price": _text(p) or "0", "at": at.isoformat(timespec="seconds"),
                "source": source} for s, (at, p, source) in best.items()}


def positions(store: Store) -> list[dict[str, Any]]:
    """Per rule and symbol: position, average cost, realised and unrealised P&L, fees."""
    with store.session() as session:
        rows = session.execute(
            select(Fill, Order.symbol, Order.side, Firing.identity)
            .join(Order, Order.client_oid == Fill.client_oid)
            .outerjoin(Firing, Firing.client_oid == Fill.client_oid)
            .order_by(Fill.time, Fill.trade_id)
        ).all()
    books: dict[tuple[str, str], dict[str, Any]] = {}
    for fill, symbol, side, identity in rows:
        key = (identity or "(adopted)", symbol)
        book = books.setdefault(key, {"qty": Decimal(0), "cost": Decimal(0),
                                      "realised": Decimal(0), "fees": defaultdict(Decimal),
                                      "fills": 0})
        signed = fill.size if side == "buy" else -fill.size
        qty, cost = book["qty"], book["cost"]
        if qty == 0 or (qty > 0) == (signed > 0):  # opening or adding
            book["qty"], book["cost"] = qty + signed, cost + signed * fill.price
        else:  # reducing, perhaps through zero
            average = cost / qty
            closed = min(abs(signed), abs(qty))
            direction = 1 if qty > 0 else -1
            book["realised"] += (fill.price - average) * closed * direction
            rest = abs(signed) - closed
            book["qty"] = qty + signed
            book["cost"] = (cost - average * closed * direction if rest == 0
                            else (rest if signed > 0 else -rest) * fill.price)
        if fill.fee:
            book["fees"][fill.fee_currency or "?"] += fill.fee
        book["fills"] += 1
    prices = last_prices(store)
    out = []
    for (rule, symbol), book in sorted(books.items()):
        qty, cost = book["qty"], book["cost"]
        average = cost / qty if qty else None
        price = prices.get(symbol)
        unrealised: str | None
        if qty == 0:
            unrealised = "0"
        elif price is None or average is None:
            unrealised = None
        else:
            unrealised = _text((Decimal(price["price"]) - average) * qty)
        out.append({
            "rule": rule, "symbol": symbol, "position": _text(qty),
            "average_cost": _text(average.quantize(Decimal("1e-8"))) if average else None,
            "realised": _text(book["realised"]), "unrealised": unrealised,
            "price": price, "fees": {c: _text(v) for c, v in sorted(book["fees"].items())},
            "fills": book["fills"],
        })
    return out


def condition_lines(source: str | None) -> list[str]:
    """The `when` and `after` parts of a rule as written."""
    lines = []
    for line in (source or "").splitlines():
        text = line.strip()
        at = text.find("when ")
        if text.startswith(("when ", "after ")) or (at >= 0 and not text.startswith("#")):
            text = text[text.find("after ") if text.startswith("after ") else at:]
            for stop in (" place ", " cancel ", " notify "):
                if stop in text:
                    text = text[:text.index(stop)]
            lines.append(text)
    return lines


def _waits(status: str, state: dict[str, Any], reason: str | None) -> str:
    """What a rule's stored state says it waits for."""
    if status == "blocked":
        return f"blocked: {reason or 'unknown'}; fix the cause, then `rules-engine unblock`"
    if status == "waiting":
        arms = state.get("arms") or []
        return ("waits for the rule it follows (`after`) to act" if not arms
                else f"armed by its `after` rule ({len(arms)} event(s) pending)")
    if status == "cooling":
        return f"cooling: may fire again from {state.get('rearm_at') or 'its repeat interval'}"
    if state.get("true_since"):
        return (f"its condition has held since {state['true_since']}: it fires when it has "
                "held for the rule's `for` duration")
    if state.get("seen_false") is False:
        return "re-arms once its condition has been false again"
    if status == "armed":
        return "waits for its condition to hold on fresh market data"
    return status


def not_yet(store: Store) -> list[dict[str, Any]]:
    """Each rule that has not fired: its condition as written, its state and what it waits
    for. The live values of its condition are the running watcher's (its view, `dashboard`)."""
    with store.session() as session:
        sources: dict[str, str | None] = {}
        for version in session.scalars(select(RuleVersion).order_by(RuleVersion.version)):
            sources[version.identity] = version.source
        states = list(session.scalars(
            select(RuleState).where(RuleState.firings == 0).order_by(RuleState.identity)))
    return [{"rule": s.identity, "status": s.status, "condition": condition_lines(
                sources.get(s.identity)), "waits_for": _waits(s.status, s.state or {}, s.reason),
             "since": s.updated_at.isoformat(timespec="seconds")} for s in states]


def rule_story(store: Store, name: str) -> dict[str, Any] | None:
    """`why NAME`: a rule's text, state, every firing with its order, and its latest events."""
    from rules_engine.store._record import audit

    with store.session() as session:
        state = session.get(RuleState, name)
        if state is None:
            return None
        version = session.scalars(select(RuleVersion).where(RuleVersion.identity == name)
                                  .order_by(RuleVersion.version.desc()).limit(1)).first()
        firings = []
        for firing in session.scalars(select(Firing).where(Firing.identity == name)
                                      .order_by(Firing.number)):
            order = session.get(Order, firing.client_oid) if firing.client_oid else None
            firings.append({
                "number": firing.number, "version": firing.version, "status": firing.status,
                "at": firing.created_at.isoformat(timespec="milliseconds"),
                "client_oid": firing.client_oid,
                "order": None if order is None else {
                    "symbol": order.symbol, "side": order.side, "type": order.order_type,
                    "price": _text(order.price), "size": _text(order.size),
                    "status": order.status, "filled": _text(order.filled_size)},
            })
        engine = session.get(Meta, "engine_id")
    events = audit(store, rule=name)[-30:]
    return {
        "rule": name, "status": state.status, "firings": state.firings, "reason": state.reason,
        "version": state.version, "path": version.path if version else None,
        "source": version.source if version else None,
        "waits_for": _waits(state.status, state.state or {}, state.reason),
        "history": firings, "events": events, "engine_id": engine.value if engine else None,
    }


def save_live_why(store: Store, rows: list[dict[str, Any]], now: datetime) -> None:
    """The running watcher's why-not-yet rows (`runtime/_why.py`: each condition's live
    values, what data is lacking, the next time a timed rule can decide), kept in the meta
    table for `status`. One small row, replaced each time; never part of the record."""
    value = json.dumps({"at": now.isoformat(timespec="seconds"),
                        "rules": rows[:LIVE_WHY_RULES]}, default=str)
    with store.session() as session, session.begin():
        row = session.get(Meta, LIVE_WHY_KEY)
        if row is None:
            session.add(Meta(key=LIVE_WHY_KEY, value=value))
        else:
            row.value = value


def live_why(store: Store) -> dict[str, Any] | None:
    """What `save_live_why` kept last: `{"at": ..., "rules": [...]}`, or None."""
    with store.session() as session:
        row = session.get(Meta, LIVE_WHY_KEY)
        value = None if row is None else row.value
    if value is None:
        return None
    try:
        document = json.loads(value)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None
