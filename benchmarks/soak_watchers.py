"""The soak's audit of its watcher processes (beside `soak_session.py`): how each one ended,
and that no order reached the exchange from a watcher after a later one took the lease.

**How each watcher ended.** The soak ends a watcher only with its own SIGKILL (the last one
with its own SIGTERM; with `--pause`, a SIGSTOP and SIGCONT in between). Any other end is a
watcher that stopped on its own, an internal error most likely, and fails the soak, even
when the soak's SIGKILL then lands on a process that was already shutting down or already
gone. It shows in three places, all read: the exit status (anything but death by SIGKILL),
the watcher's own output (an `error` or `watcher.stopped` line, a `rules-engine run: error:`
line, a traceback), and the store's event log (an `error` or `watcher.stopped` row the
output lacks: the SIGKILL fell between the row and the line). The one expected self-stop is
a paused watcher that, once resumed, finds that another one took its lease.

**Orders from a watcher that lost its lease.** The sandbox does not record which connection
sent an order, so what is used is what can be proven:

* which watcher sent an order: the watcher logs a line naming the clientOid right before
  every send (`fired` for a firing's order, sent again only under a new `fired` line;
  `triggered` for a trailing stop; `stop_loss.sent` for a bracket's stop-loss); an order is
  taken as sent by the latest watcher that logged one (the most favourable reading);
* when a watcher took the lease: at the latest at its `recovered` line (logged after the
  lease is taken, before anything is sent), or its first `recovered` row in the store, or a
  line carrying the lease's `epoch` (once the store has one: taken the same way);
* when the exchange accepted the order: its `createdAt` on the sandbox's clock, minus the
  clock skew the soak had set then (known to the millisecond around each change); where a
  clock set back makes that ambiguous, the earliest reading not before the send line.

An order whose earliest possible acceptance is after a later watcher took the lease, at
the latest, counts: nothing of it is an estimate in the order's disfavour.
"""

from __future__ import annotations

import json
import math
import re
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["LEASE_LOST", "Life", "SkewChange", "audit_lease", "audit_store_stops",
           "earliest_base_ms", "ending"]

SELF_EXITS = "watchers that ended on their own"
LOST_LEASE_ORDERS = "orders from a watcher that lost its lease"
# Lines a watcher logs right before it sends an order (the clientOid in `client_oid`).
SEND_EVENTS = ("fired", "triggered", "stop_loss.sent")
STOP_EVENTS = ("error", "watcher.stopped")
# How a watcher says it lost its lease (today's heartbeat error; the fencing's own words).
LEASE_LOST = re.compile(r"LeaseHeld|no longer owns|lease[ ._](was )?lost|lost (its|the) lease",
                        re.IGNORECASE)
ASKED_TO_STOP = "asked to stop"  # the reason of a watcher stopped by SIGTERM


def _ms(at: str | datetime) -> int:
    moment = datetime.fromisoformat(at) if isinstance(at, str) else at
    if moment.tzinfo is None:  # SQLite gives the stored UTC time back naive
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


