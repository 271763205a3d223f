"""The WebSocket client against the sandbox: welcome, acked subscriptions, messages, a
dropped connection reconnected with a fresh token and resubscribed, and a loop that did not run
for longer than the ping window (`stalled` before any frame it buffered is handed on)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from rules_engine.adapters.kucoin._rest import KucoinRest
from rules_engine.adapters.kucoin._ws import KucoinWs, batched_topics
from rules_engine.sandbox.config import SandboxConfig
from rules_engine.sandbox.testing import serve, serve_in_thread


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


async def test_a_loop_that_did_not_run_past_the_window_hands_on_nothing_before_a_fresh_pong(
) -> None:
    """The client's loop blocked for 3 s (as a SIGSTOP would stop it) while the sandbox, on its
    own thread, goes on sending: the frames buffered meanwhile are read after the channel said
    `stalled`, and it is `live` again only once a ping sent after the stall is answered (or on
    a new connection)."""
    config = SandboxConfig(ping_interval_ms=1000, ping_timeout_ms=1000)  # a window of 2 s
    with serve_in_thread(config.model_copy(update={"feed_interval_ms": 50})) as box:
        async with KucoinRest(box.url) as rest:
            log: list[tuple[str, str]] = []
            ws = KucoinWs(rest, on_message=lambda frame: log.append(("message", "")),
                          on_state=lambda state, why: log.append((state, why)))
            ws.subscribe(batched_topics("/market/ticker:", ["BTC-USDT"]))
            stop = asyncio.Event()
            task = asyncio.create_task(ws.run(stop))
            try:
                await wait_until(lambda: log.count(("message", "")) >= 3)
                assert ws.check()
                before = len(log)
                time.sleep(3.0)  # the loop does not run: frames wait in the socket
                assert not ws.check()  # a decision asks first: stale at once, nothing read
                after = log[before:]
                assert [kind for kind, _ in after] == ["stalled"], after
                assert "did not run for 3.0 s" in after[0][1], after
                assert 2.9 <= ws.stalled_s < 4.0
                # Live again on the pong of a ping sent now, or on a new connection (the
                # server closes one whose client sent nothing for the window, as KuCoin does).
                await wait_until(lambda: ("live", "") in log[before:], 5)
                assert ws.check()
                await wait_until(lambda: log[-1] == ("message", ""), 5)
            finally:
                stop.set()
                await asyncio.wait_for(task, 10)


async def test_frames_read_after_a_stall_come_after_the_stalled_state() -> None:
    """Without a decision asking first, the reader itself says `stalled` before handing on the
    first frame it reads after the stall."""
    config = SandboxConfig(ping_interval_ms=1000, ping_timeout_ms=1000)
    with serve_in_thread(config.model_copy(update={"feed_interval_ms": 50})) as box:
        async with KucoinRest(box.url) as rest:
            log: list[str] = []
            ws = KucoinWs(rest, on_message=lambda frame: log.append("message"),
                          on_state=lambda state, why: log.append(state))
            ws.subscribe(batched_topics("/market/ticker:", ["BTC-USDT"]))
            stop = asyncio.Event()
            task = asyncio.create_task(ws.run(stop))
            try:
                await wait_until(lambda: log.count("message") >= 3)
                before = len(log)
                time.sleep(3.0)
                await wait_until(lambda: "live" in log[before:], 5)
                after = log[before:]
                assert after[0] == "stalled" and "message" in after, after
                first_live = after.index("live")
                assert set(after[:first_live]) <= {"message", "stalled", "stale"}, after
            finally:
                stop.set()
                await asyncio.wait_for(task, 10)


async def test_a_silent_connection_is_dead_not_stalled() -> None:
    """A connection that sends nothing, pongs included, while this loop runs: `stale`, no
    pong within pingTimeout (the server's fault, not a stall of this process), then a new
    connection."""
    config = SandboxConfig(ping_interval_ms=1000, ping_timeout_ms=1000)
    async with serve(config, run_feed=True) as box, KucoinRest(box.url) as rest:
        states: list[tuple[str, str]] = []
        ws = KucoinWs(rest, on_message=lambda frame: None,
                      on_state=lambda state, why: states.append((state, why)))
        ws.subscribe(batched_topics("/market/ticker:", ["BTC-USDT"]))
        stop = asyncio.Event()
        task = asyncio.create_task(ws.run(stop))
        try:
            await wait_until(lambda: states == [("live", "")])
            async with aiohttp.ClientSession() as admin:
                async with admin.post(box.url + "/sandbox/admin/faults",
                                      json={"ws_silent": True}) as reply:
                    assert reply.status == 200
                await wait_until(lambda: len(states) >= 2, 5)
                assert states[1] == ("stale", "no pong within pingTimeout"), states
                async with admin.post(box.url + "/sandbox/admin/faults",
                                      json={"ws_silent": False}) as reply:
                    assert reply.status == 200
            await wait_until(lambda: ws.connects >= 2 and states[-1] == ("live", ""), 10)
            assert all(state != "stalled" for state, _ in states), states
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
