"""An order's life as one pure transition table: `apply(record, event, now) -> Transition`.

No IO, no clock: the order manager feeds every event it sees (the send's reply, the
exchange's order events and lookups, a person's cancel or halt, a timer) and carries out the
commands it gets back, in order, through its ports. The first command of a transition that
changes what is persisted is `Record`: the store commits it before any side effect.

States (`OrderRecord.status`)::

    held        engine-held (a trailing stop, a bracket's stop-loss): not on the exchange
    pending     intent committed, the request sending, no reply yet
    unknown     outcome not proven: looked up by clientOid (`resolve_unknown`)
    open        the exchange showed it
    cancel_requested  open, a cancel asked and not confirmed: retried until it is
    filled | canceled | refused       final, as the exchange says
    not_placed  proven absent: its firing may be decided again, same clientOid
    vanished    shown by the exchange once, unknown to it after its deadline in two lookups

Moves (`STATUS_TRANSITIONS`; the event that makes each in brackets)::

    held        -> pending [Trigger] | not_placed [CancelAsked, Halt, TimerDue "cancel after":
                   dropped, it never reached the exchange]; a stop-loss's sale proven not
                   placed waits in not_placed for its next trigger, and a cancel asked
                   then (or `halt --all`) ends that wait
    pending     -> unknown [Unknown, Recovered] | refused [Refused]
                 | not_placed [NotSent]
    pending, unknown -> open [Acknowledged, Opened, PartFilled, LookedUp found, Resolved]
                 | cancel_requested [the same, when a cancel was asked before]
                 | filled | canceled [Filled, Canceled, LookedUp found done]
    unknown     -> not_placed [LookedUp: absent twice after the deadline; Resolved]
    open        -> cancel_requested [CancelAsked, Halt, TimerDue "cancel after"]
    open, cancel_requested -> filled | canceled [Filled, Canceled, LookedUp found done]
                 | vanished [LookedUp absent / NotFound: twice after the deadline]
    not_placed  -> pending [SentAgain, or Trigger of a stop-loss] | held [SentAgain of an
                   engine-held order]
    canceled    -> filled [the exchange reports the whole size filled: fills are money]

The last two lines are the only moves out of a final status (`REOPENINGS`).

Commands out: `Record`, `Send`, `CancelOrder`, `LookUpOrder`, `Schedule`, `ArmChildren`,
`Release`, `RetryFiring`, `BlockRule`, `StopWatcher`.

Guarantees, each kept here in one place:

* Total: every event in every state has a defined result, at worst the same record and an
  `Anomaly` (to be logged). Only a bug in this table raises (`IllegalTransition`).
* Never sent twice: `Send` only on entering `pending` from a new intent (`place`), a held
  order's trigger, or `SentAgain` after `not_placed`. A restart turns `pending` into
  `unknown`, which is only ever looked up.
* A cancel is a state: `cancel_requested` always has a cancel or a lookup in flight or a
  retry scheduled (`CANCEL_BACKOFF`: 0.5 s doubling to 10 s). A cancel reply is never
  taken for the result: "accepted", "already done" and "not found" are all looked up, and
  only the exchange showing the order final (its event or a lookup) ends it. A cancel asked
  while the order is pending or unknown is remembered (persisted) and sent as soon as the
  exchange shows the order; one proven never placed needs none (and is not decided again).
* A reply that arrives after the exchange already showed the order changes nothing.

The manager's side of the contract: it answers every `CancelOrder` with one `CancelReply`
and every `LookUpOrder` with one `LookedUp` (a request that errs is `retry` / `failed`),
delivers each `Schedule` as a `TimerDue` (a stale one is ignored here), and after a restart
applies `Recovered` to each record rebuilt from the store (`restored`). It may look orders up
on its own (reconciliation): any `LookedUp` is taken. A `Canceled` event or a lookup showing
the whole size filled makes the order filled (`_done_status`, as recovery decides today).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from rules_engine.engine._evaluate import IllegalTransition
from rules_engine.engine._order_types import (
    FINAL_STATUSES,
    PERSISTED_FIELDS,
    ZERO,
    Acknowledged,
    Anomaly,
    ArmChildren,
    BlockRule,
    CancelAsked,
    Canceled,
    CancelOrder,
    CancelReply,
    Command,
    Filled,
    Halt,
    LookedUp,
    LookUpOrder,
    NotFound,
    NotSent,
    Opened,
    OrderEvent,
    OrderRecord,
    PartFilled,
    Record,
    Recovered,
    Refused,
    Release,
    Resolved,
    RetryFiring,
    Schedule,
    Send,
    SentAgain,
    StopWatcher,
    StorageFailed,
    TimerDue,
    Transition,
    Trigger,
    Unknown,
)
from rules_engine.engine._protocol import Lookup, Resolution, resolve_unknown

__all__ = [
    "CANCEL_BACKOFF",
    "LOOKUP_INTERVAL",
    "REOPENINGS",
    "STATUS_TRANSITIONS",
    "apply",
    "cancel_backoff",
    "cancel_pending",
    "halt_waits",
    "place",
    "restored",
]

_LIVE = frozenset({"pending", "unknown", "open", "cancel_requested"})  # may be on the exchange
_UNPROVEN = frozenset({"pending", "unknown"})
_SHOWN = frozenset({"open", "cancel_requested"})

STATUS_TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("held", "pending"),
        ("held", "not_placed"),
        ("pending", "unknown"),
        ("pending", "refused"),
        ("pending", "not_placed"),
        *((a, b) for a in _UNPROVEN
          for b in ("open", "cancel_requested", "filled", "canceled")),
        ("unknown", "not_placed"),
        ("open", "cancel_requested"),
        *((a, b) for a in _SHOWN for b in ("filled", "canceled", "vanished")),
        ("not_placed", "pending"),
        ("not_placed", "held"),
        ("canceled", "filled"),
    }
)
REOPENINGS = frozenset(m for m in STATUS_TRANSITIONS if m[0] in FINAL_STATUSES)

CANCEL_BACKOFF = (0.5, 10.0)  # seconds: the first retry of a cancel, doubling to the cap
LOOKUP_INTERVAL = timedelta(seconds=1)  # between lookups of an order of unknown outcome


# ---------------------------------------------------------------- helpers for the manager


def place(
    client_oid: str,
    *,
    family: str,
    side: str,
    size: Decimal | None,
    deadline: datetime | None,
    held_as: str | None = None,
    cancel_at: datetime | None = None,
) -> Transition:
    """A new intent: `Record` (the intent's commit) then `Send`, or held until its trigger."""
    record = OrderRecord(client_oid, "held" if held_as else "pending", family, side, size,
                         deadline=deadline, held_as=held_as, cancel_at=cancel_at)
    commands: list[Command] = [Record(record, f"order.{record.status}", {})]
    if held_as is None:
        commands.append(Send(client_oid))
    if cancel_at is not None:
        commands.append(Schedule(client_oid, cancel_at, "cancel after"))
    return Transition(record, tuple(commands), None)


def restored(record: OrderRecord) -> OrderRecord:
    """The record as a restart sees it: only what `Record` persisted."""
    return record._replace(lookups=(), attempts=0, waiting=None, due=None)


def cancel_backoff(attempts: int) -> timedelta:
    """The wait before cancel request number `attempts + 1`: 0.5, 1, 2, 4, 8, 10, 10 ... s."""
    first, cap = CANCEL_BACKOFF
    return timedelta(seconds=min(first * 2 ** max(attempts - 1, 0), cap))


def cancel_pending(record: OrderRecord) -> bool:
    """A cancel was asked and the exchange has not shown the order final yet."""
    return bool(record.cancel) and not record.final


def halt_waits(records: Iterable[OrderRecord], everything: bool) -> list[OrderRecord]:
    """What a halt still waits for: every order it cancels that is not proven final."""
    return [r for r in records if not r.final and (everything or not r.protective)]


# ---------------------------------------------------------------- the table


def apply(record: OrderRecord, event: OrderEvent, now: datetime) -> Transition:
    """The next record, the commands to carry out in order, and an anomaly if the event was
    not expected in this state. Total for every event; raises only on a bug of the table."""
    handler = _HANDLERS.get(type(event))
    if handler is None:  # not an event of this table: a programming error of the caller
        raise TypeError(f"not an order event: {event!r}")
    return _finish(record, handler(record, event, now), event, now)


_Out = tuple[OrderRecord, list[Command], Anomaly | None]


def _finish(before: OrderRecord, out: _Out, event: OrderEvent, now: datetime) -> Transition:
    after, commands, anomaly = out
    if isinstance(event, StorageFailed):
        return Transition(before, tuple(commands), anomaly)
    moved = before.status != after.status
    if moved and (before.status, after.status) not in STATUS_TRANSITIONS:
        raise IllegalTransition(f"order {before.status.upper()} -> {after.status.upper()}")
    if after.status in ("unknown", "cancel_requested") and after.waiting is None and (
        after.due is None
    ):  # never forgotten: something in flight or a retry scheduled, whatever led here
        due = now + _retry_wait(after)
        after = after._replace(due=due)
        commands.append(Schedule(after.client_oid, due, _timer_of(after)))
    if moved or _persisted(before) != _persisted(after):
        name = _name(event)
        kind = f"order.{after.status}" if moved else f"order.{name}"
        detail = {"event": name, **{k: str(v) for k, v in event._asdict().items()
                                    if v is not None and v != ""}}
        commands.insert(0, Record(after, kind, detail))
    return Transition(after, tuple(commands), anomaly)


def _persisted(record: OrderRecord) -> tuple[Any, ...]:
    return record[: len(PERSISTED_FIELDS)]


def _name(event: OrderEvent) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in type(event).__name__)[1:]


