"""Sandbox throughput over loopback: orders per second (signed HTTP) and level2 messages per
second pushed over WebSocket, plus the time one feed tick takes with many subscribers.

Run: `.venv/bin/python benchmarks/bench_sandbox.py [--seconds 3] [--workers 16]`.
Figures are printed; nothing asserts on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from rules_engine.compiler import CompiledRule, Compiler
from rules_engine.compiler import model as M
from rules_engine.core.symbols import SymbolTable, parse_symbols_reply
from rules_engine.dsl import SourceFile
from rules_engine.engine import OrderIntent, RuleIndex, initial_state, resolve_order, step
from rules_engine.sandbox.config import DEMO_KEY, DEMO_PASSPHRASE, DEMO_SECRET, SandboxConfig
from rules_engine.sandbox.engine import OrderRequest
from rules_engine.sandbox.feeds import FOLLOWERS
from rules_engine.sandbox.server import SandboxState, build_state, create_app


def _sign(text: str) -> str:
    return base64.b64encode(hmac.new(DEMO_SECRET.encode(), text.encode(), hashlib.sha256).digest()
                            ).decode()


def _headers(method: str, path: str, body: str) -> dict[str, str]:
    stamp = str(time.time_ns() // 1_000_000)
    return {
        "KC-API-KEY": DEMO_KEY, "KC-API-TIMESTAMP": stamp, "KC-API-KEY-VERSION": "2",
        "KC-API-SIGN": _sign(stamp + method + path + body),
        "KC-API-PASSPHRASE": _sign(DEMO_PASSPHRASE), "Content-Type": "application/json",
    }


async def _serve(state: SandboxState, run_feed: bool) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(create_app(state, run_feed=run_feed), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def bench_engine(seconds: float, say: Callable[[str], None] = print) -> dict[str, Any]:
    """The matching engine alone (no HTTP): resting limit orders, takers and feed ticks."""
    state = build_state(SandboxConfig.model_validate(
        {"balances": {"USDT": "1000000000", "BTC": "100000"},
         "max_open_orders_per_symbol": 10**9}))
    state.feed_step(force=True)
    engine = state.engine
    _, bids, asks = engine.snapshot("BTC-USDT", 1)
    bid, ask = bids[0][0], asks[0][0]
    count = 0
    started = time.perf_counter()
    now = state.now_ms()
    while time.perf_counter() - started < seconds:
        for n in range(200):
            side = "buy" if n % 2 else "sell"
            price = (bid - n % 40) if side == "buy" else (ask + n % 40)
            req = OrderRequest(symbol="BTC-USDT", side=side, type="limit",
                               client_oid=f"e{count}", price=price, size=Decimal("0.001"))
            engine.place(req, now)
            count += 1
        taker = OrderRequest(symbol="BTC-USDT", side="buy", type="market",
                             client_oid=f"t{count}", funds=Decimal("500"))
        engine.place(taker, now)
        count += 1
        now += 1
    elapsed = time.perf_counter() - started
    say(f"matching engine alone: {count / elapsed:,.0f} orders/s "
        f"({count} orders, {len(engine.fills)} fills in {elapsed:.1f} s)")
    return {"orders_per_s": count / elapsed, "orders": count, "fills": len(engine.fills),
            "seconds": elapsed}


async def bench_orders(seconds: float, workers: int, say: Callable[[str], None] = print,
                       *, durable: bool = False) -> dict[str, Any]:
    """Signed HF limit orders over loopback HTTP from `workers` concurrent clients; `durable`
    runs the sandbox with a `--state` file, so each order is fsync'd to its journal before the
    reply (group commits)."""
    if durable:
        with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as folder:
            return await _bench_orders(seconds, workers, say, Path(folder) / "state.json")
    return await _bench_orders(seconds, workers, say, None)


async def _bench_orders(seconds: float, workers: int, say: Callable[[str], None],
                        state_file: Path | None) -> dict[str, Any]:
    config = SandboxConfig.model_validate({
        "quotas": {"spot": 10**9, "public": 10**9, "management": 10**9},
        "balances": {"USDT": "1000000000", "BTC": "1000"},
        "max_open_orders_per_symbol": 10**9,
    })
    state = build_state(config, state_file=state_file)
    runner, url = await _serve(state, run_feed=True)
    _, bids, _ = state.engine.snapshot("BTC-USDT", 1)
    price = (bids[0][0] * Decimal("0.9")).quantize(Decimal("0.1"))
    count = 0
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            body = json.dumps({"symbol": "BTC-USDT", "side": "buy", "type": "limit",
                               "price": str(price), "size": "0.001"}, separators=(",", ":"))
            started = time.perf_counter()
            async with session.post(url + "/api/v1/hf/orders", data=body,
                                    headers=_headers("POST", "/api/v1/hf/orders", body)) as r:
                reply = await r.json()
            assert reply["code"] == "200000", reply
            latencies.append(time.perf_counter() - started)
            count += 1

    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(workers)))
        elapsed = time.perf_counter() - started
    await runner.cleanup()
    latencies.sort()
    median_ms = statistics.median(latencies) * 1000
    p99_ms = latencies[int(len(latencies) * 0.99)] * 1000
    fsyncs = state.journal.fsyncs if state.journal is not None else 0
    how = f", {fsyncs} journal fsyncs" if state_file is not None else ""
    say(f"orders over loopback HTTP{' with --state' if state_file else ''}: "
        f"{count / elapsed:,.0f} orders/s "
        f"({count} signed HF limit orders in {elapsed:.1f} s, {workers} concurrent clients; "
        f"median {median_ms:.1f} ms, p99 {p99_ms:.1f} ms{how})")
    return {"orders_per_s": count / elapsed, "orders": count, "workers": workers,
            "seconds": elapsed, "median_ms": median_ms, "p99_ms": p99_ms, "fsyncs": fsyncs}


async def bench_level2(seconds: float, clients: int, feed: str) -> None:
    state = build_state(SandboxConfig(), feed_name=feed, speed=20.0)
    runner, url = await _serve(state, run_feed=False)
    symbols = list(state.symbols)
    received = 0
    stop = asyncio.Event()

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal received
        async with session.post(url + "/api/v1/bullet-public") as r:
            data = (await r.json())["data"]
        endpoint = data["instanceServers"][0]["endpoint"]
        async with session.ws_connect(f"{endpoint}?token={data['token']}&connectId=b") as ws:
            await ws.receive()
            topics = ",".join(symbols)
            for n, prefix in enumerate(("/market/level2:", "/market/ticker:")):
                await ws.send_json({"id": str(n), "type": "subscribe", "topic": prefix + topics,
                                    "response": True})
            while not stop.is_set():
                try:
                    msg = await ws.receive(timeout=0.5)
                except TimeoutError:
                    continue
                if msg.type != aiohttp.WSMsgType.TEXT:
                    return
                if '"trade.l2update"' in msg.data:
                    received += 1

    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(client(session)) for _ in range(clients)]
        await asyncio.sleep(0.3)
        tick_ms: list[float] = []
        received = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            t = time.perf_counter()
            state.feed_step()
            tick_ms.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(0)
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*tasks)
    await runner.cleanup()
    print(f"level2 pushed ({feed} feed, {len(symbols)} symbols, {clients} clients): "
          f"{received / elapsed:,.0f} level2 messages/s received "
          f"({len(tick_ms) / elapsed:,.0f} feed ticks/s; one tick takes "
          f"median {statistics.median(tick_ms):.2f} ms, max {max(tick_ms):.2f} ms, "
          f"against a feed interval of {state.config.feed_interval_ms} ms)")


async def bench_demo_load(seconds: float) -> None:
    """The load of a watcher demo on 10 symbols: the feed loop on its own timer, 10 WebSocket
    clients on every symbol's level2 and ticker, and a REST client placing and cancelling orders;
    reports how late the feed's ticks started (a sandbox falling behind shows a growing lag).
    The sandbox runs as `rules-engine sandbox` in its own process, so the clients' work here is
    not counted against it."""
    symbols = ["BTC-USDT", *sorted(FOLLOWERS)]
    with tempfile.TemporaryDirectory() as tmp:
        config_file = Path(tmp) / "config.json"
        config_file.write_text(json.dumps({"quotas": {"spot": 10**9, "public": 10**9},
                                           "synthetic_symbols": symbols}))
        proc = subprocess.Popen(
            [sys.executable, "-m", "rules_engine", "sandbox", "--port", "0",
             "--config", str(config_file)], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            url = json.loads(proc.stdout.readline())["rest_url"]
            await _demo_clients(url, symbols, seconds)
        finally:
            proc.terminate()
            proc.communicate(timeout=10)


async def _demo_clients(url: str, symbols: list[str], seconds: float) -> None:
    stop = asyncio.Event()
    counts = {"received": 0}

    placed = 0

    async def trader(session: aiohttp.ClientSession) -> None:
        nonlocal placed
        while not stop.is_set():
            body = json.dumps({"symbol": "ETH-USDT", "side": "buy", "type": "limit",
                               "price": "100", "size": "0.1"}, separators=(",", ":"))
            async with session.post(url + "/api/v1/hf/orders", data=body,
                                    headers=_headers("POST", "/api/v1/hf/orders", body)) as r:
                order_id = (await r.json())["data"]["orderId"]
            path = f"/api/v1/hf/orders/{order_id}?symbol=ETH-USDT"
            async with session.delete(url + path, headers=_headers("DELETE", path, "")) as r:
                await r.read()
            placed += 1
            await asyncio.sleep(0.1)

    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(_ws_load(session, url, symbols, stop, counts))
                 for _ in range(10)]
        tasks.append(asyncio.create_task(trader(session)))
        await asyncio.sleep(seconds)
        async with session.get(url + "/sandbox/admin/stats") as r:
            stats = (await r.json())["data"]
        stop.set()
        await asyncio.gather(*tasks)
    feed = stats["feed"]
    print(f"demo load (sandbox process, synthetic feed, {len(symbols)} symbols, 10 WS clients on "
          f"level2+ticker, {placed} place+cancel pairs): {feed['ticks']} feed ticks at 200 ms "
          f"in {seconds:.0f} s, tick start lag median {feed['p50_lag_ms']:.2f} ms, "
          f"mean {feed['mean_lag_ms']:.2f} ms, max {feed['max_lag_ms']:.2f} ms; "
          f"{counts['received'] / seconds:,.0f} WS messages/s received")


async def _ws_load(session: aiohttp.ClientSession, url: str, symbols: list[str],
                   stop: asyncio.Event, counts: dict[str, int]) -> None:
    """One WebSocket client on every symbol's level2 and ticker, counting what it receives."""
    async with session.post(url + "/api/v1/bullet-public") as r:
        data = (await r.json())["data"]
    endpoint = data["instanceServers"][0]["endpoint"]
    async with session.ws_connect(f"{endpoint}?token={data['token']}") as ws:
        for n, prefix in enumerate(("/market/level2:", "/market/ticker:")):
            await ws.send_json({"id": str(n), "type": "subscribe",
                                "topic": prefix + ",".join(symbols), "response": True})
        while not stop.is_set():
            try:
                msg = await ws.receive(timeout=0.5)
            except TimeoutError:
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            counts["received"] += 1


