"""Run a sandbox in this process: a real server on 127.0.0.1, port 0 (tests, and the
watcher's in-process venues).

    async with serve(SandboxConfig(), clock=ManualClock()) as box:
        ...  # box.url, box.state (engine, clock, faults), box.credentials()

    with serve_in_thread() as box:   # its own thread and loop, for synchronous clients
        ...

Only the base URL and the demo credentials are handed out, as a real client would get them.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from rules_engine.sandbox.clock import Clock
from rules_engine.sandbox.config import SandboxConfig
from rules_engine.sandbox.server import SandboxState, build_state, create_app

__all__ = ["RunningSandbox", "serve", "serve_in_thread"]


@dataclass(frozen=True)
class RunningSandbox:
    url: str
    state: SandboxState

    def credentials(self) -> dict[str, str]:
        """The first key's credentials (for demo keys; tests configure their own keys)."""
        key = self.state.config.first_key()
        return {"api_key": key.api_key, "api_secret": key.api_secret.get_secret_value(),
                "api_passphrase": key.api_passphrase.get_secret_value()}


async def _start(state: SandboxState, run_feed: bool) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(create_app(state, run_feed=run_feed), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    address: Any = runner.addresses[0]
    return runner, f"http://127.0.0.1:{address[1]}"


@asynccontextmanager
async def serve(
    config: SandboxConfig | None = None, *, clock: Clock | None = None, run_feed: bool = False,
    state: SandboxState | None = None, **build: Any,
) -> AsyncIterator[RunningSandbox]:
    """A sandbox on the running loop. The feed runs only with `run_feed` (else call
    `state.feed_step()`); extra keywords go to `build_state` (feed_name or feed, seed,
    speed...)."""
    if state is None:
        state = build_state(config or SandboxConfig(), clock=clock, **build)
    runner, url = await _start(state, run_feed)
    try:
        yield RunningSandbox(url, state)
    finally:
        await runner.cleanup()


@contextmanager
def serve_in_thread(
    config: SandboxConfig | None = None, *, run_feed: bool = True, **build: Any,
) -> Iterator[RunningSandbox]:
    """A sandbox on its own thread and event loop (real clock), for synchronous clients."""
    state = build_state(config or SandboxConfig(), **build)
    ready: queue.Queue[str] = queue.Queue()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        runner, url = await _start(state, run_feed)
        ready.put(url)
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        yield RunningSandbox(ready.get(timeout=10), state)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()
