"""The WebSocket client against the sandbox: welcome, acked subscriptions, messages, and a
dropped connection reconnected with a fresh token and resubscribed."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from rules_engine.adapters.kucoin._rest import KucoinRest
from rules_engine.adapters.kucoin._ws import KucoinWs, batched_topics
from rules_engine.sandbox.config import SandboxConfig
from rules_engine.sandbox.testing import serve


def test_topics_are_batched_within_limits() -> None:
    symbols = [f"S{i}-USDT" for i in range(250)]
    topics = batched_topics("/market/ticker:", symbols + symbols[:3])
    assert len(topics) == 3
    assert sum(t.count(",") + 1 for t in topics) == 250


async def wait_until(condition: Any, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_a_dropped_websocket_is_reconnected_and_resubscribed() -> None:
    async with serve(SandboxConfig(), run_feed=True) as box, KucoinRest(box.url) as rest:
        received: list[dict[str, Any]] = []
        states: list[tuple[str, str]] = []
        ws = KucoinWs(
            rest,
            on_message=received.append,
            on_state=lambda state, why: states.append((state, why)),
        )
        ws.subscribe(batched_topics("/market/ticker:", ["BTC-USDT", "ETH-USDT"]))
        stop = asyncio.Event()
        task = asyncio.create_task(ws.run(stop))
        try:
            await wait_until(lambda: len(received) >= 3)
            assert {m["subject"] for m in received} == {"trade.ticker"}
            assert states[0] == ("live", "")
            async with (
                aiohttp.ClientSession() as admin,
                admin.post(box.url + "/sandbox/admin/drop-ws") as reply,
            ):
                assert (await reply.json())["data"]["dropped"] >= 1
            before = len(received)
            await wait_until(lambda: ws.connects == 2 and len(received) > before + 2)
            assert ("stale", "connection closed") in states
            assert states[-1] == ("live", "")
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