async def bench_rules_demo(seconds: float) -> None:
    """The demo with real rules: 100 compiled rules on 10 symbols (10 a symbol, `repeat every
    2s`, thresholds around each symbol's price), stepped by the evaluator's index on every
    ticker update and by a 1 s clock, each firing resolved and sent as a signed HF order; plus
    10 WebSocket clients on every symbol's level2 and ticker. The sandbox runs as its own
    process; reports how late its feed's ticks started (falling behind shows as growing lag)."""
    symbols = ["BTC-USDT", *sorted(FOLLOWERS)][:10]
    with tempfile.TemporaryDirectory() as tmp:
        config_file = Path(tmp) / "config.json"
        balances = {"USDT": "1000000000", **{s.split("-")[0]: "1000000" for s in symbols}}
        config_file.write_text(json.dumps({
            "quotas": {"spot": 10**9, "public": 10**9}, "synthetic_symbols": symbols,
            "balances": balances}))
        proc = subprocess.Popen(
            [sys.executable, "-m", "rules_engine", "sandbox", "--port", "0",
             "--config", str(config_file)], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            url = json.loads(proc.stdout.readline())["rest_url"]
            async with aiohttp.ClientSession() as session:
                async with session.get(url + "/api/v2/symbols") as r:
                    table = parse_symbols_reply(await r.json(), source="sandbox")
                lines = []
                for sym in symbols:
                    async with session.get(f"{url}/api/v1/market/orderbook/level1?symbol={sym}"
                                           ) as r:
                        price = Decimal((await r.json())["data"]["price"])
                    info = table[sym]
                    size = info.base_min_size * 10
                    for k in range(10):
                        level = (price * (1 + Decimal(k - 5) / 2500)).quantize(
                            info.price_increment)
                        name = f"demo_{sym.split('-')[0].lower()}_{k}"
                        lines.append(f"rule {name} on {sym}:\n    when last < {level}\n"
                                     f"    place limit buy {size} at bid - 5%\n"
                                     "    repeat every 2s\n")
                program = Compiler(table).compile([SourceFile("demo.rules", "".join(lines))])
                assert len(program.rules) == 100, program.errors[:3]
                stats = await _rules_demo_clients(
                    session, url, symbols, seconds, program.rules, table)
        finally:
            proc.terminate()
            proc.communicate(timeout=10)
    feed, fired, sent, refused, received = stats
    print(f"demo with rules (sandbox process, {len(symbols)} symbols, 100 rules, 10 WS clients on "
          f"level2+ticker): {fired} firings, {sent} orders acknowledged, {refused} refused; "
          f"{feed['ticks']} feed ticks at 200 ms in {seconds:.0f} s, tick start lag median "
          f"{feed['p50_lag_ms']:.2f} ms, mean {feed['mean_lag_ms']:.2f} ms, max "
          f"{feed['max_lag_ms']:.2f} ms; {received / seconds:,.0f} WS messages/s received")


async def _rules_demo_clients(  # noqa: PLR0917 - the parts of one demo
    session: aiohttp.ClientSession, url: str, symbols: list[str], seconds: float,
    rules: tuple[CompiledRule, ...], table: SymbolTable,
) -> tuple[dict[str, float], int, int, int, int]:
    index = RuleIndex(rules)
    now = datetime.now(UTC)
    states = {r.identity: initial_state(r, now) for r in rules}
    market: dict[object, Decimal] = {}
    stop = asyncio.Event()
    counts = {"fired": 0, "sent": 0, "refused": 0, "received": 0}
    orders: asyncio.Queue[tuple[str, OrderIntent]] = asyncio.Queue()

    def decide(selected: list[CompiledRule]) -> None:
        at = datetime.now(UTC)
        for rule in selected:
            states[rule.identity], decision = step(rule, states[rule.identity], market, at)
            order = rule.order
            if decision is not None and decision.kind == "fire" and order is not None:
                counts["fired"] += 1
                intent = resolve_order(order, market, table[order.symbol])
                if isinstance(intent, OrderIntent):
                    orders.put_nowait((f"demo{decision.rule}{decision.firing}", intent))

    async def rules_client() -> None:
        async with session.post(url + "/api/v1/bullet-public") as r:
            data = (await r.json())["data"]
        endpoint = data["instanceServers"][0]["endpoint"]
        async with session.ws_connect(f"{endpoint}?token={data['token']}") as ws:
            await ws.send_json({"id": "t", "type": "subscribe", "response": True,
                                "topic": "/market/ticker:" + ",".join(symbols)})
            while not stop.is_set():
                try:
                    msg = await ws.receive(timeout=0.5)
                except TimeoutError:
                    continue
                if msg.type != aiohttp.WSMsgType.TEXT:
                    return
                frame = json.loads(msg.data)
                if frame.get("subject") != "trade.ticker":
                    continue
                sym = frame["topic"].split(":", 1)[1]
                tick = frame["data"]
                selected: list[CompiledRule] = []
                for field, key in (("bid", "bestBid"), ("ask", "bestAsk"), ("last", "price")):
                    leaf = M.Field(sym, field)
                    new = Decimal(tick[key])
                    old = market.get(leaf)
                    market[leaf] = new
                    selected.extend(index.affected(leaf, old, new))
                decide(selected)

    async def clock() -> None:
        while not stop.is_set():
            await asyncio.sleep(1.0)
            decide(list(index.timed))

    async def sender() -> None:
        while not stop.is_set() or not orders.empty():
            try:
                oid, intent = await asyncio.wait_for(orders.get(), 0.2)
            except TimeoutError:
                continue
            body = json.dumps({"clientOid": oid[-40:], "symbol": intent.symbol,
                               "side": intent.side, "type": "limit",
                               "price": str(intent.price), "size": str(intent.size)},
                              separators=(",", ":"))
            async with session.post(url + "/api/v1/hf/orders", data=body,
                                    headers=_headers("POST", "/api/v1/hf/orders", body)) as r:
                reply = await r.json()
            counts["sent" if reply.get("code") == "200000" else "refused"] += 1

    tasks = [asyncio.create_task(_ws_load(session, url, symbols, stop, counts))
             for _ in range(10)]
    tasks += [asyncio.create_task(rules_client()), asyncio.create_task(clock()),
              asyncio.create_task(sender())]
    await asyncio.sleep(seconds)
    async with session.get(url + "/sandbox/admin/stats") as r:
        feed = (await r.json())["data"]["feed"]
    stop.set()
    await asyncio.gather(*tasks)
    return feed, counts["fired"], counts["sent"], counts["refused"], counts["received"]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    bench_engine(args.seconds)
    await bench_orders(args.seconds, args.workers)
    await bench_orders(args.seconds, args.workers, durable=True)
    await bench_level2(args.seconds, 1, "synthetic")
    await bench_level2(args.seconds, 10, "recorded")
    await bench_demo_load(max(args.seconds, 5.0))
    await bench_rules_demo(max(args.seconds, 10.0))


if __name__ == "__main__":
    asyncio.run(main())
