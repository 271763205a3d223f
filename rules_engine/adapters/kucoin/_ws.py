"""KuCoin's WebSocket feed: bullet token, welcome, ping/pong, acked subscriptions, reconnects.

1. `POST /api/v1/bullet-public` (or the signed `bullet-private`) gives a token, the endpoint,
   and the server's `pingInterval` and `pingTimeout` (ms).
2. Connect to `endpoint?token=...&connectId=...` and wait for `{"type": "welcome"}`.
3. Subscribe to every topic, waiting for each `ack`; symbols are batched into one topic
   (`/market/ticker:A,B,...`) at most `BATCH` at a time, within KuCoin's limits.
4. Send `{"type": "ping"}` every `pingInterval`; a connection whose pong does not come within
   `pingTimeout` is dead. Then (and on any drop) the feed is reported stale, and the client
   reconnects with a fresh token after an exponential backoff with jitter, and subscribes to
   everything again.

Proof of being current. The server answers a ping in order: every frame read after the pong
of a ping sent at `t` was sent by the server after `t`. The connection is proven current as of
`proven`, the send time of the latest ping answered (or the moment the connection was asked
for). Before each frame is handed on, and on every tick of the ping loop, that proof must be
younger than the ping window (`pingInterval + pingTimeout`); on a working loop it always is
(a pong late past `pingTimeout` closes the connection). It is older only when this process did
not run for that long (stopped by SIGSTOP, a paused VM, a blocked loop): the frames buffered
in the socket meanwhile are that old, though they are read "now". Then the channel reports
`stalled` (with how long the loop did not run, `stalled_s`) before handing any of them on,
sends a ping at once, and reports `live` again when its pong arrives: what was read before
that pong is history, what follows it is current. `check()` applies the same test for a
consumer about to decide on what it has read (a timer that fires on resume before any frame).

Messages (`"type": "message"`) go to the `on_message` callback as decoded dicts; state changes
(`live`, `stale` or `stalled` with the reason) go to `on_state`, so consumers always know
whether the data is fresh: after a reconnect or a stall, a book must be resynced from a new
snapshot.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp
import orjson

from rules_engine.adapters.kucoin._errors import Action
from rules_engine.adapters.kucoin._parsing import PayloadError, parse_bullet
from rules_engine.adapters.kucoin._rest import KucoinRest

__all__ = ["BATCH", "KucoinWs", "batched_topics", "is_welcome"]

BATCH = 100  # symbols per subscribe frame
STALL_S = 1.0  # a loop that did not run for this long, when the proof expired: a stall


def batched_topics(prefix: str, symbols: Iterable[str], size: int = BATCH) -> list[str]:
    """`/market/ticker:` + up to `size` comma-separated symbols a topic."""
    ordered = list(dict.fromkeys(symbols))
    return [prefix + ",".join(ordered[i : i + size]) for i in range(0, len(ordered), size)]


def is_welcome(text: str) -> bool:
    """True for the server's first frame, `{"type": "welcome", ...}`."""
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return isinstance(frame, dict) and frame.get("type") == "welcome"


