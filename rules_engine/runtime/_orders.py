"""The order manager: every order of the engine from its intent to a final state, through
the Venue port, each step recorded in the store before its side effect.

    intent committed -> send -> acknowledged | refused | unknown | not sent
    unknown -> looked up by clientOid -> adopted | proven not placed (after the deadline)
    open -> fills -> filled | canceled | vanished (unknown to the exchange after its deadline)
    cancel asked -> cancel requested -> retried with backoff until confirmed or final

Invariants held here, and nowhere else:

* A clientOid is sent only from a committed intent; a reply that comes after the exchange
  showed the order changes nothing; an unknown outcome is looked up, never resent.
* A cancel, once asked, is a state: retried with backoff until the exchange confirms it or
  shows the order final; the timer or halt that asked is satisfied only then.
* Every outside event (the exchange, a person, a timer) is total: in any state it has a
  defined result, at worst nothing and an `order.anomaly` event, never an exception.
* An order the store holds open that the exchange does not know, in two lookups after its
  deadline, is `vanished`: final, its share of the risk limits released.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from rules_engine.core.market import BalanceEvent, OrderEvent, OrderState, StopOrderEvent
from rules_engine.core.outcome import Action, Outcome
from rules_engine.engine import Arm, Fill, Lookup, Resolution, resolve_unknown
from rules_engine.engine._risk import Exposure
from rules_engine.runtime._context import Context, LeaseLostError

__all__ = ["CANCEL_BACKOFF", "OrderManager", "Pending", "Tracked"]

# A cancel not confirmed is asked again after 0.5 s, doubling to at most 10 s.
CANCEL_BACKOFF = (0.5, 10.0)


@dataclass
class Pending:
    """An order whose outcome is not proven yet (sent and unanswered, or unknown)."""

    oid: str
    identity: str
    number: int
    symbol: str
    family: str
    deadline: datetime | None
    arm: Arm | None
    lookups: list[Lookup] = field(default_factory=list)
    unknown: bool = False
    leg: str | None = None  # a bracket's stop-loss order (its own clientOid, no firing row)


@dataclass
class Tracked:
    """An order the store holds not final."""

    oid: str
    identity: str | None
    number: int | None
    symbol: str
    family: str
    size: Decimal | None
    exchange_id: str | None = None
    side: str = ""
    value: Decimal = Decimal(0)  # its share of the risk limits
    day: date | None = None  # the UTC day of its firing
    counted: bool = True  # in the risk limits' usage (a stop-loss shares its take-profit's)
    absent: list[Lookup] = field(default_factory=list)  # reconciliation's lookups


@dataclass
class Cancel:
    """A cancel asked and not confirmed yet."""

    why: str
    attempts: int = 0
    due: float = 0.0  # monotonic time of the next attempt


class OrderManager:
    def __init__(self, ctx: Context, *,
                 on_retry: Callable[[Pending, str, datetime], None],
                 on_refused: Callable[[Pending, str, datetime], None],
                 on_final: Callable[[Tracked, str, datetime, str], None],
                 on_acknowledged: Callable[[Pending, datetime], None],
                 is_engine_held: Callable[[str], bool]) -> None:
        """The rule side's hooks: `on_retry` (a firing proven not placed: decide it again),
        `on_refused` (block the rule), `on_final` (arm `after` rules, settle a bracket),
        `on_acknowledged` (the rule's timers), `is_engine_held` (not on the exchange)."""
        self.ctx = ctx
        self.pending: dict[str, Pending] = {}  # by identity: the rule is frozen
        self.tracked: dict[str, Tracked] = {}  # by clientOid
        self.cancels: dict[str, Cancel] = {}  # by clientOid: asked, not confirmed
        self.exposure = Exposure()
        self.lease_renewed = time.monotonic()  # the last commit that held the lease
        self._on_retry = on_retry
        self._on_refused = on_refused
        self._on_final = on_final
        self._on_acknowledged = on_acknowledged
        self._is_engine_held = is_engine_held

    def pending_for(self, oid: str) -> Pending | None:
        """The unproven firing (or stop-loss sale) a clientOid belongs to, if any."""
        return next((p for p in self.pending.values() if p.oid == oid), None)

    def anomaly(self, oid: str, what: str, **detail: Any) -> None:
        """An outside event the order's state does not expect: recorded, nothing done."""
        self.ctx.event("order.anomaly", {"what": what, **detail}, oid=oid)

    # ------------------------------------------------------------ sending

    def fenced(self) -> None:
        """A commit just proved this watcher holds the lease (and renewed it)."""
        self.lease_renewed = time.monotonic()

    def check_fence(self, family: str) -> None:
        """Right before a send: the lease stays valid for longer than the order's deadline
        window, so no other watcher can own the store while this order can still arrive."""
        window = self.ctx.config.order_window_ms / 1000
        ttl = self.ctx.config.lease_stale_s
        if time.monotonic() - self.lease_renewed > ttl - window:
            raise LeaseLostError(
                "this watcher may have lost the store's lease (it was paused or starved "
                f"for over {ttl - window:.1f} s since it last held it): it stopped sending "
                "and exits; another watcher may own the store now")

    async def send(self, pending: Pending, body: dict[str, Any]) -> None:
        if not self.ctx.trading:
            return  # the key was refused: the intent stays unproven, looked up later
        self.check_fence(pending.family)
        outcome = await self.ctx.venue.place(body, pending.family)
        now = self.ctx.now()
        action = outcome.action
        if self.pending.get(pending.identity) is not pending:
            # The exchange already showed the order (the order channel was faster than the
            # reply): it is adopted, and this reply, even a timeout, changes nothing.
            self.ctx.event("order.reply_after_ack", {"reply": action.name}, oid=pending.oid)
            return
        if action is Action.OK and isinstance(outcome.data, dict):
            exchange_id = str(outcome.data.get("orderId") or outcome.data.get("id") or "")
            self.acknowledged(pending, exchange_id or None, now, "accepted")
        elif action is Action.DUPLICATE:
            self.ctx.event("order.duplicate", {"why": "the clientOid exists: looking it up"},
                           oid=pending.oid)
            self.mark_unknown(pending, now, "duplicate clientOid: the order exists")
            await self.look_up(pending)
        elif action is Action.REJECT:
            self.refused(pending, outcome, now)
        elif action in (Action.NOT_SENT, Action.STOP):
            if action is Action.STOP:
                self.ctx.halt_trading(f"the exchange refused the API key ({outcome.message}); "
                                      "fix the key and restart the watcher")
            self.retry(pending, "not_sent", now, outcome.message)
        else:  # UNKNOWN (and anything unexpected): look it up, never resend on a guess
            self.mark_unknown(pending, now, outcome.message)

    def acknowledged(self, pending: Pending, exchange_id: str | None, now: datetime,
                     why: str) -> None:
        if self.pending.get(pending.identity) is not pending:
            return
        self.pending.pop(pending.identity, None)
        tracked = self.tracked.get(pending.oid)
        if tracked is not None and exchange_id:
            tracked.exchange_id = exchange_id
        self.ctx.store.settle(pending.oid, now, firing_to="acknowledged", order_to="open",
                              exchange_id=exchange_id, payload={"why": why})
        self._on_acknowledged(pending, now)
        self.ctx.emit("acknowledged", {"rule": pending.identity, "client_oid": pending.oid,
                                       "order_id": exchange_id})

    def release(self, tracked: Tracked | None, kept: Decimal) -> None:
        """A tracked order leaves the open count; of its value it keeps `kept` (what it
        traded; 0 when it never reached the exchange)."""
        if tracked is None or not tracked.counted:
            return
        if tracked.identity is not None and tracked.day is not None:
            self.exposure.settle(tracked.identity, tracked.day, tracked.value, kept)
        else:
            self.exposure.open_orders = max(self.exposure.open_orders - 1, 0)

    def refused(self, pending: Pending, outcome: Outcome, now: datetime) -> None:
        if self.pending.get(pending.identity) is not pending:
            return
        self.pending.pop(pending.identity, None)
        self.release(self.tracked.pop(pending.oid, None), Decimal(0))
        self.cancels.pop(pending.oid, None)
        reason = f"refused by the exchange: {outcome.code} {outcome.message}".strip()
        self._on_refused(pending, reason, now)

    def mark_unknown(self, pending: Pending, now: datetime, why: str) -> None:
        if pending.unknown:
            return
        pending.unknown = True
        self.ctx.store.settle(pending.oid, now, firing_to="unknown", payload={"why": why})
        self.ctx.emit("unknown", {"rule": pending.identity, "client_oid": pending.oid,
                                  "why": why})

    def retry(self, pending: Pending, status: str, now: datetime, why: str = "") -> None:
        """The order is proven not on the exchange: the rule decides the same firing again
        (same clientOid) once its condition holds on fresh data."""
        self.pending.pop(pending.identity, None)
        self.cancels.pop(pending.oid, None)
        if pending.leg is None:
            self.release(self.tracked.pop(pending.oid, None), Decimal(0))
        self._on_retry(pending, status or "not_placed", now)
        if why or status:
            self.ctx.emit(status, {"rule": pending.identity, "client_oid": pending.oid,
                                   "why": why})

    # ------------------------------------------------------------ unknown outcomes

    async def look_up(self, pending: Pending) -> None:
        """One lookup by clientOid of an order of unknown outcome, and what it proves."""
        seen = await self.ctx.venue.look_up(pending.oid, pending.symbol, pending.family)
        now = self.ctx.now()
        server_now = self.ctx.venue.server_now()
        kind = seen.kind if seen.kind in ("found", "absent") else "failed"
        pending.lookups.append(Lookup(kind, server_now))
        verdict = resolve_unknown(pending.lookups, pending.deadline)
        if verdict is Resolution.ADOPT:
            state = seen.state
            exchange_id = state.order_id if state is not None else seen.stop_id
            self.acknowledged(pending, exchange_id, now, "found by clientOid")
            tracked = self.tracked.get(pending.oid)
            if state is not None and tracked is not None:
                await self.update_from(tracked, state)
        elif verdict is Resolution.NOT_PLACED:
            self.retry(pending, "not_placed", now, "absent after the deadline in two lookups")

    async def resolve_job(self) -> None:
        for pending in [p for p in self.pending.values() if p.unknown]:
            if not self.ctx.stop.is_set():
                await self.look_up(pending)

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
        now = self.ctx.now()
        tracked.exchange_id = event.order_id
        tracked.absent.clear()
        pending = self.pending_for(oid)
        if pending is not None:
            self.acknowledged(pending, event.order_id, now, f"order event {event.kind}")
        if event.kind == "match" and event.trade_id and event.match_price and event.match_size:
            self.ctx.store.add_fill(event.trade_id, oid, price=event.match_price,
                                    size=event.match_size, fee=None, fee_currency=None,
                                    time=event.time)
            self.ctx.emit("fill", {"client_oid": oid, "price": str(event.match_price),
                                   "size": str(event.match_size)})
        if event.kind in ("filled", "canceled"):
            self.final(tracked, "filled" if event.kind == "filled" else "canceled", now)
        elif event.kind in ("open", "received"):
            self.ctx.store.settle(oid, now, order_to="open", exchange_id=event.order_id)

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
        now = self.ctx.now()
        self.ctx.event(f"stop.{event.kind}", {"stop_price": None if event.stop_price is None
                                              else format(event.stop_price, "f")},
                       oid=tracked.oid)
        if event.kind == "cancel":
            self.final(tracked, "canceled", now)

    def final(self, tracked: Tracked, status: str, now: datetime, why: str = "") -> None:
        """The order is final (filled, canceled, vanished): recorded with the `after` rules
        it arms (by `on_final`), its share of the limits released, its cancel satisfied."""
        if self.tracked.pop(tracked.oid, None) is None:
            return
        self.cancels.pop(tracked.oid, None)
        self._on_final(tracked, status, now, why)

    # ------------------------------------------------------------ looking orders up

    async def poll_all(self) -> None:
        for tracked in list(self.tracked.values()):
            if self.pending_for(tracked.oid) is not None or self._is_engine_held(tracked.oid):
                continue  # the resolver owns it, or it is held by the engine
            if self.ctx.stop.is_set():
                return
            await self.poll_order(tracked)

    async def poll_order(self, tracked: Tracked) -> None:
        """Bring a tracked order up to what the exchange shows. One the exchange does not
        know, in two lookups after its deadline, has vanished (reconciliation)."""
        seen = await self.ctx.venue.look_up(tracked.oid, tracked.symbol, tracked.family)
        if self.tracked.get(tracked.oid) is not tracked:
            return  # settled meanwhile
        if seen.kind == "found" and seen.state is not None:
            tracked.absent.clear()
            await self.update_from(tracked, seen.state)
        elif seen.kind == "found":  # a stop order still waiting for its trigger
            tracked.absent.clear()
            tracked.exchange_id = seen.stop_id or tracked.exchange_id
        elif seen.kind == "absent":
            tracked.absent.append(Lookup("absent", self.ctx.venue.server_now()))
            verdict = resolve_unknown(tracked.absent, self._deadline_of(tracked))
            if verdict is Resolution.NOT_PLACED:
                self.vanished(tracked, self.ctx.now())

    def _deadline_of(self, tracked: Tracked) -> datetime | None:
        row = self.ctx.store.order(tracked.oid)
        if row is None:
            return None
        deadline: datetime | None = row.deadline
        # An acknowledged order's deadline has passed once it was seen; a legacy order has
        # none: the exchange's silence is judged from the order's last change.
        if deadline is None:
            deadline = row.updated_at + timedelta(seconds=self.ctx.config.request_timeout_s)
        return deadline

    def vanished(self, tracked: Tracked, now: datetime) -> None:
        """Acknowledged once, unknown to the exchange now: final, with its own status."""
        if self.tracked.get(tracked.oid) is not tracked:
            return
        self.final(tracked, "vanished", now, "the exchange does not know this order after "
                   "its deadline (two lookups)")

    async def update_from(self, tracked: Tracked, state: OrderState) -> None:
        """Bring a tracked order up to what a REST lookup shows: fills, then the status."""
        tracked.exchange_id = state.order_id
        if state.filled_size > 0:
            for item in await self.ctx.venue.fills_of(tracked.symbol, state.order_id):
                self.ctx.store.add_fill(item.trade_id, tracked.oid, price=item.price,
                                        size=item.size, fee=item.fee,
                                        fee_currency=item.fee_currency, time=item.time)
        now = self.ctx.now()
        if state.active:
            self.ctx.store.settle(tracked.oid, now, order_to="open", exchange_id=state.order_id)
            return
        self.final(tracked, done_status(state), now)

    # ------------------------------------------------------------ cancels

    def ask_cancel(self, which: Iterable[Tracked], why: str) -> list[str]:
        """Ask for the cancel of each order on the exchange: a state from now on, retried
        until confirmed (`cancel_job`). Returns the clientOids asked. An order not on the
        exchange (engine-held) is the caller's; one already final or asked is left alone."""
        asked = []
        for tracked in which:
            if self.tracked.get(tracked.oid) is not tracked or self._is_engine_held(tracked.oid):
                continue
            if tracked.oid in self.cancels:
                continue
            self.cancels[tracked.oid] = Cancel(why)
            asked.append(tracked.oid)
        return asked

    def waiting(self, oids: Iterable[str]) -> list[str]:
        """Of `oids`, the ones still open on the exchange (a cancel not yet confirmed)."""
        return [oid for oid in oids if oid in self.tracked]

    async def cancel_job(self) -> None:
        """Each cancel due: asked of the exchange; the answer decides the next step. OK:
        the order event or a lookup confirms it; ABSENT: looked up (never assumed gone);
        anything else: asked again after the backoff."""
        clock = time.monotonic()
        for oid, ask in list(self.cancels.items()):
            if ask.due > clock or self.ctx.stop.is_set():
                continue
            tracked = self.tracked.get(oid)
            if tracked is None:
                self.cancels.pop(oid, None)
                continue
            if self.pending_for(oid) is not None:
                ask.due = clock + CANCEL_BACKOFF[0]  # not proven yet: the resolver first
                continue
            ask.attempts += 1
            low, high = CANCEL_BACKOFF
            ask.due = time.monotonic() + min(low * 2 ** (ask.attempts - 1), high)
            if tracked.family == "stop" and tracked.exchange_id is None:
                await self.poll_order(tracked)  # a stop order's cancel needs its id
                continue
            outcome = await self.ctx.venue.cancel(oid, tracked.symbol, tracked.family,
                                                  tracked.exchange_id)
            if ask.attempts == 1 or outcome.action is not Action.OK:
                self.ctx.event("order.cancel_requested", {
                    "why": ask.why, "result": outcome.action.name, "attempt": ask.attempts},
                    oid=oid)
            if outcome.action in (Action.OK, Action.ABSENT) and oid in self.tracked:
                await self.poll_order(tracked)  # confirmed only by what the exchange shows


def done_status(state: OrderState) -> str:
    """A done order as the store records it: filled when it traded its whole size (or, by
    funds, anything at all), else canceled (after a partial fill, or none)."""
    if state.filled_size > 0 and (state.size is None or state.filled_size >= state.size):
        return "filled"
    return "canceled"



_ = Fill  # re-exported for the rule side's hooks
