"""KuCoin REST over aiohttp: signed, clock-corrected, rate-limited, classified.

One `aiohttp.ClientSession` (keep-alive), a base URL that can be KuCoin, the sandbox or any
look-alike. Every request is signed with the server's time (local clock plus the offset
measured from `GET /api/v1/timestamp`, measured again at once on a 400002). Every reply is
classified by the error table (`_errors.py`); requests that were not accepted (`NOT_SENT`:
429000, a stale timestamp) are sent again after the wait the exchange asks for, so a storm of
429s loses no request. An auth failure (`STOP`) stops all of this client's signed traffic
until a person restarts it: no retry storm gets the key banned.

Rate limits are KuCoin's: weighted pools per 30-second window, tracked from the
`gw-ratelimit-limit/-remaining/-reset` headers of every reply. A request whose weight the
pool's known remaining quota cannot cover waits for the reset instead of earning a 429; a
429 without those headers (overload) backs off with jitter, honouring `Retry-After`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from rules_engine.adapters.kucoin._errors import (
    TRANSIENT,
    Action,
    Outcome,
    classify_exception,
    classify_reply,
)
from rules_engine.adapters.kucoin._parsing import PayloadError, parse_server_time
from rules_engine.adapters.kucoin._signing import Credentials, Signer

__all__ = ["MAX_RETRY_AFTER", "WEIGHTS", "KucoinOrders", "KucoinRest", "RatePools",
           "retry_after_seconds"]

# (pool, weight) per endpoint template, from the reference (section 5). Data, not code.
WEIGHTS: dict[tuple[str, str], tuple[str, int]] = {
    ("GET", "/api/v1/timestamp"): ("public", 3),
    ("GET", "/api/v2/symbols"): ("public", 4),
    ("GET", "/api/v1/market/orderbook/level1"): ("public", 2),
    ("GET", "/api/v1/market/orderbook/level2_20"): ("public", 2),
    ("GET", "/api/v1/market/orderbook/level2_100"): ("public", 2),
    ("GET", "/api/v3/market/orderbook/level2"): ("spot", 3),
    ("GET", "/api/v1/market/candles"): ("public", 3),
    ("GET", "/api/v1/accounts"): ("management", 5),
    ("GET", "/api/v1/hf/accounts/opened"): ("spot", 2),
    ("POST", "/api/v1/hf/orders"): ("spot", 1),
    ("GET", "/api/v1/hf/orders/{id}"): ("spot", 2),
    ("GET", "/api/v1/hf/orders/client-order/{id}"): ("spot", 2),
    ("GET", "/api/v1/hf/orders/active/page"): ("spot", 2),
    ("DELETE", "/api/v1/hf/orders/{id}"): ("spot", 1),
    ("DELETE", "/api/v1/hf/orders/client-order/{id}"): ("spot", 1),
    ("DELETE", "/api/v1/hf/orders"): ("spot", 2),
    ("POST", "/api/v1/orders"): ("spot", 2),
    ("GET", "/api/v1/orders/{id}"): ("spot", 2),
    ("GET", "/api/v1/order/client-order/{id}"): ("spot", 3),
    ("GET", "/api/v1/orders"): ("spot", 2),
    ("DELETE", "/api/v1/orders/{id}"): ("spot", 3),
    ("DELETE", "/api/v1/order/client-order/{id}"): ("spot", 3),
    ("DELETE", "/api/v1/orders"): ("spot", 20),
    ("GET", "/api/v1/fills"): ("spot", 10),
    ("POST", "/api/v3/oco/order"): ("spot", 2),
    ("GET", "/api/v3/oco/order/{id}"): ("spot", 2),
    ("DELETE", "/api/v3/oco/order/{id}"): ("spot", 3),
    ("GET", "/api/v3/oco/client-order/{id}"): ("spot", 2),
    ("DELETE", "/api/v3/oco/client-order/{id}"): ("spot", 3),
    ("GET", "/api/v3/oco/order/details/{id}"): ("spot", 2),
    ("GET", "/api/v3/oco/orders"): ("spot", 2),
}

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]  # seconds, monotonic


@dataclass
class _Pool:
    limit: int | None = None
    remaining: int | None = None
    resets_at: float = 0.0  # monotonic seconds


@dataclass
class RatePools:
    """The known state of each pool, from the `gw-ratelimit-*` headers."""

    clock: Clock = time.monotonic
    pools: dict[str, _Pool] = field(default_factory=dict)

    def wait_for(self, pool: str, weight: int) -> float:
        """Seconds to wait before spending `weight` in `pool` (0 when it fits)."""
        state = self.pools.get(pool)
        if state is None or state.remaining is None:
            return 0.0
        now = self.clock()
        if now >= state.resets_at:
            return 0.0
        return 0.0 if state.remaining >= weight else state.resets_at - now

    def spend(self, pool: str, weight: int) -> None:
        state = self.pools.get(pool)
        if state is not None and state.remaining is not None:
            state.remaining -= weight

    def observe(self, pool: str, headers: Mapping[str, str]) -> bool:
        """Record a reply's headers; False when it carried none (an overload reply)."""
        try:
            limit = _header_int(headers, "gw-ratelimit-limit")
            remaining = _header_int(headers, "gw-ratelimit-remaining")
            reset_ms = _header_int(headers, "gw-ratelimit-reset")
        except (KeyError, ValueError):
            return False
        self.pools[pool] = _Pool(limit, remaining, self.clock() + reset_ms / 1000)
        return True

    def exhaust(self, pool: str) -> None:
        state = self.pools.setdefault(pool, _Pool())
        state.remaining = 0


