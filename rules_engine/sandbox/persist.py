"""`--state FILE`: orders, balances, sequences and the instance id survive a restart.

The file is JSON written atomically (a temporary file, then a rename) on shutdown and by the
admin `save` action. Books hold only the account's resting orders; the feed's liquidity is
rebuilt by the feed, and each book's sequence continues from where it stopped.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rules_engine.sandbox.engine import Fill, Order, OrderRequest, fmt

if TYPE_CHECKING:
    from rules_engine.sandbox.state import SandboxState

__all__ = ["load", "restore", "save"]

_DECIMAL_REQ = ("price", "size", "funds", "visible_size", "stop_price")
_DECIMAL_ORDER = ("deal_size", "deal_funds", "fee", "canceled_size", "canceled_funds", "hold")
_DECIMAL_FILL = ("price", "size", "funds", "fee", "fee_rate")


def _order_json(order: Order) -> dict[str, Any]:
    req = {k: (fmt(v) if isinstance(v, Decimal) else v) for k, v in asdict(order.req).items()}
    row: dict[str, Any] = {
        "id": order.id, "req": req, "created_at": order.created_at,
        "updated_at": order.updated_at, "status": order.status, "in_book": order.in_book,
        "done_reason": order.done_reason, "stop_triggered": order.stop_triggered,
        "stop_status": order.stop_status,
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
                  stop_triggered=row["stop_triggered"], stop_status=row["stop_status"])
    for name in _DECIMAL_ORDER:
        setattr(order, name, Decimal(row[name]))
    return order


def save(state: SandboxState, path: Path) -> None:
    engine = state.engine
    document = {
        "version": 1,
        "instance_id": state.instance_id,
        "counter": engine.counter,
        "trade_counter": engine.trade_counter,
        "fill_counter": engine.fill_counter,
        "totals": {c: fmt(v) for c, v in engine.account.totals.items()},
        "holds": {c: fmt(v) for c, v in engine.account.holds.items()},
        "sequences": {s: b.sequence for s, b in engine.books.items()},
        "orders": [_order_json(o) for o in engine.orders.values()],
        "stop_orders": [_order_json(o) for o in engine.stop_orders.values()],
        "fills": [
            {k: (fmt(v) if isinstance(v, Decimal) else v) for k, v in asdict(f).items()}
            for f in engine.fills
        ],
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(document), encoding="utf-8")
    os.replace(tmp, path)


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if document.get("version") != 1:
        raise ValueError(f"{path}: not a sandbox state file of version 1")
    return document


def restore(state: SandboxState, document: dict[str, Any]) -> None:
    """Put saved orders, balances and sequences back; resting orders rejoin their books."""
    engine = state.engine
    engine.counter = document["counter"]
    engine.trade_counter = document["trade_counter"]
    engine.fill_counter = document["fill_counter"]
    engine.account.totals = {c: Decimal(v) for c, v in document["totals"].items()}
    engine.account.holds = {c: Decimal(v) for c, v in document["holds"].items()}
    for symbol, sequence in document["sequences"].items():
        if symbol in engine.books:
            engine.books[symbol].sequence = sequence
    for row in document["orders"]:
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
    for row in document["stop_orders"]:
        order = _order_from(row)
        engine.stop_orders[order.id] = order
        engine.by_client_oid[order.req.client_oid] = order.id
    for row in document["fills"]:
        values = dict(row)
        for name in _DECIMAL_FILL:
            values[name] = Decimal(values[name])
        engine.fills.append(Fill(**values))
