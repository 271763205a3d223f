"""`rules-engine lint`: the command-line contract (formats, exit codes, symbols sources)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from rules_engine.cli import main

ROOT = Path(__file__).resolve().parent.parent
BAD = "rule dip on BTC-USDT:\n    when bidd < 60000\n    place limit buy 0.01 at 59000\n"
GOOD = "when BTC-USDT bid < 60000 place limit buy 0.01 at 59000\n"


def run_cli(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rules_engine", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "bad.rules"
    path.write_text(BAD)
    return path


def test_text_format_names_the_place_and_draws_a_caret(
    bad_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["lint", str(bad_file)])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[0] == f"{bad_file}:2:10: E104 unknown field 'bidd' (did you mean 'bid'?)"
    assert out[1] == "        when bidd < 60000"
    assert out[2] == "             ^~~~"


def test_json_format_follows_the_contract(bad_file: Path) -> None:
    result = run_cli("lint", "--format", "json", str(bad_file))
    assert result.returncode == 1
    items = json.loads(result.stdout)
    assert items == [
        {
            "path": str(bad_file),
            "line": 2,
            "column": 10,
            "end_line": 2,
            "end_column": 14,
            "code": "E104",
            "severity": "error",
            "message": "unknown field 'bidd' (did you mean 'bid'?)",
        }
    ]


def test_github_format_writes_workflow_annotations(bad_file: Path) -> None:
    result = run_cli("lint", "--format", "github", str(bad_file))
    assert result.returncode == 1
    assert result.stdout.strip() == (
        f"::error file={bad_file},line=2,col=10,endLine=2,endColumn=14,title=E104::"
        "E104 unknown field 'bidd' (did you mean 'bid'?)"
    )


def test_warnings_alone_exit_zero_and_the_snapshot_date_is_shown(tmp_path: Path) -> None:
    path = tmp_path / "w.rules"
    path.write_text("when BTC-USDT bid < 60000 place limit buy 0.01\n")
    result = run_cli("lint", str(path))
    assert result.returncode == 0
    assert "W601" in result.stdout
    assert "as of 2021-04-25" in result.stderr


def test_folders_are_searched_and_every_file_is_checked_together(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.rules").write_text(GOOD)
    (tmp_path / "sub" / "b.rules").write_text(GOOD)  # the same unnamed rule twice
    (tmp_path / "notes.txt").write_text("not a rule file")
    result = run_cli("lint", "--format", "json", str(tmp_path))
    assert result.returncode == 1
    assert [d["code"] for d in json.loads(result.stdout)] == ["E401"]


@pytest.mark.parametrize(
    "args",
    [
        ["lint"],
        ["lint", "--format", "xml", "examples"],
        ["lint", "does/not/exist.rules"],
        ["lint", "--symbols", "missing.json", "examples"],
        ["lint", "--symbols", "x.json", "--fetch-symbols", "examples"],
        ["lint", "--fetch-symbols", "--exchange-url", "ftp://example", "examples"],
    ],
)
def test_usage_and_io_errors_exit_2_without_a_traceback(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "error" in result.stderr


def test_a_symbols_file_that_is_not_a_symbols_reply_is_a_clean_error(tmp_path: Path) -> None:
    bad = tmp_path / "symbols.json"
    bad.write_text(json.dumps({"code": "400001", "msg": "Please check the header"}))
    result = run_cli("lint", "--symbols", str(bad), "examples")
    assert result.returncode == 2
    assert "400001" in result.stderr and "Traceback" not in result.stderr


def test_invalid_utf8_is_a_diagnostic_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "latin1.rules"
    path.write_bytes(b"when BTC-USDT bid < 60000 place limit buy 0.01 at 59000 # caf\xe9\n")
    result = run_cli("lint", "--format", "json", str(path))
    assert result.returncode == 1
    assert [(d["code"], d["line"]) for d in json.loads(result.stdout)] == [("E005", 1)]


V2_SYMBOLS = {
    "code": "200000",
    "data": [
        {
            "symbol": "ZZZ-USDT",
            "name": "ZZZ-USDT",
            "baseCurrency": "ZZZ",
            "quoteCurrency": "USDT",
            "feeCurrency": "USDT",
            "market": "USDS",
            "baseMinSize": "1",
            "quoteMinSize": "5",
            "baseMaxSize": "10000",
            "quoteMaxSize": "100000",
            "baseIncrement": "1",
            "quoteIncrement": "0.01",
            "priceIncrement": "0.001",
            "priceLimitRate": "0.1",
            "minFunds": "5",
            "isMarginEnabled": False,
            "enableTrading": True,
        }
    ],
}


async def test_fetch_symbols_reads_a_live_exchange_over_http(tmp_path: Path) -> None:
    """A real HTTP server on port 0 stands in for KuCoin: /api/v2/symbols and allTickers."""
    seen: list[str] = []

    async def symbols(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response(V2_SYMBOLS)

    async def tickers(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response(
            {
                "code": "200000",
                "data": {
                    "time": 1700000000000,
                    "ticker": [{"symbol": "ZZZ-USDT", "last": "2.000"}],
                },
            }
        )

    app = web.Application()
    app.router.add_get("/api/v2/symbols", symbols)
    app.router.add_get("/api/v1/market/allTickers", tickers)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rules = tmp_path / "z.rules"
    rules.write_text(
        "when ZZZ-USDT last < 1.9 place limit buy 10 at 1.0005\n"  # E304, W602 (50% below)
        "when ZZZ-USDT last < 1.9 place limit buy 1 at 1.95\n"  # E305: 1.95 < minFunds 5
        "when BTC-USDT last < 1 place market buy 10 USDT\n"  # E101: not on this venue
    )

    async def lint_fetching() -> tuple[int | None, bytes, bytes]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "rules_engine",
            "lint",
            "--fetch-symbols",
            "--exchange-url",
            f"http://127.0.0.1:{port}",
            "--format",
            "json",
            str(rules),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
        )
        out, err = await proc.communicate()
        return proc.returncode, out, err

    try:
        code, out, err = await lint_fetching()
    finally:
        await runner.cleanup()
    assert code == 1, err.decode()
    codes = sorted((d["code"], d["line"]) for d in json.loads(out))
    assert codes == [("E101", 3), ("E304", 1), ("E305", 2), ("W602", 1)]
    assert seen == ["/api/v2/symbols", "/api/v1/market/allTickers"]
    cached = list((tmp_path / "cache" / "rules-engine").glob("symbols-*.json"))
    assert len(cached) == 1
    # The exchange is gone now: lint falls back to the cached list and says so.
    code, out, err = await lint_fetching()
    assert code == 1
    assert "using the cached symbols list" in err.decode()
    assert sorted(d["code"] for d in json.loads(out)) == ["E101", "E304", "E305"]


def test_tickers_file_enables_the_far_from_market_warning(tmp_path: Path) -> None:
    tickers = tmp_path / "tickers.json"
    tickers.write_text(
        json.dumps(
            {
                "code": "200000",
                "data": {
                    "time": 1700000000000,
                    "ticker": [{"symbol": "BTC-USDT", "last": "90000"}],
                },
            }
        )
    )
    rules = tmp_path / "r.rules"
    rules.write_text("when BTC-USDT last < 100000 place limit sell 0.01 at 40000\n")
    result = run_cli("lint", "--tickers", str(tickers), "--format", "json", str(rules))
    assert result.returncode == 0
    warning = json.loads(result.stdout)[0]
    assert warning["code"] == "W602" and "56% below" in warning["message"]


def test_notes_show_with_verbose_and_are_counted_without(tmp_path: Path) -> None:
    rules = tmp_path / "n.rules"
    rules.write_text("when ETH-USDT last < 2000 place market buy 100 USDT\n")
    quiet = run_cli("lint", str(rules))
    assert quiet.returncode == 0
    assert "N603" not in quiet.stdout
    assert "1 note(s) (-v shows them)" in quiet.stderr
    loud = run_cli("lint", "-v", str(rules))
    assert "N603" in loud.stdout and "minFunds" in loud.stdout
