"""The sandbox in the same process: the KuCoin adapter's own Venue and MarketFeed over an
in-process transport, no HTTP and no sockets.

    KucoinRest --request--> InProcessSession --route table--> sandbox handlers -> Engine
    Engine events -> sandbox Hub (the WebSocket frames it would push) -> Capture (bytes)
                  -> the adapter's own frame handlers -> the watcher

`InProcessSession` stands where aiohttp's session stands (the transport is injectable): a
request is routed to the sandbox's route table exactly as its server routes it, and the
reply's bytes are classified by the adapter as any reply. Authentication and rate limits are
not simulated (the backtest owns its venue; time is virtual). `LocalVenue` and `LocalFeed`
are `KucoinVenue` and `KucoinFeed` with the two streams replaced by the captured frames, and
(the feed) candle history read from the candle cache instead of the exchange.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import orjson

from rules_engine.adapters.kucoin import KucoinFeed, KucoinRest, KucoinVenue
from rules_engine.core.market import Candle
from rules_engine.core.outcome import Action, Outcome
from rules_engine.sandbox.errors import ApiFailureError
from rules_engine.sandbox.rest import Ctx, all_routes, ok_body
from rules_engine.sandbox.server import parse_body
from rules_engine.sandbox.state import SandboxState
from rules_engine.sandbox.ws import Conn, Hub

__all__ = ["Capture", "InProcessSession", "LocalFeed", "LocalStream", "LocalVenue"]


class _Reply:
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.headers: dict[str, str] = {}
        self._body = body

    async def read(self) -> bytes:
        return self._body

    async def __aenter__(self) -> _Reply:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


@dataclass
class _Request:
    """What the handlers read of a request: its headers and host."""

    headers: dict[str, str]
    host: str = "backtest.invalid"


class InProcessSession:
    """An aiohttp-session look-alike whose `request` calls the sandbox's handlers directly."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self._routes = [(r.method, re.compile(
            "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", r.path) + "$"), r) for r in all_routes()]
        self.calls = 0

    def request(self, method: str, url: str, *, data: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: object = None) -> _Pending:
        """The reply is computed when the context is entered, as aiohttp sends then."""
        return _Pending(self, method, url, data, dict(headers or {}))

    async def close(self) -> None:
        return None


class _Pending:
    """`session.request(...)` as an async context manager computing the reply on entry."""

    def __init__(self, session: InProcessSession, method: str, url: str, data: bytes | None,
                 headers: dict[str, str]) -> None:
        self.session, self.method, self.url, self.data, self.headers = (
            session, method, url, data, headers)

    async def __aenter__(self) -> _Reply:
        return await _serve(self.session, self.method, self.url, self.data, self.headers)

    async def __aexit__(self, *exc: object) -> None:
        return None


async def _serve(session: InProcessSession, method: str, url: str, data: bytes | None,
                 headers: dict[str, str]) -> _Reply:
    session.calls += 1
    state = session.state
    parts = urlsplit(url)
    for route_method, pattern, route in session._routes:
        if route_method != method:
            continue
        found = pattern.match(parts.path)
        if found is None:
            continue
        body: dict[str, Any] = {}
        if data:
            parsed = parse_body(data)
            if isinstance(parsed, str):
                return _Reply(400, orjson.dumps({"code": "400100", "msg": parsed}))
            body = parsed
        ctx = Ctx(state, cast(Any, _Request(headers)), dict(parse_qsl(parts.query)), body,
                  state.config.first_key(), found.groupdict())
        try:
            result = await route.handler(ctx)
        except ApiFailureError as failure:
            return _Reply(failure.error.status, orjson.dumps(failure.error.body()))
        return _Reply(200, orjson.dumps(ok_body(result)))
    return _Reply(404, orjson.dumps({"code": "404000", "msg": f"no route {method} {url}"}))


