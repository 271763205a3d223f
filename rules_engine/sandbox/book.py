"""One symbol's order book: price levels holding the feed's size (the rest of the market) and
the account's resting orders in time order, and the level2 changes they make."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from sortedcontainers import SortedDict

from rules_engine.sandbox.engine_types import ZERO, L2Change, Order

__all__ = ["Book", "Level"]


@dataclass(slots=True)
class Level:
    """One price: the feed's size, then resting orders in time order.

    `shown` caches the visible size of the orders so a level with many orders costs O(1) per
    change; every change to a resting order goes through `add`, `remove` or `adjust`.
    """

    feed: Decimal = ZERO
    orders: list[Order] = field(default_factory=list)
    shown: Decimal = ZERO

    def visible(self) -> Decimal:
        return self.feed + self.shown

    def add(self, order: Order) -> None:
        self.orders.append(order)
        self.shown += order.visible

    def remove(self, order: Order) -> None:
        self.orders.remove(order)
        self.shown -= order.visible

    def adjust(self, before: Decimal, order: Order) -> None:
        self.shown += order.visible - before

    def empty(self) -> bool:
        return self.feed == 0 and not self.orders


class Book:
    """Both sides of one symbol; prices map to levels, bids iterate high to low."""

    def __init__(self, symbol: str, sequence: int) -> None:
        self.symbol = symbol
        self.sequence = sequence
        self.bids: SortedDict = SortedDict(lambda p: -p)
        self.asks: SortedDict = SortedDict()
        self.shown: dict[tuple[str, Decimal], Decimal] = {}

    def side(self, name: str) -> SortedDict:
        return self.bids if name == "bids" else self.asks

    def level(self, name: str, price: Decimal) -> Level:
        book = self.side(name)
        found: Level | None = book.get(price)
        if found is None:
            found = Level()
            book[price] = found
        return found

    def levels(self, name: str) -> Iterator[tuple[Decimal, Level]]:
        book = self.side(name)
        for price in list(book.keys()):
            yield price, book[price]

    def best(self, name: str) -> Decimal | None:
        book = self.side(name)
        if not book:
            return None
        price: Decimal = book.keys()[0]
        return price

    def depth(self, name: str, limit: int | None = None) -> list[tuple[Decimal, Decimal]]:
        rows: list[tuple[Decimal, Decimal]] = []
        for price, level in self.side(name).items():
            size = level.visible()
            if size > 0:
                rows.append((price, size))
                if limit is not None and len(rows) >= limit:
                    break
        return rows

    def touch(self, name: str, price: Decimal, now_ms: int) -> L2Change | None:
        """Record the visible size of a level after a change; a change means one sequence."""
        book = self.side(name)
        level: Level | None = book.get(price)
        size = level.visible() if level is not None else ZERO
        if level is not None and level.empty():
            del book[price]
        key = (name, price)
        if self.shown.get(key, ZERO) == size:
            return None
        if size == 0:
            self.shown.pop(key, None)
        else:
            self.shown[key] = size
        self.sequence += 1
        return L2Change(self.symbol, name, price, size, self.sequence, now_ms)
