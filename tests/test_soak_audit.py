"""The soak's audits (`benchmarks/soak_session.py`) catch what they claim to: each check is fed
a record with one defect planted and must count it, and the same record without it must
pass. (The soak itself runs as its own step of `.ci/run`, not in the test suite.)"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from crash_support import StoreRecord
from soak_session import (
    MAX_OPEN_ORDERS,
    STALE_BOUND_MS,
    Audit,
    SoakSession,
    _sign,
)

from rules_engine.store._schema import Firing

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
