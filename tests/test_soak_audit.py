"""The soak's audits (`benchmarks/soak_session.py`, `benchmarks/soak_watchers.py`) catch what
they claim to: each check is fed a record with one defect planted and must count it, and the
same record without it must pass. (The soak itself runs as its own step of `.ci/run`, not in
the test suite.)"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from crash_support import Incarnation, StoreRecord
from soak_session import (
    MAX_OPEN_ORDERS,
    STALE_BOUND_MS,
    Audit,
    SoakSession,
    _sign,
)
from soak_watchers import (
    LOST_LEASE_ORDERS,
    SELF_EXITS,
    Life,
    SkewChange,
    audit_lease,
    audit_store_stops,
    earliest_base_ms,
    ending,
)

from rules_engine.store._schema import Event, Firing

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
MS0 = int(T0.timestamp() * 1000)
PREFIX = "reabc"


def _history(peak: int = 3) -> dict[str, Any]:
    rows = [[100, MS0, "60000", "0.5", "60001", "0.4"],
            [101, MS0 + 1000, "60000.5", "0.2", "60001", "0.4"],
            [102, MS0 + 2000, "60001", "0.1", "60002", "0.3"]]
    return {"BTC-USDT": {"rows": rows, "open_orders_peak": peak},
            "ETH-USDT": {"rows": [], "open_orders_peak": peak}}


def _firing(number: int, *, seq: int, at: datetime, bid: str = "60000", state: str = "live",
            identity: str = "crash.rules:mb_btc", oid: str | None = None) -> Firing:
    return Firing(identity=identity, number=number, version=1, client_oid=oid,
                  inputs={"values": {"BTC-USDT bid": bid}, "at": at.isoformat(),
                          "books": {"BTC-USDT": {"sequence": seq, "state": state}}},
                  intent=None, status="acknowledged", created_at=at)


def _store(*firings: Firing) -> StoreRecord:
    return StoreRecord("engine", PREFIX, list(firings), {}, [], [], {})


@pytest.fixture
def session(tmp_path: Path) -> SoakSession:
    return SoakSession(tmp_path, seconds=1, seed=1, log=lambda line: None)


def test_a_firing_on_the_exchanges_book_of_the_moment_passes(session: SoakSession) -> None:
    out = Audit()
    session._audit_data(_store(_firing(1, seq=100, at=T0 + timedelta(milliseconds=300))),
                        _history(), out)
    assert out.problems == {} and out.figures["book inputs checked"] == 1


def test_stale_and_wrong_data_are_counted(session: SoakSession) -> None:
    late = T0 + timedelta(milliseconds=1000 + STALE_BOUND_MS + 1)
    out = Audit()
    session._audit_data(_store(
        _firing(1, seq=100, at=late),  # sequence 101 came out long before this decision
        _firing(2, seq=101, at=T0, state="syncing"),  # the book was not live
        _firing(3, seq=101, at=T0 + timedelta(seconds=1), bid="59000"),  # not the exchange's
        _firing(4, seq=150, at=T0),  # a sequence the exchange never had
    ), _history(), out)
    assert out.count("fires on stale data") == 2
    assert out.count("fires on data the exchange never showed") == 2
    assert "moved past" in out.problems["fires on stale data"][0]


def _order(oid: str, **fields: Any) -> dict[str, Any]:
    return {"clientOid": oid, "symbol": "BTC-USDT", **fields}


def test_limit_breaches_are_counted_from_the_exchanges_record(session: SoakSession) -> None:
    capped = [_firing(n, seq=100, at=T0, identity="capped_a", oid=f"{PREFIX}-{n}")
              for n in range(1, 7)]
    orders = {f"x{n}": _order(f"{PREFIX}-{n}", type="market", funds="11") for n in range(1, 7)}
    out = Audit()
    session._audit_limits(_store(*capped[:5]), dict(list(orders.items())[:5]), _history(), out)
    assert out.problems == {}  # five orders of 11 USDT: 55, under 60
    orders["big"] = _order(f"{PREFIX}-big", type="limit", price="60000", size="0.001")  # 60
    orders["eth"] = _order(f"{PREFIX}-eth", type="market", funds="5", symbol="SOL-USDT")
    out = Audit()
    session._audit_limits(_store(*capped), orders, _history(peak=MAX_OPEN_ORDERS + 1), out)
    problems = out.problems["limit breaches"]
    assert len(problems) == 4, problems
    assert any("max_order_notional" in p for p in problems)
    assert any("allowed_symbols" in p for p in problems)
    assert any("max_rule_notional" in p and "66" in p for p in problems)
    assert any("max_open_orders" in p for p in problems)


def test_secrets_are_found_in_any_file_but_the_exchanges_own(session: SoakSession) -> None:
    workdir = session.workdir
    (workdir / "sandbox.json").write_text(session.secret)  # where the secret belongs
    (workdir / "watcher-0001.log").write_text('{"event": "fired"}\n')
    out = Audit()
    session._audit_secrets(out)
    assert out.problems == {}
    (workdir / "watcher-0002.log").write_text(f"oops {session.passphrase}\n")
    out = Audit()
    session._audit_secrets(out)
    assert out.problems["secrets found"] == ["the passphrase is in watcher-0002.log (1 times)"]
    (workdir / "watcher-0002.log").unlink()
    # A store row holding the passphrase as signed: found in the table (and the file).
    engine = create_engine(session.db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE events (payload TEXT)"))
        conn.execute(text("INSERT INTO events VALUES (:p)"),
                     {"p": "header " + _sign(session.secret, session.passphrase)})
    engine.dispose()
    out = Audit()
    session._audit_secrets(out)
    found = out.problems["secrets found"]
    assert "the signed passphrase is in the store's table events" in found


# ---------------------------------------------------------------- how each watcher ended


def _watcher_script(lines: list[dict[str, Any]], then: str) -> str:
    """A stand-in for a watcher process: it writes `lines` to stderr as the watcher does
    (JSON, one a line, with its time), then runs `then`."""
    return ("import json, os, sys, time\n"
            f"for line in {lines!r}:\n"
            "    sys.stderr.write(json.dumps({'at': time.strftime('%Y-%m-%dT%H:%M:%S+00:00', "
            "time.gmtime()), **line}) + '\\n')\n"
            "    sys.stderr.flush()\n" + then)


async def _one_watcher(session: SoakSession, script: str, after: str | None) -> None:
    """Run the stand-in as the soak runs a watcher: killed with SIGKILL at once after the line
    `after` (or after its output ended), then accounted for by the soak."""
    session.n += 1
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    inc = Incarnation(proc, session.workdir / f"watcher-{session.n:04d}.log")
    session.lives.append(Life(session.n, session.workdir / f"watcher-{session.n:04d}.log",
                              int(time.time() * 1000), inc=inc))
    if after is None:
        await asyncio.wait_for(inc.eof.wait(), 20)
    else:
        assert await inc.wait_for(after, 20)
    inc.kill()  # the soak's SIGKILL, right after: the process may already be gone
    await session._account(inc, "fired", time.monotonic())


ILLEGAL = "IllegalTransition: order NOT_PLACED -> CANCELED"


def test_a_watcher_that_exits_on_its_own_right_before_its_kill_is_counted(
        session: SoakSession) -> None:
    """Issue 12, item 4: the SIGKILL found the watcher gone, and that was filed as a missed
    kill. Now its exit status and its own lines count it, with the reason."""
    lines = [{"event": "recovered"}, {"event": "error", "error": ILLEGAL},
             {"event": "watcher.stopped", "reason": ILLEGAL}]
    asyncio.run(_one_watcher(session, _watcher_script(
        lines, "print('rules-engine run: error: the watcher stopped', file=sys.stderr)\n"
               "sys.exit(2)\n"), after=None))
    assert session.result.kills == 0
    [message] = session.result.self_exits
    assert message.startswith("watcher 1 (fired): ") and ILLEGAL in message, message
    # The control: a watcher that was running when the SIGKILL came is a kill, nothing else.
    asyncio.run(_one_watcher(session, _watcher_script(
        [{"event": "recovered"}, {"event": "fired", "client_oid": "x"}], "time.sleep(30)\n"),
        after="fired"))
    assert session.result.kills == 1 and len(session.result.self_exits) == 1


def test_a_watcher_shutting_down_on_an_error_when_killed_is_counted(
        session: SoakSession) -> None:
    """Exit status -9 from the soak's own SIGKILL, but the watcher had already stopped on an
    internal error and was closing down: its `error` line counts it."""
    asyncio.run(_one_watcher(session, _watcher_script(
        [{"event": "recovered"}, {"event": "error", "error": ILLEGAL}], "time.sleep(30)\n"),
        after="error"))
    assert session.result.kills == 0
    [message] = session.result.self_exits
    assert "landed while it shut down" in message and ILLEGAL in message, message


def _life(n: int, tmp: Path, **fields: Any) -> Life:
    return Life(n, tmp / f"watcher-{n:04d}.log", MS0, **fields)


def test_how_each_end_is_judged(tmp_path: Path) -> None:
    killed = _life(1, tmp_path, code=-signal.SIGKILL, kill_sent=True)
    assert ending(killed) is None
    gone = _life(2, tmp_path, code=1, kill_sent=True, tail=["Traceback", "KeyError: 'x'"])
    assert "exit 1 before the soak's SIGKILL landed" in (ending(gone) or "")
    assert "KeyError" in (ending(gone) or "")  # no reason line: its last lines say it
    foreign = _life(3, tmp_path, code=-signal.SIGSEGV)
    assert "killed by SIGSEGV, not sent by the soak" in (ending(foreign) or "")
    lease = "heartbeat: LeaseHeld: this watcher no longer owns the store"
    paused = _life(4, tmp_path, code=2, paused=True, stops=[("error", lease)])
    assert ending(paused) is None  # resumed after another took its lease: expected
    paused.stops.append(("error", ILLEGAL))
    assert ILLEGAL in (ending(paused) or "")  # but not with another error beside it
    assert ending(_life(5, tmp_path, code=2, stops=[("error", lease)])) is not None
    # The watcher marks a lease stop with `cause: lease`: judged by that field, whatever the
    # wording (a check right before a send words it "may have lost the store's lease").
    fenced = _life(7, tmp_path, code=2, paused=True)
    fenced.log.write_text(json.dumps({
        "event": "error", "at": "2026-12-04T17:00:00+00:00", "cause": "lease",
        "error": "this watcher may have lost the store's lease (it was paused or starved "
                 "for over 2.0 s since it last held it): it stopped sending and exits"}) + "\n",
        encoding="utf-8")
    fenced.read()
    assert fenced.lost_its_lease()
    assert ending(fenced) is None
    final = _life(6, tmp_path, code=0, final=True,
                  stops=[("watcher.stopped", "asked to stop")])
    assert ending(final) is None
    final.code = 2
    assert "did not stop cleanly on SIGTERM (exit 2)" in (ending(final) or "")


def test_a_stop_row_in_the_store_missing_from_the_output_is_counted(tmp_path: Path) -> None:
    """A SIGKILL between the store's `error` row and the watcher's line: the row counts it."""
    first = _life(1, tmp_path, code=-signal.SIGKILL, kill_sent=True, ended_ms=MS0 + 5000)
    last = _life(2, tmp_path, code=0, final=True, ended_ms=MS0 + 30_000,
                 stops=[("watcher.stopped", "asked to stop")])
    last.spawned_ms = MS0 + 6000
    rows = [Event(at=T0 + timedelta(seconds=29), kind="watcher.stopped",
                  payload={"reason": "asked to stop"})]  # the last one's, in its output
    audit = Audit()
    assert audit_store_stops([first, last], rows, audit.add, set()) == 1
    assert audit.problems == {}
    rows.append(Event(at=T0.replace(tzinfo=None) + timedelta(seconds=2), kind="error",
                      payload={"error": ILLEGAL}))  # SQLite gives it back naive
    assert audit_store_stops([first, last], rows, audit.add, set()) == 2
    [message] = audit.problems[SELF_EXITS]
    assert "(watcher 1)" in message and ILLEGAL in message
    audit = Audit()
    audit_store_stops([first, last], rows, audit.add, {1})  # watcher 1 is counted already
    assert audit.problems == {}


# ---------------------------------------------------------------- orders after a lost lease


def _lines(path: Path, *lines: tuple[int, str, dict[str, Any]]) -> None:
    """A watcher's output as it writes it: (ms after T0, event, fields) a line."""
    path.write_text("".join(json.dumps({"at": (T0 + timedelta(milliseconds=ms)).isoformat(),
                                        "event": kind, **data}) + "\n"
                            for ms, kind, data in lines), encoding="utf-8")


