"""`rules-engine sandbox` follows the brief's contract: its first stdout line is the JSON banner."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rules_engine", "sandbox", "--port", "0", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


def test_first_line_is_the_banner_and_the_server_answers(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    proc = _start("--state", str(state), "--seed", "3")
    try:
        assert proc.stdout is not None
        banner = json.loads(proc.stdout.readline())
        assert set(banner) == {"rest_url", "api_key", "api_secret", "api_passphrase",
                               "key_version"}
        assert banner["key_version"] == "2"
        assert banner["rest_url"].startswith("http://127.0.0.1:")
        assert _get(banner["rest_url"] + "/api/v1/timestamp")["code"] == "200000"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert proc.returncode == 0
    saved = json.loads(state.read_text())
    assert saved["version"] == 1 and saved["instance_id"]


def test_a_config_without_demo_keys_never_prints_a_secret(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"keys": [
        {"api_key": "real", "api_secret": "TOPSECRET", "api_passphrase": "PASS"}]}))
    proc = _start("--config", str(config))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        banner = json.loads(line)
        assert banner["api_key"] == "real" and banner["api_secret"] is None
        assert "TOPSECRET" not in line
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=10)
    assert "TOPSECRET" not in err


def test_a_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.json"
    config.write_text('{"balances": {"USDT": "-1"}}')
    proc = _start("--config", str(config))
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and "config" in err


def test_the_recorded_feed_serves_the_2021_symbols() -> None:
    proc = _start("--feed", "recorded", "--speed", "2")
    try:
        assert proc.stdout is not None
        banner = json.loads(proc.stdout.readline())
        symbols = _get(banner["rest_url"] + "/api/v2/symbols")["data"]
        assert isinstance(symbols, list)
        assert "BCHSV-USDT" in {row["symbol"] for row in symbols}
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_config_errors_never_echo_the_values_given(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"keys": [
        {"api_key": "k", "api_secret": 987654321, "api_passphrase": "p",
         "permissions": ["Spot", "Bogus"]}]}))
    proc = _start("--config", str(config))
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert "keys.0.api_secret" in err and "987654321" not in err
