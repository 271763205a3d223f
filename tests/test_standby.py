"""The hot standby (`rules-engine run --standby`, runtime/_standby.py): its registration,
the takeover of an expired or released lease (one winner of a race, the loser still waiting),
the refusals, `status` listing the active watcher and the standbys, and the failover test:
one active and two standby watchers on one PostgreSQL store against a sandbox process, the
active one killed with SIGKILL five times in a busy session (tests/standby_support.py)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from rules_engine.cli import main
from rules_engine.runtime._config import WatcherConfig
from rules_engine.runtime._standby import Standby, StandbyRefused
from rules_engine.store import LeaseHeld, Store

PG_URL = os.environ.get("RULES_ENGINE_TEST_PG_URL")
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _config(**values: Any) -> WatcherConfig:
    return WatcherConfig(**{"lease_stale_s": 2.0, "heartbeat_s": 0.1, **values})


def _standby(store: Store, owner: str, lines: list[tuple[str, dict[str, Any]]]) -> Standby:
    return Standby(store, owner, _config(), now=lambda: datetime.now(UTC),
                   emit=lambda kind, data: lines.append((kind, data)),
                   owner_dead=lambda owner: False)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    store = Store(url)
    store.migrate()
    store.close()
    return url


def test_standbys_are_registered_renewed_listed_and_dropped(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    try:
        ttl = timedelta(seconds=3)
        store.standby_beat("hostA:101:aaaa", NOW, ttl, NOW)
        store.standby_beat("hostB:202:bbbb", NOW + timedelta(seconds=1), ttl, NOW)
        store.standby_beat("hostA:101:aaaa", NOW + timedelta(seconds=2), ttl, NOW)  # renewed
        rows = store.standbys(NOW + timedelta(seconds=4.5))
        assert [(r["owner"], r["host"], r["pid"], r["state"]) for r in rows] == [
            ("hostA:101:aaaa", "hostA", 101, "waiting"),  # 2.5 s old: within its 3 s
            ("hostB:202:bbbb", "hostB", 202, "gone"),  # 3.5 s old
        ]
        assert rows[0]["heartbeat_age_s"] == 2.5
        store.standby_drop("hostA:101:aaaa")
        assert [r["owner"] for r in store.standbys(NOW)] == ["hostB:202:bbbb"]
        # A row silent for ten times its time to live is removed by the next standby's beat.
        store.standby_beat("hostC:303:cccc", NOW + timedelta(seconds=32), ttl, NOW)
        assert [r["owner"] for r in store.standbys(NOW)] == ["hostC:303:cccc"]
    finally:
        store.close()


def test_a_standby_takes_a_released_lease_and_the_loser_of_the_race_keeps_waiting(
        sqlite_url: str) -> None:
    active = Store(sqlite_url)
    first, second = Store(sqlite_url), Store(sqlite_url)
    lines: list[tuple[str, dict[str, Any]]] = []

    async def scenario() -> tuple[Any, Any, list[dict[str, Any]]]:
        epoch = active.acquire_lease("here:1:active", datetime.now(UTC), timedelta(seconds=2))
        stop = asyncio.Event()
        a = asyncio.create_task(_standby(first, "here:2:one", lines).wait(stop))
        b = asyncio.create_task(_standby(second, "here:3:two", lines).wait(stop))
        await asyncio.sleep(0.6)  # both wait: the active lease is fresh
        assert not a.done() and not b.done()
        listed = active.standbys(datetime.now(UTC))
        active.release_lease()
        done, _ = await asyncio.wait({a, b}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        assert len(done) == 1
        await asyncio.sleep(0.6)  # the loser sees the winner's fresh lease and waits on
        loser = b if a in done else a
        assert not loser.done()
        stop.set()
        assert await loser is None
        winner = done.pop().result()
        assert winner.epoch == epoch + 1 and winner.previous_owner == "here:1:active"
        return winner, loser, listed

    try:
        winner, _, listed = asyncio.run(scenario())
        assert sorted(r["owner"] for r in listed) == ["here:2:one", "here:3:two"]
        assert all(r["state"] == "waiting" for r in listed)
        lease = active.lease_now()
        assert lease is not None and lease[0] in ("here:2:one", "here:3:two") and lease[2]
        assert active.standbys(datetime.now(UTC)) == []  # the winner and the loser left
        kinds = [kind for kind, _ in lines]
        assert kinds.count("standby.waiting") == 2 and kinds.count("standby.acquired") == 1
        report = winner.report(datetime.now(UTC), winner.acquired_mono + 0.25)
        assert report["previous_released"] is True and report["start_s"] == 0.25
        assert report["since_heartbeat_s"] >= 0.6
    finally:
        for store in (active, first, second):
            store.close()


def test_a_standby_takes_over_an_expired_lease_and_reports_the_takeover(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    old = Store(sqlite_url)
    lines: list[tuple[str, dict[str, Any]]] = []
    try:
        beat = datetime.now(UTC) - timedelta(seconds=1.5)
        old.acquire_lease("here:1:old", beat, timedelta(seconds=2))
        took = asyncio.run(_standby(store, "here:2:new", lines).wait(asyncio.Event()))
        assert took is not None and took.previous_heartbeat == beat
        report = took.report(took.acquired_at, took.acquired_mono)
        # Taken within a poll (0.05 s here) of the lease's expiry at beat + 2 s.
        assert 0 <= report["takeover_s"] < 0.5, report
        assert report["lease_expired_at"] == (beat + timedelta(seconds=2)).isoformat()
        with pytest.raises(LeaseHeld):  # the old watcher's fence is gone
            old.heartbeat(datetime.now(UTC))
    finally:
        store.close()
        old.close()


def test_a_standby_on_sqlite_refuses_a_lease_held_from_another_host(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    try:
        store.acquire_lease("elsewhere:1:active", datetime.now(UTC), timedelta(seconds=60))
        standby = Store(sqlite_url)
        with pytest.raises(StandbyRefused, match="same host, or keep the store in PostgreSQL"):
            asyncio.run(_standby(standby, "here:2:standby", []).wait(asyncio.Event()))
        assert store.standbys(datetime.now(UTC)) == []
        standby.close()
    finally:
        store.close()


def test_run_standby_needs_an_exchange_it_shares_with_the_active_watcher(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "r.rules"
    rules.write_text("rule a on BTC-USDT:\n    when bid > 1\n    place limit buy 0.001 at bid - "
                     "10%\n", encoding="utf-8")
    for extra in ([], ["--mode", "paper"]):
        code = main(["run", str(rules), "--standby", "--db", f"sqlite:///{tmp_path / 's.db'}",
                     *extra])
        err = capsys.readouterr().err
        assert code == 2
        assert "--standby takes over a store whose exchange it shares" in err
        assert "give --exchange-url" in err and "Traceback" not in err


def test_status_shows_the_active_watcher_and_the_standbys(
        sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(sqlite_url)
    try:
        now = datetime.now(UTC)
        store.acquire_lease("hostA:11:active", now, timedelta(seconds=15))
        store.standby_beat("hostB:22:one", now, timedelta(seconds=15), now)
        store.standby_beat("hostC:33:two", now - timedelta(seconds=60), timedelta(seconds=15),
                           now - timedelta(seconds=90))
    finally:
        store.close()
    assert main(["status", "--db", sqlite_url]) == 0
    out = capsys.readouterr().out
    assert "watcher: running (hostA:11:active" in out
    assert "standbys: 1 waiting, 1 gone silent" in out
    assert "hostB:22:one  host hostB pid 22  waiting" in out
    assert "hostC:33:two  host hostC pid 33  gone (no heartbeat for 60 s)" in out
    assert main(["status", "--db", sqlite_url, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(s["owner"], s["state"]) for s in report["standbys"]] == [
        ("hostC:33:two", "gone"), ("hostB:22:one", "waiting")]


# ---------------------------------------------------------------- the failover test


@pytest.fixture
def pg_db() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("RULES_ENGINE_TEST_PG_URL is not set: the failover test needs PostgreSQL "
                    "(a hot standby on another machine needs a shared database)")
    schema = "standby_" + uuid.uuid4().hex[:10]
    admin = create_engine(PG_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    joiner = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{joiner}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.mark.slow
def test_failover_a_standby_takes_over_each_of_five_sigkills_and_the_record_is_whole(
        tmp_path: Path, pg_db: str) -> None:
    from standby_support import FailoverSession

    lease_stale_s = 3.0
    lines: list[str] = []
    session = FailoverSession(tmp_path, db_url=pg_db, kills=5, standbys=2, seed=13,
                              lease_stale_s=lease_stale_s, heartbeat_s=0.5,
                              order_window_ms=1000, log=lines.append)
    result = asyncio.run(session.run())
    story = "\n".join(lines + result.failures())
    assert result.failures() == [], story
    assert len(result.switches) == 5, story
    for switch in result.switches:
        # A standby, never the killed one, ready within the lease's time to live + 3 s.
        assert switch.taker is not None and switch.taker != switch.killed, story
        assert switch.kill_to_ready_s is not None, story
        assert switch.kill_to_ready_s < lease_stale_s + 3, story
        assert switch.logged["epoch"] > 1 and switch.logged["start_s"] >= 0, story
        assert result.exits[switch.killed] == -9, story
    figures = result.checked.figures
    assert figures["exchange orders"] > 20, figures  # a busy session, really
    assert figures["firing statuses"].get("acknowledged", 0) > 20, figures
    # Engine-held stops: the check ran on stops whose trigger the price really passed.
    assert sum(s.held_checked for s in result.switches) >= 1, story
    assert sum(s.held_fired for s in result.switches) >= 1, story
