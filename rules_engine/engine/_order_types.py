"""The values an order's transition table (`engine/_lifecycle.py`) works on: the order's
record, the events it takes in, the commands it hands out. Plain immutable values: the order
manager builds the events from what its ports saw and carries out the commands."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from rules_engine.engine._protocol import Lookup

__all__ = [
    "FINAL_STATUSES",
    "PERSISTED_FIELDS",
    "STATUSES",
    "ZERO",
    "Acknowledged",
    "Anomaly",
    "ArmChildren",
    "BlockRule",
    "CancelAsked",
    "CancelOrder",
    "CancelReply",
    "Canceled",
    "Command",
    "Filled",
    "Halt",
    "LookUpOrder",
    "LookedUp",
    "NotFound",
    "NotSent",
    "Opened",
    "OrderEvent",
    "OrderRecord",
    "PartFilled",
    "Record",
    "Recovered",
    "Refused",
    "Release",
    "Resolved",
    "RetryFiring",
    "Schedule",
    "Send",
    "SentAgain",
    "StopWatcher",
    "StorageFailed",
    "TimerDue",
    "Transition",
    "Trigger",
    "Unknown",
]

ZERO = Decimal(0)
STATUSES = ("held", "pending", "unknown", "open", "cancel_requested",
            "filled", "canceled", "refused", "not_placed", "vanished")
FINAL_STATUSES = frozenset({"filled", "canceled", "refused", "not_placed", "vanished"})

# What the store keeps of a record (its first fields); the rest is rebuilt after a restart.
PERSISTED_FIELDS = ("client_oid", "status", "family", "side", "size", "filled", "filled_value",
                    "exchange_id", "deadline", "held_as", "cancel_at", "cancel")


class OrderRecord(NamedTuple):
    """One order as the table sees it. `held_as`: "trailing-stop" or "stop-loss" for an
    order the engine holds until its trigger (None: sent at once). `cancel`: why a cancel
    was asked (empty: none). `cancel_at`: when its `cancel after` falls due. The last four
    fields are not persisted: lookups by clientOid since the exchange last showed it, cancel
    requests sent, the command in flight ("cancel" or "lookup") and the next retry."""

    client_oid: str
    status: str
    family: str  # hf | legacy | stop | oco (a bracket as one KuCoin OCO order)
    side: str  # buy | sell
    size: Decimal | None  # None: a market order by funds
    filled: Decimal = ZERO
    filled_value: Decimal = ZERO
    exchange_id: str | None = None
    deadline: datetime | None = None
    held_as: str | None = None
    cancel_at: datetime | None = None
    cancel: tuple[str, ...] = ()
    lookups: tuple[Lookup, ...] = ()
    attempts: int = 0
    waiting: str | None = None
    due: datetime | None = None

    @property
    def protective(self) -> bool:
        """An exit that protects a position, kept by a plain `halt`: a sell stop order, a
        trailing stop, a bracket's stop-loss (held or sent), a bracket's OCO order."""
        return self.held_as is not None or self.family == "oco" or (
            self.family == "stop" and self.side == "sell")

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


# ---------------------------------------------------------------- events in


class Acknowledged(NamedTuple):
    """The send's reply: accepted (HTTP 200 with the exchange's order id)."""

    exchange_id: str | None = None


class Refused(NamedTuple):
    """The send's reply: refused for good (a KuCoin business error)."""

    reason: str


class Unknown(NamedTuple):
    """The send's reply proves nothing (timeout, 5xx, duplicate clientOid): look it up."""

    why: str


class NotSent(NamedTuple):
    """The request provably never reached the order book (429, auth before accept)."""

    why: str


class LookedUp(NamedTuple):
    """A lookup by clientOid: `found` (with the exchange's view), `absent` or `failed`;
    `at` is the exchange's time of the lookup."""

    result: str
    at: datetime
    active: bool = True
    filled: Decimal = ZERO
    filled_value: Decimal = ZERO
    exchange_id: str | None = None


class Opened(NamedTuple):
    """The exchange shows the order resting (order event `open`/`received`, stop `open`)."""

    exchange_id: str | None = None


