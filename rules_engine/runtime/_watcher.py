"""The watcher: market state from the KuCoin client, the pure evaluator on every relevant
update, and each firing turned into exactly one order by the firing protocol, every step
recorded in the store.

    frame -> book/ticker/stats/candles -> MarketState.refresh -> RuleIndex.affected
          -> step -> Decision -> resolve_order + limits -> Store.fire (durable commit)
          -> POST order -> acknowledged | refused | unknown | not sent -> Store.settle

Invariants (what the tests check):

* A firing and its order are committed before the order is sent; the order's clientOid is a
  pure function of (engine id, rule identity, firing number), so a firing can never become
  two orders: a resend uses the same clientOid, and KuCoin refuses a duplicate.
* A rule with a firing whose outcome is not proven (sent, unknown) is frozen: it is not
  stepped until the exchange shows the order (adopted) or proves it absent after the HF
  deadline with two agreeing lookups (then the same firing is decided again on fresh data).
* Only fresh values reach the evaluator (`MarketState`): a stale feed or an out-of-sync
  book makes every value it feeds unknown, and unknown never fires.
* Every state change is a row with its event (`Store`), in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from apscheduler.events import EVENT_JOB_ERROR
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from rules_engine.adapters.kucoin._book import BookState, Delta, Level2Book, Step
from rules_engine.adapters.kucoin._errors import TRANSIENT, Action, Outcome
from rules_engine.adapters.kucoin._market import KucoinMarket
from rules_engine.adapters.kucoin._parsing import (
    MalformedPayload,
    PayloadError,
    parse_accounts,
    parse_candles_reply,
    parse_fills_page,
    parse_level2,
    parse_order,
    parse_orders_page,
    parse_ws_message,
)
from rules_engine.adapters.kucoin._rest import KucoinOrders, KucoinRest
from rules_engine.adapters.kucoin._ws import KucoinWs, batched_topics
from rules_engine.compiler import CompiledRule
from rules_engine.compiler import model as M
from rules_engine.core.market import (
    BalanceEvent,
    Candle,
    OrderEvent,
    OrderState,
    Stats24h,
    StopOrderEvent,
    Ticker,
)
from rules_engine.core.symbols import SymbolTable
from rules_engine.engine import (
    Arm,
    Blocked,
    Decision,
    Fill,
    Lookup,
    OrderIntent,
    Resolution,
    RuleIndex,
    RuleState,
    Timers,
    arm,
    carry_over,
    deadline,
    dump_state,
    initial_state,
    load_state,
    next_due,
    order_body,
    resolve_order,
    resolve_unknown,
    restore,
    retry_firing,
    step,
    unblock,
)
from rules_engine.engine import value as value_of
from rules_engine.engine._candles import TIMEFRAME_TYPES, CandleSeries, history_needed
from rules_engine.engine._risk import Exposure, check, value_order
from rules_engine.runtime._config import WatcherConfig
from rules_engine.runtime._market import MarketState
from rules_engine.runtime._patience import Patience
from rules_engine.runtime._reload import Reloaded, RuleFiles
from rules_engine.store import LeaseHeld, Store
from rules_engine.store._repo import StateRow, client_oid, engine_prefix

__all__ = ["Watcher", "WatcherError", "utc_now"]

log = logging.getLogger("rules_engine.watcher")

class WatcherError(Exception):
    """The watcher cannot start or must stop: the message says why and what to do."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Pending:
    """A firing whose order is not proven yet (sent and unanswered, or unknown)."""

    oid: str
    identity: str
    number: int
    symbol: str
    family: str
    deadline: datetime | None
    arm: Arm | None
    lookups: list[Lookup] = field(default_factory=list)
    unknown: bool = False
    leg: str | None = None  # a bracket's stop-loss order (its own clientOid, no firing row)


@dataclass
class _Tracked:
    """An order the store tracks that is not final yet."""

    oid: str
    identity: str | None
    number: int | None
    symbol: str
    family: str
    size: Decimal | None
    exchange_id: str | None = None
    side: str = ""
    value: Decimal = Decimal(0)  # its share of the risk limits
    day: date | None = None  # the UTC day of its firing
    counted: bool = True  # in the risk limits' usage (a bracket's stop-loss shares its
    #                       take-profit's position, so it is not counted again)


@dataclass
class _Held:
    """An engine-held trailing stop: the order it will send, and its water mark (the best
    `last` since it was placed: the highest for a sell, the lowest for a buy)."""

    oid: str
    identity: str
    number: int
    symbol: str
    side: str
    size: Decimal
    trail: Decimal
    mark: Decimal | None


@dataclass
class _Leg:
    """A bracket's stop-loss, held by the engine: the take-profit rests on the exchange and
    holds the coins, so on trigger the take-profit is cancelled and confirmed final first,
    and only what it did not fill is sold."""

    oid: str
    tp_oid: str
    identity: str
    number: int
    symbol: str
    side: str
    size: Decimal
    trigger: Decimal
    busy: bool = False