def _two_watchers(tmp: Path, *, first_ends: int) -> list[Life]:
    """Watcher 1 takes the lease at T0 and sends a, b, d and e; watcher 2 starts at 5 s,
    takes the lease by 6 s (its `recovered` line), sends c and sends e again."""
    one, two = _life(1, tmp, ended_ms=MS0 + first_ends), _life(2, tmp, ended_ms=MS0 + 20_000)
    two.spawned_ms = MS0 + 5000
    _lines(one.log, (-500, "watcher.starting", {}), (0, "recovered", {}),
           (1000, "fired", {"client_oid": f"{PREFIX}a"}),
           (2000, "fired", {"client_oid": f"{PREFIX}b"}),
           (2100, "fired", {"client_oid": f"{PREFIX}d"}),
           (2200, "fired", {"client_oid": f"{PREFIX}e"}),
           (2300, "fired", {"client_oid": f"{PREFIX}h", "held": True}))  # a trailing stop
    _lines(two.log, (5500, "watcher.starting", {}), (6000, "recovered", {}),
           (7000, "fired", {"client_oid": f"{PREFIX}c"}),
           (7100, "fired", {"client_oid": f"{PREFIX}e"}),  # proven not placed: sent again
           (7200, "triggered", {"client_oid": f"{PREFIX}h"}),
           (7300, "stop_loss.sent", {"client_oid": f"{PREFIX}s"}))
    for life in (one, two):
        life.read()
    return [one, two]