@dataclass
class Life:
    """One watcher process of the soak: what the soak did to it, and what its output says."""

    n: int
    log: Path
    spawned_ms: int
    ended_ms: int | None = None  # when the soak saw it end (it died at or before this)
    code: int | None = None  # its exit status (-9: died of SIGKILL)
    kill_sent: bool = False  # the soak sent it SIGKILL
    how: str = ""  # the moment the soak chose to kill it
    paused: bool = False  # stopped with SIGSTOP while another watcher took the lease
    final: bool = False  # the last watcher, stopped with SIGTERM
    inc: Any = None  # the harness's Incarnation, while it runs
    starting_ms: int | None = None
    acquired_ms: int | None = None  # the lease was taken at the latest by then
    stops: list[tuple[str, str]] = field(default_factory=list)  # (event, reason)
    lease_stops: set[str] = field(default_factory=set)  # reasons the watcher marked `cause: lease`
    fatal: str = ""  # a `rules-engine run: error:` line or a traceback's last line
    tail: list[str] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)  # clientOid -> its last send line

    def read(self) -> None:
        """What its output says (its stderr, as the soak saved it)."""
        if not self.log.exists():
            return
        traceback = False
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.strip():
                self.tail = [*self.tail[-4:], line.strip()[:300]]
            data: Any = None
            if line.startswith("{"):
                try:
                    data = json.loads(line)
                except ValueError:
                    data = None
            if not isinstance(data, dict) or not isinstance(data.get("event"), str):
                if line.startswith("rules-engine run: error:"):
                    self.fatal = line.strip()
                elif line.startswith("Traceback"):
                    traceback = True
                elif traceback and line and not line.startswith(" "):
                    self.fatal, traceback = line.strip(), False
                continue
            self._event(data["event"], data)

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        at = data.get("at")
        try:
            at_ms = _ms(str(at)) if at else None
        except ValueError:
            at_ms = None
        if at_ms is None:
            return
        if kind == "watcher.starting" and self.starting_ms is None:
            self.starting_ms = at_ms
        if kind in STOP_EVENTS:
            reason = str(data.get("error") or data.get("reason") or "")
            self.stops.append((kind, reason))
            if data.get("cause") == "lease":  # the watcher's own word, whatever the wording
                self.lease_stops.add(reason)
            return
        if (kind == "recovered" or ("epoch" in data and not LEASE_LOST.search(kind))) and (
                self.acquired_ms is None):
            self.acquired_ms = at_ms
        oid = data.get("client_oid")
        if kind in SEND_EVENTS and oid and not data.get("held"):
            self.sent[str(oid)] = at_ms  # a held trailing stop leaves only when `triggered`

    def is_lease_stop(self, reason: str) -> bool:
        return reason in self.lease_stops or bool(LEASE_LOST.search(reason))

    def lost_its_lease(self) -> bool:
        return any(self.is_lease_stop(reason) for _, reason in self.stops) or bool(
            LEASE_LOST.search(self.fatal))


def ending(life: Life) -> str | None:
    """Why a watcher ended on its own, or None when only the soak's own signals ended it
    (SIGKILL; SIGTERM for the last one; losing the lease for a paused one)."""
    own_stops = [(kind, reason) for kind, reason in life.stops
                 if not (life.final and kind == "watcher.stopped" and reason == ASKED_TO_STOP)]
    if life.paused and life.lost_its_lease() and not [
            r for k, r in own_stops if k == "error" and not life.is_lease_stop(r)]:
        return None  # the expected end of a watcher resumed after another took its lease
    said = "; ".join(f"{kind}: {reason}" for kind, reason in own_stops)
    if life.fatal and life.fatal not in said:
        said = f"{said}; {life.fatal}" if said else life.fatal
    if life.final:
        if life.code == 0 and not said:
            return None
        return (f"the last watcher did not stop cleanly on SIGTERM (exit {life.code})"
                + (f": {said}" if said else ""))
    if life.code == -signal.SIGKILL and life.kill_sent and not said:
        return None
    if life.code == -signal.SIGKILL and life.kill_sent:
        status = "stopped on its own; the soak's SIGKILL landed while it shut down"
    elif life.kill_sent:
        status = f"exit {life.code} before the soak's SIGKILL landed"
    elif life.code is not None and life.code < 0:
        status = f"killed by {signal.Signals(-life.code).name}, not sent by the soak"
    else:
        status = f"exit {life.code}, not killed by the soak"
    return f"watcher {life.n} ({life.how}): {status}: " + (
        said or "no reason given; its last lines: " + " | ".join(life.tail[-3:]))


def audit_store_stops(lives: Sequence[Life], events: Iterable[Any], add: Any,
                      counted: set[int]) -> int:
    """The store's `error` and `watcher.stopped` rows that no watcher's output shows (a
    SIGKILL between the row and its line): each one is a watcher that stopped on its own,
    unless the watchers then running (`counted`: their numbers) were counted already.
    Returns how many such rows the store holds."""
    logged = {(kind, reason) for life in lives for kind, reason in life.stops}
    seen = 0
    for event in events:
        if event.kind not in STOP_EVENTS:
            continue
        seen += 1
        payload = event.payload or {}
        reason = str(payload.get("error") or payload.get("reason") or "")
        if (event.kind, reason) in logged:
            continue  # the watcher's own line: judged with the rest of its end
        at = _ms(event.at)
        alive = [life for life in lives if life.spawned_ms <= at
                 and (life.ended_ms is None or at <= life.ended_ms)]
        lease = payload.get("cause") == "lease" or LEASE_LOST.search(reason)
        if lease and any(life.paused for life in alive):
            continue
        if alive and all(life.n in counted for life in alive):
            continue
        who = ", ".join(f"watcher {life.n}" for life in alive) or "no watcher then running"
        add(SELF_EXITS, f"the store's event log has {event.kind} at {_iso(at)} ({who}), "
            f"absent from the output: {reason}")
    return seen


