"""A person's controls over the watcher on a store: the kill switch, settling an order,
unblocking a rule.

    rules-engine halt [--all] [--wait SECONDS] [--db URL | --mode MODE]
    rules-engine resume [--db URL | --mode MODE]
    rules-engine resolve CLIENT_OID placed|not-placed [--db URL | --mode MODE]
    rules-engine unblock RULE [--db URL | --mode MODE]

`halt [--wait SECONDS]`: the running watcher stops firing and cancels its open orders except
protective exits (which it keeps managing); `--all` cancels those too. Exit 0 once the
exchange has confirmed every cancel; exit 1 naming the orders still open after `--wait`
seconds (default 10: the watcher keeps retrying their cancels); exit 2 at once when no
watcher runs on the store (no live lease), or after 10 s if the running one did not answer.
Either way the switch holds, across restarts, until `resume`, and every message names the
store it acted on. The store is found as by every command (`cli/_stores.py`). A watcher
started while it holds starts halted.

`resolve`: for an order whose outcome the exchange cannot prove (a legacy or stop order that
timed out): `placed` adopts it, `not-placed` lets its firing be decided again under the same
clientOid. A running watcher applies it within a second; with none running, the store is
settled directly and the next start acts on it. Exit 1 when the clientOid is not an order of
unknown outcome.

`unblock`: a rule blocked by a refused order or a risk limit starts again, as if the edit that
fixed it had been made, once its cause is fixed outside the rule (a deposit, a limit raised).
A running watcher applies it within a second and evaluates the rule at once; with none
running, the request holds and the next start applies it. Exit 1 when the rule is not
blocked.
"""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rules_engine.cli._stores import redact, watcher_alive
from rules_engine.cli.record import _Failed, store_options, with_store

__all__ = ["register"]

ACK_TIMEOUT = 10.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    halt = subparsers.add_parser(
        "halt", help="the kill switch: stop firing and cancel open orders",
        description="Stop the watcher on this store from firing and cancel its open orders "
        "(protective exits kept unless --all); holds across restarts until `resume`.",
    )
    halt.add_argument("--all", action="store_true", help="cancel protective exits too")
    halt.add_argument("--wait", type=_seconds, default=10.0, metavar="SECONDS",
                      help="how long to wait for every cancel to be confirmed (default 10)")
    store_options(halt)
    halt.set_defaults(handler=lambda a: _run(a, _halt))
    resume = subparsers.add_parser("resume", help="lift the kill switch",
                                   description="Lift the kill switch: the watcher fires again.")
    store_options(resume)
    resume.set_defaults(handler=lambda a: _run(a, _resume))
    resolve = subparsers.add_parser(
        "resolve", help="settle an order whose outcome the exchange cannot prove",
        description="Settle an order of unknown outcome by hand: placed (adopt it) or "
        "not-placed (its firing may be decided again, same clientOid).",
    )
    resolve.add_argument("client_oid", metavar="CLIENT_OID")
    resolve.add_argument("outcome", choices=("placed", "not-placed"))
    store_options(resolve)
    resolve.set_defaults(handler=lambda a: _run(a, _resolve))
    unblock = subparsers.add_parser(
        "unblock", help="let a blocked rule fire again once its cause is fixed",
        description="A rule blocked by a refused order or a risk limit starts again (its "
        "firing count kept, so its next order has a new clientOid).",
    )
    unblock.add_argument("rule", metavar="RULE", help="the rule's name (or identity)")
    store_options(unblock)
    unblock.set_defaults(handler=lambda a: _run(a, _unblock))


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError("give a number of seconds from 0 to 3600")
    return value


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} (pid {os.getpid()})"


def _run(args: argparse.Namespace, body: Any) -> int:
    return with_store(args, body)


def _answered(done: Callable[[], bool]) -> bool:
    """Whether the running watcher answered a request (`done`) within ACK_TIMEOUT."""
    deadline = time.monotonic() + ACK_TIMEOUT
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(0.1)
    return False


