"""Server time. Tests drive it; the `skew` fault shifts it; nothing else reads the wall clock."""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock:
    """Milliseconds since the epoch, plus an offset the admin endpoint can set (clock skew)."""

    offset_ms: int = 0

    def base_ms(self) -> int:
        raise NotImplementedError

    def now_ms(self) -> int:
        return self.base_ms() + self.offset_ms


@dataclass
class SystemClock(Clock):
    offset_ms: int = 0

    def base_ms(self) -> int:
        return time.time_ns() // 1_000_000


@dataclass
class ManualClock(Clock):
    """A clock that only moves when a test says so."""

    current_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    offset_ms: int = 0

    def base_ms(self) -> int:
        return self.current_ms

    def advance(self, ms: int) -> None:
        self.current_ms += ms
