"""What a run decided, sent and filled, as records: the watcher's output lines (its `emit`)
and the sandbox engine's fills. The backtest records its run with it, and the parity test
records a live watcher against a served sandbox with it, so both are read the same way.

    decisions  the `fired`, `blocked`, `refused` and `rule.*` lines, and what the engine
               decides of the stops it holds and of OCO legs (`stop_loss.*`, `exit.due`,
               `oco.leg_*`), with the watcher's time
    orders     by client oid: rule, firing, side, type, price, size (and funds, stop price,
               trail); an engine-held stop-loss (a bracket's or a guard's) as an order of
               its own, on its own side
    fills      the engine's fills, each with the rule and firing of the order it filled
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rules_engine.sandbox.engine import Engine

__all__ = ["Recorder"]


class Recorder:
    def __init__(self, now: Callable[[], datetime]) -> None:
        self.now = now
        self.decisions: list[dict[str, Any]] = []
        self.orders: dict[str, dict[str, Any]] = {}
        self.fills: list[dict[str, Any]] = []
        self.seen_fill = 0

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        """A line of the watcher's output (its `emit` port)."""
        if not (kind in ("fired", "blocked", "refused", "exit.due")
                or kind.startswith(("rule.", "stop_loss.", "oco.leg_"))):
            return
        now = self.now()
        record = {"time": now.isoformat(), "kind": kind, **data}
        if "rule" not in record:  # an event of an order (`exit.due`): its rule, as the rest
            record["rule"] = self.orders.get(str(data.get("client_oid")), {}).get("rule", "?")
        self.decisions.append(record)
        if kind != "fired":
            return
        order = data.get("order", {})
        if "client_oid" in data:
            self.orders[data["client_oid"]] = {
                "time": now.isoformat(), "rule": data["rule"], "firing": data["firing"],
                **{k: order.get(k) for k in ("side", "type", "price", "size", "funds",
                                             "stop_price", "trail")}}
        # A held stop: a bracket's (on its own side, which its take-profit shares), or a
        # guard's (a firing with no order of its own).
        leg = order.get("stop_loss") or data.get("guard")
        if isinstance(leg, dict) and leg.get("client_oid"):
            self.orders[leg["client_oid"]] = {
                "time": now.isoformat(), "rule": data["rule"], "firing": data["firing"],
                "side": leg.get("side") or order.get("side"), "type": "stop-loss",
                "price": leg.get("trigger"), "size": leg.get("size") or order.get("size")}

    def take_fills(self, engine: Engine) -> None:
        """The engine's fills since the last call, mapped to the rule whose order made them
        (read as they happen: the sandbox forgets fills after a week, as KuCoin does)."""
        fills = engine.fills
        if not fills or fills[-1].seq <= self.seen_fill:
            return
        new = []
        for fill in reversed(fills):
            if fill.seq <= self.seen_fill:
                break
            new.append(fill)
        self.seen_fill = fills[-1].seq
        for fill in reversed(new):
            order = engine.orders.get(fill.order_id) or engine.stop_orders.get(fill.order_id)
            oid = order.req.client_oid if order is not None else ""
            placed = self.orders.get(oid, {})
            self.fills.append({
                "time": datetime.fromtimestamp(fill.created_at / 1000, UTC).isoformat(),
                "client_oid": oid, "rule": placed.get("rule", "?"),
                "firing": placed.get("firing"), "symbol": fill.symbol, "side": fill.side,
                "price": fill.price, "size": fill.size, "fee": fill.fee,
                "liquidity": fill.liquidity})

    def outcomes(self, engine: Engine) -> dict[str, tuple[str, str, Decimal]]:
        """Each recorded order's end on the sandbox: (status, why it is done, size filled),
        by client oid; an engine-held order never sent is not there. A triggered stop order
        ends as the order its trigger placed (same id and client oid). The two legs of an
        OCO order share its client oid: each has its own end, keyed `OID limit leg` and
        `OID stop leg`."""
        out: dict[str, tuple[str, str, Decimal]] = {}
        for order in [*engine.stop_orders.values(), *engine.orders.values()]:
            oid = order.req.client_oid
            if oid in self.orders:
                stop = order.req.stop is not None or order.stop_triggered
                key = f"{oid} {'stop' if stop else 'limit'} leg" if order.oco_id else oid
                out[key] = (order.status, order.done_reason, order.deal_size)
        return out
