"""The order manager: every order of the engine, from its intent to a final state, driven by
the order table (`engine/_lifecycle.py`). The table decides; this carries its commands out.

    event (send reply, order/stop event, lookup, cancel reply, cancel asked, halt, timer,
           trigger, resolve by hand, restart)
      -> apply(record, event, now) -> Transition(record, commands, anomaly)
      -> Record: one commit (`Store.save_order`: the order as decided, its firing's move,
                 and the rule rows of the same step) before anything else
      -> Send / CancelOrder / LookUpOrder: the Venue port, each answered by one event
      -> Schedule: a timer, delivered as `TimerDue`
      -> Release: the risk limits; RetryFiring / BlockRule / ArmChildren: the rule side's
         hooks; StopWatcher: fail-stop

Nothing here decides an order's status or what to do next: each guarantee (sent once, an
unknown outcome looked up and never resent, a cancel retried until the exchange shows the
order final, vanished only after two agreeing lookups past the deadline, every outside event
total) is the table's, kept in one place. What is kept here is the ports' side: the lease's
fence right before a send, the fills (once per trade id), and the risk limits' usage.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from rules_engine.core.market import BalanceEvent, OrderEvent, OrderState, StopOrderEvent
from rules_engine.core.outcome import Action
from rules_engine.engine import Arm
from rules_engine.engine._lifecycle import apply
from rules_engine.engine._order_types import (
    ZERO,
    Acknowledged,
    ArmChildren,
    BlockRule,
    CancelAsked,
    Canceled,
    CancelOrder,
    CancelReply,
    Filled,
    Halt,
    LookedUp,
    LookUpOrder,
    NotSent,
    Opened,
    OrderRecord,
    PartFilled,
    Record,
    Refused,
    Release,
    Resolved,
    RetryFiring,
    Schedule,
    Send,
    StopWatcher,
    TimerDue,
    Transition,
    Unknown,
)
from rules_engine.engine._order_types import OrderEvent as TableEvent
from rules_engine.engine._order_types import StorageFailed as WriteFailed
from rules_engine.engine._risk import Exposure
from rules_engine.engine._slices import rule_of
from rules_engine.runtime._context import Context, LeaseLostError
from rules_engine.store import StateRow, StorageFailed

__all__ = ["FIRING_MOVES", "OrderManager", "Pending", "Step", "Tracked", "done_status"]

# The firing's own move for each order move the table makes (the firing row tells the
# crash audit and `rules-engine resolve` how far the firing got).
FIRING_MOVES = {
    ("pending", "unknown"): "unknown",
    ("pending", "refused"): "refused",
    ("pending", "not_placed"): "not_sent",
    ("unknown", "not_placed"): "not_placed",
    ("held", "not_placed"): "done",
    **{(a, b): "acknowledged" for a in ("pending", "unknown")
       for b in ("open", "cancel_requested", "filled", "canceled")},
}
_UNPROVEN = ("pending", "unknown")
_REPLIES = frozenset({"acknowledged", "refused", "unknown", "not_sent"})  # a send's replies


@dataclass
class Tracked:
    """An order the manager carries: the table's record, and what the rule side needs."""

    oid: str
    identity: str | None
    number: int | None
    symbol: str
    record: OrderRecord
    value: Decimal = ZERO  # its share of the risk limits
    day: date | None = None  # the UTC day of its firing
    counted: bool = True  # in the risk limits' usage (a stop-loss shares its take-profit's)
    arm: Arm | None = None  # the `after` arm its firing was decided with
    leg: str | None = None  # a bracket's stop-loss: its rule (no firing row of its own)
    body: dict[str, Any] | None = None  # the request a `Send` carries out

    @property
    def family(self) -> str:
        return self.record.family

    @property
    def side(self) -> str:
        return self.record.side

    @property
    def size(self) -> Decimal | None:
        return self.record.size

    @property
    def exchange_id(self) -> str | None:
        return self.record.exchange_id

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def unknown(self) -> bool:
        return self.record.status == "unknown"

    @property
    def deadline(self) -> datetime | None:
        return self.record.deadline

    @property
    def key(self) -> str:
        """What a firing whose outcome is not proven freezes: its rule (or its leg)."""
        if self.leg is not None:
            return f"{self.leg}/stop-loss#{self.number}"
        return self.identity or self.oid


