"""Fault injection and test controls, served under `/sandbox/admin/` to loopback clients only.

`GET /sandbox/admin/faults` shows the active faults; `POST /sandbox/admin/faults` with a JSON
object sets any of: `delay_ms`, `http_5xx`, `html_errors`, `timeout_after_accept`, `stall_feed`,
`http_429` (every REST request refused for its rate limit), `skip_level2` (drop the next N
level2 messages), `duplicate_level2` (send the next N twice), `ws_silent` (WebSocket
connections stay open but send nothing, pongs included), `clock_skew_ms`.
`POST /sandbox/admin/drop-ws` closes every WebSocket connection;
`POST /sandbox/admin/release` answers the replies held by `timeout_after_accept` with HTTP 504;
`POST /sandbox/admin/feed-step` applies one feed tick; `GET /sandbox/admin/stats` shows how
late feed ticks started (lag), WebSocket connections and messages pushed;
`POST /sandbox/admin/save` writes the state file; `GET /sandbox/admin/history?symbol=S`
(with config `record_history`) gives the book's best levels after each change and the peak
of open orders. Any other address gets 403 and KuCoin's `400007`.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from rules_engine.sandbox import ws
from rules_engine.sandbox.config import FaultConfig

if TYPE_CHECKING:
    from rules_engine.sandbox.state import SandboxState

__all__ = ["install"]


def _loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status,
                        content_type="application/json")


def install(app: web.Application, state: SandboxState) -> None:
    def guarded(fn: Callable[[web.Request], Awaitable[web.Response]]
                ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def wrapper(request: web.Request) -> web.Response:
            if not _loopback(request):
                return _json({"code": "400007", "msg": "admin is loopback only"}, 403)
            return await fn(request)

        return wrapper

    async def get_faults(request: web.Request) -> web.Response:
        return _json({"code": "200000", "data": state.config.faults.model_dump()})

    async def set_faults(request: web.Request) -> web.Response:
        try:
            changes = json.loads(await request.read() or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("not an object")
            merged = state.config.faults.model_dump() | changes
            faults = FaultConfig.model_validate(merged)
        except (ValueError, ValidationError) as exc:
            return _json({"code": "400100", "msg": f"bad faults: {exc}"}, 400)
        state.config.faults = faults
        state.clock.offset_ms = faults.clock_skew_ms
        return _json({"code": "200000", "data": faults.model_dump()})

    async def drop_ws(request: web.Request) -> web.Response:
        count = await ws.drop_all(state)
        return _json({"code": "200000", "data": {"dropped": count}})

    async def release(request: web.Request) -> web.Response:
        count = 0
        for waiter in state.hold_replies:
            if not waiter.done():
                waiter.set_result(None)
                count += 1
        state.hold_replies.clear()
        return _json({"code": "200000", "data": {"released": count}})

    async def feed_step(request: web.Request) -> web.Response:
        state.feed_step()
        return _json({"code": "200000", "data": None})

    async def save(request: web.Request) -> web.Response:
        if state.state_file is None:
            return _json({"code": "400100", "msg": "no --state file"}, 400)
        await state.save()
        return _json({"code": "200000", "data": str(state.state_file)})

    async def stats(request: web.Request) -> web.Response:
        hub = state.extras.get("ws_hub")
        return _json({"code": "200000", "data": {
            "instance_id": state.instance_id,
            "feed": state.feed_stats.as_dict(),
            "ws_connections": len(hub.conns) if hub is not None else 0,
            "ws_messages_pushed": hub.pushed if hub is not None else 0,
            "orders": len(state.engine.orders),
        }})

    async def history(request: web.Request) -> web.Response:
        if not state.config.record_history:
            return _json({"code": "400100", "msg": "history is kept only with config "
                          "record_history: true"}, 400)
        symbol = request.query.get("symbol", "")
        if symbol not in state.symbols:
            return _json({"code": "400100", "msg": f"unknown symbol {symbol!r}: "
                          "?symbol=BASE-QUOTE"}, 400)
        rows = state.history.books.get(symbol, ())
        return _json({"code": "200000", "data": {
            "symbol": symbol, "columns": ["sequence", "time_ms", "bid", "bid_size", "ask",
                                          "ask_size"],
            "rows": list(rows), "open_orders_peak": state.history.open_orders_peak,
        }})

    app.router.add_get("/sandbox/admin/faults", guarded(get_faults))
    app.router.add_get("/sandbox/admin/history", guarded(history))
    app.router.add_get("/sandbox/admin/stats", guarded(stats))
    app.router.add_post("/sandbox/admin/faults", guarded(set_faults))
    app.router.add_post("/sandbox/admin/drop-ws", guarded(drop_ws))
    app.router.add_post("/sandbox/admin/release", guarded(release))
    app.router.add_post("/sandbox/admin/feed-step", guarded(feed_step))
    app.router.add_post("/sandbox/admin/save", guarded(save))