@dataclass
class SkewChange:
    """A clock skew the soak set on the sandbox: applied at some moment in [lo_ms, hi_ms]
    (around the admin call); `sure` is False when the call failed (maybe never applied)."""

    lo_ms: float
    hi_ms: float
    offset_ms: int
    sure: bool = True


def earliest_base_ms(created_ms: int, changes: Sequence[SkewChange],
                     not_before: float = -math.inf) -> float:
    """The earliest unskewed time, not before `not_before` (when the order was sent), at
    which the sandbox can have stamped `created_ms` on its skewed clock, given the skews the
    soak set (in the order it set them, from 0). A clock set back makes a stamp ambiguous:
    the send's time rules out the readings before it."""
    segments = [SkewChange(-math.inf, -math.inf, 0), *changes]
    best = math.inf
    for k, seg in enumerate(segments):
        # In force from its change until the next sure change (an unsure one may not apply).
        end = next((s.hi_ms for s in segments[k + 1:] if s.sure), math.inf)
        base = created_ms - seg.offset_ms
        if seg.lo_ms <= base <= end and base >= not_before:
            best = min(best, base)
    if best == math.inf:  # nothing fits (should not happen): the most favourable reading
        best = max(created_ms - max(seg.offset_ms for seg in segments), not_before)
    return best


def audit_lease(lives: Sequence[Life], orders: Iterable[dict[str, Any]], prefix: str,
                changes: Sequence[SkewChange], add: Any) -> dict[str, int]:
    """Every exchange order of this engine against the watchers' leases (module docstring).
    Returns figures."""
    # In the order they took the lease (with `--standby N` a standby started earlier may take
    # it after one started later); without standbys that is the order they were started in.
    takers = sorted((life for life in lives if life.acquired_ms is not None),
                    key=lambda life: (life.acquired_ms or 0, life.n))
    order = {life.n: i for i, life in enumerate(takers)}
    checked = unnamed = 0
    margin = math.inf  # the least time between an order and the next watcher's lease
    for item in orders:
        oid = str(item.get("clientOid") or "")
        if not prefix or not oid.startswith(prefix):
            continue
        senders = [life for life in lives if oid in life.sent]
        if not senders:
            unnamed += 1  # adopted from before the soak, or a line never written
            continue
        checked += 1
        sender = max(senders, key=lambda life: (order.get(life.n, -1), life.n))
        accepted = earliest_base_ms(int(item.get("createdAt") or 0), changes,
                                    not_before=min(life.sent[oid] for life in senders))
        rank = order.get(sender.n)
        next_ = (takers[rank + 1:] if rank is not None
                 else [q for q in takers if q.n > sender.n])  # never logged taking it
        after = [q.acquired_ms for q in next_ if q.acquired_ms is not None]
        if after:
            margin = min(margin, min(after) - accepted)
        later = [q for q in next_ if q.acquired_ms is not None and q.acquired_ms < accepted]
        if not later:
            continue
        taker = later[-1]
        assert taker.acquired_ms is not None
        if sender.ended_ms is not None and sender.ended_ms <= taker.acquired_ms:
            state = (f"ended {(taker.acquired_ms - sender.ended_ms) / 1000:.3f} s before "
                     "(the order was in flight)")
        else:
            state = "still running" + (" (it had been paused)" if sender.paused else "")
        add(LOST_LEASE_ORDERS,
            f"{oid} ({item.get('symbol')} {item.get('side')}) accepted by the exchange at "
            f"{_iso(accepted)} at the earliest, sent by watcher {sender.n} (its line at "
            f"{_iso(sender.sent[oid])}); watcher {taker.n} had taken the lease by "
            f"{_iso(taker.acquired_ms)}; watcher {sender.n} was {state}")
    return {"orders checked against the lease": checked,
            "orders no watcher's output names": unnamed,
            "watchers that took the lease": len(takers),
            "least time from an order to the next lease taken (ms)":
                None if margin == math.inf else round(margin)}
