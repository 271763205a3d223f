"""A firing's actions other than its order: `notify` (the event log and the configured
webhooks) and `cancel all` / `cancel orders of` (cancels asked of the order manager, which
retries each until the exchange confirms it).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from rules_engine.compiler import CompiledRule
from rules_engine.compiler import model as M
from rules_engine.runtime._context import Context
from rules_engine.runtime._held import HeldOrders
from rules_engine.runtime._orders import OrderManager, Tracked

__all__ = ["Actions"]


class Actions:
    def __init__(self, ctx: Context, orders: OrderManager, held: HeldOrders) -> None:
        self.ctx = ctx
        self.orders = orders
        self.held = held
        self._session: aiohttp.ClientSession | None = None

    def cancel(self, which: list[Tracked], why: str) -> list[str]:
        """Cancel each order, as the order table says: an engine-held one is dropped at
        once (nothing is on the exchange), the rest asked of the exchange until it shows
        them final. Returns the clientOids asked."""
        return self.orders.ask_cancel(which, why)

    def cancels(self, rule: CompiledRule, now: datetime) -> None:
        """`cancel all` and `cancel orders of`, chosen among what is tracked now (before the
        firing's own order is)."""
        for action in rule.actions:
            if isinstance(action, M.CancelAllAction):
                symbol = action.symbol
                self.cancel([t for t in self.orders.tracked.values() if t.symbol == symbol],
                            f"cancel all of {rule.identity}")
            elif isinstance(action, M.CancelOrdersAction):
                target = action.rule
                self.cancel([t for t in self.orders.tracked.values() if t.identity == target],
                            f"cancel orders of {target}")

    def notify(self, rule: CompiledRule, now: datetime) -> None:
        for action in rule.actions:
            if isinstance(action, M.NotifyAction):
                self.ctx.event("notify", {"text": action.text}, identity=rule.identity)
                for url in self.ctx.config.webhooks:
                    self.ctx.spawn(self._webhook(url, {"rule": rule.identity,
                                                       "text": action.text,
                                                       "at": now.isoformat()}))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _webhook(self, url: str, payload: dict[str, Any]) -> None:
        """POST a notification, with retries; a failing webhook never blocks trading (this
        runs on its own) and is named by its host only (its path may hold a token)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        session = self._session
        host = urlsplit(url).netloc
        error = ""
        attempts = self.ctx.config.webhook_attempts
        for attempt in range(attempts):
            try:
                async with session.post(url, json=payload, timeout=aiohttp.ClientTimeout(
                        total=self.ctx.config.webhook_timeout_s)) as reply:
                    if reply.status < 300:
                        self.ctx.event("notify.sent", {"webhook": host, "attempts": attempt + 1},
                                       identity=payload["rule"])
                        return
                    error = f"HTTP {reply.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as err:
                error = type(err).__name__
            if self.ctx.stop.is_set():
                break
            await _sleep(self.ctx.stop, min(0.2 * 2 ** attempt, 5.0))
        self.ctx.event("notify.failed", {"webhook": host, "error": error,
                                         "attempts": attempts}, identity=payload["rule"])


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)

