"""The crash harness shared by `tests/test_crash.py` and `benchmarks/bench_crash.py`.

A sandbox runs as its own process (`rules-engine sandbox --port 0`, a busy synthetic feed);
watchers (`rules-engine run ... --exchange-url ... --db sqlite:////...`) are started against it
one after the other on the same database, and each one is killed with SIGKILL at a random
moment (seeded): while Python starts, while the watcher starts and recovers, right after a
`fired` line (the firing is committed, its order may or may not have left), right after an
`order.filled` line (the order is final in the store, what follows it may not be), or at a
random moment of the busy session. At the end the market is stalled (so that nothing moves
behind the store's back), a last watcher runs cleanly until the store has caught up with the
exchange, it is stopped with SIGTERM, and the store is checked against the sandbox's own record
(its signed REST API, read with a key of its own so the reads do not eat the watcher's rate
limit). What is checked, precisely, is in `check()`.

Everything here is real: processes, sockets, SQLite on disk. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import random
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from rules_engine.sandbox.config import DEMO_KEY, DEMO_PASSPHRASE, DEMO_SECRET
from rules_engine.store._repo import engine_prefix
from rules_engine.store._schema import Event, Fill, Firing, Meta, Order, RuleState

__all__ = ["CrashResult", "CrashSession", "run_crash_session"]

SYMBOLS = ("BTC-USDT", "ETH-USDT")
# The harness reads the exchange with its own key: rate limits are metered per key, so its
# reads never push the watcher into 429s. Same account (the sandbox has one), same orders.
HARNESS_KEY = "crash-harness-key"
HARNESS_SECRET = "crash-harness-secret-not-a-real-secret"
HARNESS_PASSPHRASE = "crash-harness"

SANDBOX_CONFIG: dict[str, Any] = {
    "keys": [
        {"api_key": DEMO_KEY, "api_secret": DEMO_SECRET, "api_passphrase": DEMO_PASSPHRASE,
         "permissions": ["General", "Spot"], "remark": "demo", "demo": True},
        {"api_key": HARNESS_KEY, "api_secret": HARNESS_SECRET,
         "api_passphrase": HARNESS_PASSPHRASE, "permissions": ["General", "Spot"],
         "remark": "crash harness (reads only)"},
    ],
    # Bigger than the demo balances: a few thousand small orders must never be refused for
    # balance (a refusal blocks its rule, and a blocked rule makes the session less busy).
    "balances": {"USDT": "10000000", "BTC": "100", "ETH": "1000"},
    "feed_interval_ms": 50,  # a busy market: book sizes and spreads flip every few ticks
}

# Short HF deadline (window 2 s + request timeout 3 s), so that firings whose outcome a kill
# made unknown are proven placed or absent within seconds; quick lookups and polls.
WATCHER_TOML = """\
order_window_ms = 2000
request_timeout_s = 3.0
resolve_interval_s = 0.5
poll_interval_s = 2.0
heartbeat_s = 1.0
log_format = "json"
view = "off"
"""

# Kill moments: (name, weight).
MODES = (
    ("spawn", 1),  # a random delay after the process starts (imports, start-up)
    ("starting", 2),  # just after `watcher.starting`: lease, venue check, recovery lookups
    ("recovered", 1),  # just after `recovered`: adoption done, feeds connecting
    ("fired", 4),  # just after a `fired` line: committed, the order maybe not sent yet
    ("fired lb_btc", 2),  # the same for a parent of an `after ... fired` rule: not armed yet
    ("order.filled", 1),  # just after an `order.filled` line: final, what follows maybe not
    ("order.filled parent", 2),  # the same for an order of a parent of `after ... filled`
    ("busy", 2),  # a random moment of the busy session
)

# Rules whose chains are checked: (child, parent, event).
CHAINS = (("chain_fill_btc", "mb_btc", "filled"), ("chain_fill_eth", "mb_eth", "filled"),
          ("chain_fired_btc", "lb_btc", "fired"), ("bracket_btc", "dip_btc", "filled"))
# Orders the engine holds until they trigger (trailing stops, brackets' stop-losses): one
# cancelled or still held never reached the exchange.
HELD_TYPES = ("trailing-stop", "stop-loss")


def rules_text(btc_bid: Decimal, eth_bid: Decimal) -> str:
    """A busy session: about 15 firings a second on the synthetic feed. Book sizes and
    spreads flip every few ticks; two level conditions sit at the current price. Market orders
    (by funds and by size) and marketable limits fill at once; limits 3% to 5% away from the
    market rest (tracked across restarts) until a `cancel all` rule sweeps them (which keeps
    them under the sandbox's 200 open orders per symbol); chained rules follow a parent's
    fills and firings."""
    btc_level = btc_bid.quantize(Decimal("0.1"))
    eth_level = eth_bid.quantize(Decimal("0.01"))
    return f"""\
# Generated by tests/crash_support.py: a busy session for the crash test.

rule mb_btc on BTC-USDT:
    when bid_size > 0.05
    place market buy 20 USDT
    repeat every 1s

rule ms_btc on BTC-USDT:
    when ask_size > 0.05
    place market sell 0.0003
    repeat every 1s

rule lb_btc on BTC-USDT:
    when spread > 0.15
    place limit buy 0.0002 at ask + 20
    repeat every 1s

rule ls_btc on BTC-USDT:
    when spread > 0.25
    place limit sell 0.0002 at bid - 20 ioc
    repeat every 1s

rule rest_buy_btc on BTC-USDT:
    when bid_size < 0.05
    place limit buy 0.0001 at bid - 3%
    repeat every 1s

rule rest_sell_btc on BTC-USDT:
    when ask_size < 0.04
    place limit sell 0.0001 at ask + 3% post-only
    repeat every 2s

rule rest_capped_btc on BTC-USDT:
    when spread > 0.15
    place limit buy 0.0001 at bid - 5%
    repeat every 2s max 60

rule level_up_btc on BTC-USDT:
    when bid > {btc_level}
    place market buy 15 USDT
    repeat every 1s

rule level_down_btc on BTC-USDT:
    when ask < {btc_level}
    place market sell 0.0002
    repeat every 2s

rule sweep_btc on BTC-USDT:
    when bid_size > 0.2
    cancel all
    repeat every 3s

rule chain_fill_btc on BTC-USDT:
    after mb_btc filled
    place market sell filled_size

rule chain_fired_btc on BTC-USDT:
    after lb_btc fired
    place limit buy 0.0001 at bid - 4%

rule mb_eth on ETH-USDT:
    when bid_size > 0.7
    place market buy 25 USDT
    repeat every 1s

rule ms_eth on ETH-USDT:
    when ask_size > 0.7
    place market sell 0.01
    repeat every 1s

rule rest_buy_eth on ETH-USDT:
    when bid_size < 0.4
    place limit buy 0.005 at bid - 3%
    repeat every 1s

rule rest_sell_eth on ETH-USDT:
    when ask_size < 0.4
    place limit sell 0.005 at ask + 3%
    repeat every 2s

rule level_eth on ETH-USDT:
    when last > {eth_level}
    place market buy 12 USDT
    repeat every 2s

rule sweep_eth on ETH-USDT:
    when bid_size > 2
    cancel all
    repeat every 3s

rule chain_fill_eth on ETH-USDT:
    after mb_eth filled
    place market sell filled_size

rule dip_btc on BTC-USDT:
    when spread > 0.2
    place market buy 0.0003
    repeat every 2s

rule bracket_btc on BTC-USDT:
    after dip_btc filled
    place limit sell filled_size at fill_price + 0.02%
    stop-loss at fill_price - 0.01%

rule trail_eth on ETH-USDT:
    when ask_size > 1
    place trailing-stop sell 0.005 by 0.01%
    repeat every 3s

rule timed_btc on BTC-USDT:
    when spread >= 0.1 for 1s
    place limit buy 0.0001 at bid - 2%
    cancel after 3s
    repeat every 2s
"""


# ====================================================================== the sandbox


def _sign(secret: str, text: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()
                            ).decode()


class SandboxProcess:
    """`rules-engine sandbox --port 0` in its own process, and signed reads of its record."""

    def __init__(self, workdir: Path, seed: int, config: dict[str, Any] | None = None) -> None:
        self.workdir = workdir
        self.seed = seed
        self.config = SANDBOX_CONFIG if config is None else config
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        config = self.workdir / "sandbox.json"
        config.write_text(json.dumps(self.config, indent=1), encoding="utf-8")
        out = self.workdir / "sandbox.stdout"
        with out.open("wb") as stdout, (self.workdir / "sandbox.stderr").open("wb") as stderr:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "rules_engine", "sandbox", "--port", "0",
                "--feed", "synthetic", "--seed", str(self.seed), "--config", str(config),
                stdout=stdout, stderr=stderr, stdin=asyncio.subprocess.DEVNULL,
                env=_clean_env(),
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = out.read_text(encoding="utf-8")
            if "\n" in text:
                self.url = json.loads(text.split("\n", 1)[0])["rest_url"]
                break
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        if not self.url:
            err = (self.workdir / "sandbox.stderr").read_text(encoding="utf-8")[-2000:]
            raise RuntimeError(f"the sandbox did not start: {err}")
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def public(self, path: str, params: dict[str, str] | None = None) -> Any:
        assert self.http is not None
        query = ("?" + urlencode(params)) if params else ""
        async with self.http.get(self.url + path + query) as reply:
            body = await reply.json(content_type=None)
        if body.get("code") != "200000":
            raise RuntimeError(f"GET {path}{query}: {body}")
        return body.get("data")

    async def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        assert self.http is not None
        async with self.http.request(method, self.url + "/sandbox/admin/" + path,
                                     json=body) as reply:
            payload = await reply.json(content_type=None)
        if payload.get("code") not in (None, "200000"):
            raise RuntimeError(f"{method} /sandbox/admin/{path}: {payload}")
        return payload.get("data", payload)

    async def signed(self, path: str, params: list[tuple[str, str]]) -> Any:
        """A signed GET with the harness's key (KuCoin's rule: prehash = timestamp + METHOD +
        path?query + body; passphrase as HMAC for key version 2)."""
        assert self.http is not None
        query = ("?" + "&".join(f"{k}={v}" for k, v in params)) if params else ""
        for attempt in range(20):
            stamp = str(time.time_ns() // 1_000_000)
            headers = {
                "KC-API-KEY": HARNESS_KEY,
                "KC-API-SIGN": _sign(HARNESS_SECRET, stamp + "GET" + path + query),
                "KC-API-TIMESTAMP": stamp,
                "KC-API-PASSPHRASE": _sign(HARNESS_SECRET, HARNESS_PASSPHRASE),
                "KC-API-KEY-VERSION": "2",
            }
            async with self.http.get(self.url + path + query, headers=headers) as reply:
                body = await reply.json(content_type=None)
                reset = reply.headers.get("gw-ratelimit-reset", "")
            if body.get("code") == "200000":
                return body.get("data")
            if body.get("code") == "429000" and attempt < 19:
                await asyncio.sleep(min(int(reset) / 1000 if reset.isdigit() else 1.0, 30.0))
                continue
            raise RuntimeError(f"GET {path}{query}: {body}")
        raise AssertionError("unreachable")

    async def paged(self, path: str, symbol: str) -> list[dict[str, Any]]:
        """Every item of a `lastId`-paged HF list (done orders, fills), newest first: pages of
        100 until a page comes back empty."""
        items: list[dict[str, Any]] = []
        last_id = 0
        for _ in range(100_000):
            params = [("symbol", symbol), ("limit", "100")]
            if last_id:
                params.append(("lastId", str(last_id)))
            page = await self.signed(path, params)
            chunk = page.get("items") or []
            if not chunk:
                return items
            items.extend(chunk)
            new_last = int(page.get("lastId") or 0)
            if not new_last or new_last == last_id:
                return items
            last_id = new_last
        raise RuntimeError(f"{path} did not stop paging")

    async def record(self) -> ExchangeRecord:
        """The sandbox's own record of the account: every order (active, and done: retained
        7 days by default, far longer than a session) and every fill, on every traded
        symbol; cross-checked against the order count of the admin stats."""
        orders: dict[str, dict[str, Any]] = {}
        fills: dict[str, dict[str, Any]] = {}
        for symbol in SYMBOLS:
            active = await self.signed("/api/v1/hf/orders/active", [("symbol", symbol)])
            done: dict[str, dict[str, Any]] = {}
            for item in await self.paged("/api/v1/hf/orders/done", symbol):
                if item["id"] in done:
                    raise AssertionError(f"order {item['id']} listed twice (paging)")
                done[item["id"]] = item
            # An order can end between the two reads (a watcher still runs): done is newer.
            for item in active or []:
                orders[item["id"]] = item
            orders.update(done)
            for item in await self.paged("/api/v1/hf/fills", symbol):
                fills[f"{item['tradeId']}/{item['orderId']}"] = item
        stats = await self.admin("GET", "stats")
        return ExchangeRecord(orders, fills, int(stats["orders"]))


@dataclass
class ExchangeRecord:
    orders: dict[str, dict[str, Any]]  # by exchange order id
    fills: dict[str, dict[str, Any]]  # by "tradeId/orderId" (a trade between two own orders
    #                                   is one trade id with two fills)
    stats_orders: int  # the sandbox's own count of the orders it holds


# ====================================================================== the store


@dataclass
class StoreRecord:
    engine_id: str
    prefix: str
    firings: list[Firing]
    orders: dict[str, Order]
    fills: list[Fill]
    events: list[Event]
    states: dict[str, RuleState]


def read_store(db: Path | str) -> StoreRecord:
    """The whole store: `db` is a SQLite file or a SQLAlchemy URL."""
    engine = create_engine(db if isinstance(db, str) else f"sqlite:///{db}")
    try:
        with Session(engine) as session:
            meta = session.get(Meta, "engine_id")
            engine_id = meta.value if meta is not None else ""
            return StoreRecord(
                engine_id,
                engine_prefix(engine_id) if engine_id else "",
                list(session.scalars(select(Firing).order_by(Firing.id))),
                {o.client_oid: o for o in session.scalars(select(Order))},
                list(session.scalars(select(Fill))),
                list(session.scalars(select(Event).order_by(Event.id))),
                {s.identity: s for s in session.scalars(select(RuleState))},
            )
    finally:
        engine.dispose()


# ====================================================================== the checks


def _dec(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)


def exchange_status(order: dict[str, Any]) -> str:
    """The status the store should show for an exchange order (the watcher's own rule: done
    with a fill covering the size, or any fill of an order by funds, is filled)."""
    if order.get("active"):
        return "open"
    size, dealt = _dec(order.get("size")), _dec(order.get("dealSize"))
    if dealt > 0 and (size == 0 or dealt >= size):
        return "filled"
    return "canceled"


@dataclass
class Checked:
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    figures: dict[str, Any] = field(default_factory=dict)
    behind: int = 0  # order statuses and fills the store has not caught up with (yet)

    def add(self, kind: str, message: str) -> None:
        self.problems[kind].append(message)

    def count(self, kind: str) -> int:
        return len(self.problems.get(kind, ()))


def check(store: StoreRecord, exchange: ExchangeRecord, now: datetime) -> Checked:
    """The store against the exchange. Problems by kind:

    * `duplicates`: two exchange orders with one clientOid; a firing with more than one
      exchange order; a chained rule that fired twice for one parent firing.
    * `untracked`: an exchange order with this engine's prefix that the store's `orders` table
      lacks, or that belongs to no firing and was not adopted (`order.adopted` event).
    * `lost`: an `acknowledged` firing without its exchange order; an order the store says was
      never placed (`not_placed`, `not_sent`, `refused`) that the exchange has; an exchange
      order whose status or filled size the store does not show; fills on the exchange
      missing from the store (count and total size per order) or store fills the exchange
      does not have; a firing without its `fired` event, a status without the event of its
      last transition, a fill without its `fill` event; a parent firing whose chained child
      was never armed (the parent's event is lost).
    * `stuck`: a firing still `sent` or `unknown` after its HF deadline has passed.
    """
    out = Checked()
    prefix = store.prefix
    mine = {oid: o for oid, o in exchange.orders.items()
            if str(o.get("clientOid") or "").startswith(prefix)}
    by_oid: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for order in mine.values():
        by_oid[order["clientOid"]].append(order)
    if len(exchange.orders) != exchange.stats_orders:
        out.add("lost", f"the sandbox holds {exchange.stats_orders} orders but its REST lists "
                f"show {len(exchange.orders)}: the exchange record was not read whole")
    foreign = len(exchange.orders) - len(mine)
    if foreign:
        out.add("untracked", f"{foreign} exchange orders without this engine's prefix {prefix}")

    # duplicates
    for oid, orders in by_oid.items():
        if len(orders) > 1:
            out.add("duplicates", f"clientOid {oid} has {len(orders)} exchange orders: "
                    + ", ".join(o["id"] for o in orders))

    # untracked
    adopted = {e.client_oid for e in store.events if e.kind == "order.adopted"}
    firing_oids = {f.client_oid for f in store.firings if f.client_oid}
    firing_ids = {f.id for f in store.firings}
    for oid, orders in by_oid.items():
        row = store.orders.get(oid)
        if row is None:
            out.add("untracked", f"exchange order {orders[0]['id']} ({oid}) is not in the store")
        elif oid not in firing_oids and row.firing_id in firing_ids:
            continue  # a bracket's stop-loss: an order of its firing, with its own clientOid
        elif oid not in firing_oids and not (row.firing_id is None and oid in adopted):
            out.add("untracked", f"exchange order {orders[0]['id']} ({oid}) has no firing and "
                    "was not adopted")

    # firings against the exchange
    fired_events = {(e.identity, (e.payload or {}).get("number")) for e in store.events
                    if e.kind == "fired"}
    status_events: dict[str, list[str]] = defaultdict(list)
    order_events: dict[str, list[str]] = defaultdict(list)
    for e in store.events:
        if e.client_oid and e.kind.startswith("firing."):
            status_events[e.client_oid].append(e.kind.split(".", 1)[1])
        if e.client_oid and e.kind in ("order.open", "order.filled", "order.canceled",
                                       "order.refused", "order.not_placed", "order.pending",
                                       "order.held", "order.unknown", "order.cancel_requested",
                                       "order.vanished"):
            order_events[e.client_oid].append(e.kind.split(".", 1)[1])
    statuses: Counter[str] = Counter()
    for firing in store.firings:
        if (firing.identity, firing.number) not in fired_events:
            out.add("lost", f"firing {firing.identity}#{firing.number} has no `fired` event")
        oid = firing.client_oid
        if oid is None:
            statuses[f"{firing.status} (no order)"] += 1
            continue
        statuses[firing.status] += 1
        there = by_oid.get(oid, [])
        history = status_events.get(oid, [])
        if not history or history[-1] != firing.status:
            out.add("lost", f"firing {firing.identity}#{firing.number} is {firing.status} but "
                    f"its last firing event is {history[-1] if history else 'none'}")
        if len(there) > 1:
            out.add("duplicates", f"firing {firing.identity}#{firing.number} ({oid}) has "
                    f"{len(there)} exchange orders")
        if firing.status == "acknowledged" and not there:
            out.add("lost", f"firing {firing.identity}#{firing.number} ({oid}) is acknowledged "
                    "but the exchange has no order with its clientOid")
        if firing.status in ("not_placed", "not_sent", "refused", "blocked") and there:
            out.add("lost", f"firing {firing.identity}#{firing.number} ({oid}) is "
                    f"{firing.status} but the exchange has its order {there[0]['id']}")
        if firing.status in ("sent", "unknown"):
            deadline = (firing.intent or {}).get("deadline")
            due = datetime.fromisoformat(deadline) if deadline else None
            if due is None or due < now:
                out.add("stuck", f"firing {firing.identity}#{firing.number} ({oid}) is still "
                        f"{firing.status} after its deadline {deadline}"
                        + (f"; the exchange has it ({there[0]['id']})" if there else
                           "; the exchange does not have it"))

    # orders: status, filled size, fills
    ex_fills: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in exchange.fills.values():
        ex_fills[item["orderId"]].append(item)
    st_fills: dict[str, list[Fill]] = defaultdict(list)
    for fill in store.fills:
        st_fills[fill.client_oid].append(fill)
    fill_events = {(e.payload or {}).get("trade_id") for e in store.events if e.kind == "fill"}
    for fill in store.fills:
        if fill.trade_id not in fill_events:
            out.add("lost", f"fill {fill.trade_id} of {fill.client_oid} has no `fill` event")
    for oid, row in store.orders.items():
        there = by_oid.get(oid, [])
        history = order_events.get(oid, [])
        if row.firing_id is not None and (history[-1] if history else "pending") != row.status:
            out.add("lost", f"order {oid} is {row.status} but its last order event is "
                    f"{history[-1] if history else 'none'}")
        if not there:
            if row.status in ("open", "cancel_requested", "filled", "canceled") and (
                    row.order_type not in HELD_TYPES):
                out.add("lost", f"order {oid} is {row.status} in the store but not on the "
                        "exchange")
            continue
        order = there[0]
        want = exchange_status(order)
        if row.status != want and not (row.status == "pending" and oid in firing_oids):
            out.behind += 1
            out.add("lost", f"order {oid} ({order['id']}) is {want} on the exchange, "
                    f"{row.status} in the store")
        dealt = _dec(order.get("dealSize"))
        if row.filled_size != dealt:
            out.behind += 1
            out.add("lost", f"order {oid} ({order['id']}) filled {dealt} on the exchange, "
                    f"{row.filled_size} in the store")
        theirs = ex_fills.get(order["id"], [])
        ours = st_fills.get(oid, [])
        if len(theirs) != len(ours) or sum((_dec(f["size"]) for f in theirs), Decimal(0)) != sum(
            (f.size for f in ours), Decimal(0)
        ):
            out.behind += 1
            out.add("lost", f"order {oid} ({order['id']}): {len(theirs)} fills of "
                    f"{sum((_dec(f['size']) for f in theirs), Decimal(0))} on the exchange, "
                    f"{len(ours)} of {sum((f.size for f in ours), Decimal(0))} in the store")
        their_ids = {str(f["tradeId"]) for f in theirs}  # a JSON number on the HF endpoint
        for fill in ours:
            if fill.trade_id not in their_ids:
                out.add("lost", f"store fill {fill.trade_id} of {oid} is not on the exchange")

    # chains: each parent event arms its child exactly once
    by_rule: dict[str, list[Firing]] = defaultdict(list)
    for firing in store.firings:
        by_rule[firing.identity].append(firing)
    for child, parent, event in CHAINS:
        # `filled`: the parent's exchange order is done with a fill. `fired`: the parent's
        # firing was placed (a firing proven not placed is decided again later, and whether
        # its child was armed meanwhile is the watcher's choice: at most once either way).
        expected: set[int] = set()
        numbers = {f.number for f in by_rule.get(parent, [])}
        for firing in by_rule.get(parent, []):
            there = by_oid.get(firing.client_oid or "", [])
            if (event == "fired" and firing.status == "acknowledged") or (
                event == "filled" and there and not there[0].get("active")
                and _dec(there[0].get("dealSize")) > 0
            ):
                expected.add(firing.number)
        got: Counter[int] = Counter()
        for firing in by_rule.get(child, []):
            arm = (firing.inputs or {}).get("arm") or {}
            if "parent_firing" in arm:
                got[int(arm["parent_firing"])] += 1
        state = store.states.get(child)
        queued = [int(a["parent_firing"]) for a in ((state.state or {}).get("arms") or [])
                  ] if state is not None else []
        for number in queued:
            got[number] += 1
        if state is not None and state.status == "blocked":
            out.add("lost", f"{child} is blocked ({state.reason}): its parent's events are "
                    "dropped")
        for number in sorted(expected - set(got)):
            out.add("lost", f"{child} was never armed by {parent}#{number} ({event})")
        for number in sorted(n for n, c in got.items() if c > 1):
            out.add("duplicates", f"{child} went {got[number]} times with {parent}#{number} "
                    f"({event}): one parent firing, {got[number]} child firings")
        for number in sorted(n for n in got if n not in (expected if event == "filled"
                                                        else numbers)):
            out.add("lost", f"{child} was armed by {parent}#{number}, which has no {event} "
                    "event")
        out.figures[f"chain {child}"] = f"{sum(got.values())} arms for {len(expected)} " \
            f"{parent} {event}"

    out.figures.update({
        "firings": len(store.firings),
        "firings with an order": sum(1 for f in store.firings if f.client_oid),
        "firing statuses": dict(sorted(statuses.items())),
        "exchange orders": len(mine),
        "exchange orders open": sum(1 for o in mine.values() if o.get("active")),
        "exchange fills": sum(len(ex_fills.get(o["id"], [])) for o in mine.values()),
        "store fills": len(store.fills),
        "store orders": dict(sorted(Counter(o.status for o in store.orders.values()).items())),
        "adopted": len(adopted),
        "events": len(store.events),
    })
    return out


def settled(store: StoreRecord) -> bool:
    """Nothing in flight in the store: no firing sent/unknown, no order pending."""
    return not any(f.client_oid and f.status in ("sent", "unknown") for f in store.firings) and \
        not any(o.status == "pending" for o in store.orders.values())


# ====================================================================== watchers


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RULES_ENGINE_")}
    env["RULES_ENGINE_LOG_FORMAT"] = "json"
    env["RULES_ENGINE_VIEW"] = "off"
    env["PYTHONUNBUFFERED"] = "1"
    return env


PARENTS = {parent for _, parent, _ in CHAINS}


def _trigger(mode: str, inc: Incarnation) -> Callable[[str, dict[str, Any]], bool]:
    if mode == "fired lb_btc":
        return lambda kind, data: kind == "fired" and data.get("rule") == "lb_btc"
    if mode == "order.filled parent":
        return lambda kind, data: kind == "order.filled" and inc.rules.get(
            str(data.get("client_oid"))) in PARENTS
    return lambda kind, data: kind == mode


class Incarnation:
    """One watcher process: its stderr read line by line (JSON events), and a kill that can be
    set to go off the moment a given event line is read (to hit the window right after it)."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.proc = proc
        self.log = log_path.open("w", encoding="utf-8")
        self.seen: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.counts: Counter[str] = Counter()
        self.eof = asyncio.Event()
        self.trigger: Callable[[str, dict[str, Any]], bool] | None = None
        self.kill_delay = 0.0
        self.rules: dict[str, str] = {}  # clientOid -> rule, from this process's `fired` lines
        self.killed = asyncio.Event()
        self.kill_sent = False
        self.tail: list[str] = []
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        try:
            while True:
                line = await self.proc.stderr.readline()
                if not line:
                    break
                text = line.decode("utf-8", "replace")
                self.log.write(text)
                self.tail = [*self.tail[-30:], text.rstrip()]
                kind, data = None, {}
                if text.startswith("{"):
                    with contextlib.suppress(ValueError):
                        data = json.loads(text)
                        kind = data.get("event")
                if kind is None:
                    continue
                if kind == "fired" and data.get("client_oid"):
                    self.rules[str(data["client_oid"])] = str(data.get("rule"))
                if self.trigger is not None and self.trigger(kind, data):
                    self.trigger = None
                    if self.kill_delay:
                        asyncio.get_running_loop().call_later(self.kill_delay, self.kill)
                    else:
                        self.kill()  # at once: the window right after this line
                self.counts[kind] += 1
                self.seen[kind].set()
        finally:
            self.eof.set()
            self.log.close()

    def kill(self) -> None:
        if self.kill_sent or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
            self.kill_sent = True
        self.killed.set()

    async def wait_for(self, kind: str, timeout: float, *others: str) -> bool:
        """True once a `kind` line (or one of `others`) was read; False on timeout or when
        the process ended."""
        kinds = (kind, *others)
        seen = [asyncio.ensure_future(self.seen[k].wait()) for k in kinds]
        ended = asyncio.ensure_future(self.eof.wait())
        try:
            await asyncio.wait({*seen, ended}, timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (*seen, ended):
                waiter.cancel()
        return any(self.seen[k].is_set() for k in kinds)

    async def finish(self) -> int:
        code = await self.proc.wait()
        await self.reader
        return code


@dataclass
class CrashResult:
    seed: int
    kills_asked: int
    kills: int = 0  # delivered: the process was alive and died of SIGKILL
    kill_modes: Counter[str] = field(default_factory=Counter)
    missed: list[str] = field(default_factory=list)  # kills that found the process gone
    self_exits: list[str] = field(default_factory=list)  # watchers that ended on their own
    final_exit: int | None = None
    converged_s: float | None = None
    elapsed_s: float = 0.0
    checked: Checked = field(default_factory=Checked)
    workdir: Path | None = None

    @property
    def duplicates(self) -> int:
        return self.checked.count("duplicates")

    @property
    def untracked(self) -> int:
        return self.checked.count("untracked")

    @property
    def lost(self) -> int:
        return self.checked.count("lost")

    @property
    def stuck(self) -> int:
        return self.checked.count("stuck")

    def failures(self) -> list[str]:
        out = []
        for kind in ("duplicates", "untracked", "lost", "stuck"):
            for message in self.checked.problems.get(kind, ()):
                out.append(f"{kind}: {message}")
        out.extend(f"watcher ended on its own: {e}" for e in self.self_exits)
        if self.final_exit != 0:
            out.append(f"the last watcher did not stop cleanly on SIGTERM (exit {self.final_exit})")
        return out

    def summary(self) -> str:
        f = self.checked.figures
        lines = [
            f"seed {self.seed}: {self.kills} kills delivered (of {self.kills_asked} asked; "
            f"by moment: {dict(sorted(self.kill_modes.items()))}), "
            f"{len(self.missed)} found the watcher already gone, "
            f"{len(self.self_exits)} watchers ended on their own",
            f"firings {f.get('firings')} ({f.get('firings with an order')} with an order: "
            f"{f.get('firing statuses')}), exchange orders {f.get('exchange orders')} "
            f"({f.get('exchange orders open')} open), store orders {f.get('store orders')}, "
            f"adopted {f.get('adopted')}",
            f"fills: exchange {f.get('exchange fills')}, store {f.get('store fills')}; "
            f"events {f.get('events')}; "
            + "; ".join(f"{k}: {v}" for k, v in f.items() if k.startswith("chain ")),
            f"duplicates {self.duplicates}, untracked {self.untracked}, lost {self.lost}, "
            f"stuck {self.stuck}; last watcher exit {self.final_exit}, store caught up in "
            f"{self.converged_s if self.converged_s is not None else 'never'} s; "
            f"total {self.elapsed_s:.1f} s",
        ]
        for kind in ("duplicates", "untracked", "lost", "stuck"):
            messages = self.checked.problems.get(kind, ())
            for message in messages[:15]:
                lines.append(f"  {kind}: {message}")
            if len(messages) > 15:
                lines.append(f"  {kind}: ... and {len(messages) - 15} more")
        for exit_ in self.self_exits[:5]:
            lines.append(f"  self-exit: {exit_}")
        return "\n".join(lines)


class CrashSession:
    def __init__(self, workdir: Path, *, kills: int, seed: int,
                 log: Callable[[str], None] = print, converge_timeout: float = 45.0) -> None:
        self.workdir = workdir
        self.kills = kills
        self.seed = seed
        self.rng = random.Random(seed)
        self.log = log
        self.converge_timeout = converge_timeout
        self.sandbox = SandboxProcess(workdir, seed, self.sandbox_config())
        self.db = workdir / "store.sqlite"
        self.db_url = f"sqlite:///{self.db}"  # a longer session may use PostgreSQL instead
        self.rules = workdir / "crash.rules"
        self.rule_paths = [self.rules]
        self.config = workdir / "watcher.toml"
        self.result = CrashResult(seed, kills, workdir=workdir)
        self.n = 0

    async def run(self) -> CrashResult:
        started = time.monotonic()
        await self.sandbox.start()
        try:
            await self._prepare()
            while self.more():
                await self._cycle()
            await self.before_final()
            await self._final()
            await self.after_final()
        finally:
            await self.sandbox.stop()
            self.result.elapsed_s = time.monotonic() - started
        return self.result

    # Hooks a longer session (the soak, `benchmarks/soak_session.py`) overrides.

    def sandbox_config(self) -> dict[str, Any]:
        return SANDBOX_CONFIG

    def write_files(self, btc_bid: Decimal, eth_bid: Decimal) -> None:
        self.rules.write_text(rules_text(btc_bid, eth_bid), encoding="utf-8")
        self.config.write_text(WATCHER_TOML, encoding="utf-8")

    def watcher_env(self) -> dict[str, str]:
        return _clean_env()

    def more(self) -> bool:
        """Whether to start another watcher (to be killed)."""
        if self.n >= self.kills * 3 + 10:
            raise RuntimeError(f"{self.n} watchers started, only {self.result.kills} "
                               "kills delivered")
        return self.result.kills < self.kills

    def progress(self) -> str:
        return f"kills {self.result.kills}/{self.kills}"

    async def before_final(self) -> None:
        """Called once the killing is over, before the market is stalled for the last run."""

    async def after_final(self) -> None:
        """Called after the last run and its check, while the sandbox still runs."""

    async def _prepare(self) -> None:
        btc = await self.sandbox.public("/api/v1/market/orderbook/level1",
                                        {"symbol": "BTC-USDT"})
        eth = await self.sandbox.public("/api/v1/market/orderbook/level1",
                                        {"symbol": "ETH-USDT"})
        self.write_files(Decimal(btc["bestBid"]), Decimal(eth["bestBid"]))
        lint = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rules_engine", "lint", *map(str, self.rule_paths),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=_clean_env())
        out, _ = await lint.communicate()
        if lint.returncode != 0:
            raise RuntimeError(f"the generated rules do not lint: {out.decode()}")
        self.log(f"crash session: seed {self.seed}, {self.kills} kills, sandbox "
                 f"{self.sandbox.url}, BTC bid {btc['bestBid']}, ETH bid {eth['bestBid']}, "
                 f"workdir {self.workdir}")

    async def _spawn(self) -> Incarnation:
        self.n += 1
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rules_engine", "run", *map(str, self.rule_paths),
            "--exchange-url", self.sandbox.url, "--db", self.db_url,
            "--config", str(self.config),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env=self.watcher_env(), limit=1 << 22,
        )
        return Incarnation(proc, self.workdir / f"watcher-{self.n:04d}.log")

    async def _cycle(self) -> None:
        names = [m for m, _ in MODES]
        mode = self.rng.choices(names, weights=[w for _, w in MODES])[0]
        delay = {
            "spawn": self.rng.uniform(0.0, 1.6),
            "starting": self.rng.choice([0.0, self.rng.uniform(0.0, 0.12)]),
            "recovered": self.rng.uniform(0.0, 0.03),
            "fired": self.rng.uniform(0.05, 1.2),
            "fired lb_btc": self.rng.uniform(0.05, 1.2),
            "order.filled": self.rng.uniform(0.05, 1.2),
            "order.filled parent": self.rng.uniform(0.05, 1.2),
            "busy": self.rng.uniform(0.1, 2.5),
        }[mode]
        inc = await self._spawn()
        t0 = time.monotonic()
        how = mode
        if mode == "spawn":
            await asyncio.wait([asyncio.ensure_future(inc.eof.wait())], timeout=delay)
            inc.kill()
        elif mode == "starting":
            if await inc.wait_for("watcher.starting", 15):
                await asyncio.sleep(delay)
            else:
                how = "starting (no line)"
            inc.kill()
        else:
            if not await inc.wait_for("recovered", 20):
                how = f"{mode} (no recovered line)"
            else:
                await asyncio.sleep(delay)
                if mode in ("fired", "order.filled", "fired lb_btc", "order.filled parent"):
                    inc.trigger = _trigger(mode, inc)
                    # at once, or a few milliseconds later (past the next commit or two)
                    inc.kill_delay = self.rng.choice([0.0, 0.0, self.rng.uniform(0.0, 0.006)])
                    done = asyncio.ensure_future(inc.killed.wait())
                    ended = asyncio.ensure_future(inc.eof.wait())
                    await asyncio.wait({done, ended}, timeout=6,
                                       return_when=asyncio.FIRST_COMPLETED)
                    done.cancel()
                    ended.cancel()
                    if not inc.kill_sent:
                        how = f"{mode} (timeout)"
            inc.kill()
        await self._account(inc, how, t0)
        await asyncio.sleep(self.rng.choice([0.0, 0.0, self.rng.uniform(0.0, 0.3)]))

    async def _account(self, inc: Incarnation, how: str, t0: float) -> None:
        """Wait for a killed watcher to end, and count how it ended."""
        code = await inc.finish()
        alive_for = time.monotonic() - t0
        if code == -signal.SIGKILL:
            self.result.kills += 1
            self.result.kill_modes[how] += 1
        elif inc.kill_sent:
            self.result.missed.append(f"watcher {self.n}: exit {code} before the kill")
        else:
            self.result.self_exits.append(
                f"watcher {self.n} exit {code}: " + " | ".join(inc.tail[-5:]))
        self.log(f"  watcher {self.n:3d}: {how:<24} after {alive_for:5.2f} s -> exit {code}; "
                 f"fired {inc.counts['fired']}, acknowledged {inc.counts['acknowledged']}, "
                 f"fills {inc.counts['fill']} ({self.progress()})")

    async def _final(self) -> None:
        """Stall the market (nothing moves behind the store's back any more), then one
        watcher runs cleanly until the store shows what the exchange shows, then SIGTERM."""
        await self.sandbox.admin("POST", "faults", {"stall_feed": True})
        inc = await self._spawn()
        t0 = time.monotonic()
        converged = None
        if await inc.wait_for("recovered", 30):
            deadline = time.monotonic() + self.converge_timeout
            await asyncio.sleep(1.0)
            while time.monotonic() < deadline and not inc.eof.is_set():
                store = read_store(self.db_url)
                if settled(store):
                    result = check(store, await self.sandbox.record(), datetime.now(UTC))
                    if not result.behind and not result.count("stuck"):
                        converged = round(time.monotonic() - t0, 1)
                        break
                await asyncio.sleep(1.0)
        self.result.converged_s = converged
        if inc.proc.returncode is None:
            inc.proc.send_signal(signal.SIGTERM)
        try:
            self.result.final_exit = await asyncio.wait_for(inc.finish(), 30)
        except TimeoutError:
            inc.kill()
            self.result.final_exit = await inc.finish()
        self.log(f"  watcher {self.n:3d}: final run of {time.monotonic() - t0:.1f} s, exit "
                 f"{self.result.final_exit}; caught up after {converged} s; fired "
                 f"{inc.counts['fired']}, acknowledged {inc.counts['acknowledged']}, "
                 f"not placed {inc.counts['not_placed']}, adopted {inc.counts['order.adopted']}")
        self.result.checked = check(read_store(self.db_url), await self.sandbox.record(),
                                    datetime.now(UTC))


def run_crash_session(workdir: Path, *, kills: int, seed: int,
                      log: Callable[[str], None] = print) -> CrashResult:
    workdir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(CrashSession(workdir, kills=kills, seed=seed, log=log).run())