def _placed(oid: str, at_ms: int) -> dict[str, Any]:
    return {"clientOid": f"{PREFIX}{oid}", "symbol": "BTC-USDT", "side": "buy",
            "createdAt": MS0 + at_ms}


def test_an_order_accepted_after_a_later_watcher_took_the_lease_is_counted(
        tmp_path: Path) -> None:
    lives = _two_watchers(tmp_path, first_ends=3000)
    assert lives[1].acquired_ms == MS0 + 6000 and lives[1].starting_ms == MS0 + 5500
    assert set(lives[0].sent) == {f"{PREFIX}{x}" for x in "abde"}  # not the held one
    fine = [_placed("a", 1100), _placed("c", 7050), _placed("e", 7150), _placed("h", 7250),
            _placed("s", 7350), {"clientOid": "someone-else", "createdAt": MS0 + 9000}]
    audit = Audit()
    figures = audit_lease(lives, fine, PREFIX, [], audit.add)
    assert audit.problems == {}
    assert figures["orders checked against the lease"] == 5
    assert figures["least time from an order to the next lease taken (ms)"] == 6000 - 1100
    # b left watcher 1 before its kill and reached the exchange after watcher 2 had the lease.
    audit = Audit()
    audit_lease(lives, [*fine, _placed("b", 6100)], PREFIX, [], audit.add)
    [message] = audit.problems[LOST_LEASE_ORDERS]
    assert f"{PREFIX}b" in message and "sent by watcher 1" in message
    assert "watcher 2 had taken the lease" in message and "in flight" in message
    # The same from a watcher still running (paused past its lease, then resumed).
    lives = _two_watchers(tmp_path, first_ends=30_000)
    lives[0].paused = True
    audit = Audit()
    audit_lease(lives, [_placed("b", 6100)], PREFIX, [], audit.add)
    assert "still running (it had been paused)" in audit.problems[LOST_LEASE_ORDERS][0]


