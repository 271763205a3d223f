"""`rules-engine run` on the command line: bad input gets a clear message and exit 2 (never a
traceback), rule errors exit 1, and the quickstart fires on the built-in sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rules_engine.cli import main

ROOT = Path(__file__).resolve().parent.parent
RULE = "when BTC-USDT bid < 1 place limit buy 0.01\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["run", *argv])
    return code, capsys.readouterr().err


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "a.rules"
    path.write_text(RULE)
    return path


def test_live_mode_needs_the_live_flag(capsys: pytest.CaptureFixture[str], rules: Path) -> None:
    code, err = run(capsys, str(rules), "--mode", "live")
    assert code == 2 and "--mode live and --live together" in err


def test_live_mode_needs_risk_limits(
    capsys: pytest.CaptureFixture[str], rules: Path, tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[risk]\nmax_open_orders = 3\n')
    code, err = run(capsys, str(rules), "--mode", "live", "--live", "--config", str(config))
    assert code == 2 and "risk.max_order_notional" in err and "Traceback" not in err


def test_the_live_flag_alone_is_refused(capsys: pytest.CaptureFixture[str], rules: Path) -> None:
    code, err = run(capsys, str(rules), "--live")
    assert code == 2 and "--live only goes with --mode live" in err


def test_signed_requests_go_to_loopback_only_outside_live_mode(
    capsys: pytest.CaptureFixture[str], rules: Path
) -> None:
    code, err = run(capsys, str(rules), "--exchange-url", "https://api.kucoin.com")
    assert code == 2 and "loopback addresses only" in err


def test_paper_mode_takes_no_exchange_url(capsys: pytest.CaptureFixture[str], rules: Path) -> None:
    code, err = run(capsys, str(rules), "--mode", "paper", "--exchange-url", "http://127.0.0.1:1")
    assert code == 2 and "local sandbox it starts itself" in err


def test_a_bad_config_key_is_named(
    capsys: pytest.CaptureFixture[str], rules: Path, tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('order_window_ms = 10\nbogus = 1\n[max_age]\nprice = 3\n')
    code, err = run(capsys, str(rules), "--config", str(config))
    assert code == 2
    assert "order_window_ms" in err and "bogus: unknown key" in err and "max_age" in err


def test_a_config_that_is_not_toml_is_named(
    capsys: pytest.CaptureFixture[str], rules: Path, tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text("mode = [\n")
    code, err = run(capsys, str(rules), "--config", str(config))
    assert code == 2 and "not valid TOML" in err


def test_missing_rule_files_and_bad_durations_are_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, rules: Path
) -> None:
    code, err = run(capsys, str(tmp_path / "nope.rules"))
    assert code == 2 and "no such file or folder" in err
    code, err = run(capsys, str(rules), "--duration", "-1")
    assert code == 2 and "--duration" in err


def _cli(*argv: str, tmp_path: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "RULES_ENGINE_VIEW": "off"}
    return subprocess.run(
        [sys.executable, "-m", "rules_engine", "run", *argv],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, check=False,
    )


def test_rule_files_with_errors_exit_1_with_the_diagnostics(tmp_path: Path) -> None:
    bad = tmp_path / "bad.rules"
    bad.write_text("when BTC-USDT bidd < 60000 place limit buy 0.01\n")
    result = _cli(str(bad), "--duration", "5", tmp_path=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "E104" in result.stderr and "bidd" in result.stderr


@pytest.mark.slow
def test_the_quickstart_fires_orders_on_the_built_in_sandbox(tmp_path: Path) -> None:
    result = _cli("examples/quickstart.rules", "--duration", "6", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    kinds = [e["event"] for e in events]
    assert kinds.count("fired") >= 1 and "acknowledged" in kinds
    # The default store: one SQLite file per account in the user's state directory, with the
    # sandbox's state beside it (so a restart meets the same venue).
    folder = tmp_path / "state" / "rules-engine"
    assert (folder / "sandbox.sqlite").exists()
    assert (folder / "sandbox.sqlite.sandbox.json").exists()
    again = _cli("examples/quickstart.rules", "--duration", "4", tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr  # same venue: recovery, no new one-shot firings
    kinds = [json.loads(x)["event"] for x in again.stderr.splitlines() if x.startswith("{")]
    assert "recovered" in kinds
    assert "fired" not in kinds or all(
        json.loads(x).get("rule") == "quick_exit"
        for x in again.stderr.splitlines() if x.startswith("{") and '"fired"' in x
    )


def test_sigterm_stops_the_watcher_cleanly(tmp_path: Path) -> None:
    import signal
    import time

    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "RULES_ENGINE_VIEW": "off"}
    process = subprocess.Popen(
        [sys.executable, "-m", "rules_engine", "run", "examples/quickstart.rules"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=ROOT,
    )
    assert process.stderr is not None
    with process, process.stderr:
        deadline = time.monotonic() + 30
        for line in process.stderr:
            if '"event": "acknowledged"' in line or time.monotonic() > deadline:
                break
        process.send_signal(signal.SIGTERM)
        rest = process.stderr.read()
        assert process.wait(timeout=20) == 0
    assert '"event": "watcher.stopped"' in rest and "Traceback" not in rest


def test_sigusr1_throws_the_kill_switch_through_the_store_and_sigusr2_lifts_it(
    tmp_path: Path,
) -> None:
    import signal
    import time

    from rules_engine.store import Store

    db = f"sqlite:///{tmp_path / 'signals.sqlite'}"
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "RULES_ENGINE_VIEW": "off"}
    process = subprocess.Popen(
        [sys.executable, "-m", "rules_engine", "run", "examples/quickstart.rules", "--db", db],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=ROOT,
    )
    assert process.stderr is not None
    with process, process.stderr:
        for line in process.stderr:
            if '"event": "acknowledged"' in line:
                break
        process.send_signal(signal.SIGUSR1)
        seen: list[str] = []
        for line in process.stderr:
            seen.append(line)
            if '"event": "halted"' in line:
                break
        store = Store(db)
        deadline = time.monotonic() + 10
        while store.halt_acknowledged() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.halt() is not None and store.halt_acknowledged() is not None
        process.send_signal(signal.SIGUSR2)
        for line in process.stderr:
            if '"event": "resumed"' in line:
                break
        assert store.halt() is None
        kinds = [e.kind for e in store.events() if e.kind.startswith("halt.")]
        store.close()
        process.send_signal(signal.SIGTERM)
        process.stderr.read()
        assert process.wait(timeout=20) == 0
    assert kinds == ["halt.requested", "halt.acknowledged", "halt.lifted"]


def test_a_start_waits_for_an_exchange_that_is_down_then_trades(tmp_path: Path) -> None:
    """5xx at start: `exchange.unreachable` lines with growing pauses, then the watcher starts
    once the exchange answers (a watcher that gave up would leave its orders untracked)."""
    import signal
    import time

    from rules_engine.sandbox.config import FaultConfig, SandboxConfig
    from rules_engine.sandbox.testing import serve_in_thread

    config = SandboxConfig(faults=FaultConfig(http_5xx=True))
    with serve_in_thread(config) as box:
        env = {**os.environ, "RULES_ENGINE_VIEW": "off", "RULES_ENGINE_LOG_FORMAT": "json"}
        process = subprocess.Popen(
            [sys.executable, "-m", "rules_engine", "run", "examples/quickstart.rules",
             "--exchange-url", box.url, "--db", f"sqlite:///{tmp_path / 's.sqlite'}"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=ROOT,
        )
        assert process.stderr is not None
        with process, process.stderr:
            lines = []
            deadline = time.monotonic() + 30
            for line in process.stderr:
                lines.append(line)
                if sum('"exchange.unreachable"' in x for x in lines) >= 2:
                    break
                assert time.monotonic() < deadline, lines
            box.state.config.faults = FaultConfig()  # the exchange is back
            after = []
            for line in process.stderr:  # (--duration would bound the start: SIGTERM instead)
                after.append(line)
                if '"event": "recovered"' in line:
                    break
                assert time.monotonic() < deadline + 30, after
            process.send_signal(signal.SIGTERM)
            rest = "".join(after) + process.stderr.read()
            assert process.wait(timeout=30) == 0, "".join(lines) + rest
    misses = [json.loads(x) for x in lines if '"exchange.unreachable"' in x]
    assert "Service Unavailable" in misses[0]["why"]
    assert misses[1]["retry_in_s"] > misses[0]["retry_in_s"]
    assert '"event": "watcher.starting"' in rest and '"event": "recovered"' in rest


def test_a_start_gives_up_after_its_patience_with_the_reason(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("start_patience_s = 1.5\n")
    result = _cli("examples/quickstart.rules", "--exchange-url", "http://127.0.0.1:9",
                  "--config", str(config), tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "cannot reach the exchange at http://127.0.0.1:9" in result.stderr
    assert "start_patience_s" in result.stderr and "Traceback" not in result.stderr


def test_run_on_a_folder_starts_the_rules_of_a_file_added_to_it_later(tmp_path: Path) -> None:
    """`rules-engine run FOLDER` as a person runs it (built-in sandbox, its own process): a
    rule file dropped into the folder while the watcher runs is linted and its rule fires."""
    import time

    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "wait.rules").write_text(RULE)  # bid < 1: never fires
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "RULES_ENGINE_VIEW": "off",
           "RULES_ENGINE_LOG_FORMAT": "json"}
    process = subprocess.Popen(
        [sys.executable, "-m", "rules_engine", "run", str(folder),
         "--db", f"sqlite:///{tmp_path / 'folder.sqlite'}", "--duration", "30"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=ROOT,
    )
    assert process.stderr is not None
    seen: list[str] = []
    with process, process.stderr:
        deadline = time.monotonic() + 25
        for line in process.stderr:
            seen.append(line)
            if '"event": "recovered"' in line:
                (folder / "later.rules").write_text(
                    "rule later on BTC-USDT:\n    when bid > 1\n"
                    "    place limit buy 0.001 at 1000\n")
            if '"event": "fired"' in line:
                break
            assert time.monotonic() < deadline, "".join(seen)
        process.terminate()
        process.stderr.read()
        assert process.wait(timeout=20) == 0
    [reloaded] = [json.loads(x) for x in seen if '"event": "reloaded"' in x]
    [fired] = [json.loads(x) for x in seen if '"event": "fired"' in x]
    assert reloaded["added"] == ["later"] and fired["rule"] == "later"
