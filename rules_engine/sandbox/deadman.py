"""KuCoin's dead-man switch (DCP, `POST /api/v1/hf/orders/dead-cancel-all`), as state.

A client arms it with a timeout (5 to 86,400 s) and optionally a list of symbols; unless it
renews (calls the endpoint again) before the timeout passes, every open order of those symbols
(all symbols when none were listed) is cancelled, and the switch disarms. `timeout: -1`
disarms it. The sandbox checks it on every feed tick (`SandboxState.feed_step`), so with a
running feed it fires within one tick of its trigger time, even while the feed is stalled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rules_engine.sandbox.state import SandboxState

__all__ = ["MAX_SYMBOLS", "MAX_TIMEOUT_S", "MIN_TIMEOUT_S", "Deadman", "check"]

MIN_TIMEOUT_S = 5
MAX_TIMEOUT_S = 86_400
MAX_SYMBOLS = 50


@dataclass(frozen=True, slots=True)
class Deadman:
    timeout_s: int
    symbols: tuple[str, ...]  # empty: every symbol
    trigger_ms: int

    def as_json(self) -> dict[str, object]:
        return {"timeout_s": self.timeout_s, "symbols": list(self.symbols),
                "trigger_ms": self.trigger_ms}

    @staticmethod
    def from_json(row: dict[str, object] | None) -> Deadman | None:
        if row is None:
            return None
        symbols = row["symbols"]
        assert isinstance(symbols, list)
        return Deadman(int(str(row["timeout_s"])), tuple(str(s) for s in symbols),
                       int(str(row["trigger_ms"])))


def check(state: SandboxState) -> list[str]:
    """Fire the switch if its time has come: cancel the orders, disarm. Returns the ids."""
    armed = state.deadman
    if armed is None or state.now_ms() < armed.trigger_ms:
        return []
    state.set_deadman(None)
    now = state.now_ms()
    cancelled: list[str] = []
    for symbol in armed.symbols or tuple(state.symbols):
        ids, events = state.engine.cancel_all(now, symbol)
        state.publish(events)
        cancelled.extend(ids)
    state.deadman_fired.append((now, len(cancelled)))
    return cancelled