class PartFilled(NamedTuple):
    """A fill: the order's filled totals after it (the fill itself is stored by trade id)."""

    filled: Decimal
    filled_value: Decimal
    exchange_id: str | None = None


class Filled(NamedTuple):
    """The exchange says the order is done, its whole size filled."""

    filled: Decimal
    filled_value: Decimal
    exchange_id: str | None = None


class Canceled(NamedTuple):
    """The exchange says the order is done, canceled (after a partial fill, or none)."""

    filled: Decimal = ZERO
    filled_value: Decimal = ZERO
    exchange_id: str | None = None


class NotFound(NamedTuple):
    """Reconciliation: the order is in none of the exchange's open or recent lists."""

    at: datetime


class CancelAsked(NamedTuple):
    """A cancel: a rule's action, `cancel after`, a removed rule (`reason` says which)."""

    reason: str


class CancelReply(NamedTuple):
    """The cancel request's reply: `confirmed` (accepted), `final` (already done), `absent`
    (not found) or `retry` (429, 5xx, timeout). None of them is the result itself."""

    result: str
    why: str = ""


class Halt(NamedTuple):
    """The kill switch: cancel what is open; a plain halt keeps protective orders."""

    everything: bool


class TimerDue(NamedTuple):
    """A `Schedule` fell due: `why` as scheduled ("cancel", "look up", "cancel after")."""

    why: str


class Trigger(NamedTuple):
    """An engine-held order's trigger: send it now (`size`: what a stop-loss sells)."""

    size: Decimal | None
    deadline: datetime | None


class SentAgain(NamedTuple):
    """The firing of an order proven not placed is decided again (same clientOid)."""

    deadline: datetime | None


class Resolved(NamedTuple):
    """`rules-engine resolve`: a person settles an order of unknown outcome."""

    placed: bool


class Recovered(NamedTuple):
    """A restart: the record as the store kept it (`restored`), with nothing in flight."""


class StorageFailed(NamedTuple):
    """The `Record` of the last transition could not be committed."""

    why: str


OrderEvent = (Acknowledged | Refused | Unknown | NotSent | LookedUp | Opened | PartFilled
              | Filled | Canceled | NotFound | CancelAsked | CancelReply | Halt | TimerDue
              | Trigger | SentAgain | Resolved | Recovered | StorageFailed)


# ---------------------------------------------------------------- commands out


class Record(NamedTuple):
    """Commit this record (its `PERSISTED_FIELDS`) and an event, before any side effect."""

    record: OrderRecord
    event: str
    detail: Mapping[str, str]


class Send(NamedTuple):
    client_oid: str


class CancelOrder(NamedTuple):
    client_oid: str
    exchange_id: str | None  # a stop order is cancelled by its id


class LookUpOrder(NamedTuple):
    client_oid: str


class Schedule(NamedTuple):
    """Deliver `TimerDue(why)` at `at` (a stale one is ignored)."""

    client_oid: str
    at: datetime
    why: str


class ArmChildren(NamedTuple):
    """`after R filled` / `after R canceled` rules of this order's firing, with the fill."""

    client_oid: str
    events: tuple[str, ...]
    filled: Decimal
    filled_value: Decimal


class Release(NamedTuple):
    """The order leaves the risk limits' open count, keeping `kept` (what it traded)."""

    client_oid: str
    kept: Decimal


class RetryFiring(NamedTuple):
    """The rule decides the same firing again on fresh data (then `SentAgain`)."""

    client_oid: str


class BlockRule(NamedTuple):
    client_oid: str
    reason: str


class StopWatcher(NamedTuple):
    """Fail-stop: no further command may be carried out."""

    reason: str


Command = (Record | Send | CancelOrder | LookUpOrder | Schedule | ArmChildren | Release
           | RetryFiring | BlockRule | StopWatcher)


class Anomaly(NamedTuple):
    """An event the state did not expect: logged (kind `order.anomaly`), never raised."""

    event: str
    status: str
    why: str


class Transition(NamedTuple):
    record: OrderRecord
    commands: tuple[Command, ...]
    anomaly: Anomaly | None