def _anomaly(record: OrderRecord, event: OrderEvent, why: str) -> _Out:
    return record, [], Anomaly(_name(event), record.status, why)


def _retry_wait(record: OrderRecord) -> timedelta:
    return cancel_backoff(record.attempts) if record.status == "cancel_requested" else (
        LOOKUP_INTERVAL)


def _timer_of(record: OrderRecord) -> str:
    return "cancel" if record.status == "cancel_requested" else "look up"


def _look(record: OrderRecord) -> _Out:
    return record._replace(waiting="lookup", due=None), [LookUpOrder(record.client_oid)], None


def _send_cancel(record: OrderRecord) -> tuple[OrderRecord, list[Command]]:
    record = record._replace(status="cancel_requested", waiting="cancel", due=None,
                             attempts=record.attempts + 1)
    return record, [CancelOrder(record.client_oid, record.exchange_id)]


def _totals(record: OrderRecord, filled: Decimal, value: Decimal,
            exchange_id: str | None) -> OrderRecord:
    """What the exchange reports, never less than what was seen: fills are money."""
    if filled > record.filled:
        record = record._replace(filled=filled, filled_value=max(value, record.filled_value))
    if exchange_id and record.exchange_id != exchange_id:
        record = record._replace(exchange_id=exchange_id)
    return record