def _halt(store: Any, args: argparse.Namespace) -> int:
    where = redact(args.store_url)
    now = datetime.now(UTC)
    running = watcher_alive(store, now)
    request = store.request_halt(bool(args.all), now, _who())
    if not running:
        print(f"rules-engine halt: error: no watcher is running on {where}; the switch is "
              "recorded and holds: a watcher that starts on this store starts halted",
              file=sys.stderr)
        return 2
    if not _answered(lambda: store.halt_acknowledged() == request):
        print(f"rules-engine halt: error: the watcher on {where} did not acknowledge within "
              "10 s; the switch holds and a watcher that starts on this store starts halted",
              file=sys.stderr)
        return 2
    # Acknowledged: firing stopped. Done only once every cancel it asked is confirmed by
    # the exchange; what is still open at the deadline is named (the watcher keeps trying).
    deadline = time.monotonic() + args.wait
    progress = store.halt_progress() or {}
    while time.monotonic() < deadline:
        progress = store.halt_progress() or {}
        if progress.get("request") == request and not progress.get("open"):
            break
        time.sleep(0.1)
    still = [str(oid) for oid in progress.get("open") or []]
    if progress.get("request") != request or still:
        print(f"rules-engine halt: firing stopped on {where}, but {len(still)} order(s) are "
              f"still open on the exchange after {args.wait:g} s (their cancels are not "
              "confirmed yet; the watcher keeps retrying them, `rules-engine status` shows "
              "them): " + ", ".join(still), file=sys.stderr)
        return 1
    asked = int(progress.get("asked") or 0)
    print(f"halted {where}: the watcher stopped firing; {asked} cancel(s) confirmed by the "
          "exchange" + ("" if args.all else " (protective exits kept)")
          + "; `rules-engine resume` lifts it")
    return 0


def _resume(store: Any, args: argparse.Namespace) -> int:
    where = redact(args.store_url)
    now = datetime.now(UTC)
    if store.resume(now, _who()):
        print(f"resumed {where}: " + ("the watcher fires again" if watcher_alive(store, now)
              else "no watcher is running on it; one that starts on it fires"))
    else:
        print(f"the kill switch was not on for {where}"
              + ("" if watcher_alive(store, now) else " (and no watcher is running on it)"))
    return 0


def _resolve(store: Any, args: argparse.Namespace) -> int:
    oid, placed = args.client_oid, args.outcome == "placed"
    firing = store.firing_of(oid)
    if firing is None or firing.status not in ("sent", "unknown"):
        state = "no such order" if firing is None else f"its firing is {firing.status}"
        raise _Failed(f"{oid} is not an order of unknown outcome ({state})", code=1)
    now = datetime.now(UTC)
    if watcher_alive(store, now):
        store.request_resolution(oid, placed, now, _who())
        if _answered(lambda: oid not in store.resolutions()):
            print(f"{oid}: settled as {args.outcome} by the running watcher")
            return 0
        print("rules-engine resolve: error: the watcher did not take it within 10 s; it "
              "stays requested", file=sys.stderr)
        return 2
    # No watcher: settle the store itself; the next start acts on it.
    if firing.status == "sent":
        store.settle(oid, now, firing_to="unknown", payload={"why": "settled by a person"})
    if placed:
        store.settle(oid, now, firing_to="acknowledged", order_to="open",
                     payload={"why": f"settled by {_who()}: placed"})
    else:
        store.settle(oid, now, firing_to="not_placed", order_to="not_placed",
                     payload={"why": f"settled by {_who()}: not placed"})
    print(f"{oid}: settled as {args.outcome} (no watcher running: the next start acts on it)")
    return 0


def _unblock(store: Any, args: argparse.Namespace) -> int:
    identity = args.rule
    state = store.rule_state(identity)
    if state is None:
        raise _Failed(f"no rule {identity!r} on this store (`rules-engine status` lists them)",
                      code=1)
    if state.status != "blocked":
        raise _Failed(f"{identity} is {state.status}, not blocked: nothing to unblock", code=1)
    now = datetime.now(UTC)
    store.request_unblock(identity, now, _who())
    if not watcher_alive(store, now):
        print(f"{identity}: unblock requested (blocked by: {state.reason or 'unknown'}); no "
              "watcher is running: the next start applies it")
        return 0
    if _answered(lambda: identity not in store.unblocks()):
        return _unblocked(identity, state, store.rule_state(identity))
    print("rules-engine unblock: error: the watcher did not take it within 10 s; it stays "
          "requested", file=sys.stderr)
    return 2


def _unblocked(identity: str, before: Any, after: Any) -> int:
    """What the running watcher made of the request, from the rule's state before and after."""
    if after is None or (after.status == "blocked" and after.firings == before.firings):
        raise _Failed(f"the watcher did not unblock {identity} (`rules-engine audit --rule "
                      f"{identity} --kind unblock` says why)", code=1)
    if after.status == "blocked":
        raise _Failed(f"{identity} was unblocked, fired again and is blocked again: "
                      f"{after.reason or 'unknown'}", code=1)
    print(f"{identity}: unblocked by the running watcher (now {after.status}; it was "
          f"blocked by: {before.reason or 'unknown'})")
    return 0