@dataclass
class Capture(Conn):
    """A sandbox WebSocket connection that keeps the frames it is pushed, as bytes."""

    sink: list[bytes] = field(default_factory=list)

    def push(self, payload: dict[str, Any]) -> None:
        self.sink.append(orjson.dumps(payload))


def capture(state: SandboxState) -> Capture:
    """A capturing connection registered with a Hub listening to `state`'s events."""
    conn = Capture(cast(Any, None), "backtest")
    hub = Hub(state)
    hub.conns.append(conn)
    state.listeners.append(hub.on_events)
    return conn


def expand(topics: Iterable[str]) -> Iterator[str]:
    """`/market/ticker:A,B` -> `/market/ticker:A`, `/market/ticker:B`."""
    for topic in topics:
        head, _, symbols = topic.partition(":")
        if not symbols:
            yield topic
            continue
        for symbol in symbols.split(","):
            yield f"{head}:{symbol}"


class LocalStream:
    """A stream whose frames the driver delivers: `run` only says it is live."""

    stalled_s = 0.0

    def __init__(self, conn: Capture, on_state: Callable[[str, str], None]) -> None:
        self.conn = conn
        self.on_state = on_state
        self.candles: set[tuple[str, str]] = set()  # (symbol, KuCoin type) subscribed

    def subscribe(self, topics: Iterable[str]) -> None:
        for topic in expand(topics):
            if topic.startswith("/market/candles:"):
                symbol, _, kind = topic.partition(":")[2].rpartition("_")
                self.candles.add((symbol, kind))
            else:
                self.conn.topics.add(topic)

    async def run(self, stop: Any) -> None:
        self.on_state("live", "")

    async def reconnect(self) -> None:
        self.on_state("live", "")

    def check(self) -> bool:
        return True  # the driver's frames are as current as its virtual clock


class LocalVenue(KucoinVenue):
    """`KucoinVenue` over the in-process transport; its private stream is the captured
    frames, handed to the same handler the WebSocket client uses."""

    def __init__(self, rest: KucoinRest, conn: Capture) -> None:
        super().__init__(rest)
        self.conn = conn
        self.handler: Callable[[dict[str, Any]], None] | None = None

    def private_stream(self, on_event: Callable[[object], None],  # type: ignore[override]
                       on_bad: Callable[[str], None],
                       on_state: Callable[[str, str], None]) -> LocalStream:
        self.handler = self.private_handler(on_event, on_bad)
        stream = LocalStream(self.conn, on_state)
        stream.subscribe(("/spotMarket/tradeOrdersV2", "/spotMarket/advancedOrders",
                          "/account/balance"))
        return stream


class LocalFeed(KucoinFeed):
    """`KucoinFeed` over the in-process transport; the public stream is the captured frames
    (plus the candles the driver builds), candle history comes from `history(symbol, kind,
    start, end)` as KuCoin's reply rows."""

    def __init__(self, rest: KucoinRest, conn: Capture,
                 history: Callable[[str, str, datetime, datetime], list[Candle]]) -> None:
        super().__init__(rest)
        self.conn = conn
        self.history = history
        self.handler: Callable[[dict[str, Any]], None] | None = None
        self.public: LocalStream | None = None

    async def candles_reply(self, symbol: str, kind: str, start: datetime,
                            end: datetime) -> Outcome:
        rows = [[str(int(c.open_time.timestamp())), str(c.open), str(c.close), str(c.high),
                 str(c.low), str(c.volume), str(c.turnover)]
                for c in reversed(self.history(symbol, kind, start, end))]
        return Outcome(Action.OK, "200000", "", 200, rows[:1500])

    def stream(self, on_event: Callable[[str, object], None],  # type: ignore[override]
               on_bad: Callable[[str, str], None],
               on_state: Callable[[str, str], None]) -> LocalStream:
        self.handler = self.public_handler(on_event, on_bad)
        self.public = LocalStream(self.conn, on_state)
        return self.public