MAX_RETRY_AFTER = 60.0  # seconds: a longer wait asked for is cut to this, then retried


def retry_after_seconds(value: str) -> float:
    """A reply's `Retry-After` header: whole seconds (0 when absent or not a number of
    seconds), at most `MAX_RETRY_AFTER`."""
    value = value.strip()
    if not (value.isascii() and value.isdigit()):  # isdigit alone accepts superscripts
        return 0.0
    if len(value) > 6:  # more than 11 days, and int() refuses 4301 digits and more
        return MAX_RETRY_AFTER
    return min(float(value), MAX_RETRY_AFTER)


def _header_int(headers: Mapping[str, str], name: str) -> int:
    """A `gw-ratelimit-*` header: a whole number below 10**12 (KeyError when absent)."""
    value = headers[name].strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 12:
        raise ValueError(f"{name}: {value!r}")
    return int(value)


def _template(method: str, path: str) -> tuple[str, int]:
    if (method, path) in WEIGHTS:
        return WEIGHTS[(method, path)]
    head, _, _ = path.rpartition("/")
    return WEIGHTS.get((method, head + "/{id}"), ("spot", 1))


class KucoinRest:
    """Signed REST calls returning `Outcome`s; see the module docstring for the policies."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        attempts: int = 8,
        clock: Clock = time.monotonic,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._signer = Signer(credentials) if credentials is not None else None
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._attempts = attempts
        self._wall_ms = wall_ms
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.pools = RatePools(clock)
        self.offset_ms = 0
        self.stopped: Outcome | None = None  # set by an auth failure: signed traffic stops
        self._retry_after = 0.0  # a server's Retry-After, in seconds, from the last reply
        self.seen: Counter[Action] = Counter()  # every reply's action, for monitoring
        self.time_syncs = 0

    async def __aenter__(self) -> KucoinRest:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def server_ms(self) -> int:
        return self._wall_ms() + self.offset_ms

    async def sync_time(self) -> Outcome:
        """Measure the offset to the server's clock (half the round trip assumed each way)."""
        before = self._wall_ms()
        outcome = await self.call("GET", "/api/v1/timestamp")
        after = self._wall_ms()
        if outcome.action is Action.OK:
            with contextlib.suppress(PayloadError):
                self.offset_ms = parse_server_time(outcome.data) - (before + after) // 2
        return outcome

    async def keep_time(self, stop: asyncio.Event, every: float = 300.0) -> None:
        """Measure the server-time offset now and every `every` seconds until `stop`."""
        while not stop.is_set():
            await self.sync_time()
            self.time_syncs += 1
            try:
                await asyncio.wait_for(stop.wait(), every)
            except TimeoutError:
                continue

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] | None = None,
        body: Mapping[str, Any] | None = None,
        signed: bool = False,
        order: bool = False,
    ) -> Outcome:
        """One logical request; `order` marks a request that creates an order."""
        if self._session is None:
            raise RuntimeError("use `async with KucoinRest(...)` or pass a session")
        pool, weight = _template(method, path)
        raw = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        backoff = 0.2
        outcome = Outcome(Action.RETRY, None, "not attempted", None)
        for _ in range(self._attempts):
            if signed and self.stopped is not None:
                return self.stopped
            wait = self.pools.wait_for(pool, weight)
            if wait > 0:
                await self._sleep(wait)
            outcome = await self._send(method, path, params, raw, pool, weight, signed, order)
            self.seen[outcome.action] += 1
            if outcome.action is Action.STOP and signed:
                self.stopped = outcome
                return outcome
            if outcome.action is Action.NOT_SENT:
                if outcome.resync_time:
                    await self.sync_time()
                    continue
                # 429: the pool's headers (if any) already set the wait; else back off.
                if self.pools.wait_for(pool, weight) == 0:
                    await self._sleep(self._retry_after or backoff * (1 + self._rng.random()))
                    backoff = min(backoff * 2, 10.0)
                continue
            if outcome.action is Action.RETRY and not order:
                await self._sleep(backoff * (1 + self._rng.random()))
                backoff = min(backoff * 2, 10.0)
                continue
            return outcome
        return outcome

    async def _send(  # noqa: PLR0917 - the parts of one request
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]] | None,
        raw: bytes,
        pool: str,
        weight: int,
        signed: bool,
        order: bool,
    ) -> Outcome:
        assert self._session is not None
        headers: dict[str, str] = {}
        url_path = path
        if signed:
            if self._signer is None:
                raise RuntimeError("a signed call needs credentials")
            signed_request = self._signer.sign(
                method, path, timestamp_ms=self.server_ms(), params=params, body=raw
            )
            url_path, headers = signed_request.url_path, signed_request.headers
        elif params:
            url_path = path + "?" + "&".join(f"{k}={v}" for k, v in params)
        if raw:
            headers.setdefault("Content-Type", "application/json")
        self.pools.spend(pool, weight)
        try:
            async with self._session.request(
                method,
                self.base_url + url_path,
                data=raw or None,
                headers=headers,
                timeout=self._timeout,
            ) as reply:
                body = await reply.read()
                had_headers = self.pools.observe(pool, reply.headers)
                retry_after = reply.headers.get("Retry-After", "")
                self._retry_after = retry_after_seconds(retry_after)
                outcome = classify_reply(reply.status, body, order=order)
                if outcome.action is Action.NOT_SENT and outcome.code == "429000" and had_headers:
                    self.pools.exhaust(pool)
                return outcome
        except aiohttp.ClientConnectorError as error:
            return classify_exception(error, order=order, sent=False)  # never left this host
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            return classify_exception(error, order=order, sent=True)


