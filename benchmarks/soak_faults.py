"""The soak's fault injector (`benchmarks/soak_session.py` runs it): every 0.3 to 2 s one
fault of the sandbox is turned on, at random, for a random while, through its admin endpoint.
Each clock skew it sets is noted with the moment it was set, so that the audit can read the
sandbox's skewed `createdAt` on the unskewed clock (`soak_watchers.earliest_base_ms`)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from crash_support import SandboxProcess  # the shared harness, in tests/
from soak_watchers import SkewChange  # beside this module

__all__ = ["FAULTS", "FaultInjector"]

# Faults: (name, weight). Durations are drawn in `FaultInjector._one`.
FAULTS = (
    ("ws drop", 3), ("sequence gap", 3), ("duplicate level2", 2), ("feed stall", 2),
    ("silent connection", 2), ("429 storm", 2), ("5xx", 2), ("html errors", 2),
    ("accepted, reply timed out", 2), ("slow replies", 1), ("clock skew", 2),
)


class FaultInjector:
    """Turns one fault on every 0.3 to 2 s, for a random while, through the admin endpoint.
    Faults overlap; each is switched off on its own schedule."""

    def __init__(self, sandbox: SandboxProcess, rng: random.Random,
                 log: Callable[[str], None]) -> None:
        self.sandbox = sandbox
        self.rng = rng
        self.log = log
        self.skews: list[SkewChange] = []  # every clock skew set, for the lease audit
        self.counts: Counter[str] = Counter()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopped = asyncio.Event()

    async def run(self) -> None:
        names = [name for name, _ in FAULTS]
        weights = [w for _, w in FAULTS]
        while not self.stopped.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopped.wait(), self.rng.uniform(0.3, 2.0))
            if self.stopped.is_set():
                return
            name = self.rng.choices(names, weights)[0]
            try:
                await self._one(name)
            except (OSError, RuntimeError) as exc:  # the sandbox is busy: try the next one
                self.log(f"  fault {name} not set: {exc}")
                continue
            self.counts[name] += 1

    async def _one(self, name: str) -> None:
        admin = self.sandbox.admin
        rng = self.rng
        if name == "ws drop":
            await admin("POST", "drop-ws")
        elif name == "sequence gap":
            await admin("POST", "faults", {"skip_level2": rng.randint(1, 4)})
        elif name == "duplicate level2":
            await admin("POST", "faults", {"duplicate_level2": rng.randint(1, 3)})
        elif name == "feed stall":
            await self._for({"stall_feed": True}, {"stall_feed": False}, rng.uniform(1, 8))
        elif name == "silent connection":
            await self._for({"ws_silent": True}, {"ws_silent": False}, rng.uniform(1, 9))
        elif name == "429 storm":
            await self._for({"http_429": True}, {"http_429": False}, rng.uniform(0.5, 5))
        elif name == "5xx":
            await self._for({"http_5xx": True}, {"http_5xx": False}, rng.uniform(0.3, 3))
        elif name == "html errors":
            await self._for({"http_5xx": True, "html_errors": True},
                            {"http_5xx": False, "html_errors": False}, rng.uniform(0.3, 3))
        elif name == "accepted, reply timed out":
            await self._for({"timeout_after_accept": True}, {"timeout_after_accept": False},
                            rng.uniform(0.5, 4), release=True)
        elif name == "slow replies":
            await self._for({"delay_ms": rng.randint(200, 1500)}, {"delay_ms": 0},
                            rng.uniform(1, 4))
        elif name == "clock skew":
            # Held until the next skew: the server's clock jumps, the watcher must resync.
            await self._skew(rng.randint(-30_000, 30_000))
        else:
            raise AssertionError(name)

    async def _skew(self, offset_ms: int) -> None:
        """Move the sandbox's clock, noting when (the lease audit unskews `createdAt`)."""
        lo = time.time() * 1000
        sure = False
        try:
            await self.sandbox.admin("POST", "faults", {"clock_skew_ms": offset_ms})
            sure = True
        finally:
            self.skews.append(SkewChange(lo, time.time() * 1000, offset_ms, sure))

    async def _for(self, on: dict[str, Any], off: dict[str, Any], seconds: float, *,
                   release: bool = False) -> None:
        await self.sandbox.admin("POST", "faults", on)

        async def later() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopped.wait(), seconds)
            await self.sandbox.admin("POST", "faults", off)
            if release:
                await self.sandbox.admin("POST", "release")

        task = asyncio.ensure_future(later())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        """Every fault off, every held reply answered."""
        self.stopped.set()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.sandbox.admin("POST", "faults", {
            "stall_feed": False, "ws_silent": False, "http_429": False, "http_5xx": False,
            "html_errors": False, "timeout_after_accept": False, "delay_ms": 0,
            "skip_level2": 0, "duplicate_level2": 0})
        await self._skew(0)
        await self.sandbox.admin("POST", "release")
