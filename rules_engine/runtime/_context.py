"""What every part of the watcher shares: the store, the config, the ports, the clock, the
output, and the switches a person throws (halt, trading stopped). Plain fields: the parts
own their own state; this holds only what is the watcher's as a whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rules_engine.core.symbols import SymbolTable
from rules_engine.ports import MarketFeed, Venue
from rules_engine.runtime._config import WatcherConfig
from rules_engine.store import Store

__all__ = ["Context", "LeaseLostError", "utc_now"]

log = logging.getLogger("rules_engine.watcher")


def utc_now() -> datetime:
    return datetime.now(UTC)


class LeaseLostError(Exception):
    """This watcher no longer owns the store: it must not send another byte."""


@dataclass
class Context:
    store: Store
    config: WatcherConfig
    symbols: SymbolTable
    venue: Venue
    feed: MarketFeed
    now: Callable[[], datetime]
    emit: Callable[[str, dict[str, Any]], None]
    engine_id: str = ""
    prefix: str = ""
    balances: dict[str, Decimal] = field(default_factory=dict)
    trading: bool = True  # False once the key was refused: nothing more is sent
    stop_reason: str = ""
    stop_cause: str = ""  # "lease" or "storage" for those fail-stops: a field, not wording
    failed: bool = False  # stopped by an error, not asked to
    halted: dict[str, Any] | None = None  # the kill switch, as the store holds it
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def event(self, kind: str, payload: dict[str, Any], identity: str | None = None,
              oid: str | None = None) -> None:
        """An event: a row of the store's log and a line of the output."""
        self.store.log(kind, self.now(), payload, identity=identity, oid=oid)
        self.emit(kind, {**payload, **({"rule": identity} if identity else {}),
                         **({"client_oid": oid} if oid else {})})

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run `coro` on its own; if it fails, the watcher stops with the reason."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            assert error is not None
            self.fail_on(error)

    def fail_on(self, error: BaseException) -> None:
        """A background task, a job or a handler failed: a store that cannot be written, a
        lost lease, or a bug. Fail-stop with the reason; the next start recovers."""
        from rules_engine.store import LeaseLost, StorageFailed

        if isinstance(error, (LeaseLostError, LeaseLost)):
            self.fail(str(error), cause="lease")
        elif isinstance(error, StorageFailed):
            self.fail(str(error), cause="storage")
        else:
            log.error("watcher stopped by an internal error: %r", error)
            self.fail(f"internal error: {type(error).__name__}: {error}")

    def fail(self, reason: str, *, cause: str = "") -> None:
        """Fail-stop: record why (if the store still can) and stop. `cause` names the kind
        of stop for a reader that must not depend on the wording (`lease`: this watcher may
        no longer own the store; `storage`: the store cannot be written)."""
        if self.failed:
            return
        self.stop_reason = reason
        self.stop_cause = cause
        self.failed = True
        with contextlib.suppress(Exception):  # the store may be what failed
            self.event("error", {"error": reason, **({"cause": cause} if cause else {})})
        self.stop.set()

    def halt_trading(self, reason: str) -> None:
        """Nothing more is sent (the key was refused): a person must look."""
        if self.trading:
            self.trading = False
            self.stop_reason = reason
            self.event("trading.stopped", {"reason": reason})
            log.error("trading stopped: %s", reason)