def _shown(record: OrderRecord) -> _Out:
    """The exchange shows the order resting: tracked, and cancelled at once if asked."""
    if record.status in _SHOWN:
        return record._replace(lookups=()), [], None
    record = record._replace(lookups=(), waiting=None, due=None)
    if record.cancel:
        cancelled, commands = _send_cancel(record)
        return cancelled, commands, None
    return record._replace(status="open"), [], None


def _done(record: OrderRecord, status: str) -> _Out:
    """The exchange shows the order final: released, its children armed."""
    record = record._replace(status=status, lookups=(), waiting=None, due=None)
    commands: list[Command] = [Release(record.client_oid, record.filled_value)]
    events = (("filled",) if record.filled > 0 else ()) + (
        ("canceled",) if status == "canceled" else ())
    if events:
        commands.append(ArmChildren(record.client_oid, events, record.filled,
                                    record.filled_value))
    return record, commands, None


def _done_status(record: OrderRecord) -> str:
    """A done order: filled when it traded its whole size (by funds: anything), else
    canceled (after a partial fill, or none)."""
    if record.filled > 0 and (record.size is None or record.filled >= record.size):
        return "filled"
    return "canceled"


def _absent(record: OrderRecord) -> _Out:
    """Proven never placed (or dropped while held): released, and decided again unless a
    cancel was asked (then nothing is left to do) or it is a stop-loss (sent again at its
    next trigger)."""
    record = record._replace(status="not_placed", lookups=(), waiting=None, due=None)
    commands: list[Command] = [Release(record.client_oid, ZERO)]
    if not record.cancel and record.held_as != "stop-loss":
        commands.append(RetryFiring(record.client_oid))
    return record, commands, None


