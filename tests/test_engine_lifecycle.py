"""The order's transition table (`engine/_lifecycle.py`): one example per move, the events
that crashed the watcher, and a property test over random event sequences with restarts."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules_engine.engine import (
    FINAL_STATUSES,
    PERSISTED_FIELDS,
    REOPENINGS,
    STATUS_TRANSITIONS,
    STATUSES,
    Acknowledged,
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
    Lookup,
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
    Resolution,
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
    apply,
    cancel_backoff,
    cancel_pending,
    halt_waits,
    place,
    resolve_unknown,
    restored,
)

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
OID = "re1234abcd-0000000000000000000000000a"
D = Decimal


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def new(status: str = "pending", **fields: Any) -> OrderRecord:
    base = OrderRecord(OID, status, "hf", "buy", D("2"), deadline=s(11))
    return base._replace(**fields)


def kinds(transition: Transition) -> list[str]:
    return [type(command).__name__ for command in transition.commands]


def of(transition: Transition, kind: type[Any]) -> list[Any]:
    return [command for command in transition.commands if isinstance(command, kind)]


# ---------------------------------------------------------------- placing and the reply


def test_a_new_intent_is_recorded_then_sent_once() -> None:
    t = place(OID, family="hf", side="buy", size=D("2"), deadline=s(11), cancel_at=s(60))
    assert t.record.status == "pending"
    assert kinds(t) == ["Record", "Send", "Schedule"]
    assert of(t, Schedule)[0] == Schedule(OID, s(60), "cancel after")


def test_an_engine_held_order_is_recorded_and_not_sent() -> None:
    t = place(OID, family="hf", side="sell", size=D("1"), deadline=None, held_as="trailing-stop")
    assert t.record.status == "held"
    assert kinds(t) == ["Record"]


def test_acknowledged_opens_the_order_with_its_id() -> None:
    t = apply(new(), Acknowledged("ex1"), s(1))
    assert (t.record.status, t.record.exchange_id) == ("open", "ex1")
    assert kinds(t) == ["Record"]
    assert of(t, Record)[0].event == "order.open"


def test_refused_releases_the_share_and_blocks_the_rule() -> None:
    t = apply(new(), Refused("400100 balance"), s(1))
    assert t.record.status == "refused"
    assert kinds(t) == ["Record", "Release", "BlockRule"]
    assert of(t, Release)[0].kept == 0
    assert of(t, BlockRule)[0].reason == "400100 balance"


def test_a_refused_stop_loss_sale_does_not_block_its_rule() -> None:
    t = apply(new(held_as="stop-loss"), Refused("no"), s(1))
    assert t.record.status == "refused" and not of(t, BlockRule)


def test_unknown_is_looked_up_at_once() -> None:
    t = apply(new(), Unknown("timeout"), s(1))
    assert (t.record.status, t.record.waiting) == ("unknown", "lookup")
    assert kinds(t) == ["Record", "LookUpOrder"]


def test_not_sent_is_not_placed_and_the_firing_is_decided_again() -> None:
    t = apply(new(), NotSent("429"), s(1))
    assert t.record.status == "not_placed"
    assert kinds(t) == ["Record", "Release", "RetryFiring"]


def test_sent_again_after_not_placed_sends_once_more_with_the_new_deadline() -> None:
    t = apply(new("not_placed"), SentAgain(s(40)), s(30))
    assert (t.record.status, t.record.deadline) == ("pending", s(40))
    assert kinds(t) == ["Record", "Send"]


def test_sent_again_of_a_trailing_stop_holds_it_again() -> None:
    t = apply(new("not_placed", held_as="trailing-stop"), SentAgain(None), s(30))
    assert t.record.status == "held" and not of(t, Send)


# ---------------------------------------------------------------- unknown: resolve_unknown


def test_unknown_found_is_adopted() -> None:
    t = apply(new("unknown"), LookedUp("found", s(2), exchange_id="ex9"), s(2))
    assert (t.record.status, t.record.exchange_id) == ("open", "ex9")


def test_unknown_found_done_is_final_with_its_fills() -> None:
    t = apply(new("unknown"), LookedUp("found", s(2), active=False, filled=D("2"),
                                       filled_value=D("200"), exchange_id="ex9"), s(2))
    assert t.record.status == "filled"
    assert of(t, Release)[0].kept == D("200")
    assert of(t, ArmChildren)[0].events == ("filled",)


def test_unknown_is_not_placed_only_after_the_deadline_with_two_absent_lookups() -> None:
    r = new("unknown")
    t = apply(r, LookedUp("absent", s(5)), s(5))  # before the deadline: proves nothing
    t = apply(t.record, LookedUp("absent", s(12)), s(12))
    assert t.record.status == "unknown"
    assert of(t, Schedule) == [Schedule(OID, s(13), "look up")]
    t = apply(t.record, LookedUp("failed", s(13)), s(13))
    assert t.record.status == "unknown"
    t = apply(t.record, LookedUp("absent", s(14)), s(14))
    assert t.record.status == "not_placed"
    assert kinds(t) == ["Record", "Release", "RetryFiring"]


def test_unknown_without_a_deadline_waits_for_the_exchange_or_a_person() -> None:
    r = new("unknown", deadline=None, family="stop")
    for second in (20, 30, 40):
        r = apply(r, LookedUp("absent", s(second)), s(second)).record
    assert r.status == "unknown"
    t = apply(r, Resolved(placed=False), s(50))
    assert t.record.status == "not_placed" and of(t, RetryFiring)


def test_a_person_settles_unknown_as_placed() -> None:
    assert apply(new("unknown"), Resolved(placed=True), s(3)).record.status == "open"


def test_a_restart_turns_pending_into_unknown_and_never_sends() -> None:
    t = apply(new("pending"), Recovered(), s(3))
    assert t.record.status == "unknown"
    assert kinds(t) == ["Record", "LookUpOrder"]


# ---------------------------------------------------------------- the exchange's events


def test_partial_fill_keeps_it_open_and_records_the_totals() -> None:
    t = apply(new("open"), PartFilled(D("1"), D("100")), s(3))
    assert (t.record.status, t.record.filled) == ("open", D("1"))
    assert of(t, Record)[0].event == "order.part_filled"


def test_fills_never_shrink() -> None:
    r = new("open", filled=D("1.5"), filled_value=D("150"))
    t = apply(r, PartFilled(D("1"), D("100")), s(3))
    assert t.record == r and t.commands == ()


def test_filled_releases_what_it_traded_and_arms_filled_children() -> None:
    t = apply(new("open"), Filled(D("2"), D("201")), s(3))
    assert t.record.status == "filled"
    assert of(t, Release) == [Release(OID, D("201"))]
    assert of(t, ArmChildren) == [ArmChildren(OID, ("filled",), D("2"), D("201"))]


def test_canceled_after_a_partial_fill_arms_both_kinds_of_children() -> None:
    t = apply(new("open"), Canceled(D("1"), D("100")), s(3))
    assert t.record.status == "canceled"
    assert of(t, ArmChildren)[0].events == ("filled", "canceled")


def test_the_first_event_from_the_exchange_settles_a_pending_order() -> None:
    assert apply(new(), Opened("ex1"), s(1)).record.status == "open"
    assert apply(new(), PartFilled(D("1"), D("1")), s(1)).record.status == "open"
    assert apply(new(), Filled(D("2"), D("2")), s(1)).record.status == "filled"


def test_a_reply_after_the_exchange_showed_the_order_changes_nothing() -> None:
    shown = apply(new(), Opened("ex1"), s(1)).record
    for reply in (Acknowledged("ex1"), Unknown("timeout"), Refused("x"), NotSent("x")):
        t = apply(shown, reply, s(2))
        assert t.record == shown and t.commands == ()
        assert t.anomaly is not None


# ---------------------------------------------------------------- events that crashed


def test_cancel_all_reaching_a_not_placed_order_is_defined() -> None:
    r = new("not_placed")
    t = apply(r, CancelAsked("cancel all of R"), s(1))
    assert t.record == r and t.commands == ()
    assert t.anomaly is not None and "nothing to cancel" in t.anomaly.why


def test_an_acknowledgement_for_an_open_or_filled_order_is_ignored() -> None:
    asked = apply(new("open", exchange_id="ex1"), CancelAsked("x"), s(0)).record
    for r in (new("open", exchange_id="ex1"), new("filled", exchange_id="ex1"), asked):
        t = apply(r, Acknowledged("ex1"), s(1))
        assert t.record == r and t.commands == () and t.anomaly is not None


def test_filled_after_canceled_the_exchange_wins() -> None:
    r = new("canceled", filled=D("1"), filled_value=D("100"))
    t = apply(r, Filled(D("2"), D("200")), s(1))
    assert (t.record.status, t.record.filled) == ("filled", D("2"))
    assert kinds(t) == ["Record"]  # released once already: nothing is counted twice
    assert t.anomaly is not None


def test_pending_asked_of_a_filled_order_sends_nothing() -> None:
    r = new("filled", filled=D("2"))
    for event in (SentAgain(s(40)), Trigger(D("2"), s(40))):
        t = apply(r, event, s(30))
        assert t.record == r and t.commands == () and t.anomaly is not None


# ---------------------------------------------------------------- cancel is a state


def test_a_cancel_of_an_open_order_is_recorded_before_it_is_sent() -> None:
    t = apply(new("open", exchange_id="ex1"), CancelAsked("cancel orders of R"), s(1))
    assert t.record.status == "cancel_requested"
    assert t.record.cancel == ("cancel orders of R",)
    assert kinds(t) == ["Record", "CancelOrder"]
    assert of(t, CancelOrder) == [CancelOrder(OID, "ex1")]


def test_a_cancel_reply_is_never_the_result_it_is_looked_up() -> None:
    asked = apply(new("open"), CancelAsked("x"), s(1)).record
    for reply in ("confirmed", "final", "absent"):
        t = apply(asked, CancelReply(reply), s(2))
        assert t.record.status == "cancel_requested" and kinds(t) == ["LookUpOrder"]


def test_a_failed_cancel_is_retried_with_backoff_until_the_exchange_shows_it_final() -> None:
    r = apply(new("open"), CancelAsked("halt"), s(0)).record
    now = s(0)
    waits = []
    for _ in range(7):
        t = apply(r, CancelReply("retry", "503"), now)
        (timer,) = of(t, Schedule)
        waits.append((timer.at - now).total_seconds())
        now = timer.at
        t = apply(t.record, TimerDue("cancel"), now)
        assert kinds(t) == ["CancelOrder"]
        r = t.record
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    still = apply(r, LookedUp("found", now, active=True), now)  # the cancel did not take
    assert still.record.status == "cancel_requested" and kinds(still) == []  # reply pending
    done = apply(r, Canceled(), now)
    assert done.record.status == "canceled" and not cancel_pending(done.record)


def test_a_resting_order_found_after_the_cancel_reply_is_cancelled_again() -> None:
    r = apply(new("open"), CancelAsked("x"), s(0)).record
    r = apply(r, CancelReply("confirmed"), s(1)).record
    t = apply(r, LookedUp("found", s(1), active=True), s(1))
    assert of(t, Schedule) == [Schedule(OID, s(1) + cancel_backoff(1), "cancel")]
    assert kinds(apply(t.record, TimerDue("cancel"), s(2))) == ["CancelOrder"]


def test_a_stale_timer_does_nothing() -> None:
    r = apply(new("open"), CancelAsked("x"), s(0)).record  # cancel in flight
    t = apply(r, TimerDue("cancel"), s(5))
    assert t.record == r and t.commands == ()


def test_a_cancel_asked_while_pending_is_sent_when_the_exchange_shows_the_order() -> None:
    r = apply(new(), CancelAsked("cancel after"), s(1)).record
    assert r.status == "pending" and r.cancel == ("cancel after",)
    t = apply(r, Acknowledged("ex1"), s(2))
    assert t.record.status == "cancel_requested"
    assert kinds(t) == ["Record", "CancelOrder"]


def test_a_cancel_asked_before_the_order_is_proven_absent_needs_nothing_more() -> None:
    r = apply(new("unknown"), Halt(everything=False), s(1)).record
    t = apply(r, Resolved(placed=False), s(2))
    assert t.record.status == "not_placed"
    assert kinds(t) == ["Record", "Release"]  # not decided again: the cancel is satisfied


def test_cancel_after_timer_is_kept_until_the_cancel_is_confirmed() -> None:
    r = new("open", cancel_at=s(30))
    assert apply(r, TimerDue("cancel after"), s(29)).commands == ()  # early
    t = apply(r, TimerDue("cancel after"), s(30))
    assert t.record.status == "cancel_requested" and kinds(t) == ["Record", "CancelOrder"]
    assert cancel_pending(t.record)
    again = apply(t.record, TimerDue("cancel after"), s(31))
    assert again.commands == ()  # asked once; the cancel state retries it
    rebuilt = apply(restored(t.record), Recovered(), s(40))
    assert kinds(rebuilt) == ["CancelOrder"]  # a restart asks again at once


def test_an_order_the_exchange_lost_vanishes_after_two_agreeing_lookups() -> None:
    r = new("open", exchange_id="ex1", filled=D("0.5"), filled_value=D("50"))
    t = apply(r, NotFound(s(5)), s(5))  # before its deadline: not counted
    t = apply(t.record, LookedUp("absent", s(12)), s(12))
    assert t.record.status == "open"
    t = apply(t.record, LookedUp("found", s(13), exchange_id="ex1"), s(13))  # seen again
    t = apply(t.record, LookedUp("absent", s(14)), s(14))
    t = apply(t.record, LookedUp("absent", s(15)), s(15))
    assert t.record.status == "vanished"
    assert of(t, Release) == [Release(OID, D("50"))] and not of(t, ArmChildren)


def test_a_cancel_answered_absent_ends_vanished_never_assumed_canceled() -> None:
    r = apply(new("open"), CancelAsked("halt"), s(20)).record
    r = apply(r, CancelReply("absent"), s(20)).record
    r = apply(r, LookedUp("absent", s(21)), s(21)).record
    assert r.status == "cancel_requested" and r.due is not None
    r = apply(r, TimerDue("look up"), r.due).record
    assert r.status == "cancel_requested"
    assert apply(r, LookedUp("absent", s(23)), s(23)).record.status == "vanished"


# ---------------------------------------------------------------- halt


def test_a_plain_halt_keeps_protective_orders_and_halt_all_cancels_them() -> None:
    stop = new("open", family="stop", side="sell", exchange_id="s1")
    held = new("held", held_as="trailing-stop")
    plain = [apply(r, Halt(everything=False), s(1)) for r in (stop, held)]
    assert all(t.commands == () for t in plain)
    t = apply(stop, Halt(everything=True), s(1))
    assert t.record.status == "cancel_requested" and t.record.cancel == ("halt --all",)
    t = apply(held, Halt(everything=True), s(1))
    assert t.record.status == "not_placed"  # dropped: it was never on the exchange
    assert kinds(t) == ["Record", "Release"]


def test_halt_waits_names_what_is_not_confirmed() -> None:
    records = [new("open", client_oid="a"), new("filled", client_oid="b"),
               new("open", client_oid="c", family="stop", side="sell"),
               new("pending", client_oid="d")]
    after = [apply(r, Halt(everything=False), s(1)).record for r in records]
    assert [r.client_oid for r in halt_waits(after, everything=False)] == ["a", "d"]
    assert [r.client_oid for r in halt_waits(after, everything=True)] == ["a", "c", "d"]
    confirmed = apply(after[0], Canceled(exchange_id="x"), s(2)).record
    assert [r.client_oid for r in halt_waits([confirmed, after[1]], False)] == []


# ---------------------------------------------------------------- held orders


def test_a_trigger_sends_a_held_order_once() -> None:
    r = new("held", held_as="stop-loss", size=D("3"))
    t = apply(r, Trigger(D("2.5"), s(20)), s(10))
    assert (t.record.status, t.record.size, t.record.deadline) == ("pending", D("2.5"), s(20))
    assert kinds(t) == ["Record", "Send"]
    assert apply(t.record, Trigger(D("2.5"), s(21)), s(11)).commands == ()


def test_a_stop_loss_proven_absent_waits_for_its_trigger_again() -> None:
    r = new("unknown", held_as="stop-loss")
    t = apply(r, Resolved(placed=False), s(1))
    assert t.record.status == "not_placed" and not of(t, RetryFiring)
    assert kinds(apply(t.record, Trigger(D("2"), s(30)), s(20))) == ["Record", "Send"]


def test_a_cancel_or_halt_all_ends_the_wait_of_a_stop_loss_proven_absent() -> None:
    waiting = apply(new("unknown", held_as="stop-loss"), Resolved(placed=False), s(1)).record
    for event in (CancelAsked("cancel all"), Halt(everything=True)):
        t = apply(waiting, event, s(2))
        assert t.anomaly is None and kinds(t) == ["Record"]  # the cancel is persisted
        assert t.record.status == "not_placed" and t.record.cancel
        assert apply(t.record, Trigger(D("2"), s(30)), s(20)).commands == ()  # never sent
    kept = apply(waiting, Halt(everything=False), s(2))  # a plain halt keeps protection
    assert kept.record == waiting and kept.commands == ()


def test_storage_failure_stops_and_keeps_the_record() -> None:
    r = new("open")
    t = apply(r, StorageFailed("disk full"), s(1))
    assert t.record == r
    assert t.commands == (StopWatcher("the store cannot be written: disk full"),)


def test_the_table_is_closed_and_its_reopenings_are_the_documented_ones() -> None:
    assert {a for a, _ in STATUS_TRANSITIONS} | {b for _, b in STATUS_TRANSITIONS} == set(
        STATUSES)
    assert set(REOPENINGS) == {("not_placed", "pending"), ("not_placed", "held"),
                               ("canceled", "filled")}


def test_an_event_of_another_kind_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        apply(new(), "filled", s(1))  # type: ignore[arg-type]


# ---------------------------------------------------------------- the property test

Step = tuple[int, int, int, int, bool, int, float]
AMOUNTS = (D(0), D("0.5"), D("1"), D("2"), D("2.5"))
IDS = (None, "ex1", "ex2")
STEP = st.tuples(st.integers(0, 18), st.integers(0, 4), st.integers(0, 4),
                 st.integers(-5, 40), st.booleans(), st.integers(0, 2),
                 st.sampled_from([0, 0.5, 1, 3, 10]))


def _event(at: datetime, step: Step) -> OrderEvent | str:
    """Anything the exchange, a person, a timer or the manager may deliver, in any state:
    a drawn step (kind, two amounts, a time offset, a flag, an id, the time that passed)
    made into an event at `at`. (Plain integers are drawn and turned into events here:
    drawing the events themselves made hypothesis spend 20 s on a second of table.)"""
    kind, a, b, offset, flag, pick, _ = step
    when = at + timedelta(seconds=offset)
    filled, value, oid = AMOUNTS[a], AMOUNTS[b] * 100, IDS[pick]
    deadline = when if flag else None
    events: list[OrderEvent | str] = [
        Acknowledged(oid), Refused("400100"), Unknown("timeout"), NotSent("429"),
        LookedUp(("found", "absent", "failed")[pick], when, flag, filled, value, oid),
        Opened(oid), PartFilled(filled, value, oid), Filled(filled, value, oid),
        Canceled(filled, value, oid), NotFound(when),
        CancelAsked(("cancel all of R", "rule removed")[flag]),
        CancelReply(("confirmed", "final", "absent", "retry", "garbage")[a]),
        Halt(flag), TimerDue(("cancel", "look up", "cancel after")[pick]),
        Trigger(None if a == 0 else filled, deadline), SentAgain(deadline),
        Resolved(flag), StorageFailed("disk full"), "restart",
    ]
    return events[kind]


class _Checked:
    """Drives one order through the table as a manager would, checking every transition."""

    def __init__(self, first: Transition) -> None:
        self.record = first.record
        self.persisted = first.record
        self.sends = len(of(first, Send))
        # A Send is allowed only for a held order's trigger or after a proof of absence.
        self.may_send = first.record.status == "held"
        self.queue: list[Command] = []
        self.timers: list[tuple[datetime, int, str]] = []
        self.seq = 0
        self._take(first.commands)

    def _take(self, commands: Sequence[Command]) -> None:
        for command in commands:
            if isinstance(command, Record):
                self.persisted = command.record
            elif isinstance(command, Schedule):
                self.seq += 1
                heapq.heappush(self.timers, (command.at, self.seq, command.why))
            else:
                self.queue.append(command)

    def step(self, event: OrderEvent | str, now: datetime) -> Transition:
        before = self.record
        if event == "restart":  # only what `Record` persisted survives; nothing in flight
            self.queue.clear()
            self.timers.clear()
            self.may_send = self.may_send and self.persisted.status != "pending"
            event = Recovered()
            before = restored(self.persisted)
            assert before[: len(PERSISTED_FIELDS)] == self.record[: len(PERSISTED_FIELDS)]
        assert not isinstance(event, str)
        t = apply(before, event, now)
        self._check(before, event, t)
        self.record = t.record
        if not isinstance(event, StorageFailed):
            self._take(t.commands)
        record = self.record
        if record.status in ("unknown", "cancel_requested"):  # never forgotten: a cancel or
            # lookup is in flight, or a timer is set for the retry the record expects
            in_flight = record.waiting is not None and any(
                isinstance(c, CancelOrder | LookUpOrder) for c in self.queue)
            timed = record.due is not None and any(at == record.due for at, _, _ in self.timers)
            assert in_flight or timed, record
        return t

    def _check(self, before: OrderRecord, event: OrderEvent, t: Transition) -> None:
        after = t.record
        moved = before.status != after.status
        if moved:
            assert (before.status, after.status) in STATUS_TRANSITIONS
        if moved and before.status in FINAL_STATUSES:  # final stays final, but for these
            allowed = {("not_placed", "pending"): (SentAgain, Trigger),
                       ("not_placed", "held"): (SentAgain,),
                       ("canceled", "filled"): (Filled, PartFilled, Canceled, LookedUp)}
            assert isinstance(event, allowed[(before.status, after.status)])
            if after.status == "filled" and not isinstance(event, Filled):  # fills grew
                assert after.filled > before.filled
                assert after.size is None or after.filled >= after.size
        if after.status in ("not_placed", "held"):
            self.may_send = True
        sends = of(t, Send)
        assert len(sends) <= 1
        if sends:  # never sent twice: only on entering pending, once per intent or proof
            assert moved and after.status == "pending" and self.may_send
            self.may_send = False
            self.sends += 1
        changed = before[: len(PERSISTED_FIELDS)] != after[: len(PERSISTED_FIELDS)]
        if changed:  # persisted before any side effect
            assert isinstance(t.commands[0], Record) and t.commands[0].record == after
        else:
            assert not of(t, Record)
        into_final = moved and after.status in FINAL_STATUSES and (
            before.status not in FINAL_STATUSES)
        assert len(of(t, Release)) == (1 if into_final else 0)
        if of(t, ArmChildren):
            assert into_final and after.status in ("filled", "canceled")
        if isinstance(event, StorageFailed):
            assert after == before and kinds(t) == ["StopWatcher"]
        if moved and before.status == "unknown" and after.status == "not_placed" and (
            isinstance(event, LookedUp | NotFound)
        ):  # unknown resolves only as `resolve_unknown` says
            assert resolve_unknown(_with(before, event), before.deadline) is (
                Resolution.NOT_PLACED)
        if moved and after.status == "vanished":  # two agreeing lookups after the deadline
            absent = {lookup.at for lookup in _with(before, event) if lookup.result == "absent"
                      and (before.deadline is None or lookup.at > before.deadline)}
            assert len(absent) >= 2

    def drain(self, now: datetime, exists: bool, flaky: int) -> datetime:
        """The manager answers every command and timer; the exchange tells the truth (the
        order rests there if `exists`, until cancelled) after failing its first `flaky`
        cancels and lookups. Every move to a final status agrees with that truth."""
        canceled = False
        cancels = lookups = 0
        for _ in range(400):
            if self.record.final and not self.queue:
                break
            if self.queue:
                command = self.queue.pop(0)
                if isinstance(command, Send):
                    event: OrderEvent = Acknowledged("ex7") if exists else Unknown("timeout")
                elif isinstance(command, CancelOrder):
                    cancels += 1
                    canceled = canceled or (exists and cancels > flaky)
                    event = CancelReply("retry", "503") if cancels <= flaky else (
                        CancelReply("confirmed" if exists else "absent"))
                elif isinstance(command, LookUpOrder):
                    lookups += 1
                    event = LookedUp("failed", now) if lookups <= flaky else LookedUp(
                        "found", now, active=not canceled,
                                     filled=self.record.filled,
                                     filled_value=self.record.filled_value) if exists else (
                        LookedUp("absent", now))
                else:
                    continue  # Release, ArmChildren, RetryFiring, BlockRule: bookkeeping
            elif self.timers:
                at, _, why = heapq.heappop(self.timers)
                now = max(now, at)
                event = TimerDue(why)
            else:
                break
            before = self.record
            after = self.step(event, now).record
            if after.final and before.status not in (after.status, "held"):
                truth = ("filled", "canceled") if exists else ("not_placed", "vanished")
                assert after.status in truth, (before, event, after)
        return now


def _with(record: OrderRecord, event: OrderEvent) -> tuple[Lookup, ...]:
    if isinstance(event, LookedUp):
        return (*record.lookups, Lookup(event.result, event.at))
    if isinstance(event, NotFound):
        return (*record.lookups, Lookup("absent", event.at))
    return record.lookups


@settings(max_examples=1500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(drain=st.tuples(st.booleans(), st.integers(0, 3)), steps=st.lists(STEP, max_size=30),
       held=st.sampled_from([None, "trailing-stop", "stop-loss"]),
       family=st.sampled_from(["hf", "stop"]),
       cancel_after=st.booleans())
def test_random_event_sequences_never_raise_never_send_twice_never_forget_a_cancel(
    drain: tuple[bool, int], steps: list[Step], held: str | None, family: str,
    cancel_after: bool
) -> None:
    exists, flaky = drain  # the exchange at the end: has the order? fails how many requests?
    first = place(OID, family=family, side="sell", size=D("2"),
                  deadline=s(11) if family == "hf" else None, held_as=held,
                  cancel_at=s(20) if cancel_after else None)
    order = _Checked(first)
    now = T0
    for step in steps:
        now += timedelta(seconds=step[-1])
        order.step(_event(now, step), now)
    asked = cancel_pending(order.record)
    status = order.record.status
    now = order.drain(now, exists, flaky)
    end = order.record
    if asked or status == "cancel_requested":  # a cancel asked is never forgotten
        if end.status == "unknown":  # only an order no lookup can prove waits for a person
            assert end.deadline is None and not exists
        else:
            assert end.final, end
    if status == "unknown" and end.status == "unknown":
        assert end.deadline is None and not exists
