"""A local level2 order book, kept in sync with KuCoin's official procedure. Pure.

1. Deltas (`/market/level2:SYMBOL`) are buffered until a REST snapshot arrives.
2. With the snapshot's sequence S: buffered deltas with `sequenceEnd <= S` are dropped; the
   first kept one must start at or before S + 1, or the snapshot is too old (ask for another).
3. Each delta must continue the book: `sequenceStart <= seq + 1` and `sequenceEnd > seq`.
   One that ends at or before `seq` is old or a duplicate: dropped, nothing else. One that
   starts after `seq + 1` is a gap: the book is discarded and a new snapshot is needed.
4. Within a delta a change `[price, size, sequence]` applies only if its sequence is above the
   book's: price "0" changes nothing (sequence bookkeeping only), size "0" removes the level.
5. A crossed book (best bid >= best ask) is discarded like a gap.

The book's state is explicit: `syncing` (no usable book; with the reason), `live`, or `stale`
(the caller says the feed went quiet or dropped; with the reason), each with the time it
began. Only a live book is fresh. Sample delta, as KuCoin sends it:

    {"type": "message", "topic": "/market/level2:BTC-USDT", "subject": "trade.l2update",
     "data": {"sequenceStart": 1613277183875, "sequenceEnd": 1613277183875,
              "symbol": "BTC-USDT", "changes": {"asks": [["244.351", "150", "1613277183875"]],
                                                "bids": []}}}
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from sortedcontainers import SortedDict

__all__ = ["BookState", "Delta", "Level2Book", "Step"]

_ZERO = Decimal(0)


class BookState(enum.Enum):
    SYNCING = "syncing"
    LIVE = "live"
    STALE = "stale"


_LIVE = BookState.LIVE


class Step(enum.Enum):
    """What one input did to the book."""

    BUFFERED = "buffered"
    APPLIED = "applied"
    DROPPED = "dropped"  # old or duplicate: ignored without harm
    RESYNC = "resync"  # the book was discarded: fetch a new snapshot


class Delta(NamedTuple):
    start: int
    end: int
    bids: Sequence[Sequence[str]]  # [price, size, sequence]
    asks: Sequence[Sequence[str]]


class Level2Book:
    def __init__(self, symbol: str, now: datetime, *, max_buffer: int = 50_000) -> None:
        self.symbol = symbol
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.sequence = 0
        self.state = BookState.SYNCING
        self.reason = "waiting for a snapshot"
        self.since = now
        self.noops = 0  # price-"0" changes seen (sequence bookkeeping only)
        self.resyncs = 0
        self._buffer: list[Delta] = []
        self._max_buffer = max_buffer

    # ------------------------------------------------------------ reading

    @property
    def fresh(self) -> bool:
        return self.state is BookState.LIVE

    def best_bid(self) -> tuple[Decimal, Decimal] | None:
        return self.bids.peekitem(-1) if self.bids else None

    def best_ask(self) -> tuple[Decimal, Decimal] | None:
        return self.asks.peekitem(0) if self.asks else None

    def depth(self, n: int) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """The best `n` levels of each side: bids high to low, asks low to high."""
        bids = [self.bids.peekitem(-1 - i) for i in range(min(n, len(self.bids)))]
        asks = [self.asks.peekitem(i) for i in range(min(n, len(self.asks)))]
        return bids, asks

    # ------------------------------------------------------------ inputs

    def on_delta(self, delta: Delta, now: datetime) -> Step:
        if self.state is not _LIVE:
            if len(self._buffer) >= self._max_buffer:
                self._buffer.pop(0)  # the oldest go first; a snapshot too old is detected
            self._buffer.append(delta)
            return Step.BUFFERED
        start, end, _, _ = delta
        sequence = self.sequence
        if end <= sequence:
            return Step.DROPPED
        if start > sequence + 1:
            self._discard(f"sequence gap: expected {sequence + 1}, got {start}", now)
            self._buffer.append(delta)
            return Step.RESYNC
        # Only a level that was set can cross the book; removals and no-ops cannot.
        if self._apply(delta) and self._crossed():
            self._discard("crossed book", now)
            return Step.RESYNC
        return Step.APPLIED

    def on_snapshot(
        self,
        sequence: int,
        bids: Iterable[Sequence[str]],
        asks: Iterable[Sequence[str]],
        now: datetime,
    ) -> Step:
        """Load a REST snapshot (`level2_20/100` or the full book) and replay the buffer."""
        kept = [d for d in self._buffer if d.end > sequence]
        if kept and kept[0].start > sequence + 1:
            self._buffer = kept
            self._discard("snapshot older than the buffered deltas", now)
            return Step.RESYNC
        self.bids = SortedDict({Decimal(p): Decimal(s) for p, s, *_ in bids if Decimal(s)})
        self.asks = SortedDict({Decimal(p): Decimal(s) for p, s, *_ in asks if Decimal(s)})
        self.sequence = sequence
        self._buffer = []
        for delta in kept:
            if delta.end <= self.sequence:
                continue
            if delta.start > self.sequence + 1:
                self._discard(f"sequence gap in the buffer at {delta.start}", now)
                return Step.RESYNC
            self._apply(delta)
        if self._crossed():
            self._discard("crossed book", now)
            return Step.RESYNC
        self.state, self.reason, self.since = BookState.LIVE, "", now
        return Step.APPLIED

    def mark_stale(self, reason: str, now: datetime) -> None:
        """The feed went quiet or dropped: the book is kept but is not fresh."""
        if self.state is BookState.LIVE:
            self.state, self.reason, self.since = BookState.STALE, reason, now

    # ------------------------------------------------------------ internals

    def _apply(self, delta: Delta) -> bool:
        """Apply the changes; True when a level was set (only then can the book cross)."""
        start, end, bids, asks = delta
        floor = self.sequence
        grew = False
        # A delta that starts right after the book cannot hold a change at or below it:
        # per-change sequences need checking only when a delta overlaps the book.
        overlaps = start <= floor
        for side, changes in ((self.bids, bids), (self.asks, asks)):
            if not changes:
                continue
            for price_text, size_text, seq_text in changes:
                if price_text == "0":
                    self.noops += 1
                    continue
                if overlaps and int(seq_text) <= floor:
                    continue
                if size_text == "0":
                    side.pop(Decimal(price_text), None)
                else:
                    size = Decimal(size_text)
                    if size:
                        side[Decimal(price_text)] = size
                        grew = True
                    else:
                        side.pop(Decimal(price_text), None)
        self.sequence = end
        return grew

    def _crossed(self) -> bool:
        return bool(
            self.bids and self.asks and self.bids.peekitem(-1)[0] >= self.asks.peekitem(0)[0]
        )

    def _discard(self, reason: str, now: datetime) -> None:
        self.bids = SortedDict()
        self.asks = SortedDict()
        self.state, self.reason, self.since = BookState.SYNCING, reason, now
        self.resyncs += 1
