"""A firing's actions other than its order: `notify` (its template filled in, to the event
log and to each configured webhook in that service's shape) and `cancel all` /
`cancel orders of` (cancels asked of the order manager, which retries each until the
exchange confirms it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from rules_engine.compiler import CompiledRule
from rules_engine.compiler import model as M
from rules_engine.compiler._templates import parse as parse_template
from rules_engine.compiler._templates import pnl_chain, render
from rules_engine.engine import Fill, OrderIntent
from rules_engine.runtime._config import Webhook
from rules_engine.runtime._context import Context
from rules_engine.runtime._held import HeldOrders
from rules_engine.runtime._orders import OrderManager, Tracked

__all__ = ["Actions", "webhook_payload"]

DISCORD_MAX = 2000  # Discord's `content` limit, in characters
TELEGRAM_MAX = 4096  # Telegram's `sendMessage` text limit


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

    def notify(self, rule: CompiledRule, now: datetime, number: int,  # noqa: PLR0917 - a firing's facts
               order: OrderIntent | None, fill: Fill | None, parent_firing: int | None,
               rules: Mapping[str, CompiledRule]) -> None:
        """Each `notify` of a firing: its template filled in (docs/language.md), as a
        `notify` event and a POST to every webhook."""
        texts = [a.text for a in rule.actions if isinstance(a, M.NotifyAction)]
        if not texts:
            return
        values = self.values(rule, now, number, order, fill, parent_firing, rules)
        for template in texts:
            text = render(parse_template(template)[0], values)
            self.ctx.event("notify", {"text": text}, identity=rule.identity)
            for hook in self.ctx.config.webhooks:
                self.ctx.spawn(self._webhook(hook, rule.identity, webhook_payload(
                    hook, rule.identity, number, text, now)))

    def values(self, rule: CompiledRule, now: datetime, number: int,  # noqa: PLR0917 - a firing's facts
               order: OrderIntent | None, fill: Fill | None, parent_firing: int | None,
               rules: Mapping[str, CompiledRule]) -> dict[str, str]:
        """The placeholders' values for this firing (a placeholder the compiler allowed but
        without a value here, e.g. an order blocked, renders `?`)."""
        out = {"rule": rule.identity, "firing": str(number),
               "time": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
        info = self.ctx.symbols.get(rule.symbol) if rule.symbol else None
        if rule.symbol:
            out["symbol"] = rule.symbol
        if rule.after is not None:
            out["parent"] = rule.after[0]
        if order is not None:
            out |= {"side": order.side, "type": order.order_type}
            oinfo = self.ctx.symbols.get(order.symbol)
            if order.size is not None:
                out["size"] = _num(order.size)
            elif order.funds is not None:
                quote = f" {oinfo.quote_currency}" if oinfo is not None else ""
                out["size"] = _num(order.funds) + quote
            price = order.price if order.price is not None else order.stop_price
            out["price"] = _num(price) if price is not None else "market"
        if fill is not None:
            step = info.price_increment if info is not None else None
            out["fill_price"] = _num(fill.price, step)
            out["filled_size"] = _num(fill.size)
            pnl = self._pnl(rule, fill, parent_firing, rules)
            if pnl is not None:
                out["pnl"] = ("+" if pnl >= 0 else "") + _num(
                    pnl, info.quote_increment if info is not None else None)
        return out

    def _pnl(self, rule: CompiledRule, exit_fill: Fill, exit_firing: int | None,
             rules: Mapping[str, CompiledRule]) -> Decimal | None:
        """ENTRY -> EXIT -> this rule: the exit's fill (this firing's) against the entry's
        fill (recorded in the exit firing's inputs), over the exit's filled size."""
        chain = pnl_chain(rule, rules)
        if not isinstance(chain, tuple) or exit_firing is None:
            return None
        _, exit_rule = chain
        row = self.ctx.store.firing(exit_rule.identity, exit_firing)
        arm = ((row.inputs or {}).get("arm") or {}) if row is not None else {}
        entry = arm.get("fill")
        if not isinstance(entry, list) or len(entry) != 2:
            return None
        entry_price = Decimal(entry[0])
        gain = (exit_fill.price - entry_price) * exit_fill.size
        assert exit_rule.order is not None
        return gain if exit_rule.order.side == "sell" else -gain

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _webhook(self, hook: Webhook, identity: str, payload: dict[str, Any]) -> None:
        """POST a notification, with retries; a failing webhook never blocks trading (this
        runs on its own) and is named by its host only (its path may hold a token: a
        Telegram bot's always does)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        session = self._session
        host = urlsplit(hook.url).netloc
        error = ""
        attempts = self.ctx.config.webhook_attempts
        for attempt in range(attempts):
            try:
                async with session.post(hook.url, json=payload, timeout=aiohttp.ClientTimeout(
                        total=self.ctx.config.webhook_timeout_s)) as reply:
                    if reply.status < 300:
                        self.ctx.event("notify.sent", {"webhook": host, "format": hook.format,
                                                       "attempts": attempt + 1},
                                       identity=identity)
                        return
                    error = f"HTTP {reply.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as err:
                error = type(err).__name__
            if self.ctx.stop.is_set():
                break
            await _sleep(self.ctx.stop, min(0.2 * 2 ** attempt, 5.0))
        self.ctx.event("notify.failed", {"webhook": host, "format": hook.format, "error": error,
                                         "attempts": attempts}, identity=identity)


def webhook_payload(hook: Webhook, identity: str, number: int, text: str,
                    now: datetime) -> dict[str, Any]:
    """The JSON body in the webhook's format. Discord: `content` (cut to its 2000
    characters, mentions disabled so a text with @everyone pings no one); Slack incoming
    webhook: `text`; Telegram Bot API `sendMessage`: `chat_id` and `text` (cut to 4096)."""
    if hook.format == "discord":
        return {"content": _cut(text, DISCORD_MAX), "allowed_mentions": {"parse": []}}
    if hook.format == "slack":
        return {"text": text}
    if hook.format == "telegram":
        return {"chat_id": hook.chat_id, "text": _cut(text, TELEGRAM_MAX)}
    return {"rule": identity, "firing": number, "text": text, "at": now.isoformat()}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _num(value: Decimal, step: Decimal | None = None) -> str:
    """A plain decimal (no exponent, no trailing zeros), to `step` when given."""
    if step is not None and step > 0:
        value = value.quantize(step, rounding=ROUND_HALF_EVEN)
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)

