"""The watcher: small parts, wired in one direction, around the pure core.

    MarketFeed -> Feeds (books, tickers, stats, candles -> MarketState)
               -> Firing (RuleIndex.affected -> step -> Decision -> intent, fenced commit)
               -> OrderManager (send, replies, lookups, events, cancels) -> Venue
    HeldOrders (trailing stops, brackets' stop-losses: engine-held until they trigger)
    Recovery (at start), Controls (halt, resume, resolve, unblock, reload), Jobs (clock,
    heartbeat, lookups, polling, reconciliation, cancels, time sync)

What an order's end means for the rules (a chain armed, a rule blocked, a firing decided
again) comes back through the four hooks below: the only path from the order side to the
rule side.

Invariants (what the tests check):

* A firing and its order are committed before the order is sent, in a transaction that
  proves this watcher holds the store's lease; the order's clientOid is a pure function of
  (engine id, rule identity, firing number), so a firing can never become two orders.
* A rule with a firing whose outcome is not proven is frozen until the exchange shows the
  order or proves it absent after the HF deadline with two agreeing lookups.
* Only fresh values reach the evaluator; unknown never fires.
* A store that fails, or a lease that is lost, stops the watcher (fail-stop) with one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any

from rules_engine.adapters.kucoin import KucoinFeed, KucoinRest, KucoinVenue
from rules_engine.compiler import CompiledRule
from rules_engine.core.market import BalanceEvent
from rules_engine.core.outcome import TRANSIENT, Action, Outcome
from rules_engine.core.symbols import SymbolTable
from rules_engine.engine import Fill, next_due, retry_firing
from rules_engine.engine._order_types import ArmChildren, BlockRule, RetryFiring
from rules_engine.engine._slices import SLICES, rule_of
from rules_engine.ports import MarketFeed, Venue
from rules_engine.runtime._actions import Actions
from rules_engine.runtime._config import WatcherConfig
from rules_engine.runtime._context import Context, utc_now
from rules_engine.runtime._controls import Controls
from rules_engine.runtime._exits import exit_slippage
from rules_engine.runtime._feeds import Feeds
from rules_engine.runtime._firing import Firing
from rules_engine.runtime._held import HeldOrders
from rules_engine.runtime._jobs import Jobs
from rules_engine.runtime._market import MarketState
from rules_engine.runtime._oco import OcoBrackets
from rules_engine.runtime._orders import OrderManager, Step, Tracked
from rules_engine.runtime._owning import WatcherError, own_store, owner_dead
from rules_engine.runtime._patience import Patience
from rules_engine.runtime._recovery import Recovery
from rules_engine.runtime._reload import Reloaded, RuleFiles
from rules_engine.runtime._rules import Arms, RuleSet
from rules_engine.runtime._signals import reload_signals, signal_windows
from rules_engine.runtime._why import not_yet
from rules_engine.store import Store, engine_prefix, save_live_why

__all__ = ["Watcher", "WatcherError", "owner_dead", "utc_now"]


class Watcher:
    def __init__(
        self,
        rules: Iterable[CompiledRule],
        *,
        symbols: SymbolTable,
        store: Store,
        config: WatcherConfig,
        rest: KucoinRest | None = None,
        venue: Venue | None = None,
        feed: MarketFeed | None = None,
        emit: Callable[[str, dict[str, Any]], None] | None = None,
        now: Callable[[], datetime] = utc_now,
        market_rest: KucoinRest | None = None,
        book_symbols: Iterable[str] = (),
        on_market: Callable[[str], None] | None = None,
        sources: Mapping[str, str] | None = None,
        reloader: RuleFiles | None = None,
        scheduled: bool = True,
    ) -> None:
        """The ports: `venue` (orders) and `feed` (public market data), or `rest` for
        both on KuCoin (`market_rest`: where public data comes from when it is not the
        exchange that takes the orders: paper mode). `book_symbols`: books followed even
        if no rule reads them; `on_market(symbol)`: called when a symbol moved, before any
        rule is evaluated on it; `sources`: each rule's text, by identity; `reloader`: the
        rule files, watched for edits (hot reload); `scheduled=False`: the jobs are not put
        on APScheduler's wall clock, their caller runs them on its own clock (a backtest)."""
        if venue is None:
            assert rest is not None, "a venue or a KuCoin REST client"
            venue = KucoinVenue(rest)
        if feed is None:
            source = market_rest or rest
            assert source is not None, "a market feed or a KuCoin REST client"
            feed = KucoinFeed(source)
        self.ctx = ctx = Context(store, config, symbols, venue, feed, now,
                                 emit or (lambda kind, data: None))
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # The REST clients whose rate-limit pools /metrics shows (the KuCoin ports only).
        self.rest_clients = {name: client for name, client in
                             (("exchange", rest), ("market", market_rest)) if client is not None}
        self.market = MarketState((), max_age=config.max_age)
        self.rules = RuleSet(rules, self.market)
        self.orders = OrderManager(ctx, on_retry=self._retried, on_refused=self._refused,
                                   on_final=self._final, on_acknowledged=self._acknowledged)
        self.held_orders = HeldOrders(ctx, self.market, self.orders)
        self.orders.on_filled = self.held_orders.on_filled
        self.actions = Actions(ctx, self.orders, self.held_orders)
        self.feeds = Feeds(ctx, self.market, list(book_symbols), self._on_changed, on_market)
        self.held_orders.slippage = partial(exit_slippage, self.feeds.books,
                                            config.risk.limits().max_slippage)
        self.firing = Firing(ctx, self.rules, self.feeds, self.orders, self.held_orders,
                             self.actions)
        self.oco = OcoBrackets(ctx, self.rules, self.orders)  # brackets `on exchange`
        self.oco.firing = self.firing
        self.firing.oco = self.orders.oco = self.oco
        self.orders.on_fill = self.firing.on_fill  # position, pnl (runtime/_chains.py)
        self.sources = dict(sources or {})
        self.controls = Controls(ctx, self.rules, self.orders, self.held_orders, self.firing,
                                 self.actions, self.feeds, self.sources, reloader,
                                 self._load_candles)
        self.recovery = Recovery(ctx, self.rules, self.orders, self.held_orders, self.firing,
                                 self._start_read)
        self.recovery.oco = self.oco
        self.jobs = Jobs(ctx, self)
        self._patience = Patience(config.start_patience_s, ctx.emit)
        self.scheduled = scheduled
        self.private: Any = None  # the private stream, once started
        self._why_saved: tuple[datetime, list[dict[str, Any]]] | None = None

    # ------------------------------------------------------------ views (status, tests)

    @property
    def states(self) -> dict[str, Any]:
        return self.rules.states

    @property
    def pending(self) -> dict[str, Tracked]:
        return self.orders.pending

    @property
    def tracked(self) -> dict[str, Tracked]:
        return self.orders.tracked

    @property
    def held(self) -> dict[str, Any]:
        return self.held_orders.held

    @property
    def legs(self) -> dict[str, Any]:
        return self.held_orders.legs

    @property
    def books(self) -> dict[str, Any]:
        return self.feeds.books

    @property
    def fired(self) -> int:
        return self.firing.fired

    @property
    def failed(self) -> bool:
        return self.ctx.failed

    @property
    def stop_reason(self) -> str:
        return self.ctx.stop_reason

    @property
    def store(self) -> Store:
        return self.ctx.store

    @property
    def _ready(self) -> asyncio.Event:
        return self.ctx.ready

    @property
    def _jobs_running(self) -> set[asyncio.Task[Any]]:
        return self.jobs.running

    # ------------------------------------------------------------ start and stop

    async def start(self) -> None:
        """Own the store (unless a standby already took its lease over for this watcher),
        check the venue, load rules and states, recover, then subscribe."""
        ctx = self.ctx
        before, self.epoch = await own_store(ctx, self.owner, self._patience)
        now = ctx.now()
        self.orders.fenced()
        if before is not None and before.alive and before.owner != self.owner:
            ctx.event("lease.taken_over", {
                "from": before.owner, "epoch": self.epoch,
                "their_heartbeat": before.heartbeat.isoformat(timespec="milliseconds")})
        ctx.engine_id = ctx.store.engine_id()
        ctx.prefix = engine_prefix(ctx.engine_id)
        # A start can take long (an exchange down, many orders to look up): the lease's
        # heartbeat goes on meanwhile, so no other watcher takes the store over.
        lease = asyncio.create_task(self.jobs.keep_lease(), name="start-heartbeat")
        try:
            await self._check_venue()
            ctx.venue.family = await self._family()
            self.rules.load(ctx.store, self.sources, now)
            self.oco.announce(self.rules.rules.values())
            self.firing.chains.ensure(ctx.store, self.rules.rules)  # position, pnl: from fills
            signals = reload_signals(ctx.store, self.rules, self.market, now)
            await self.recovery.recover()
            self.firing.slices.recover(now)  # sliced orders not ended: go on with them
            held = ctx.store.halt()
            if held is not None:  # the kill switch holds across restarts
                self.controls.halt_now(held)
            await self._load_balances()
            await self._load_candles()
        finally:
            lease.cancel()
            await asyncio.gather(lease, return_exceptions=True)
        lost = None if lease.cancelled() else lease.exception()
        if lost is not None:  # taken over, or the store failed: the jobs would stop it too
            ctx.fail_on(lost)  # its `error` line names the cause (lease, storage) as a field
            raise WatcherError(f"the store's lease was lost during the start: {lost}")
        for identity in self.rules.timed_ids:
            self.rules.schedule(identity, now)
            due = next_due(self.rules.rules[identity], self.rules.states[identity], now)
            if due is not None and due < now:  # it fell due while no watcher ran
                ctx.event("timer.late", {"timer": "rule", "due": due.isoformat(),
                                         "late_s": round((now - due).total_seconds(), 3)},
                          identity=identity)
        self.feeds.start()
        private = ctx.venue.private_stream(self._on_private, self.orders.on_bad,
                                           self._on_private_state)
        self.private = private
        ctx.spawn(private.run(ctx.stop))
        if self.scheduled:
            self.jobs.start()
        # What is loaded now lives as long as the watcher: keep the collector off it.
        gc.collect()
        gc.freeze()
        ctx.ready.set()
        # Signals accepted before this start, still in their windows: stepped as on arrival.
        self.firing.apply(signals, now)

    async def _start_read(self, what: str, read: Callable[[], Awaitable[Any]]) -> Any:
        """A read the start needs. An exchange that is down, overloaded or rate-limiting is
        asked again with the start's `Patience`. Any other answer, or the last one once
        patience runs out, is returned."""
        attempt = 0
        while True:
            result = await read()
            outcome: Outcome = getattr(result, "outcome", result)
            if outcome.action not in TRANSIENT:
                return result
            if not await self._patience.retry(f"{what}: {outcome.message}", attempt):
                if result is outcome:
                    return outcome._replace(message=self._patience.gave_up(outcome.message))
                return result
            attempt += 1

    async def _check_venue(self) -> None:
        venue = self.ctx.venue
        status = await self._start_read("the exchange's status", venue.status)
        if status.action is not Action.OK:
            raise WatcherError(
                f"cannot reach the exchange at {venue.base_url}: {status.message}")
        key = await self._start_read("the API key's details", venue.api_key)
        if key.action in TRANSIENT:
            raise WatcherError(f"cannot read the API key's details at {venue.base_url}: "
                               f"{key.message}")
        if key.action is not Action.OK or not isinstance(key.data, dict):
            raise WatcherError(
                f"the exchange refused the API key ({key.message or key.action.value}): check "
                "RULES_ENGINE_API_KEY, RULES_ENGINE_API_SECRET and RULES_ENGINE_API_PASSPHRASE"
            )
        message = str((status.data or {}).get("msg", "")) if isinstance(status.data, dict) else ""
        uid = str(key.data.get("uid", ""))
        name = f"kucoin uid {uid}"
        if message.startswith("sandbox "):
            name = f"sandbox {message.split(' ', 1)[1]} uid {uid}"
        try:
            self.ctx.store.check_venue(name)
        except Exception as err:  # VenueMismatch: a clear message, never a reconciliation
            raise WatcherError(str(err)) from None

    async def _family(self) -> str:
        if self.ctx.config.order_family != "auto":
            return self.ctx.config.order_family
        outcome = await self._start_read("the account's order family",
                                         self.ctx.venue.family_reply)
        family = KucoinVenue.family_of(outcome)
        if family is None:
            raise WatcherError(f"cannot tell the account's order family (hf or legacy) at "
                               f"{self.ctx.venue.base_url}: {outcome.message}; or set "
                               "order_family")
        return family

    async def _load_balances(self) -> None:
        outcome, balances = await self._start_read("the account's balances",
                                                   self.ctx.venue.balances)
        if outcome.action is not Action.OK or (not balances and outcome.data is None):
            self.ctx.event("balances.error", {"error": outcome.message})
        for balance in balances:  # the account events fill them in as they change
            self.ctx.balances[balance.currency] = balance.available

    async def _load_candles(self) -> None:
        await self.feeds.load_candles(self._start_read)

    async def run(self, stop: asyncio.Event) -> None:
        """Start, then run until `stop` or a fail-stop. A `stop` during the start (its
        `--duration` over, SIGINT, SIGTERM while it waits for an exchange that is down)
        cancels the start where it waits, and the watcher closes as after any stop (every
        step of a start is one transaction, so the next start recovers as after a crash)."""
        starting = asyncio.ensure_future(self.start())
        asked = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({starting, asked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            asked.cancel()
            if not starting.done():
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
                self.ctx.stop_reason = "asked to stop before the start completed"
                await self.close()
        if starting.cancelled():
            return
        starting.result()  # the start's error (WatcherError), if it failed
        waiter = asyncio.ensure_future(stop.wait())
        inner = asyncio.ensure_future(self.ctx.stop.wait())
        try:
            await asyncio.wait({waiter, inner}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            inner.cancel()
            await self.close()

    async def close(self) -> None:
        ctx = self.ctx
        ctx.stop.set()
        await self.jobs.stop()
        await self.actions.close()
        if ctx.stop_cause != "lease":  # a watcher that may have lost it leaves it alone
            try:
                ctx.store.release_lease()
            except Exception as err:  # the store failed: the reason is already recorded
                if not ctx.failed:
                    ctx.fail_on(err)
        ctx.record("watcher.stopped", {"reason": ctx.stop_reason or "asked to stop",
                                       **({"cause": ctx.stop_cause} if ctx.stop_cause else {})})

    async def ready(self) -> None:
        await self.ctx.ready.wait()

    # ------------------------------------------------------------ wiring

    def _on_changed(self, symbol: str, changes: list[Any], now: datetime) -> None:
        self.firing.apply(changes, now)
        if symbol:
            self.held_orders.on_price(symbol, now)

    def _on_private_state(self, state: str, reason: str) -> None:
        self.jobs.on_private_state(state, reason)
        self.firing.sync_balances(self.jobs.private_live)

    def _on_private(self, event: object) -> None:
        self.orders.on_private(event)
        if isinstance(event, BalanceEvent):  # `balance(CUR)` values (runtime/_chains.py)
            self.firing.sync_balances(self.jobs.private_live)

    # ------------------------------------------------------------ the rule side's hooks
    # Each returns what it writes in the order's own commit (`Step`), and what it does
    # after that commit (`then`): the order table has decided, these only follow.

    def _acknowledged(self, tracked: Tracked, now: datetime) -> None:
        if tracked.identity is not None:
            self.rules.schedule(tracked.identity, now)

    def _refused(self, tracked: Tracked, command: BlockRule, now: datetime) -> Step:
        """The exchange refused the order for good: its rule is blocked with the reason. A
        slice's refusal blocks the rule it belongs to and stops its plan: the slices not sent
        yet are never sent (named in the plan's `slices.ended`, in the same commit)."""
        group, reason = tracked.identity, command.reason
        identity = rule_of(group) if group is not None else None
        if identity is None or identity not in self.rules.states:
            return Step()
        self.rules.block(identity, reason)
        ended = None
        if group != identity and group is not None:
            ended = self.firing.slices.stop(group, (
                f"slice {tracked.number} was refused by the exchange ({reason}): the "
                "slices not sent yet are not sent"))

        def then() -> None:
            self.rules.schedule(identity, now)
            self.ctx.emit("refused", {"rule": group, "client_oid": tracked.oid,
                                      "reason": reason})
            if ended is not None:
                self.ctx.emit("slices.ended", ended[2])

        return Step((self.rules.row(identity),), (ended,) if ended is not None else (), then)

    def _retried(self, tracked: Tracked, command: RetryFiring, now: datetime) -> Step:
        """Proven not on the exchange: the rule decides the same firing again (same
        clientOid) once its condition holds on fresh data."""
        identity, number = tracked.identity, tracked.number
        rules = self.rules
        if self.firing.slices.retry(tracked):  # a slice: sent again by its plan
            return Step()
        state = rules.states.get(identity or "")
        if self.oco.is_replacement(tracked):  # an OCO's replacement: placed again, afresh
            return self.oco.retry(tracked, now)
        if identity is None or number is None or state is None or tracked.leg is not None:
            return Step()
        if state.firings != number or state.status not in ("done", "cooling", "armed",
                                                            "waiting"):
            return Step(then=lambda: rules.schedule(identity, now))
        rules.states[identity] = retry_firing(state, number, tracked.arm)  # `retrying`, saved

        def then() -> None:
            rules.schedule(identity, now)
            rule = rules.rules.get(identity)
            if rule is not None and self.ctx.ready.is_set():
                # Decided again on the values as they are now: no market move needs to
                # select it.
                self.firing.evaluate([rule], now)

        return Step((rules.row(identity),), (), then)

    def _final(self, tracked: Tracked, command: ArmChildren | None, now: datetime) -> Step:
        """The order ended (filled, canceled, vanished, refused, not placed): the `after`
        rules it arms, in its own commit; then what holds on to it (a bracket) lets go."""
        arms: Arms = []
        if tracked.family == "oco" and self.oco.continues(tracked):
            command = None  # a resize: its replacement carries the bracket on
        if command is not None and tracked.identity is not None and tracked.number is not None:
            row = self.ctx.store.order(tracked.oid)  # the fills as stored, once per trade
            fill = None
            if row is not None and row.filled_size > 0:
                fill = Fill(row.filled_value / row.filled_size, row.filled_size)
            for event in command.events:
                arms += [a for a in self.rules.arms(tracked.identity, event, tracked.number, fill)
                         if not self.oco.skip_arm(a[0], tracked.number)]

        def then() -> None:
            self.held_orders.on_end(tracked, now)
            self.oco.on_end(tracked, now)
            for child, _, detail in arms:
                self.ctx.emit("rule.armed", {"rule": child.identity, **detail})
            if arms:
                self.firing.evaluate(self.rules.armed(arms, now), now)

        return Step(tuple(self.rules.row_of(c.identity, st) for c, st, _ in arms),
                    tuple(("rule.armed", c.identity, e) for c, _, e in arms), then)

    def on_signal(self, name: str, at: datetime) -> None:
        """An inbound signal the dashboard accepted (and recorded): the `Signal(name)` leaf
        takes its arrival time and the rules that read it are stepped, as for any market
        change; the windows of those rules set when it lapses for them (`MarketState.lapsed`).
        Runs on the watcher's loop."""
        if self.ctx.failed:
            return
        windows = signal_windows(self.rules, name).get(name, [])
        self.firing.apply(self.market.signal(name, at, windows), at)

    async def apply_reload(self, result: Reloaded) -> None:
        await self.controls.apply_reload(result)

    def snapshot(self) -> dict[str, Any]:
        """What the live view and the dashboard show: each rule's state (named as `status`
        names it), the open orders (side, type, price, size and filled, from the store),
        feed health (lag, rate-limit budget left, the lease)."""
        now = self.ctx.now()
        rules = []
        for identity in self.rules.rules:
            state = self.rules.states.get(identity)
            status = state.status if state else "loading"
            if identity in self.orders.pending:
                status = "frozen" if self.orders.pending[identity].unknown else "sending"
            elif identity in self.firing.deferred:
                status = "deferred"
            rules.append({"rule": identity, "status": status,
                          "firings": state.firings if state else 0,
                          "reason": self.rules.reasons.get(identity, "")})
        return {
            "feed": "live" if self.market.live else "stale",
            "orders_feed": "live" if self.jobs.private_live else "down (polling)",
            "books": {s: b.state.value for s, b in self.feeds.books.items()},
            "lag_s": dict(self.feeds.lag_s),
            "quiet_s": {s: round((now - at).total_seconds(), 3)
                        for s, at in self.feeds.last_event.items()},
            "rate_limits": self._rate_limits(),
            "lease": {"epoch": getattr(self, "epoch", None),
                      "held": self.ctx.ready.is_set() and not self.ctx.stop.is_set()},
            "rules": rules,
            "open_orders": self._open_orders(),
            "thresholds": self.rules.index.price_levels(),
            "not_yet": self.not_yet(),
            "balances": {c: str(v) for c, v in sorted(self.ctx.balances.items())},
            "trading": self.ctx.trading and self.ctx.halted is None,
            "halted": self.ctx.halted,
            "stop_reason": self.ctx.stop_reason,
        }

    def not_yet(self) -> list[dict[str, Any]]:
        """Why each rule that can still fire has not yet, on the live values (`_why.py`)."""
        return not_yet(self.rules.rules, self.rules.states, self.market,
                       reasons=self.rules.reasons, series=self.feeds.series,
                       now=self.ctx.now(), view=lambda rule, state: self.firing.chains.view_for(
                           rule, state, self.market.values))

    def save_why(self) -> None:
        """The why-not-yet rows into the store, for `rules-engine status` (only when they
        changed, or every 30 s so that their time says they are current)."""
        rows = self.not_yet()
        now = self.ctx.now()
        last = self._why_saved
        if last is not None and last[1] == rows and (now - last[0]).total_seconds() < 30:
            return
        save_live_why(self.ctx.store, rows, now)
        self._why_saved = (now, rows)

    def _rate_limits(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per REST client and KuCoin pool: the limit and what is left, as the last reply's
        `gw-ratelimit-*` headers said (what is left is the limit again once it reset)."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for name, client in self.rest_clients.items():
            pools = getattr(getattr(client, "pools", None), "pools", None) or {}
            clock = client.pools.clock
            for pool, state in pools.items():
                if state.limit is None or state.remaining is None:
                    continue
                left = state.resets_at - clock()
                out.setdefault(name, {})[pool] = {
                    "limit": state.limit,
                    "remaining": state.remaining if left > 0 else state.limit,
                    "resets_in_s": round(max(left, 0.0), 3)}
        return out

    def _open_orders(self) -> list[dict[str, Any]]:
        """The tracked orders, with what the store holds of each (one query)."""
        tracked = self.orders.tracked
        rows: dict[str, Any] = {}
        if tracked:
            with contextlib.suppress(Exception):  # a failing store: the tracked fields
                rows = {o.client_oid: o for o in self.ctx.store.orders(open_only=True)}
        out = []
        for t in tracked.values():
            row = rows.get(t.oid)
            size = t.size if row is None or row.size is None else row.size
            out.append({
                "client_oid": t.oid, "symbol": t.symbol, "rule": t.identity, "side": t.side,
                "slice": t.number if SLICES in (t.identity or "") else None,
                "type": None if row is None else row.order_type,
                "price": None if row is None or row.price is None else _plain(row.price),
                "size": None if size is None else _plain(size),
                "funds": None if row is None or row.funds is None else _plain(row.funds),
                "filled": None if row is None else _plain(row.filled_size),
                "status": t.status,
                "cancelling": bool(t.record.cancel)})
        return out


def _plain(amount: Decimal) -> str:
    return format(amount.normalize(), "f") if amount else "0"
