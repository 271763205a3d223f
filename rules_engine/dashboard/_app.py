"""The dashboard as an aiohttp application over a store, and its server.

    GET  /             the page (`_page.py`: no CDN, no external file)
    GET  /api/state    JSON: what `status` reads, the live snapshot when there is one, fills
    GET  /events       server-sent events: the store's event log, polled every `poll_s`
    GET  /metrics      Prometheus text (`_metrics.py`)
    POST /api/halt     the kill switch, as `rules-engine halt` writes it
    POST /api/resume   lifting it, as `rules-engine resume`
    POST /signal       an inbound signal (`_signals.py`), only when signals are configured

`make_app(store, snapshot=..., token=...)` is reusable: `rules-engine dashboard` serves it over
a store, `rules-engine run --http` mounts it with the watcher's `snapshot()` as the live part.
Every store read runs in a worker thread, never on the watcher's loop.

A state-changing request must carry the header `X-Rules-Engine: 1` (a page on another site
cannot send it without a CORS preflight, which is never answered) and, when a token is set,
`Authorization: Bearer TOKEN`. The halt or resume it makes is recorded in the event log with
who asked (`dashboard from ADDRESS`); a refused one is recorded as `dashboard.refused`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy import select

__all__ = ["Bind", "BindError", "make_app", "parse_bind", "serve_dashboard"]

Snapshot = Callable[[], dict[str, Any]]


@dataclass
class _Context:
    store: Any
    snapshot: Snapshot | None
    token: str | None
    poll_s: float
    signals: Any = None  # a `_signals.SignalGate`, or None: `/signal` is off
    streams: set[asyncio.Task[Any]] = field(default_factory=set)


CONTEXT = web.AppKey("dashboard", _Context)


class BindError(ValueError):
    """A `--http` address that cannot be used: the message says why and the fix."""


class Bind:
    def __init__(self, host: str, port: int, token: str | None) -> None:
        self.host, self.port, self.token = host, port, token

    @property
    def loopback(self) -> bool:
        return _is_loopback(self.host)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_bind(text: str, token: str | None) -> Bind:
    """`HOST:PORT` (`127.0.0.1:8765`, `[::1]:8765`, `:8765` for loopback). Any address that is
    not loopback needs a token."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise BindError(f"--http {text!r}: give HOST:PORT, e.g. 127.0.0.1:8765")
    host = host.strip("[]") or "127.0.0.1"
    bind = Bind(host, int(port_text), token or None)
    if not bind.loopback and not bind.token:
        raise BindError(f"--http {text}: {host} is not a loopback address; anyone who reaches "
                        "it could halt the watcher: give --http-token TOKEN (or serve on "
                        "127.0.0.1)")
    return bind


def make_app(store: Any, *, snapshot: Snapshot | None = None, token: str | None = None,
             poll_s: float = 0.5, signals: Any = None) -> web.Application:
    app = web.Application()
    app[CONTEXT] = _Context(store, snapshot, token, poll_s, signals)
    app.router.add_get("/", _page)
    app.router.add_get("/api/state", _state)
    app.router.add_get("/events", _events)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/api/halt", _halt)
    app.router.add_post("/api/resume", _resume)
    if signals is not None and signals.specs:
        app.router.add_post("/signal", _signal)
    app.on_shutdown.append(_close_streams)
    return app


async def _close_streams(app: web.Application) -> None:
    for task in list(app[CONTEXT].streams):
        task.cancel()


async def _page(request: web.Request) -> web.Response:
    from rules_engine.dashboard._page import PAGE

    return web.Response(text=PAGE, content_type="text/html",
                        headers={"Cache-Control": "no-store",
                                 "Content-Security-Policy": "default-src 'self'; "
                                 "script-src 'unsafe-inline'; style-src 'unsafe-inline'"})


def _read_state(store: Any, live: dict[str, Any] | None) -> dict[str, Any]:
    from rules_engine.store._record import status_report
    from rules_engine.store._schema import Fill, Order

    report = status_report(store, datetime.now(UTC))
    with store.session() as session:
        fills = [{"symbol": symbol, "side": side, "price": format(fill.price, "f"),
                  "size": format(fill.size, "f"),
                  "time": fill.time.isoformat(timespec="milliseconds")}
                 for fill, symbol, side in session.execute(
                     select(Fill, Order.symbol, Order.side)
                     .join(Order, Order.client_oid == Fill.client_oid)
                     .order_by(Fill.time).limit(5000))]
    return {**report, "fills": fills, "live": live,
            "at": datetime.now(UTC).isoformat(timespec="seconds")}


