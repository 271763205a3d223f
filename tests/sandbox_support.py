"""Helpers for the sandbox tests: a real server on port 0 and a request signer.

The signer is written here, independently of the sandbox's verifier and of the project's
client adapter, from KuCoin's documented rule (prehash = timestamp + METHOD + path?query + body,
with the query URL-decoded).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlencode

import aiohttp

from rules_engine.sandbox.clock import Clock, ManualClock
from rules_engine.sandbox.config import DEMO_KEY, DEMO_PASSPHRASE, DEMO_SECRET, SandboxConfig
from rules_engine.sandbox.server import SandboxState
from rules_engine.sandbox.testing import RunningSandbox, serve, serve_in_thread


def sign(secret: str, text: str) -> str:
    mac = hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def auth_headers(
    method: str, endpoint: str, body: str, now_ms: int, *, key: str = DEMO_KEY,
    secret: str = DEMO_SECRET, passphrase: str = DEMO_PASSPHRASE, version: str = "2",
) -> dict[str, str]:
    stamp = str(now_ms)
    return {
        "KC-API-KEY": key,
        "KC-API-SIGN": sign(secret, stamp + method + endpoint + body),
        "KC-API-TIMESTAMP": stamp,
        "KC-API-PASSPHRASE": sign(secret, passphrase) if version != "1" else passphrase,
        "KC-API-KEY-VERSION": version,
        "Content-Type": "application/json",
    }


@dataclass
class Sandbox:
    url: str
    state: SandboxState
    http: aiohttp.ClientSession

    async def call(
        self, method: str, path: str, params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None, *, signed: bool = True, **auth: Any,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        query = ("?" + urlencode(params)) if params else ""
        text = json.dumps(body, separators=(",", ":")) if body is not None else ""
        headers = (
            auth_headers(method, unquote(path + query), text, self.state.now_ms(), **auth)
            if signed else {}
        )
        async with self.http.request(method, self.url + path + query, data=text or None,
                                     headers=headers) as response:
            payload = await response.json(content_type=None)
            return response.status, payload, dict(response.headers)

    async def ok(self, method: str, path: str, params: dict[str, Any] | None = None,
                 body: dict[str, Any] | None = None, **kw: Any) -> Any:
        status, payload, _ = await self.call(method, path, params, body, **kw)
        assert status == 200 and payload["code"] == "200000", (status, payload)
        return payload["data"]


@asynccontextmanager
async def running(
    config: SandboxConfig | None = None, *, clock: Clock | None = None, run_feed: bool = False,
    seed: int = 7, state: SandboxState | None = None, **kw: Any,
) -> AsyncIterator[Sandbox]:
    """A sandbox listening on 127.0.0.1, port 0. The feed runs only if `run_feed`."""
    async with (
        serve(config, clock=clock or ManualClock(), run_feed=run_feed, state=state, seed=seed,
              **kw) as box,
        aiohttp.ClientSession() as http,
    ):
        yield Sandbox(box.url, box.state, http)


@contextmanager
def threaded(config: SandboxConfig | None = None, *, seed: int = 11,
             feed_interval_ms: int = 50) -> Iterator[RunningSandbox]:
    """A sandbox on its own thread and loop (real clock, feed running), for sync clients."""
    cfg = (config or SandboxConfig()).model_copy(update={"feed_interval_ms": feed_interval_ms})
    with serve_in_thread(cfg, seed=seed) as box:
        yield box


def point_ccxt_at(exchange: Any, url: str) -> Any:
    """Only the base URL changes: every REST host entry of ccxt's kucoin points at the sandbox."""
    for name, value in list(exchange.urls["api"].items()):
        if isinstance(value, str):
            exchange.urls["api"][name] = url
    return exchange


def demo_credentials() -> dict[str, str]:
    return {"apiKey": DEMO_KEY, "secret": DEMO_SECRET, "password": DEMO_PASSPHRASE}
