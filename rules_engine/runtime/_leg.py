"""A held stop of the engine (`Leg`): a bracket's stop-loss, or a guard's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from rules_engine.compiler import model as M
from rules_engine.engine import Fill

__all__ = ["Leg"]


@dataclass
class Leg:
    """A stop held by the engine while the exits it covers rest on the exchange and hold the
    coins: on trigger (its price, or its `exit after` deadline) they are cancelled and
    confirmed final first, and only what they did not fill is sent, at market.

    `tp_oid`: a bracket's take-profit ("" for a guard); `siblings`: a guard's exits (their
    orders of the same entry firing); `size`: the take-profit's size, or the entry's fill;
    `trigger`: None for a time exit alone; `trail`/`mark`: a trailing stop-loss and the best
    `last` since the entry filled; `exit_at`: `exit after`; `move_oid`/`move_to`: `move
    stop-loss to PRICE after RULE filled` (that rule's order, the price expression), and
    `moved` once done; `fill`: the entry's fill, for `fill_price` in `move_to`; `waiting`: why
    its triggered exit waits (the slippage limit), None when it does not."""

    oid: str
    tp_oid: str
    identity: str
    number: int
    symbol: str
    side: str
    size: Decimal
    trigger: Decimal | None
    busy: bool = False
    siblings: tuple[str, ...] = ()
    trail: Decimal | None = None
    mark: Decimal | None = None
    exit_at: datetime | None = None
    move_oid: str | None = None
    move_to: M.Value | None = None
    moved: bool = False
    move_due: bool = False  # its exit filled; the new price waits for fresh data
    fill: Fill | None = None
    waiting: str | None = None  # why its market exit waits (risk.max_slippage), once said

    @property
    def covered(self) -> tuple[str, ...]:
        """The resting exits it shares the position with: cancelled, confirmed, before it
        sends; what they filled is not sold again."""
        return tuple(o for o in (self.tp_oid, *self.siblings) if o)
