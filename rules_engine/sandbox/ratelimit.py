"""KuCoin's rate limits: weighted pools over a fixed window that starts at the first request.

Private pools are metered per key, the public pool per IP. Each reply carries
`gw-ratelimit-limit`, `gw-ratelimit-remaining` and `gw-ratelimit-reset` (ms until the window
resets); past the quota the request is refused with 429/429000 and the same headers.
"""

from __future__ import annotations

from dataclasses import dataclass

from rules_engine.sandbox.config import QuotaConfig

__all__ = ["RateLimiter"]


@dataclass
class _Window:
    start_ms: int
    used: int


class RateLimiter:
    def __init__(self, quotas: QuotaConfig) -> None:
        self.quotas = quotas
        self.windows: dict[tuple[str, str], _Window] = {}

    def quota(self, pool: str) -> int:
        value: int = getattr(self.quotas, pool)
        return value

    def charge(self, pool: str, identity: str, weight: int, now_ms: int
               ) -> tuple[bool, dict[str, str]]:
        """Spend `weight` from the pool; False (and nothing spent) when it would overflow."""
        limit = self.quota(pool)
        key = (pool, identity)
        window = self.windows.get(key)
        if window is None or now_ms - window.start_ms >= self.quotas.window_ms:
            window = _Window(now_ms, 0)
            self.windows[key] = window
        allowed = window.used + weight <= limit
        if allowed:
            window.used += weight
        reset = max(self.quotas.window_ms - (now_ms - window.start_ms), 0)
        headers = {
            "gw-ratelimit-limit": str(limit),
            "gw-ratelimit-remaining": str(max(limit - window.used, 0)),
            "gw-ratelimit-reset": str(reset),
        }
        return allowed, headers
