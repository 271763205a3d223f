"""The firing protocol's decisions, as pure functions (the brief's "firing protocol").

* `order_body`: the exact KuCoin order a firing sends. HF orders carry `clientTimestamp` and
  `allowMaxTimeWindow`, so a request stuck in flight is refused by KuCoin's gateway once the
  window has passed; the window is judged in server time, and the deadline after which the
  order can no longer appear is the server time at sending plus the window.
* `resolve_unknown`: what the lookups by clientOid of an order of unknown outcome prove.
  Found means adopted. "Not found" counts only once the deadline has passed and two lookups
  made after it agree; a lookup that failed proves nothing. Without a deadline (legacy or
  stop orders) an order never found stays unknown until the exchange shows it or a person
  settles it with `rules-engine resolve`: it is never sent again on a guess.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from rules_engine.engine._orders import OrderIntent

__all__ = ["Lookup", "Resolution", "deadline", "order_body", "resolve_unknown"]

DEFAULT_WINDOW_MS = 10_000


def order_body(
    intent: OrderIntent,
    client_oid: str,
    *,
    family: str,
    server_ms: int,
    window_ms: int = DEFAULT_WINDOW_MS,
) -> dict[str, Any]:
    """KuCoin's order fields for a resolved intent (decimals as strings, as KuCoin wants).
    A stop order goes to the stop-order endpoint (`stop` loss for a sell: it triggers when
    last <= stopPrice; entry for a buy), which has no deadline window: a stop-market order,
    or with a limit price (`price`) a stop-limit, which rests as a limit order once
    triggered."""
    if intent.order_type == "stop":
        return _stop_body(intent, client_oid)
    if intent.order_type not in ("market", "limit"):
        raise ValueError(f"{intent.order_type} orders are not sent through the order endpoint")
    body: dict[str, Any] = {
        "clientOid": client_oid,
        "symbol": intent.symbol,
        "side": intent.side,
        "type": intent.order_type,
    }
    if intent.order_type == "limit":
        body["price"] = format(intent.price, "f")
        body["size"] = format(intent.size, "f")
        body["timeInForce"] = intent.time_in_force
        if intent.post_only:
            body["postOnly"] = True
        if intent.hidden:
            body["hidden"] = True
        if intent.visible_size is not None:
            body["iceberg"] = True
            body["visibleSize"] = format(intent.visible_size, "f")
    elif intent.funds is not None:
        body["funds"] = format(intent.funds, "f")
    else:
        body["size"] = format(intent.size, "f")
    if family == "hf":
        body["clientTimestamp"] = server_ms
        body["allowMaxTimeWindow"] = window_ms
    return body


def _stop_body(intent: OrderIntent, client_oid: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "clientOid": client_oid,
        "symbol": intent.symbol,
        "side": intent.side,
        "type": "market" if intent.price is None else "limit",
        "stop": "loss" if intent.side == "sell" else "entry",
        "stopPrice": format(intent.stop_price, "f"),
    }
    if intent.price is not None:  # a stop-limit
        body["price"] = format(intent.price, "f")
        body["size"] = format(intent.size, "f")
        body["timeInForce"] = intent.time_in_force
        if intent.post_only:
            body["postOnly"] = True
        if intent.hidden:
            body["hidden"] = True
        if intent.visible_size is not None:
            body["iceberg"] = True
            body["visibleSize"] = format(intent.visible_size, "f")
    elif intent.funds is not None:
        body["funds"] = format(intent.funds, "f")
    else:
        body["size"] = format(intent.size, "f")
    return body


def deadline(
    family: str, sent_at_server: datetime, window_ms: int, timeout_s: float
) -> datetime | None:
    """After this (server time) an HF order that is not on the exchange never will be."""
    if family != "hf":
        return None
    return sent_at_server + timedelta(milliseconds=window_ms) + timedelta(seconds=timeout_s)


class Lookup(NamedTuple):
    """One lookup by clientOid: `found` (with the order), `absent`, or `failed` (no answer)."""

    result: str
    at: datetime


class Resolution(enum.Enum):
    ADOPT = "adopt"  # the exchange has it: track it
    NOT_PLACED = "not placed"  # proven absent: the same firing may be sent again, same clientOid
    WAIT = "wait"  # nothing proven yet: stay frozen, look again later


def resolve_unknown(lookups: Sequence[Lookup], deadline_at: datetime | None) -> Resolution:
    if any(lookup.result == "found" for lookup in lookups):
        return Resolution.ADOPT
    if deadline_at is None:
        return Resolution.WAIT  # no deadline: only the exchange or a person can settle it
    absent_after = [
        lookup for lookup in lookups if lookup.result == "absent" and lookup.at > deadline_at
    ]
    return Resolution.NOT_PLACED if len(absent_after) >= 2 else Resolution.WAIT
