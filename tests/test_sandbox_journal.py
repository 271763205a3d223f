"""A sandbox killed with SIGKILL forgets nothing it acknowledged (`--state FILE` + its journal).

The sandbox runs as its own process (`rules-engine sandbox --port 0 --state FILE`); orders are
placed concurrently, some cancelled, some filled, then the process is killed at once, with no
pause after the last reply. Restarted on the same file, every acknowledged order, confirmed
cancel and fill is there with the same ids, and the balances agree.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from sandbox_support import auth_headers

from rules_engine.sandbox import persist
from rules_engine.sandbox.config import SandboxConfig
from rules_engine.sandbox.journal import journal_path, read_journal
from rules_engine.sandbox.server import build_state

ROOT = Path(__file__).resolve().parent.parent
SYMBOL = "BTC-USDT"


def _start(state: Path, config: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rules_engine", "sandbox", "--port", "0", "--state", str(state),
         "--config", str(config), "--seed", "5"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    banner = json.loads(proc.stdout.readline())
    return proc, str(banner["rest_url"])


class Client:
    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url

    async def call(self, method: str, path: str, params: dict[str, Any] | None = None,
                   body: dict[str, Any] | None = None) -> dict[str, Any]:
        query = ("?" + urlencode(params)) if params else ""
        text = json.dumps(body, separators=(",", ":")) if body is not None else ""
        headers = auth_headers(method, path + query, text, time.time_ns() // 1_000_000)
        async with self.http.request(method, self.url + path + query, data=text or None,
                                     headers=headers) as response:
            payload: dict[str, Any] = await response.json(content_type=None)
            return payload

    async def ok(self, method: str, path: str, params: dict[str, Any] | None = None,
                 body: dict[str, Any] | None = None) -> Any:
        payload = await self.call(method, path, params, body)
        assert payload["code"] == "200000", (method, path, payload)
        return payload["data"]

    async def view(self, order_ids: list[str]) -> dict[str, Any]:
        """Everything the account can read back: balances, each order, open orders, fills."""
        accounts = await self.ok("GET", "/api/v1/accounts", {"type": "trade"})
        orders = {}
        for order_id in order_ids:
            row = await self.ok("GET", f"/api/v1/hf/orders/{order_id}", {"symbol": SYMBOL})
            orders[order_id] = {k: row[k] for k in ("id", "clientOid", "active", "dealSize",
                                                    "dealFunds", "fee", "cancelledSize",
                                                    "inOrderBook", "cancelExist")}
        active = await self.ok("GET", "/api/v1/hf/orders/active", {"symbol": SYMBOL})
        fills = await self.ok("GET", "/api/v1/hf/fills", {"symbol": SYMBOL, "limit": 100})
        ledger = await self.ok("GET", "/api/v1/hf/accounts/ledgers", {"limit": 200})
        return {
            "ledger": [(e["id"], e["currency"], e["amount"], e["balance"]) for e in ledger],
            "balances": sorted((a["currency"], a["balance"], a["available"], a["holds"])
                               for a in accounts),
            "orders": orders,
            "active": sorted(o["id"] for o in active),
            "fills": sorted((f["tradeId"], f["orderId"], f["price"], f["size"], f["fee"])
                            for f in fills["items"]),
        }


async def _trade(url: str) -> tuple[list[str], list[str], dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        client = Client(http, url)
        book = await client.ok("GET", "/api/v1/market/orderbook/level1", {"symbol": SYMBOL})
        far = (Decimal(book["price"]) * Decimal("0.7")).quantize(Decimal("0.1"))

        async def rest(n: int) -> str:
            data = await client.ok("POST", "/api/v1/hf/orders", body={
                "clientOid": f"rest-{n}", "symbol": SYMBOL, "side": "buy", "type": "limit",
                "price": str(far - n), "size": "0.001"})
            return str(data["orderId"])

        async def take(n: int) -> str:
            data = await client.ok("POST", "/api/v1/hf/orders", body={
                "clientOid": f"take-{n}", "symbol": SYMBOL, "side": "sell" if n % 2 else "buy",
                "type": "market", "size": "0.002"})
            return str(data["orderId"])

        resting = list(await asyncio.gather(*(rest(n) for n in range(30))))
        taken = list(await asyncio.gather(*(take(n) for n in range(10))))
        cancelled = resting[::3]
        for order_id in cancelled:
            await client.ok("DELETE", f"/api/v1/hf/orders/{order_id}", {"symbol": SYMBOL})
        before = await client.view(resting + taken)
        # The last acknowledged changes: the kill follows their replies at once.
        last = await asyncio.gather(*(rest(n) for n in range(100, 110)))
        await asyncio.gather(*(client.ok("DELETE", f"/api/v1/hf/orders/{i}", {"symbol": SYMBOL})
                               for i in last[:5]))
        return resting + taken + list(last), cancelled + list(last[:5]), before


async def _read(url: str, ids: list[str]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        return await Client(http, url).view(ids)


@pytest.mark.slow
def test_a_sandbox_killed_with_sigkill_keeps_everything_it_acknowledged(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"balances": {"USDT": "100000", "BTC": "1"}}))
    proc, url = _start(state, config)
    try:
        ids, cancelled, before = asyncio.run(_trade(url))
        seen = asyncio.run(_read(url, ids))
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert read_journal(journal_path(state)), "the changes were journaled, not snapshotted"

    proc, url = _start(state, config)
    try:
        after = asyncio.run(_read(url, ids))
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert after == seen
    for order_id in cancelled:
        assert after["orders"][order_id]["cancelExist"] is True
        assert after["orders"][order_id]["active"] is False
    assert len(after["fills"]) >= 10 and {f[1] for f in after["fills"]} <= set(ids)
    assert len(after["active"]) == 30 - 10 + 5
    assert len(after["ledger"]) == 2 * len(after["fills"])
    # What was read before the last burst is still true of the orders it covered.
    for order_id, row in before["orders"].items():
        assert after["orders"][order_id] == row
    # A clean stop folds the journal into the snapshot.
    assert not read_journal(journal_path(state))


def test_a_torn_last_line_is_ignored_and_a_bad_middle_line_is_named(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    journal = journal_path(state)
    journal.write_bytes(b'{"n": 1, "orders": [], "stops": [], "fills": [], "totals": '
                        b'{"USDT": "5"}, "holds": {}, "counter": 0, "trade_counter": 0, '
                        b'"fill_counter": 0}\n{"n": 2, "ord')
    built = build_state(SandboxConfig(), state_file=state)
    assert built.engine.account.total("USDT") == Decimal(5)
    assert persist.load(state)["journal_n"] == 1 and journal.read_bytes() == b""
    assert built.journal is not None
    built.journal.close()

    journal.write_bytes(b"garbage\n{\"n\": 3}\n")
    with pytest.raises(ValueError, match=r"state\.json\.journal:1: not a journal line"):
        build_state(SandboxConfig(), state_file=state)


def test_replaying_lines_the_snapshot_already_holds_changes_nothing(tmp_path: Path) -> None:
    """A crash after the snapshot's rename but before the journal was emptied."""
    state = tmp_path / "state.json"
    first = build_state(SandboxConfig(), state_file=state)
    first.feed_step(force=True)
    from rules_engine.sandbox.engine import OrderRequest

    order, events = first.engine.place(OrderRequest(
        symbol=SYMBOL, side="buy", type="market", client_oid="m1", size=Decimal("0.01")),
        first.now_ms())
    first.publish(events)
    lines = journal_path(state).read_bytes()
    assert lines.count(b"\n") == 1
    assert first.journal is not None
    first.journal.compact_now(lambda n: persist.save(first, state, n))
    first.journal.close()
    journal_path(state).write_bytes(lines)  # the line is back, already in the snapshot
    usdt = first.engine.account.total("USDT")
    second = build_state(SandboxConfig(), state_file=state)
    assert second.engine.account.total("USDT") == usdt
    assert len(second.engine.fills) == len(first.engine.fills)
    assert second.engine.orders[order.id].status == "done"  # type: ignore[union-attr]
    assert second.journal is not None
    second.journal.close()