def test_the_lease_audit_reads_created_at_on_the_unskewed_clock(tmp_path: Path) -> None:
    """d was accepted at 2.2 s, on a sandbox clock set 20 s ahead at 1.5 s: its createdAt
    reads 22.2 s, long after watcher 2 took the lease. Unskewed, it is fine; a skew set
    after it was placed does not excuse it."""
    lives = _two_watchers(tmp_path, first_ends=3000)
    late = [_placed("d", 22_200)]
    ahead = [SkewChange(MS0 + 1500, MS0 + 1510, 20_000)]
    audit = Audit()
    audit_lease(lives, late, PREFIX, ahead, audit.add)
    assert audit.problems == {}
    assert earliest_base_ms(MS0 + 22_200, ahead) == MS0 + 2200
    audit = Audit()
    audit_lease(lives, late, PREFIX, [], audit.add)
    assert audit.count(LOST_LEASE_ORDERS) == 1
    audit = Audit()
    audit_lease(lives, late, PREFIX, [SkewChange(MS0 + 23_000, MS0 + 23_010, 20_000)],
                audit.add)
    assert audit.count(LOST_LEASE_ORDERS) == 1
    # A skew whose setting failed may or may not be in force: the favourable reading wins.
    assert earliest_base_ms(MS0 + 22_200, [SkewChange(MS0 + 1500, MS0 + 1510, 20_000, False)]
                            ) == MS0 + 2200


def test_a_clock_set_back_is_read_no_earlier_than_the_send(tmp_path: Path) -> None:
    """The sandbox's clock set 20 s back at 4 s: b, sent at 2 s, accepted at 6.1 s (after
    watcher 2 took the lease), reads -13.9 s. Read with the old offset that time is possible
    for the clock, but not for an order sent at 2 s: it counts."""
    lives = _two_watchers(tmp_path, first_ends=3000)
    back = [SkewChange(MS0 + 4000, MS0 + 4010, -20_000)]
    assert earliest_base_ms(MS0 - 13_900, back) == MS0 - 13_900
    assert earliest_base_ms(MS0 - 13_900, back, not_before=MS0 + 2000) == MS0 + 6100
    audit = Audit()
    audit_lease(lives, [_placed("b", -13_900)], PREFIX, back, audit.add)
    assert audit.count(LOST_LEASE_ORDERS) == 1
    audit = Audit()
    audit_lease(lives, [_placed("b", -14_100)], PREFIX, back, audit.add)  # 5.9 s: before
    assert audit.problems == {}