def _num(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


class Watcher:
    def __init__(
        self,
        rules: Iterable[CompiledRule],
        *,
        symbols: SymbolTable,
        store: Store,
        rest: KucoinRest,
        config: WatcherConfig,
        emit: Callable[[str, dict[str, Any]], None] | None = None,
        now: Callable[[], datetime] = utc_now,
        market_rest: KucoinRest | None = None,
        book_symbols: Iterable[str] = (),
        on_market: Callable[[str], None] | None = None,
        sources: Mapping[str, str] | None = None,
        reloader: RuleFiles | None = None,
    ) -> None:
        """`market_rest`: where public market data comes from when it is not the exchange that
        takes the orders (paper mode: KuCoin's public feed, orders to a local sandbox);
        `book_symbols`: symbols whose level2 book is followed even if no rule reads it;
        `on_market(symbol)`: called when a symbol's book or ticker moved, before any rule is
        evaluated on it (paper mode hands the book to the local venue there); `sources`: each
        rule's text as written, by identity, kept with its version; `reloader`: the rule files,
        watched for edits (hot reload)."""
        self.symbols = symbols
        self.store = store
        self.rest = rest
        self.config = config
        self.emit = emit or (lambda kind, data: None)
        self.now = now
        self.market = MarketState((), max_age=config.max_age)
        self._install(rules)
        self.timers = Timers()
        self.states: dict[str, RuleState] = {}
        self.versions: dict[str, int] = {}
        self.reasons: dict[str, str] = {}
        self.reloader = reloader
        self.followed: set[str] = set()  # symbols with a ticker topic, and other topics
        self.books: dict[str, Level2Book] = {}
        self.series: dict[tuple[str, str], CandleSeries] = {}
        self.balances: dict[str, Decimal] = {}
        self.pending: dict[str, _Pending] = {}  # by identity: the rule is frozen
        self.again: set[tuple[str, int]] = set()  # firings proven not placed: sent again
        self.tracked: dict[str, _Tracked] = {}  # by clientOid
        self.held: dict[str, _Held] = {}  # engine-held trailing stops, by clientOid
        self.legs: dict[str, _Leg] = {}  # bracket stop-losses, by their clientOid
        self.orders = KucoinOrders(rest, "hf")
        self.kucoin = KucoinMarket(rest)
        self.market_rest = market_rest or rest
        self.public_data = KucoinMarket(self.market_rest)
        self.extra_books = list(dict.fromkeys(book_symbols))
        self.on_market = on_market
        self.sources = dict(sources or {})
        self.engine_id = ""
        self.prefix = ""
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.trading = True
        self.stop_reason = ""
        self.failed = False  # stopped by an error, not asked to
        self.halted: dict[str, Any] | None = None  # the kill switch, as the store holds it
        self.cancels: list[tuple[datetime, str]] = []  # `cancel after D`: (due, clientOid)
        self.limits = config.risk.limits()
        self.file_limits = {path: limits.limits() for path, limits in config.risk_files.items()}
        self.exposure = Exposure()
        self.public: KucoinWs | None = None
        self.private: KucoinWs | None = None
        self.private_live = False
        self.fired = 0
        self._fetching: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self.scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._jobs_running: set[asyncio.Task[Any]] = set()

    # ================================================================ start

    def _install(self, rules: Iterable[CompiledRule]) -> None:
        """The rule set: which rules run, their index, their `after` children, the values
        they read (added to the market state: a value nobody reads any more costs nothing)."""
        self.rules: dict[str, CompiledRule] = {r.identity: r for r in rules}
        active = list(self.rules.values())
        self.index = RuleIndex(active)
        self.timed_ids = {rule.identity for rule in self.index.timed}
        self.market.add_leaves(self.index.leaves())
        # A trailing stop follows its symbol's last price after it is placed.
        self.market.add_leaves(
            M.Field(r.order.symbol, "last") for r in active
            if r.order is not None and (r.order.order_type == "trailing-stop"
                                        or r.order.stop_loss is not None))
        self.children: dict[str, list[CompiledRule]] = {}
        for rule in active:
            if rule.after is not None:
                self.children.setdefault(rule.after[0], []).append(rule)

    async def start(self) -> None:
        """Own the store, check the venue, load rules and states, recover, then subscribe."""
        now = self.now()
        self.store.migrate()
        try:
            self.store.acquire_lease(
                self.owner, now, timedelta(seconds=self.config.lease_stale_s), _owner_dead
            )
        except LeaseHeld as err:
            raise WatcherError(str(err)) from None
        self.engine_id = self.store.engine_id()
        self.prefix = engine_prefix(self.engine_id)
        self._patience = Patience(self.config.start_patience_s, self.emit)
        # A start can take long (an exchange down, many orders to look up): the lease's
        # heartbeat goes on meanwhile, so no other watcher takes the store over.
        lease = asyncio.create_task(self._keep_lease(), name="start-heartbeat")
        try:
            await self._check_venue()
            self.orders.family = await self._family()
            self._load_rules(now)
            await self._recover()
            held = self.store.halt()
            if held is not None:  # the kill switch holds across restarts
                await self._halt_now(held)
            await self._load_balances()
            await self._load_candles()
        finally:
            lease.cancel()
            await asyncio.gather(lease, return_exceptions=True)
        lost = None if lease.cancelled() else lease.exception()
        if lost is not None:  # taken over, or the store failed: the jobs would stop it too
            raise WatcherError(f"the store's lease was lost during the start: {lost}")
        for identity in self.timed_ids:
            self._schedule(identity, now)
            due = next_due(self.rules[identity], self.states[identity], now)
            if due is not None and due < now:  # it fell due while no watcher ran
                self._event("timer.late", {"timer": "rule", "due": due.isoformat(),
                                           "late_s": round((now - due).total_seconds(), 3)},
                            identity=identity)
        self._start_feeds()
        self._start_jobs()
        # What is loaded now lives as long as the watcher: keep the collector off it, so a
        # full collection never walks the rules, index and books in the middle of a tick.
        gc.collect()
        gc.freeze()
        self._ready.set()

    async def _keep_lease(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_s)
            await self._heartbeat_job()

    async def _start_read(self, what: str, read: Callable[[], Awaitable[Outcome]]) -> Outcome:
        """A read the start needs. An exchange that is down, overloaded or rate-limiting is
        asked again with the start's `Patience`. Any other answer, or the last one once
        patience runs out, is returned."""
        attempt = 0
        while (outcome := await read()).action in TRANSIENT:
            if not await self._patience.retry(f"{what}: {outcome.message}", attempt):
                return outcome._replace(message=self._patience.gave_up(outcome.message))
            attempt += 1
        return outcome

    async def _check_venue(self) -> None:
        status = await self._start_read(
            "the exchange's status", lambda: self.rest.call("GET", "/api/v1/status"))
        if status.action is not Action.OK:
            raise WatcherError(
                f"cannot reach the exchange at {self.rest.base_url}: {status.message}"
            )
        key = await self._start_read(
            "the API key's details",
            lambda: self.rest.call("GET", "/api/v1/user/api-key", signed=True))
        if key.action in TRANSIENT:
            raise WatcherError(f"cannot read the API key's details at {self.rest.base_url}: "
                               f"{key.message}")
        if key.action is not Action.OK or not isinstance(key.data, dict):
            raise WatcherError(
                f"the exchange refused the API key ({key.message or key.action.value}): check "
                "RULES_ENGINE_API_KEY, RULES_ENGINE_API_SECRET and RULES_ENGINE_API_PASSPHRASE"
            )
        message = str((status.data or {}).get("msg", "")) if isinstance(status.data, dict) else ""
        uid = str(key.data.get("uid", ""))
        venue = f"kucoin uid {uid}"
        if message.startswith("sandbox "):
            venue = f"sandbox {message.split(' ', 1)[1]} uid {uid}"
        try:
            self.store.check_venue(venue)
        except Exception as err:  # VenueMismatch: a clear message, never a reconciliation
            raise WatcherError(str(err)) from None

    async def _family(self) -> str:
        if self.config.order_family != "auto":
            return self.config.order_family
        outcome = await self._start_read(
            "the account's order family",
            lambda: self.rest.call("GET", KucoinOrders.FAMILY_PATH, signed=True))
        family = KucoinOrders.family_of(outcome)
        if family is None:
            raise WatcherError(f"cannot tell the account's order family (hf or legacy) at "
                               f"{self.rest.base_url}: {outcome.message}; or set order_family")
        return family

    def _load_rules(self, now: datetime) -> None:
        loaded = self.store.load_rules(
            [(r.identity, r.fingerprint, r.canonical, r.path, self.sources.get(r.identity))
             for r in self.rules.values()],
            now,
        )
        rows: list[StateRow] = []
        events: list[tuple[str, str, dict[str, Any]]] = []
        for identity, rule in self.rules.items():
            version, stored = loaded[identity]
            self.versions[identity] = version
            if stored is not None and stored.version == version and stored.reason:
                self.reasons[identity] = stored.reason
            elif stored is not None and stored.version != version:
                events.append(("rule.new_version", identity, {"version": version}))
            self.states[identity] = _stored_state(rule, version, stored, now)
            rows.append(self._row(identity))
        self.store.save_states(rows, now, events)

    def _row(self, identity: str) -> StateRow:
        return self._row_of(identity, self.states[identity])

    async def _load_balances(self) -> None:
        outcome = await self._start_read("the account's balances", self.kucoin.accounts)
        try:
            if outcome.action is not Action.OK:
                raise PayloadError(outcome.message)
            for balance in parse_accounts(outcome.data):
                self.balances[balance.currency] = balance.available
        except PayloadError as err:  # the account events fill them in as they change
            self._event("balances.error", {"error": str(err)})

    async def _load_candles(self) -> None:
        now = self.now()
        for (symbol, timeframe), reads in self.market.candle_leaves().items():
            if (symbol, timeframe) in self.series:
                continue  # loaded already (a reload adds only new series)
            kind, seconds = TIMEFRAME_TYPES[timeframe]
            count = max(
                history_needed(leaf.kind, leaf.period if isinstance(leaf, M.Indicator) else None)
                for leaf in reads
            )
            if count > 1400:
                self._event("candles.error", {"symbol": symbol, "timeframe": timeframe,
                                              "error": f"{count} candles needed, more than "
                                              "KuCoin serves in one request (1500)"})
            series = CandleSeries(symbol, timeframe, keep=max(count, 10))
            start = now - timedelta(seconds=seconds * (min(count, 1400) + 2))
            reply = await self._start_read(
                f"{symbol}'s {timeframe} candles",
                partial(self.public_data.candles_reply, symbol, kind, start, now))
            try:
                if reply.action is not Action.OK:
                    raise PayloadError(reply.message or reply.action.value)
                series.load(parse_candles_reply(symbol, kind, reply.data), now)
            except PayloadError as err:
                self._event("candles.error", {"symbol": symbol, "timeframe": timeframe,
                                              "error": str(err)})
            self.series[(symbol, timeframe)] = series
            self.market.set_candles(symbol, timeframe, series)

    def _new_topics(self) -> list[str]:
        """The public topics the rules need that are not followed yet (all of them at start;
        after a reload, the new ones), with a book for each new level2 symbol."""
        now = self.now()
        books = [s for s in dict.fromkeys([*self.market.book_symbols(), *self.extra_books])
                 if s not in self.books]
        for symbol in books:
            book = Level2Book(symbol, now)
            self.books[symbol] = book
            self.market.set_book(symbol, book)
        every = list(dict.fromkeys([*self.market.symbols, *self.extra_books]))
        tickers = [s for s in every if s not in self.followed]
        self.followed.update(tickers)
        topics = batched_topics("/market/ticker:", tickers)
        topics += batched_topics("/market/level2:", books)
        topics += [f"/market/snapshot:{s}" for s in every
                   if self.market.needs_stats(s) and f"/market/snapshot:{s}" not in self.followed]
        topics += [f"/market/candles:{s}_{TIMEFRAME_TYPES[tf].type}" for s, tf in self.series
                   if f"/market/candles:{s}_{TIMEFRAME_TYPES[tf].type}" not in self.followed]
        self.followed.update(t for t in topics if not t.startswith(("/market/ticker:",
                                                                    "/market/level2:")))
        return topics

    def _start_feeds(self) -> None:
        public = KucoinWs(
            self.market_rest, on_message=self.on_public, on_state=self.on_public_state
        )
        public.subscribe(self._new_topics())
        private = KucoinWs(
            self.rest, on_message=self.on_private, on_state=self.on_private_state, private=True
        )
        private.subscribe(["/spotMarket/tradeOrdersV2", "/spotMarket/advancedOrders",
                           "/account/balance"])
        self.public, self.private = public, private
        self._spawn(public.run(self._stop))
        self._spawn(private.run(self._stop))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        """A background task that fails is a bug or a store that cannot be written: the
        watcher stops with the reason (fail-stop), and the next start recovers, rather than
        trading on with a loop missing."""
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            log.error("watcher task failed: %r", error)
            self._fail(f"{type(error).__name__}: {error}")

    def _fail(self, reason: str) -> None:
        """Fail-stop: record why (if the store still can) and stop."""
        self.stop_reason = reason
        self.failed = True
        with contextlib.suppress(Exception):  # the store may be what failed
            self._event("error", {"error": reason})
        self._stop.set()

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        waiter = asyncio.ensure_future(stop.wait())
        inner = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({waiter, inner}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            inner.cancel()
            await self.close()

    async def close(self) -> None:
        self._stop.set()
        if self.scheduler.running:
            self.scheduler.pause()  # no new runs; a running job ends on its own, not cancelled
        tasks = list(self._tasks) + list(self._jobs_running)
        if tasks:
            _, running = await asyncio.wait(tasks, timeout=5)
            for task in running:
                task.cancel()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.store.release_lease(self.owner)
        self._event("watcher.stopped", {"reason": self.stop_reason or "asked to stop"})

    def _event(self, kind: str, payload: dict[str, Any], identity: str | None = None,
               oid: str | None = None) -> None:
        self.store.log(kind, self.now(), payload, identity=identity, oid=oid)
        self.emit(kind, {**payload, **({"rule": identity} if identity else {}),
                         **({"client_oid": oid} if oid else {})})

    # ================================================================ recovery

    async def _recover(self) -> None:
        """Every firing that is not final is unknown until the exchange says otherwise; every
        open order is looked up; orders with this engine's prefix the store lacks are adopted.
        Only then does evaluation start."""
        now = self.now()
        for firing in self.store.open_firings():
            if firing.client_oid is None or firing.intent is None or firing.status == "held":
                continue  # a held order is not on the exchange: rebuilt with the orders
            order = firing.intent
            pending = _Pending(
                firing.client_oid, firing.identity, firing.number, str(order["symbol"]),
                str(order.get("family", self.orders.family)), _parse(order.get("deadline")),
                _arm_of(firing.inputs),
            )
            if firing.status in ("not_sent", "not_placed"):
                self.again.add((firing.identity, firing.number))
                self._retry(pending, firing.status, now)  # proven absent: decide it again
                continue
            pending.unknown = True
            if firing.status == "sent":
                self.store.settle(firing.client_oid, now, firing_to="unknown",
                                  payload={"why": "recovery: the watcher stopped before the reply"})
            self.pending[firing.identity] = pending
            await self._lookup(pending)
        rows = self.store.orders(open_only=True)
        firings = self.store.firings_by_id({r.firing_id for r in rows if r.firing_id is not None})
        decided: dict[str, datetime] = {}  # clientOid -> its firing's time (`cancel after`)
        for row in rows:
            of = firings.get(row.firing_id) if row.firing_id is not None else None
            owner = of if of is not None and of.client_oid == row.client_oid else None
            if of is not None and owner is None:
                if of.client_oid is not None:
                    self._recover_leg(row, of)  # a bracket's stop-loss, of that firing
                continue
            if owner is not None:
                decided[row.client_oid] = owner.created_at
            if row.status == "not_placed":
                continue
            if row.status == "held" and owner is not None and row.size is not None:
                trail = Decimal(str((owner.intent or {}).get("trail", "0")))
                self.held[row.client_oid] = _Held(row.client_oid, owner.identity, owner.number,
                                                  row.symbol, row.side, row.size, trail,
                                                  row.price)
            self.tracked[row.client_oid] = _Tracked(
                row.client_oid, owner.identity if owner else None,
                owner.number if owner else None, row.symbol, row.family, row.size,
                row.exchange_id, row.side,
            )
        for oid in list(self.tracked):
            leg = self.legs.get(oid)
            off_exchange = oid in self.held or (leg is not None and not leg.busy)
            if oid in self.tracked and not off_exchange and self._pending_for(oid) is None:
                await self._poll_order(self.tracked[oid])
        self._rearm_cancels(decided, now)
        self._load_exposure(now)
        await self._adopt_unknown()
        self._event("recovered", {"pending": len(self.pending), "open_orders": len(self.tracked)})

    def _recover_leg(self, row: Any, parent: Any) -> None:
        """A bracket's stop-loss from the store: still held (waiting for its trigger), or
        proven not placed (sent again at the next price past its trigger), or sent and not
        settled (unknown: looked up like any order, never sent twice), or on the exchange
        (acknowledged: tracked and polled like any order, never triggered again)."""
        if row.size is None:
            return
        intent = parent.intent or {}
        trigger = Decimal(str((intent.get("stop_loss") or {}).get("trigger") or row.price or 0))
        sent = row.status not in ("held", "not_placed")  # past its trigger: pending or open
        leg = _Leg(row.client_oid, parent.client_oid, parent.identity, parent.number,
                   row.symbol, row.side, row.size, trigger, busy=sent)
        self.legs[leg.oid] = leg
        self.tracked[leg.oid] = _Tracked(leg.oid, leg.identity, leg.number, leg.symbol,
                                         row.family, row.size, row.exchange_id, row.side,
                                         counted=False)
        if row.status == "pending":
            key = f"{leg.identity}/stop-loss#{leg.number}"
            self.pending[key] = _Pending(leg.oid, key, leg.number, leg.symbol, row.family,
                                         row.deadline, None, unknown=True, leg=leg.identity)

    def _load_exposure(self, now: datetime) -> None:
        """The risk limits' usage, rebuilt from the store: an order not final keeps its full
        value and counts as open; a final one keeps what it traded; one refused or proven not
        placed, nothing."""
        exposure = Exposure()
        rows, times = self.store.exposure_rows(since=now - timedelta(minutes=1))
        for row in rows:
            if row["client_oid"] in self.legs:
                continue  # a stop-loss shares its take-profit's position: counted once
            value = row["value"]
            if value is None:  # adopted, or written before values were kept
                value = row["funds"] or ((row["price"] or Decimal(0)) * (row["size"] or 0))
            status = row["status"]
            is_open = status in ("pending", "open", "held")
            kept = value if is_open else row["filled_value"] if status in (
                "filled", "canceled") else Decimal(0)
            if row["rule"] is not None and row["at"] is not None:
                exposure.add(row["rule"], row["at"].date(), kept, is_open=is_open)
            elif is_open:
                exposure.open_orders += 1
            tracked = self.tracked.get(row["client_oid"])
            if tracked is not None:
                tracked.value = value
                tracked.day = row["at"].date() if row["at"] is not None else None
        for at in times:
            if now - at < timedelta(minutes=1):
                exposure.fired(at)
        self.exposure = exposure

    def _rearm_cancels(self, decided: Mapping[str, datetime], now: datetime) -> None:
        """`cancel after D` timers are a pure function of the store: the firing's decision
        time (`decided`, by clientOid) plus the rule's D, for each order still open. One due
        while the watcher was down runs at once, and says so."""
        for tracked in self.tracked.values():
            rule = self.rules.get(tracked.identity or "")
            at = decided.get(tracked.oid)
            if rule is None or rule.cancel_after_seconds is None or at is None:
                continue
            due = at + timedelta(seconds=rule.cancel_after_seconds)
            if due <= now:
                self._event("timer.late", {"timer": "cancel after", "due": due.isoformat(),
                                           "late_s": round((now - due).total_seconds(), 3)},
                            oid=tracked.oid)
            heapq.heappush(self.cancels, (due, tracked.oid))

    async def _adopt_unknown(self) -> None:
        known = self.store.order_oids()
        symbols = sorted({r.order.symbol for r in self.rules.values() if r.order is not None}
                         | {t.symbol for t in self.tracked.values()})
        now = self.now()
        for symbol in symbols:
            found = await self._exchange_orders(symbol)
            for state in found:
                oid = state.client_oid
                if oid is None or not oid.startswith(self.prefix) or oid in known:
                    continue
                status = "open" if state.active else _done_status(state)
                row = {
                    "client_oid": oid, "exchange_id": state.order_id, "symbol": state.symbol,
                    "side": state.side, "order_type": state.order_type, "price": state.price,
                    "size": state.size, "funds": state.funds, "status": status,
                    "filled_size": state.filled_size, "filled_value": state.filled_funds,
                    "family": self.orders.family, "deadline": None,
                }
                if self.store.adopt_order(row, now, "on the exchange with this engine's "
                                          "prefix, unknown to the store"):
                    known.add(oid)
                    owner = self._owner_of(oid, now)
                    self.emit("order.adopted", {"client_oid": oid, "status": status,
                                                "rule": owner[0] if owner else None})
                    if status == "open":
                        self.tracked[oid] = _Tracked(
                            oid, owner[0] if owner else None, owner[1] if owner else None,
                            state.symbol, self.orders.family, state.size, state.order_id,
                            state.side)

    async def _exchange_orders(self, symbol: str, recent_pages: int = 10) -> list[OrderState]:
        """Every active order of `symbol` (all pages), and the most recent done ones (HF: up to
        `recent_pages` pages of 100, newest first, by KuCoin's `lastId` cursor)."""
        found: list[OrderState] = []
        page = 1
        while True:
            active = await self._start_read(
                f"{symbol}'s active orders",
                partial(self.orders.active, symbol, page, 100))
            if active.action is not Action.OK:
                self._event("recovery.incomplete", {"symbol": symbol, "read": "active orders",
                                                    "why": active.message})
                break
            try:
                items = parse_orders_page(active.data)
            except PayloadError:
                break
            found.extend(items)
            total = active.data.get("totalNum") if isinstance(active.data, dict) else None
            if len(items) < 100 or (isinstance(total, int) and page * 100 >= total):
                break
            page += 1
        if self.orders.family != "hf":
            return found
        last_id: str | None = None
        for _ in range(recent_pages):
            params = [("symbol", symbol), ("limit", "100")]
            if last_id is not None:
                params.append(("lastId", last_id))
            done = await self._start_read(
                f"{symbol}'s done orders",
                partial(self.rest.call, "GET", "/api/v1/hf/orders/done", params=params,
                        signed=True))
            if done.action is not Action.OK or not isinstance(done.data, dict):
                self._event("recovery.incomplete", {"symbol": symbol, "read": "done orders",
                                                    "why": done.message})
                break
            try:
                items = parse_orders_page(done.data)
            except PayloadError:
                break
            found.extend(items)
            cursor = done.data.get("lastId")
            if len(items) < 100 or cursor in (None, "", 0, last_id):
                break
            last_id = str(cursor)
        return found

    def _owner_of(self, oid: str, now: datetime) -> tuple[str, int] | None:
        """The rule firing an adopted order belongs to (its clientOid is a pure function of
        the rule and the firing number: the next few firings of each rule are tried). The
        rule's state moves past that firing, so it is never decided twice."""
        for identity, state in self.states.items():
            for number in range(state.firings + 1, state.firings + 4):
                rule = self.rules.get(identity)
                if rule is None or client_oid(self.engine_id, identity, number) != oid:
                    continue
                advanced = state._replace(firings=number, true_since=None, seen_false=False)
                if rule.repeat_seconds is not None and (
                    rule.max_firings is None or number < rule.max_firings
                ):
                    advanced = advanced._replace(
                        status="cooling" if state.status in ("armed", "cooling") else
                        state.status, rearm_at=now + timedelta(seconds=rule.repeat_seconds))
                elif state.status in ("armed", "cooling", "waiting"):
                    advanced = advanced._replace(status="done")
                self.states[identity] = advanced
                self._schedule(identity, now)
                self.store.save_states([self._row(identity)], now, [
                    ("rule.adopted_firing", identity, {"number": number, "client_oid": oid})])
                return identity, number
        return None

    # ================================================================ market data

    def on_public_state(self, state: str, reason: str) -> None:
        now = self.now()
        live = state == "live"
        if live == self.market.live and not live:
            return
        self.market.live = live
        if live:
            self._event("feed.live", {})
            for symbol in self.books:
                self._resync(symbol, "feed (re)connected")
            # A quiet symbol sends no ticker until it trades: start from REST level1.
            self._spawn(self._level1(list(self.market.symbols)))
        else:
            self._event("feed.stale", {"reason": reason})
            for book in self.books.values():
                book.mark_stale(reason, now)
        self._apply(self.market.refresh_all(now), now)

    def on_public(self, frame: dict[str, Any]) -> None:
        try:
            self._on_public(frame)
        except Exception as error:  # a bug: stop cleanly with the reason, never loop on it
            self._fatal(error)

    def _fatal(self, error: BaseException) -> None:
        log.exception("watcher stopped by an internal error")
        self._fail(f"internal error: {type(error).__name__}: {error}")

    def _on_public(self, frame: dict[str, Any]) -> None:
        now = self.now()
        try:
            event = parse_ws_message(frame)
        except PayloadError as err:
            topic = str(frame.get("topic", ""))
            self._event("feed.bad_payload", {"topic": topic[:80], "error": str(err)[:200]})
            if topic.startswith("/market/level2:"):
                symbol = topic.split(":", 1)[1]
                book = self.books.get(symbol)
                if book is not None:
                    book.mark_stale("a malformed level2 message", now)
                    book.state = BookState.SYNCING
                    self._resync(symbol, "malformed level2 message")
                    self._changed(symbol, now)
            return
        if isinstance(event, Delta):  # by what parsed, not by `subject`, which may say anything
            symbol = str(frame["data"].get("symbol") or frame["topic"].partition(":")[2])
            book = self.books.get(symbol)
            if book is None:
                return
            result = book.on_delta(event, now)
            if result is Step.RESYNC:
                self._event("book.gap", {"symbol": symbol, "reason": book.reason})
                self._resync(symbol, book.reason)
                self._changed(symbol, now)
            elif result is Step.BUFFERED and book.state is not BookState.LIVE:
                self._resync(symbol, book.reason)
            elif result is Step.APPLIED:
                self._changed(symbol, now)
        elif isinstance(event, Ticker):
            self.market.on_ticker(event, now)
            self._changed(event.symbol, now)
        elif isinstance(event, Stats24h):
            self.market.on_stats(event, now)
            self._changed(event.symbol, now)
        elif isinstance(event, Candle):
            for (symbol, timeframe), series in self.series.items():
                same = symbol == event.symbol and TIMEFRAME_TYPES[timeframe].type == event.interval
                if same and series.update(event, now):
                    self._changed(symbol, now)

    async def _level1(self, symbols: list[str]) -> None:
        for symbol in symbols:
            outcome = await self.public_data.level1(symbol)
            if outcome.action is not Action.OK or not isinstance(outcome.data, dict):
                continue
            try:
                ticker = parse_ws_message({"topic": f"/market/ticker:{symbol}",
                                           "data": outcome.data})
            except PayloadError:
                continue
            entry = self.market.ticker(symbol)
            if isinstance(ticker, Ticker) and (entry is None or (
                ticker.sequence is not None and entry.sequence is not None
                and ticker.sequence > entry.sequence
            )):  # never older than what the feed already sent
                self.market.on_ticker(ticker, self.now())
                self._changed(symbol, self.now())

    def _resync(self, symbol: str, reason: str) -> None:
        if symbol in self._fetching or self._stop.is_set():
            return
        self._fetching.add(symbol)
        self._spawn(self._snapshot(symbol, reason))

    async def _snapshot(self, symbol: str, reason: str) -> None:
        try:
            outcome = await self.public_data.level2(symbol, 100)
            book = self.books[symbol]
            now = self.now()
            if outcome.action is not Action.OK:
                self._event("book.snapshot_failed", {"symbol": symbol, "error": outcome.message})
                return
            try:
                sequence, bids, asks = parse_level2(outcome.data)
            except MalformedPayload as err:
                self._event("book.snapshot_failed", {"symbol": symbol, "error": str(err)})
                return
            result = book.on_snapshot(sequence, bids, asks, now)
            self._event("book.resync", {"symbol": symbol, "reason": reason,
                                        "sequence": sequence, "live": book.fresh})
            if result is Step.APPLIED:
                self._changed(symbol, now)
        finally:
            self._fetching.discard(symbol)
        if self.books[symbol].state is not BookState.LIVE and not self._stop.is_set():
            await asyncio.sleep(0.2)
            self._resync(symbol, "the snapshot did not join the deltas")

    # ================================================================ evaluation

    def _changed(self, symbol: str, now: datetime) -> None:
        if self.on_market is not None:
            self.on_market(symbol)
        self._apply(self.market.refresh(symbol, now), now)
        self._check_held(symbol, now)
        self._check_legs(symbol, now)

    def _apply(self, changes: list[Any], now: datetime) -> None:
        if not changes:
            return
        selected: dict[str, CompiledRule] = {}
        for change in changes:
            for rule in self.index.affected(change.leaf, change.old, change.new):
                selected[rule.identity] = rule
        if selected:
            self.evaluate(selected.values(), now)

    def evaluate(self, rules: Iterable[CompiledRule], now: datetime) -> None:
        if self.halted is not None:
            return  # the kill switch: nothing fires until `rules-engine resume`
        values = self.market.values
        timed = self.timed_ids
        for rule in rules:
            identity = rule.identity
            if identity in self.pending:
                continue  # frozen: its last firing's outcome is not proven yet
            before = self.states[identity]
            after, decision = step(rule, before, values, now)
            if identity in timed:
                self.timers.update(rule, after, now)
            if decision is None:
                if after is not before:
                    self.states[identity] = after
                continue
            self.states[identity] = after
            if decision.kind == "fire":
                self._fire(rule, decision, now)
            else:
                self.store.save_states([self._row(identity)], now,
                                       [(f"rule.{decision.kind}", identity, {})])
                self.emit(f"rule.{decision.kind}", {"rule": identity})

    def _fire(self, rule: CompiledRule, decision: Decision, now: datetime) -> None:
        identity, number = rule.identity, decision.firing
        inputs: dict[str, Any] = {
            "values": dict(decision.inputs),
            "books": {s: {"sequence": b.sequence, "state": b.state.value}
                      for s in rule.symbols if (b := self.books.get(s)) is not None},
            "at": now.isoformat(),
        }
        if decision.arm is not None:
            inputs["arm"] = {
                "parent_firing": decision.arm.parent_firing,
                "fill": None if decision.arm.fill is None
                else [str(decision.arm.fill.price), str(decision.arm.fill.size)],
            }
        again = (identity, number) in self.again
        self.again.discard((identity, number))
        order_spec = rule.order
        oid = client_oid(self.engine_id, identity, number)
        fill = decision.arm.fill if decision.arm is not None else None
        resolved: OrderIntent | Blocked | None = None
        value = Decimal(0)
        leg: _Leg | None = None
        if order_spec is not None:
            resolved = resolve_order(order_spec, self.market.values,
                                     self.symbols[order_spec.symbol], fill=fill,
                                     balances=self.balances)
            if isinstance(resolved, OrderIntent):
                limited = self._limits(rule, resolved, now)
                if isinstance(limited, Blocked):
                    resolved = limited
                else:
                    resolved, value = limited
            if isinstance(resolved, OrderIntent) and not self.trading:
                resolved = Blocked(f"trading is stopped: {self.stop_reason}")
            if isinstance(resolved, OrderIntent):
                stop_loss = self._stop_loss(rule, resolved, oid, number, fill)
                if isinstance(stop_loss, Blocked):
                    resolved = stop_loss
                else:
                    leg = stop_loss
        if isinstance(resolved, Blocked):  # recorded with the reason; nothing is sent
            state = self.states[identity]
            if state.status != "blocked":
                self.states[identity] = state._replace(status="blocked")
            self.reasons[identity] = resolved.reason
            self.store.fire(identity, number, version=self.versions[identity], inputs=inputs,
                            intent=None, order=None, state=self._row(identity), now=now,
                            blocked=resolved.reason, again=again)
            self.emit("blocked", {"rule": identity, "firing": number,
                                  "reason": resolved.reason})
            return
        # `after R fired` goes with the firing itself: armed in its commit, and only once
        # (a firing sent again after it was proven not placed arms nothing more).
        arms = [] if again else self._arms(identity, "fired", number, None)
        also = tuple(self._row_of(c.identity, st) for c, st, _ in arms)
        armed_events = tuple(("rule.armed", c.identity, e) for c, _, e in arms)
        if resolved is None:  # actions only: nothing to send
            self.store.fire(identity, number, version=self.versions[identity], inputs=inputs,
                            intent=None, order=None, state=self._row(identity), now=now,
                            again=again, also=also, events=armed_events)
            self.fired += 1
            self.emit("fired", {"rule": identity, "firing": number})
            self._actions(rule, now)
            self._armed(arms, now)
            return
        held = resolved.order_type == "trailing-stop"  # kept by the engine until it triggers
        family = "stop" if resolved.order_type == "stop" else self.orders.family
        body: dict[str, Any] | None = None
        until: datetime | None = None
        if not held:
            server_ms = self.rest.server_ms()
            window = self.config.order_window_ms
            body = order_body(resolved, oid, family=family, server_ms=server_ms,
                              window_ms=window)
            until = deadline(family, datetime.fromtimestamp(server_ms / 1000, UTC), window,
                             self.config.request_timeout_s)
        intent: dict[str, Any] = {
            "symbol": resolved.symbol, "side": resolved.side, "type": resolved.order_type,
            "size": _num(resolved.size), "funds": _num(resolved.funds),
            "price": _num(resolved.price), "stop_price": _num(resolved.stop_price),
            "trail": _num(resolved.trail) if held else None,
            "family": family, "deadline": until.isoformat() if until else None,
            "notional": format(value, "f"),
        }
        mark = self.market.values.get(M.Field(resolved.symbol, "last")) if held else None
        order_row = {
            "exchange_id": None, "symbol": resolved.symbol, "side": resolved.side,
            "order_type": resolved.order_type,
            "price": mark if held else resolved.price or resolved.stop_price,
            "size": resolved.size, "funds": resolved.funds,
            "status": "held" if held else "pending",
            "filled_size": Decimal(0), "filled_value": Decimal(0), "family": family,
            "deadline": until,
        }
        legs: tuple[dict[str, Any], ...] = ()
        if leg is not None:
            intent["stop_loss"] = {"client_oid": leg.oid, "trigger": _num(leg.trigger)}
            legs = ({"client_oid": leg.oid, "exchange_id": None, "symbol": leg.symbol,
                     "side": leg.side, "order_type": "stop-loss", "price": leg.trigger,
                     "size": leg.size, "funds": None, "status": "held",
                     "filled_size": Decimal(0), "filled_value": Decimal(0),
                     "family": family, "deadline": None},)
        self.store.fire(identity, number, version=self.versions[identity], inputs=inputs,
                        intent=intent, order=order_row, state=self._row(identity), now=now,
                        again=again, also=also, events=armed_events, legs=legs, held=held)
        if leg is not None:
            self.legs[leg.oid] = leg
            self.tracked[leg.oid] = _Tracked(leg.oid, identity, number, leg.symbol, family,
                                             leg.size, side=leg.side, day=now.date(),
                                             counted=False)
        self.tracked[oid] = _Tracked(oid, identity, number, resolved.symbol, family,
                                     resolved.size, side=resolved.side, value=value,
                                     day=now.date())
        self.exposure.add(identity, now.date(), value)
        if rule.cancel_after_seconds is not None:
            heapq.heappush(self.cancels, (now + timedelta(seconds=rule.cancel_after_seconds),
                                          oid))
        self.fired += 1
        self.emit("fired", {"rule": identity, "firing": number, "client_oid": oid,
                            "order": {k: v for k, v in intent.items() if v is not None},
                            **({"held": True} if held else {})})
        if held:
            assert resolved.size is not None and resolved.trail is not None
            self.held[oid] = _Held(oid, identity, number, resolved.symbol, resolved.side,
                                   resolved.size, resolved.trail, mark)
        else:
            assert body is not None
            self.exposure.fired(now)  # an order sent: it counts in the firings per minute
            pending = _Pending(oid, identity, number, resolved.symbol, family, until,
                               decision.arm)
            self.pending[identity] = pending
            self._spawn(self._send(pending, body))
        self._actions(rule, now)
        self._armed(arms, now)

    def _stop_loss(self, rule: CompiledRule, tp: OrderIntent, tp_oid: str, number: int,
                   fill: Fill | None) -> _Leg | Blocked | None:
        """A bracket's stop-loss leg for the take-profit `tp`, its trigger rounded toward the
        market (it triggers no later than written), or why it cannot be placed."""
        spec = rule.order
        if spec is None or spec.stop_loss is None:
            return None
        raw = value_of(spec.stop_loss, self.market.values, fill)
        if raw is None or tp.size is None:
            return Blocked("the stop-loss depends on data that is not fresh")
        step = self.symbols[tp.symbol].price_increment
        sell = tp.side == "sell"
        units = (raw / step).to_integral_value(ROUND_CEILING if sell else ROUND_FLOOR)
        trigger = units * step
        if tp.price is not None and (trigger >= tp.price if sell else trigger <= tp.price):
            return Blocked(f"the stop-loss {trigger} is not on the losing side of the "
                           f"take-profit {tp.price}")
        oid = client_oid(self.engine_id, f"{rule.identity}/stop-loss", number)
        return _Leg(oid, tp_oid, rule.identity, number, tp.symbol, tp.side, tp.size, trigger)

    def _check_legs(self, symbol: str, now: datetime) -> None:
        if not self.legs:
            return
        last = self.market.values.get(M.Field(symbol, "last"))
        if last is None:
            return  # never on stale data
        for leg in [g for g in self.legs.values() if g.symbol == symbol and not g.busy]:
            if last <= leg.trigger if leg.side == "sell" else last >= leg.trigger:
                leg.busy = True
                self._event("stop_loss.triggered", {"last": str(last),
                                                    "trigger": str(leg.trigger)}, oid=leg.oid)
                self._spawn(self._run_stop_loss(leg))

    async def _run_stop_loss(self, leg: _Leg) -> None:
        """Cancel the take-profit, confirm it is final, then sell what it did not fill: at no
        moment can both legs sell more than the position."""
        tp = self.tracked.get(leg.tp_oid)
        if tp is not None:
            await self.orders.cancel_by_client_oid(leg.tp_oid, leg.symbol)
            for _ in range(50):
                if leg.tp_oid not in self.tracked:
                    break
                outcome = await self.orders.by_client_oid(leg.tp_oid, leg.symbol)
                if outcome.action is Action.OK and isinstance(outcome.data, dict):
                    with contextlib.suppress(PayloadError):
                        state = parse_order(outcome.data)
                        if not state.active:
                            await self._update_from(tp, state)
                if leg.tp_oid in self.tracked:
                    await _sleep(self._stop, 0.1)
            if leg.tp_oid in self.tracked:  # not proven final: never sell beside it
                leg.busy = False
                self._event("stop_loss.waiting", {"why": "the take-profit is not final yet"},
                            oid=leg.oid)
                return
        row = self.store.order(leg.tp_oid)
        filled = row.filled_size if row is not None else Decimal(0)
        info = self.symbols[leg.symbol]
        remaining = ((leg.size - filled) / info.base_increment).to_integral_value(
            ROUND_FLOOR) * info.base_increment
        now = self.now()
        if remaining <= 0 or remaining < info.base_min_size:
            self._drop_leg(leg, f"nothing left to sell ({filled} of {leg.size} filled by the "
                                "take-profit)" if remaining <= 0 else
                           f"what is left ({remaining}) is below baseMinSize", now)
            return
        await self._send_leg(leg, remaining)

    def _market_order(self, symbol: str, side: str, size: Decimal,
                      oid: str) -> tuple[dict[str, Any], datetime | None]:
        """The body of a market order an engine-held order sends, and its HF deadline."""
        intent = OrderIntent(symbol, side, "market", size, None, None, None, None, "GTC",
                             False, False)
        server_ms = self.rest.server_ms()
        window = self.config.order_window_ms
        family = self.orders.family
        body = order_body(intent, oid, family=family, server_ms=server_ms, window_ms=window)
        until = deadline(family, datetime.fromtimestamp(server_ms / 1000, UTC), window,
                         self.config.request_timeout_s)
        return body, until

    async def _send_leg(self, leg: _Leg, size: Decimal) -> None:
        family = self.orders.family
        body, until = self._market_order(leg.symbol, leg.side, size, leg.oid)
        now = self.now()
        self.store.send_leg(leg.oid, now, size=size, deadline_at=until)
        key = f"{leg.identity}/stop-loss#{leg.number}"
        pending = _Pending(leg.oid, key, leg.number, leg.symbol, family, until, None,
                           leg=leg.identity)
        self.pending[key] = pending
        self.emit("stop_loss.sent", {"rule": leg.identity, "client_oid": leg.oid,
                                     "size": str(size)})
        await self._send(pending, body)

    def _drop_leg(self, leg: _Leg, why: str, now: datetime) -> None:
        self.legs.pop(leg.oid, None)
        self.tracked.pop(leg.oid, None)
        self.store.settle(leg.oid, now, order_to="canceled", payload={"why": why})
        self.emit("stop_loss.dropped", {"rule": leg.identity, "client_oid": leg.oid,
                                        "why": why})

    def _check_held(self, symbol: str, now: datetime) -> None:
        """Each trailing stop on `symbol`: follow its water mark on a fresh last price, and
        send its order once the price has come back `trail` from the mark."""
        if not self.held:
            return
        last = self.market.values.get(M.Field(symbol, "last"))
        if last is None:
            return  # not proven fresh: a trailing stop never moves or fires on stale data
        for held in [h for h in self.held.values() if h.symbol == symbol]:
            sell = held.side == "sell"
            if held.mark is None or (last > held.mark if sell else last < held.mark):
                held.mark = last
                self.store.mark(held.oid, last, now)
                continue
            stop = held.mark * (1 - held.trail) if sell else held.mark * (1 + held.trail)
            if (last <= stop if sell else last >= stop) and held.identity not in self.pending:
                self._trigger(held, last, stop, now)

    def _trigger(self, held: _Held, last: Decimal, stop: Decimal, now: datetime) -> None:
        family = self.orders.family
        body, until = self._market_order(held.symbol, held.side, held.size, held.oid)
        detail = {"last": str(last), "mark": str(held.mark), "stop": str(stop)}
        self.store.trigger(
            held.oid, now,
            intent={"type": "market", "deadline": until.isoformat() if until else None,
                    "triggered": detail},
            order={"order_type": "market", "deadline": until}, payload=detail,
        )
        del self.held[held.oid]
        pending = _Pending(held.oid, held.identity, held.number, held.symbol, family, until,
                           None)
        self.pending[held.identity] = pending
        self.emit("triggered", {"rule": held.identity, "client_oid": held.oid, **detail})
        self._spawn(self._send(pending, body))

    def _limits(self, rule: CompiledRule, intent: OrderIntent,
                now: datetime) -> tuple[OrderIntent, Decimal] | Blocked:
        """The order's value and the risk limits (the config's, tightened by the rule
        file's): the limit it would break blocks it."""
        limits = self.limits.tighten(self.file_limits[rule.path]) if (
            rule.path in self.file_limits) else self.limits
        far_side: Iterable[tuple[Decimal, Decimal]] | None = None
        book = self.books.get(intent.symbol)
        market_like = intent.order_type in ("market", "trailing-stop")
        if market_like and book is not None and book.fresh:
            if intent.side == "buy":
                far_side = book.asks.items()
            else:
                far_side = ((price, book.bids[price]) for price in reversed(book.bids))
        elif market_like and intent.size is not None:
            # No book followed: valued at the ticker's best price (the slippage cap, which
            # needs the book's depth, then blocks it).
            ticker = self.market.ticker(intent.symbol)
            best = None
            if ticker is not None:
                best = (ticker.best_ask if intent.side == "buy" else ticker.best_bid) or (
                    ticker.price)
            if best is not None and limits.max_slippage is None:
                far_side = [(best, intent.size)]
        slippage = None if intent.order_type == "trailing-stop" else limits.max_slippage
        value = value_order(intent, far_side, slippage)
        if isinstance(value, str):
            valued = (limits.max_order_notional, limits.max_rule_notional,
                      limits.max_daily_notional, limits.max_slippage)
            if any(limit is not None for limit in valued):
                return Blocked(value)
            value = Decimal(0)  # no limit needs its value: it is not blocked for lacking one
        reason = check(intent, value, rule.identity, limits=limits, exposure=self.exposure,
                       now=now)
        return Blocked(reason) if reason is not None else (intent, value)

    def _actions(self, rule: CompiledRule, now: datetime) -> None:
        for action in rule.actions:
            if isinstance(action, M.NotifyAction):
                self._event("notify", {"text": action.text}, identity=rule.identity)
                for url in self.config.webhooks:
                    self._spawn(self._webhook(url, {"rule": rule.identity, "text": action.text,
                                                    "at": now.isoformat()}))
            elif isinstance(action, M.CancelAllAction):
                symbol = action.symbol
                self._spawn(self._cancel_where(
                    [t for t in self.tracked.values() if t.symbol == symbol],
                    f"cancel all of {rule.identity}"))
            elif isinstance(action, M.CancelOrdersAction):
                target = action.rule
                self._spawn(self._cancel_where(
                    [t for t in self.tracked.values() if t.identity == target],
                    f"cancel orders of {target}"))

    async def _webhook(self, url: str, payload: dict[str, Any]) -> None:
        """POST a notification, with retries; a failing webhook never blocks trading (this
        runs on its own) and is named by its host only (its path may hold a token)."""
        session = self.rest._session
        host = urlsplit(url).netloc
        if session is None:
            return
        error = ""
        for attempt in range(self.config.webhook_attempts):
            try:
                async with session.post(url, json=payload, timeout=aiohttp.ClientTimeout(
                        total=self.config.webhook_timeout_s)) as reply:
                    if reply.status < 300:
                        self._event("notify.sent", {"webhook": host, "attempts": attempt + 1},
                                    identity=payload["rule"])
                        return
                    error = f"HTTP {reply.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as err:
                error = type(err).__name__
            if self._stop.is_set():
                break
            await _sleep(self._stop, min(0.2 * 2 ** attempt, 5.0))
        self._event("notify.failed", {"webhook": host, "error": error,
                                      "attempts": self.config.webhook_attempts},
                    identity=payload["rule"])

    async def _cancel_where(self, which: list[_Tracked], why: str) -> None:
        now = self.now()
        for tracked in [t for t in which if t.oid in self.legs and not self.legs[t.oid].busy]:
            self._drop_leg(self.legs[tracked.oid], why, now)
        for tracked in [t for t in which if t.oid in self.held]:  # nothing on the exchange
            del self.held[tracked.oid]
            self.tracked.pop(tracked.oid, None)
            self._release(tracked, Decimal(0))
            self.store.settle(tracked.oid, now, firing_to="done", order_to="canceled",
                              payload={"why": why})
            self.emit("order.canceled", {"client_oid": tracked.oid, "why": why})
        which = [t for t in which if t.oid in self.tracked]
        for tracked in which:
            if tracked.family == "stop":
                if tracked.exchange_id is None:
                    continue
                outcome = await self.kucoin.cancel_stop(tracked.exchange_id)
            else:
                outcome = await self.orders.cancel_by_client_oid(tracked.oid, tracked.symbol)
            self._event("order.cancel_requested", {"why": why, "result": outcome.action.name},
                        oid=tracked.oid)

    # ================================================================ sending

    async def _send(self, pending: _Pending, body: dict[str, Any]) -> None:
        if pending.family == "stop":
            outcome = await self.kucoin.place_stop(body)
        else:
            outcome = await self.orders.place(body)
        now = self.now()
        action = outcome.action
        if self.pending.get(pending.identity) is not pending:
            # The exchange already showed the order (the order channel was faster than the
            # reply): it is adopted, and this reply, even a timeout, changes nothing.
            self._event("order.reply_after_ack", {"reply": action.name}, oid=pending.oid)
            return
        if action is Action.OK and isinstance(outcome.data, dict):
            exchange_id = str(outcome.data.get("orderId") or outcome.data.get("id") or "")
            self._acknowledged(pending, exchange_id or None, now, "accepted")
        elif action is Action.DUPLICATE:
            self._event("order.duplicate", {"why": "the clientOid exists: looking it up"},
                        oid=pending.oid)
            self._mark_unknown(pending, now, "duplicate clientOid: the order exists")
            await self._lookup(pending)
        elif action is Action.REJECT:
            self._refused(pending, outcome, now)
        elif action in (Action.NOT_SENT, Action.STOP):
            if action is Action.STOP:
                self._halt(f"the exchange refused the API key ({outcome.message}); fix the key "
                           "and restart the watcher")
            self._retry(pending, "not_sent", now, outcome.message)
        else:  # UNKNOWN (and anything unexpected): look it up, never resend on a guess
            self._mark_unknown(pending, now, outcome.message)

    def _acknowledged(self, pending: _Pending, exchange_id: str | None, now: datetime,
                      why: str) -> None:
        if self.pending.get(pending.identity) is not pending:
            return
        self.pending.pop(pending.identity, None)
        self._schedule(pending.identity, now)
        tracked = self.tracked.get(pending.oid)
        if tracked is not None and exchange_id:
            tracked.exchange_id = exchange_id
        self.store.settle(pending.oid, now, firing_to="acknowledged", order_to="open",
                          exchange_id=exchange_id, payload={"why": why})
        if tracked is not None and self.halted is not None and (
            self.halted.get("all") or not self._protective(tracked)
        ):  # in flight when the switch was thrown: cancelled as soon as it exists
            self._spawn(self._cancel_where([tracked], "halt (acknowledged after it)"))
        self.emit("acknowledged", {"rule": pending.identity, "client_oid": pending.oid,
                                   "order_id": exchange_id})

    def _release(self, tracked: _Tracked | None, kept: Decimal) -> None:
        """A tracked order leaves the open count; of its value it keeps `kept` (what it
        traded; 0 when it never reached the exchange)."""
        if tracked is not None and not tracked.counted:
            return
        if tracked is not None and tracked.identity is not None and tracked.day is not None:
            self.exposure.settle(tracked.identity, tracked.day, tracked.value, kept)
        elif tracked is not None:
            self.exposure.open_orders = max(self.exposure.open_orders - 1, 0)

    def _refused(self, pending: _Pending, outcome: Outcome, now: datetime) -> None:
        if self.pending.get(pending.identity) is not pending:
            return
        self.pending.pop(pending.identity, None)
        self._release(self.tracked.pop(pending.oid, None), Decimal(0))
        reason = f"refused by the exchange: {outcome.code} {outcome.message}".strip()
        if pending.leg is not None:  # a stop-loss sale refused: a person must look at it
            self.legs.pop(pending.oid, None)
            self.store.settle(pending.oid, now, order_to="refused", payload={"reason": reason})
            self._event("stop_loss.refused", {"reason": reason}, identity=pending.leg,
                        oid=pending.oid)
            return
        state = self.states[pending.identity]
        if state.status in ("done", "cooling", "armed", "waiting"):
            self.states[pending.identity] = state._replace(status="blocked")
        self.reasons[pending.identity] = reason
        self.store.settle(pending.oid, now, firing_to="refused", order_to="refused",
                          state=self._row(pending.identity), payload={"reason": reason})
        self._schedule(pending.identity, now)
        self.emit("refused", {"rule": pending.identity, "client_oid": pending.oid,
                              "reason": reason})

    def _mark_unknown(self, pending: _Pending, now: datetime, why: str) -> None:
        if pending.unknown:
            return
        pending.unknown = True
        self.store.settle(pending.oid, now, firing_to="unknown", payload={"why": why})
        self.emit("unknown", {"rule": pending.identity, "client_oid": pending.oid, "why": why})

    def _retry(self, pending: _Pending, status: str, now: datetime, why: str = "") -> None:
        """The order is proven not on the exchange: the rule decides the same firing again
        (same clientOid) once its condition holds on fresh data."""
        self.pending.pop(pending.identity, None)
        if pending.leg is not None:  # a stop-loss sale proven absent: sent again, same id
            self.store.settle(pending.oid, now, order_to="not_placed",
                              payload={"why": why or status})
            leg = self.legs.get(pending.oid)
            if leg is not None and not self._stop.is_set():
                leg.busy = False  # the next fresh price at or past its trigger sends it
            return
        self._release(self.tracked.pop(pending.oid, None), Decimal(0))
        state = self.states.get(pending.identity)
        row_state = None
        if state is not None and state.firings == pending.number and state.status in (
            "done", "cooling", "armed", "waiting"
        ):
            self.states[pending.identity] = retry_firing(state, pending.number, pending.arm)
            row_state = self._row(pending.identity)
            self.again.add((pending.identity, pending.number))
        firing = self.store.firing_of(pending.oid)
        firing_to = status if firing is not None and firing.status in ("sent", "unknown") else None
        self.store.settle(pending.oid, now, firing_to=firing_to, order_to="not_placed",
                          state=row_state, payload={"why": why or status})
        self.emit(status, {"rule": pending.identity, "client_oid": pending.oid, "why": why})
        self._schedule(pending.identity, now)
        rule = self.rules.get(pending.identity)
        if row_state is not None and rule is not None and self._ready.is_set():
            # Decided again on the values as they are now: no market move needs to select it.
            self.evaluate([rule], now)

    def _halt(self, reason: str) -> None:
        if self.trading:
            self.trading = False
            self.stop_reason = reason
            self._event("trading.stopped", {"reason": reason})
            log.error("trading stopped: %s", reason)

    # ================================================================ resolving

    async def _lookup(self, pending: _Pending) -> None:
        """One lookup by clientOid of an order of unknown outcome, and what it proves."""
        if pending.family == "stop":
            outcome = await self.kucoin.stop_by_client_oid(pending.oid, pending.symbol)
        else:
            outcome = await self.orders.by_client_oid(pending.oid, pending.symbol)
        now = self.now()
        server_now = datetime.fromtimestamp(self.rest.server_ms() / 1000, UTC)
        state: OrderState | None = None
        if outcome.action is Action.OK and outcome.data:
            data = outcome.data
            if pending.family == "stop" and isinstance(data, list):
                data = data[0] if data else None
            if data:
                try:
                    state = parse_order(data) if pending.family != "stop" else None
                except PayloadError:
                    state = None
                pending.lookups.append(Lookup("found", server_now))
            else:
                pending.lookups.append(Lookup("absent", server_now))
        elif outcome.action in (Action.ABSENT, Action.OK):
            pending.lookups.append(Lookup("absent", server_now))
        else:
            pending.lookups.append(Lookup("failed", server_now))
        verdict = resolve_unknown(pending.lookups, pending.deadline)
        if verdict is Resolution.ADOPT:
            exchange_id = state.order_id if state is not None else None
            self._acknowledged(pending, exchange_id, now, "found by clientOid")
            tracked = self.tracked.get(pending.oid)
            if state is not None and tracked is not None:
                await self._update_from(tracked, state)
        elif verdict is Resolution.NOT_PLACED:
            self._retry(pending, "not_placed", now,
                        "absent after the deadline in two lookups")

    async def _resolve_job(self) -> None:
        for pending in [p for p in self.pending.values() if p.unknown]:
            if not self._stop.is_set():
                await self._lookup(pending)

    # ================================================================ order tracking

    def on_private_state(self, state: str, reason: str) -> None:
        live = state == "live"
        if live != self.private_live:
            self.private_live = live
            self._event("orders_feed.live" if live else "orders_feed.stale",
                        {} if live else {"reason": reason})
            if live:  # events missed while it was down: one REST pass catches them up
                self._spawn(self._poll_all())

    def on_private(self, frame: dict[str, Any]) -> None:
        try:
            self._on_private(frame)
        except Exception as error:
            self._fatal(error)

    def _on_private(self, frame: dict[str, Any]) -> None:
        try:
            event = parse_ws_message(frame)
        except PayloadError as err:
            self._event("orders_feed.bad_payload", {"error": str(err)[:200]})
            return
        if isinstance(event, OrderEvent):
            self._on_order_event(event)
        elif isinstance(event, StopOrderEvent):
            self._on_stop_event(event)
        elif isinstance(event, BalanceEvent):
            self.balances[event.currency] = event.available

    def _on_order_event(self, event: OrderEvent) -> None:
        oid = event.client_oid
        if oid is None:
            return
        tracked = self.tracked.get(oid)
        if tracked is None:
            return
        now = self.now()
        tracked.exchange_id = event.order_id
        pending = self._pending_for(oid)
        if pending is not None:
            self._acknowledged(pending, event.order_id, now, f"order event {event.kind}")
        if event.kind == "match" and event.trade_id and event.match_price and event.match_size:
            self.store.add_fill(event.trade_id, oid, price=event.match_price,
                                size=event.match_size, fee=None, fee_currency=None,
                                time=event.time)
            self.emit("fill", {"client_oid": oid, "price": str(event.match_price),
                               "size": str(event.match_size)})
        if event.kind in ("filled", "canceled"):
            self._final(tracked, "filled" if event.kind == "filled" else "canceled", now)
        elif event.kind in ("open", "received"):
            self.store.settle(oid, now, order_to="open", exchange_id=event.order_id)

    def _on_stop_event(self, event: StopOrderEvent) -> None:
        """A KuCoin stop order: `open` (resting, untriggered), `triggered` (it entered the book
        as an ordinary order with the same id and clientOid: its fills come on the order
        channel), `cancel` (removed before it triggered: final)."""
        # The event names the order by id only: one not acknowledged yet is settled by its
        # reply (or a lookup), never by a guess.
        tracked = next((t for t in self.tracked.values() if t.exchange_id == event.order_id),
                       None)
        if tracked is None:
            return
        now = self.now()
        self._event(f"stop.{event.kind}", {"stop_price": _num(event.stop_price)},
                    oid=tracked.oid)
        if event.kind == "cancel":
            self._final(tracked, "canceled", now)

    def _final(self, tracked: _Tracked, status: str, now: datetime) -> None:
        """The order is final: its status, and the `after` rules it arms, in one commit."""
        if self.tracked.pop(tracked.oid, None) is None:
            return
        arms: list[tuple[CompiledRule, RuleState, dict[str, Any]]] = []
        if tracked.identity is not None and tracked.number is not None:
            row = self.store.order(tracked.oid)
            fill = None
            if row is not None and row.filled_size > 0:
                fill = Fill(row.filled_value / row.filled_size, row.filled_size)
                arms += self._arms(tracked.identity, "filled", tracked.number, fill)
            if status == "canceled":
                arms += self._arms(tracked.identity, "canceled", tracked.number, fill)
        _, final = self.store.settle(
            tracked.oid, now, order_to=status, exchange_id=tracked.exchange_id,
            also=tuple(self._row_of(c.identity, st) for c, st, _ in arms),
            events=tuple(("rule.armed", c.identity, e) for c, _, e in arms))
        self._release(tracked, final.filled_value if final is not None else Decimal(0))
        self.emit(f"order.{status}", {"client_oid": tracked.oid})
        for leg in [g for g in self.legs.values() if g.tp_oid == tracked.oid and not g.busy]:
            if final is not None and final.filled_size >= leg.size:
                self._drop_leg(leg, "the take-profit filled", now)
        if tracked.oid in self.legs:  # the stop-loss's own order is final: the bracket ends
            self.legs.pop(tracked.oid)
        self._armed(arms, now)

    def _arms(self, parent: str, event: str, number: int, fill: Fill | None
              ) -> list[tuple[CompiledRule, RuleState, dict[str, Any]]]:
        """The `after PARENT EVENT` rules this event arms, with their new states (committed
        by the caller together with the event itself, then applied by `_armed`)."""
        out = []
        for child in self.children.get(parent, ()):
            if child.after is None or child.after[1] != event:
                continue
            state = self.states[child.identity]
            new = arm(state, Arm(number, fill))
            if new != state:
                out.append((child, new, {"parent": parent, "event": event,
                                         "parent_firing": number}))
        return out

    def _armed(self, arms: list[tuple[CompiledRule, RuleState, dict[str, Any]]],
               now: datetime) -> None:
        for child, state, detail in arms:
            self.states[child.identity] = state
            self._schedule(child.identity, now)
            self.emit("rule.armed", {"rule": child.identity, **detail})
        if arms:
            self.evaluate([child for child, _, _ in arms], now)

    def _row_of(self, identity: str, state: RuleState) -> StateRow:
        return StateRow(identity, self.versions[identity], state.status, state.firings,
                        dump_state(state), self.reasons.get(identity))

    async def _poll_job(self) -> None:
        if not self.private_live:  # the order channel is down: REST is the fallback
            await self._poll_all()

    async def _reconcile_job(self) -> None:
        """Every `reconcile_interval_s`, every open order is looked up over REST even while
        the order channel is live: a lost push (a dropped frame, a missed reconnect) is found
        within that interval."""
        if self.private_live:
            await self._poll_all()

    async def _poll_all(self) -> None:
        for tracked in list(self.tracked.values()):
            if self._pending_for(tracked.oid) is not None or tracked.oid in self.held:
                continue  # the resolver owns it, or it is held by the engine
            await self._poll_order(tracked)

    async def _poll_order(self, tracked: _Tracked) -> None:
        outcome = await self.orders.by_client_oid(tracked.oid, tracked.symbol)
        if outcome.action is Action.OK and isinstance(outcome.data, dict):
            try:
                state = parse_order(outcome.data)
            except PayloadError:
                return
            await self._update_from(tracked, state)
            return
        if tracked.family != "stop" or outcome.action not in (Action.OK, Action.ABSENT):
            return
        # A stop order not triggered yet is not an order: ask the stop-order endpoint.
        stop = await self.kucoin.stop_by_client_oid(tracked.oid, tracked.symbol)
        if stop.action is not Action.OK:
            return
        items = stop.data if isinstance(stop.data, list) else [stop.data] if stop.data else []
        if items and isinstance(items[0], dict):
            tracked.exchange_id = str(items[0].get("id") or tracked.exchange_id or "") or None
            return  # still waiting for its trigger
        self._final(tracked, "canceled", self.now())  # neither an order nor a stop: gone

    async def _update_from(self, tracked: _Tracked, state: OrderState) -> None:
        """Bring a tracked order up to what a REST lookup shows: fills, then the status."""
        tracked.exchange_id = state.order_id
        if state.filled_size > 0:
            fills = await self.kucoin.fills(tracked.symbol, self.orders.family, state.order_id)
            if fills.action is Action.OK:
                with contextlib.suppress(PayloadError):
                    for item in parse_fills_page(fills.data):
                        if item.order_id == state.order_id:
                            self.store.add_fill(item.trade_id, tracked.oid, price=item.price,
                                                size=item.size, fee=item.fee,
                                                fee_currency=item.fee_currency,
                                                time=item.time)
        now = self.now()
        if state.active:
            self.store.settle(tracked.oid, now, order_to="open", exchange_id=state.order_id)
            return
        self._final(tracked, _done_status(state), now)

    # ================================================================ clocks

    async def _control_job(self) -> None:
        """A person's requests, from the store: the kill switch, `resolve` and `unblock`."""
        wanted = self.store.halt()
        if wanted is not None and (
            self.halted is None or wanted.get("request") != self.halted.get("request")
        ):
            await self._halt_now(wanted)
        elif wanted is None and self.halted is not None:
            self._resume_now()
        for oid, placed in self.store.resolutions().items():
            self._resolve_by_hand(oid, placed)
        for identity in self.store.unblocks():
            self._unblock_by_hand(identity)

    def _protective(self, tracked: _Tracked) -> bool:
        """An exit that protects a position: kept by `halt`, cancelled by `halt --all`. Here:
        KuCoin stop orders that sell (`place stop sell`), trailing stops, and brackets'
        stop-losses."""
        return (
            (tracked.family == "stop" and tracked.side == "sell")
            or tracked.oid in self.held
            or tracked.oid in self.legs
        )

    async def _halt_now(self, wanted: dict[str, Any]) -> None:
        self.halted = wanted
        everything = bool(wanted.get("all"))
        cancel = [t for t in self.tracked.values()
                  if everything or not self._protective(t)]
        kept = len(self.tracked) - len(cancel)
        self._event("halted", {"all": everything, "cancelling": len(cancel), "kept": kept})
        await self._cancel_where(cancel, "halt" + (" --all" if everything else ""))
        self.store.acknowledge_halt(str(wanted.get("request")), self.now(),
                                    {"cancelled": len(cancel), "kept": kept})

    def _resume_now(self) -> None:
        now = self.now()
        self.halted = None
        # As after a restart: nobody watched while halted, so no `crosses` baseline and no
        # `for` run survive it; then every rule looks at the market as it is now.
        for identity, state in self.states.items():
            self.states[identity] = restore(state)
            self._schedule(identity, now)
        self._event("resumed", {})
        self.evaluate(list(self.rules.values()), now)

    def _unblock_by_hand(self, identity: str) -> None:
        """`rules-engine unblock`: a person says what blocked the rule is fixed. It starts
        again as an edit that fixed it would make it (`engine.unblock`), and looks at the
        market at once: if the cause is still there, the next firing is blocked again."""
        now = self.now()
        rule, state = self.rules.get(identity), self.states.get(identity)
        if rule is None or state is None or state.status != "blocked":
            why = ("no such rule runs here" if rule is None or state is None
                   else f"the rule is {state.status}, not blocked")
            self._event("unblock.ignored", {"why": why}, identity=identity)
            self.store.unblock_done(identity)
            return
        self.states[identity] = unblock(rule, state, now)
        was = self.reasons.pop(identity, None)
        self.store.save_states([self._row(identity)], now,
                               [("rule.unblocked", identity, {"was": was})])
        self.emit("rule.unblocked", {"rule": identity, "was": was})
        self._schedule(identity, now)
        self.evaluate([rule], now)
        self.store.unblock_done(identity)  # taken, and the rule has looked at the market

    def _resolve_by_hand(self, oid: str, placed: bool) -> None:
        """`rules-engine resolve`: a person settles an order the exchange cannot prove."""
        now = self.now()
        pending = self._pending_for(oid)
        if pending is not None and pending.unknown:
            if placed:
                self._acknowledged(pending, None, now, "settled by a person: placed")
            else:
                self._retry(pending, "not_placed", now, "settled by a person: not placed")
            self._event("resolved", {"placed": placed}, oid=oid)
        else:
            self._event("resolve.ignored", {"why": "not an order of unknown outcome"}, oid=oid)
        self.store.resolution_done(oid)

    async def _reload_job(self) -> None:
        if self.reloader is not None and self.reloader.changed():
            await self.apply_reload(self.reloader.reload())

    async def apply_reload(self, result: Reloaded) -> None:
        """Hot reload, rule by rule. Unchanged rules keep their state. A changed rule gets a
        new version, and its state carries over (`engine.carry_over`: done stays done, the
        firing count is kept so clientOids never repeat, a blocked rule starts fresh); its
        open orders stay tracked, and a firing in flight is resolved as before (the rule stays
        frozen until it is). A new rule starts as at load. A removed rule is disarmed; its
        open orders are kept (`on_removed_rule = "keep"`) or cancelled."""
        now = self.now()
        for path, report in result.rejected.items():
            self._event("reload.rejected", {"path": path, "diagnostics": report[:4000]})
        for path, why in result.unreadable.items():
            self._event("reload.unreadable", {"path": path, "error": why})
        old, new = self.rules, {r.identity: r for r in result.rules}
        added = [i for i in new if i not in old]
        removed = [i for i in old if i not in new]
        changed = [i for i in new if i in old and new[i].fingerprint != old[i].fingerprint]
        if not (added or removed or changed):
            return
        self.sources.update(result.sources)
        loaded = self.store.load_rules(
            [(new[i].identity, new[i].fingerprint, new[i].canonical, new[i].path,
              self.sources.get(i)) for i in (*added, *changed)], now)
        self._install(result.rules)
        rows: list[StateRow] = []
        events: list[tuple[str, str, dict[str, Any]]] = []
        for identity in (*added, *changed):
            version, stored = loaded[identity]
            rule = new[identity]
            previous = self.states.get(identity)
            if previous is not None and identity in changed:
                state = carry_over(rule, previous, now)
                self.reasons.pop(identity, None)  # a new version starts fresh
            else:
                state = _stored_state(rule, version, stored, now)
            self.versions[identity] = version
            self.states[identity] = state
            rows.append(self._row(identity))
            events.append(("rule.changed" if identity in changed else "rule.added", identity,
                           {"version": version}))
        cancel: list[_Tracked] = []
        for identity in removed:
            current = self.states.get(identity)
            if current is not None and current.status not in ("disarmed", "expired"):
                self.states[identity] = current._replace(status="disarmed")
                rows.append(self._row(identity))
            events.append(("rule.removed", identity, {"orders": self.config.on_removed_rule}))
            if self.config.on_removed_rule == "cancel":
                cancel += [t for t in self.tracked.values() if t.identity == identity]
        self.store.save_states(rows, now, events)
        if cancel:
            await self._cancel_where(cancel, "its rule was removed")
        await self._load_candles()
        topics = self._new_topics()
        if topics and self.public is not None:
            self.public.subscribe(topics)
            await self.public.reconnect()  # the new topics, and fresh snapshots of every book
        for identity in self.timed_ids:
            self._schedule(identity, now)
        self._event("reloaded", {"added": added, "changed": changed, "removed": removed,
                                 "rejected": sorted(result.rejected)})
        self.evaluate([new[i] for i in (*added, *changed)], now)

    def _pending_for(self, oid: str) -> _Pending | None:
        """The unproven firing (or stop-loss sale) a clientOid belongs to, if any."""
        return next((p for p in self.pending.values() if p.oid == oid), None)

    def _schedule(self, identity: str, now: datetime) -> None:
        """A timed rule's state changed outside `step` (loaded, armed, released): when is it
        due next."""
        rule = self.rules.get(identity)
        if rule is not None and identity in self.timed_ids:
            self.timers.update(rule, self.states[identity], now)

    async def _clock_job(self) -> None:
        """The watcher's clock: candles that closed, values past their age limit, the timed
        rules that are due (`Timers`), the `cancel after` timers that fell due."""
        now = self.now()
        changes = []
        for (symbol, _), series in self.series.items():
            if series.advance(now):
                changes.extend(self.market.refresh(symbol, now))
        if self.market.max_age:
            changes.extend(self.market.refresh_all(now))
        self._apply(changes, now)
        due = self.timers.pop_due(now)
        if due:  # only the timed rules whose moment has come
            self.evaluate([self.rules[i] for i in due if i in self.rules], now)
        expired = []
        while self.cancels and self.cancels[0][0] <= now:
            _, oid = heapq.heappop(self.cancels)
            tracked = self.tracked.get(oid)
            if tracked is not None:
                expired.append(tracked)
        if expired:
            await self._cancel_where(expired, "cancel after")

    async def _heartbeat_job(self) -> None:
        self.store.heartbeat(self.owner, self.now())

    async def _time_job(self) -> None:
        await self.rest.sync_time()

    def _start_jobs(self) -> None:
        """The periodic work, as APScheduler interval jobs on this loop: one run at a time
        each, a late run coalesced, a failing one stops the watcher (`_job_failed`). What a
        job decides uses the watcher's clock (`now`), so a test clock reaches it too."""
        every: list[tuple[Callable[[], Any], float, str]] = [
            (self._clock_job, self.config.clock_interval_s, "clock"),
            (self._heartbeat_job, self.config.heartbeat_s, "heartbeat"),
            (self._resolve_job, self.config.resolve_interval_s, "resolve unknown orders"),
            (self._poll_job, self.config.poll_interval_s, "poll while the channel is down"),
            (self._reconcile_job, self.config.reconcile_interval_s, "reconcile"),
            (self._control_job, 0.25, "halt, resume, resolve"),
            (self._time_job, self.config.time_sync_s, "time sync"),
        ]
        if self.reloader is not None and self.config.reload_interval_s > 0:
            every.append((self._reload_job, self.config.reload_interval_s, "hot reload"))
        for job, seconds, name in every:
            self.scheduler.add_job(self._guarded(job), "interval", seconds=seconds, id=name,
                                   name=name)
        self.scheduler.add_listener(self._job_failed, EVENT_JOB_ERROR)
        self.scheduler.start()

    def _guarded(self, job: Callable[[], Any]) -> Callable[[], Any]:
        async def run() -> None:
            if self._stop.is_set():
                return
            task = asyncio.current_task()
            if task is not None:  # `close` waits for a job that is running
                self._jobs_running.add(task)
            try:
                await job()
            finally:
                if task is not None:
                    self._jobs_running.discard(task)

        return run

    def _job_failed(self, event: Any) -> None:
        error = event.exception
        log.error("watcher job %s failed: %r", event.job_id, error)
        self._fail(f"{event.job_id}: {type(error).__name__}: {error}")

    async def ready(self) -> None:
        await self._ready.wait()

    def snapshot(self) -> dict[str, Any]:
        """What the live view shows: each rule's state, open orders, feed health."""
        rules = []
        for identity, rule in self.rules.items():
            state = self.states.get(identity)
            status = state.status if state else "?"
            if identity in self.pending:
                status = "frozen" if self.pending[identity].unknown else "sending"
            rules.append({"rule": identity if rule.name else identity[:12], "status": status,
                          "firings": state.firings if state else 0,
                          "reason": self.reasons.get(identity, "")})
        return {
            "feed": "live" if self.market.live else "stale",
            "orders_feed": "live" if self.private_live else "down (polling)",
            "books": {s: b.state.value for s, b in self.books.items()},
            "rules": rules,
            "open_orders": [{"client_oid": t.oid, "symbol": t.symbol, "rule": t.identity}
                            for t in self.tracked.values()],
            "trading": self.trading and self.halted is None,
            "halted": self.halted,
            "stop_reason": self.stop_reason,
        }


def _stored_state(rule: CompiledRule, version: int, stored: StateRow | None,
                  now: datetime) -> RuleState:
    """A rule's state from the store: the same version as after a restart (`restore`), a
    new version carried over (`carry_over`), or a rule never seen."""
    if stored is None:
        return initial_state(rule, now)
    if stored.version == version:
        return restore(load_state(stored.state))
    return carry_over(rule, load_state(stored.state), now)


def _done_status(state: OrderState) -> str:
    """A done order as the store records it: filled when it traded its whole size (or, by
    funds, anything at all), else canceled (after a partial fill, or none)."""
    if state.filled_size > 0 and (state.size is None or state.filled_size >= state.size):
        return "filled"
    return "canceled"


def _parse(value: Any) -> datetime | None:
    return None if value in (None, "") else datetime.fromisoformat(str(value))


def _arm_of(inputs: dict[str, Any]) -> Arm | None:
    data = inputs.get("arm") if isinstance(inputs, dict) else None
    if not isinstance(data, dict):
        return None
    fill = data.get("fill")
    return Arm(int(data["parent_firing"]),
               None if fill is None else Fill(Decimal(fill[0]), Decimal(fill[1])))


def _owner_dead(owner: str) -> bool:
    """True when a lease owner `host:pid:...` is a process of this host that is gone."""
    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)