def _late_evidence(record: OrderRecord, event: OrderEvent, seen: OrderRecord,
                   claims: str) -> _Out:
    """The exchange reports an order the table holds held or final. Its fills are kept
    (money), and a canceled order whose whole size filled becomes filled; nothing else
    moves. `claims`: what the report says (filled, canceled, done, fill, resting). The same
    news again about a filled or canceled order is no anomaly."""
    after = seen
    if record.status == "canceled" and after.filled > record.filled and (
        _done_status(after) == "filled"
    ):
        after = after._replace(status="filled")
    agrees = claims in ("done", "fill", record.status)
    if after == record and record.status in ("filled", "canceled") and agrees:
        return record, [], None
    return after, [], Anomaly(_name(event), record.status,
                              f"the exchange reports it {claims}, the table holds it "
                              f"{record.status}")


def _answered(record: OrderRecord) -> OrderRecord:
    """A lookup's result came: the lookup in flight (if any) is answered."""
    return record._replace(waiting=None) if record.waiting == "lookup" else record


# ---------------------------------------------------------------- handlers


def _on_acknowledged(record: OrderRecord, event: Acknowledged, now: datetime) -> _Out:
    if record.status != "pending":
        return _anomaly(record, event, "a reply after the order's outcome was known")
    return _shown(_totals(record, ZERO, ZERO, event.exchange_id))


def _on_refused(record: OrderRecord, event: Refused, now: datetime) -> _Out:
    if record.status != "pending":
        return _anomaly(record, event, "a reply after the order's outcome was known")
    record = record._replace(status="refused", lookups=())
    commands: list[Command] = [Release(record.client_oid, ZERO)]
    if record.held_as != "stop-loss":  # a stop-loss's refusal is for a person to look at
        commands.append(BlockRule(record.client_oid, event.reason))
    return record, commands, None


def _on_unknown(record: OrderRecord, event: Unknown, now: datetime) -> _Out:
    if record.status != "pending":
        return _anomaly(record, event, "a reply after the order's outcome was known")
    return _look(record._replace(status="unknown"))


def _on_not_sent(record: OrderRecord, event: NotSent, now: datetime) -> _Out:
    if record.status != "pending":
        return _anomaly(record, event, "a reply after the order's outcome was known")
    return _absent(record)


def _on_looked_up(record: OrderRecord, event: LookedUp, now: datetime) -> _Out:
    status = record.status
    if status in FINAL_STATUSES or status == "held":
        if event.result != "found":
            return record, [], None  # nothing to prove
        seen = _totals(record, event.filled, event.filled_value, event.exchange_id)
        return _late_evidence(record, event, seen, "resting" if event.active else "done")
    lookups = (*record.lookups, Lookup(event.result, event.at))
    if status == "unknown":  # settled only as `resolve_unknown` says
        record = _answered(record._replace(lookups=lookups))
        verdict = resolve_unknown(lookups, record.deadline)
        if verdict is Resolution.NOT_PLACED:
            return _absent(record)
        if verdict is Resolution.WAIT:
            due = now + LOOKUP_INTERVAL
            return record._replace(due=due), [Schedule(record.client_oid, due, "look up")], None
    if event.result == "found":
        seen = _answered(_totals(record, event.filled, event.filled_value, event.exchange_id))
        if not event.active:
            return _done(seen, _done_status(seen))
        if status == "cancel_requested":  # still resting: the cancel is asked again
            seen = seen._replace(lookups=())
            return (seen, [], None) if seen.waiting == "cancel" else _retry_cancel(seen, now)
        return _shown(seen)
    if status == "pending":
        return record._replace(lookups=lookups), [], None  # the send's reply decides first
    if event.result != "absent":  # failed: proves nothing
        return _answered(record), [], None
    return _missing(_answered(record._replace(lookups=lookups)), now)


