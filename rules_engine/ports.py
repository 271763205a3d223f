"""The ports: what the runtime needs from the outside world, as protocols.

    Clock       the time the watcher decides with (a test or a backtest steps its own)
    Venue       orders: place, cancel, look up by clientOid, pages of open and recent orders,
                fills, balances, the private stream; OCO orders (place, cancel by id or
                clientOid, look up with both legs and their fills)
    MarketFeed  the public stream as core events, and the REST reads that seed it
    Stream      one WebSocket channel (subscribe, run until stopped, reconnect, check that
                what it delivered is current: `stalled` after the process did not run)

The KuCoin adapter implements Venue and MarketFeed (`rules_engine.adapters.kucoin`:
`KucoinVenue`, `KucoinFeed`); the sandbox is the venue tests run against over real sockets.
The store port is `rules_engine.store.Store` itself: one SQLAlchemy implementation serves
SQLite (a file, or a temporary one in tests) and PostgreSQL.

Nothing in `runtime/` imports a private module of `adapters/`: it sees these protocols, core
values and `Outcome`s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Protocol

from rules_engine.core.market import Balance, Candle, Fill
from rules_engine.core.outcome import Outcome

__all__ = [
    "BalancesLike",
    "Clock",
    "MarketFeed",
    "OcoSeenLike",
    "PageLike",
    "SeenLike",
    "SnapshotLike",
    "Stream",
    "Venue",
]


class Clock(Protocol):
    def __call__(self) -> datetime:
        """Now, timezone-aware UTC."""
        ...


class Stream(Protocol):
    stalled_s: float  # how long the process did not run, at the stream's last `stalled`

    def subscribe(self, topics: Iterable[str]) -> None: ...

    def check(self) -> bool:
        """Whether what the stream delivered is proven current now; when it is not (the
        process did not run for longer than the stream's window), it reports `stalled`
        before anything else is read. Called before a decision on what it delivered."""
        ...

    async def run(self, stop: asyncio.Event) -> None: ...

    async def reconnect(self) -> None: ...


class SeenLike(Protocol):
    @property
    def kind(self) -> str: ...  # found | absent | failed

    @property
    def state(self) -> Any: ...  # OrderState | None

    @property
    def stop_id(self) -> str | None: ...

    @property
    def message(self) -> str: ...


class OcoSeenLike(Protocol):
    """An OCO looked up by clientOid (`rules_engine.adapters.kucoin.OcoSeen`)."""

    @property
    def kind(self) -> str: ...  # found | absent | failed

    @property
    def order(self) -> Any: ...  # OcoOrder | None: status, active, legs

    @property
    def fills(self) -> tuple[Fill, ...]: ...  # of both legs

    @property
    def message(self) -> str: ...

    @property
    def filled(self) -> tuple[Any, Any]: ...  # (size, value) the legs traded


class BalancesLike(Protocol):
    @property
    def outcome(self) -> Outcome: ...

    @property
    def balances(self) -> list[Balance]: ...


class PageLike(Protocol):
    @property
    def orders(self) -> list[Any]: ...  # list[OrderState]

    @property
    def more(self) -> str | None: ...

    @property
    def error(self) -> str | None: ...


class SnapshotLike(Protocol):
    @property
    def sequence(self) -> int: ...

    @property
    def bids(self) -> list[list[str]]: ...

    @property
    def asks(self) -> list[list[str]]: ...


class Venue(Protocol):
    @property
    def base_url(self) -> str: ...

    family: str  # hf | legacy: the account's order family, known after the start's check

    def server_ms(self) -> int: ...

    def server_now(self) -> datetime: ...

    async def sync_time(self) -> Outcome: ...

    async def status(self) -> Outcome: ...

    async def api_key(self) -> Outcome: ...

    async def family_reply(self) -> Outcome: ...

    async def balances(self) -> BalancesLike: ...

    async def place(self, body: dict[str, Any], family: str) -> Outcome: ...

    async def cancel(self, oid: str, symbol: str, family: str,
                     exchange_id: str | None) -> Outcome: ...

    async def look_up(self, oid: str, symbol: str, family: str) -> SeenLike: ...

    async def open_page(self, symbol: str, page: int, size: int = 100) -> PageLike: ...

    async def done_page(self, symbol: str, cursor: str | None) -> PageLike: ...

    async def fills_of(self, symbol: str, order_id: str) -> list[Fill]: ...

    async def place_oco(self, body: dict[str, Any]) -> Outcome: ...

    async def cancel_oco(self, order_id: str | None, client_oid: str) -> Outcome: ...

    async def look_up_oco(self, client_oid: str, symbol: str) -> OcoSeenLike: ...

    def private_stream(self, on_event: Callable[[object], None],
                       on_bad: Callable[[str], None],
                       on_state: Callable[[str, str], None]) -> Stream: ...


class MarketFeed(Protocol):
    async def level1(self, symbol: str) -> object | None: ...

    async def snapshot(self, symbol: str, depth: int = 100) -> SnapshotLike | str: ...

    async def candles_reply(self, symbol: str, kind: str, start: datetime,
                            end: datetime) -> Outcome: ...

    def candles_of(self, symbol: str, kind: str, outcome: Outcome) -> list[Candle] | str: ...

    def topics(self, tickers: list[str], books: list[str], stats: list[str],
               candles: list[tuple[str, str]]) -> list[str]: ...

    def stream(self, on_event: Callable[[str, object], None],
               on_bad: Callable[[str, str], None],
               on_state: Callable[[str, str], None]) -> Stream: ...