async def _state(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    live = _jsonable(context.snapshot()) if context.snapshot is not None else None
    report = await asyncio.to_thread(_read_state, context.store, live)
    return web.json_response(report, dumps=lambda v: json.dumps(v, default=str))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _events_after(store: Any, after: int, limit: int) -> list[dict[str, Any]]:
    from rules_engine.store._schema import Event

    with store.session() as session:
        query = select(Event).where(Event.id > after)
        if after < 0:  # the first read: the latest `limit`, oldest first
            query = select(Event).order_by(Event.id.desc()).limit(limit)
            rows = list(reversed(list(session.scalars(query))))
        else:
            rows = list(session.scalars(query.order_by(Event.id).limit(limit)))
    return [{"id": e.id, "at": e.at.isoformat(timespec="milliseconds"), "kind": e.kind,
             "rule": e.identity, "client_oid": e.client_oid, "payload": e.payload}
            for e in rows]


async def _events(request: web.Request) -> web.StreamResponse:
    """The event log as server-sent events (`id:` is the event's id, so a reconnecting
    browser's `Last-Event-ID` resumes exactly after the last one it saw)."""
    context = request.app[CONTEXT]
    store, poll = context.store, context.poll_s
    last_text = request.headers.get("Last-Event-ID") or request.query.get("after") or ""
    last = int(last_text) if last_text.isdigit() else -1
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
    await response.prepare(request)
    task = asyncio.current_task()
    assert task is not None
    context.streams.add(task)
    try:
        await response.write(b"retry: 1000\n\n")
        while True:
            rows = await asyncio.to_thread(_events_after, store, last, 200)
            for row in rows:
                data = json.dumps(row, default=str)
                await response.write(f"id: {row['id']}\nevent: log\ndata: {data}\n\n".encode())
                last = row["id"]
            if not rows:
                await response.write(b": idle\n\n")
                last = max(last, 0)
                await asyncio.sleep(poll)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        context.streams.discard(task)
    return response


async def _metrics(request: web.Request) -> web.Response:
    from rules_engine.dashboard._metrics import exposition

    context = request.app[CONTEXT]
    live = context.snapshot() if context.snapshot is not None else None
    body, content_type = await asyncio.to_thread(exposition, context.store, live)
    return web.Response(body=body, headers={"Content-Type": content_type})


def _who(request: web.Request) -> str:
    return f"dashboard from {request.remote or 'unknown'}"


async def _allowed(request: web.Request) -> web.Response | None:
    """None when the request may change state; else the refusal (recorded in the log)."""
    context = request.app[CONTEXT]
    token = context.token
    problem = None
    if request.headers.get("X-Rules-Engine") != "1":
        problem = "missing the X-Rules-Engine: 1 header"
    elif token is not None:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            problem = "no valid token"
    if problem is None:
        return None
    await asyncio.to_thread(context.store.log, "dashboard.refused", datetime.now(UTC),
                            {"path": request.path, "by": _who(request), "why": problem})
    return web.json_response({"error": f"refused: {problem}"}, status=403)


async def _halt(request: web.Request) -> web.Response:
    refused = await _allowed(request)
    if refused is not None:
        return refused
    everything = request.query.get("all") == "1"
    store = request.app[CONTEXT].store
    request_id = await asyncio.to_thread(store.request_halt, everything, datetime.now(UTC),
                                         _who(request))
    return web.json_response({"halt": "requested", "request": request_id, "all": everything})


async def _resume(request: web.Request) -> web.Response:
    refused = await _allowed(request)
    if refused is not None:
        return refused
    store = request.app[CONTEXT].store
    lifted = await asyncio.to_thread(store.resume, datetime.now(UTC), _who(request))
    return web.json_response({"resumed": lifted})


async def _signal(request: web.Request) -> web.Response:
    """An inbound signal: authenticated by its own secret, not by the dashboard's token (an
    alert service cannot add headers)."""
    from rules_engine.dashboard._signals import handle_signal

    context = request.app[CONTEXT]
    return await handle_signal(request, context.signals, context.store)


@contextlib.asynccontextmanager
async def serve_dashboard(store: Any, bind: Bind, *, snapshot: Snapshot | None = None,
                          poll_s: float = 0.5, signals: Any = None) -> AsyncIterator[str]:
    """Serve the dashboard on the running loop; yields its URL (a free port for port 0).
    `signals`: a `SignalGate` that turns `POST /signal` on."""
    app = make_app(store, snapshot=snapshot, token=bind.token, poll_s=poll_s, signals=signals)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, bind.host, bind.port)
    try:
        await site.start()
    except OSError as err:
        await runner.cleanup()
        raise BindError(f"cannot serve the dashboard on {bind.host}:{bind.port}: "
                        f"{err.strerror or err}") from None
    addresses = runner.addresses
    port = int(addresses[0][1]) if addresses else bind.port
    host = f"[{bind.host}]" if ":" in bind.host else bind.host
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
