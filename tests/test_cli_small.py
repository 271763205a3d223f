"""The small things: --version, a closed pipe, audit's --kind and --since, reset."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from rules_engine.cli import main
from rules_engine.store import Store


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def made_store(path: Path, venue: str | None = None) -> str:
    url = f"sqlite:///{path}"
    store = Store(url)
    store.migrate()
    if venue is not None:
        store.check_venue(venue)
    store.close()
    return url


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"rules-engine {version('rules-engine')}"


def test_a_closed_pipe_ends_quietly_without_a_traceback(tmp_path: Path) -> None:
    url = made_store(tmp_path / "s.sqlite")
    store = Store(url)
    now = datetime.now(UTC)
    with store.session() as session, session.begin():
        from rules_engine.store._schema import Event

        session.add_all(Event(at=now, kind="feed.live", identity=None, client_oid=None,
                              payload={"n": n, "pad": "x" * 200}) for n in range(3000))
    store.close()
    # `rules-engine audit | head -1`: 600 kB of output, the reader gone after one line
    process = subprocess.Popen(
        [sys.executable, "-m", "rules_engine", "audit", "--db", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ},
    )
    assert process.stdout is not None and process.stderr is not None
    assert b"feed.live" in process.stdout.readline()
    process.stdout.close()
    err = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(30) == 141
    assert err == ""


@pytest.fixture
def logged(tmp_path: Path) -> str:
    url = made_store(tmp_path / "s.sqlite")
    store = Store(url)
    now = datetime.now(UTC)
    store.log("firing.acknowledged", now - timedelta(minutes=30), {"why": "accepted"},
              identity="r", oid="o1")
    store.log("order.filled", now - timedelta(hours=2), {}, oid="o1")
    store.log("feed.live", datetime(2026, 11, 30, 23, 0, tzinfo=UTC), {})
    store.log("feed.stale", datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC), {})
    store.close()
    return url


def kinds(out: str) -> list[str]:
    return [row["kind"] for row in json.loads(out)]


def test_audit_kind_takes_the_names_the_log_prints(
    logged: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for kind, expected in (("acknowledged", ["firing.acknowledged"]),  # as the log prints it
                           ("firing.acknowledged", ["firing.acknowledged"]),
                           ("firing", ["firing.acknowledged"]),
                           ("order.", ["order.filled"]), ("filled", ["order.filled"]),
                           ("feed", ["feed.live", "feed.stale"])):
        code, out, _ = run(capsys, "audit", "--db", logged, "--kind", kind, "--format", "json")
        assert code == 0 and sorted(kinds(out)) == expected, kind
    code, out, err = run(capsys, "audit", "--db", logged, "--kind", "nope")
    assert code == 0 and out == ""
    assert "no event of kind 'nope' matched" in err and "order.filled" in err


def test_audit_since_takes_an_age_a_date_or_a_time(
    logged: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "audit", "--db", logged, "--since", "1h", "--format", "json")
    assert code == 0 and kinds(out) == ["firing.acknowledged"]
    code, out, _ = run(capsys, "audit", "--db", logged, "--since", "3h", "--format", "json")
    assert sorted(kinds(out)) == ["firing.acknowledged", "order.filled"]
    code, out, _ = run(capsys, "audit", "--db", logged, "--since", "2026-12-01",
                       "--until", "2026-12-02", "--format", "json")
    assert kinds(out) == ["feed.stale"]  # the date is its start in UTC
    code, out, _ = run(capsys, "audit", "--db", logged, "--until", "2026-12-01T00:00Z",
                       "--format", "json")
    assert kinds(out) == ["feed.live"]
    with pytest.raises(SystemExit) as exit_:
        main(["audit", "--db", logged, "--since", "yesterday"])
    assert exit_.value.code == 2
    assert "give an age (1h, 30m, 2d), a date (2026-12-01)" in capsys.readouterr().err


def test_reset_clears_a_sandbox_store_after_confirmation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "quick.sqlite"
    url = made_store(path, venue="sandbox 9b35a81c uid 165111215")
    venue_state = tmp_path / "quick.sqlite.sandbox.json"
    venue_state.write_text("{}")
    monkeypatch.setattr(sys, "stdin", io.StringIO("no\n"))
    code, _, err = run(capsys, "reset", "--db", url)
    assert code == 1 and "type yes" in err and "nothing cleared" in err and path.exists()
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, _, err = run(capsys, "reset", "--db", url)
    assert code == 1 and "give --yes" in err and path.exists()
    monkeypatch.setattr(sys, "stdin", io.StringIO("yes\n"))
    code, out, _ = run(capsys, "reset", "--db", url)
    assert code == 0 and f"cleared {url}" in out
    assert not path.exists() and not venue_state.exists()


def test_reset_never_clears_a_live_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = tmp_path / "mine.sqlite"
    url = made_store(live, venue="kucoin uid 165111215")
    code, _, err = run(capsys, "reset", "--db", url, "--yes")
    assert code == 2 and "never a live one" in err and live.exists()
    named = tmp_path / "live-0123456789.sqlite"  # run made it in live mode: no venue yet
    code, _, err = run(capsys, "reset", "--db", made_store(named), "--yes")
    assert code == 2 and "never a live one" in err and named.exists()
    unknown = tmp_path / "other.sqlite"
    code, _, err = run(capsys, "reset", "--db", made_store(unknown), "--yes")
    assert code == 2 and "cannot tell it is not a live store" in err and unknown.exists()


# ---------------------------------------------------------------- status that explains

EXPLAINED = (
    "rule entry on BTC-USDT:\n    when bid < 60000\n    place market buy 0.01\n"
    "rule exit on BTC-USDT:\n    when bid > 59300\n    place market sell 0.004\n"
    "rule trend on BTC-USDT:\n    when last > sma(15, 1m)\n    place limit buy 0.001 at 1000\n"
)


async def test_status_explains_positions_pnl_not_yet_and_the_halt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_watcher import rig, until

    async with rig(tmp_path, EXPLAINED) as r:
        await until(lambda: r.watcher.states["entry"].firings == 1 and not r.watcher.pending
                    and not r.watcher.tracked)  # bought at the ask, 59010
        r.push("59400", "59410", trade="59405")
        await until(lambda: r.watcher.states["exit"].firings == 1 and not r.watcher.pending
                    and not r.watcher.tracked)  # sold at the bid, 59400
        store = Store(r.db)
        fills = {f.client_oid: f for f in store.fills()}
        store.request_halt(False, datetime.now(UTC), "tester@host")
        store.close()
        await until(lambda: r.watcher.ctx.halted is not None)
    code, out, _ = run(capsys, "status", "--db", r.db, "--format", "json")
    report = json.loads(out)
    assert report["trading"] == "halted"
    assert report["halt"]["by"] == "tester@host" and report["halt"]["acknowledged"] is True
    rows = {row["rule"]: row for row in report["positions"]}
    assert len(fills) >= 2
    buy, sell = rows["entry"], rows["exit"]
    assert buy["position"] == "0.01" and buy["realised"] == "0"
    assert sell["position"] == "-0.004"  # its own book: a sale of what another rule bought
    # the newest price the store holds is the sale's fill: entry's unrealised P&L is priced
    assert buy["price"]["price"] == "59400" and buy["price"]["source"] == "a fill"
    assert Decimal(buy["unrealised"]) == (Decimal("59400") - Decimal("59010")) * Decimal("0.01")
    [waiting] = report["not_yet"]
    assert waiting["rule"] == "trend" and waiting["status"] == "armed"
    assert waiting["condition"] == ["when last > sma(15, 1m)"]
    code, text, _ = run(capsys, "status", "--db", r.db)
    assert code == 0
    assert "kill switch: ON since" in text and "by tester@host (acknowledged" in text
    assert "entry" in text and "position 0.01" in text and "realised 0 USDT" in text
    assert "not fired yet (1)" in text and "when last > sma(15, 1m)" in text
    assert "balances (the local venue" not in text  # a sandbox at a URL: none beside the store
    assert "balances: not recorded in the store" in text
    code, text, _ = run(capsys, "why", "entry", "--db", r.db)
    assert code == 0 and "rule entry version 1: done, 1 firing(s)" in text
    assert "place market buy 0.01" in text and "#1 v1" in text and "filled 0.01" in text
    code, text, _ = run(capsys, "why", "trend", "--db", r.db)
    assert code == 0 and "firings: none yet" in text
    assert "waits for its condition to hold on fresh market data" in text
    code, _, err = run(capsys, "why", "nobody", "--db", r.db)
    assert code == 1 and "no order or rule 'nobody'" in err
