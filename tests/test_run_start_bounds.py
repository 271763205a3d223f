"""A start that cannot go on says so within seconds and is bounded by `--duration` (and by
SIGTERM): paper mode whose market data cannot be reached (a refused port; a server that
accepts and never answers), and a sandbox that never answers. Real processes and sockets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def refused_url() -> str:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not done.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        done.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


def _start(tmp_path: Path, *argv: str) -> tuple[subprocess.Popen[str], float]:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "RULES_ENGINE_VIEW": "off",
           "RULES_ENGINE_LOG_FORMAT": "text"}
    env.pop("RULES_ENGINE_DB", None)
    began = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "rules_engine", "run", "examples/quickstart.rules", *argv],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    return process, began


def _lines_until(process: subprocess.Popen[str], needle: str) -> tuple[list[str], float]:
    """stderr lines up to the first containing `needle`, and when it came (monotonic)."""
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if needle in line:
            return seen, time.monotonic()
    raise AssertionError(f"{needle!r} never printed: {''.join(seen)}")


def _paper(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "paper.toml"
    config.write_text(f'mode = "paper"\nmarket_url = "{url}"\n')
    return config


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_paper_mode_without_market_data_says_so_within_seconds_and_duration_ends_it(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest,
) -> None:
    url = request.getfixturevalue(f"{kind}_url")
    process, began = _start(tmp_path, "--config", str(_paper(tmp_path, url)), "--duration", "5")
    with process:
        seen, said = _lines_until(process, "market.unreachable")
        assert process.stderr is not None
        rest = process.stderr.read()
        code = process.wait(timeout=20)
    ended = time.monotonic()
    # The first word within seconds (the interpreter's start included; a silent server
    # costs the probe's 3 s), whatever the retries and the patience (120 s) would take.
    assert said - began < 7, f"{said - began:.1f} s"
    line = seen[-1]
    assert f"paper mode reads its market data from {url} and cannot reach it" in line
    assert "market_url" in line
    # --duration 5 bounds the start: stopped where it waited, with what it waited for.
    assert ended - began < 12, f"{ended - began:.1f} s"
    assert code == 2, rest
    assert "start.stopped" in rest
    [error] = [x for x in rest.splitlines() if x.startswith("rules-engine run: error:")]
    assert error.startswith("rules-engine run: error: stopped before the start completed; it "
                            "was still waiting: ") and url in error, error
    assert "Traceback" not in "".join(seen) + rest


def _wait_until_it_catches(pid: int, signum: int, timeout: float = 30.0) -> None:
    """Until the process has a handler for `signum` (the watcher's loop installed it),
    read from /proc: a fixed sleep is too short on a loaded machine."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:") and int(line.split()[1], 16) >> (signum - 1) & 1:
                return
        time.sleep(0.05)
    raise AssertionError(f"the process did not catch signal {signum} within {timeout} s")


def test_sigterm_stops_a_start_waiting_for_an_exchange_that_never_answers(
    tmp_path: Path, silent_url: str,
) -> None:
    db = f"sqlite:///{tmp_path / 'never.sqlite'}"
    process, began = _start(tmp_path, "--exchange-url", silent_url, "--db", db)
    with process:
        _wait_until_it_catches(process.pid, signal.SIGTERM)
        began = time.monotonic()  # the start is under way: from here, the stop is timed
        process.send_signal(signal.SIGTERM)
        assert process.stderr is not None
        rest = process.stderr.read()
        code = process.wait(timeout=15)
    assert time.monotonic() - began < 10
    assert code == 0 and "start.stopped" in rest and "Traceback" not in rest


async def test_a_stop_during_the_watchers_start_ends_it_and_releases_the_lease(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """The symbols are read, then the exchange answers 503 to the venue check: a stop
    (what `--duration` sets) ends the start where it waits, the lease is released at once
    (the next start needs no takeover), and the error names what it waited for."""
    import asyncio

    from test_watcher import until, venue

    from rules_engine.runtime._config import load_config
    from rules_engine.runtime._run import Fatal, run_watcher
    from rules_engine.runtime._watcher import Watcher
    from rules_engine.sandbox.config import FaultConfig
    from rules_engine.store import Store

    rules = tmp_path / "down.rules"
    rules.write_text("when BTC-USDT bid < 1 place limit buy 0.01\n")
    db = f"sqlite:///{tmp_path / 'down.sqlite'}"
    async with venue() as v:
        config = load_config(None, {"exchange_url": v.url, "view": "off", "log_format": "json",
                                    "db": db, "request_timeout_s": 1.0})
        holder: list[Watcher] = []

        def started(watcher: Watcher) -> None:  # the symbols are read; the venue check is next
            holder.append(watcher)
            v.state.config.faults = FaultConfig(http_5xx=True)

        stop = asyncio.Event()
        task = asyncio.create_task(run_watcher(config, [rules], stop, started))
        await until(lambda: bool(holder) or task.done(), 10)
        seen: list[str] = []

        def waiting() -> bool:  # the start's patience speaks once the read's retries are out
            seen.append(capsys.readouterr().err)
            return '"exchange.unreachable"' in "".join(seen)

        await until(lambda: waiting() or task.done(), 15)
        assert not task.done() and not holder[0].ctx.ready.is_set()
        began = time.monotonic()
        stop.set()
        with pytest.raises(Fatal) as raised:
            await asyncio.wait_for(task, 10)
        assert time.monotonic() - began < 3
    assert str(raised.value).startswith("stopped before the start completed; it was still "
                                        "waiting: the exchange's status: ")
    store = Store(db)
    try:
        lease = store.lease()
        assert lease is not None and not lease.alive
        [stopped] = store.events("watcher.stopped")
        assert stopped.payload["reason"] == "asked to stop before the start completed"
    finally:
        store.close()
