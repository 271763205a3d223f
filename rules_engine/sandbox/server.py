"""The sandbox's aiohttp application: KuCoin's REST paths and shapes over the engine.

`create_app(state)` builds the app; tests run it on port 0. Every reply carries
`gw-ratelimit-limit/-remaining/-reset` and `x-sandbox-instance` (the venue's instance id, kept in
the state file so it survives restarts). Errors are KuCoin bodies (`{"code", "msg"}`) with
KuCoin's HTTP status; nothing ever answers with a traceback. The routes are in `rest.py` (the
core table) and the `rest_*.py` modules by area, the state in `state.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from rules_engine.sandbox import admin, errors, ws
from rules_engine.sandbox.auth import verify_request
from rules_engine.sandbox.config import KeyConfig
from rules_engine.sandbox.errors import ApiError, ApiFailureError
from rules_engine.sandbox.rest import Ctx, Route, all_routes, ok_body
from rules_engine.sandbox.state import SandboxState, build_state

__all__ = ["SandboxState", "build_state", "create_app", "parse_body", "run_server"]

log = logging.getLogger("rules_engine.sandbox")

COMPACT_EVERY_MS = 60_000  # the journal is folded into the snapshot this often,
COMPACT_BYTES = 16 << 20  # or as soon as it grows past this


def _reply(state: SandboxState, payload: Any, status: int = 200,
           headers: dict[str, str] | None = None) -> web.Response:
    response = web.Response(body=orjson.dumps(payload), status=status,
                            content_type="application/json")
    response.headers["x-sandbox-instance"] = state.instance_id
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _error(state: SandboxState, error: ApiError, headers: dict[str, str] | None = None
           ) -> web.Response:
    if state.config.faults.html_errors:
        response = web.Response(text="<html><body><h1>502 Bad Gateway</h1></body></html>",
                                status=502, content_type="text/html")
        response.headers["x-sandbox-instance"] = state.instance_id
        return response
    return _reply(state, error.body(), error.status, headers)


def parse_body(raw: bytes) -> dict[str, Any] | str:
    """A request's JSON object (numbers with a fraction as Decimal), or why it is not one."""
    try:
        parsed = json.loads(raw, parse_float=Decimal)
    except (ValueError, RecursionError, ArithmeticError):  # nested too deep; 1e99999999999
        return "Invalid request body: not JSON"
    if not isinstance(parsed, dict):
        return "Invalid request body: not an object"
    return parsed


def _remote_ip(request: web.Request) -> str:
    return request.remote or ""


def _make_handler(state: SandboxState, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:  # noqa: E501
    async def handle(request: web.Request) -> web.StreamResponse:
        faults = state.config.faults
        if faults.delay_ms:
            await asyncio.sleep(faults.delay_ms / 1000)
        if faults.http_5xx:
            return _error(state, ApiError("503000", "Service Unavailable", 503))
        if faults.http_429:
            return _error(state, errors.too_many_requests(), {
                "gw-ratelimit-limit": "0", "gw-ratelimit-remaining": "0",
                "gw-ratelimit-reset": "1000"})
        raw = await request.read()
        key: KeyConfig | None = None
        if route.signed:
            verified = verify_request(
                request.headers, request.method, request.raw_path, raw, state.now_ms(),
                state.config.keys, _remote_ip(request), state.config.timestamp_window_ms,
            )
            if isinstance(verified, ApiError):
                return _error(state, verified)
            key = verified
            if route.permission not in key.permissions:
                return _error(state, errors.access_denied(route.permission))
        identity = key.api_key if key is not None else _remote_ip(request)
        allowed, limit_headers = state.limiter.charge(route.pool, identity, route.weight,
                                                      state.clock.base_ms())
        if not allowed:
            return _error(state, errors.too_many_requests(), limit_headers)
        body: dict[str, Any] = {}
        if raw.strip():
            ctype = request.headers.get("Content-Type", "")
            if request.method == "POST" and "json" not in ctype:
                return _error(state, errors.unsupported_media_type(), limit_headers)
            parsed = parse_body(raw)
            if isinstance(parsed, str):
                return _error(state, errors.bad_param(parsed), limit_headers)
            body = parsed
        ctx = Ctx(state, request, dict(request.query), body, key, dict(request.match_info))
        data: Any = None
        error: ApiError | None = None
        try:
            data = await route.handler(ctx)
        except ApiFailureError as failure:
            error = failure.error  # a batch may have changed something before it failed
        try:
            await state.settled()  # with --state: no reply before its change is fsync'd
        except OSError as exc:
            log.error("sandbox: not acknowledged, the journal write failed: %s", exc)
            return _error(state, errors.internal_error(), limit_headers)
        if error is not None:
            return _error(state, error, limit_headers)
        return _reply(state, ok_body(data), 200, limit_headers)

    return handle


@web.middleware
async def _guard(request: web.Request,
                 handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> web.StreamResponse:
    state: SandboxState = request.app[STATE_KEY]
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _error(state, errors.not_found())
    except web.HTTPMethodNotAllowed:
        return _error(state, errors.not_found())
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # Anything aiohttp refuses itself (body too large, a plain GET on the WebSocket
        # endpoint...) still answers with a KuCoin body.
        return _error(state, ApiError("400100", exc.reason, exc.status))
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("sandbox handler failed on %s %s", request.method, request.path)
        return _error(state, errors.internal_error())


STATE_KEY: web.AppKey[SandboxState] = web.AppKey("sandbox_state", SandboxState)


def create_app(state: SandboxState, *, run_feed: bool = True) -> web.Application:
    """The aiohttp application. `run_feed=False` leaves the feed to the caller (`feed_step`)."""
    app = web.Application(middlewares=[_guard])
    app[STATE_KEY] = state
    # Fixed paths first: aiohttp matches routes in the order they were added.
    for route in all_routes():
        app.router.add_route(route.method, route.path, _make_handler(state, route))
    ws.install(app, state)
    admin.install(app, state)
    if not state.engine.books[next(iter(state.symbols))].bids:
        state.feed_step(force=True)

    async def feed_loop() -> None:
        interval = state.config.feed_interval_ms / 1000
        last_save = state.clock.base_ms()
        loop = asyncio.get_running_loop()
        due = loop.time() + interval
        while True:
            await asyncio.sleep(max(due - loop.time(), 0))
            lag_ms = (loop.time() - due) * 1000
            state.feed_stats.record(lag_ms)
            due = max(due + interval, loop.time())
            state.feed_step()
            now = state.clock.base_ms()
            journal = state.journal
            if journal is not None and journal.bytes and (
                    now - last_save >= COMPACT_EVERY_MS or journal.bytes >= COMPACT_BYTES):
                await state.save()
                last_save = now

    async def lifecycle(app: web.Application) -> Any:
        task = asyncio.create_task(feed_loop()) if run_feed else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for waiter in state.hold_replies:
            if not waiter.done():
                waiter.cancel()
        await state.save(clean=True)
        if state.journal is not None:
            state.journal.close()

    app.cleanup_ctx.append(lifecycle)
    return app


async def run_server(state: SandboxState, host: str, port: int,
                     on_ready: Callable[[str], None]) -> None:
    """Serve until cancelled; `on_ready` gets the REST base URL once the socket listens."""
    app = create_app(state)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    on_ready(f"http://{host}:{bound}")
    try:
        await stop.wait()
    finally:
        await runner.cleanup()  # saves the state file
