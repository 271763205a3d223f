"""Every command finds its store by one rule: with two stores in the state directory, a
control command acts on the one whose watcher runs, or lists both and asks for `--db`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from test_watcher import until, venue, watch

from rules_engine.cli import control, main
from rules_engine.store import Store

RULES = "rule later on BTC-USDT:\n    when ask < 58000\n    place limit buy 0.001 at 50000\n"


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The state directory with a stopped sandbox store in it (tables, no watcher)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("RULES_ENGINE_DB", raising=False)
    folder = tmp_path / "xdg" / "rules-engine"
    folder.mkdir(parents=True)
    store = Store(f"sqlite:///{folder / 'sandbox.sqlite'}")
    store.migrate()
    store.close()
    return folder


async def test_halt_without_db_acts_on_the_store_whose_watcher_runs(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paper = state / "paper-0123456789.sqlite"
    async with venue() as v, watch(v, tmp_path, RULES, db=f"sqlite:///{paper}") as r:
        assert await cli("halt") == 0
        out = capsys.readouterr().out
        assert f"halted sqlite:///{paper}" in out
        await until(lambda: r.watcher.ctx.halted is not None)
        assert await cli("status", "--format", "json") == 0  # a read finds the same one
        assert json.loads(capsys.readouterr().out)["store"] == f"sqlite:///{paper}"
        assert await cli("resume") == 0
        assert "the watcher fires again" in capsys.readouterr().out
        await until(lambda: r.watcher.ctx.halted is None)
    sandbox = Store(f"sqlite:///{state / 'sandbox.sqlite'}")
    assert sandbox.halt() is None and sandbox.events("halt.requested") == []  # untouched
    sandbox.close()


async def test_with_two_stores_and_no_watcher_the_candidates_are_listed(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paper = state / "paper-0123456789.sqlite"
    async with venue() as v, watch(v, tmp_path, RULES, db=f"sqlite:///{paper}"):
        pass  # stopped: its lease is released
    for argv in (("halt",), ("resume",), ("status",), ("audit",), ("why", "x"),
                 ("unblock", "later"), ("resolve", "x", "placed")):
        assert await cli(*argv) == 2
        err = capsys.readouterr().err
        assert "2 stores in" in err and "none has a watcher running" in err, argv
        assert f"--db sqlite:///{paper}" in err and "paper" in err
        assert f"--db sqlite:///{state / 'sandbox.sqlite'}" in err
    # --mode narrows the candidates to one
    assert await cli("status", "--mode", "paper") == 0
    assert "later" in capsys.readouterr().out


async def test_halt_and_resume_say_when_no_watcher_runs_on_the_store(
    state: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "ACK_TIMEOUT", 30.0)  # it must not wait for anyone
    url = f"sqlite:///{state / 'sandbox.sqlite'}"
    assert await asyncio.wait_for(cli("halt"), 5) == 2
    err = capsys.readouterr().err
    assert f"no watcher is running on {url}" in err and "starts halted" in err
    store = Store(url)
    assert store.halt() is not None  # the switch holds
    store.close()
    assert await cli("resume") == 0
    assert f"resumed {url}: no watcher is running on it" in capsys.readouterr().out
    assert await cli("resume") == 0
    assert "was not on" in capsys.readouterr().out


async def test_no_store_at_all_names_the_folder_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("RULES_ENGINE_DB", raising=False)
    assert await cli("halt") == 2
    err = capsys.readouterr().err
    assert "no store in" in err and "give --db URL" in err
    assert await cli("status", "--mode", "live") == 2
    assert "no live store in" in capsys.readouterr().err