class KucoinOrders:
    """Orders in both of KuCoin's families: `hf` (current) and `legacy` (`/api/v1/orders`)."""

    FAMILY_PATH = "/api/v1/hf/accounts/opened"  # answers true for an HF account

    def __init__(self, rest: KucoinRest, family: str = "hf") -> None:
        if family not in ("hf", "legacy"):
            raise ValueError(f"family must be 'hf' or 'legacy', not {family!r}")
        self.rest = rest
        self.family = family

    @staticmethod
    def family_of(outcome: Outcome) -> str | None:
        """The account's family from the reply to `GET FAMILY_PATH`, as KuCoin decides it:
        true is `hf`; any other definite answer (false, or a venue without the endpoint) is
        `legacy`; a transient failure proves nothing (None: ask again)."""
        if outcome.action in TRANSIENT:
            return None
        return "hf" if outcome.action is Action.OK and outcome.data is True else "legacy"

    @staticmethod
    async def detect_family(rest: KucoinRest) -> str:
        """`family_of` the venue's reply; raises ConnectionError when it cannot be known."""
        outcome = await rest.call("GET", KucoinOrders.FAMILY_PATH, signed=True)
        family = KucoinOrders.family_of(outcome)
        if family is None:
            raise ConnectionError(f"cannot tell the account's order family: {outcome.message}")
        return family

    async def place(self, order: Mapping[str, Any]) -> Outcome:
        """`order` holds KuCoin's fields (clientOid, symbol, side, type, price, size, funds,
        timeInForce, postOnly, hidden, clientTimestamp, allowMaxTimeWindow...)."""
        path = "/api/v1/hf/orders" if self.family == "hf" else "/api/v1/orders"
        return await self.rest.call("POST", path, body=order, signed=True, order=True)

    async def by_client_oid(self, client_oid: str, symbol: str) -> Outcome:
        if self.family == "hf":
            return await self.rest.call(
                "GET",
                f"/api/v1/hf/orders/client-order/{client_oid}",
                params=[("symbol", symbol)],
                signed=True,
            )
        return await self.rest.call("GET", f"/api/v1/order/client-order/{client_oid}", signed=True)

    async def by_id(self, order_id: str, symbol: str) -> Outcome:
        if self.family == "hf":
            return await self.rest.call(
                "GET", f"/api/v1/hf/orders/{order_id}", params=[("symbol", symbol)], signed=True
            )
        return await self.rest.call("GET", f"/api/v1/orders/{order_id}", signed=True)

    async def active(self, symbol: str, page: int = 1, page_size: int = 50) -> Outcome:
        if self.family == "hf":
            params = [("symbol", symbol), ("pageNum", str(page)), ("pageSize", str(page_size))]
            return await self.rest.call(
                "GET", "/api/v1/hf/orders/active/page", params=params, signed=True
            )
        params = [
            ("status", "active"),
            ("symbol", symbol),
            ("currentPage", str(page)),
            ("pageSize", str(page_size)),
        ]
        return await self.rest.call("GET", "/api/v1/orders", params=params, signed=True)

    async def cancel(self, order_id: str, symbol: str) -> Outcome:
        if self.family == "hf":
            return await self.rest.call(
                "DELETE", f"/api/v1/hf/orders/{order_id}", params=[("symbol", symbol)], signed=True
            )
        return await self.rest.call("DELETE", f"/api/v1/orders/{order_id}", signed=True)

    async def cancel_by_client_oid(self, client_oid: str, symbol: str) -> Outcome:
        if self.family == "hf":
            return await self.rest.call(
                "DELETE",
                f"/api/v1/hf/orders/client-order/{client_oid}",
                params=[("symbol", symbol)],
                signed=True,
            )
        return await self.rest.call(
            "DELETE", f"/api/v1/order/client-order/{client_oid}", signed=True
        )

    async def cancel_all(self, symbol: str) -> Outcome:
        path = "/api/v1/hf/orders" if self.family == "hf" else "/api/v1/orders"
        return await self.rest.call("DELETE", path, params=[("symbol", symbol)], signed=True)