def _missing(record: OrderRecord, now: datetime) -> _Out:
    """An order the exchange showed, not found: after its deadline in two lookups that agree
    it has vanished (released, no child armed); until then it is looked up again."""
    absent = [lookup for lookup in record.lookups if lookup.result == "absent" and (
        record.deadline is None or lookup.at > record.deadline)]
    if len({lookup.at for lookup in absent}) >= 2:
        record = record._replace(status="vanished", lookups=(), waiting=None, due=None)
        return record, [Release(record.client_oid, record.filled_value)], None
    if record.waiting is not None or record.due is not None:
        return record, [], None  # something is under way already
    due = now + _retry_wait(record)
    return record._replace(due=due), [Schedule(record.client_oid, due, "look up")], None


def _retry_cancel(record: OrderRecord, now: datetime) -> _Out:
    due = now + cancel_backoff(record.attempts)
    return record._replace(waiting=None, due=due), [
        Schedule(record.client_oid, due, "cancel")], None


def _on_opened(record: OrderRecord, event: Opened, now: datetime) -> _Out:
    if record.status in _UNPROVEN or record.status in _SHOWN:
        return _shown(_totals(record, ZERO, ZERO, event.exchange_id))
    return _late_evidence(record, event, _totals(record, ZERO, ZERO, event.exchange_id),
                          "resting")


def _on_part_filled(record: OrderRecord, event: PartFilled, now: datetime) -> _Out:
    seen = _totals(record, event.filled, event.filled_value, event.exchange_id)
    if record.status in _UNPROVEN or record.status in _SHOWN:
        return _shown(seen)
    return _late_evidence(record, event, seen, "fill")


def _on_filled(record: OrderRecord, event: Filled, now: datetime) -> _Out:
    seen = _totals(record, event.filled, event.filled_value, event.exchange_id)
    if record.status in _LIVE:
        return _done(seen, "filled")
    if record.status == "canceled":  # the exchange wins: fills are money
        return seen._replace(status="filled"), [], Anomaly(
            "filled", "canceled", "filled after canceled: the exchange's fills win")
    return _late_evidence(record, event, seen, "filled")


def _on_canceled(record: OrderRecord, event: Canceled, now: datetime) -> _Out:
    seen = _totals(record, event.filled, event.filled_value, event.exchange_id)
    if record.status in _LIVE:  # canceled, unless its whole size filled first
        return _done(seen, _done_status(seen))
    return _late_evidence(record, event, seen, "canceled")


def _on_not_found(record: OrderRecord, event: NotFound, now: datetime) -> _Out:
    return _on_looked_up(record, LookedUp("absent", event.at), now)


def _waits_trigger(record: OrderRecord) -> bool:
    """A bracket's stop-loss whose sale was proven not placed: sent again at its next
    trigger, unless a cancel was asked."""
    return record.status == "not_placed" and record.held_as == "stop-loss" and not (
        record.cancel)


def _ask_cancel(record: OrderRecord, event: OrderEvent, reason: str) -> _Out:
    status = record.status
    if _waits_trigger(record):  # nothing on the exchange: the cancel ends the wait
        return record._replace(cancel=(reason,)), [], None
    if status in FINAL_STATUSES:
        return _anomaly(record, event, f"nothing to cancel: the order is {status}")
    asked = record._replace(cancel=record.cancel if reason in record.cancel
                            else (*record.cancel, reason))
    if status == "held":  # not on the exchange: dropped at once
        return _absent(asked)
    if status == "open":
        cancelled, commands = _send_cancel(asked)
        return cancelled, commands, None
    return asked, [], None  # cancel_requested: under way; pending, unknown: when shown


def _on_cancel_asked(record: OrderRecord, event: CancelAsked, now: datetime) -> _Out:
    return _ask_cancel(record, event, event.reason)


def _on_halt(record: OrderRecord, event: Halt, now: datetime) -> _Out:
    if (record.final and not _waits_trigger(record)) or (
            record.protective and not event.everything):
        return record, [], None
    return _ask_cancel(record, event, "halt --all" if event.everything else "halt")