class KucoinWs:
    def __init__(
        self,
        rest: KucoinRest,
        *,
        on_message: Callable[[dict[str, Any]], None],
        on_state: Callable[[str, str], None] | None = None,
        private: bool = False,
        rng: random.Random | None = None,
        max_backoff: float = 30.0,
    ) -> None:
        self.rest = rest
        self.on_message = on_message
        self.on_state = on_state or (lambda state, reason: None)
        self.private = private
        self.topics: list[str] = []
        self.connects = 0
        self._rng = rng or random.Random()
        self._max_backoff = max_backoff
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._acks: dict[str, asyncio.Future[bool]] = {}
        self.last_seen = 0.0  # loop time of the last frame received
        # Proof of being current (see the module's docstring), in loop time.
        self.window = 0.0  # pingInterval + pingTimeout of the connection; 0: not connected
        self.proven = 0.0  # the send time of the latest ping answered
        self.stalled_s = 0.0  # how long the loop did not run, at the last stall
        self._ran = 0.0  # the last moment this channel's code ran (a tick, a frame)
        self._live = False  # reported live, and not stalled since
        self._stalled = False  # stalled on this connection: live again on a fresh pong
        self._pings: dict[str, float] = {}  # pings not answered yet: id -> send time
        self._ping_now = asyncio.Event()

    def subscribe(self, topics: Iterable[str]) -> None:
        """Add topics; they are (re)subscribed on every connection."""
        for topic in topics:
            if topic not in self.topics:
                self.topics.append(topic)

    async def reconnect(self) -> None:
        """Close the current connection (if any): `run` opens a new one at once, with a fresh
        token and every topic subscribed again."""
        if self._ws is not None:
            await self._ws.close()

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.1
        while not stop.is_set():
            try:
                await self._session(stop)
                backoff = 0.1
            except (aiohttp.ClientError, TimeoutError, OSError, ConnectionError) as error:
                self.on_state("stale", f"connection failed: {type(error).__name__}")
            if stop.is_set():
                break
            await asyncio.sleep(backoff * (1 + self._rng.random()))
            backoff = min(backoff * 2, self._max_backoff)

    async def _session(self, stop: asyncio.Event) -> None:
        path = "/api/v1/bullet-private" if self.private else "/api/v1/bullet-public"
        token = await self.rest.call("POST", path, signed=self.private)
        if token.action is not Action.OK or not isinstance(token.data, dict):
            self.on_state("stale", f"no WebSocket token: {token.message or token.action.value}")
            return
        try:
            bullet = parse_bullet(token.data)
        except PayloadError as err:
            self.on_state("stale", f"bad WebSocket token reply: {err}")
            return
        ping_interval, ping_timeout = bullet.ping_interval, bullet.ping_timeout
        url = f"{bullet.endpoint}?token={bullet.token}&connectId={uuid.uuid4().hex}"
        session = self.rest._session
        assert session is not None
        loop = asyncio.get_running_loop()
        # Whatever this connection brings was sent after it was asked for.
        self.proven = self._ran = loop.time()
        self.window = ping_interval + ping_timeout
        self._pings.clear()
        self._live = self._stalled = False
        async with session.ws_connect(url, heartbeat=None, autoping=True) as ws:
            self._ws = ws
            welcome = await ws.receive(timeout=ping_timeout)
            if welcome.type != aiohttp.WSMsgType.TEXT or not is_welcome(welcome.data):
                self.on_state("stale", "no welcome from the server")
                return
            self.connects += 1
            reader = asyncio.create_task(self._read(ws))
            try:
                for topic in list(self.topics):
                    if not await self._subscribe(ws, topic, ping_timeout):
                        self.on_state("stale", f"subscription to {topic} not acknowledged")
                        return
                if self.check():
                    self._live = True
                    self.on_state("live", "")
                await self._ping_loop(ws, stop, ping_interval, ping_timeout, reader)
            finally:
                reader.cancel()
                self._ws = None
                self._live = self._stalled = False
                self.window = 0.0
        if not stop.is_set():
            self.on_state("stale", "connection closed")

    async def _subscribe(
        self, ws: aiohttp.ClientWebSocketResponse, topic: str, timeout: float
    ) -> bool:
        frame_id = uuid.uuid4().hex
        ack: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._acks[frame_id] = ack
        await ws.send_str(
            orjson.dumps(
                {
                    "id": frame_id,
                    "type": "subscribe",
                    "topic": topic,
                    "privateChannel": self.private,
                    "response": True,
                }
            ).decode()
        )
        try:
            return await asyncio.wait_for(ack, timeout)
        except TimeoutError:
            return False
        finally:
            self._acks.pop(frame_id, None)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.last_seen = asyncio.get_running_loop().time()
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            self.last_seen = asyncio.get_running_loop().time()
            self.check()  # before the frame is handed on: it may be as old as a stall
            self.on_text(msg.data)

    def check(self) -> bool:
        """Whether this connection is proven current now: its proof is younger than the ping
        window. When it is not, the first time: if this process did not run for `STALL_S` or
        more just before, report `stalled` and ask for a ping at once (its pong makes the
        channel live again); if it ran, the pong is late: report `stale` (no pong within
        pingTimeout), and the ping loop closes the connection. Cheap; a consumer about to
        decide on what it read calls it first. False while not connected."""
        if not self.window:
            return False
        now = asyncio.get_running_loop().time()
        ran, self._ran = self._ran, now
        if now - self.proven <= self.window:
            return True
        if not self._stalled:
            self._stalled = True
            # The loop ran until a moment ago: the pong is late, the ping loop closes the
            # connection. Otherwise the window passed while this process did not run.
            stalled = now - ran >= STALL_S
            if stalled:
                self.stalled_s = round(now - ran, 3)
                self._ping_now.set()
            if self._live:
                self._live = False
                if not stalled:
                    self.on_state("stale", "no pong within pingTimeout")
                else:
                    self.on_state("stalled", (
                        f"this process did not run for {now - ran:.1f} s (stopped, paused or "
                        f"blocked): what it reads now may be {now - self.proven:.1f} s old, "
                        f"over the ping window of {self.window:g} s; not live until a ping "
                        "sent now is answered"))
        return False

    def on_text(self, text: str) -> None:
        """One text frame from the server: a message to `on_message`, or a subscription's
        ack or error."""
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError:
            return  # a frame that is not JSON carries nothing we can use
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        if kind == "message":
            self.on_message(frame)
        elif kind == "pong":
            self._on_pong(frame.get("id"))
        elif kind in ("ack", "error"):
            # Only a pending subscription's own id (a string) settles it, and only once.
            frame_id = frame.get("id")
            ack = self._acks.get(frame_id) if isinstance(frame_id, str) else None
            if ack is not None and not ack.done():
                ack.set_result(kind == "ack")

    def _on_pong(self, frame_id: object) -> None:
        """A pong: what is read from now on was sent after its ping."""
        sent_at = self._pings.pop(frame_id, None) if isinstance(frame_id, str) else None
        if sent_at is None:
            return
        for older in [k for k, at in self._pings.items() if at <= sent_at]:
            del self._pings[older]  # answered too, in order, or lost with the proof
        self.proven = max(self.proven, sent_at)
        if self._stalled and self.check():
            self._stalled = False
            self._live = True
            self.on_state("live", "")

    async def _ping_loop(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        stop: asyncio.Event,
        interval: float,
        timeout: float,
        reader: asyncio.Task[None],
    ) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set() and not reader.done():
            self._ping_now.clear()
            sent_at = loop.time()
            ping_id = uuid.uuid4().hex
            self._pings[ping_id] = sent_at
            await ws.send_str(orjson.dumps({"id": ping_id, "type": "ping"}).decode())
            waited = 0.0
            while (waited < interval and not self._ping_now.is_set() and not stop.is_set()
                   and not reader.done()):
                await asyncio.sleep(min(0.05, interval))
                if not self.check() and self._ping_now.is_set():
                    break  # a stall: its proof is a ping sent now (the last pong may be
                    # still unread, behind what was buffered)
                waited = loop.time() - sent_at
                if self.proven < sent_at and waited > timeout:
                    self.on_state("stale", "no pong within pingTimeout")
                    await ws.close()
                    return
        if stop.is_set():
            await ws.close()
