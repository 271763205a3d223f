"""`--state FILE`: orders, balances, sequences and the instance id survive a restart.

The file is a JSON snapshot written atomically (a temporary file, fsync'd, then a rename) on
shutdown, periodically and by the admin `save` action; every change acknowledged in between is
in the journal beside it (`journal.py`), whose lines `delta` builds and `restore` replays over
the snapshot. Books hold only the account's resting orders; the feed's liquidity is rebuilt by
the feed, and each book's sequence continues from where it stopped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rules_engine.sandbox.deadman import Deadman
from rules_engine.sandbox.engine import (
    BalanceEvent,
    Engine,
    Event,
    Fill,
    LedgerEntry,
    Oco,
    Order,
    OrderEvent,
    OrderRequest,
    StopEvent,
    fmt,
)
from rules_engine.sandbox.journal import fsync_dir

if TYPE_CHECKING:
    from rules_engine.sandbox.state import SandboxState

__all__ = ["delta", "load", "restore", "save"]

UNCLEAN_JUMP = 1_000_000  # ids and sequences skipped after a restart that was not clean
_DECIMAL_REQ = ("price", "size", "funds", "visible_size", "stop_price")
_DECIMAL_ORDER = ("deal_size", "deal_funds", "fee", "canceled_size", "canceled_funds", "hold")
_DECIMAL_FILL = ("price", "size", "funds", "fee", "fee_rate")
_DECIMAL_LEDGER = ("change", "fee", "balance")


def _order_json(order: Order) -> dict[str, Any]:
    req = {k: (fmt(v) if isinstance(v, Decimal) else v) for k, v in asdict(order.req).items()}
    row: dict[str, Any] = {
        "id": order.id, "req": req, "created_at": order.created_at,
        "updated_at": order.updated_at, "status": order.status, "in_book": order.in_book,
        "done_reason": order.done_reason, "stop_triggered": order.stop_triggered,
        "stop_status": order.stop_status, "oco_id": order.oco_id,
    }
    for name in _DECIMAL_ORDER:
        row[name] = fmt(getattr(order, name))
    return row


def _order_from(row: dict[str, Any]) -> Order:
    req_raw = dict(row["req"])
    for name in _DECIMAL_REQ:
        if req_raw.get(name) is not None:
            req_raw[name] = Decimal(req_raw[name])
    order = Order(row["id"], OrderRequest(**req_raw), row["created_at"], row["updated_at"],
                  status=row["status"], in_book=row["in_book"], done_reason=row["done_reason"],
                  stop_triggered=row["stop_triggered"], stop_status=row["stop_status"],
                  oco_id=row.get("oco_id", ""))
    for name in _DECIMAL_ORDER:
        setattr(order, name, Decimal(row[name]))
    return order


_DECIMAL_OCO = ("price", "stop_price", "limit_price", "size")


def _oco_json(oco: Oco) -> dict[str, Any]:
    return {k: (fmt(v) if isinstance(v, Decimal) else v) for k, v in asdict(oco).items()}


def _oco_from(row: dict[str, Any]) -> Oco:
    values = dict(row)
    for name in _DECIMAL_OCO:
        values[name] = Decimal(values[name])
    return Oco(**values)


def _fill_json(fill: Fill) -> dict[str, Any]:
    return {k: (fmt(v) if isinstance(v, Decimal) else v) for k, v in asdict(fill).items()}


def _fill_from(row: dict[str, Any]) -> Fill:
    values = dict(row)
    for name in _DECIMAL_FILL:
        values[name] = Decimal(values[name])
    return Fill(**values)


def _ledger_json(entry: LedgerEntry) -> dict[str, Any]:
    return {k: (fmt(v) if isinstance(v, Decimal) else v) for k, v in asdict(entry).items()}


def _ledger_from(row: dict[str, Any]) -> LedgerEntry:
    values = dict(row)
    for name in _DECIMAL_LEDGER:
        values[name] = Decimal(values[name])
    return LedgerEntry(**values)


def save(state: SandboxState, path: Path, journal_n: int = 0, *, clean: bool = False) -> None:
    """Write the whole state; `journal_n` is the last journal line it includes, `clean` says
    the sandbox is stopping (nothing happens after this snapshot)."""
    engine = state.engine
    document = {
        "version": 1,
        "journal_n": journal_n,
        "clean": clean,
        "instance_id": state.instance_id,
        "counter": engine.counter,
        "trade_counter": engine.trade_counter,
        "fill_counter": engine.fill_counter,
        "totals": {c: fmt(v) for c, v in engine.account.totals.items()},
        "holds": {c: fmt(v) for c, v in engine.account.holds.items()},
        "sequences": {s: b.sequence for s, b in engine.books.items()},
        "orders": [_order_json(o) for o in engine.orders.values()],
        "stop_orders": [_order_json(o) for o in engine.stop_orders.values()],
        "ocos": [_oco_json(o) for o in engine.ocos.values()],
        "fills": [_fill_json(f) for f in engine.fills],
        "ledger_counter": engine.ledger_counter,
        "ledger": [_ledger_json(e) for e in engine.ledger],
        "deadman": None if state.deadman is None else state.deadman.as_json(),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(json.dumps(document))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def delta(engine: Engine, events: Iterable[Event], fills_from: int, ledger_from: int
          ) -> dict[str, Any] | None:
    """The journal line for one operation's events: the full rows of the orders it touched,
    its fills (sequence above `fills_from`) and ledger entries (id above `ledger_from`), the
    new balances of the currencies it moved and the id counters. None when the events touch
    nothing of the account (market data)."""
    order_ids: dict[str, None] = {}
    currencies: dict[str, None] = {}
    for event in events:
        if isinstance(event, (OrderEvent, StopEvent)):
            order_ids[event.order.id] = None
        elif isinstance(event, BalanceEvent):
            currencies[event.currency] = None
            order_ids[event.order_id] = None
    if not order_ids and not currencies:
        return None
    oco_ids: dict[str, None] = {}
    for order_id in order_ids:
        leg = engine.orders.get(order_id) or engine.stop_orders.get(order_id)
        if leg is not None and leg.oco_id:
            oco_ids[leg.oco_id] = None
    fills: list[dict[str, Any]] = []
    for fill in reversed(engine.fills):
        if fill.seq <= fills_from:
            break
        fills.append(_fill_json(fill))
    fills.reverse()
    ledger: list[dict[str, Any]] = []
    for entry in reversed(engine.ledger):
        if entry.id <= ledger_from:
            break
        ledger.append(_ledger_json(entry))
    ledger.reverse()
    account = engine.account
    return {
        "orders": [_order_json(engine.orders[i]) for i in order_ids if i in engine.orders],
        "stops": [_order_json(engine.stop_orders[i]) for i in order_ids
                  if i in engine.stop_orders],
        "ocos": [_oco_json(engine.ocos[o]) for o in oco_ids if o in engine.ocos],
        "fills": fills,
        "ledger": ledger,
        "totals": {c: fmt(account.total(c)) for c in currencies},
        "holds": {c: fmt(account.held(c)) for c in currencies},
        "counter": engine.counter, "trade_counter": engine.trade_counter,
        "fill_counter": engine.fill_counter, "ledger_counter": engine.ledger_counter,
    }


def load(path: Path) -> dict[str, Any]:
    try:
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a sandbox state file ({exc}); move it away to start "
                         "afresh") from None
    if not isinstance(document, dict) or document.get("version") != 1:
        raise ValueError(f"{path}: not a sandbox state file of version 1")
    return document


def empty_document(instance_id: str) -> dict[str, Any]:
    """What a state file holds before anything happened (a journal may still follow)."""
    return {"version": 1, "journal_n": 0, "instance_id": instance_id, "counter": 0,
            "trade_counter": 0, "fill_counter": 0, "totals": None, "holds": None,
            "sequences": {}, "orders": [], "stop_orders": [], "ocos": [], "fills": [],
            "ledger_counter": 0, "ledger": []}


def restore(state: SandboxState, document: dict[str, Any],
            journal: Iterable[dict[str, Any]] = ()) -> int:
    """Put saved orders, balances and sequences back, then replay the journal lines the
    snapshot does not hold; resting orders rejoin their books. Returns the last line number."""
    engine = state.engine
    last_n: int = document.get("journal_n", 0)
    counters = {name: document.get(name, 0)
                for name in ("counter", "trade_counter", "fill_counter", "ledger_counter")}
    if document["totals"] is not None:
        engine.account.totals = {c: Decimal(v) for c, v in document["totals"].items()}
        engine.account.holds = {c: Decimal(v) for c, v in document["holds"].items()}
    orders = {row["id"]: row for row in document["orders"]}
    stops = {row["id"]: row for row in document["stop_orders"]}
    ocos = {row["id"]: row for row in document.get("ocos", ())}
    fills = list(document["fills"])
    ledger = list(document.get("ledger", ()))
    armed = document.get("deadman")
    for record in journal:
        if record["n"] <= last_n:
            continue  # already in the snapshot (a crash between its rename and the truncate)
        last_n = record["n"]
        if "deadman" in record:
            armed = record["deadman"]
            continue
        for row in record["orders"]:
            orders[row["id"]] = row
        for row in record["stops"]:
            stops[row["id"]] = row
        for row in record.get("ocos", ()):
            ocos[row["id"]] = row
        top = fills[-1]["seq"] if fills else 0
        fills.extend(row for row in record["fills"] if row["seq"] > top)
        top = ledger[-1]["id"] if ledger else 0
        ledger.extend(row for row in record.get("ledger", ()) if row["id"] > top)
        for currency, value in record["totals"].items():
            engine.account.totals[currency] = Decimal(value)
        for currency, value in record["holds"].items():
            engine.account.holds[currency] = Decimal(value)
        for name, value in counters.items():
            counters[name] = max(value, record.get(name, 0))
    engine.counter = counters["counter"]
    # After a crash, the market's own prints and book changes since the last line are lost
    # (they were never the account's); jump past any id or sequence a client may have seen.
    jump = 0 if document.get("clean", True) else UNCLEAN_JUMP
    engine.trade_counter = counters["trade_counter"] + jump
    engine.fill_counter = counters["fill_counter"]
    engine.ledger_counter = counters["ledger_counter"]
    for symbol, sequence in document["sequences"].items():
        if symbol in engine.books:
            engine.books[symbol].sequence = sequence + jump
    for row in orders.values():
        order = _order_from(row)
        engine.orders[order.id] = order
        engine.by_client_oid[order.req.client_oid] = order.id
        if order.active:
            engine.open_ids.setdefault(order.symbol, set()).add(order.id)
        if order.in_book and order.symbol in engine.books:
            side = "bids" if order.side == "buy" else "asks"
            book = engine.books[order.symbol]
            book.level(side, order.price).add(order)
            book.touch(side, order.price, order.updated_at)
    for row in stops.values():
        order = _order_from(row)
        engine.stop_orders[order.id] = order
        if order.active or order.req.client_oid not in engine.by_client_oid:
            engine.by_client_oid[order.req.client_oid] = order.id
    for row in ocos.values():
        oco = _oco_from(row)
        engine.ocos[oco.id] = oco
    engine.fills.extend(_fill_from(row) for row in fills)
    engine.ledger.extend(_ledger_from(row) for row in ledger)
    state.deadman = Deadman.from_json(armed)
    return last_n
