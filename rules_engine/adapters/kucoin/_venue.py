"""The ports on KuCoin: `KucoinVenue` (orders, stop orders, fills, balances, the private
stream) and `KucoinFeed` (the public stream, book snapshots, level1, candles).

Everything KuCoin-specific the watcher needs lives behind these two: endpoints, families,
topic names, payload parsing. The runtime sees core values (`OrderState`, `Ticker`,
`Candle`, ...) and `Outcome`s, never a KuCoin field name.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from rules_engine.adapters.kucoin._book import Delta
from rules_engine.adapters.kucoin._market import KucoinMarket
from rules_engine.adapters.kucoin._oco import KucoinOco, OcoSeen
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
from rules_engine.core.market import Balance, Candle, Fill, OrderState
from rules_engine.core.outcome import Action, Outcome

__all__ = ["Balances", "KucoinFeed", "KucoinVenue", "Page", "Seen", "Snapshot"]

PRIVATE_TOPICS = ("/spotMarket/tradeOrdersV2", "/spotMarket/advancedOrders", "/account/balance")


class Seen(NamedTuple):
    """A lookup by clientOid: `found` (with the order's state when it is an order, or the
    stop order's id while it waits for its trigger), `absent`, or `failed` (proves nothing)."""

    kind: str
    state: OrderState | None = None
    stop_id: str | None = None
    message: str = ""


class Page(NamedTuple):
    """One page of orders: the orders, and the cursor to the next (None: no more), or the
    reason it could not be read (`error`)."""

    orders: list[OrderState]
    more: str | None
    error: str | None
    outcome: Outcome


class Balances(NamedTuple):
    outcome: Outcome
    balances: list[Balance]


class Snapshot(NamedTuple):
    sequence: int
    bids: list[list[str]]
    asks: list[list[str]]


class KucoinVenue:
    """The Venue port: orders in the account's family (`hf` or `legacy`), KuCoin stop
    orders (family `stop`), fills, balances and the private stream."""

    def __init__(self, rest: KucoinRest, family: str = "hf") -> None:
        self.rest = rest
        self._orders = KucoinOrders(rest, family)
        self._calls = KucoinMarket(rest)
        self.oco = KucoinOco(rest)

    @property
    def base_url(self) -> str:
        return self.rest.base_url

    @property
    def family(self) -> str:
        return self._orders.family

    @family.setter
    def family(self, value: str) -> None:
        self._orders.family = value

    def server_ms(self) -> int:
        return self.rest.server_ms()

    def server_now(self) -> datetime:
        return datetime.fromtimestamp(self.rest.server_ms() / 1000, UTC)

    async def sync_time(self) -> Outcome:
        return await self.rest.sync_time()

    # ------------------------------------------------------------ the start's checks

    async def status(self) -> Outcome:
        return await self.rest.call("GET", "/api/v1/status")

    async def api_key(self) -> Outcome:
        return await self.rest.call("GET", "/api/v1/user/api-key", signed=True)

    async def family_reply(self) -> Outcome:
        return await self.rest.call("GET", KucoinOrders.FAMILY_PATH, signed=True)

    @staticmethod
    def family_of(outcome: Outcome) -> str | None:
        return KucoinOrders.family_of(outcome)

    async def balances(self) -> Balances:
        """The trade account's balances; an error reply or a bad payload gives no balances
        and the outcome says why (`PayloadError` text in its message)."""
        outcome = await self._calls.accounts()
        if outcome.action is not Action.OK:
            return Balances(outcome, [])
        try:
            return Balances(outcome, parse_accounts(outcome.data))
        except PayloadError as err:
            return Balances(outcome._replace(action=Action.RETRY, message=str(err)), [])

    # ------------------------------------------------------------ orders

    async def place(self, body: dict[str, Any], family: str) -> Outcome:
        if family == "stop":
            return await self._calls.place_stop(body)
        if family == "oco":
            return await self.oco.place(body)
        return await self._orders.place(body)

    async def cancel(self, oid: str, symbol: str, family: str,
                     exchange_id: str | None) -> Outcome:
        """Cancel by clientOid (a stop order by its id: KuCoin's stop cancel takes the id;
        one whose id is unknown yet answers ABSENT: look it up first). A stop-limit that has
        triggered rests as an ordinary order with the same clientOid: when the stop-order
        endpoint does not cancel it, it is cancelled there (the first answer stands if that
        fails too). An OCO is cancelled by its id when known, else by its clientOid."""
        if family == "oco":
            return await self.cancel_oco(exchange_id, oid)
        if family == "stop":
            if exchange_id is None:
                return Outcome(Action.ABSENT, None, "the stop order's id is not known yet", None)
            stop = await self._calls.cancel_stop(exchange_id)
            if stop.action not in (Action.ABSENT, Action.REJECT):
                return stop
            triggered = await self._orders.cancel_by_client_oid(oid, symbol)
            return triggered if triggered.action is Action.OK else stop
        return await self._orders.cancel_by_client_oid(oid, symbol)

    async def look_up(self, oid: str, symbol: str, family: str) -> Seen:
        """An order by clientOid. A stop order that has triggered is an ordinary order with
        the same clientOid; one waiting for its trigger is only on the stop-order endpoint."""
        outcome = await self._orders.by_client_oid(oid, symbol)
        if outcome.action is Action.OK and isinstance(outcome.data, dict) and outcome.data:
            try:
                return Seen("found", parse_order(outcome.data))
            except PayloadError as err:
                return Seen("failed", message=f"a malformed order: {err}")
        if outcome.action not in (Action.OK, Action.ABSENT):
            return Seen("failed", message=outcome.message)
        if family != "stop":
            return Seen("absent", message=outcome.message)
        stop = await self._calls.stop_by_client_oid(oid, symbol)
        if stop.action is Action.ABSENT:
            return Seen("absent", message=stop.message)
        if stop.action is not Action.OK:
            return Seen("failed", message=stop.message)
        items = stop.data if isinstance(stop.data, list) else [stop.data] if stop.data else []
        if items and isinstance(items[0], dict):
            return Seen("found", stop_id=str(items[0].get("id") or "") or None)
        return Seen("absent")

    # ------------------------------------------------------------ OCO orders

    async def place_oco(self, body: dict[str, Any]) -> Outcome:
        """`POST /api/v3/oco/order` (body from `oco_body`): `{"orderId": ...}` when accepted."""
        return await self.oco.place(body)

    async def cancel_oco(self, order_id: str | None, client_oid: str) -> Outcome:
        """Cancel both legs of an OCO, by its id when known, else by its clientOid."""
        if order_id is not None:
            return await self.oco.cancel_by_id(order_id)
        return await self.oco.cancel_by_client_oid(client_oid)

    async def look_up_oco(self, client_oid: str, symbol: str) -> OcoSeen:
        """An OCO by clientOid: its status, both legs, and the fills of the legs that traded."""
        return await self.oco.look_up(client_oid, symbol)

    async def open_page(self, symbol: str, page: int, size: int = 100) -> Page:
        """One page of the active orders of `symbol` (`more`: the next page's number)."""
        outcome = await self._orders.active(symbol, page, size)
        if outcome.action is not Action.OK:
            return Page([], None, outcome.message or outcome.action.value, outcome)
        try:
            items = parse_orders_page(outcome.data)
        except PayloadError as err:
            return Page([], None, str(err), outcome)
        total = outcome.data.get("totalNum") if isinstance(outcome.data, dict) else None
        last = len(items) < size or (isinstance(total, int) and page * size >= total)
        return Page(items, None if last else str(page + 1), None, outcome)

    async def done_page(self, symbol: str, cursor: str | None) -> Page:
        """One page of the most recent done orders of `symbol`, newest first (HF only: the
        legacy family answers an empty page)."""
        if self.family != "hf":
            return Page([], None, None, Outcome(Action.OK, None, "", None))
        params = [("symbol", symbol), ("limit", "100")]
        if cursor is not None:
            params.append(("lastId", cursor))
        outcome = await self.rest.call("GET", "/api/v1/hf/orders/done", params=params,
                                       signed=True)
        if outcome.action is not Action.OK or not isinstance(outcome.data, dict):
            return Page([], None, outcome.message or "not a page", outcome)
        try:
            items = parse_orders_page(outcome.data)
        except PayloadError as err:
            return Page([], None, str(err), outcome)
        following = outcome.data.get("lastId")
        done = len(items) < 100 or following in (None, "", 0, cursor)
        return Page(items, None if done else str(following), None, outcome)

    async def fills_of(self, symbol: str, order_id: str) -> list[Fill]:
        """The fills of one order (empty when they cannot be read now: the caller asks
        again at the next lookup)."""
        outcome = await self._calls.fills(symbol, self.family, order_id)
        if outcome.action is not Action.OK:
            return []
        try:
            return [f for f in parse_fills_page(outcome.data) if f.order_id == order_id]
        except PayloadError:
            return []

    def private_stream(self, on_event: Callable[[object], None],
                       on_bad: Callable[[str], None],
                       on_state: Callable[[str, str], None]) -> KucoinWs:
        """The private channel: order changes, stop orders and balances as core events
        (`OrderEvent`, `StopOrderEvent`, `BalanceEvent`); a payload that does not parse goes
        to `on_bad` with the reason."""

        stream = KucoinWs(self.rest, on_message=self.private_handler(on_event, on_bad),
                          on_state=on_state, private=True)
        stream.subscribe(PRIVATE_TOPICS)
        return stream

    @staticmethod
    def private_handler(on_event: Callable[[object], None],
                        on_bad: Callable[[str], None]) -> Callable[[dict[str, Any]], None]:
        """What the private channel does with one decoded frame (a backtest hands frames
        from the in-process sandbox to the same function)."""

        def on_message(frame: dict[str, Any]) -> None:
            try:
                event = parse_ws_message(frame)
            except PayloadError as err:
                on_bad(str(err)[:200])
                return
            on_event(event)

        return on_message


class KucoinFeed:
    """The MarketFeed port: the public stream as core events, and the REST reads that
    seed it (level1, level2 snapshots, candles)."""

    def __init__(self, rest: KucoinRest) -> None:
        self.rest = rest
        self._calls = KucoinMarket(rest)

    async def level1(self, symbol: str) -> object | None:
        """The best bid and ask now, as a `Ticker` (None when it cannot be read)."""
        outcome = await self._calls.level1(symbol)
        if outcome.action is not Action.OK or not isinstance(outcome.data, dict):
            return None
        try:
            return parse_ws_message({"topic": f"/market/ticker:{symbol}", "data": outcome.data})
        except PayloadError:
            return None

    async def snapshot(self, symbol: str, depth: int = 100) -> Snapshot | str:
        """A level2 snapshot, or why there is none."""
        outcome = await self._calls.level2(symbol, depth)
        if outcome.action is not Action.OK:
            return outcome.message or outcome.action.value
        try:
            return Snapshot(*parse_level2(outcome.data))
        except MalformedPayload as err:
            return str(err)

    async def candles_reply(self, symbol: str, kind: str, start: datetime,
                            end: datetime) -> Outcome:
        return await self._calls.candles_reply(symbol, kind, start, end)

    @staticmethod
    def candles_of(symbol: str, kind: str, outcome: Outcome) -> list[Candle] | str:
        """The candles of a reply, or why there are none."""
        if outcome.action is not Action.OK:
            return outcome.message or outcome.action.value
        try:
            return parse_candles_reply(symbol, kind, outcome.data)
        except PayloadError as err:
            return str(err)

    @staticmethod
    def topics(tickers: list[str], books: list[str], stats: list[str],
               candles: list[tuple[str, str]]) -> list[str]:
        """The public topics for tickers, level2 books, 24h stats and candles
        (`(symbol, KuCoin candle type)`)."""
        topics = batched_topics("/market/ticker:", tickers)
        topics += batched_topics("/market/level2:", books)
        topics += [f"/market/snapshot:{s}" for s in stats]
        topics += [f"/market/candles:{s}_{kind}" for s, kind in candles]
        return topics

    def stream(self, on_event: Callable[[str, object], None],
               on_bad: Callable[[str, str], None],
               on_state: Callable[[str, str], None]) -> KucoinWs:
        """The public channel: `on_event(symbol, event)` with a `Delta`, `Ticker`,
        `Stats24h` or `Candle`; a payload that does not parse goes to `on_bad(topic,
        reason)` (its symbol after the topic's colon)."""
        return KucoinWs(self.rest, on_message=self.public_handler(on_event, on_bad),
                        on_state=on_state)

    @staticmethod
    def public_handler(on_event: Callable[[str, object], None],
                       on_bad: Callable[[str, str], None]) -> Callable[[dict[str, Any]], None]:
        """What the public channel does with one decoded frame (see `stream`)."""

        def on_message(frame: dict[str, Any]) -> None:
            try:
                event = parse_ws_message(frame)
            except PayloadError as err:
                on_bad(str(frame.get("topic", ""))[:80], str(err)[:200])
                return
            if isinstance(event, Delta):  # by what parsed, never by `subject`
                data = frame.get("data")
                symbol = str((data.get("symbol") if isinstance(data, dict) else None)
                             or str(frame.get("topic", "")).partition(":")[2])
            else:
                symbol = str(getattr(event, "symbol", ""))
            on_event(symbol, event)

        return on_message

