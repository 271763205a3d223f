"""How long a start waits for an exchange that is down, overloaded or rate-limiting.

One `Patience` per start: every read the start makes (the symbols, the venue check, the
order family, balances, recovery's pages, candle history) that meets a transient failure
asks `retry` whether to try again. The pauses grow (0.5 s doubling to 10 s, counted per
read), each announced as an `exchange.unreachable` line; the deadline is the start's. A store
another process holds locked while this start owns nothing yet is waited for the same way
(`store.locked` lines).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Patience"]


class Patience:
    def __init__(self, seconds: float, emit: Callable[[str, dict[str, Any]], None]) -> None:
        self.seconds = seconds
        self._until = time.monotonic() + seconds
        self._emit = emit

    async def retry(self, why: str, attempt: int, *, kind: str = "exchange.unreachable",
                    **extra: Any) -> bool:
        """After the `attempt`-th miss (from 0) of one read: pause and say so (a `kind`
        line), or False once the next pause would end past the deadline."""
        pause = min(0.5 * 2**attempt, 10.0)
        if time.monotonic() + pause > self._until:
            return False
        self._emit(kind, {"why": why, **extra, "retry_in_s": pause})
        await asyncio.sleep(pause)
        return True

    def gave_up(self, problem: str) -> str:
        return f"{problem} (still, after {self.seconds:g} s: start_patience_s)"
