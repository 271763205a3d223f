"""`status`, `audit` and `why` read a real watcher's store after a real session."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from test_watcher import rig, until

from rules_engine.cli import main

RULES = (
    "# the brief's one-liner, and a named rule\n"
    "when BTC-USDT bid < 60000 place limit buy 0.01\n"
    "rule never on BTC-USDT:\n    when bid < 1\n    place limit buy 0.01 at 1000\n"
)


@pytest.fixture
async def session(tmp_path: Path) -> tuple[str, str, str]:
    async with rig(tmp_path, RULES) as r:
        await until(lambda: len(r.orders()) == 1)
        await until(lambda: not r.watcher.pending)
        order = r.orders()[0]
        return r.db, order.req.client_oid, order.id


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


async def test_status_shows_rules_open_orders_and_the_watcher(
    session: tuple[str, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, oid, _ = session
    code, out, _ = run(capsys, "status", "--db", db, "--format", "json")
    assert code == 0
    report = json.loads(out)
    rules = {r["rule"]: r for r in report["rules"]}
    assert rules["never"]["status"] == "armed" and rules["never"]["firings"] == 0
    [one_liner] = [r for r in rules.values() if r["rule"] != "never"]
    assert one_liner["status"] == "done" and one_liner["firings"] == 1
    [order] = report["open_orders"]
    assert order["client_oid"] == oid and order["rule"] == one_liner["rule"]
    assert order["price"] == "59000" and order["size"] == "0.01"
    assert report["watcher"]["alive"] is False  # it stopped cleanly
    code, text, _ = run(capsys, "status", "--db", db)
    assert code == 0 and oid in text and "never" in text and "stopped" in text


async def test_why_tells_the_rule_its_text_the_inputs_and_every_change(
    session: tuple[str, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, oid, exchange_id = session
    code, out, _ = run(capsys, "why", oid, "--db", db)
    assert code == 0
    assert "when BTC-USDT bid < 60000 place limit buy 0.01" in out  # the rule as written
    assert "BTC-USDT bid = 59000" in out and "BTC-USDT book: live" in out
    assert out.index("fired") < out.index("firing.sent") < out.index("firing.acknowledged")
    code, by_id, _ = run(capsys, "why", exchange_id, "--db", db, "--format", "json")
    story = json.loads(by_id)
    assert code == 0 and story["order"]["client_oid"] == oid
    assert story["firing"]["inputs"]["values"]["BTC-USDT bid"] == "59000"
    code, _, err = run(capsys, "why", "no-such-order", "--db", db)
    assert code == 1 and "no order or rule 'no-such-order'" in err


async def test_audit_filters_by_rule_kind_symbol_and_time_and_writes_csv(
    session: tuple[str, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, oid, _ = session
    code, out, _ = run(capsys, "audit", "--db", db, "--format", "json")
    every = json.loads(out)
    assert code == 0 and {"rule.loaded", "fired", "feed.live", "book.resync"} <= {
        e["kind"] for e in every}
    code, out, _ = run(capsys, "audit", "--db", db, "--rule", "never", "--format", "json")
    assert {e["kind"] for e in json.loads(out)} == {"rule.loaded"}
    code, out, _ = run(capsys, "audit", "--db", db, "--kind", "firing.", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["kind"] for r in rows] == ["firing.sent", "firing.acknowledged"]
    assert all(r["client_oid"] == oid for r in rows)
    code, out, _ = run(capsys, "audit", "--db", db, "--symbol", "ETH-USDT", "--format", "json")
    assert json.loads(out) == []
    code, out, _ = run(capsys, "audit", "--db", db, "--since", "2099-01-01T00:00Z")
    assert code == 0 and out == ""


def test_a_missing_store_or_a_bad_time_is_a_clear_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "status", "--db", f"sqlite:///{tmp_path / 'none.sqlite'}")
    assert code == 2 and "no store at" in err
    assert not (tmp_path / "none.sqlite").exists()  # reading never creates a store
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", "--since", "yesterday", "--db", "sqlite:///x"])
    assert exit_info.value.code == 2
    assert "is not a time: give an age" in capsys.readouterr().err


def test_a_store_of_an_older_schema_is_brought_up_to_date_and_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from alembic import command
    from alembic.config import Config

    from rules_engine.store import Store
    from rules_engine.store._repo import _migrations

    db = f"sqlite:///{tmp_path / 'old.sqlite'}"
    store = Store(db)
    config = Config()
    config.set_main_option("script_location", str(_migrations()))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")  # before rule versions kept their text
    store.close()
    code, out, err = run(capsys, "status", "--db", db)
    assert code == 0, err
    assert "watcher: none has run on this store" in out


def test_status_tells_how_long_ago_the_watcher_last_said_it_was_alive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import UTC, datetime, timedelta

    from freezegun import freeze_time

    from rules_engine.store import Store

    db = f"sqlite:///{tmp_path / 'lease.sqlite'}"
    store = Store(db)
    store.migrate()
    beat = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    store.acquire_lease("host:123:abc", beat, timedelta(seconds=15))
    store.close()
    with freeze_time(beat + timedelta(seconds=42)):
        code, out, _ = run(capsys, "status", "--db", db, "--format", "json")
    watcher = json.loads(out)["watcher"]
    assert code == 0 and watcher["alive"] is True and watcher["heartbeat_age_s"] == 42
