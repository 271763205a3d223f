"""The terminal view keeps the log: event lines scroll above the live table and are never
drawn over by it (checked in a real pseudo-terminal, its bytes replayed through a terminal
emulator, pyte); the table names rules and orders as `status` does and shows each open
order's side, type, price, size and filled; a narrow terminal gets plain lines."""

from __future__ import annotations

import asyncio
import fcntl
import io
import os
import pty
import re
import select
import struct
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from rules_engine.runtime._view import MIN_WIDTH, TerminalView, render

pyte = pytest.importorskip("pyte", reason="pyte (a test dependency) emulates the terminal")

ROOT = Path(__file__).resolve().parent.parent


def _run_in_pty(tmp_path: Path, columns: int, rows: int, duration: str) -> tuple[int, bytes]:
    """`rules-engine run examples/quickstart.rules --duration N` on a pseudo-terminal of
    `columns` x `rows` (stdout and stderr both the terminal, as a person runs it)."""
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "TERM": "xterm-256color",
           "COLUMNS": str(columns), "LINES": str(rows)}
    for key in ("RULES_ENGINE_VIEW", "RULES_ENGINE_LOG_FORMAT", "RULES_ENGINE_DB"):
        env.pop(key, None)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal's size first, then the watcher
        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "rules_engine", "run",
                                   "examples/quickstart.rules", "--duration", duration], env)
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out


def _screen_text(data: bytes, columns: int, rows: int) -> str:
    """What a person sees and can scroll back to, after the terminal drew `data`."""
    screen = pyte.HistoryScreen(columns, rows, history=10_000, ratio=0.5)
    pyte.ByteStream(screen).feed(data)
    scrolled = ["".join(row[i].data for i in range(columns)).rstrip()
                for row in screen.history.top]
    return "\n".join([*scrolled, *(line.rstrip() for line in screen.display)])


def _events(text: str, kind: str) -> list[str]:
    """The log lines of `kind` (`HH:MM:SS.mmm kind  ...`), joined across wrapped rows."""
    return re.findall(rf"^\d\d:\d\d:\d\d\.\d{{3}} {re.escape(kind)} +(\S.*)$", text, re.M)


@pytest.mark.slow
def test_event_lines_stay_visible_above_the_live_table(tmp_path: Path) -> None:
    code, data = _run_in_pty(tmp_path, 140, 40, "6")
    assert code == 0, data.decode(errors="replace")[-3000:]
    raw = data.decode(errors="replace")
    # The table is drawn (a box, redrawn in place) before the orders are acknowledged...
    first_table = raw.find("open orders")
    assert first_table >= 0 and "\x1b[1A" in raw
    assert raw.find("acknowledged", first_table) > first_table
    # ...and every event line is still on the terminal afterwards, above the last table.
    text = _screen_text(data, 140, 40)
    fired = _events(text, "fired")
    acknowledged = _events(text, "acknowledged")
    assert {line.split()[0] for line in fired} == {"rule=rule_entry", "rule=rule-03ed58e986db"}
    assert {line.split()[0] for line in acknowledged} == {"rule=rule_entry",
                                                          "rule=rule-03ed58e986db"}
    assert _events(text, "watcher.stopped") == ["reason=asked to stop"]
    last_table = text.rfind("open orders (")
    assert text.rfind(" acknowledged ") < last_table < text.rfind(" watcher.stopped ")
    # The table names rules as `status` does, and shows the open orders' details.
    table = text[text.rfind("rules (3)"):]
    assert "rule-03ed58e986db" in table and "rule_entry" in table and "quick_exit" in table
    header = next(line for line in table.splitlines() if "client_oid" in line)
    assert [w for w in re.split(r"[┃│ ]+", header) if w] == [
        "client_oid", "symbol", "side", "type", "price", "size", "filled", "rule"]
    assert re.search(r"BTC-USDT\s*│\s*buy\s*│\s*limit\s*│\s*\d+(\.\d+)?\s*│\s*0\.001\s*│", table)
    assert "Traceback" not in text


def _snapshot() -> dict[str, Any]:
    return {
        "feed": "live", "orders_feed": "live", "books": {"BTC-USDT": "live"},
        "lag_s": {"BTC-USDT": 0.25}, "trading": True, "halted": None, "stop_reason": "",
        "rules": [{"rule": "rule-03ed58e986db", "status": "armed", "firings": 0, "reason": ""},
                  {"rule": "too_big", "status": "blocked", "firings": 1,
                   "reason": "refused by the exchange: 200004 Balance insufficient!"}],
        "open_orders": [{"client_oid": "re485d1cda-32e1079d6eeac9117a4b4a9596",
                         "symbol": "BTC-USDT", "rule": "rule_entry", "side": "sell",
                         "type": "limit", "price": "70000.5", "size": "0.002",
                         "filled": "0.0005", "status": "open", "cancelling": False}],
        "not_yet": [{"rule": "rule-03ed58e986db",
                     "short": "BTC-USDT bid 69000 < 60000: false"}],
    }


def _rendered(width: int) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)
    console.print(render(_snapshot(), width))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def test_the_table_shows_orders_and_why_not_yet_and_names_as_status() -> None:
    text = _rendered(160)
    row = next(line for line in text.splitlines() if "re485d1cda" in line)
    cells = [c.strip() for c in row.strip("│┃ ").split("│")]
    assert cells == ["re485d1cda-32e1079d6eeac9117a4b4a9596", "BTC-USDT", "sell", "limit",
                     "70000.5", "0.002", "0.0005", "rule_entry"]
    assert "rule-03ed58e986db" in text and "BTC-USDT bid 69000 < 60000: false" in text
    assert "200004 Balance insufficient!" in text
    assert "0.2 s" in text or "0.3 s" in text  # the book's lag


def test_a_narrow_terminal_gets_plain_lines_without_boxes() -> None:
    text = _rendered(MIN_WIDTH - 1)
    assert not set(text) & set("┏┃│└━─")
    assert text.startswith("state: market feed: live") and "too_big blocked" in text


def test_a_narrow_view_prints_the_state_when_it_changes_and_keeps_lines_plain() -> None:
    out = io.StringIO()
    console = Console(file=out, width=60, force_terminal=True)
    snap = _snapshot()
    view = TerminalView(lambda: snap, console, refresh_s=0.05)

    async def drive() -> bool:
        stop = asyncio.Event()
        task = asyncio.create_task(view.run(stop))
        await asyncio.sleep(0.2)
        took = view.take("12:00:00.000 fired  rule=x")  # no table: the caller prints it
        stop.set()
        await task
        return took

    assert asyncio.run(drive()) is False
    lines = out.getvalue().splitlines()
    assert lines and all(line.startswith("state: ") for line in lines)
    assert "\x1b[1A" not in out.getvalue()  # nothing is redrawn in place