Pending = Tracked  # an order whose outcome is not proven yet: pending or unknown


class Step(NamedTuple):
    """What the rule side writes with an order's `Record` (one commit), and does after it."""

    rows: tuple[StateRow, ...] = ()
    events: tuple[tuple[str, str, dict[str, Any]], ...] = ()
    then: Callable[[], None] | None = None


Hook = Callable[[Tracked, Any, datetime], Step]


class OrderManager:
    def __init__(self, ctx: Context, *, on_retry: Hook, on_refused: Hook, on_final: Hook,
                 on_acknowledged: Callable[[Tracked, datetime], None]) -> None:
        """The rule side's hooks, each returning what it writes in the order's commit:
        `on_retry(order, RetryFiring)` (a firing proven not placed: decide it again),
        `on_refused(order, BlockRule)` (block the rule), `on_final(order, ArmChildren |
        None)` (the order ended: arm `after` rules, settle a bracket), and
        `on_acknowledged(order)` (the exchange showed it: the rule's timers)."""
        self.ctx = ctx
        self.tracked: dict[str, Tracked] = {}  # by clientOid: every order not final
        self.pending: dict[str, Tracked] = {}  # by rule (`Tracked.key`): frozen
        self.exposure = Exposure()
        self.lease_renewed = time.monotonic()  # the last commit that held the lease
        self._timers: list[tuple[float, int, str, str, datetime]] = []
        self._seq = itertools.count()
        self._on_retry = on_retry
        self._on_refused = on_refused
        self._on_final = on_final
        self._on_acknowledged = on_acknowledged
        self.oco: Any = None  # `OcoBrackets` (runtime/_oco.py): an OCO's port calls, fills
        # A new fill recorded (the chains follow it): (order, trade id, price, size, fee,
        # fee currency).
        self.on_fill: Callable[[Tracked, str, Decimal, Decimal, Decimal | None, str | None],
                               None] | None = None
        # An order's filled size grew (a fill event, a lookup): held stops follow it.
        self.on_filled: Callable[[Tracked, datetime], None] | None = None

    # ------------------------------------------------------------ the table

    def start(self, tracked: Tracked, transition: Transition, *, recorded: bool) -> None:
        """A new order (`place`), a held order's trigger: tracked, its commands carried out.
        `recorded`: the fenced commit that let it out already wrote its first `Record`."""
        self.tracked[tracked.oid] = tracked
        self._carry(tracked, transition, self.ctx.now(), recorded=recorded)

    def feed(self, tracked: Tracked, event: TableEvent, now: datetime | None = None) -> None:
        """One outside event through the table, and its commands carried out."""
        if self.tracked.get(tracked.oid) is not tracked:
            return  # ended meanwhile: nothing of it is left to manage
        now = now or self.ctx.now()
        self._carry(tracked, apply(tracked.record, event, now), now)

    def recover(self, tracked: Tracked, transition: Transition) -> list[Coroutine[Any, Any, None]]:
        """A record rebuilt from the store (`Recovered`): tracked, its commands carried out,
        the port calls returned for the start to await in order."""
        self.tracked[tracked.oid] = tracked
        return self._carry(tracked, transition, self.ctx.now(), spawn=False)

    def _carry(self, tracked: Tracked, transition: Transition, now: datetime, *,
               recorded: bool = False, spawn: bool = True) -> list[Coroutine[Any, Any, None]]:
        before, after = tracked.record, transition.record
        if transition.anomaly is not None:
            anomaly = transition.anomaly
            if anomaly.event in _REPLIES:  # the order channel was faster than the reply
                self.ctx.event("order.reply_after_ack", {"reply": anomaly.event,
                                                         "status": anomaly.status},
                               oid=tracked.oid)
            else:
                self.ctx.event("order.anomaly", {"what": anomaly.event,
                                                 "status": anomaly.status,
                                                 "why": anomaly.why}, oid=tracked.oid)
        commands = transition.commands
        tracked.record = after  # the rule side reads the order as the table left it
        steps = []
        if any(isinstance(c, Release) for c in commands):  # it ended, one way or another
            arm = next((c for c in commands if isinstance(c, ArmChildren)), None)
            steps.append(self._on_final(tracked, arm, now))  # let go before deciding again
        steps += [self._on_retry(tracked, command, now) if isinstance(command, RetryFiring)
                  else self._on_refused(tracked, command, now) for command in commands
                  if isinstance(command, (RetryFiring, BlockRule))]
        self._index(tracked)
        for command in commands:
            if isinstance(command, Record) and not recorded:
                try:
                    self._save(tracked, before, command, now, steps)
                except StorageFailed as err:  # nothing after an unwritten `Record`
                    tracked.record = before
                    for stop in apply(before, WriteFailed(str(err)), now).commands:
                        if isinstance(stop, StopWatcher):
                            self.ctx.fail(stop.reason, cause="storage")
                    raise
        calls: list[Coroutine[Any, Any, None]] = []
        for command in commands:
            if isinstance(command, Send):
                calls.append(self._send(tracked))
            elif isinstance(command, CancelOrder):
                calls.append(self._cancel(tracked))
            elif isinstance(command, LookUpOrder):
                calls.append(self._look_up(tracked))
            elif isinstance(command, Schedule):
                self._schedule(command, now)
            elif isinstance(command, Release):
                self.release(tracked, command.kept)
            elif isinstance(command, StopWatcher):
                self.ctx.fail(command.reason)
        self._announce(tracked, before, after)
        for step in steps:
            if step.then is not None:
                step.then()
        if after.filled > before.filled and self.on_filled is not None:
            self.on_filled(tracked, now)
        if after.filled > before.filled and self.oco is not None:
            self.oco.on_fill(tracked, now)  # an entry's `on exchange` bracket follows it
        if spawn:
            for call in calls:
                self.ctx.spawn(call)
            return []
        return calls

    def _index(self, tracked: Tracked) -> None:
        """`tracked` holds what is not final (a stop-loss proven not placed stays: sent again
        at its next trigger); `pending` holds what is unproven, by the rule it freezes."""
        record = tracked.record
        key = tracked.key
        if record.status in _UNPROVEN:
            self.pending[key] = tracked
        elif self.pending.get(key) is tracked:
            del self.pending[key]
        keep = not record.final or (record.status == "not_placed" and (
            record.held_as == "stop-loss" and not record.cancel))
        if not keep:
            self.tracked.pop(tracked.oid, None)

    def _save(self, tracked: Tracked, before: OrderRecord, command: Record, now: datetime,
              steps: list[Step]) -> None:
        """The `Record` first: the order as decided, its firing's move and the rule rows of
        the same step, in one commit. Fills are their own commits (`add_fill`): a record that
        changed only in its filled totals is not written again."""
        record = command.record
        moved = before.status != record.status
        if not moved and not steps and _same_but_fills(before, record):
            return
        rows = tuple(row for step in steps for row in step.rows)
        events = tuple(event for step in steps for event in step.events)
        self.ctx.store.save_order(
            record, now, command.event, dict(command.detail),
            firing_to=FIRING_MOVES.get((before.status, record.status)) if moved else None,
            also=rows, events=events)

    def _announce(self, tracked: Tracked, before: OrderRecord, after: OrderRecord) -> None:
        """A line of the output for each move a person follows."""
        if before.status == after.status:
            return
        oid, rule = tracked.oid, tracked.identity
        if before.status in _UNPROVEN and after.status in (
                "open", "cancel_requested", "filled", "canceled"):
            self._on_acknowledged(tracked, self.ctx.now())
            self.ctx.emit("acknowledged", {"rule": rule, "client_oid": oid,
                                           "order_id": after.exchange_id})
        if after.status == "unknown":
            self.ctx.emit("unknown", {"rule": rule, "client_oid": oid})
        elif after.status == "not_placed" and before.status in _UNPROVEN:
            self.ctx.emit("not_sent" if before.status == "pending" else "not_placed",
                          {"rule": rule, "client_oid": oid})
        elif after.status in ("filled", "canceled", "vanished"):
            self.ctx.emit(f"order.{after.status}", {"client_oid": oid})

    # ------------------------------------------------------------ timers

    def _schedule(self, command: Schedule, now: datetime) -> None:
        """A `cancel after` falls due on the watcher's clock; a retry (a lookup, a cancel
        asked again) after its wait in real time (a lookup: the table's interval or
        `resolve_interval_s`, the longer), seen by the table at its due time or later."""
        wait = max((command.at - now).total_seconds(), 0.0)
        if command.why == "look up":  # `resolve_interval_s` may ask for a longer one
            wait = max(wait, self.ctx.config.resolve_interval_s)
        due = 0.0 if command.why == "cancel after" else time.monotonic() + wait
        heapq.heappush(self._timers, (due, next(self._seq), command.client_oid, command.why,
                                      command.at))

    def next_cancel_after(self) -> datetime | None:
        """When the first `cancel after` falls due, on the watcher's clock (None: none)."""
        times = [at for _, _, _, why, at in self._timers if why == "cancel after"]
        return min(times) if times else None

    def busy(self) -> bool:
        """Whether an order waits on the exchange: a cancel not confirmed, an outcome not
        proven."""
        return any(t.status in ("cancel_requested", "unknown") for t in self.tracked.values())

    async def timer_job(self) -> None:
        """Every timer due, delivered as `TimerDue` (a stale one the table ignores)."""
        clock, now = time.monotonic(), self.ctx.now()
        later = []
        while self._timers and self._timers[0][0] <= clock:
            entry = heapq.heappop(self._timers)
            _, _, oid, why, at = entry
            if why == "cancel after" and at > now:
                later.append(entry)
                continue
            tracked = self.tracked.get(oid)
            if tracked is not None:
                self.feed(tracked, TimerDue(why), max(now, at))
        for entry in later:
            heapq.heappush(self._timers, entry)

    # ------------------------------------------------------------ the ports

    def fenced(self) -> None:
        """A commit just proved this watcher holds the lease (and renewed it)."""
        self.lease_renewed = time.monotonic()

    def check_fence(self, *, renewing: bool = False) -> None:
        """Right before a send: the lease stays valid for longer than the order's deadline
        window, so no other watcher can own the store while this order can still arrive.
        `renewing` (the heartbeat): the lease itself must not have expired, by this
        watcher's own clock, since it last held it. Once it did, another watcher may take
        the store over at any moment (a standby, a start blocked until now): renewing it
        then would race that takeover, so the lease counts as lost here as for a send."""
        window = 0.0 if renewing else self.ctx.config.order_window_ms / 1000
        ttl = self.ctx.config.lease_stale_s
        if time.monotonic() - self.lease_renewed > ttl - window:
            raise LeaseLostError(
                "this watcher may have lost the store's lease (it was paused or starved "
                f"for over {ttl - window:.1f} s since it last held it): it stopped sending "
                "and exits; another watcher may own the store now")

    async def _send(self, tracked: Tracked) -> None:
        if not self.ctx.trading or tracked.body is None:
            # The key was refused: nothing leaves; the outcome is proven by lookups.
            self.feed(tracked, Unknown("not sent: trading is stopped"))
            return
        self.check_fence()
        outcome = await self.ctx.venue.place(tracked.body, tracked.family)
        action = outcome.action
        # A reply after the exchange already showed the order (the order channel was
        # faster) changes nothing, even a timeout: the table says so (`reply_after_ack`).
        event: TableEvent
        if action is Action.OK and isinstance(outcome.data, dict):
            exchange_id = str(outcome.data.get("orderId") or outcome.data.get("id") or "")
            event = Acknowledged(exchange_id or None)
        elif action is Action.DUPLICATE:
            event = Unknown("duplicate clientOid: the order exists")
        elif action is Action.REJECT:
            event = Refused(f"refused by the exchange: {outcome.code} {outcome.message}"
                            .strip())
        elif action in (Action.NOT_SENT, Action.STOP):
            if action is Action.STOP:
                self.ctx.halt_trading(f"the exchange refused the API key ({outcome.message}); "
                                      "fix the key and restart the watcher")
            event = NotSent(outcome.message)
        else:  # UNKNOWN (and anything unexpected): looked up, never resent on a guess
            event = Unknown(outcome.message)
        self.feed(tracked, event)

    async def _cancel(self, tracked: Tracked) -> None:
        """One cancel request, answered to the table as one `CancelReply`. A stop order is
        cancelled by its id: without one yet, it is looked up first and asked again."""
        if tracked.family == "stop" and tracked.exchange_id is None:
            await self._look_up(tracked)
            self.feed(tracked, CancelReply("retry", "the stop order's id is not known yet"))
            return
        outcome = await self.ctx.venue.cancel(tracked.oid, tracked.symbol, tracked.family,
                                              tracked.exchange_id)
        result = {Action.OK: "confirmed", Action.ABSENT: "absent",
                  Action.REJECT: "final"}.get(outcome.action, "retry")
        if result != "confirmed":
            self.ctx.event("order.cancel_reply", {"result": outcome.action.name,
                                                  "attempt": tracked.record.attempts},
                           oid=tracked.oid)
        self.feed(tracked, CancelReply(result, outcome.message))

    async def _look_up(self, tracked: Tracked) -> None:
        """One lookup by clientOid, its fills stored, answered to the table as `LookedUp`."""
        if tracked.family == "oco" and self.oco is not None:
            await self.oco.look_up(tracked)
            return
        seen = await self.ctx.venue.look_up(tracked.oid, tracked.symbol, tracked.family)
        at = self.ctx.venue.server_now()
        if seen.kind == "found" and seen.state is not None:
            state: OrderState = seen.state
            await self._fills(tracked, state)
            event = LookedUp("found", at, state.active, state.filled_size, state.filled_funds,
                             state.order_id)
        elif seen.kind == "found":  # a stop order still waiting for its trigger
            event = LookedUp("found", at, True, exchange_id=seen.stop_id)
        else:
            event = LookedUp("absent" if seen.kind == "absent" else "failed", at)
        self.feed(tracked, event)

    async def _fills(self, tracked: Tracked, state: OrderState) -> None:
        if state.filled_size > 0:
            for item in await self.ctx.venue.fills_of(tracked.symbol, state.order_id):
                row = self.ctx.store.add_fill(item.trade_id, tracked.oid, price=item.price,
                                              size=item.size, fee=item.fee,
                                              fee_currency=item.fee_currency, time=item.time)
                if row is not None and self.on_fill is not None:
                    self.on_fill(tracked, item.trade_id, item.price, item.size, item.fee,
                                 item.fee_currency)

    async def poll_all(self) -> None:
        """Reconciliation: every order the exchange showed, looked up (a lost push, an order
        the exchange forgot); the table takes any lookup."""
        for tracked in list(self.tracked.values()):
            if self.ctx.stop.is_set():
                return
            record = tracked.record
            if record.status in ("open", "cancel_requested") and record.waiting is None:
                await self._look_up(tracked)

    # ------------------------------------------------------------ the exchange's events

    def on_private(self, event: object) -> None:
        try:
            if isinstance(event, OrderEvent):
                self._on_order_event(event)
            elif isinstance(event, StopOrderEvent):
                self._on_stop_event(event)
            elif isinstance(event, BalanceEvent):
                self.ctx.balances[event.currency] = event.available
        except Exception as error:
            self.ctx.fail_on(error)

    def on_bad(self, error: str) -> None:
        self.ctx.event("orders_feed.bad_payload", {"error": error})

    def _on_order_event(self, event: OrderEvent) -> None:
        oid = event.client_oid
        tracked = self.tracked.get(oid) if oid is not None else None
        if tracked is None or oid is None:
            return
        if tracked.family == "oco" and self.oco is not None:
            self.oco.on_event(tracked, event)  # a leg's event: the OCO is looked up
            return
        record = tracked.record
        filled, value = record.filled, record.filled_value
        if event.kind == "match" and event.trade_id and event.match_price and event.match_size:
            row = self.ctx.store.add_fill(event.trade_id, oid, price=event.match_price,
                                          size=event.match_size, fee=None, fee_currency=None,
                                          time=event.time)
            self.ctx.emit("fill", {"client_oid": oid, "price": str(event.match_price),
                                   "size": str(event.match_size)})
            if row is not None:
                filled, value = row.filled_size, row.filled_value
                if self.on_fill is not None:
                    self.on_fill(tracked, event.trade_id, event.match_price, event.match_size,
                                 None, None)
            self.feed(tracked, PartFilled(filled, value, event.order_id))
        elif event.kind == "filled":
            self.feed(tracked, Filled(max(filled, event.filled_size or ZERO), value,
                                      event.order_id))
        elif event.kind == "canceled":
            self.feed(tracked, Canceled(max(filled, event.filled_size or ZERO), value,
                                        event.order_id))
        else:  # open, received, update: it rests on the book
            self.feed(tracked, Opened(event.order_id))

    def _on_stop_event(self, event: StopOrderEvent) -> None:
        """A KuCoin stop order: `open` (resting, untriggered), `triggered` (it entered the book
        as an ordinary order with the same id and clientOid: its fills come on the order
        channel), `cancel` (removed before it triggered: final)."""
        # The event names the order by id only: one not acknowledged yet is settled by its
        # reply (or a lookup), never by a guess.
        tracked = next((t for t in self.tracked.values() if t.exchange_id == event.order_id),
                       None)
        if tracked is None:
            return
        self.ctx.event(f"stop.{event.kind}", {"stop_price": None if event.stop_price is None
                                              else format(event.stop_price, "f")},
                       oid=tracked.oid)
        if event.kind == "cancel":
            self.feed(tracked, Canceled(tracked.record.filled, tracked.record.filled_value))
        elif event.kind == "open":
            self.feed(tracked, Opened(event.order_id))

    # ------------------------------------------------------------ a person, a rule, a timer

    def ask_cancel(self, which: Iterable[Tracked], why: str) -> list[str]:
        """A cancel asked (a rule's action, `cancel after`, a removed rule, a stop-loss's
        trigger): the table makes it a state, retried until the exchange shows the order
        final. Returns the clientOids it concerns."""
        asked = []
        for tracked in list(which):
            if self.tracked.get(tracked.oid) is tracked:
                asked.append(tracked.oid)
                self.feed(tracked, CancelAsked(why))
        return asked

    def halt(self, everything: bool) -> list[str]:
        """The kill switch, to every order: the table keeps protective exits on a plain halt.
        Returns the clientOids the halt cancels."""
        asked = []
        for tracked in list(self.tracked.values()):
            record = tracked.record
            if not record.final and (everything or not record.protective):
                asked.append(tracked.oid)
            self.feed(tracked, Halt(everything))
        return asked

    def resolve(self, oid: str, placed: bool) -> bool:
        """`rules-engine resolve`: False when it is not an order of unknown outcome."""
        tracked = self.tracked.get(oid)
        if tracked is None or tracked.status != "unknown":
            return False
        self.feed(tracked, Resolved(placed))
        return True

    def retry_hook(self, tracked: Tracked, now: datetime) -> Step:
        """Recovery: a firing the store holds proven not placed is decided again."""
        return self._on_retry(tracked, RetryFiring(tracked.oid), now)

    def waiting(self, oids: Iterable[str]) -> list[str]:
        """Of `oids`, the ones not proven final yet (a cancel not yet confirmed)."""
        return [oid for oid in oids if oid in self.tracked
                and self.tracked[oid].status != "not_placed"]

    def release(self, tracked: Tracked, kept: Decimal) -> None:
        """An order leaves the open count; of its value it keeps `kept` (what it traded; 0
        when it never reached the exchange)."""
        if not tracked.counted:
            return
        tracked.counted = False  # released once
        if tracked.identity is not None and tracked.day is not None:  # a slice: its rule's
            self.exposure.settle(rule_of(tracked.identity), tracked.day, tracked.value, kept)
        else:
            self.exposure.open_orders = max(self.exposure.open_orders - 1, 0)


def _same_but_fills(before: OrderRecord, after: OrderRecord) -> bool:
    return before._replace(filled=after.filled, filled_value=after.filled_value,
                           lookups=after.lookups, attempts=after.attempts,
                           waiting=after.waiting, due=after.due) == after


def done_status(state: OrderState) -> str:
    """A done order as the store records it: filled when it traded its whole size (or, by
    funds, anything at all), else canceled (after a partial fill, or none)."""
    if state.filled_size > 0 and (state.size is None or state.filled_size >= state.size):
        return "filled"
    return "canceled"