def _on_cancel_reply(record: OrderRecord, event: CancelReply, now: datetime) -> _Out:
    if record.status != "cancel_requested":
        if record.final:
            return record, [], None  # the order ended before the reply came
        return _anomaly(record, event, "no cancel was sent")
    if event.result == "retry":
        return _retry_cancel(record, now)
    if event.result in ("confirmed", "final", "absent"):
        return _look(record)  # the result is what the exchange shows, never assumed
    return _anomaly(record._replace(waiting=None), event, f"a cancel reply {event.result!r}")


def _on_timer_due(record: OrderRecord, event: TimerDue, now: datetime) -> _Out:
    if event.why == "cancel after":
        if record.cancel_at is None or now < record.cancel_at:
            return record, [], None  # stale (the order was changed) or early
        if record.final or "cancel after" in record.cancel:
            return record, [], None  # asked already: the cancel is a state of its own
        return _ask_cancel(record, event, "cancel after")
    if record.due is None or now < record.due or record.waiting is not None:
        return record, [], None  # stale: something else already moved it on
    if record.status == "cancel_requested" and event.why == "cancel":
        cancelled, commands = _send_cancel(record)
        return cancelled, commands, None
    if record.status in ("unknown", "cancel_requested", "open") and event.why == "look up":
        return _look(record)
    return record, [], None


def _on_trigger(record: OrderRecord, event: Trigger, now: datetime) -> _Out:
    if record.status == "held" or _waits_trigger(record):
        size = event.size if event.size is not None else record.size
        return _sent(record, event.deadline, size)
    return _anomaly(record, event, "not an order waiting for its trigger")


def _on_sent_again(record: OrderRecord, event: SentAgain, now: datetime) -> _Out:
    if record.status != "not_placed":
        return _anomaly(record, event, "only an order proven not placed is sent again")
    fresh = record._replace(cancel=(), lookups=(), attempts=0, waiting=None, due=None)
    if record.held_as is not None:
        return fresh._replace(status="held", deadline=event.deadline), [], None
    return _sent(fresh, event.deadline, record.size)


def _sent(record: OrderRecord, deadline: datetime | None, size: Decimal | None) -> _Out:
    record = record._replace(status="pending", deadline=deadline, size=size, lookups=(),
                             waiting=None, due=None)
    return record, [Send(record.client_oid)], None


def _on_resolved(record: OrderRecord, event: Resolved, now: datetime) -> _Out:
    if record.status != "unknown":
        return _anomaly(record, event, "not an order of unknown outcome")
    if event.placed:
        return _shown(record)
    return _absent(record)


def _on_recovered(record: OrderRecord, event: Recovered, now: datetime) -> _Out:
    record = restored(record)
    commands: list[Command] = []
    if record.cancel_at is not None and not record.final and "cancel after" not in (
        record.cancel
    ):
        commands.append(Schedule(record.client_oid, record.cancel_at, "cancel after"))
    if record.status in ("pending", "unknown", "open"):  # the reply died with the process
        status = "unknown" if record.status == "pending" else record.status
        looked, more, _ = _look(record._replace(status=status))
        return looked, commands + more, None
    if record.status == "cancel_requested":
        cancelled, more = _send_cancel(record)
        return cancelled, commands + more, None
    return record, commands, None


def _on_storage_failed(record: OrderRecord, event: StorageFailed, now: datetime) -> _Out:
    return record, [StopWatcher(f"the store cannot be written: {event.why}")], None


_HANDLERS: dict[type[Any], Callable[[OrderRecord, Any, datetime], _Out]] = {
    Acknowledged: _on_acknowledged,
    Refused: _on_refused,
    Unknown: _on_unknown,
    NotSent: _on_not_sent,
    LookedUp: _on_looked_up,
    Opened: _on_opened,
    PartFilled: _on_part_filled,
    Filled: _on_filled,
    Canceled: _on_canceled,
    NotFound: _on_not_found,
    CancelAsked: _on_cancel_asked,
    CancelReply: _on_cancel_reply,
    Halt: _on_halt,
    TimerDue: _on_timer_due,
    Trigger: _on_trigger,
    SentAgain: _on_sent_again,
    Resolved: _on_resolved,
    Recovered: _on_recovered,
    StorageFailed: _on_storage_failed,
}
