"""A chain's position and P&L from its fills: one pure function, used by the watcher (and so
by the backtest, which runs the watcher) for `position`, `pnl` and `pnl%`.

Average-cost accounting over the fills in the order they happened:

* a fill on the side of the open position (or with none open) adds to it, and the average
  entry price becomes the volume-weighted price of what is open;
* a fill on the other side closes up to what is open, realising (price - average entry) per
  unit closed (negated for a short position); what it fills beyond that opens a position
  the other way at its own price;
* fees: a fee recorded in the quote currency counts as it is; one recorded in the base
  currency is valued at the fill's price and is base the account no longer holds, so it
  also reduces the position; a fee not recorded (KuCoin's order stream does not send it) or
  charged in a third currency (KCS) is estimated at `fee_rate` of the fill's value.

`pnl` = realised + unrealised - fees, where unrealised values what is open at the price it
could be closed at now: the best bid for a long position, the best ask for a short one.
`pnl%` is pnl over `invested`, the quote value of every fill that opened a position.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import NamedTuple

__all__ = ["ChainBook", "ChainFill", "book", "pnl", "pnl_rate", "unrealised"]

_ZERO = Decimal(0)


class ChainFill(NamedTuple):
    """One fill of one of the chain's orders, as recorded."""

    side: str  # buy | sell
    price: Decimal
    size: Decimal  # base
    fee: Decimal | None = None  # None: not recorded
    fee_currency: str | None = None


class ChainBook(NamedTuple):
    bought: Decimal  # base bought, before fees
    sold: Decimal  # base sold
    position: Decimal  # base held: positive long, negative short (bought - sold - base fees)
    average_entry: Decimal | None  # of what is open; None when nothing is
    realised: Decimal  # quote, before fees
    fees: Decimal  # quote
    invested: Decimal  # quote value of the fills that opened a position


EMPTY = ChainBook(_ZERO, _ZERO, _ZERO, None, _ZERO, _ZERO, _ZERO)


def book(
    fills: Iterable[ChainFill], *, base: str, quote: str, fee_rate: Decimal
) -> ChainBook:
    """The chain's book after `fills` (in the order they happened)."""
    bought = sold = realised = fees = invested = _ZERO
    position = _ZERO
    average: Decimal | None = None
    for fill in fills:
        size, price = fill.size, fill.price
        if size <= 0:
            continue
        sign = Decimal(1) if fill.side == "buy" else Decimal(-1)
        if fill.side == "buy":
            bought += size
        else:
            sold += size
        # the trade itself
        if position == 0 or (position > 0) == (sign > 0):
            held = abs(position)
            average = ((average or _ZERO) * held + price * size) / (held + size)
            position += sign * size
            invested += price * size
        else:
            closed = min(size, abs(position))
            direction = Decimal(1) if position > 0 else Decimal(-1)
            realised += (price - (average or price)) * closed * direction
            position += sign * size
            rest = size - closed
            if rest > 0:
                average = price
                invested += price * rest
            elif position == 0:
                average = None
        # its fee
        if fill.fee is not None and fill.fee_currency == quote:
            fees += fill.fee
        elif fill.fee is not None and fill.fee_currency == base:
            fees += fill.fee * price
            position -= fill.fee
            if position == 0:
                average = None
        else:
            fees += fee_rate * price * size
    return ChainBook(bought, sold, position, average, realised, fees, invested)


def unrealised(chain: ChainBook, bid: Decimal | None, ask: Decimal | None) -> Decimal | None:
    """What closing the open position at the best price now would realise: at the bid for a
    long position, at the ask for a short one; None when that price is not known."""
    if chain.position == 0 or chain.average_entry is None:
        return _ZERO
    if chain.position > 0:
        return None if bid is None else (bid - chain.average_entry) * chain.position
    return None if ask is None else (chain.average_entry - ask) * -chain.position


def pnl(chain: ChainBook, bid: Decimal | None, ask: Decimal | None) -> Decimal | None:
    """Realised + unrealised - fees, in the quote currency; None when unknown."""
    open_part = unrealised(chain, bid, ask)
    if open_part is None:
        return None
    return chain.realised + open_part - chain.fees


def pnl_rate(chain: ChainBook, bid: Decimal | None, ask: Decimal | None) -> Decimal | None:
    """pnl over what the chain paid to open its positions (-0.05 is -5%); None when it
    opened nothing yet or pnl is unknown."""
    total = pnl(chain, bid, ask)
    if total is None or chain.invested == 0:
        return None
    return total / chain.invested
